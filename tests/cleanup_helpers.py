"""Helpers for the cleanup tests: run a pgsafe module directly (as Ansible would), count and hash tables."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_SQL = (ROOT / "files/reference/bazaar_vid.sql").read_text()

# dev's old api_usage_metric onto the code's "bazaar-vid_api_usage_metric": the same twelve camelCase columns
DEV_MAP = {name: name for name in ("id", "provider", "model", "userId", "projectId", "toolName", "success",
                                   "responseTime", "tokenCount", "errorType", "errorMessage", "timestamp")}

_WRAPPER = """
import sys, ansible.module_utils
ansible.module_utils.__path__.append({utils!r})
import runpy
runpy.run_path({module!r}, run_name='__main__')
"""


# Modules that refuse to change data without the backup that covers it (or a named override).
GUARDED_MODULES = ("pgsafe_column_types", "pgsafe_table_merge", "pgsafe_table_retire", "pgsafe_schema_removal")
MODULE_TEST_GUARD_OVERRIDE = "module-level test: the data is a throwaway copy"


def run_module(name: str, params: dict, check: bool = False, diff: bool = False, timeout: int = 120) -> dict:
    """Run library/<name>.py the way Ansible does (args file), return its JSON result (+ rc)."""
    if name in GUARDED_MODULES and not check and "backup_id" not in params and "guard_override" not in params:
        # Module-level cases: the backup guard has its own cases (a missing or wrong backup_id is refused).
        params = dict(params, guard_override=MODULE_TEST_GUARD_OVERRIDE)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(params, _ansible_check_mode=check, _ansible_diff=diff)}, handle)
        argsfile = handle.name
    code = _WRAPPER.format(utils=str(ROOT / "module_utils"), module=str(ROOT / "library" / f"{name}.py"))
    try:
        proc = subprocess.run([sys.executable, "-c", code, argsfile], capture_output=True, text=True,
                              timeout=timeout, check=False)
    finally:
        Path(argsfile).unlink()
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"module {name} printed no JSON: {proc.stdout[-2000:]} {proc.stderr[-2000:]}") from None
    result["rc"] = proc.returncode
    return result


def start_module(name: str, params: dict) -> subprocess.Popen:
    """Start a module run in the background (for interruption tests)."""
    if name in GUARDED_MODULES and "backup_id" not in params and "guard_override" not in params:
        params = dict(params, guard_override=MODULE_TEST_GUARD_OVERRIDE)
    handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
    json.dump({"ANSIBLE_MODULE_ARGS": params}, handle)
    handle.close()
    code = _WRAPPER.format(utils=str(ROOT / "module_utils"), module=str(ROOT / "library" / f"{name}.py"))
    return subprocess.Popen([sys.executable, "-c", code, handle.name], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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
