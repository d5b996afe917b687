# -*- coding: utf-8 -*-
"""Taking, copying and verifying backups (pg_dump, checksums, pg_restore --list, the restore test).

The deciding logic is in pgsafe_backup (unit-tested without a server); the server side (programs,
connections, catalog checks) in pgsafe_backup_server; restores in pgsafe_backup_restore; records
in pgsafe_backup_records.

Row counts and content hashes (pgsafe_content_hash.table_stats, the backup's pinned session settings)
are taken in the SAME snapshot as the dump (pg_export_snapshot + pg_dump --snapshot) and again in the
restored scratch database.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid

from ansible.module_utils.pgsafe_backup import (MANIFEST_NAME, TMP_PREFIX, VERIFICATION_NAME, BackupError,
                                                build_manifest, check_backup_id, classify_dump_failure,
                                                compare_tables, dump_selection_args, file_inventory, last_lines,
                                                load_manifest, manifest_bytes, new_backup_id, parse_covers,
                                                space_verdict, verification_document, verify_files)
from ansible.module_utils.pgsafe_backup_server import (_sql, connect_or_fail, database_bytes, die_with_parent, dump_target,
                                                       estimate_size, find_binary, inspect_scope, list_tables,
                                                       partitions_of, pin_settings, prepare_schemas, restore_progress,
                                                       run_program)
from ansible.module_utils.pgsafe_connection import describe_target, libpq_environment
from ansible.module_utils.pgsafe_content_hash import table_stats
from ansible.module_utils.pgsafe_identifiers import table_key
from ansible.module_utils.pgsafe_progress import Progress, directory_bytes, watching
from ansible.module_utils.pgsafe_sizes import human_bytes
# Names the fault and playbook tests reach through this module (``ex.record_backup`` ...).
from ansible.module_utils.pgsafe_backup_records import fetch_backup_records, record_backup, scan_destination  # noqa: F401
from ansible.module_utils.pgsafe_backup_restore import restore_objects, restored_stats  # noqa: F401


def plan_backup(params, covers, destination, space_factor=1.0):
    """Check mode: what would be dumped, the estimate against free space, the refusals (READ ONLY)."""
    covers = parse_covers(covers)
    dump_selection_args(covers)
    conn = connect_or_fail(params, read_only=True)
    try:
        with conn.cursor() as cur:
            facts, tables = inspect_scope(cur, covers)
            estimate = estimate_size(cur, tables + [t for ts in partitions_of(cur, tables).values() for t in ts])
        conn.rollback()
    finally:
        conn.close()
    free = shutil.disk_usage(_existing_parent(destination)).free
    ok, needed, message = space_verdict(estimate, free, space_factor)
    return {"covers": covers, "tables": [table_key(*t) for t in tables], "estimate_bytes": estimate,
            "free_bytes": free, "needed_bytes": needed, "space_ok": ok, "space_message": message, "facts": facts}


def _existing_parent(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def dump_globals(params, path, bin_dir=None):
    """pg_dumpall --globals-only into ``path`` (0600); hosted servers often refuse: say so, do not fail."""
    exe = find_binary("pg_dumpall", bin_dir)
    attempts = (("dumped", ["--globals-only"]), ("dumped without role passwords",
                                                 ["--globals-only", "--no-role-passwords"]))
    errors = []
    with libpq_environment(params) as env:
        for status, flags in attempts:
            result = run_program([exe, "--no-password", "-l", params.get("login_db") or "postgres", "-f", path] + flags, env)
            if result.returncode == 0:
                os.chmod(path, 0o600)
                return {"status": status, "file": os.path.basename(path)}
            errors.append(last_lines(result.stderr, 2))
            if os.path.exists(path):
                os.unlink(path)
    return {"status": "unavailable", "reason": "the server does not let this role read roles/tablespaces (hosted "
            "service?): " + " | ".join(errors) + "; back them up with the provider's tools"}


def _checked_request(covers, fmt, compression):
    """Canonical covers and pg_dump's selection arguments; BackupError for a request that cannot be dumped."""
    covers = parse_covers(covers)
    selection = dump_selection_args(covers)
    if not isinstance(compression, int) or isinstance(compression, bool) or not 0 <= compression <= 9:
        raise BackupError("compression must be a gzip level from 0 to 9, got {0!r}: nothing was dumped".format(
            compression), kind="bad_input")
    if fmt not in ("directory", "custom"):
        raise BackupError("backup format {0!r} is not supported: use directory or custom".format(fmt),
                          kind="bad_input")
    return covers, selection


