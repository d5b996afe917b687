# -*- coding: utf-8 -*-
"""Where backups are recorded: pgsafe.backup rows of the target database, and the backups a destination holds."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import time

from ansible.module_utils.pgsafe_backup import TMP_PREFIX, VERIFICATION_NAME, BackupError, load_manifest, select_retention
from ansible.module_utils.pgsafe_backup_server import connect_or_fail


def ensure_backup_schema(cur):
    """The product schema (idempotent; no DDL at all once installed, so a login that only records its
    backups there, without owning the tables, can call it)."""
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    return ensure_meta_schema(cur)


def record_backup(params, manifest, manifest_sha256, locations, verification=None, restored_copy=None):
    """Insert or update the backup's row in pgsafe.backup of the TARGET database.

    ``restored_copy`` (evidence of a whole restore of this backup INTO the target that matched the
    manifest table by table) records a backup of another database as the target's own: the target's
    content is, as of that restore, exactly the backup's, so restoring the backup there is a way back.
    """
    conn = connect_or_fail(params)
    try:
        with conn.cursor() as cur:
            ensure_backup_schema(cur)
            cur.execute("SELECT oid, current_database() FROM pg_database WHERE datname = current_database()")
            oid, current = cur.fetchone()
            oid = int(oid)
            if restored_copy is not None:
                manifest = dict(manifest, database=current, database_oid=oid,
                                restored_copy=dict(restored_copy, of_database=manifest.get("database"),
                                                   of_database_oid=manifest.get("database_oid")))
            elif manifest.get("database_oid") not in (None, oid):
                raise BackupError("backup {0} was taken of another database (oid {1}, this one is {2}): not recorded"
                                  .format(manifest["backup_id"], manifest.get("database_oid"), oid),
                                  kind="bad_input")
            verified = bool(verification and verification.get("verified"))
            restore_tested = bool(verification and verification.get("restore_tested"))
            details = {"database": manifest.get("database"), "database_oid": manifest.get("database_oid"),
                       "server_version": manifest.get("server_version"), "reason": manifest.get("reason"),
                       "operator": manifest.get("operator"), "format": manifest.get("format"),
                       "total_size": manifest.get("total_size"), "globals": manifest.get("globals"),
                       "tables": {k: {"rows": v["rows"]} for k, v in manifest.get("tables", {}).items()}}
            if manifest.get("restored_copy"):
                details["restored_copy"] = manifest["restored_copy"]
            # The engine (absent: pg_dump) and its own facts: a pgBackRest backup's stanza, label, LSNs, PITR target.
            for key in ("engine", "pgbackrest"):
                if manifest.get(key):
                    details[key] = manifest[key]
            if verification is not None:
                details["verification"] = {"checks": verification.get("checks"),
                                           "problems": verification.get("problems"),
                                           "restore_test": {k: v for k, v in (verification.get("restore_test") or {})
                                                            .items() if k != "pg_restore_errors"}}
            kind = "database" if manifest["covers"] == [{"type": "database"}] else "objects"
            cur.execute(
                "INSERT INTO pgsafe.backup (backup_id, taken_at, kind, covers, manifest_sha256, locations, verified, "
                "verified_at, restore_tested, run_id, details) VALUES (%s, %s, %s, %s::jsonb, %s, %s::jsonb, %s, "
                "CASE WHEN %s THEN now() END, %s, %s, %s::jsonb) "
                "ON CONFLICT (backup_id) DO UPDATE SET locations = EXCLUDED.locations, verified = EXCLUDED.verified, "
                "verified_at = EXCLUDED.verified_at, restore_tested = EXCLUDED.restore_tested, "
                "manifest_sha256 = EXCLUDED.manifest_sha256, details = pgsafe.backup.details || EXCLUDED.details",
                (manifest["backup_id"], manifest["taken_at"], kind, json.dumps(manifest["covers"]), manifest_sha256,
                 json.dumps(sorted(set(locations))), verified, verified, restore_tested, manifest.get("run_id"),
                 json.dumps(details, default=str)))
        conn.commit()
    finally:
        conn.close()
    return {"backup_id": manifest["backup_id"], "verified": verified, "restore_tested": restore_tested}


def add_backup_locations(params, backup_id, locations):
    """Append locations (copies) to a recorded backup; False when the backup is not recorded."""
    conn = connect_or_fail(params)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('pgsafe.backup') IS NOT NULL")
            if not cur.fetchone()[0]:
                return False
            cur.execute("UPDATE pgsafe.backup SET locations = (SELECT coalesce(jsonb_agg(DISTINCT x ORDER BY x), "
                        "'[]'::jsonb) FROM jsonb_array_elements_text(locations || %s::jsonb) AS x) "
                        "WHERE backup_id = %s", (json.dumps(list(locations)), backup_id))
            found = cur.rowcount == 1
        conn.commit()
    finally:
        conn.close()
    return found


def scan_destination(root):
    """Backups in a destination directory: complete ones (with their verdict) and stale temporary ones."""
    backups, temporary = [], []
    if not os.path.isdir(root):
        return backups, temporary
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path):
            continue
        if name.startswith(TMP_PREFIX):
            temporary.append({"path": path, "mtime": os.path.getmtime(path)})
            continue
        try:
            manifest = load_manifest(path)[0]
        except BackupError:
            continue  # not a backup (or a damaged one): never touched by retention
        verdict = {}
        vpath = os.path.join(path, VERIFICATION_NAME)
        if os.path.isfile(vpath):
            try:
                with open(vpath) as handle:
                    verdict = json.load(handle)
            except ValueError:
                verdict = {}
        backups.append({"backup_id": manifest["backup_id"], "taken_at": manifest["taken_at"], "path": path,
                        "verified": bool(verdict.get("verified") and verdict.get("restore_tested"))})
    return backups, temporary


def fetch_backup_records(cur):
    """Rows of pgsafe.backup of THIS database (records copied in by a restore of another database are ignored)."""
    cur.execute("SELECT now(), (SELECT oid FROM pg_database WHERE datname = current_database()), "
                "to_regclass('pgsafe.backup') IS NOT NULL")
    now, oid, installed = cur.fetchone()
    if not installed:
        return [], now
    cur.execute("SELECT backup_id, taken_at, covers, verified, restore_tested, locations, details, manifest_sha256 "
                "FROM pgsafe.backup WHERE (details ->> 'database_oid')::bigint = %s ORDER BY taken_at DESC",
                (int(oid),))
    records = [{"backup_id": r[0], "taken_at": r[1], "covers": r[2], "verified": r[3], "restore_tested": r[4],
                "locations": r[5], "details": r[6], "manifest_sha256": r[7]} for r in cur.fetchall()]
    return records, now


def prune(root, keep_count, keep_days, stale_tmp_hours, check_mode):
    """Retention on one destination: (deleted, kept, stale temporary directories removed, report items)."""
    backups, temporary = scan_destination(root)
    delete, keep = select_retention(backups, keep_count, keep_days, datetime.datetime.now(datetime.timezone.utc))
    paths = {b["backup_id"]: b["path"] for b in backups}
    stale = [t["path"] for t in temporary if time.time() - t["mtime"] > stale_tmp_hours * 3600]
    if not check_mode:
        for item in delete:
            shutil.rmtree(paths[item["backup_id"]])
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
    for item in delete + keep:
        item["path"] = paths[item["backup_id"]]
    report_items = [{"location": item["path"], "check": "retention: " + item["reason"], "result": "deleted"}
                    for item in delete] + [{"location": path, "check": "retention: interrupted run", "result": "removed"}
                                           for path in stale]
    return delete, keep, stale, report_items


def retention_diff(deleted, kept):
    """(before, after) for --diff: every backup found, per destination directory, then the ones kept."""
    before, after = {}, {}
    for item in sorted(deleted + kept, key=lambda i: i["path"]):
        before.setdefault(os.path.dirname(item["path"]), []).append(item["backup_id"])
    for item in sorted(kept, key=lambda i: i["path"]):
        after.setdefault(os.path.dirname(item["path"]), []).append(item["backup_id"])
    return before, after
