"""Hostile identifiers in inventory variables (fault-cases.md 22), fed through every role that takes
names from variables: schema_fix (tables, columns, FK names), table_merge (source, target, column map),
table_cleanup, auth_schema_removal (schemas), legacy_audit, backup (backup_objects), preflight
(planned tables) and validate.  Quotes, spaces, hyphens, unicode, semicolons and comment markers are
plain names: "bazaar-vid_user" and schema public stay intact, and a name that does not exist is
refused by name.
"""
from __future__ import annotations

import uuid

import pytest
from psycopg2 import sql

from tests.faults import faultlib as fl

# Whole playbook runs per case: part of `make faults`, not of `make test` (CI time).
pytestmark = pytest.mark.slow

INJECT = 'bazaar-vid_x"; DROP TABLE "bazaar-vid_user"; --'
FIX = 'Ünï "fix" tab le'
FIX_COL = 'Ref "Id"; --'
PARENT = "par\"ent; DROP SCHEMA public CASCADE; --"
FK = 'fk "x"; DROP TABLE "bazaar-vid_user"; --'
SRC = 'src "merge"; DROP TABLE "bazaar-vid_user"; --'
DST = 'dst ü "tgt"'
SRC_COL, DST_COL = 'Va"lue', "val ue ü"
LEGACY = 'legacy "audit"; --'
SCHEMA = 'auth"; DROP SCHEMA public CASCADE; --'


def q(name: str, schema: str = "public") -> str:
    """A qualified name as an inventory writes it: each part quoted, embedded quotes doubled."""
    return '"{0}"."{1}"'.format(schema.replace('"', '""'), name.replace('"', '""'))


def intact(server, db, before):
    """bazaar-vid_user, the public schema and every table outside the plan are exactly as before."""
    assert server.execute(db, "SELECT to_regnamespace('public') IS NOT NULL")[0][0]
    now = fl.fingerprint(server, db)
    assert now[fl.USER_TABLE] == before[fl.USER_TABLE]
    return now


def create_hostile_objects(server, db):
    ident = sql.Identifier
    parents = [str(uuid.uuid4()) for _ in range(3)]
    stmts = [
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(ident(INJECT)),
        sql.SQL("CREATE TABLE {} (id uuid PRIMARY KEY)").format(ident(PARENT)),
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} text NOT NULL)").format(ident(FIX), ident(FIX_COL)),
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} int)").format(ident(SRC), ident(SRC_COL)),
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} int)").format(ident(DST), ident(DST_COL)),
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, note text)").format(ident(LEGACY)),
        sql.SQL("CREATE SCHEMA {}").format(ident(SCHEMA)),
    ]
    for stmt in stmts:
        server.execute(db, stmt)
    for i, parent in enumerate(parents):
        server.execute(db, sql.SQL("INSERT INTO {} VALUES (%s)").format(ident(PARENT)), (parent,))
        server.execute(db, sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(ident(FIX)), (i, parent.upper()))
        server.execute(db, sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(ident(SRC)), (i, i * 10))
        server.execute(db, sql.SQL("INSERT INTO {} VALUES (%s, 'x')").format(ident(LEGACY)), (i,))


def hostile_plans():
    return {
        "schema_fix_plan": {
            "orphan_policy": "fail", "strategy": "rewrite",
            "changes": [{"table": q(FIX), "column": FIX_COL, "type": "uuid", "not_null": True}],
            "foreign_keys": [{"name": FK, "table": q(FIX), "columns": [FIX_COL], "ref_table": q(PARENT),
                              "ref_columns": ["id"], "on_delete": "restrict"}],
        },
        "table_merge_merges": [{"source": q(SRC), "target": q(DST), "policy": "fail",
                                "column_map": {"id": "id", SRC_COL: DST_COL}}],
        "table_cleanup_tables": [q(INJECT)],
        "auth_schema_removal_schemas": [SCHEMA],
        "auth_schema_removal_independent": False,
        "legacy_audit_tables": [q(LEGACY)],
        "legacy_audit_sample_seconds": 1,
        "validate_checks": ["foreign_keys", "invalid_indexes", "integrity"],
    }


@pytest.fixture
def hostile_db(pg_server):
    with pg_server.sprint90_database("prod") as db:
        create_hostile_objects(pg_server, db)
        yield db


def test_injection_in_a_plan_table_name_is_refused_by_name(pg_server, prod_db, tmp_path, rows_lost):
    """The brief's table name, written raw and written quoted (then it is simply a table that does not exist)."""
    env = fl.Env(tmp_path, {"prod": (pg_server, prod_db), "staging": (pg_server, "postgres")})
    before = fl.fingerprint(pg_server, prod_db)
    base = fl.plan("prod", "schema_fix")["schema_fix_plan"]
    for written, needle in ((f"public.{INJECT}", "has a double quote inside an unquoted part"),
                            (q(INJECT), 'does not exist')):
        plan = dict(base, changes=base["changes"] + [{"table": written, "column": "id", "type": "uuid"}])
        result = env.run("sprint90_prod.yml", {"schema_fix_plan": plan, **fl.NO_REHEARSAL,
                                               "confirm_database": prod_db}, extra_args=("--limit", "prod"))
        assert result.returncode != 0
        assert needle in result.flat, result.flat[-3000:]
        assert "bazaar-vid_x" in result.flat  # the error names the object
        assert "Start phase backup]" not in result.stdout
    assert fl.fingerprint(pg_server, prod_db) == before
    rows_lost(fl.rows_lost_between(before, pg_server, prod_db))


