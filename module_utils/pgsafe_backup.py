# -*- coding: utf-8 -*-
"""Backups you can trust: manifests, checksums, verification results, retention and the guard.

Plain Python (no Ansible, no database): the modules ``pgsafe_backup``, ``pgsafe_backup_verify``,
``pgsafe_backup_guard``, ``pgsafe_backup_copy`` and ``pgsafe_backup_retention`` call these, and
tests/unit/test_backup.py tests them without a server.

A backup is a directory ``<destination>/<backup_id>/`` holding

* ``dump/`` (pg_dump directory format) or ``dump.custom`` (custom format),
* ``globals.sql`` when the server let us read roles and tablespaces,
* ``manifest.json``: what it covers, server version, who/when/why, per-table row counts and
  content hashes taken in the dump's snapshot, and the size and sha256 of every file; the
  manifest carries a checksum of itself (``manifest_checksum``), as pg_verifybackup's does,
* ``verification.json``: the latest verification result (written after the manifest; not
  covered by it).

It is written under ``<destination>/.tmp-<backup_id>/`` and renamed only when complete, so a
killed dump never looks like a backup.  A backup counts for the guard only when it was verified
(checksums and table of contents) AND restore-tested (restored into a scratch database with the
manifest's row counts and content hashes).
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shlex

from ansible.module_utils.pgsafe_identifiers import IdentifierError, canonical_key, qualified, split_qualified
from ansible.module_utils.pgsafe_sizes import human_bytes

MANIFEST_NAME = "manifest.json"
VERIFICATION_NAME = "verification.json"
TMP_PREFIX = ".tmp-"
MANIFEST_VERSION = 1
# Files of a backup directory that the manifest does not list.
UNLISTED = (MANIFEST_NAME, VERIFICATION_NAME)
# Session settings pinned for every row count / content hash (backup side and restore-test side),
# so the row text that is hashed does not depend on the server's or the role's defaults.
PINNED_SETTINGS = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
}
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
BACKUP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
COMMAND_HINT = "ansible-playbook -i {inventory} playbooks/backup.yml --limit {host}"


class BackupError(Exception):
    """A backup, verification or guard decision failed; ``kind`` classifies it for reports."""

    def __init__(self, msg, kind="error", details=None):
        super().__init__(msg)
        self.kind = kind
        self.details = details or {}


# --------------------------------------------------------------------------- names and scope
@contextlib.contextmanager
def reported_failures(module, action, database_errors=True, **on_backup_error):
    """Fail a backup module's task the one way: I/O, BackupError (its kind and details) or a database error,
    named without a traceback and without anything secret."""
    try:
        yield
    except OSError as exc:
        module.fail_json(msg="{0} failed: {1}; nothing was recorded as verified".format(action, exc), failure_kind="io")
    except BackupError as exc:
        module.fail_json(msg=str(exc), failure_kind=exc.kind, **dict(exc.details, **on_backup_error))
    except Exception as exc:  # a database error (psycopg2.Error)
        if not database_errors:
            raise
        module.fail_json(msg="{0} failed: {1}".format(action, " ".join(str(exc).split())), failure_kind="database")


def check_backup_id(backup_id):
    """A backup id is a directory name: letters, digits, ``_ . -`` (no path separators)."""
    if not isinstance(backup_id, str) or not BACKUP_ID_RE.match(backup_id) or ".." in backup_id:
        raise BackupError("backup id {0!r} is not usable as a directory name: use letters, digits, '_', '.', '-'"
                          .format(backup_id), kind="bad_input")
    return backup_id


def new_backup_id(database, now, suffix):
    """``<database>-<UTC stamp>-<suffix>``, with the database name reduced to safe characters."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", database).strip("_-") or "db"
    return check_backup_id("{0}-{1}-{2}".format(safe[:60], now.strftime("%Y%m%dT%H%M%SZ"), suffix))


