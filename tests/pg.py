"""Test helpers shared by the suites: real Postgres, Sprint 90 databases, ansible-playbook runs.

No mocks: every database here is a real cluster (native binaries or a container, through
tools/pgclusters.py), every database a real CREATE DATABASE.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
from psycopg2 import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import pgclusters  # noqa: E402
import sprint90_fixtures  # noqa: E402

TEST_CLUSTER = ("test", int(os.environ.get("PGSAFE_PORT_TEST", "55440")))
SCRATCH_CLUSTER = ("scratch", int(os.environ.get("PGSAFE_PORT_SCRATCH", "55441")))


class Server:
    """A running test cluster: connect, create and drop databases."""

    def __init__(self, libpq: dict):
        self.libpq = libpq

    @property
    def port(self) -> int:
        return self.libpq["port"]

    def connect(self, dbname: str = "postgres", autocommit: bool = True):
        conn = psycopg2.connect(**dict(self.libpq, dbname=dbname))
        conn.autocommit = autocommit
        return conn

    def module_params(self, dbname: str) -> dict:
        """Connection options in the modules' vocabulary (login_*)."""
        return {"login_host": self.libpq["host"], "login_port": self.libpq["port"],
                "login_user": self.libpq["user"], "login_password": self.libpq["password"],
                "login_db": dbname, "ssl_mode": "disable"}

    def execute(self, dbname: str, statement, params=None):
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else None

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                if template:
                    stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
                cur.execute(stmt)
        finally:
            conn.close()
        return name

    def drop_database(self, name: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        finally:
            conn.close()

    def ensure_template(self, variant: str, scale: float = 1.0) -> str:
        """A template database seeded as ``variant`` at ``scale`` (created once per cluster).

        Its name carries a short hash of the fixture's content (``ddl(variant)`` and the data statements
        at ``scale``): a cluster kept from an earlier session never serves a template of older fixtures.
        """
        name = f"tpl_sprint90_{variant}_{str(scale).replace('.', '_')}_{sprint90_fixtures.content_hash(variant, scale)}"
        lock = self.connect()  # several pytest sessions may share the cluster: build each template once
        try:
            with lock.cursor() as cur:
                cur.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
                cur.execute("SELECT datistemplate FROM pg_database WHERE datname = %s", (name,))
                row = cur.fetchone()
                if row and not row[0]:  # a half-built template from an interrupted session
                    self.drop_database(name)
                if not row or not row[0]:
                    self.create_database(name)
                    conn = self.connect(name, autocommit=False)
                    try:
                        sprint90_fixtures.seed(conn, variant, scale)
                    finally:
                        conn.close()
                    cur.execute(sql.SQL("ALTER DATABASE {} WITH is_template true").format(sql.Identifier(name)))
        finally:
            lock.close()
        return name

    @contextmanager
    def sprint90_database(self, variant: str, scale: float = 1.0):
        """A fresh copy of a Sprint 90 database, dropped afterwards."""
        name = self.create_database(template=self.ensure_template(variant, scale))
        try:
            yield name
        finally:
            self.drop_database(name)


def inventory_head(directory: Path) -> list[str]:
    """The first lines of a test inventory (``all: vars:``): local connection to the test clusters as postgres,
    the password in a 0600 file in ``directory`` read by a lookup (never on a command line), the window always
    open, staging as the scratch host. Callers append more ``all`` vars (4 spaces), then ``children``."""
    directory.mkdir(parents=True, exist_ok=True)
    pwfile = directory / "pg_password"
    pwfile.write_text(pgclusters.password())
    pwfile.chmod(0o600)
    return ["all:", "  vars:", "    pg_host: 127.0.0.1", "    pg_user: postgres", "    pg_sslmode: disable",
            f"    pg_password: \"{{{{ lookup('ansible.builtin.file', '{pwfile}') }}}}\"",
            "    ansible_connection: local", "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
            "    pgsafe_maintenance_window: always", "    pgsafe_scratch_host: staging"]


def fleet_inventory_head(directory: Path) -> list[str]:
    """``inventory_head`` for a fleet: each database its own environment, staging the rehearsal copy, backups
    under ``directory`` per host; then the caller's ``children``. ``link_prod_plan_files`` gives its group
    the Sprint 90 prod plan files."""
    return inventory_head(directory) + [
        "    pgsafe_environment: \"{{ inventory_hostname }}\"", "    pgsafe_rehearsal_host: staging",
        f"    backup_destinations: [\"{directory}/b1/{{{{ inventory_hostname }}}}\", "
        f"\"{directory}/b2/{{{{ inventory_hostname }}}}\"]"]


def link_prod_plan_files(directory: Path, group: str = "plan") -> None:
    """group_vars/<group>/ of an inventory in ``directory``: the Sprint 90 prod plan files (schema_fix, cleanup)."""
    plans = directory / "group_vars" / group
    plans.mkdir(parents=True, exist_ok=True)
    for name in ("schema_fix.yml", "cleanup.yml"):
        (plans / name).symlink_to(ROOT / "inventories" / "local" / "host_vars" / "prod" / name)


def write_inventory(directory: Path, hosts: dict[str, tuple[Server, str]], extra_vars: dict | None = None,
                    shipped_plans: bool = False) -> Path:
    """An inventory like inventories/local whose hosts are databases of test clusters.

    ``hosts`` maps an inventory host name (prod, dev, staging, ...) to (server, database).  The
    password goes to a 0600 file next to it, read by a lookup: never on a command line.
    ``shipped_plans`` links inventories/local/host_vars (the Sprint 90 plans) next to it.
    """
    lines = inventory_head(directory)
    for key, value in (extra_vars or {}).items():
        lines.append(f"    {key}: {json.dumps(value)}")
    lines += ["  children:", "    sprint90:", "      hosts:"]
    for name, (server, dbname) in hosts.items():
        lines += [f"        {name}:", f"          pg_port: {server.port}", f"          pg_database: {json.dumps(dbname)}",
                  f"          pgsafe_environment: {name}"]
    path = directory / "hosts.yml"
    path.write_text("\n".join(lines) + "\n")
    if shipped_plans:
        (directory / "host_vars").symlink_to(ROOT / "inventories" / "local" / "host_vars")
    return path


# Every process using a cluster holds a shared lock on its session file for as long as it runs. A
# cluster that a test process found stopped and started is marked; when a test session ends
# (tests/conftest.py), it stops the marked clusters nobody else holds, so `make test` leaves no
# server behind and never stops one another session is using. PGSAFE_KEEP_CLUSTERS=1 keeps them.
_SESSION_LOCKS: dict = {}


def _session_files(name: str) -> tuple:
    pgclusters.DATA_ROOT.mkdir(parents=True, exist_ok=True)
    return (pgclusters.DATA_ROOT / f".{name}.sessions", pgclusters.DATA_ROOT / f".{name}.started-by-tests")


def start_server(name_port=TEST_CLUSTER) -> Server:
    name, port = name_port
    lock_path, marker = _session_files(name)
    if (name, port) not in _SESSION_LOCKS:
        handle = open(lock_path, "a")  # noqa: SIM115 - held open until the session leaves
        fcntl.flock(handle, fcntl.LOCK_SH)  # waits while a leaving session stops this cluster
        _SESSION_LOCKS[(name, port)] = handle
    was_running = pgclusters._port_open(port)
    server = Server(pgclusters.start(name, port))
    if not was_running:
        marker.touch()
    return server


def leave_clusters() -> None:
    """Stop the clusters a test process started that no other process is using; release the rest."""
    while _SESSION_LOCKS:
        (name, port), handle = _SESSION_LOCKS.popitem()
        _, marker = _session_files(name)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another session still uses it: the last one out stops it
        else:
            if marker.exists():
                pgclusters.stop(name, port)
                marker.unlink()
        finally:
            handle.close()


def run_playbook(playbook: str, inventory: str = "inventories/local", extra_vars: dict | None = None,
                 check: bool = False, limit: str | None = None, env: dict | None = None,
                 timeout: int = 900) -> subprocess.CompletedProcess:
    """ansible-playbook from the project root, as users run it."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", inventory, f"playbooks/{playbook}"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    if check:
        cmd.append("--check")
    if limit:
        cmd += ["--limit", limit]
    full_env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                    ANSIBLE_NOCOLOR="1")
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
                          check=False)
