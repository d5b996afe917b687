"""Helpers for the cleanup tests: run a pgsafe module directly (as Ansible would), count and hash tables."""
from __future__ import annotations

from pathlib import Path

from psycopg2 import sql

# One implementation of a direct module run, for every test (tests/module_runs.py).
from tests.module_runs import GUARDED_MODULES, MODULE_TEST_GUARD_OVERRIDE, run_module, start_module  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_SQL = (ROOT / "files/reference/bazaar_vid.sql").read_text()

# dev's old api_usage_metric onto the code's "bazaar-vid_api_usage_metric": the same twelve camelCase columns
DEV_MAP = {name: name for name in ("id", "provider", "model", "userId", "projectId", "toolName", "success",
                                   "responseTime", "tokenCount", "errorType", "errorMessage", "timestamp")}

def rel(schema: str, name: str):
    return sql.SQL("{0}.{1}").format(sql.Identifier(schema), sql.Identifier(name))


def count(server, db, schema, name) -> int:
    with server.connect(db) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {0}").format(rel(schema, name)))
        return cur.fetchone()[0]


def table_hash(server, db, schema, name) -> tuple[int, str]:
    """(rows, md5 of the sorted row texts): content identity, independent of physical order."""
    with server.connect(db) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                            "FROM {0} t").format(rel(schema, name)))
        return tuple(cur.fetchone())


def exists(server, db, schema, name) -> bool:
    with server.connect(db) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL", (schema, name))
        return cur.fetchone()[0]


def schema_exists(server, db, schema) -> bool:
    return bool(server.execute(db, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)))


def quarantined(server, db, name, schema="public"):
    """(quarantine_schema, quarantine_name) of the live quarantine record of a table, or None."""
    rows = server.execute(db, "SELECT quarantine_schema, quarantine_name FROM pgsafe.quarantined_object "
                              "WHERE original_schema = %s AND original_name = %s AND restored_at IS NULL "
                              "AND purged_at IS NULL ORDER BY id DESC LIMIT 1", (schema, name))
    return tuple(rows[0]) if rows else None


def all_table_hashes(server, db) -> dict:
    """Content hash of every user table outside the product schemas, keyed by schema.name."""
    rows = server.execute(db, "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', "
                              "'pgsafe', 'pgsafe_quarantine')")
    return {f"{s}.{t}": table_hash(server, db, s, t) for s, t in rows}
