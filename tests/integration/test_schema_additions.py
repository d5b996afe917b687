"""pgsafe_schema_additions and module_utils/pgsafe_additions.py on a real cluster.

Tables carry hyphens and camelCase ("bazaar-vid_exports", "createdAt", schema "app-Data").
"""
from __future__ import annotations

import psycopg2
import pytest
from psycopg2 import sql

from ansible.module_utils.pgsafe_additions import AdditionError, not_null_constraint_name, plan_additions, render
from ansible.module_utils.pgsafe_additions_apply import apply_addition
from tests.typefix_support import run_module

EXPORTS = "bazaar-vid_exports"
EVENTS = '"app-Data"."userEvents"'
SCHEMA_DDL = """
CREATE TABLE "bazaar-vid_exports" (
    id integer PRIMARY KEY, "userId" varchar(255), "createdAt" timestamptz, status text, "renderId" text DEFAULT 'r');
INSERT INTO "bazaar-vid_exports"
SELECT g, 'user-' || g, now() - g * interval '1 minute', 'done', 'r' || g FROM generate_series(1, 200) g;
CREATE SCHEMA "app-Data";
CREATE TABLE "app-Data"."userEvents" ("eventId" bigint PRIMARY KEY, "kindName" text);
INSERT INTO "app-Data"."userEvents" SELECT g, 'k' || (g % 3) FROM generate_series(1, 50) g;
CREATE TABLE "empty-Table" ("rowId" int PRIMARY KEY);
"""


@pytest.fixture
def db(pg_server):
    name = pg_server.create_database()
    pg_server.execute(name, SCHEMA_DDL)
    try:
        yield name
    finally:
        pg_server.drop_database(name)


def module(pg_server, db, additions, check=False, diff=False, **extra):
    args = dict(pg_server.module_params(db), additions=additions, run_id="run-additions", **extra)
    return run_module("pgsafe_schema_additions", args, check=check, diff=diff)


def column(pg_server, db, table, name):
    rows = pg_server.execute(db, "SELECT format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid) "
                                 "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND "
                                 "d.adnum = a.attnum WHERE attrelid = %s::regclass AND attname = %s "
                                 "AND NOT attisdropped", (table, name))
    return rows[0] if rows else None


def index(pg_server, db, name):
    rows = pg_server.execute(db, "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c "
                                 "ON c.oid = i.indexrelid WHERE c.relname = %s", (name,))
    return rows[0] if rows else None


def catalog(pg_server, db):
    """Everything the additions could change: columns, defaults, indexes, constraints, schemas."""
    return pg_server.execute(db, """
        SELECT 'col', attrelid::regclass::text || '.' || attname || format_type(atttypid, atttypmod) || attnotnull
               || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('public', 'app-Data') AND attnum > 0 AND NOT attisdropped
        UNION ALL SELECT 'idx', indexrelid::regclass::text || indisvalid FROM pg_index
         WHERE indrelid::regclass::text NOT LIKE 'pg_%%'
        UNION ALL SELECT 'con', conrelid::regclass::text || conname || convalidated FROM pg_constraint WHERE conrelid <> 0
        UNION ALL SELECT 'nsp', nspname FROM pg_namespace ORDER BY 1, 2""")


ALL_KINDS = [
    {"kind": "add_column", "table": EXPORTS, "column": "regionCode", "type": "varchar(16)", "default": "'eu-West'",
     "not_null": True},
    {"kind": "create_index", "table": EXPORTS, "name": "bazaar-vid_exports_userId_idx", "columns": ["userId"],
     "unique": True, "where": "status = 'done'"},
    {"kind": "create_index", "table": EVENTS, "name": "userEvents_kindName_idx", "columns": ["kindName", "eventId"]},
    {"kind": "set_default", "table": EXPORTS, "column": "status", "default": "'pending'"},
    {"kind": "set_not_null", "table": EXPORTS, "column": "createdAt"},
    {"kind": "drop_default", "table": EXPORTS, "column": "renderId"},
    {"kind": "set_default", "table": EVENTS, "column": "kindName", "default": "'unknown'"},
]


