# -*- coding: utf-8 -*-
"""pgBackRest as a backup engine: what to write, what to run, what its answers mean, and the guard's check.

Plain Python (no Ansible, no database, no process): ``pgsafe_pgbackrest_exec`` runs what this renders, the
module ``pgsafe_pgbackrest`` and the guard (``pgsafe_backup_guard`` with ``engine: pgbackrest``) decide with it,
and tests/unit/test_pgbackrest.py tests it without a server.

A physical backup is recorded in ``pgsafe.backup`` like a logical one (covers: the whole database), with
``details.engine = 'pgbackrest'`` and ``details.pgbackrest``: stanza, repository, label, type, backup LSNs,
the result of ``pgbackrest verify`` and of the restore test, and the PITR target: the WAL position (LSN and
time) recorded after the backup and before the run's first change, archived, so that point-in-time recovery
to just before the run is possible (docs/pitr.md).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re

from ansible.module_utils.pgsafe_backup import BackupError, _parse_time, age_problem

ENGINE = "pgbackrest"
ENGINES = ("pg_dump", ENGINE)
STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LSN_RE = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
# pgbackrest verify names each damaged file on an INFO line, e.g. "invalid checksum '<label>/pg_data/...'".
VERIFY_FILE_RE = re.compile(r"(invalid checksum|invalid size|file missing|invalid result|missing|invalid)[^']*'([^']+)'")
VERIFY_STATUS_RE = re.compile(r"^\s*status:\s*(\S+)", re.M)
VERIFY_BACKUP_RE = re.compile(r"backup:\s*(\S+),\s*status:\s*(\S+)")


def check_stanza(stanza):
    """A stanza is a section name and a directory name: letters, digits, ``_ . -``."""
    if not isinstance(stanza, str) or not STANZA_RE.match(stanza):
        raise BackupError("pgBackRest stanza {0!r} is not usable: use letters, digits, '_', '.', '-' (it names a "
                          "directory of the repository); set backup_pgbackrest_stanza".format(stanza), kind="bad_input")
    return stanza


def layout(base_dir, stanza):
    """Where the product keeps one stanza's files: its config, repository, logs, locks and spool."""
    base = "{0}/{1}".format(base_dir.rstrip("/"), check_stanza(stanza))
    return {"base": base, "config": base + "/pgbackrest.conf", "repo": base + "/repo", "log": base + "/log",
            "lock": base + "/lock", "spool": base + "/spool"}


def render_config(stanza, paths, pg_path, pg_port, socket_path=None, pg_user="postgres", process_max=2,
                  compress_type="lz4", retention_full=2):
    """The pgbackrest.conf the product writes (one stanza, one local repository), as text."""
    check_stanza(stanza)
    if not pg_path or not str(pg_path).startswith("/"):
        raise BackupError("pgBackRest needs the data directory of {0} as an absolute path (backup_pgbackrest_pg_path)"
                          ", got {1!r}".format(stanza, pg_path), kind="bad_input")
    lines = ["# Written by pgsafe (roles/backup, backup_engine=pgbackrest): edits are overwritten.", "[global]",
             "repo1-path=" + paths["repo"], "repo1-retention-full={0}".format(int(retention_full)),
             "log-path=" + paths["log"], "lock-path=" + paths["lock"], "spool-path=" + paths["spool"],
             "log-level-file=info", "start-fast=y", "compress-type=" + compress_type,
             "process-max={0}".format(max(1, int(process_max))), "", "[{0}]".format(stanza),
             "pg1-path=" + str(pg_path), "pg1-port={0}".format(int(pg_port)), "pg1-user=" + pg_user]
    if socket_path:
        lines.append("pg1-socket-path=" + str(socket_path))
    return "\n".join(lines) + "\n"


def command(config, stanza, action, *options, run_as=None):
    """The argv of one pgbackrest command (run as the database's OS user when ``run_as`` is given)."""
    argv = ["pgbackrest", "--config=" + config, "--stanza=" + check_stanza(stanza), "--log-level-console=info",
            "--log-level-stderr=warn"] + list(options) + [action]
    return (["runuser", "-u", run_as, "--"] + argv) if run_as else argv


def archive_command(config, stanza):
    """The archive_command the server must have for this stanza."""
    return "pgbackrest --config={0} --stanza={1} archive-push %p".format(config, check_stanza(stanza))