def test_backup_objects_with_quotes_are_plain_names(pg_server, hostile_db, tmp_path, rows_lost):
    env = fl.Env(tmp_path, {"prod": (pg_server, hostile_db), "staging": (pg_server, "postgres")})
    before = fl.fingerprint(pg_server, hostile_db)
    missing = env.run("backup.yml", {"backup_scope": "objects", "backup_objects": [f"public.{INJECT}x"]},
                      extra_args=("--limit", "prod"))
    assert missing.returncode != 0
    assert "bazaar-vid_x" in missing.flat and "quote" in missing.flat, missing.flat[-3000:]
    result = env.run("backup.yml", {"backup_scope": "objects", "backup_objects": [q(INJECT), q(FIX), q(LEGACY)]},
                     extra_args=("--limit", "prod"))
    assert result.returncode == 0, result.flat[-4000:]
    covers = pg_server.execute(hostile_db, "SELECT covers::text FROM pgsafe.backup WHERE verified "
                                           "ORDER BY taken_at DESC LIMIT 1")[0][0]
    assert "legacy" in covers and "DROP TABLE" in covers  # the names, recorded as data
    assert intact(pg_server, hostile_db, before) == before
    rows_lost(fl.rows_lost_between(before, pg_server, hostile_db))


def test_hostile_names_in_a_merge_plan_are_plain_names(pg_server, hostile_db, tmp_path, rows_lost):
    """cleanup.yml with only the merge: source, target and column map with quotes, spaces, unicode."""
    env = fl.Env(tmp_path, {"dev": (pg_server, hostile_db), "staging": (pg_server, "postgres")})
    before = fl.fingerprint(pg_server, hostile_db)
    plans = {"table_merge_merges": hostile_plans()["table_merge_merges"], "table_cleanup_tables": [],
             "auth_schema_removal_schemas": []}
    result = env.run("cleanup.yml", plans, extra_args=("--limit", "dev"))
    assert result.returncode == 0, result.flat[-5000:]
    server, db = pg_server, hostile_db
    assert server.execute(db, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(DST)))[0][0] == 3
    # The source is set aside under its recorded quarantine name (schema-prefixed), not dropped.
    moved = server.execute(db, "SELECT quarantine_schema, quarantine_name, row_count FROM pgsafe.quarantined_object "
                               "WHERE original_schema = 'public' AND original_name = %s", (SRC,))
    assert moved == [("pgsafe_quarantine", "public_" + SRC, 3)], moved
    assert server.execute(db, "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE c.relname = %s AND c.relkind = 'r'", ("public_" + SRC,)) == [("pgsafe_quarantine",)]
    assert server.execute(db, "SELECT to_regclass(%s)", ('public."' + SRC.replace('"', '""') + '"',)) == [(None,)]
    intact(server, db, before)
    lost = fl.rows_lost_between(before, server, db)
    rows_lost(lost)
    assert lost == 0


def test_hostile_names_through_every_changing_role(pg_server, hostile_db, tmp_path, rows_lost):
    """sprint90_dev.yml (schema_fix, table_cleanup, auth_schema_removal, validate; the merge has its own
    case) and legacy_audit.yml, every plan written with hostile names."""
    env = fl.Env(tmp_path, {"dev": (pg_server, hostile_db), "staging": (pg_server, "postgres")})
    before = fl.fingerprint(pg_server, hostile_db)
    users = pg_server.execute(hostile_db, 'SELECT count(*) FROM "bazaar-vid_user"')[0][0]
    result = env.run("sprint90_dev.yml", dict(hostile_plans(), table_merge_merges=[]), extra_args=("--limit", "dev"))
    assert result.returncode == 0, result.flat[-5000:]
    server, db = pg_server, hostile_db
    assert fl.column_type(server, db, f"public.{FIX}", FIX_COL) == "uuid"
    fk = server.execute(db, "SELECT convalidated FROM pg_constraint WHERE conname = %s", (FK,))
    assert fk == [(True,)]
    where = server.execute(db, "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE c.relname LIKE %s", ("bazaar-vid_x%",))
    assert where and all(schema == "pgsafe_quarantine" for (schema,) in where), where
    assert server.execute(db, "SELECT to_regnamespace(quote_ident(%s)) IS NULL", (SCHEMA,))[0][0]
    audit = env.run("legacy_audit.yml", {"legacy_audit_tables": [q(LEGACY)], "legacy_audit_sample_seconds": 1},
                    extra_args=("--limit", "dev"))
    assert audit.returncode == 0, audit.flat[-4000:]
    assert "legacy" in audit.flat
    assert server.execute(db, 'SELECT count(*) FROM "bazaar-vid_user"')[0][0] == users
    intact(server, db, before)
    lost = fl.rows_lost_between(before, server, db)
    rows_lost(lost)
    assert lost == 0
