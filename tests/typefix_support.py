"""Helpers for the type-change tests: run a pgsafe module directly (no playbook), fingerprint tables."""
from __future__ import annotations

import json
from pathlib import Path

from tests.module_runs import GUARDED_MODULES, MODULE_TEST_GUARD_OVERRIDE, run_module, start_module  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent

EXPORTS = "bazaar-vid_exports"
ANALYTICS = "bazaar-vid_export_analytics"

PROD_CHANGES = [
    {"table": EXPORTS, "column": "id", "type": "uuid", "default": "gen_random_uuid()", "not_null": True},
    {"table": EXPORTS, "column": "user_id", "type": "varchar(255)", "not_null": True},
    {"table": EXPORTS, "column": "project_id", "type": "uuid", "not_null": True},
    {"table": ANALYTICS, "column": "export_id", "type": "uuid", "not_null": True},
]
PROD_FKS = [
    {"name": "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk", "table": EXPORTS, "columns": ["user_id"],
     "ref_table": "bazaar-vid_user", "ref_columns": ["id"], "on_delete": "cascade"},
    {"name": "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk", "table": EXPORTS, "columns": ["project_id"],
     "ref_table": "bazaar-vid_project", "ref_columns": ["id"], "on_delete": "cascade"},
    {"name": "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk", "table": ANALYTICS,
     "columns": ["export_id"], "ref_table": EXPORTS, "ref_columns": ["id"], "on_delete": "cascade"},
]


# One implementation of a direct module run, for every test (tests/module_runs.py).
spawn_module = start_module


def column_types(server, db: str, table: str) -> dict:
    rows = server.execute(db, "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                              "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                          ('"' + table.replace('"', '""') + '"',))
    return dict(rows)


def fks(server, db: str) -> dict:
    rows = server.execute(db, "SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
                              "WHERE contype = 'f' AND connamespace = 'public'::regnamespace")
    return {r[0]: (r[1], r[2]) for r in rows}


def table_content(server, db: str, table: str, cast_text: bool = True) -> dict:
    """{pk text: row jsonb as text with every value as text}: order- and type-independent content."""
    q = ("SELECT t.id::text, (SELECT jsonb_object_agg(k, v #>> '{}') FROM jsonb_each(to_jsonb(t)) e(k, v))::text "
         'FROM "' + table.replace('"', '""') + '" t')
    return dict(server.execute(db, q))


def schema_fingerprint(server, db: str) -> str:
    rows = server.execute(db, """SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                        pg_get_expr(d.adbin, d.adrelid)
                                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                   LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                                  WHERE n.nspname = 'public' ORDER BY 1, 2""")
    cons = server.execute(db, "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated "
                              "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2")
    idx = server.execute(db, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
    import hashlib
    return hashlib.sha256(json.dumps([rows, cons, idx], default=str).encode()).hexdigest()


def data_fingerprint(server, db: str, tables=(EXPORTS, ANALYTICS)) -> dict:
    out = {}
    for t in tables:
        content = table_content(server, db, t)
        import hashlib
        out[t] = (len(content), hashlib.sha256(json.dumps(sorted(content.items())).encode()).hexdigest())
    return out
