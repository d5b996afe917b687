"""Helpers of the playbook-level fault suite: inventories with the shipped plans, playbook runs
that can be killed, data fingerprints, secret scans.

Everything runs against fresh databases of the shared test cluster (or a dedicated one); artifacts
and backups go under the test's tmp_path, never into the project directory.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from ansible.module_utils import pgsafe_fingerprint as fpmod
from tests import pg

ROOT = Path(__file__).resolve().parents[2]
LOCAL_HOST_VARS = ROOT / "inventories" / "local" / "host_vars"
USER_TABLE = "public.bazaar-vid_user"
EXPORTS = "public.bazaar-vid_exports"
ANALYTICS = "public.bazaar-vid_export_analytics"
MERGE_SOURCE = "public.api_usage_metric"
# A prod run of a world with no staging copy: the rehearsal gate overridden by name, with its reason.
NO_REHEARSAL = {"pgsafe_overrides": {"rehearsal": "fault test: no staging copy in this world"}}
CLEANUP_TABLES = ("public.bazaar-vid_component_error", "public.bazaar-vid_patch",
                  "public.bazaar-vid_scene_plan", "public.bazaar-vid_scene_specs", "public.api_usage_metric")


def flat(text: str) -> str:
    """Output with YAML/line wrapping undone (messages are searched as one line)."""
    return " ".join(text.split())


class Env:
    """One test's world: an inventory (hosts -> databases), its artifacts and backup directories."""

    def __init__(self, tmp_path: Path, hosts: dict, extra_vars: dict | None = None, host_vars: bool = True):
        self.tmp = tmp_path
        self.hosts = hosts
        self.inv_dir = tmp_path / "inv"
        self.inventory = pg.write_inventory(self.inv_dir, hosts, extra_vars)
        if host_vars:  # the shipped Sprint 90 plans (staging links to prod's files, as in the template)
            shutil.copytree(LOCAL_HOST_VARS, self.inv_dir / "host_vars", symlinks=True, dirs_exist_ok=True)
        self.artifacts = tmp_path / "artifacts"
        self.backups = [tmp_path / "bk1", tmp_path / "bk2"]
        self.password = (self.inv_dir / "pg_password").read_text()
        self.runs = 0

    def base_vars(self) -> dict:
        return {"backup_destinations": [str(self.backups[0]), str(self.backups[1])]}

    def cmd(self, playbook: str, extra_vars: dict | None = None, extra_args: tuple = ()) -> list[str]:
        ev = self.base_vars()
        ev.update(extra_vars or {})
        return [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(self.inventory),
                f"playbooks/{playbook}", "-e", json.dumps(ev), *extra_args]

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", PGSAFE_ARTIFACTS_ROOT=str(self.artifacts))
        env.pop("PGPASSWORD", None)
        env.update(extra or {})
        return env

    def run(self, playbook: str, extra_vars: dict | None = None, extra_args: tuple = (), env: dict | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
        self.runs += 1
        result = subprocess.run(self.cmd(playbook, extra_vars, extra_args), cwd=ROOT, env=self.env(env),
                                capture_output=True, text=True, timeout=timeout, check=False)
        result.flat = flat(result.stdout + result.stderr)
        return result

    def start(self, playbook: str, extra_vars: dict | None = None, env: dict | None = None,
              out: Path | None = None) -> subprocess.Popen:
        """A playbook run in its own process group (kill_group() kills it and every child)."""
        self.runs += 1
        out = out or self.tmp / f"run{self.runs}.out"
        handle = open(out, "w")  # noqa: SIM115 - closed by the caller's process end
        proc = subprocess.Popen(self.cmd(playbook, extra_vars), cwd=ROOT, env=self.env(env), stdout=handle,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        proc.out_path = out
        return proc

    def rehearse(self, **extra) -> subprocess.CompletedProcess:
        result = self.run("sprint90_rehearsal.yml", extra)
        assert result.returncode == 0, result.stdout[-6000:]
        return result

    def prod(self, **extra) -> subprocess.CompletedProcess:
        extra.setdefault("confirm_database", self.hosts["prod"][1])
        return self.run("sprint90_prod.yml", extra)

    def run_dirs(self) -> list[Path]:
        return sorted(p for p in self.artifacts.glob("*/*/*") if p.is_dir() and not p.is_symlink())


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the playbook and every process it started (its own session/process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def wait_for(predicate, timeout: float = 240.0, interval: float = 0.05, proc: subprocess.Popen | None = None):
    """Poll until predicate() is truthy; fail if the run ended first or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError("the run ended (rc={0}) before the awaited moment: {1}".format(
                proc.returncode, flat(Path(proc.out_path).read_text())[-3000:]))
        time.sleep(interval)
    raise AssertionError("timed out waiting")


def current_phase(server: pg.Server, db: str) -> str | None:
    """The phase the run's journal says is in progress (started, not finished), if any."""
    try:
        rows = server.execute(db, "SELECT to_regclass('pgsafe.journal') IS NOT NULL")
        if not rows[0][0]:
            return None
        rows = server.execute(db, "SELECT step, status FROM pgsafe.journal ORDER BY id DESC LIMIT 1")
    except Exception:  # noqa: BLE001 - the schema may be half-created by the run being watched
        return None
    return rows[0][0] if rows and rows[0][1] == "started" else None


def pgsafe_sessions(server: pg.Server, db: str, like: str = "%") -> list:
    return server.execute("postgres", "SELECT pid, state, left(query, 200) FROM pg_stat_activity "
                                      "WHERE datname = %s AND application_name LIKE 'pgsafe%%' "
                                      "AND pid <> pg_backend_pid() AND query ILIKE %s", (db, like))


def fingerprint(server: pg.Server, db: str, tables=None) -> dict:
    """{table: (rows, hash)} of every user table outside the product schemas."""
    conn = server.connect(db, autocommit=True)
    try:
        fp = fpmod.fingerprint(conn, tables=tables)
    finally:
        conn.close()
    return {key: (entry["rows"], entry["hash"]) for key, entry in fp["tables"].items()}


def quarantined_rows(server: pg.Server, db: str) -> int:
    if not server.execute(db, "SELECT to_regclass('pgsafe.quarantine_row') IS NOT NULL")[0][0]:
        return 0
    return server.execute(db, "SELECT count(*) FROM pgsafe.quarantine_row")[0][0]


def quarantine_schema_rows(server: pg.Server, db: str) -> int:
    """Rows held by tables set aside in pgsafe_quarantine (retired tables keep their rows)."""
    tables = server.execute(db, "SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables "
                                "WHERE schemaname = 'pgsafe_quarantine'")
    return sum(server.execute(db, f"SELECT count(*) FROM {t}")[0][0] for (t,) in tables)


def rows_lost_between(before: dict, server: pg.Server, db: str) -> int:
    """Rows missing now, counting rows kept in quarantine (rows and set-aside tables) as present."""
    after = fingerprint(server, db)
    before_total = sum(rows for rows, _ in before.values())
    after_total = sum(rows for rows, _ in after.values())
    kept = quarantined_rows(server, db) + quarantine_schema_rows(server, db)
    return max(0, before_total - after_total - kept)


def column_type(server: pg.Server, db: str, table: str, column: str) -> str:
    schema, name = table.split(".", 1)
    return server.execute(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = format('%%I.%%I', %s::text, %s::text)::regclass AND attname = %s",
                          (schema, name, column))[0][0]


def latest_report(env: Env, environment: str, playbook: str) -> dict:
    path = env.artifacts / environment / playbook / "latest" / "report.json"
    return json.loads(path.read_text())


def plan(host: str, topic: str) -> dict:
    return yaml.safe_load((LOCAL_HOST_VARS / host / f"{topic}.yml").read_text())


class PsSampler:
    """Samples `ps` (full width) and the environment of the pg_dump / pg_restore / psql processes that
    descend from a process whose command line contains ``marker`` (our ansible-playbook run)."""

    def __init__(self, marker: str = "", interval: float = 0.05):
        self.marker = marker
        self.interval = interval
        self.args: set[str] = set()
        self.environs: dict[int, bytes] = {}
        self.passfile_modes: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _ours(self, pid: int, procs: dict) -> bool:
        seen = set()
        while pid in procs and pid not in seen:
            seen.add(pid)
            ppid, args = procs[pid]
            if self.marker and self.marker in args:
                return True
            pid = ppid
        return not self.marker

    def _loop(self):
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eww", "-o", "pid=,ppid=,args="], capture_output=True, text=True,
                                 check=False).stdout
            procs = {}
            for line in out.splitlines():
                parts = line.split(None, 2)
                if len(parts) == 3:
                    procs[int(parts[0])] = (int(parts[1]), parts[2])
            for pid, (_, args) in procs.items():
                if not self._ours(pid, procs):
                    continue
                self.args.add(args)
                if any(tool in args for tool in ("pg_dump", "pg_restore", "psql")) and pid not in self.environs:
                    try:
                        raw = Path(f"/proc/{pid}/environ").read_bytes()
                    except OSError:
                        continue
                    self.environs[pid] = raw
                    for entry in raw.split(b"\0"):
                        if entry.startswith(b"PGPASSFILE="):
                            path = entry.split(b"=", 1)[1].decode()
                            try:
                                self.passfile_modes[path] = os.stat(path).st_mode
                            except OSError:
                                pass
            time.sleep(self.interval)


def passfiles_of(environs: dict) -> set[str]:
    found = set()
    for raw in environs.values():
        for entry in raw.split(b"\0"):
            if entry.startswith(b"PGPASSFILE="):
                found.add(entry.split(b"=", 1)[1].decode())
    return found


def plan_section_status(env: "Env", environment: str, playbook: str) -> str | None:
    """Status of the run_plan section of the newest report (converged = nothing left to do)."""
    report = latest_report(env, environment, playbook)
    text = json.dumps(report)
    for section in _sections(report):
        if isinstance(section, dict) and section.get("title") == "Plan":
            return section.get("status")
    return "converged" if "Already converged" in text else None


def _sections(node):
    if isinstance(node, dict):
        if "title" in node and "status" in node:
            yield node
        for value in node.values():
            yield from _sections(value)
    elif isinstance(node, list):
        for value in node:
            yield from _sections(value)


def group_processes(proc: subprocess.Popen) -> list[str]:
    """Command lines of the live processes in the run's process group."""
    out = subprocess.run(["ps", "-eo", "pgid=,stat=,args="], capture_output=True, text=True, check=False).stdout
    found = []
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] == str(proc.pid) and not parts[1].startswith("Z"):
            found.append(parts[2])
    return found
