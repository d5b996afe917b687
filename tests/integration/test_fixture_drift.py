"""The seeded prod and dev databases carry exactly the drift of shared/spec/sprint90-drift.md.

Checked by catalog queries on real databases at scale 1, against the code's reference schema
loaded into a database of its own.
"""
from __future__ import annotations

import pytest

from tests import pg

COLUMN_TYPES = """
    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
"""
FOREIGN_KEYS = """
    SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid), c.convalidated
      FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
     WHERE c.contype = 'f' AND n.nspname = 'public'
"""
TABLES = """
    SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


@pytest.fixture(scope="module")
def reference_db(pg_server):
    name = pg_server.create_database()
    pg_server.execute(name, (pg.ROOT / "files/reference/bazaar_vid.sql").read_text())
    yield name
    pg_server.drop_database(name)


def types(server, db):
    return {(t, c): ty for t, c, ty in server.execute(db, COLUMN_TYPES)}


def tables(server, db):
    return {row[0] for row in server.execute(db, TABLES)}


def column_order(server, db, table):
    rows = server.execute(db, "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                              "AND NOT attisdropped ORDER BY attnum", (f'"{table}"',))
    return [r[0] for r in rows]


def count(server, db, table):
    return server.execute(db, f"SELECT count(*) FROM {table}")[0][0]


def test_reference_file_is_the_generated_reference():
    assert (pg.ROOT / "files/reference/bazaar_vid.sql").read_text() == pg.sprint90_fixtures.ddl("reference")


def test_prod_type_drift_is_exactly_the_exports_pair(pg_server, prod_db, reference_db):
    ref, prod = types(pg_server, reference_db), types(pg_server, prod_db)
    differing = {key: (prod[key], ref[key]) for key in ref if key in prod and prod[key] != ref[key]}
    assert differing == {
        ("bazaar-vid_exports", "id"): ("text", "uuid"),
        ("bazaar-vid_exports", "user_id"): ("text", "character varying(255)"),
        ("bazaar-vid_exports", "project_id"): ("text", "uuid"),
        ("bazaar-vid_export_analytics", "export_id"): ("text", "uuid"),
    }


def test_dev_type_drift_is_only_the_analytics_export_id(pg_server, dev_db, reference_db):
    ref, dev = types(pg_server, reference_db), types(pg_server, dev_db)
    differing = {key: (dev[key], ref[key]) for key in ref if key in dev and dev[key] != ref[key]}
    assert differing == {("bazaar-vid_export_analytics", "export_id"): ("text", "uuid")}


def test_missing_and_extra_tables(pg_server, prod_db, dev_db, reference_db):
    ref, prod, dev = (tables(pg_server, db) for db in (reference_db, prod_db, dev_db))
    empty = {f"public.{t}" for t in pg.sprint90_fixtures.EMPTY_TABLE_NAMES}
    legacy = {f"public.{t}" for t in pg.sprint90_fixtures.LEGACY_TABLE_NAMES}
    assert prod - ref == empty | legacy | {"public.api_usage_metric"}
    assert ref - prod == set()
    assert dev - ref == empty | {"public.api_usage_metric", "neon_auth.users_sync"}
    assert ref - dev == {"public.bazaar-vid_api_usage_metric"}


def test_foreign_key_drift(pg_server, prod_db, dev_db, reference_db):
    def fks(db):
        return {(t, d) for t, d, _ in pg_server.execute(db, FOREIGN_KEYS)}

    ref, prod, dev = fks(reference_db), fks(prod_db), fks(dev_db)
    exports_fks = {fk for fk in ref if fk[0] == '"bazaar-vid_exports"'}
    analytics_fks = {fk for fk in ref if fk[0] == '"bazaar-vid_export_analytics"'}
    assert len(exports_fks) == 2 and len(analytics_fks) == 1
    assert ref - prod == exports_fks | analytics_fks
    metric_fks = {fk for fk in ref if fk[0] == '"bazaar-vid_api_usage_metric"'}
    assert ref - dev == analytics_fks | metric_fks  # dev lacks the prefixed metric table altogether
    assert all(valid for _, _, valid in pg_server.execute(prod_db, FOREIGN_KEYS))


def test_schemas_and_functions(pg_server, prod_db, dev_db):
    schemas = "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
    assert {r[0] for r in pg_server.execute(prod_db, schemas)} == {"public"}
    assert {r[0] for r in pg_server.execute(dev_db, schemas)} == {"public", "auth", "pgrst", "neon_auth"}
    functions = ("SELECT n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                 "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')")
    assert {r[0] for r in pg_server.execute(prod_db, functions)} == {"public.show_db_tree"}
    assert {r[0] for r in pg_server.execute(dev_db, functions)} == {"auth.session", "auth.user_id", "pgrst.pre_config"}


def test_row_counts_and_orphans_at_scale_1(pg_server, prod_db, dev_db):
    for db, variant in ((prod_db, "prod"), (dev_db, "dev")):
        for table, expected in pg.sprint90_fixtures.expected_table_rows(variant).items():
            name = table if "." in table else f'"{table}"'
            assert count(pg_server, db, name) == expected, (variant, table)
    assert count(pg_server, prod_db, '"bazaar-vid_exports"') == 134
    assert count(pg_server, prod_db, '"bazaar-vid_export_analytics"') == 379
    assert count(pg_server, prod_db, '"bazaar-vid_project_memory"') == 621
    assert count(pg_server, prod_db, '"bazaar-vid_metric"') == 389
    assert count(pg_server, prod_db, '"bazaar-vid_agent_message"') == 3
    assert count(pg_server, prod_db, "api_usage_metric") == 0
    assert count(pg_server, dev_db, "api_usage_metric") > 0
    orphan_exports = pg_server.execute(prod_db, """
        SELECT e.id FROM "bazaar-vid_exports" e
         WHERE NOT EXISTS (SELECT 1 FROM "bazaar-vid_project" p WHERE p.id = e.project_id::uuid)""")
    assert len(orphan_exports) == 2
    orphan_analytics = pg_server.execute(prod_db, """
        SELECT count(*) FROM "bazaar-vid_export_analytics" a WHERE a.export_id = ANY(%s)""",
        ([r[0] for r in orphan_exports],))
    assert orphan_analytics[0][0] == 6
    # every text id is a canonical lower-case UUID string
    non_canonical = pg_server.execute(prod_db, """
        SELECT count(*) FROM "bazaar-vid_exports"
         WHERE id <> id::uuid::text OR project_id <> project_id::uuid::text""")
    assert non_canonical[0][0] == 0
    dev_orphans = pg_server.execute(dev_db, """
        SELECT count(*) FROM "bazaar-vid_export_analytics" a
         WHERE NOT EXISTS (SELECT 1 FROM "bazaar-vid_exports" e WHERE e.id = a.export_id::uuid)""")
    assert dev_orphans[0][0] == 0


def test_column_order_and_comment_drift(pg_server, prod_db, dev_db, reference_db):
    for table in ("bazaar-vid_message", "bazaar-vid_custom_component_job", "bazaar-vid_scene_iteration"):
        ref, prod, dev = (column_order(pg_server, db, table) for db in (reference_db, prod_db, dev_db))
        assert dev == ref and prod != ref and sorted(prod) == sorted(ref), table
    comments = ("SELECT a.attname FROM pg_attribute a WHERE a.attrelid = '\"bazaar-vid_animation_design_brief\"'::regclass "
                "AND col_description(a.attrelid, a.attnum) IS NOT NULL")
    assert {r[0] for r in pg_server.execute(dev_db, comments)} == {"originalTsxCode", "lastFixAttempt", "fixIssues"}
    assert pg_server.execute(prod_db, comments) == []


def test_scale_multiplies_counts(pg_server):
    with pg_server.sprint90_database("prod", scale=3) as db:
        assert count(pg_server, db, '"bazaar-vid_exports"') == 402
        assert count(pg_server, db, '"bazaar-vid_export_analytics"') == 379 * 3
