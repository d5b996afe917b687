# -*- coding: utf-8 -*-
"""pgBackRest, run: the config file, stanza, backups, verify, the restore test, the PITR target, restores.

What to run and what the answers mean is decided in ``pgsafe_pgbackrest``; this module runs it (as the
database's OS user when ``run_as`` is given: the repository must be writable by the server's archive-push)
and reads the server. Used by the module ``pgsafe_pgbackrest``, the guard and bench/big.py.
"""
from __future__ import annotations

import os
import pwd
import subprocess
import time

from ansible.module_utils import pgsafe_pgbackrest as pb
from ansible.module_utils.pgsafe_backup import BackupError, last_lines
from ansible.module_utils.pgsafe_backup_server import connect_or_fail, find_binary, list_tables, pin_settings
from ansible.module_utils.pgsafe_content_hash import table_stats

SETTINGS = ("archive_mode", "archive_command", "wal_level", "data_directory", "port", "unix_socket_directories",
            "server_version_num")


def run(argv, timeout=None, what="pgbackrest"):
    """Run a command (from / when it switches user); BackupError naming the command's last lines on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout,
                          cwd="/" if argv[0] == "runuser" else None, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise BackupError("{0} failed (exit {1}): {2}".format(
            what, proc.returncode, last_lines(proc.stderr or proc.stdout)), kind="error")
    return proc.stdout + proc.stderr


def _own(path, run_as):
    if run_as and os.geteuid() == 0:
        entry = pwd.getpwnam(run_as)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def write_config(paths, text, run_as=None):
    """Write the stanza's pgbackrest.conf (and its directories); True when it changed."""
    for key in ("base", "repo", "log", "lock", "spool"):
        os.makedirs(paths[key], mode=0o750, exist_ok=True)
        _own(paths[key], run_as)
    old = None
    if os.path.exists(paths["config"]):
        with open(paths["config"]) as handle:
            old = handle.read()
    if old == text:
        return False
    with open(paths["config"] + ".tmp", "w") as handle:
        handle.write(text)
    _own(paths["config"] + ".tmp", run_as)
    os.replace(paths["config"] + ".tmp", paths["config"])
    return True


def server_settings(cur):
    cur.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SETTINGS),))
    settings = dict(cur.fetchall())
    cur.execute("SELECT current_database(), (SELECT oid FROM pg_database WHERE datname = current_database()), "
                "current_setting('server_version')")
    settings["database"], settings["database_oid"], settings["server_version"] = cur.fetchone()
    return settings


def ensure_archiving(conn, paths, stanza, set_archive_command):
    """Archiving to this stanza is on, or BackupError naming the settings and the fix (archive_command is set
    by ALTER SYSTEM + reload when ``set_archive_command``; archive_mode and wal_level need a restart)."""
    with conn.cursor() as cur:
        settings = server_settings(cur)
        problems = pb.archiving_problems(settings, paths["config"], stanza)
        if set_archive_command and problems and all(p.startswith("archive_command") for p in problems):
            cur.execute("ALTER SYSTEM SET archive_command = %s", (pb.archive_command(paths["config"], stanza),))
            cur.execute("SELECT pg_reload_conf()")
            time.sleep(0.5)
            settings = server_settings(cur)
            problems = pb.archiving_problems(settings, paths["config"], stanza)
    if problems:
        raise BackupError("WAL archiving to pgBackRest stanza {0} is not set up on {1}: {2}; no backup was taken"
                          .format(stanza, settings["database"], "; ".join(problems)), kind="bad_input")
    return settings


def info(paths, stanza, run_as=None):
    return pb.parse_info(run(pb.command(paths["config"], stanza, "info", "--output=json", run_as=run_as)), stanza)


def verify(paths, stanza, run_as=None):
    """``pgbackrest verify`` of the whole repository of the stanza, parsed (damage named file by file)."""
    started = time.monotonic()
    out = run(pb.command(paths["config"], stanza, "verify", "--output=text", "--verbose", run_as=run_as),
              what="pgbackrest verify")
    return dict(pb.parse_verify(out), seconds=round(time.monotonic() - started, 1))