def archiving_problems(settings, config, stanza):
    """What stops WAL archiving to this stanza, from pg_settings values: [] when archive_mode, wal_level and
    archive_command are right; each problem names the setting and the fix."""
    wanted = archive_command(config, stanza)
    problems = []
    if settings.get("archive_mode") not in ("on", "always"):
        problems.append("archive_mode is {0!r}: ALTER SYSTEM SET archive_mode = on, then restart the server".format(
            settings.get("archive_mode")))
    if settings.get("wal_level") not in ("replica", "logical"):
        problems.append("wal_level is {0!r}: ALTER SYSTEM SET wal_level = replica, then restart the server".format(
            settings.get("wal_level")))
    if (settings.get("archive_command") or "").strip() != wanted:
        problems.append("archive_command is {0!r}: ALTER SYSTEM SET archive_command = '{1}', then SELECT "
                        "pg_reload_conf()".format(settings.get("archive_command"), wanted))
    return problems


# --------------------------------------------------------------------------- LSNs
def lsn_int(lsn):
    """A WAL position ``X/Y`` as an integer (comparable)."""
    if not isinstance(lsn, str) or not LSN_RE.match(lsn):
        raise BackupError("{0!r} is not a WAL position (X/Y, e.g. 0/3000060)".format(lsn), kind="bad_input")
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def wal_segment(lsn, timeline=1, segment_size=16 << 20):
    """The WAL file name holding ``lsn`` (what ``pgbackrest info`` lists as archive min/max)."""
    number = lsn_int(lsn) // segment_size
    per_id = (1 << 32) // segment_size
    return "{0:08X}{1:08X}{2:08X}".format(timeline, number // per_id, number % per_id)


# --------------------------------------------------------------------------- info and verify
def parse_info(text, stanza):
    """``pgbackrest info --output=json`` of one stanza: {status, system_id, archive_max, backups (oldest first)}."""
    try:
        stanzas = json.loads(text)
    except ValueError as exc:
        raise BackupError("pgbackrest info gave no JSON ({0}): {1}".format(exc, text[:200]), kind="error") from None
    found = [s for s in stanzas if s.get("name") == stanza]
    if not found:
        raise BackupError("pgBackRest knows no stanza {0}: create it (backup role with backup_engine=pgbackrest runs "
                          "stanza-create)".format(stanza), kind="bad_input")
    info = found[0]
    backups = []
    for b in info.get("backup") or []:
        backups.append({"label": b["label"], "type": b["type"], "prior": b.get("prior"), "error": bool(b.get("error")),
                        "start": _epoch(b["timestamp"]["start"]), "stop": _epoch(b["timestamp"]["stop"]),
                        "lsn_start": (b.get("lsn") or {}).get("start"), "lsn_stop": (b.get("lsn") or {}).get("stop"),
                        "wal_start": b["archive"]["start"], "wal_stop": b["archive"]["stop"],
                        "size": b["info"]["size"], "repo_size": b["info"]["repository"]["size"]})
    archives = info.get("archive") or []
    db = (info.get("db") or [{}])[-1]
    return {"status": (info.get("status") or {}).get("message"), "code": (info.get("status") or {}).get("code"),
            "system_id": db.get("system-id"), "version": db.get("version"),
            "archive_max": max((a.get("max") or "" for a in archives), default="") or None, "backups": backups}


def _epoch(seconds):
    return datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)


def backup_type(backups, full_max_age_days, now, requested="auto"):
    """``full`` when asked, when there is none, or when the newest full is older than ``full_max_age_days``;
    else ``incr`` (on the newest backup: only the files changed since)."""
    if requested in ("full", "incr", "diff"):
        return requested if backups or requested == "full" else "full"
    fulls = [b for b in backups if b["type"] == "full" and not b["error"]]
    if not fulls:
        return "full"
    age = _parse_time(now) - fulls[-1]["stop"]
    return "full" if age > datetime.timedelta(days=float(full_max_age_days)) else "incr"


def parse_verify(text):
    """``pgbackrest verify --output=text`` (with INFO lines): {ok, status, backups, damaged: [{file, problem}]}.

    pgbackrest verify exits 0 even when it finds damage: only its ``status:`` line says so.
    """
    statuses = VERIFY_STATUS_RE.findall(text or "")
    damaged, seen = [], set()
    for problem, path in VERIFY_FILE_RE.findall(text or ""):
        if path not in seen:
            seen.add(path)
            damaged.append({"file": path, "problem": problem})
    backups = {label: status for label, status in VERIFY_BACKUP_RE.findall(text or "")}
    ok = bool(statuses) and all(s == "ok" for s in statuses) and not damaged
    return {"ok": ok, "status": statuses[-1] if statuses else "no answer", "backups": backups, "damaged": damaged}


