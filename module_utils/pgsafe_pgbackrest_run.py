# -*- coding: utf-8 -*-
"""The runbooks of the pgBackRest engine, step by step (the module ``pgsafe_pgbackrest`` and the guard call these).

take_physical_backup: config -> archiving -> stanza -> backup -> PITR target -> verify -> restore test -> record.
restore_to_target:    the recorded backup -> delta restore to its PITR target into a local cluster -> promoted.
guard_physical:       the newest recorded backup that can guard a run, whose repository verifies now.
"""
from __future__ import annotations

import datetime
import os
import time

from ansible.module_utils import pgsafe_pgbackrest as pb
from ansible.module_utils import pgsafe_pgbackrest_exec as ex
from ansible.module_utils.pgsafe_backup import BackupError
from ansible.module_utils.pgsafe_backup_records import fetch_backup_records, record_backup


def _config_text(p, paths, settings):
    sockets = (settings.get("unix_socket_directories") or "").split(",")
    return pb.render_config(p["stanza"], paths, p["pg_path"] or settings["data_directory"], settings["port"],
                            socket_path=p["socket_path"] or (sockets[0].strip() or None), pg_user=p["login_user"],
                            process_max=p["process_max"])


def _plan(module, p, paths):
    """Check mode: what would be written and taken."""
    conn = module.connect(read_only=True)
    try:
        with conn.cursor() as cur:
            settings = ex.server_settings(cur)
        conn.rollback()
    finally:
        conn.close()
    text = _config_text(p, paths, settings)
    try:
        with open(paths["config"]) as handle:
            old = handle.read()
    except OSError:
        old = ""
    try:
        backups = ex.info(paths, p["stanza"], p["run_as"])["backups"] if old else []
    except BackupError:
        backups = []
    kind = pb.backup_type(backups, p["full_max_age_days"], datetime.datetime.now(datetime.timezone.utc),
                          p["backup_type"])
    return {"changed": True, "type": kind, "config": paths["config"], "diff": module.diff_of(old, text),
            "archiving_problems": pb.archiving_problems(settings, paths["config"], p["stanza"]),
            "msg": "would take a {0} pgBackRest backup of stanza {1}".format(kind, p["stanza"])}


def take_physical_backup(module):
    p = module.params
    paths = pb.layout(p["base_dir"], p["stanza"])
    if module.check_mode:
        return _plan(module, p, paths)
    conn = module.connect()
    conn.autocommit = True  # ALTER SYSTEM runs outside a transaction block
    try:
        with conn.cursor() as cur:
            settings = ex.server_settings(cur)
        text = _config_text(p, paths, settings)
        ex.write_config(paths, text, p["run_as"])
        ex.ensure_archiving(conn, paths, p["stanza"], p["set_archive_command"])
        ex.run(pb.command(paths["config"], p["stanza"], "stanza-create", run_as=p["run_as"]),
               what="pgbackrest stanza-create")
        before = ex.info(paths, p["stanza"], p["run_as"])
        kind = pb.backup_type(before["backups"], p["full_max_age_days"], datetime.datetime.now(datetime.timezone.utc),
                              p["backup_type"])
        started = time.monotonic()
        ex.run(pb.command(paths["config"], p["stanza"], "backup", "--type=" + kind, run_as=p["run_as"]),
               what="pgbackrest backup")
        seconds = round(time.monotonic() - started, 1)
        after = ex.info(paths, p["stanza"], p["run_as"])
        backup = after["backups"][-1]
        target = ex.mark_pitr_target(conn, paths, p["stanza"], p["run_as"])
    finally:
        conn.close()
    checked = ex.verify(paths, p["stanza"], p["run_as"])
    tested = None
    if checked["ok"] and p["restore_test_path"]:
        tested = ex.restore_test(p, paths, p["stanza"], backup["label"], p["restore_test_path"],
                                 p["restore_test_port"], p["pg_bin_dir"], p["run_as"])
    doc, sha = pb.record_document(p["stanza"], paths, backup, after["system_id"], settings["database"],
                                  int(settings["database_oid"]), settings["server_version"], target, checked, tested,
                                  p["reason"], p["operator"], p["run_id"])
    record_backup(p, doc, sha, [paths["repo"]], {
        "verified": checked["ok"], "restore_tested": bool(tested and tested["status"] == "ok"),
        "checks": {"pgbackrest_verify": checked["status"]}, "problems": checked["damaged"], "restore_test": tested})
    if not checked["ok"]:
        raise BackupError(pb.verify_refusal(p["stanza"], paths["repo"], checked), kind="damaged")
    return {"changed": True, "backup_id": doc["backup_id"], "label": backup["label"], "type": backup["type"],
            "pitr_target": target, "verify": checked, "restore_test": tested, "config": paths["config"],
            "seconds": seconds, "size": backup["size"], "repo_size": backup["repo_size"]}


