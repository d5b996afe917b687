# -*- coding: utf-8 -*-
"""The rehearsal's copy from the physical backup (the module ``pgsafe_pgbackrest_copy``; docs/pitr.md).

copy_from_backup: refusals -> the source's newest verified pgBackRest backup -> the consistency point on the
source (one short transaction: every table locked IN SHARE MODE, its snapshot exported, a WAL record of its own
whose end LSN is the point; the content hashes read in that snapshot by other sessions after it commits) ->
WAL archived through the point -> staging's cluster stopped, delta-restored to the point, promoted, started on
its port -> every table of the copy compared with the source at the point (row counts and content hashes,
``restored_stats`` + ``compare_tables``: the restore test's primitives) -> recorded (the backup's restore test in
the source's pgsafe.backup, the copy's own backup in staging's).

Why the comparison is exact: while the SHARE locks are held no transaction can change a compared table (every
writer needs ROW EXCLUSIVE); the locks were granted only once every earlier writer had committed or aborted, so
the snapshot (taken after them) sees every commit that changed a table and the point's WAL record is written
after each of their commit records. Recovery stops just before the first record past the point
(``--target-exclusive``): it replays every commit the snapshot sees and none that the snapshot does not.
"""
from __future__ import annotations

import json
import os
import time

from ansible.module_utils import pgsafe_pgbackrest as pb
from ansible.module_utils import pgsafe_pgbackrest_exec as ex
from ansible.module_utils.pgsafe_backup import BackupError, compare_tables
from ansible.module_utils.pgsafe_backup_records import fetch_backup_records, record_backup
from ansible.module_utils.pgsafe_backup_restore import restored_stats
from ansible.module_utils.pgsafe_backup_server import connect_or_fail, list_tables
from ansible.module_utils.pgsafe_connection import describe_target
from ansible.module_utils.pgsafe_identifiers import table_key
from ansible.module_utils.pgsafe_locks import lock_tables, run_with_retries
from ansible.module_utils.pgsafe_parallel import export_snapshot, join_snapshot

# The snapshot is taken at this statement (the first of the transaction that needs one: SET and LOCK do not),
# after every lock is granted; the WAL record follows in the same statement.
POINT_SQL = ("SELECT pg_export_snapshot(), pg_logical_emit_message(false, 'pgsafe', 'rehearsal copy point')::text, "
             "now()")


def _source_facts(params):
    conn = connect_or_fail(params, read_only=True)
    try:
        with conn.cursor() as cur:
            records, now = fetch_backup_records(cur)
            cur.execute("SELECT current_database(), current_setting('data_directory'), "
                        "(SELECT oid FROM pg_database WHERE datname = current_database()), "
                        "current_setting('server_version')")
            facts = dict(zip(("database", "data_directory", "database_oid", "server_version"), cur.fetchone(), strict=True))
            facts["tables"] = list_tables(cur)
            cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE c.relpersistence = 'u' AND c.relkind IN ('r', 'p')")
            facts["unlogged"] = [table_key(*row) for row in cur.fetchall()]
        conn.rollback()
    finally:
        conn.close()
    return records, now, facts


def _running_data_directory(params):
    """The data directory the copy's server runs from, or None when nothing answers on its port."""
    try:
        conn = connect_or_fail(params, dbname="postgres", read_only=True)
    except BackupError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('data_directory')")
            return cur.fetchone()[0]
    finally:
        conn.close()