def verify_refusal(stanza, repo, result, inventory="inventories/<env>", host="<host>"):
    """The refusal when the repository does not verify: the repository, the damaged files, and the fix."""
    files = ", ".join("{0}/backup/{1}/{2} ({3})".format(repo, stanza, d["file"], d["problem"])
                      for d in result["damaged"][:5]) or "(pgbackrest verify status: {0})".format(result["status"])
    return ("PGBACKREST REPOSITORY DAMAGED: pgbackrest verify of stanza {0} in {1} found {2}; nothing was changed. "
            "Fix: the backups that use these files cannot be trusted; find out what damaged the repository (disk, "
            "a process writing into it), then take a new full backup: ansible-playbook -i {3} playbooks/backup.yml "
            "--limit {4} -e backup_engine=pgbackrest -e backup_pgbackrest_type=full").format(
                stanza, repo, files, inventory, host)


# --------------------------------------------------------------------------- records
def backup_id(stanza, label):
    return "pgbackrest-{0}-{1}".format(check_stanza(stanza), label)


def record_document(stanza, paths, backup, system_id, database, database_oid, server_version, pitr_target,
                    verification, restore_test, reason="", operator="", run_id=None):
    """The manifest-shaped document ``record_backup`` stores for a physical backup, and its sha256."""
    doc = {"backup_id": backup_id(stanza, backup["label"]), "taken_at": backup["stop"].isoformat(),
           "covers": [{"type": "database"}], "database": database, "database_oid": database_oid,
           "server_version": server_version, "reason": reason, "operator": operator, "run_id": run_id,
           "format": "pgbackrest", "total_size": backup["size"], "engine": ENGINE,
           "pgbackrest": {"stanza": stanza, "repo": paths["repo"], "config": paths["config"],
                          "label": backup["label"], "type": backup["type"], "prior": backup["prior"],
                          "system_id": system_id, "lsn_start": backup["lsn_start"], "lsn_stop": backup["lsn_stop"],
                          "wal_start": backup["wal_start"], "wal_stop": backup["wal_stop"],
                          "repo_size": backup["repo_size"], "pitr_target": pitr_target,
                          "verify": verification, "restore_test": restore_test, "run_id": run_id}}
    sha = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    return doc, sha


def is_physical(record):
    return ((record.get("details") or {}).get("engine")) == ENGINE


def physical_problems(record, now, max_age_minutes, archive_max=None, require_restore_tested=True):
    """Why a recorded pgBackRest backup cannot guard a run ([] when it can): verified, restore-tested, fresh,
    with a PITR target at or after the end of the backup, archived (``archive_max`` from pgbackrest info).
    ``require_restore_tested=False``: the caller's next step restores it and compares every table (the
    rehearsal's copy), which is its restore test."""
    info = (record.get("details") or {}).get("pgbackrest") or {}
    problems = []
    if not record.get("verified"):
        problems.append("not verified (pgbackrest verify)")
    if require_restore_tested and not record.get("restore_tested"):
        problems.append("never restore-tested")
    too_old = age_problem(record, now, max_age_minutes)
    if too_old:
        problems.append(too_old)
    target = info.get("pitr_target") or {}
    if not target.get("lsn"):
        problems.append("no PITR target recorded")
    elif info.get("lsn_stop") and lsn_int(target["lsn"]) < lsn_int(info["lsn_stop"]):
        problems.append("its PITR target {0} lies before the end of the backup ({1})".format(
            target["lsn"], info["lsn_stop"]))
    elif archive_max is not None and (archive_max or "")[8:] < wal_segment(target["lsn"])[8:]:
        problems.append("the WAL up to its PITR target {0} ({1}) is not archived (newest archived: {2})".format(
            target["lsn"], wal_segment(target["lsn"]), archive_max or "none"))
    return problems


def find_physical_backup(records, now, max_age_minutes, stanza=None, archive_max=None, require_restore_tested=True):
    """The newest recorded pgBackRest backup (of ``stanza``) that can guard a run: (record, None) or
    (None, [reasons])."""
    reasons = []
    for record in sorted(records, key=lambda r: _parse_time(r["taken_at"]), reverse=True):
        info = (record.get("details") or {}).get("pgbackrest") or {}
        if not is_physical(record) or (stanza and info.get("stanza") != stanza):
            continue
        problems = physical_problems(record, now, max_age_minutes, archive_max, require_restore_tested)
        if not problems:
            return record, None
        reasons.append("{0}: {1}".format(record["backup_id"], "; ".join(problems)))
    return None, reasons or ["no pgBackRest backup of stanza {0} is recorded".format(stanza or "(any)")]


