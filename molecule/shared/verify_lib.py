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


@cache
def converged_plays(scenario_dir: str) -> list[dict]:
    """[{playbook, hosts, pgsafe_playbook, roles}] for every play the scenario's converge.yml imports."""
    out = []
    with open(Path(scenario_dir) / "converge.yml", encoding="utf-8") as handle:
        converge = yaml.safe_load(handle)
    for entry in converge:
        target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        path = (Path(scenario_dir) / target).resolve()
        if path.parent.name != "playbooks":
            continue  # the scenario's own plays (guards)
        with open(path, encoding="utf-8") as handle:
            plays = yaml.safe_load(handle)
        for play in plays:
            roles: set[str] = set()
            _roles_in(play, roles)
            out.append({"playbook": path.stem, "hosts": str(play.get("hosts")),
                        "pgsafe_playbook": (play.get("vars") or {}).get("pgsafe_playbook", path.stem),
                        "roles": roles})
    return out


def roles_on(scenario_dir: str, host: str) -> set[str]:
    roles: set[str] = set()
    for play in converged_plays(scenario_dir):
        if host in re.split(r"[,:\s]+", play["hosts"]) or play["hosts"] == "all":
            roles |= play["roles"]
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