def parse_cover(item):
    """One cover from the vocabulary the roles use, as a canonical dict.

    ``database`` -> {"type": "database"}; ``schema:<name>`` -> {"type": "schema", "schema": name};
    ``schema.table`` or ``"odd.schema"."odd""table"`` -> {"type": "table", "schema", "table"}.
    Dicts already in canonical form are accepted.
    """
    if isinstance(item, dict):
        kind = item.get("type")
        if kind == "database":
            return {"type": "database"}
        if kind == "schema" and item.get("schema"):
            return {"type": "schema", "schema": item["schema"]}
        if kind == "table" and item.get("schema") and item.get("table"):
            return {"type": "table", "schema": item["schema"], "table": item["table"]}
        raise BackupError("cover {0!r} is not understood: use 'database', 'schema:<name>' or 'schema.table'"
                          .format(item), kind="bad_input")
    if not isinstance(item, str) or not item.strip():
        raise BackupError("cover {0!r} is empty: use 'database', 'schema:<name>' or 'schema.table'".format(item),
                          kind="bad_input")
    if item == "database":
        return {"type": "database"}
    if item.startswith("schema:"):
        name = item[len("schema:"):]
        if name.startswith('"'):
            try:
                name = split_qualified(name + '."x"')[0]
            except IdentifierError as exc:
                raise BackupError(str(exc), kind="bad_input") from None
        if not name:
            raise BackupError("cover {0!r} names no schema".format(item), kind="bad_input")
        return {"type": "schema", "schema": name}
    try:
        schema, table = split_qualified(item)
    except IdentifierError as exc:
        raise BackupError(str(exc), kind="bad_input") from None
    return {"type": "table", "schema": schema, "table": table}


def parse_covers(items):
    """Canonical, de-duplicated, sorted covers; ``database`` absorbs everything else."""
    covers = [parse_cover(item) for item in (items or [])]
    if not covers:
        raise BackupError("no covers given: name 'database', 'schema:<name>' or 'schema.table' objects",
                          kind="bad_input")
    if any(c["type"] == "database" for c in covers):
        return [{"type": "database"}]
    schemas = {c["schema"] for c in covers if c["type"] == "schema"}
    covers = [c for c in covers if c["type"] == "schema" or c["schema"] not in schemas]
    unique = {json.dumps(c, sort_keys=True): c for c in covers}
    return [unique[key] for key in sorted(unique)]


def describe_cover(cover):
    if cover["type"] == "database":
        return "the whole database"
    if cover["type"] == "schema":
        return "schema " + qualified(cover["schema"], "x")[:-4]
    return "table " + qualified(cover["schema"], cover["table"])


def cover_strings(covers):
    """Covers back in the role vocabulary (for messages and commands)."""
    out = []
    for c in covers:
        if c["type"] == "database":
            out.append("database")
        elif c["type"] == "schema":
            out.append("schema:" + c["schema"])
        else:
            schema = c["schema"] if re.match(r"^[^.\"]+$", c["schema"]) else qualified(c["schema"], "x")[:-4]
            table = c["table"] if re.match(r"^[^.\"]+$", c["table"]) else qualified("x", c["table"])[4:]
            out.append("{0}.{1}".format(schema, table))
    return out


def covers_object(backup_covers, wanted):
    """True when a backup whose covers are ``backup_covers`` contains the object ``wanted``."""
    for cover in backup_covers:
        if cover["type"] == "database":
            return True
        if wanted["type"] == "database":
            continue
        if cover["type"] == "schema" and cover["schema"] == wanted["schema"]:
            return True
        if (cover["type"] == "table" and wanted["type"] == "table" and cover["schema"] == wanted["schema"]
                and cover["table"] == wanted["table"]):
            return True
    return False


