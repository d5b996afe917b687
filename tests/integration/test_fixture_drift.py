"""The seeded prod and dev databases are the app's real ones, with exactly the drift of
shared/spec/sprint90-drift.md.

Checked by catalog queries on real databases (scale 1 unless said otherwise): prod's 31 tables, dev's
table set, the exports pair's types and FKs on each side, the Sprint 90 counts and orphans, the
schemas and functions, column order and comments.
"""
from __future__ import annotations

import pytest

from tests import pg

fx = pg.sprint90_fixtures

COLUMN_TYPES = """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
"""
FOREIGN_KEYS = """
    SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid), c.convalidated
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
     WHERE c.contype = 'f' AND n.nspname = 'public'
"""
TABLES = """
    SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""
INDEXES = """
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'i' AND n.nspname = 'public'
"""
EXPORTS, ANALYTICS = "bazaar-vid_exports", "bazaar-vid_export_analytics"
PREFIXED, OLD = "bazaar-vid_api_usage_metric", "api_usage_metric"

# The 22 tables of the drizzle-kit introspection of prod (2025-06-23), then migrations 0001, 0002,
# 0004 and 0007 (its api_usage_metric only), plus the old unprefixed duplicate.
INTROSPECTED = {
    "bazaar-vid_user", "bazaar-vid_metric", "bazaar-vid_component_error", "bazaar-vid_feedback",
    "bazaar-vid_scene_plan", "bazaar-vid_animation_design_brief", "bazaar-vid_scene_specs",
    "bazaar-vid_email_subscriber", "bazaar-vid_scene_iteration", "bazaar-vid_component_test_case",
    "bazaar-vid_component_evaluation_metric", "bazaar-vid_agent_message", "bazaar-vid_custom_component_job",
    "bazaar-vid_scene", "bazaar-vid_project_memory", "bazaar-vid_project", "bazaar-vid_shared_video",
    "bazaar-vid_patch", "bazaar-vid_message", "bazaar-vid_image_analysis", "bazaar-vid_verificationToken",
    "bazaar-vid_account"}
MIGRATED = {EXPORTS, ANALYTICS, "bazaar-vid_credit_package", "bazaar-vid_credit_transaction",
            "bazaar-vid_user_credits", "bazaar-vid_usage_limit", "bazaar-vid_user_usage", PREFIXED}
PROD_TABLES = {f"public.{t}" for t in INTROSPECTED | MIGRATED | {OLD}}
METRIC_COLUMNS = [("id", "uuid"), ("provider", "character varying(50)"), ("model", "character varying(100)"),
                  ("userId", "character varying(255)"), ("projectId", "uuid"), ("toolName", "character varying(100)"),
                  ("success", "boolean"), ("responseTime", "integer"), ("tokenCount", "integer"),
                  ("errorType", "character varying(100)"), ("errorMessage", "text"),
                  ("timestamp", "timestamp with time zone")]


def types(server, db):
    return {(t, c): ty for t, c, ty in server.execute(db, COLUMN_TYPES)}


def tables(server, db):
    return {row[0] for row in server.execute(db, TABLES)}


def foreign_keys(server, db, table):
    return {name: (definition, valid) for t, name, definition, valid in server.execute(db, FOREIGN_KEYS)
            if t in (f'"{table}"', table)}


def columns(server, db, table):
    rows = server.execute(db, "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                          (f'"{table}"',))
    return [tuple(r) for r in rows]


def column_order(server, db, table):
    return [name for name, _ in columns(server, db, table)]


def count(server, db, table):
    return server.execute(db, f"SELECT count(*) FROM {table}")[0][0]


def test_reference_is_the_reference_file_as_it_is_now():
    assert fx.ddl("reference") == (pg.ROOT / "files/reference/bazaar_vid.sql").read_text()


def test_prod_has_the_31_real_tables(pg_server, prod_db):
    assert len(PROD_TABLES) == 31
    assert tables(pg_server, prod_db) == PROD_TABLES


def test_dev_table_set(pg_server, dev_db):
    dev = tables(pg_server, dev_db)
    assert dev == (PROD_TABLES - {f"public.{PREFIXED}"}) | {"neon_auth.users_sync"}
    assert len([t for t in dev if t.startswith("public.")]) == 30


def test_prod_exports_pair_is_text_without_foreign_keys(pg_server, prod_db):
    prod = types(pg_server, prod_db)
    assert (prod[(EXPORTS, "id")], prod[(EXPORTS, "user_id")], prod[(EXPORTS, "project_id")]) == ("text",) * 3
    assert prod[(ANALYTICS, "export_id")] == "text" and prod[(ANALYTICS, "id")] == "uuid"
    assert foreign_keys(pg_server, prod_db, EXPORTS) == {}
    assert foreign_keys(pg_server, prod_db, ANALYTICS) == {}
    indexes = {r[0] for r in pg_server.execute(prod_db, INDEXES)}
    assert {"exports_user_idx", "exports_project_idx", "exports_render_idx", "exports_created_idx",
            "export_analytics_export_idx", "export_analytics_event_idx", "export_analytics_created_idx",
            "bazaar-vid_exports_render_id_unique"} <= indexes


def test_dev_exports_are_uuid_with_foreign_keys_and_analytics_text(pg_server, dev_db):
    dev = types(pg_server, dev_db)
    assert (dev[(EXPORTS, "id")], dev[(EXPORTS, "user_id")], dev[(EXPORTS, "project_id")]) == (
        "uuid", "character varying(255)", "uuid")
    assert dev[(ANALYTICS, "export_id")] == "text"
    assert foreign_keys(pg_server, dev_db, EXPORTS) == {
        "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk": (
            'FOREIGN KEY (user_id) REFERENCES "bazaar-vid_user"(id) ON DELETE CASCADE', True),
        "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk": (
            'FOREIGN KEY (project_id) REFERENCES "bazaar-vid_project"(id) ON DELETE CASCADE', True)}
    assert foreign_keys(pg_server, dev_db, ANALYTICS) == {}


def test_type_drift_between_prod_and_dev_is_only_the_exports_ids(pg_server, prod_db, dev_db):
    prod, dev = types(pg_server, prod_db), types(pg_server, dev_db)
    differing = {key: (prod[key], dev[key]) for key in prod if key in dev and prod[key] != dev[key]}
    assert differing == {(EXPORTS, "id"): ("text", "uuid"),
                         (EXPORTS, "user_id"): ("text", "character varying(255)"),
                         (EXPORTS, "project_id"): ("text", "uuid")}


def test_usage_metric_tables(pg_server, prod_db, dev_db):
    # the old duplicate has 0007's columns (camelCase, no metadata), no FK, no index but its PK
    assert columns(pg_server, prod_db, PREFIXED) == METRIC_COLUMNS
    for db in (prod_db, dev_db):
        assert columns(pg_server, db, OLD) == METRIC_COLUMNS
        assert foreign_keys(pg_server, db, OLD) == {}
        assert pg_server.execute(db, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
                                 (OLD,)) == [("api_usage_metric_pkey",)]
    assert set(foreign_keys(pg_server, prod_db, PREFIXED)) == {
        "bazaar-vid_api_usage_metric_userId_bazaar-vid_user_id_fk",
        "bazaar-vid_api_usage_metric_projectId_bazaar-vid_project_id_fk"}
    # dev's old rows point at existing users and projects (or nowhere: the columns are nullable)
    dangling = pg_server.execute(dev_db, '''
        SELECT count(*) FROM api_usage_metric m
         WHERE ("userId" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "bazaar-vid_user" u WHERE u.id = m."userId"))
            OR ("projectId" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "bazaar-vid_project" p WHERE p.id = m."projectId"))''')
    assert dangling[0][0] == 0


def test_code_declared_objects_missing_in_both(pg_server, prod_db, dev_db):
    for db in (prod_db, dev_db):
        cols = types(pg_server, db)
        assert ("bazaar-vid_project", "audio") not in cols
        indexes = {r[0] for r in pg_server.execute(db, INDEXES)}
        assert "message_project_sequence_idx" not in indexes
        assert {"idx_message_project_sequence", "scene_spec_unique_scene_id", "project_unique_name",
                "user_usage_unique_idx", "scene_spec_spec_gin_idx"} <= indexes
        assert all(valid for _t, _n, _d, valid in pg_server.execute(db, FOREIGN_KEYS))


def test_schemas_and_functions(pg_server, prod_db, dev_db):
    schemas = "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
    assert {r[0] for r in pg_server.execute(prod_db, schemas)} == {"public"}
    assert {r[0] for r in pg_server.execute(dev_db, schemas)} == {"public"} | set(fx.AUTH_SCHEMAS)
    functions = ("SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                 "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')")
    assert {r[0] for r in pg_server.execute(prod_db, functions)} == {"public.show_db_tree"}
    assert {r[0] for r in pg_server.execute(dev_db, functions)} == {"auth.session", "auth.user_id", "pgrst.pre_config"}


def test_row_counts_and_orphans_at_scale_1(pg_server, prod_db, dev_db):
    for db, variant in ((prod_db, "prod"), (dev_db, "dev")):
        expected = fx.expected_table_rows(variant)
        assert {t if "." in t else f"public.{t}" for t in expected} == tables(pg_server, db)
        for table, rows in expected.items():
            name = table if "." in table else f'"{table}"'
            assert count(pg_server, db, name) == rows, (variant, table)
    sprint90 = {EXPORTS: 134, ANALYTICS: 379, "bazaar-vid_project_memory": 621, "bazaar-vid_metric": 389,
                "bazaar-vid_agent_message": 3, OLD: 0, PREFIXED: 500, "bazaar-vid_user": 40,
                "bazaar-vid_account": 40, "bazaar-vid_project": 80, "bazaar-vid_scene": 240,
                "bazaar-vid_message": 600, "bazaar-vid_custom_component_job": 60,
                "bazaar-vid_scene_iteration": 300, "bazaar-vid_animation_design_brief": 60}
    sprint90.update({t: 0 for t in fx.EMPTY_TABLE_NAMES})
    for table, rows in sprint90.items():
        assert count(pg_server, prod_db, f'"{table}"') == rows, table
    for table in ("bazaar-vid_credit_transaction", "bazaar-vid_user_credits"):  # money: what a careless drop destroys
        assert count(pg_server, prod_db, f'"{table}"') > 0 and count(pg_server, dev_db, f'"{table}"') > 0
    assert count(pg_server, dev_db, f'"{EXPORTS}"') == 40 and count(pg_server, dev_db, f'"{ANALYTICS}"') == 110
    assert count(pg_server, dev_db, OLD) == 250
    assert count(pg_server, dev_db, "neon_auth.users_sync") == 5
    for table in fx.LEGACY_TABLE_NAMES + fx.EMPTY_TABLE_NAMES:
        assert count(pg_server, dev_db, f'"{table}"') == 0, table
    orphan_exports = pg_server.execute(prod_db, """
        SELECT e.id FROM "bazaar-vid_exports" e
         WHERE NOT EXISTS (SELECT 1 FROM "bazaar-vid_project" p WHERE p.id = e.project_id::uuid)""")
    assert len(orphan_exports) == 2
    orphan_analytics = pg_server.execute(prod_db, """
        SELECT count(*) FROM "bazaar-vid_export_analytics" a WHERE a.export_id = ANY(%s)""",
        ([r[0] for r in orphan_exports],))
    assert orphan_analytics[0][0] == 6
    # every other analytics row points at an existing export; exports' users all exist
    assert pg_server.execute(prod_db, """
        SELECT count(*) FROM "bazaar-vid_export_analytics" a
         WHERE NOT EXISTS (SELECT 1 FROM "bazaar-vid_exports" e WHERE e.id = a.export_id)""")[0][0] == 0
    assert pg_server.execute(prod_db, """
        SELECT count(*) FROM "bazaar-vid_exports" e
         WHERE NOT EXISTS (SELECT 1 FROM "bazaar-vid_user" u WHERE u.id = e.user_id)""")[0][0] == 0
    # every text id is a canonical lower-case UUID string
    non_canonical = pg_server.execute(prod_db, """
        SELECT (SELECT count(*) FROM "bazaar-vid_exports"
                 WHERE id <> id::uuid::text OR project_id <> project_id::uuid::text OR user_id <> user_id::uuid::text)
             + (SELECT count(*) FROM "bazaar-vid_export_analytics" WHERE export_id <> export_id::uuid::text)""")
    assert non_canonical[0][0] == 0
    dev_orphans = pg_server.execute(dev_db, """
        SELECT count(*) FROM "bazaar-vid_export_analytics" a
         WHERE a.export_id <> a.export_id::uuid::text
            OR NOT EXISTS (SELECT 1 FROM "bazaar-vid_exports" e WHERE e.id = a.export_id::uuid)""")
    assert dev_orphans[0][0] == 0


def test_column_order_and_comment_drift(pg_server, prod_db, dev_db):
    for table, cols, code_order in (("bazaar-vid_message", fx.MESSAGE_COLUMNS, fx.MESSAGE_CODE_ORDER),
                                    ("bazaar-vid_custom_component_job", fx.JOB_COLUMNS, fx.JOB_CODE_ORDER),
                                    ("bazaar-vid_scene_iteration", fx.ITERATION_COLUMNS, fx.ITERATION_CODE_ORDER)):
        prod, dev = column_order(pg_server, prod_db, table), column_order(pg_server, dev_db, table)
        assert prod == [name for name, _ in cols], table  # as introspected
        assert dev == code_order and dev != prod and sorted(dev) == sorted(prod), table
    comments = ("SELECT a.attname FROM pg_attribute a WHERE a.attrelid = '\"bazaar-vid_animation_design_brief\"'::regclass "
                "AND col_description(a.attrelid, a.attnum) IS NOT NULL")
    assert {r[0] for r in pg_server.execute(dev_db, comments)} == {"originalTsxCode", "lastFixAttempt", "fixIssues"}
    assert pg_server.execute(prod_db, comments) == []


@pytest.mark.parametrize("variant", ["prod", "dev"])
def test_scale_multiplies_counts(pg_server, variant):
    with pg_server.sprint90_database(variant, scale=3) as db:
        expected = fx.expected_table_rows(variant, 3)
        assert {t if "." in t else f"public.{t}" for t in expected} == tables(pg_server, db)
        for table, rows in expected.items():
            name = table if "." in table else f'"{table}"'
            assert count(pg_server, db, name) == rows, (variant, table)
        if variant == "prod":
            assert count(pg_server, db, f'"{EXPORTS}"') == 402
            assert count(pg_server, db, f'"{ANALYTICS}"') == 379 * 3
            assert count(pg_server, db, '"bazaar-vid_credit_package"') == 4  # a catalogue: fixed
            assert count(pg_server, db, '"bazaar-vid_usage_limit"') == 3
            orphans = pg_server.execute(db, """
                SELECT count(*) FROM "bazaar-vid_exports" e
                 WHERE NOT EXISTS (SELECT 1 FROM "bazaar-vid_project" p WHERE p.id = e.project_id::uuid)""")
            assert orphans[0][0] == 6


def test_content_hash_follows_the_content():
    assert fx.content_hash("prod") == fx.content_hash("prod", 1.0)
    assert len({fx.content_hash("prod"), fx.content_hash("prod", 3), fx.content_hash("dev")}) == 3