def physical_refusal(database, stanza, max_age_minutes, reasons, inventory="inventories/<env>", host="<host>"):
    return ("NO VERIFIED PGBACKREST BACKUP: the database {0} has no verified, restore-tested pgBackRest backup of "
            "stanza {1} taken within the last {2} minutes with an archived PITR target; nothing was changed. "
            "Rejected: {3}. Take one: ansible-playbook -i {4} playbooks/backup.yml --limit {5} -e "
            "backup_engine=pgbackrest").format(database, stanza, max_age_minutes, "; ".join(reasons[:4]),
                                                inventory, host)


def restore_options(paths, label=None, target_lsn=None, delta=True, pg_path=None):
    """pgbackrest restore options: into ``pg_path``; at the end of backup ``label`` (restore test) or to the
    PITR target ``target_lsn`` (promoted); archiving off in the copy, so it never pushes into this repository."""
    options = ["--archive-mode=off"]
    if pg_path:
        options.append("--pg1-path=" + pg_path)
    if delta:
        options.append("--delta")
    if label:
        options.append("--set=" + label)
    if target_lsn:
        lsn_int(target_lsn)
        # exclusive: every record before the target (the end of the PITR mark) is replayed, none after it
        options += ["--type=lsn", "--target=" + target_lsn, "--target-exclusive", "--target-action=promote"]
    else:
        options += ["--type=immediate", "--target-action=promote"]
    return options


# --------------------------------------------------------------------------- the rehearsal's copy
def _same_dir(a, b):
    return bool(a and b) and os.path.normpath(os.path.realpath(a)) == os.path.normpath(os.path.realpath(b))


def copy_refusal(data_dir, source_data_dir, running_data_dir, copy_target, source_target, pid_port=None):
    """Why the copy's (staging's) cluster cannot be replaced by a delta restore of the source's backup, or None.

    The whole cluster in ``data_dir`` is replaced: it must be named, must not be the source's own data
    directory, and must be the one the copy's server (``copy_target``) runs from when it runs
    (``running_data_dir``; None when it does not answer). A server running from ``data_dir`` (``pid_port``,
    from its postmaster.pid) while staging does not answer is someone else's: refused too."""
    if not data_dir or not str(data_dir).startswith("/"):
        return ("the rehearsal copies {0} from its pgBackRest backup by a delta restore of staging's WHOLE cluster, "
                "but staging's data directory is not named (got {1!r}): set rehearsal_pgbackrest_data_dir in the "
                "staging inventory to the absolute data directory of the dedicated staging cluster ({2}); nothing "
                "was changed").format(source_target, data_dir, copy_target)
    if _same_dir(data_dir, source_data_dir):
        return ("rehearsal_pgbackrest_data_dir {0} is the data directory of the SOURCE {1}: the delta restore would "
                "overwrite the source itself; name staging's own cluster directory; nothing was changed").format(
                    data_dir, source_target)
    if running_data_dir is None and pid_port is not None:
        return ("a server runs from {0} (port {1}) but staging ({2}) does not answer: it cannot be told apart from "
                "another cluster; start staging or fix its connection, or name its own data directory in "
                "rehearsal_pgbackrest_data_dir; nothing was changed").format(data_dir, pid_port, copy_target)
    if running_data_dir and not _same_dir(data_dir, running_data_dir):
        return ("staging ({0}) runs from {1}, not from rehearsal_pgbackrest_data_dir {2}: the restored copy would not "
                "be the server the rehearsal uses; set rehearsal_pgbackrest_data_dir to {1} (the whole cluster is "
                "replaced); nothing was changed").format(copy_target, running_data_dir, data_dir)
    return None


def copy_mismatch(problems, source_target, copy_target, lsn, unlogged=()):
    """The refusal when the copy differs from the source at the consistency point (nothing is recorded).
    ``unlogged``: the source's unlogged tables (their rows are in no WAL and no physical backup)."""
    differing = [p["table"] for p in problems if p["table"] in set(unlogged)]
    fix = ("Check the repository (pgbackrest verify) and the source's WAL archiving, then re-run the rehearsal")
    if differing:
        fix = ("{0} {1} UNLOGGED: its rows are in no WAL and no physical backup, so a physical copy never holds them. "
               "Make it logged (ALTER TABLE ... SET LOGGED) or rehearse from a dump (backup_engine: pg_dump on the "
               "source for the rehearsal)").format(", ".join(differing), "is" if len(differing) == 1 else "are")
    return ("REHEARSAL COPY DIFFERS: {0} delta-restored to {1} does not equal {2} at that point in {3} table(s): "
            "{4}; nothing was recorded and the rehearsal stops. {5}").format(
                copy_target, lsn, source_target, len(problems), "; ".join(p["message"] for p in problems[:5]), fix)