def dump_selection_args(covers, partitions=None):
    """pg_dump arguments selecting the covered objects (patterns quoted so no wildcard applies).

    pg_dump ignores -n when -t is given, so one backup covers either schemas or tables, not both.
    ``partitions`` ({(schema, table): [(schema, partition), ...]}, ``partitions_of``): a covered partitioned
    table brings its partitions (pg_dump -t of a partitioned table alone dumps none of their rows).
    """
    kinds = {c["type"] for c in covers}
    if kinds == {"schema", "table"}:
        raise BackupError("one backup cannot cover both schemas and single tables (pg_dump ignores -n when -t is "
                          "given): take two backups, one with the schemas and one with the tables", kind="bad_input")
    args = []
    for cover in covers:
        if cover["type"] == "database":
            return []
        if cover["type"] == "schema":
            args += ["-n", pattern_quote(cover["schema"])]
        else:
            args += table_args([(cover["schema"], cover["table"])], partitions)
    return args


def table_args(tables, partitions=None):
    """``-t "schema"."table"`` for each table, followed by its partitions (``partitions`` as above)."""
    args = []
    for key in tables:
        for schema, table in [tuple(key)] + list((partitions or {}).get(tuple(key), [])):
            args += ["-t", pattern_quote(schema) + "." + pattern_quote(table)]
    return args


def pattern_quote(name):
    """A pg_dump pattern matching exactly ``name``: double-quoted (no case folding) with ``"`` doubled.

    Inside double quotes pg_dump's ``*``, ``?`` and ``.`` are literal, so hostile names stay names.
    """
    return '"' + name.replace('"', '""') + '"'


def tables_in_scope(all_tables, covers):
    """The (schema, table) pairs from ``all_tables`` that the covers include, in order."""
    return [t for t in all_tables if covers_object(covers, {"type": "table", "schema": t[0], "table": t[1]})]


def missing_objects(covers, all_tables, all_schemas):
    """Covers naming tables or schemas that do not exist (a typo must not give an empty backup)."""
    tables, schemas = set(map(tuple, all_tables)), set(all_schemas)
    missing = []
    for cover in covers:
        if cover["type"] == "schema" and cover["schema"] not in schemas:
            missing.append(describe_cover(cover))
        if cover["type"] == "table" and (cover["schema"], cover["table"]) not in tables:
            missing.append(describe_cover(cover))
    return missing


# --------------------------------------------------------------------------- checksums and manifest
def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def list_files(root):
    """Relative paths (``/``-separated) of every regular file and symlink under ``root``, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            out.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return sorted(out)


def file_inventory(root):
    """{relative path: {size, sha256}} of every file of a backup except manifest and verification."""
    inventory = {}
    for rel in list_files(root):
        if rel in UNLISTED:
            continue
        full = os.path.join(root, rel)
        inventory[rel] = {"size": os.path.getsize(full), "sha256": sha256_file(full)}
    return inventory


def _canonical(document):
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def manifest_checksum(manifest):
    """sha256 of the manifest without its own checksum field (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_checksum"}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def build_manifest(backup_id, database, server_version, covers, fmt, files, tables, taken_at, operator, reason,
                   run_id=None, snapshot=None, jobs=1, globals_status=None, database_oid=None, extra=None):
    """The manifest of a complete backup; ``tables`` is {"schema.table" key: {schema, table, rows, hash}}."""
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "backup_id": backup_id,
        "database": database,
        "database_oid": database_oid,
        "server_version": server_version,
        "covers": covers,
        "format": fmt,
        "jobs": jobs,
        "taken_at": taken_at,
        "operator": operator,
        "reason": reason,
        "run_id": run_id,
        "snapshot": snapshot,
        "pinned_settings": dict(PINNED_SETTINGS),
        "globals": globals_status or {"status": "not requested"},
        "total_size": sum(f["size"] for f in files.values()),
        "files": files,
        "tables": tables,
    }
    manifest.update(extra or {})
    manifest["manifest_checksum"] = manifest_checksum(manifest)
    return manifest


def manifest_bytes(manifest):
    return (json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=True, default=str) + "\n").encode("utf-8")


