"""What the Molecule verifiers need: the containers' databases, the prepared snapshots, the Sprint 90
plans of each host, which roles the converged playbooks ran on it, and the code's reference schema.

Read by molecule/<scenario>/tests/conftest.py (pytest-testinfra runs them with Molecule's inventory).
Everything comes from files: Molecule's instance config, inventories/local/host_vars/<host>/*.yml,
the playbooks the scenario's converge.yml imports, tools/sprint90_fixtures.py.
"""
from __future__ import annotations

import json
import os
import re
import sys
from functools import cache
from pathlib import Path

import psycopg2
import yaml
from psycopg2 import sql

SHARED = Path(__file__).resolve().parent
PROJECT = SHARED.parent.parent
sys.path.insert(0, str(PROJECT / "tools"))
sys.path.insert(0, str(SHARED))

import pgstate  # noqa: E402
import sprint90_fixtures  # noqa: E402

REFERENCE_DB = "pgsafe_molecule_reference"
PRODUCT_SCHEMAS = ("pgsafe", "pgsafe_quarantine")
ROLE_KEYS = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")


def ephemeral() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


@cache
def instances() -> dict[str, dict]:
    """Molecule's instance config, by host name (written by molecule/shared/create.yml)."""
    path = os.environ.get("MOLECULE_INSTANCE_CONFIG") or str(ephemeral() / "instance_config.yml")
    with open(path, encoding="utf-8") as handle:
        return {i["instance"]: i for i in yaml.safe_load(handle) or []}


def password() -> str:
    return (ephemeral() / "secrets" / "pg_password").read_text().strip()


def connect(host: str, dbname: str = "bazaar_vid", autocommit: bool = True):
    inst = instances()[host]
    conn = psycopg2.connect(host=inst["address"], port=inst["port"], user="postgres", password=password(),
                            dbname=dbname, connect_timeout=10, application_name="pgsafe-molecule-verify")
    conn.autocommit = autocommit
    return conn