def _lock_tables(cur, tables, lock_timeout):
    """ACCESS SHARE on the tables in the dump's transaction (a waiting exclusive lock fails it, not the dump)."""
    if not tables:
        return
    sql = _sql()
    try:
        cur.execute(sql.SQL("LOCK TABLE {0} IN ACCESS SHARE MODE").format(
            sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)))
    except Exception as exc:  # lock_timeout: someone holds an exclusive lock
        raise BackupError("cannot lock the tables to back up within lock_timeout {0}: {1}; another "
                          "session holds an exclusive lock: NO BACKUP was taken; retry later".format(
                              lock_timeout, " ".join(str(exc).split())), kind="lock_conflict") from None


def _dump_command(pg_dump, snapshot, lock_timeout, target, database, fmt, jobs, compression, selection):
    cmd = [pg_dump, "--no-password", "--snapshot", snapshot, "--lock-wait-timeout", str(lock_timeout),
           "-f", target, "-d", database]
    cmd += ["-Fd", "-j", str(max(1, int(jobs)))] if fmt == "directory" else ["-Fc"]
    cmd += ["-Z", str(compression)]
    return cmd + selection


def _free_space(destination, database, estimate, space_factor):
    """Free bytes at the (created) destination; BackupError when the estimate does not fit."""
    os.makedirs(destination, mode=0o750, exist_ok=True)
    free = shutil.disk_usage(destination).free
    ok, needed, message = space_verdict(estimate, free, space_factor)
    if not ok:
        raise BackupError("cannot back up {0}: {1}; nothing was dumped".format(database, message),
                          kind="disk_space", details={"estimate_bytes": estimate, "free_bytes": free,
                                                      "needed_bytes": needed})
    return free


def _dump_failure(database, returncode, stderr):
    kind, explanation = classify_dump_failure(returncode, stderr)
    return BackupError("backup of {0} failed: {1}. pg_dump said: {2}. The incomplete directory was removed; no "
                       "backup was recorded".format(database, explanation, last_lines(stderr, 4) or "(nothing)"),
                       kind=kind)