def load_manifest(backup_dir):
    """The manifest of a backup directory, checked against its own checksum; raises BackupError."""
    path = os.path.join(backup_dir, MANIFEST_NAME)
    if not os.path.isfile(path):
        raise BackupError("{0}: no {1}: this is not a complete backup (an interrupted dump leaves no manifest)"
                          .format(backup_dir, MANIFEST_NAME), kind="manifest")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BackupError("{0} is damaged (not valid JSON: {1}): the backup cannot be trusted; take a new one"
                          .format(path, exc), kind="manifest") from None
    if not isinstance(manifest, dict) or "manifest_checksum" not in manifest or not isinstance(
            manifest.get("files"), dict):
        raise BackupError("{0} is damaged (fields missing): the backup cannot be trusted; take a new one"
                          .format(path), kind="manifest")
    if manifest_checksum(manifest) != manifest["manifest_checksum"]:
        raise BackupError("{0} is damaged (its manifest_checksum does not match its content): the backup cannot "
                          "be trusted; take a new one".format(path), kind="manifest")
    return manifest, hashlib.sha256(raw).hexdigest()


def verify_files(backup_dir, manifest):
    """Compare a backup directory with its manifest; a list of problems, each naming the file.

    Catches, like pg_verifybackup: a missing file, a size change (truncated or appended byte),
    a content change with the same size (flipped byte) and a file the manifest does not list.
    """
    problems = []
    listed = manifest.get("files", {})
    present = set(rel for rel in list_files(backup_dir) if rel not in UNLISTED)
    for rel in sorted(listed):
        expected = listed[rel]
        full = os.path.join(backup_dir, rel)
        if rel not in present:
            problems.append({"file": rel, "problem": "missing", "message": "{0}: file is missing".format(rel)})
            continue
        size = os.path.getsize(full)
        if size != expected["size"]:
            problems.append({"file": rel, "problem": "size", "message": "{0}: size {1} bytes, manifest says {2}"
                             .format(rel, size, expected["size"])})
            continue
        digest = sha256_file(full)
        if digest != expected["sha256"]:
            problems.append({"file": rel, "problem": "checksum", "message": "{0}: sha256 {1}, manifest says {2}"
                             .format(rel, digest, expected["sha256"])})
    for rel in sorted(present - set(listed)):
        problems.append({"file": rel, "problem": "extra", "message": "{0}: file is not in the manifest".format(rel)})
    return problems


def compare_tables(expected, actual):
    """Per-table row counts and content hashes of a restore test against the manifest; problems.

    Keys of either side may be spelled ``"schema"."table"`` (manifests before 0.3) or ``schema.table``
    (``table_key``): they are compared by the table they name.
    """
    problems = []
    actual = {canonical_key(key): value for key, value in actual.items()}
    for key in sorted(expected):
        want = expected[key]
        got = actual.get(canonical_key(key))
        if got is None:
            problems.append({"table": key, "problem": "missing",
                             "message": "{0}: not present after restore (manifest: {1} rows)".format(key, want["rows"])})
            continue
        if got["rows"] != want["rows"]:
            problems.append({"table": key, "problem": "rows",
                             "message": "{0}: {1} rows restored, {2} at backup time".format(key, got["rows"],
                                                                                           want["rows"])})
        elif got["hash"] != want["hash"]:
            problems.append({"table": key, "problem": "hash",
                             "message": "{0}: content hash {1} after restore, {2} at backup time".format(
                                 key, got["hash"], want["hash"])})
    return problems


def verification_document(backup_id, manifest_sha256, checks, problems, restore=None, now=None):
    """verification.json: what was checked, what failed, and the verdict."""
    checks = dict(checks)
    file_problems = [p for p in problems if not str(p.get("problem", "")).startswith("restore")]
    verified = (not file_problems and checks.get("manifest", "ok") == "ok" and checks.get("checksums") == "ok"
                and checks.get("toc") == "ok")
    restore_tested = bool(verified and restore and restore.get("status") == "ok")
    return {
        "backup_id": backup_id,
        "manifest_sha256": manifest_sha256,
        "verified_at": (now or datetime.datetime.now(datetime.timezone.utc)).isoformat(),
        "checks": checks,
        "problems": problems,
        "restore_test": restore or {"status": "not run"},
        "verified": verified,
        "restore_tested": restore_tested,
    }