def _recorded(module, p):
    conn = module.connect(read_only=True)
    try:
        with conn.cursor() as cur:
            records, _ = fetch_backup_records(cur)
        conn.rollback()
    finally:
        conn.close()
    physical = [r for r in records if pb.is_physical(r) and r["details"]["pgbackrest"].get("stanza") == p["stanza"]
                and (not p["backup_id"] or r["backup_id"] == p["backup_id"])
                and (not p["run_id"] or r["details"]["pgbackrest"].get("run_id") == p["run_id"])]
    if not physical:
        raise BackupError("no recorded pgBackRest backup {0}of stanza {1}{2} in pgsafe.backup of this database: name "
                          "one that is (backup_id, run_id) or take one (backup role, backup_engine=pgbackrest)".format(
                              (p["backup_id"] + " ") if p["backup_id"] else "", p["stanza"],
                              " taken by run " + p["run_id"] if p["run_id"] else ""), kind="bad_input")
    return physical[0]  # newest first


def restore_to_target(module):
    p = module.params
    paths = pb.layout(p["base_dir"], p["stanza"])
    record = _recorded(module, p)
    info = record["details"]["pgbackrest"]
    target = p["target_lsn"] or (info.get("pitr_target") or {}).get("lsn")
    if not target:
        raise BackupError("backup {0} has no recorded PITR target: give target_lsn".format(record["backup_id"]),
                          kind="bad_input")
    pb.lsn_int(target)
    result = {"changed": True, "backup_id": record["backup_id"], "label": info["label"], "type": info.get("type"),
              "pitr_target": dict(info.get("pitr_target") or {}, lsn=target), "config": paths["config"],
              "data_dir": p["data_dir"], "port": p["target_port"]}
    if module.check_mode:
        return dict(result, msg="would restore {0} to {1} into {2}".format(info["label"], target, p["data_dir"]))
    seconds = ex.restore(paths, p["stanza"], p["data_dir"], label=info["label"], target_lsn=target, run_as=p["run_as"])
    ex.pg_ctl(p["pg_bin_dir"], p["data_dir"], "start", port=p["target_port"], run_as=p["run_as"])
    ex.wait_promoted(p, p["target_port"]).close()
    return dict(result, seconds=seconds)


def stop_cluster(module):
    """Stop the local cluster in ``data_dir`` (a recovered copy); nothing to do when it is not running."""
    p = module.params
    running = os.path.exists(os.path.join(p["data_dir"], "postmaster.pid"))
    if running and not module.check_mode:
        ex.pg_ctl(p["pg_bin_dir"], p["data_dir"], "stop", run_as=p["run_as"])
    return {"changed": running, "data_dir": p["data_dir"], "config": pb.layout(p["base_dir"], p["stanza"])["config"]}


def guard_physical(records, now, database, max_age_minutes, options, inventory, host):
    """(record with its verification now, None) or (None, refusal naming the repository/file and the fix)."""
    stanza = options["stanza"]
    paths = pb.layout(options["base_dir"], stanza)
    try:
        current = ex.info(paths, stanza, options.get("run_as"))
    except BackupError as exc:
        return None, "PGBACKREST REPOSITORY UNREADABLE ({0}): {1}; nothing was changed".format(paths["repo"], exc)
    record, reasons = pb.find_physical_backup(records, now, max_age_minutes, stanza, current["archive_max"])
    if record is None:
        return None, pb.physical_refusal(database, stanza, max_age_minutes, reasons, inventory, host)
    label = record["details"]["pgbackrest"]["label"]
    if label not in [b["label"] for b in current["backups"]]:
        return None, ("backup {0} is no longer in the repository {1} (expired by retention?); nothing was changed. "
                      "Take a new one: ansible-playbook -i {2} playbooks/backup.yml --limit {3} -e "
                      "backup_engine=pgbackrest").format(label, paths["repo"], inventory, host)
    checked = ex.verify(paths, stanza, options.get("run_as"))
    if not checked["ok"]:
        return None, pb.verify_refusal(stanza, paths["repo"], checked, inventory, host)
    return dict(record, verify_now=checked), None
