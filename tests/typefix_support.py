"""Helpers for the type-change tests: run a pgsafe module directly (no playbook), fingerprint tables."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_BOOT = """
import sys, runpy
import ansible.module_utils
ansible.module_utils.__path__.append({mu!r})
sys.argv = [{mod!r}, {args!r}]
runpy.run_path({mod!r}, run_name='__main__')
"""

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


# Modules that refuse to change data without the backup that covers it (or a named override).
GUARDED_MODULES = ("pgsafe_column_types", "pgsafe_table_merge", "pgsafe_table_retire", "pgsafe_schema_removal")
MODULE_TEST_GUARD_OVERRIDE = "module-level test: the data is a throwaway copy"


def run_module(name: str, args: dict, check: bool = False, diff: bool = False, timeout: int = 300) -> dict:
    """Run library/<name>.py like Ansible does (args file), return its JSON result."""
    if name in GUARDED_MODULES and not check and "backup_id" not in args and "guard_override" not in args:
        # Module-level cases: the backup guard has its own cases (a missing or wrong backup_id is refused).
        args = dict(args, guard_override=MODULE_TEST_GUARD_OVERRIDE)
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check, _ansible_diff=diff)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(payload, handle)
        path = handle.name
    try:
        code = _BOOT.format(mu=str(ROOT / "module_utils"), mod=str(ROOT / "library" / f"{name}.py"), args=path)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              check=False)
    finally:
        Path(path).unlink()
    out = proc.stdout.strip().splitlines()
    try:
        return json.loads(out[-1]) if out else {"failed": True, "msg": proc.stderr}
    except json.JSONDecodeError:
        return {"failed": True, "msg": proc.stdout + proc.stderr}


def spawn_module(name: str, args: dict):
    """Start a module run in the background (for kill tests); returns the Popen."""
    if name in GUARDED_MODULES and "backup_id" not in args and "guard_override" not in args:
        args = dict(args, guard_override=MODULE_TEST_GUARD_OVERRIDE)
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=False, _ansible_diff=False)}
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(payload, handle)
    handle.close()
    code = _BOOT.format(mu=str(ROOT / "module_utils"), mod=str(ROOT / "library" / f"{name}.py"), args=handle.name)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