def space_verdict(estimate_bytes, free_bytes, factor=1.0, margin_bytes=16 << 20):
    """(ok, needed, message) for the destination's free space against the dump's estimated size."""
    needed = int(estimate_bytes * factor) + (margin_bytes if factor > 0 else 0)
    if needed <= free_bytes:
        return True, needed, None
    return False, needed, ("the destination has {0} free but the backup needs about {1} (estimated dump size {2} x "
                           "{3} + {4} margin): free space or choose another destination".format(
                               human_bytes(free_bytes), human_bytes(needed), human_bytes(estimate_bytes), factor,
                               human_bytes(margin_bytes)))


# --------------------------------------------------------------------------- pg_dump outcomes
LOCK_ABORT_RE = re.compile(r"could not obtain lock on relation|someone requested an ACCESS EXCLUSIVE lock|"
                           r"Query was: LOCK TABLE|canceling statement due to lock timeout", re.I)
DISK_FULL_RE = re.compile(r"No space left on device|could not write to output file|Disk quota exceeded", re.I)
PERMISSION_RE = re.compile(r"permission denied", re.I)
CONNECT_RE = re.compile(r"connection to server .* failed|could not connect|could not translate host", re.I)


def classify_dump_failure(returncode, stderr):
    """(kind, explanation) for a failed pg_dump / pg_restore, from its exit status and messages."""
    text = stderr or ""
    if returncode is not None and returncode < 0:
        return "killed", "pg_dump was killed by signal {0}".format(-returncode)
    if LOCK_ABORT_RE.search(text):
        return "lock_conflict", ("pg_dump aborted because another session requested an exclusive lock on a table "
                                 "during the parallel dump (documented pg_dump behaviour): NO BACKUP was taken; retry "
                                 "when the locking session is gone, or use backup_jobs: 1")
    if DISK_FULL_RE.search(text):
        return "disk_full", "the destination ran out of space during the dump: NO BACKUP was taken"
    if PERMISSION_RE.search(text):
        return "permission", "pg_dump lacks a privilege: grant SELECT on the objects named below to the backup role"
    if CONNECT_RE.search(text):
        return "unreachable", "pg_dump could not connect to the database"
    return "failed", "pg_dump failed"


def last_lines(text, count=8):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return "\n".join(lines[-count:])


# --------------------------------------------------------------------------- retention
def _parse_time(value):
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)


def select_retention(backups, keep_count, keep_days, now):
    """Which backups of one destination to delete: (delete, keep), each a list of backup ids with reasons.

    ``backups``: [{backup_id, taken_at, verified}] where ``verified`` means verified and
    restore-tested.  A backup is kept when it is among the newest ``keep_count`` or younger than
    ``keep_days``; the newest verified backup is ALWAYS kept, so retention can never delete the
    only verified copy, even with keep_count 0.  Unverified backups never protect anything.
    """
    now = _parse_time(now)
    ordered = sorted(backups, key=lambda b: _parse_time(b["taken_at"]), reverse=True)
    newest_verified = next((b["backup_id"] for b in ordered if b.get("verified")), None)
    delete, keep = [], []
    for index, backup in enumerate(ordered):
        age_days = (now - _parse_time(backup["taken_at"])).total_seconds() / 86400.0
        if backup["backup_id"] == newest_verified:
            keep.append({"backup_id": backup["backup_id"], "reason": "newest verified backup (never deleted)"})
        elif keep_count and index < keep_count:
            keep.append({"backup_id": backup["backup_id"], "reason": "among the newest {0}".format(keep_count)})
        elif keep_days and age_days < keep_days:
            keep.append({"backup_id": backup["backup_id"], "reason": "younger than {0} days".format(keep_days)})
        else:
            delete.append({"backup_id": backup["backup_id"],
                           "reason": "older than {0} days and beyond the newest {1}".format(keep_days, keep_count)})
    return delete, keep