def _pid_port(data_dir):
    """The port of the server running from ``data_dir`` (its postmaster.pid), or None."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid")) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    return lines[3].strip() if len(lines) > 3 else "unknown"


def consistency_point(params, tables, jobs=2, lock_timeout="5s", retries=3):
    """The point the copy is restored to and every table's row count and content hash at it (see above).

    Returns ({lsn, time, lock_seconds, attempts}, {table_key: stats}). Writers of the tables wait at most the
    few milliseconds between the last lock and the commit (bounded by ``lock_timeout`` per lock, retried)."""
    conn = connect_or_fail(params)
    holder = connect_or_fail(params)
    attempts = []
    try:
        conn.set_session(isolation_level="REPEATABLE READ")

        def work(cur):
            started = time.monotonic()
            cur.execute("SET LOCAL lock_timeout = %s", (str(lock_timeout),))
            lock_tables(cur, [(t, "SHARE") for t in tables])
            cur.execute(POINT_SQL)
            snapshot, lsn, at = cur.fetchone()
            if list_tables(cur) != list(tables):
                raise BackupError("the tables of the source changed while the rehearsal's consistency point was taken "
                                  "(a table created or dropped): re-run the rehearsal", kind="error")
            # A session of its own joins the snapshot before this transaction commits and keeps it for the reads.
            held = export_snapshot(join_snapshot(holder, snapshot))
            return {"lsn": lsn, "time": at.isoformat(), "segment": pb.wal_segment(lsn),
                    "lock_seconds": round(time.monotonic() - started, 3)}, held

        point, held = run_with_retries(conn, work, retries, attempts_log=attempts,
                                       what="the rehearsal's consistency point (LOCK ... IN SHARE MODE)")
        entries = {table_key(s, t): {"schema": s, "table": t} for s, t in tables}
        stats = restored_stats(params, params["login_db"], entries, jobs, snapshot=held, methods={})
    finally:
        holder.close()
        conn.close()
    return dict(point, attempts=len(attempts)), stats


def _backup_to_copy(p, paths, records, now, facts):
    current = ex.info(paths, p["stanza"], p["run_as"])
    record, reasons = pb.find_physical_backup(records, now, p["max_age_minutes"], p["stanza"], current["archive_max"],
                                              require_restore_tested=False)
    if record is None:
        raise BackupError(pb.physical_refusal(facts["database"], p["stanza"], p["max_age_minutes"], reasons),
                          kind="bad_input")
    label = record["details"]["pgbackrest"]["label"]
    backup = [b for b in current["backups"] if b["label"] == label]
    if not backup:
        raise BackupError("backup {0} is no longer in the repository {1}: take a new one (the rehearsal's source "
                          "play does, backup_engine=pgbackrest)".format(label, paths["repo"]), kind="bad_input")
    return record, backup[0], current


def _record(p, paths, record, backup, current, facts, point, evidence):
    """The backup's restore test in the source's pgsafe.backup; the copy's own backup (to the point) in staging's."""
    conn = connect_or_fail(p["source"])
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE pgsafe.backup SET restore_tested = true, details = coalesce(details, '{}'::jsonb) "
                        "|| jsonb_build_object('verification', coalesce(details->'verification', '{}'::jsonb) "
                        "|| jsonb_build_object('restore_test', %s::jsonb)) WHERE backup_id = %s AND verified",
                        (json.dumps(evidence, default=str), record["backup_id"]))
        conn.commit()
    finally:
        conn.close()
    if not p["record_as_target_backup"]:
        return False
    info = record["details"]["pgbackrest"]
    doc, sha = pb.record_document(p["stanza"], paths, backup, current["system_id"], facts["database"],
                                  int(facts["database_oid"]), facts["server_version"], point, info.get("verify"),
                                  evidence, "the rehearsal's copy of {0}".format(facts["database"]), "",
                                  p["run_id"])
    record_backup(p, doc, sha, [paths["repo"]], {
        "verified": True, "restore_tested": True, "checks": {"pgbackrest_verify": (info.get("verify") or {})
                                                             .get("status"), "copy": "ok"},
        "problems": [], "restore_test": evidence}, restored_copy=evidence)
    return True


def copy_from_backup(module):
    p = module.params
    paths = pb.layout(p["base_dir"], p["stanza"])
    records, now, facts = _source_facts(p["source"])
    copy_target, source_target = describe_target(p), describe_target(p["source"])
    running = _running_data_directory(p)
    refusal = pb.copy_refusal(p["data_dir"], facts["data_directory"], running, copy_target, source_target,
                              _pid_port(p["data_dir"]) if p["data_dir"] else None)
    if refusal:
        raise BackupError(refusal, kind="bad_input")
    record, backup, current = _backup_to_copy(p, paths, records, now, facts)
    result = {"changed": True, "backup_id": record["backup_id"], "label": backup["label"],
              "taken_at": record["taken_at"].isoformat(), "repo": paths["repo"], "locations": [paths["repo"]],
              "data_dir": p["data_dir"], "port": p["login_port"], "delta": True, "was_running": bool(running)}
    if module.check_mode:
        return dict(result, msg="would replace the cluster in {0} by a delta restore of {1} to a consistency point "
                                "of {2}".format(p["data_dir"], backup["label"], source_target))
    point, stats = consistency_point(p["source"], facts["tables"], p["jobs"], p["lock_timeout"], p["lock_retries"])
    ex.archive_through(paths, p["stanza"], p["run_as"])
    if running:
        ex.pg_ctl(p["pg_bin_dir"], p["data_dir"], "stop", run_as=p["run_as"])
    seconds = ex.restore(paths, p["stanza"], p["data_dir"], label=backup["label"], target_lsn=point["lsn"],
                         run_as=p["run_as"])
    ex.pg_ctl(p["pg_bin_dir"], p["data_dir"], "start", port=p["login_port"], run_as=p["run_as"])
    ex.wait_promoted(p, p["login_port"]).close()
    started = time.monotonic()
    problems = compare_tables(stats, restored_stats(p, p["login_db"], stats, p["jobs"]))
    if problems:
        raise BackupError(pb.copy_mismatch(problems, source_target, copy_target, point["lsn"], facts["unlogged"]),
                          kind="restore",
                          details={"problems": problems, "point": point})
    evidence = {"status": "ok", "problems": [], "database": p["login_db"], "server": copy_target,
                "tables_compared": len(stats), "rows": sum(s["rows"] for s in stats.values()),
                "point": point, "label": backup["label"], "delta": True, "restore_seconds": seconds,
                "compare_seconds": round(time.monotonic() - started, 1),
                "how": "delta restore of the pgBackRest backup to the rehearsal's consistency point, every table "
                       "compared with the source at that point (pgsafe_pgbackrest_copy)"}
    recorded = _record(p, paths, record, backup, current, facts, point, evidence)
    return dict(result, point=point, tables=len(stats), problems=[], restore_seconds=seconds,
                compare_seconds=evidence["compare_seconds"], restore_test_recorded=True,
                recorded_as_target_backup=recorded)
