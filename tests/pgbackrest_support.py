"""A cluster that archives its WAL (archive_mode=on), for the pgBackRest engine's tests and bench/big.py.

The product writes pgbackrest.conf and sets archive_command itself (roles/backup, backup_engine=pgbackrest);
archive_mode needs a restart, which is the one thing done here, as an operator would once per server.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from tests import pg

PG_BIN = "/usr/lib/postgresql/15/bin"
OS_USER = os.environ.get("PGSAFE_OS_USER", "postgres")
# The archiving cluster and the ports after it (restore test, PITR copy, rehearsal staging): one block of four,
# PGSAFE_PORT_PGBACKREST moves it (a worktree's tests beside another's).
PORT = int(os.environ.get("PGSAFE_PORT_PGBACKREST", "56076"))
RESTORE_TEST_PORT, PITR_PORT, STAGING_PORT = PORT + 1, PORT + 2, PORT + 3


def archiving_server(name: str, port: int) -> pg.Server:
    """A throwaway cluster of its own with archive_mode=on (started, restarted once when it was off)."""
    if not shutil.which("pgbackrest"):
        raise RuntimeError("pgbackrest is not installed: run tools/bootstrap.sh")
    server = pg.start_server((name, port))
    mode = server.execute("postgres", "SELECT setting FROM pg_settings WHERE name = 'archive_mode'")[0][0]
    if mode != "on":
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER SYSTEM SET archive_mode = on")
        finally:
            conn.close()
        restart(name)
    return server


def datadir(name: str):
    return pg.pgclusters.DATA_ROOT / name


def restart(name: str) -> None:
    subprocess.run(["runuser", "-u", OS_USER, "--", f"{PG_BIN}/pg_ctl", "-D", str(datadir(name)), "-w", "-m", "fast",
                    "-l", str(datadir(name) / "server.log"), "restart"], check=True, capture_output=True, cwd="/")


def stop_datadir(path) -> None:
    """Stop a cluster a test restored into (PITR, restore test), when it runs."""
    if (path / "postmaster.pid").exists():
        subprocess.run(["runuser", "-u", OS_USER, "--", f"{PG_BIN}/pg_ctl", "-D", str(path), "-w", "-m", "fast", "stop"],
                       check=False, capture_output=True, cwd="/")


def engine_vars(base_dir, stanza: str, restore_test_port: int) -> dict:
    """The inventory variables of the pgBackRest engine for a local cluster (as the docs show them)."""
    return {"backup_engine": "pgbackrest", "backup_pgbackrest_stanza": stanza, "backup_pgbackrest_dir": str(base_dir),
            "backup_pgbackrest_run_as": OS_USER, "backup_pgbackrest_restore_test_port": restore_test_port}


def lsn_at_or_after(lsn: str, other: str) -> bool:
    def value(text):
        high, low = text.split("/")
        return (int(high, 16) << 32) + int(low, 16)
    return value(lsn) >= value(other)


def truncate_a_backup_file(repo: str) -> str:
    """Truncate the largest data file of the newest full backup in the repository; returns its path."""
    from pathlib import Path
    fulls = sorted(p for p in Path(repo, "backup").glob("*/*F") if p.is_dir())
    victim = max((p for p in fulls[-1].glob("pg_data/base/*/*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(victim, "r+b") as handle:
        handle.truncate(victim.stat().st_size // 2)
    return str(victim)