# --------------------------------------------------------------------------- the guard
def age_problem(record, now, max_age):
    """Why a recorded backup is too old to guard a run ("" when it is fresh enough): ``max_age`` a timedelta
    or minutes, ``now`` the database's clock.  One wording for the logical and the physical (pgBackRest) guard."""
    if not isinstance(max_age, datetime.timedelta):
        max_age = datetime.timedelta(minutes=float(max_age))
    age = _parse_time(now) - _parse_time(record["taken_at"])
    if age <= max_age:
        return ""
    return "taken {0} minutes ago, older than the {1} minutes allowed".format(
        int(age.total_seconds() // 60), int(max_age.total_seconds() // 60))


def find_covering_backup(records, objects, max_age, now, require_restore_tested=True):
    """The guard's decision: the newest usable backup covering every object, or why there is none.

    ``records``: rows of pgsafe.backup as dicts {backup_id, taken_at, covers, verified,
    restore_tested, locations}; ``objects``: covers (strings or canonical dicts) the destructive
    step touches; ``max_age``: a datetime.timedelta (or minutes as a number); ``now``: the
    database's clock.  Returns ``(record, None)`` or ``(None, {missing, reasons, nearest})``:
    ``missing`` lists the objects no usable backup covers, ``reasons`` says why near misses were
    rejected (not verified, not restore-tested, too old).  ``require_restore_tested=False`` is for a
    caller whose next step restores the backup and compares it with its manifest (the rehearsal's copy):
    that restore is the backup's restore test.
    """
    if not isinstance(max_age, datetime.timedelta):
        max_age = datetime.timedelta(minutes=float(max_age))
    now = _parse_time(now)
    wanted = parse_covers(objects)
    usable, reasons = [], []
    for record in sorted(records, key=lambda r: _parse_time(r["taken_at"]), reverse=True):
        covers = [parse_cover(c) for c in (record.get("covers") or [])]
        if not all(covers_object(covers, w) for w in wanted):
            continue
        too_old = age_problem(record, now, max_age)
        if not record.get("verified"):
            reasons.append("{0}: not verified (checksums/table of contents)".format(record["backup_id"]))
        elif require_restore_tested and not record.get("restore_tested"):
            reasons.append("{0}: verified but never restore-tested".format(record["backup_id"]))
        elif too_old:
            reasons.append("{0}: {1}".format(record["backup_id"], too_old))
        else:
            usable.append(record)
    if usable:
        return usable[0], None
    fresh = [r for r in records if r.get("verified") and (r.get("restore_tested") or not require_restore_tested)
             and now - _parse_time(r["taken_at"]) <= max_age]
    missing = [w for w in wanted
               if not any(covers_object([parse_cover(c) for c in (r.get("covers") or [])], w) for r in fresh)]
    return None, {"missing": missing or wanted, "reasons": reasons[:5]}


def verified_location(record, backup_root):
    """The first location whose files match the manifest, or (None, reasons)."""
    candidates = list(record.get("locations") or [])
    if backup_root:
        candidates.append(os.path.join(backup_root, record["backup_id"]))
    reasons = []
    for path in candidates:
        if not os.path.isdir(path):
            reasons.append("{0}: not found".format(path))
            continue
        try:
            manifest, sha = load_manifest(path)
        except BackupError as exc:
            reasons.append(str(exc))
            continue
        problems = verify_files(path, manifest)
        if sha != record.get("manifest_sha256"):
            problems.append({"message": "manifest.json differs from the recorded one"})
        if problems:
            reasons.append("{0}: {1}".format(path, "; ".join(p["message"] for p in problems[:3])))
            continue
        return path, reasons
    return None, reasons


def find_usable_backup(records, objects, max_age, now, require_restore_tested=True, backup_root=None):
    """``find_covering_backup``, and with ``backup_root`` the newest candidate whose files still verify there
    (or at a recorded location): ``(record with verified_location, None)`` or ``(None, decision)``."""
    candidates, rejected = list(records), []
    while True:
        record, decision = find_covering_backup(candidates, objects, max_age, now, require_restore_tested)
        if record is None or not backup_root:
            break
        location, reasons = verified_location(record, backup_root)
        if location:
            return dict(record, verified_location=location), None
        rejected.append("{0}: files do not verify ({1})".format(record["backup_id"], "; ".join(reasons[:2])))
        candidates = [r for r in candidates if r["backup_id"] != record["backup_id"]]
    if record is None:
        decision["reasons"] = rejected + decision["reasons"]
    return record, decision


def guard_failure_message(database, objects, max_age_minutes, decision, inventory="inventories/<env>", host="<host>"):
    """What the guard says when it refuses: what is missing, of what, and the command to take it."""
    missing = decision["missing"]
    wanted = parse_covers(objects)
    whole = wanted == [{"type": "database"}]
    scope_vars = ("-e backup_scope=database" if whole else
                  "-e " + shlex.quote(json.dumps({"backup_scope": "objects", "backup_objects": cover_strings(wanted)})))
    lines = [
        "NO VERIFIED BACKUP: the database {0} has no verified, restore-tested backup covering {1} taken within the "
        "last {2} minutes; nothing was changed.".format(database, ", ".join(describe_cover(m) for m in missing),
                                                     max_age_minutes),
    ]
    if decision.get("reasons"):
        lines.append("Rejected candidates: " + "; ".join(decision["reasons"]) + ".")
    lines.append("Take one: {0} {1} (or, in a role: include_role name=backup with backup_scope={2}{3}).".format(
        COMMAND_HINT.format(inventory=inventory, host=host), scope_vars, "database" if whole else "objects",
        "" if whole else " and backup_objects={0}".format(json.dumps(cover_strings(wanted)))))
    return " ".join(lines)


# Options every module that changes or removes data takes: the backup that covers what it touches (it checks
# the record itself), or the named override with its reason.
def guard_argument_spec():
    """A fresh copy of the guard options (plugins/doc_fragments/pgsafe_guard.py documents them)."""
    return {"backup_id": {"type": "str"}, "backup_max_age_minutes": {"type": "int", "default": 1440},
            "guard_override": {"type": "str"}}


def check_guard(cur, backup_id, objects, max_age_minutes=1440, override=None):
    """The applying module's own guard, in its transaction, before it changes ``objects``.

    Returns what the journal records ({backup_id, ...} or {override}); raises BackupError, naming the
    objects and the fix, when no override is given and ``backup_id`` is not a verified backup of THIS
    database covering every object within ``max_age_minutes`` (restore-tested, or restored into the copy
    it is: a rehearsal's copy records the source backup as its own).
    """
    from ansible.module_utils.pgsafe_backup_records import fetch_backup_records
    if override and str(override).strip():
        return {"override": " ".join(str(override).split())}
    if not objects:
        return {}
    if not backup_id:
        raise BackupError("no backup named for {0}: a step that changes or removes data runs only with the verified "
                          "backup that covers it (backup_id, from the backup role's guard) or the named override "
                          "pgsafe_overrides.backup_guard='<reason>'; nothing was changed".format(", ".join(objects)))
    records, now = fetch_backup_records(cur)
    record = [r for r in records if r["backup_id"] == backup_id]
    if not record:
        raise BackupError("backup {0} is not a backup of this database (pgsafe.backup): nothing was changed".format(
            backup_id))
    found, decision = find_covering_backup(record, objects, max_age_minutes, now)
    if found is None:
        raise BackupError("backup {0} does not guard {1}: {2}; nothing was changed".format(
            backup_id, ", ".join(describe_cover(m) for m in decision["missing"]),
            "; ".join(decision["reasons"]) or "it does not cover them"))
    return {"backup_id": backup_id, "taken_at": str(found["taken_at"]), "covers": found["covers"]}