def test_each_kind_applies_then_converges(pg_server, db):
    res = module(pg_server, db, ALL_KINDS, diff=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] and len(res["applied"]) == len(ALL_KINDS)
    assert res["queries"] == [s["sql"] for step in res["steps"] for s in step["statements"]]
    assert column(pg_server, db, f'"{EXPORTS}"', "regionCode") == ("character varying(16)", True,
                                                                   "'eu-West'::character varying")
    assert index(pg_server, db, "bazaar-vid_exports_userId_idx") == (
        True, 'CREATE UNIQUE INDEX "bazaar-vid_exports_userId_idx" ON public."bazaar-vid_exports" USING btree ("userId")'
              " WHERE (status = 'done'::text)")
    assert index(pg_server, db, "userEvents_kindName_idx")[0] is True
    assert column(pg_server, db, f'"{EXPORTS}"', "status")[2] == "'pending'::text"
    assert column(pg_server, db, f'"{EXPORTS}"', "createdAt")[1] is True
    assert column(pg_server, db, f'"{EXPORTS}"', "renderId")[2] is None
    assert column(pg_server, db, EVENTS, "kindName")[2] == "'unknown'::text"
    leftover = pg_server.execute(db, "SELECT conname FROM pg_constraint WHERE conname LIKE %s", ("%pgsafe_set_nn",))
    assert leftover == []
    journal = pg_server.execute(db, "SELECT object, status FROM pgsafe.journal WHERE run_id = 'run-additions' "
                                    "AND step = 'schema_additions' ORDER BY id")
    assert [s for _, s in journal] == ["started", "completed"] * len(ALL_KINDS)
    assert journal[1][0] == "public.bazaar-vid_exports.regionCode"
    assert "public.bazaar-vid_exports.createdAt (set_not_null): nullable" in res["diff"]["before"]
    assert "public.bazaar-vid_exports.createdAt (set_not_null): NOT NULL" in res["diff"]["after"]
    again = module(pg_server, db, ALL_KINDS)
    assert not again.get("failed"), again.get("msg")
    assert not again["changed"] and again["applied"] == [] and again["queries"] == []
    assert all(s["converged"] and s["statements"] == [] for s in again["steps"])


def test_check_mode_changes_nothing(pg_server, db):
    before = catalog(pg_server, db)
    res = module(pg_server, db, ALL_KINDS, check=True)
    assert not res.get("failed"), res.get("msg")
    assert res["changed"] and res["queries"] == [] and res["applied"] == []
    assert all(s["statements"] and not s["converged"] for s in res["steps"])
    assert res["steps"][0]["precheck"]["rows"] == 200 and res["steps"][2]["precheck"]["rows"] == 50
    assert res["steps"][1]["hazards"] == ["index_build", "non_transactional", "table_scan"]
    assert res["steps"][4]["hazards"] == ["access_exclusive_lock", "table_scan"]
    assert set(res["sha256"]) == {s["object"] for s in res["steps"]}
    assert catalog(pg_server, db) == before  # no pgsafe schema either


def test_set_not_null_with_nulls_is_refused_with_the_pks(pg_server, db):
    pg_server.execute(db, 'UPDATE "bazaar-vid_exports" SET "createdAt" = NULL WHERE id IN (7, 150)')
    before = catalog(pg_server, db)
    items = [{"kind": "set_default", "table": EXPORTS, "column": "status", "default": "'x'"},
             {"kind": "set_not_null", "table": EXPORTS, "column": "createdAt"}]
    res = module(pg_server, db, items)
    assert res.get("failed") and "precheck failed, nothing changed" in res["msg"]
    assert '2 row(s) of public.bazaar-vid_exports have NULL in createdAt, e.g. pk {"id": 7}, {"id": 150}' in res["msg"]
    precheck = res["steps"][1]["precheck"]
    assert precheck["offending_rows"] == [{"pk": {"id": 7}}, {"pk": {"id": 150}}] and precheck["rows"] == 200
    assert res["queries"] == [] and catalog(pg_server, db) == before


def test_unique_index_with_duplicates_is_refused(pg_server, db):
    pg_server.execute(db, """UPDATE "bazaar-vid_exports" SET "userId" = 'dup-A' WHERE id IN (3, 4, 5);
                             UPDATE "bazaar-vid_exports" SET "userId" = 'dup-B' WHERE id IN (10, 11)""")
    before = catalog(pg_server, db)
    res = module(pg_server, db, [{"kind": "create_index", "table": EXPORTS, "name": "exports_user_uq",
                                  "columns": ["userId"], "unique": True}])
    assert res.get("failed") and '2 duplicate key group(s) on (userId)' in res["msg"]
    assert '{"userId": "dup-A"} x3' in res["msg"] and '{"userId": "dup-B"} x2' in res["msg"]
    offending = res["steps"][0]["precheck"]["offending_rows"]
    assert sorted(r["pk"]["id"] for r in offending) == [3, 4, 5, 10, 11]
    assert catalog(pg_server, db) == before
    partial = module(pg_server, db, [{"kind": "create_index", "table": EXPORTS, "name": "exports_user_uq",
                                      "columns": ["userId"], "unique": True, "where": "id > 20"}])
    assert not partial.get("failed"), partial.get("msg")  # the duplicates are outside the predicate