def query(host: str, statement, params=None, dbname: str = "bazaar_vid") -> list[tuple]:
    conn = connect(host, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


@cache
def prepared(host: str) -> dict:
    """The snapshot taken right after seeding (with every row's hash)."""
    with open(ephemeral() / "state" / f"{host}.prepared.json", encoding="utf-8") as handle:
        return json.load(handle)


def current(host: str, with_rows: bool = True) -> dict:
    conn = connect(host, autocommit=False)
    try:
        return json.loads(json.dumps(pgstate.snapshot(conn, with_rows=with_rows), default=str))
    finally:
        conn.close()


@cache
def plan(host: str) -> dict:
    """The host's Sprint 90 plan: every inventories/local/host_vars/<host>/*.yml merged."""
    merged: dict = {}
    directory = PROJECT / "inventories" / "local" / "host_vars" / host
    for path in sorted(directory.glob("*.yml")) if directory.is_dir() else []:
        with open(path, encoding="utf-8") as handle:
            merged.update(yaml.safe_load(handle) or {})
    return merged


def _roles_in(node, found: set[str]) -> None:
    if isinstance(node, dict):
        for key in ROLE_KEYS:
            value = node.get(key)
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                found.add(value["name"])
                # run_phase times a phase and runs the role named by run_phase_role.
                phase_role = (node.get("vars") or {}).get("run_phase_role")
                if value["name"] == "run_phase" and isinstance(phase_role, str):
                    found.add(phase_role)
        for value in node.values():
            _roles_in(value, found)
    elif isinstance(node, list):
        for item in node:
            _roles_in(item, found)


_TEMPLATED = re.compile(r"^\{\{\s*(\w+)\s*\|\s*default\(\s*'([^']*)'\s*\)\s*\}\}$")


def _resolve(value, variables: dict) -> str:
    """'{{ name | default('x') }}' as the play would see it with ``variables`` (import vars)."""
    text = str(value)
    match = _TEMPLATED.match(text.strip())
    return str(variables.get(match.group(1), match.group(2))) if match else text


def _plays_of(path: Path, variables: dict) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        plays = yaml.safe_load(handle)
    out = []
    for play in plays:
        imported = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if imported:  # an entry point: the generic playbook with its import vars
            out += _plays_of((path.parent / imported).resolve(), dict(variables, **(play.get("vars") or {})))
            continue
        roles: set[str] = set()
        _roles_in(play, roles)
        merged = dict(variables, **(play.get("vars") or {}))
        out.append({"playbook": path.stem, "hosts": _resolve(play.get("hosts"), merged),
                    "pgsafe_playbook": _resolve(merged.get("pgsafe_playbook", path.stem), merged), "roles": roles})
    return out


@cache
def converged_plays(scenario_dir: str) -> list[dict]:
    """[{playbook, hosts, pgsafe_playbook, roles}] for every play the scenario's converge.yml imports (entry
    points followed to the generic playbooks they import, with their vars)."""
    out = []
    with open(Path(scenario_dir) / "converge.yml", encoding="utf-8") as handle:
        converge = yaml.safe_load(handle)
    for entry in converge:
        target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        path = (Path(scenario_dir) / target).resolve()
        if path.parent.name != "playbooks":
            continue  # the scenario's own plays (guards)
        out += _plays_of(path, {})
    return out


def roles_on(scenario_dir: str, host: str) -> set[str]:
    """Roles that ran on the host: named in its plays, and (the pipeline runs the plan's steps) the roles of
    the phases its runs' reports timed."""
    roles: set[str] = set()
    root = Path(os.environ.get("PGSAFE_ARTIFACTS_ROOT", "artifacts"))
    for play in converged_plays(scenario_dir):
        if host in re.split(r"[,:\s]+", play["hosts"]) or play["hosts"] == "all":
            roles |= play["roles"]
            # every run of it (the idempotence converge's re-run has nothing left to do: its timeline is short)
            for report in sorted((root / host / play["pgsafe_playbook"]).glob("*/report.json")):
                roles |= {p.get("role") for p in json.loads(report.read_text()).get("timeline", []) if p.get("role")}
    return roles


def ensure_reference(host: str) -> str:
    """The code's schema (sprint90_fixtures.ddl('reference')) in a database of the host's server."""
    conn = connect(host, "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (REFERENCE_DB,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (REFERENCE_DB,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(REFERENCE_DB)))
                ref = connect(host, REFERENCE_DB)
                try:
                    with ref.cursor() as rcur:
                        rcur.execute(sprint90_fixtures.ddl("reference"))
                finally:
                    ref.close()
    finally:
        conn.close()
    return REFERENCE_DB


def drop_reference(host: str) -> None:
    conn = connect(host, "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(REFERENCE_DB)))
    finally:
        conn.close()


def table_definition(host: str, schema: str, table: str, dbname: str = "bazaar_vid") -> dict | None:
    """Columns (order-free), constraints with validity, and indexes without their names."""
    conn = connect(host, dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(cur),))
            oid = cur.fetchone()[0]
            if oid is None:
                return None
            cur.execute("""SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                  pg_get_expr(d.adbin, d.adrelid)
                             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                            WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped""", (oid,))
            columns = {r[0]: {"type": r[1], "not_null": r[2], "default": r[3]} for r in cur.fetchall()}
            cur.execute("""SELECT conname, contype::text, pg_get_constraintdef(oid), convalidated
                             FROM pg_constraint WHERE conrelid = %s::regclass""", (oid,))
            constraints = {r[0]: {"type": r[1], "definition": r[2], "valid": r[3]} for r in cur.fetchall()}
            cur.execute("""SELECT regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE (UNIQUE )?INDEX \\S+ ON ',
                                                 'CREATE \\1INDEX ON '), i.indisvalid
                             FROM pg_index i WHERE i.indrelid = %s::regclass""", (oid,))
            indexes = sorted([r[0], r[1]] for r in cur.fetchall())
        return {"columns": columns, "constraints": constraints, "indexes": indexes}
    finally:
        conn.close()


def reference_tables() -> list[str]:
    """Tables the code declares (CREATE TABLE names in the reference DDL)."""
    return re.findall(r'CREATE TABLE "([^"]+)"', sprint90_fixtures.ddl("reference"))


def split_name(qualified: str) -> tuple[str, str]:
    schema, _, table = qualified.partition(".")
    return (schema, table) if table else ("public", schema)


def regclass_exists(host: str, schema: str, table: str) -> bool:
    return query(host, "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
                     (schema, table))[0][0]


def quarantined_rows(host: str) -> dict[str, set[str]]:
    """Row hashes held in pgsafe.quarantine_row (not restored), per source table."""
    if not regclass_exists(host, "pgsafe", "quarantine_row"):
        return {}
    out: dict[str, set[str]] = {}
    for schema, table, digest in query(host, "SELECT source_schema, source_table, md5(row_data::text) "
                                                 "FROM pgsafe.quarantine_row WHERE restored_at IS NULL"):
        out.setdefault(f"{schema}.{table}", set()).add(digest)
    return out


def relocated_tables(host: str) -> dict[str, str]:
    """original schema.table -> quarantine schema.table, for tables set aside and not restored/purged."""
    if not regclass_exists(host, "pgsafe", "quarantined_object"):
        return {}
    return {f"{r[0]}.{r[1]}": f"{r[2]}.{r[3]}" for r in query(host, """
        SELECT original_schema, original_name, quarantine_schema, quarantine_name FROM pgsafe.quarantined_object
         WHERE restored_at IS NULL AND purged_at IS NULL AND kind = 'table'""")}


def verified_backups(host: str) -> list[dict]:
    if not regclass_exists(host, "pgsafe", "backup"):
        return []
    return [{"backup_id": r[0], "covers": r[1], "locations": r[2]} for r in query(host, """
        SELECT backup_id, covers, locations FROM pgsafe.backup WHERE verified AND restore_tested
         ORDER BY taken_at""")]


def covered_by_backup(host: str, schema: str) -> bool:
    for backup in verified_backups(host):
        for cover in backup["covers"]:
            if cover.get("type") == "database" or (cover.get("type") == "schema" and cover.get("schema") == schema):
                return True
    return False

def lost_rows(host: str, now: dict, removed_schemas=(), merge_targets=()) -> tuple[dict, dict]:
    """Prepared rows that are nowhere now, and tables whose counts do not add up.

    A prepared row counts as kept when its hash is in its table, in pgsafe.quarantine_row for that
    table, in the quarantine table it was set aside as (pgsafe.quarantined_object), or -- for schemas
    the plan removes -- when a verified, restore-tested backup covers the schema.  Tables that are not
    merge targets must hold exactly before - quarantined rows.
    """
    before = prepared(host)
    quarantined = quarantined_rows(host)
    relocated = relocated_tables(host)
    lost, miscounted = {}, {}
    for table, hashes in before["rows"].items():
        schema = table.split(".", 1)[0]
        if schema in PRODUCT_SCHEMAS:
            continue
        live = now["rows"].get(table, [])
        present = set(live) | quarantined.get(table, set())
        if table in relocated:
            present |= set(now["rows"].get(relocated[table], []))
        missing = [h for h in hashes if h not in present]
        if missing and schema in removed_schemas and table not in now["rows"] and covered_by_backup(host, schema):
            continue
        if missing:
            lost[table] = len(missing)
        if table in now["rows"] and table not in merge_targets:
            if len(live) + len(quarantined.get(table, ())) != len(hashes):
                miscounted[table] = (len(hashes), len(live), len(quarantined.get(table, ())))
    return lost, miscounted