def _write_manifest(directory, manifest):
    """manifest.json (0640, fsynced); returns its bytes."""
    data = manifest_bytes(manifest)
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    with open(manifest_path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(manifest_path, 0o640)
    return data


def take_backup(params, destination, covers, backup_id=None, fmt="directory", jobs=2, reason="", operator="",
                run_id=None, bin_dir=None, space_factor=1.0, include_globals=True, lock_timeout="60s",
                on_started=None, compression=1):
    """Dump into ``<destination>/.tmp-<id>/``, write the manifest, rename to ``<destination>/<id>/``.

    Raises BackupError (the temporary directory removed) when anything fails; returns a summary.
    ``on_started(process)`` is called once pg_dump runs (tests use it to inject faults).
    """
    covers, _ = _checked_request(covers, fmt, compression)  # refusals before connecting; selection below
    pg_dump = find_binary("pg_dump", bin_dir)
    conn = connect_or_fail(params, read_only=True)
    tmp_dir = None
    process = None
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            pin_settings(cur, {"lock_timeout": lock_timeout, "statement_timeout": "0",
                               "idle_in_transaction_session_timeout": "0"})
            facts, tables = inspect_scope(cur, covers)
            partitions = partitions_of(cur, tables)
            selection = dump_selection_args(covers, partitions)
            estimate = estimate_size(cur, tables + [t for ts in partitions.values() for t in ts])
            free = _free_space(destination, facts["database"], estimate, space_factor)
            _lock_tables(cur, tables, lock_timeout)
            cur.execute("SELECT pg_export_snapshot(), now()")
            snapshot, snapshot_time = cur.fetchone()
            taken_at = snapshot_time.astimezone(datetime.timezone.utc)
            backup_id = check_backup_id(backup_id or new_backup_id(facts["database"], taken_at, uuid.uuid4().hex[:6]))
            final_dir = os.path.join(destination, backup_id)
            if os.path.exists(final_dir):
                raise BackupError("{0} already exists: backup ids are unique; choose another id".format(final_dir),
                                  kind="bad_input")
            tmp_dir = os.path.join(destination, TMP_PREFIX + backup_id)
            os.makedirs(tmp_dir, mode=0o700)
            target = os.path.join(tmp_dir, "dump" if fmt == "directory" else "dump.custom")
            cmd = _dump_command(pg_dump, snapshot, lock_timeout, target, facts["database"], fmt, jobs, compression,
                                selection)
            started = time.monotonic()
            progress = Progress("pg_dump of {0}".format(facts["database"]), unit="bytes",
                                note="written (of ~{0} of table data, compressed)".format(human_bytes(estimate)))
            with libpq_environment(params, facts["database"]) as env, progress, \
                    watching(progress, lambda: directory_bytes(tmp_dir)):
                process = subprocess.Popen(die_with_parent(cmd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, start_new_session=True)
                if on_started:
                    on_started(process)
                # Counts and content hashes in the dump's snapshot, while pg_dump runs.
                stats = table_stats(cur, tables)
                _, stderr = process.communicate()
            dump_seconds = time.monotonic() - started
            if process.returncode != 0:
                raise _dump_failure(facts["database"], process.returncode, stderr)
        conn.rollback()
        globals_status = {"status": "not requested"}
        if include_globals and covers == [{"type": "database"}]:
            globals_status = dump_globals(params, os.path.join(tmp_dir, "globals.sql"), bin_dir)
        files = file_inventory(tmp_dir)
        manifest = build_manifest(backup_id, facts["database"], facts["server_version"], covers, fmt, files, stats,
                                  taken_at.isoformat(), operator or facts["current_user"], reason, run_id=run_id,
                                  snapshot=snapshot, jobs=jobs, globals_status=globals_status,
                                  database_oid=facts["database_oid"],
                                  extra={"login_user": facts["current_user"], "dump_seconds": round(dump_seconds, 3),
                                         "compression": compression, "estimate_bytes": estimate})
        data = _write_manifest(tmp_dir, manifest)
        os.rename(tmp_dir, final_dir)
        tmp_dir = None
        return {"backup_id": backup_id, "path": final_dir, "manifest": manifest,
                "manifest_sha256": hashlib.sha256(data).hexdigest(), "taken_at": manifest["taken_at"],
                "total_size": manifest["total_size"], "tables": len(stats), "globals": globals_status,
                "estimate_bytes": estimate, "free_bytes": free, "dump_seconds": round(dump_seconds, 3)}
    except OSError as exc:
        raise BackupError("backup failed writing to {0}: {1}; the incomplete directory was removed, no backup was "
                          "recorded".format(destination, exc), kind="disk_full" if exc.errno == 28 else "io") from None
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        conn.close()  # rolls back the snapshot transaction
        if tmp_dir and os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)



# --------------------------------------------------------------------------- copies
def copy_backup(src_dir, destination):
    """Copy a complete backup to ``<destination>/<id>`` via a temporary directory, checking every checksum."""
    manifest, _ = load_manifest(src_dir)
    backup_id = check_backup_id(manifest["backup_id"])
    final_dir = os.path.join(destination, backup_id)
    if os.path.isdir(final_dir):
        manifest_copy, _ = load_manifest(final_dir)
        problems = verify_files(final_dir, manifest_copy)
        if problems or manifest_copy["manifest_checksum"] != manifest["manifest_checksum"]:
            raise BackupError("{0} exists but differs from {1}: {2}".format(
                final_dir, src_dir, "; ".join(p["message"] for p in problems) or "different manifest"),
                kind="copy")
        return {"path": final_dir, "changed": False}
    os.makedirs(destination, mode=0o750, exist_ok=True)
    tmp_dir = os.path.join(destination, TMP_PREFIX + backup_id)
    if os.path.exists(tmp_dir):
        shutil.rmtree(tmp_dir)
    try:
        shutil.copytree(src_dir, tmp_dir)
        copied, _ = load_manifest(tmp_dir)
        problems = verify_files(tmp_dir, copied)
        if problems:
            raise BackupError("copy of {0} to {1} does not match the manifest: {2}".format(
                backup_id, destination, "; ".join(p["message"] for p in problems)), kind="copy")
        os.rename(tmp_dir, final_dir)
        tmp_dir = None
    except OSError as exc:
        raise BackupError("copy of {0} to {1} failed: {2}".format(backup_id, destination, exc), kind="copy") from None
    finally:
        if tmp_dir and os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return {"path": final_dir, "changed": True}



# --------------------------------------------------------------------------- verification
def check_toc(backup_dir, manifest, bin_dir=None):
    """``pg_restore --list``: the archive's table of contents reads (not a proof the data is there)."""
    result = run_program([find_binary("pg_restore", bin_dir), "--list", dump_target(backup_dir, manifest)],
                  dict(os.environ))
    if result.returncode != 0:
        return "failed: " + last_lines(result.stderr, 3)
    return "ok"


def _scratch_name(backup_id):
    return ("pgsafe_rt_" + "".join(ch if ch.isalnum() else "_" for ch in backup_id))[:48] + "_" + uuid.uuid4().hex[:8]


def restore_test(backup_dir, manifest, scratch_params, bin_dir=None, jobs=2, scratch_database=None, keep=False):
    """Restore into a fresh scratch database and compare per-table rows and content hashes with the manifest.

    The scratch database is created (uniquely named unless ``scratch_database`` is given; an existing
    non-empty one is refused) and dropped afterwards.  Returns {status, database, problems, ...}.
    """
    sql = _sql()
    name = scratch_database or _scratch_name(manifest["backup_id"])
    admin = connect_or_fail(scratch_params, autocommit=True)
    created = False
    started = time.monotonic()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                probe = connect_or_fail(scratch_params, dbname=name, read_only=True)
                try:
                    with probe.cursor() as pcur:
                        user_tables = list_tables(pcur)
                finally:
                    probe.close()
                if user_tables:
                    raise BackupError("scratch database {0} on {1} is not empty ({2} tables): refusing to restore "
                                      "into it; name a new one or drop it".format(
                                          name, describe_target(scratch_params, name), len(user_tables)),
                                      kind="scratch")
            else:
                cur.execute(sql.SQL("CREATE DATABASE {0} TEMPLATE template0").format(sql.Identifier(name)))
                created = True
        prepare_schemas(scratch_params, name, manifest)
        exe = find_binary("pg_restore", bin_dir)
        cmd = [exe, "--no-password", "--no-owner", "--no-acl", "-d", name]
        if manifest.get("format") == "directory":
            cmd += ["-j", str(max(1, int(jobs)))]
        cmd.append(dump_target(backup_dir, manifest))
        with libpq_environment(scratch_params, name) as env, restore_progress(name, manifest) as progress:
            with watching(progress, lambda: database_bytes(admin, name)):
                result = run_program(cmd, env)
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        actual = restored_stats(scratch_params, name, manifest["tables"], jobs)
        problems = compare_tables(manifest["tables"], actual)
        whole = manifest.get("covers") == [{"type": "database"}]
        if result.returncode != 0 and whole:
            problems.append({"table": None, "problem": "pg_restore",
                             "message": "pg_restore reported errors: " + " | ".join(errors[:5])})
        return {"status": "ok" if not problems else "failed", "database": name,
                "server": describe_target(scratch_params, name), "problems": problems,
                "tables_compared": len(manifest["tables"]), "pg_restore_errors": errors[:20],
                "seconds": round(time.monotonic() - started, 3)}
    finally:
        if created and not keep:
            with admin.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {0}").format(sql.Identifier(name)))
        admin.close()


def verify_backup(backup_dir, checks=("checksums", "toc", "restore"), scratch_params=None, bin_dir=None, jobs=2,
                  write=True):
    """Checksums, table of contents, then (when asked) the restore test; writes verification.json."""
    results, problems, restore = {}, [], None
    manifest, manifest_sha = None, None
    try:
        manifest, manifest_sha = load_manifest(backup_dir)
        results["manifest"] = "ok"
    except BackupError as exc:
        results["manifest"] = "failed"
        problems.append({"file": MANIFEST_NAME, "problem": "manifest", "message": str(exc)})
    if manifest is not None:
        file_problems = verify_files(backup_dir, manifest)
        results["checksums"] = "ok" if not file_problems else "failed"
        problems += file_problems
        if "toc" in checks or "restore" in checks:
            toc = check_toc(backup_dir, manifest, bin_dir)
            results["toc"] = "ok" if toc == "ok" else "failed"
            if toc != "ok":
                problems.append({"file": "toc.dat" if manifest.get("format") == "directory" else "dump.custom",
                                 "problem": "toc", "message": "pg_restore --list " + toc})
        if "restore" in checks and not problems:
            if not scratch_params:
                problems.append({"problem": "restore", "message": "no scratch server given for the restore test"})
            else:
                try:
                    restore = restore_test(backup_dir, manifest, scratch_params, bin_dir, jobs)
                except BackupError as exc:
                    restore = {"status": "failed", "problems": [{"problem": exc.kind, "message": str(exc)}]}
                results["restore"] = restore["status"]
                problems += [dict(p, problem="restore:" + p["problem"]) for p in restore.get("problems", [])]
    document = verification_document(manifest["backup_id"] if manifest else os.path.basename(backup_dir),
                                     manifest_sha, results, problems, restore)
    if "toc" not in checks and "restore" not in checks and results.get("checksums") == "ok" and not problems:
        document["verified"] = True  # a checksum-only check of a copy
    if write and manifest is not None:
        path = os.path.join(backup_dir, VERIFICATION_NAME)
        with open(path + ".tmp", "w") as handle:
            json.dump(document, handle, indent=1, sort_keys=True, default=str)
        os.replace(path + ".tmp", path)
    return manifest, document