def test_invalid_leftover_index_is_dropped_and_rebuilt(pg_server, db):
    pg_server.execute(db, """UPDATE "bazaar-vid_exports" SET "userId" = 'same' WHERE id IN (1, 2)""")
    conn = pg_server.connect(db)  # autocommit: a failed concurrent build leaves its index INVALID, like an interruption
    try:
        with pytest.raises(psycopg2.errors.UniqueViolation), conn.cursor() as cur:
            cur.execute('CREATE UNIQUE INDEX CONCURRENTLY "exports_userId_uq" ON "bazaar-vid_exports" ("userId")')
    finally:
        conn.close()
    assert index(pg_server, db, "exports_userId_uq")[0] is False
    pg_server.execute(db, """UPDATE "bazaar-vid_exports" SET "userId" = 'other' WHERE id = 2""")
    item = {"kind": "create_index", "table": EXPORTS, "name": "exports_userId_uq", "columns": ["userId"], "unique": True}
    res = module(pg_server, db, [item])
    assert not res.get("failed"), res.get("msg")
    assert res["queries"] == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."exports_userId_uq"',
                              'CREATE UNIQUE INDEX CONCURRENTLY "exports_userId_uq" ON "public"."bazaar-vid_exports" '
                              'USING btree ("userId")']
    assert res["steps"][0]["before"] == "INVALID (left by an interrupted build)"
    assert index(pg_server, db, "exports_userId_uq")[0] is True
    assert not module(pg_server, db, [item])["changed"]


def test_expected_sha256_mismatch_is_refused(pg_server, db):
    items = [{"kind": "set_not_null", "table": EXPORTS, "column": "createdAt"},
             {"kind": "set_default", "table": EVENTS, "column": "kindName", "default": "'k'"}]
    plan = module(pg_server, db, items, check=True)
    assert not plan.get("failed"), plan.get("msg")
    # someone starts the change by hand: the plan would now resume from VALIDATE, not what was reviewed
    pg_server.execute(db, sql.SQL('ALTER TABLE "bazaar-vid_exports" ADD CONSTRAINT {0} CHECK ("createdAt" IS NOT NULL) '
                                  'NOT VALID').format(sql.Identifier("createdAt_pgsafe_set_nn")))
    before = catalog(pg_server, db)
    res = module(pg_server, db, items, expected_sha256=plan["sha256"])
    assert res.get("failed") and "the database moved since the plan" in res["msg"]
    assert "public.bazaar-vid_exports.createdAt: the statements it would run differ" in res["msg"]
    assert catalog(pg_server, db) == before and res["queries"] == []
    replanned = module(pg_server, db, items, check=True)
    assert [s["sql"].split()[3] for s in replanned["steps"][0]["statements"]] == ["VALIDATE", "ALTER", "DROP"]
    ok = module(pg_server, db, items, expected_sha256=replanned["sha256"])
    assert not ok.get("failed"), ok.get("msg")
    assert len(ok["queries"]) == 4
    assert not module(pg_server, db, items, expected_sha256=replanned["sha256"])["changed"]  # converged now: passes
    other = module(pg_server, db, items, expected_sha256={"public.nothing": "0"})
    assert other.get("failed") and "public.nothing: not among the additions" in other["msg"]