def mark_pitr_target(conn, paths, stanza, run_as=None):
    """The WAL position (LSN, time) right after the backup and before the run, archived: the PITR target."""
    with conn.cursor() as cur:
        # A WAL record of its own: the target is its end, so the WAL switch below always follows it (a switch
        # with no WAL written since the last one does nothing, and recovery must read a record past the target).
        cur.execute("SELECT pg_logical_emit_message(false, 'pgsafe', 'pitr target')::text, now()")
        lsn, at = cur.fetchone()
    archive_through(paths, stanza, run_as)
    return {"lsn": lsn, "time": at.isoformat(), "segment": pb.wal_segment(lsn)}


def archive_through(paths, stanza, run_as=None):
    """pgbackrest check switches WAL and waits until that segment is archived: every WAL position written
    before it (a PITR target, the rehearsal's consistency point) is then in the repository."""
    run(pb.command(paths["config"], stanza, "check", run_as=run_as), what="pgbackrest check (WAL archiving)")


def pg_ctl(bin_dir, data_dir, action, port=None, run_as=None, timeout=300):
    argv = [find_binary("pg_ctl", bin_dir), "-D", data_dir, "-w", "-t", str(timeout)]
    if action == "start":
        argv += ["-l", os.path.join(data_dir, "restore.log"), "-o",
                 "-p {0} -c listen_addresses=127.0.0.1 -c unix_socket_directories={1}".format(int(port), data_dir)]
    else:
        argv += ["-m", "fast"]
    run((["runuser", "-u", run_as, "--"] if run_as and os.geteuid() == 0 else []) + argv + [action],
        what="pg_ctl " + action)


def restore(paths, stanza, data_dir, label=None, target_lsn=None, run_as=None):
    """pgbackrest restore (delta) into ``data_dir`` (stopped): at the end of ``label``, or to ``target_lsn``."""
    if os.path.exists(os.path.join(data_dir, "postmaster.pid")):
        raise BackupError("{0} holds a running server (postmaster.pid): stop it before restoring into it".format(
            data_dir), kind="bad_input")
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    _own(data_dir, run_as)
    started = time.monotonic()
    run(pb.command(paths["config"], stanza, "restore",
                   *pb.restore_options(paths, label=label, target_lsn=target_lsn, pg_path=data_dir), run_as=run_as),
        what="pgbackrest restore")
    return round(time.monotonic() - started, 1)


def wait_promoted(params, port, timeout=600):
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = connect_or_fail(dict(params, login_port=port))
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                if not cur.fetchone()[0]:
                    return conn
            conn.close()
        except BackupError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise BackupError("the restored server on port {0} did not leave recovery within {1} s".format(
                port, timeout), kind="error")
        time.sleep(0.5)


def restore_test(params, paths, stanza, label, data_dir, port, bin_dir=None, run_as=None):
    """Restore backup ``label`` into ``data_dir`` (a scratch cluster: delta, so a kept one is quick), start it
    on ``port``, read every table of the database in full (row count and content hash), stop it."""
    seconds = restore(paths, stanza, data_dir, label=label, run_as=run_as)
    started = time.monotonic()
    pg_ctl(bin_dir, data_dir, "start", port=port, run_as=run_as)
    try:
        conn = wait_promoted(params, port)
        try:
            with conn.cursor() as cur:
                pin_settings(cur)
                stats = table_stats(cur, list_tables(cur))
            conn.rollback()
        finally:
            conn.close()
    finally:
        pg_ctl(bin_dir, data_dir, "stop", run_as=run_as)
    return {"status": "ok", "label": label, "path": data_dir, "port": port, "restore_seconds": seconds,
            "read_seconds": round(time.monotonic() - started, 1), "tables": len(stats),
            "rows": sum(s["rows"] for s in stats.values())}