def test_add_column_refusals_and_later_items_see_the_new_column(pg_server, db):
    volatile = {"kind": "add_column", "table": EXPORTS, "column": "token", "type": "uuid", "default": "gen_random_uuid()"}
    res = module(pg_server, db, [volatile])
    assert res.get("failed") and "volatile function(s) gen_random_uuid" in res["msg"] and "(200 rows)" in res["msg"]
    empty = module(pg_server, db, [dict(volatile, table="empty-Table")])
    assert not empty.get("failed") and empty["steps"][0]["hazards"] == ["access_exclusive_lock", "rewrite"]
    nn = {"kind": "add_column", "table": EVENTS, "column": "seenAt", "type": "timestamptz", "not_null": True}
    res = module(pg_server, db, [nn])
    assert res.get("failed") and "app-Data.userEvents, which has 50 rows" in res["msg"]
    no_default = [{"kind": "add_column", "table": EVENTS, "column": "source", "type": "text"},
                  {"kind": "set_not_null", "table": EVENTS, "column": "source"}]
    res = module(pg_server, db, no_default)
    assert res.get("failed") and "every existing row would be NULL" in res["msg"]
    assert column(pg_server, db, EVENTS, "source") is None
    with_default = [{"kind": "add_column", "table": EVENTS, "column": "source", "type": "text", "default": "'web'"},
                    {"kind": "set_not_null", "table": EVENTS, "column": "source"},
                    {"kind": "create_index", "table": EVENTS, "name": "userEvents_source_uq", "columns": ["source", "eventId"],
                     "unique": True}]
    res = module(pg_server, db, with_default)
    assert not res.get("failed"), res.get("msg")
    assert column(pg_server, db, EVENTS, "source") == ("text", True, "'web'::text")
    dup = module(pg_server, db, [{"kind": "add_column", "table": EVENTS, "column": "tier", "type": "int", "default": "1"},
                                 {"kind": "create_index", "table": EVENTS, "name": "userEvents_tier_uq",
                                  "columns": ["tier"], "unique": True}])
    assert dup.get("failed") and "1 duplicate key group(s) on (tier)" in dup["msg"]


def test_library_plan_is_read_only_and_apply_is_idempotent(pg_server, db):
    pg_server.execute(db, """UPDATE "app-Data"."userEvents" SET "kindName" = NULL WHERE "eventId" = 9""")
    items = [{"kind": "set_not_null", "table": EVENTS, "column": "kindName"}]
    conn = pg_server.connect(db, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            refused = plan_additions(cur, items)[0]
            name = sql.Identifier("app-Data", not_null_constraint_name(refused["item"]))
            assert render(name) == name.as_string(conn)  # rendering without a connection quotes like psycopg2
        conn.rollback()
        assert refused["precheck"]["offending_rows"] == [{"pk": {"eventId": 9}}]
        with pytest.raises(AdditionError, match="precheck failed, nothing run"):
            apply_addition(conn, refused)
        pg_server.execute(db, """UPDATE "app-Data"."userEvents" SET "kindName" = 'k9' WHERE "eventId" = 9""")
        with conn.cursor() as cur:
            step = plan_additions(cur, items)[0]
        conn.rollback()
        assert step["statements"][0]["sql"].startswith('ALTER TABLE "app-Data"."userEvents" ADD CONSTRAINT')
        assert apply_addition(conn, step, lock_timeout="2s") == [s["sql"] for s in step["statements"]]
        with conn.cursor() as cur:
            again = plan_additions(cur, items)[0]
        conn.rollback()
        assert again["converged"] and apply_addition(conn, again) == []
        assert column(pg_server, db, EVENTS, "kindName")[1] is True
    finally:
        conn.close()


def test_defaults_the_server_prints_differently_still_converge(pg_server, db):
    items = [{"kind": "add_column", "table": "empty-Table", "column": "keepFor", "type": "interval",
              "default": "interval '1 day'"},
             {"kind": "set_default", "table": EVENTS, "column": "kindName", "default": "upper('a' || 'b')"},
             {"kind": "create_index", "table": EVENTS, "name": "userEvents_k0_idx", "columns": ["eventId"],
              "where": "\"kindName\" = 'k0'"}]
    first = module(pg_server, db, items)
    assert not first.get("failed"), first.get("msg")
    assert column(pg_server, db, '"empty-Table"', "keepFor")[2] == "'1 day'::interval"
    again = module(pg_server, db, items)
    assert not again.get("failed"), again.get("msg")
    assert not again["changed"] and all(s["converged"] for s in again["steps"])


def test_a_table_without_primary_key_reports_ctids(pg_server, db):
    pg_server.execute(db, 'CREATE TABLE "log-Lines" ("lineText" text); INSERT INTO "log-Lines" VALUES (\'a\'), (NULL)')
    res = module(pg_server, db, [{"kind": "set_not_null", "table": "log-Lines", "column": "lineText"}])
    assert res.get("failed") and res["steps"][0]["precheck"]["offending_rows"] == [{"pk": {"ctid": "(0,2)"}}]
    assert res["steps"][0]["precheck"]["rows"] == 2
