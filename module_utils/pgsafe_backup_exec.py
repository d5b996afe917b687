# -*- coding: utf-8 -*-
"""Taking, copying, verifying, restore-testing and recording backups (pg_dump / pg_restore + SQL).

The deciding logic is in pgsafe_backup (unit-tested without a server); this file runs the
programs and the queries.  Passwords reach pg_dump/pg_restore/pg_dumpall only through the 0600
passfile of ``pgsafe_connection.libpq_environment``: never argv, never PGPASSWORD.

Row counts and content hashes (pinned session settings: pgsafe_backup.PINNED_SETTINGS):

    SELECT count(*), coalesce(sum(hashtextextended(ROW(r.*)::text, 0)), 0) FROM <table> AS r

an order-independent sum of 64-bit hashes of each row's text, computed in the SAME snapshot as
the dump (pg_export_snapshot + pg_dump --snapshot) and again in the restored scratch database.
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

from ansible.module_utils.pgsafe_backup import (MANIFEST_NAME, PINNED_SETTINGS, SYSTEM_SCHEMAS, TMP_PREFIX,
                                                VERIFICATION_NAME, BackupError, build_manifest,
                                                check_backup_id, classify_dump_failure, compare_tables,
                                                describe_cover, dump_selection_args, file_inventory, last_lines,
                                                load_manifest, manifest_bytes, missing_objects, new_backup_id,
                                                parse_covers, space_verdict, table_key, tables_in_scope,
                                                verification_document, verify_files)
from ansible.module_utils.pgsafe_identifiers import quote_ident
from ansible.module_utils.pgsafe_parallel import export_snapshot, join_snapshot, run_over_cursors
from ansible.module_utils.pgsafe_connection import (ConnectionFailure, connect, describe_target,
                                                    libpq_environment)

# Content hash per table, order-independent (a sum of 64-bit row hashes). "record" hashes each column
# with its type's hash function (PostgreSQL 14+, every column type hashable: about 3x cheaper);
# "text" hashes the row's text form (any type; relies on the pinned session settings).
STATS_SQL = {
    "record": "SELECT count(*), coalesce(sum(hash_record_extended(ROW({alias}.*), 0)), 0)::text FROM {table} AS {alias}",
    "text": "SELECT count(*), coalesce(sum(hashtextextended(ROW({alias}.*)::text, 0)), 0)::text FROM {table} AS {alias}",
}


def find_binary(name, bin_dir=None):
    """pg_dump & co: from ``bin_dir`` (or PGSAFE_PG_BIN_DIR), else the newest /usr/lib/postgresql/*/bin, else PATH."""
    candidates = []
    bin_dir = bin_dir or os.environ.get("PGSAFE_PG_BIN_DIR")
    if bin_dir:
        candidates.append(os.path.join(bin_dir, name))
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]),
                            reverse=True):
        candidates.append(os.path.join(directory, name))
    found = shutil.which(name)
    if found:
        candidates.append(found)
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    raise BackupError("{0} not found (looked in {1} and PATH): install the PostgreSQL client, or set pg_bin_dir"
                      .format(name, bin_dir or "/usr/lib/postgresql/*/bin"), kind="environment")


def _die_with_parent(cmd):
    """Linux: run under ``setpriv --pdeathsig KILL`` so pg_dump dies with a killed controller."""
    wrapper = shutil.which("setpriv")
    if wrapper and sys.platform.startswith("linux"):
        return [wrapper, "--pdeathsig", "KILL", "--"] + cmd
    return cmd


def _sql():
    from psycopg2 import sql
    return sql


def list_tables(cur):
    """Every ordinary table (and partition) outside the system schemas, as (schema, table), ordered."""
    cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
                "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' ORDER BY 1, 2", (list(SYSTEM_SCHEMAS),))
    return [tuple(row) for row in cur.fetchall()]


def list_schemas(cur):
    cur.execute("SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) ORDER BY 1", (list(SYSTEM_SCHEMAS),))
    return [row[0] for row in cur.fetchall()]


def table_stats(cur, tables, methods=None):
    """{"schema"."table": {schema, table, rows, hash, method}} with the pinned settings already set.

    ``methods`` ({key: "record"|"text"}) forces the method per table (the restore side uses the
    manifest's); otherwise "record" is tried and "text" used where a column type has no hash function.
    """
    import psycopg2
    sql = _sql()
    out = {}
    for schema, table in tables:
        key = table_key(schema, table)
        wanted = (methods or {}).get(key)
        if wanted:
            method = wanted
            cur.execute(_stats_query(sql, schema, table, method))
            rows, digest = cur.fetchone()
        else:
            cur.execute("SAVEPOINT pgsafe_stats")
            try:
                method = "record"
                cur.execute(_stats_query(sql, schema, table, method))
                rows, digest = cur.fetchone()
                cur.execute("RELEASE SAVEPOINT pgsafe_stats")
            except (psycopg2.errors.UndefinedFunction, psycopg2.errors.FeatureNotSupported):
                cur.execute("ROLLBACK TO SAVEPOINT pgsafe_stats")
                method = "text"
                cur.execute(_stats_query(sql, schema, table, method))
                rows, digest = cur.fetchone()
        out[key] = {"schema": schema, "table": table, "rows": rows, "hash": digest, "method": method}
    return out


def _stats_query(sql, schema, table, method):
    return sql.SQL(STATS_SQL[method]).format(table=sql.Identifier(schema, table), alias=sql.Identifier("r"))


def server_facts(cur):
    cur.execute("SELECT current_setting('server_version'), current_user, current_database(), "
                "(SELECT oid FROM pg_database WHERE datname = current_database()), "
                "r.rolsuper, r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user")
    version, user, database, oid, superuser, bypassrls = cur.fetchone()
    return {"server_version": version, "current_user": user, "database": database, "database_oid": int(oid),
            "superuser": bool(superuser), "bypassrls": bool(bypassrls)}


def privilege_problems(cur, tables):
    """Tables the login cannot read (SELECT) or whose schema it cannot use."""
    problems = []
    for schema, table in tables:
        cur.execute("SELECT has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT') "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        row = cur.fetchone()
        if row is not None and not row[0]:
            problems.append(table_key(schema, table))
    return problems


def rls_problems(cur, tables, facts):
    """Tables with row security that would hide rows from this login (the dump would be incomplete)."""
    if facts["superuser"] or facts["bypassrls"]:
        return []
    problems = []
    for schema, table in tables:
        cur.execute("SELECT c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE')) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        row = cur.fetchone()
        if row is not None and row[0]:
            problems.append(table_key(schema, table))
    return problems


def estimate_size(cur, tables):
    """Bytes of heap and TOAST of the tables (an upper bound of a compressed dump's data)."""
    total = 0
    for schema, table in tables:
        cur.execute("SELECT pg_table_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        row = cur.fetchone()
        total += int(row[0] or 0) if row else 0
    return total


def pin_settings(cur, extra=None):
    settings = dict(PINNED_SETTINGS)
    settings.update(extra or {})
    for name, value in settings.items():
        cur.execute("SELECT set_config(%s, %s, false)", (name, str(value)))


def _connect(params, dbname=None, **kwargs):
    try:
        return connect(params, dbname=dbname, **kwargs)
    except ConnectionFailure as exc:
        raise BackupError(str(exc), kind="unreachable") from None


def inspect_scope(cur, covers):
    """Resolve covers to tables and check they exist, are readable and not hidden by row security."""
    facts = server_facts(cur)
    all_tables = list_tables(cur)
    missing = missing_objects(covers, all_tables, list_schemas(cur))
    if missing:
        raise BackupError("cannot back up {0} of database {1}: {2} not found; check backup_objects (names are "
                          "case-sensitive, e.g. public.bazaar-vid_exports)".format(
                              ", ".join(describe_cover(c) for c in covers), facts["database"], ", ".join(missing)),
                          kind="bad_input")
    tables = tables_in_scope(all_tables, covers)
    denied = privilege_problems(cur, tables)
    if denied:
        raise BackupError("the backup role {0} cannot read {1}: the dump would fail or be incomplete. Fix: GRANT "
                          "USAGE ON SCHEMA / GRANT SELECT ON {1} TO {0} (or back up as the owner); nothing was "
                          "dumped".format(facts["current_user"], ", ".join(denied)), kind="permission")
    hidden = rls_problems(cur, tables, facts)
    if hidden:
        raise BackupError("row-level security is enabled on {0} and the backup role {1} has neither BYPASSRLS nor "
                          "superuser: the dump would silently miss rows. Fix: ALTER ROLE {1} BYPASSRLS (or back up "
                          "as a role that bypasses row security); nothing was dumped".format(
                              ", ".join(hidden), facts["current_user"]), kind="rls")
    return facts, tables


def plan_backup(params, covers, destination, space_factor=1.0):
    """Check mode: what would be dumped, the estimate against free space, the refusals (READ ONLY)."""
    covers = parse_covers(covers)
    dump_selection_args(covers)
    conn = _connect(params, read_only=True)
    try:
        with conn.cursor() as cur:
            facts, tables = inspect_scope(cur, covers)
            estimate = estimate_size(cur, tables)
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


def _run(cmd, env, timeout=None):
    return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          check=False)


def dump_globals(params, path, bin_dir=None):
    """pg_dumpall --globals-only into ``path`` (0600); hosted servers often refuse: say so, do not fail."""
    exe = find_binary("pg_dumpall", bin_dir)
    attempts = (("dumped", ["--globals-only"]), ("dumped without role passwords",
                                                 ["--globals-only", "--no-role-passwords"]))
    errors = []
    with libpq_environment(params) as env:
        for status, flags in attempts:
            result = _run([exe, "--no-password", "-l", params.get("login_db") or "postgres", "-f", path] + flags, env)
            if result.returncode == 0:
                os.chmod(path, 0o600)
                return {"status": status, "file": os.path.basename(path)}
            errors.append(last_lines(result.stderr, 2))
            if os.path.exists(path):
                os.unlink(path)
    return {"status": "unavailable", "reason": "the server does not let this role read roles/tablespaces (hosted "
            "service?): " + " | ".join(errors) + "; back them up with the provider's tools"}


def take_backup(params, destination, covers, backup_id=None, fmt="directory", jobs=2, reason="", operator="",
                run_id=None, bin_dir=None, space_factor=1.0, include_globals=True, lock_timeout="60s",
                on_started=None, compression=1):
    """Dump into ``<destination>/.tmp-<id>/``, write the manifest, rename to ``<destination>/<id>/``.

    Raises BackupError (the temporary directory removed) when anything fails; returns a summary.
    ``on_started(process)`` is called once pg_dump runs (tests use it to inject faults).
    """
    covers = parse_covers(covers)
    selection = dump_selection_args(covers)
    if not isinstance(compression, int) or isinstance(compression, bool) or not 0 <= compression <= 9:
        raise BackupError("compression must be a gzip level from 0 to 9, got {0!r}: nothing was dumped".format(
            compression), kind="bad_input")
    if fmt not in ("directory", "custom"):
        raise BackupError("backup format {0!r} is not supported: use directory or custom".format(fmt),
                          kind="bad_input")
    pg_dump = find_binary("pg_dump", bin_dir)
    conn = _connect(params, read_only=True)
    tmp_dir = None
    process = None
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            pin_settings(cur, {"lock_timeout": lock_timeout, "statement_timeout": "0",
                               "idle_in_transaction_session_timeout": "0"})
            facts, tables = inspect_scope(cur, covers)
            estimate = estimate_size(cur, tables)
            os.makedirs(destination, mode=0o750, exist_ok=True)
            free = shutil.disk_usage(destination).free
            ok, needed, message = space_verdict(estimate, free, space_factor)
            if not ok:
                raise BackupError("cannot back up {0}: {1}; nothing was dumped".format(facts["database"], message),
                                  kind="disk_space", details={"estimate_bytes": estimate, "free_bytes": free,
                                                              "needed_bytes": needed})
            if tables:
                sql = _sql()
                try:
                    cur.execute(sql.SQL("LOCK TABLE {0} IN ACCESS SHARE MODE").format(
                        sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)))
                except Exception as exc:  # lock_timeout: someone holds an exclusive lock
                    raise BackupError("cannot lock the tables to back up within lock_timeout {0}: {1}; another "
                                      "session holds an exclusive lock: NO BACKUP was taken; retry later".format(
                                          lock_timeout, " ".join(str(exc).split())), kind="lock_conflict") from None
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
            cmd = [pg_dump, "--no-password", "--snapshot", snapshot, "--lock-wait-timeout", str(lock_timeout),
                   "-f", target, "-d", facts["database"]]
            cmd += ["-Fd", "-j", str(max(1, int(jobs)))] if fmt == "directory" else ["-Fc"]
            cmd += ["-Z", str(compression)]
            cmd += selection
            started = time.monotonic()
            with libpq_environment(params, facts["database"]) as env:
                process = subprocess.Popen(_die_with_parent(cmd), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, start_new_session=True)
                if on_started:
                    on_started(process)
                # Counts and content hashes in the dump's snapshot, while pg_dump runs.
                stats = table_stats(cur, tables)
                _, stderr = process.communicate()
            dump_seconds = time.monotonic() - started
            if process.returncode != 0:
                kind, explanation = classify_dump_failure(process.returncode, stderr)
                raise BackupError("backup of {0} failed: {1}. pg_dump said: {2}. The incomplete directory was "
                                  "removed; no backup was recorded".format(facts["database"], explanation,
                                                                           last_lines(stderr, 4) or "(nothing)"),
                                  kind=kind)
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
                                         "compression": compression})
        data = manifest_bytes(manifest)
        manifest_path = os.path.join(tmp_dir, MANIFEST_NAME)
        with open(manifest_path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(manifest_path, 0o640)
        os.rename(tmp_dir, final_dir)
        tmp_dir = None
        import hashlib
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
def dump_target(backup_dir, manifest):
    return os.path.join(backup_dir, "dump" if manifest.get("format") == "directory" else "dump.custom")


def check_toc(backup_dir, manifest, bin_dir=None):
    """``pg_restore --list``: the archive's table of contents reads (not a proof the data is there)."""
    result = _run([find_binary("pg_restore", bin_dir), "--list", dump_target(backup_dir, manifest)],
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
    admin = _connect(scratch_params, autocommit=True)
    created = False
    started = time.monotonic()
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                probe = _connect(scratch_params, dbname=name, read_only=True)
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
        _prepare_schemas(scratch_params, name, manifest)
        exe = find_binary("pg_restore", bin_dir)
        cmd = [exe, "--no-password", "--no-owner", "--no-acl", "-d", name]
        if manifest.get("format") == "directory":
            cmd += ["-j", str(max(1, int(jobs)))]
        cmd.append(dump_target(backup_dir, manifest))
        with libpq_environment(scratch_params, name) as env:
            result = _run(cmd, env)
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


def _prepare_schemas(params, dbname, manifest):
    """A table-level (-t) dump does not create its tables' schemas: create them in the empty database."""
    if any(c["type"] != "table" for c in manifest.get("covers", [])):
        return
    sql = _sql()
    conn = _connect(params, dbname=dbname, autocommit=True)
    try:
        with conn.cursor() as cur:
            for schema in sorted({e["schema"] for e in manifest["tables"].values()}):
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(sql.Identifier(schema)))
    finally:
        conn.close()


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


# --------------------------------------------------------------------------- records in the target database
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
    conn = _connect(params)
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
    conn = _connect(params)
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


# --------------------------------------------------------------------------- restores
def _database_exists(admin, name):
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None


def _drop_database(admin, name):
    sql = _sql()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {0}").format(sql.Identifier(name)))


def _compare_restored(params, dbname, manifest, keys=None, jobs=2):
    wanted = {k: v for k, v in manifest["tables"].items() if keys is None or k in keys}
    return compare_tables(wanted, restored_stats(params, dbname, wanted, jobs))


def restored_stats(params, dbname, entries, jobs=2):
    """Row counts and content hashes (the manifest's methods) of the manifest ``entries`` present in the
    restored database ``dbname``: one snapshot, shared by up to ``jobs`` connections that take the
    tables largest first, so a big restore is compared on every core the server has."""
    conn = _connect(params, dbname=dbname, read_only=True)
    workers = []
    try:
        with conn.cursor() as cur:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            pin_settings(cur)
            keys = [table_key(e["schema"], e["table"]) for e in entries.values()]
            cur.execute("SELECT k, c.oid IS NOT NULL, coalesce(pg_relation_size(c.oid), 0) "
                        "FROM unnest(%s::text[]) AS k LEFT JOIN pg_class c ON c.oid = to_regclass(k)", (keys,))
            found = {k: (present, size) for k, present, size in cur.fetchall()}
            present = sorted(((e["schema"], e["table"]) for e in entries.values()
                              if found.get(table_key(e["schema"], e["table"]), (False,))[0]),
                             key=lambda t: -found[table_key(*t)][1])
            methods = _methods(entries)
            cursors = [cur]
            jobs = min(int(jobs or 1), len(present))
            if jobs > 1:
                snapshot = export_snapshot(cur)
                for _ in range(jobs - 1):
                    workers.append(_connect(params, dbname=dbname))
                    cursors.append(join_snapshot(workers[-1], snapshot))
                    pin_settings(cursors[-1])
            merged = {}
            for part in run_over_cursors(cursors, present, lambda own, table: table_stats(own, [table], methods)):
                merged.update(part)
            return merged
    finally:
        for own in workers:
            own.close()
        conn.close()


def _methods(entries):
    """Hash method per table as recorded in a manifest (old manifests: text)."""
    return {key: entry.get("method", "text") for key, entry in entries.items()}


def restore_database(params, backup_dir, target_database, confirm_overwrite="", bin_dir=None, jobs=2,
                     no_owner=False, check_mode=False):
    """Restore a whole backup into ``target_database`` (created); an existing one needs the confirmation."""
    manifest, _ = load_manifest(backup_dir)
    problems = verify_files(backup_dir, manifest)
    if problems:
        raise BackupError("backup {0} does not match its manifest ({1}): refusing to restore it".format(
            manifest["backup_id"], "; ".join(p["message"] for p in problems[:3])), kind="damaged")
    admin = _connect(params, dbname="postgres" if params.get("login_db") == target_database else None,
                     autocommit=True)
    sql = _sql()
    try:
        exists = _database_exists(admin, target_database)
        if exists and confirm_overwrite != target_database:
            raise BackupError("database {0} already exists: restoring would overwrite it. Restore into a new "
                              "database (restore_target_database), or confirm with restore_confirm={0}".format(
                                  target_database), kind="confirmation")
        plan = {"backup_id": manifest["backup_id"], "target_database": target_database, "overwrites": exists,
                "tables": len(manifest["tables"])}
        if check_mode:
            return dict(plan, changed=True, problems=[])
        if exists:
            _drop_database(admin, target_database)
        cur = admin.cursor()
        cur.execute(sql.SQL("CREATE DATABASE {0} TEMPLATE template0").format(sql.Identifier(target_database)))
        cur.close()
    finally:
        admin.close()
    cmd = [find_binary("pg_restore", bin_dir), "--no-password", "-d", target_database, "--exit-on-error"]
    if no_owner:
        cmd += ["--no-owner", "--no-acl"]
    if manifest.get("format") == "directory":
        cmd += ["-j", str(max(1, int(jobs)))]
    cmd.append(dump_target(backup_dir, manifest))
    with libpq_environment(params, target_database) as env:
        result = _run(cmd, env)
    if result.returncode != 0:
        raise BackupError("pg_restore into {0} failed: {1}. The partially restored database {0} was left for "
                          "inspection; drop it before retrying".format(target_database, last_lines(result.stderr, 4)),
                          kind="restore")
    problems = _compare_restored(params, target_database, manifest)
    return dict(plan, changed=True, problems=problems)


def record_restore_test(source_params, backup_dir, evidence):
    """Count a whole restore that matched the manifest (restore_database, no problems) as the backup's
    restore test: verification.json and the backup's row in the SOURCE database's pgsafe.backup.

    Only a backup already verified by checksums and table of contents qualifies.
    """
    manifest, manifest_sha = load_manifest(backup_dir)
    path = os.path.join(backup_dir, VERIFICATION_NAME)
    try:
        with open(path) as handle:
            previous = json.load(handle)
    except (OSError, ValueError):
        previous = {}
    if not previous.get("verified"):
        raise BackupError("backup {0} has no passing checksum and table-of-contents verification ({1}): its restore "
                          "cannot stand as its restore test; verify it first (pgsafe_backup_verify)".format(
                              manifest["backup_id"], path), kind="unverified")
    restore = dict(evidence, status="ok", problems=[])
    document = verification_document(manifest["backup_id"], manifest_sha, dict(previous.get("checks") or {},
                                                                               restore="ok"),
                                     previous.get("problems") or [], restore)
    with open(path + ".tmp", "w") as handle:
        json.dump(document, handle, indent=1, sort_keys=True, default=str)
    os.replace(path + ".tmp", path)
    conn = _connect(source_params)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE pgsafe.backup SET restore_tested = true, details = coalesce(details, '{}'::jsonb) "
                        "|| jsonb_build_object('verification', coalesce(details->'verification', '{}'::jsonb) "
                        "|| jsonb_build_object('restore_test', %s::jsonb)) WHERE backup_id = %s AND verified",
                        (json.dumps(restore, default=str), manifest["backup_id"]))
            updated = cur.rowcount
        conn.commit()
    finally:
        conn.close()
    if not updated:
        raise BackupError("backup {0} is not recorded as verified in {1}: its restore test was not recorded".format(
            manifest["backup_id"], describe_target(source_params)), kind="unverified")
    return document


def restore_objects(params, backup_dir, covers, confirm_overwrite="", bin_dir=None, check_mode=False):
    """Put tables/schemas from a backup back into the target database, in ONE transaction.

    A missing table or schema is created with its data, indexes and constraints; an existing table has
    its rows replaced (DELETE + the backup's rows), which needs ``confirm_overwrite`` equal to the
    database name. The backup is first restored into a temporary database on the target server, from
    which pg_dump extracts exactly the objects; the script runs with psql --single-transaction and
    ON_ERROR_STOP, so an error (e.g. a foreign key from a table not restored) changes nothing.
    """
    sql = _sql()
    manifest, _ = load_manifest(backup_dir)
    problems = verify_files(backup_dir, manifest)
    if problems:
        raise BackupError("backup {0} does not match its manifest ({1}): refusing to restore from it".format(
            manifest["backup_id"], "; ".join(p["message"] for p in problems[:3])), kind="damaged")
    wanted = parse_covers(covers)
    if wanted == [{"type": "database"}]:
        raise BackupError("restore_objects takes tables or schemas; to restore the whole database use "
                          "restore_mode=database (into a new database)", kind="bad_input")
    backup_covers = manifest["covers"]
    from ansible.module_utils.pgsafe_backup import covers_object
    not_in_backup = [describe_cover(c) for c in wanted if not covers_object(backup_covers, c)]
    if not_in_backup:
        raise BackupError("backup {0} does not contain {1}".format(manifest["backup_id"], ", ".join(not_in_backup)),
                          kind="bad_input")
    in_backup = [(e["schema"], e["table"]) for e in manifest["tables"].values()]
    tables = tables_in_scope(in_backup, wanted)
    conn = _connect(params, read_only=True)
    try:
        with conn.cursor() as cur:
            database = server_facts(cur)["database"]
            existing_tables = set(list_tables(cur))
            existing_schemas = set(list_schemas(cur))
        conn.rollback()
    finally:
        conn.close()
    replace = [t for t in tables if t in existing_tables]
    create = [t for t in tables if t not in existing_tables]
    new_schemas = sorted({c["schema"] for c in wanted if c["type"] == "schema" and c["schema"] not in
                          existing_schemas})
    plan = {"backup_id": manifest["backup_id"], "database": database,
            "replace_rows_of": [table_key(*t) for t in replace], "create": [table_key(*t) for t in create],
            "create_schemas": new_schemas}
    if replace and confirm_overwrite != database:
        raise BackupError("restoring would replace the rows of existing tables {0} in database {1}: confirm with "
                          "restore_confirm={1} (nothing was changed)".format(", ".join(plan["replace_rows_of"]),
                                                                           database), kind="confirmation")
    if check_mode:
        return dict(plan, changed=bool(tables or new_schemas), problems=[])
    temp_db = "pgsafe_rs_" + uuid.uuid4().hex[:12]
    admin = _connect(params, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {0} TEMPLATE template0").format(sql.Identifier(temp_db)))
        _prepare_schemas(params, temp_db, manifest)
        cmd = [find_binary("pg_restore", bin_dir), "--no-password", "--no-owner", "--no-acl", "-d", temp_db,
               dump_target(backup_dir, manifest)]
        with libpq_environment(params, temp_db) as env:
            _run(cmd, env)  # errors of a partial (-t/-n) dump, e.g. FKs to tables it lacks, are expected here
            pieces = []
            pg_dump = find_binary("pg_dump", bin_dir)
            if new_schemas:
                args = []
                for schema in new_schemas:
                    args += ["-n", '"' + schema.replace('"', '""') + '"']
                pieces.append(_dump_plain(pg_dump, temp_db, args, env))
            create_rest = [t for t in create if t[0] not in new_schemas]
            if create_rest:
                pieces.append(_dump_plain(pg_dump, temp_db, _table_args(create_rest) + ["--no-owner", "--no-acl"],
                                          env))
            if replace:
                pieces.append(_dump_plain(pg_dump, temp_db, _table_args(replace) + ["--data-only"], env))
        script = ["\\set ON_ERROR_STOP on"]
        for schema in sorted({t[0] for t in create if t[0] not in new_schemas and t[0] not in existing_schemas}):
            script.append("CREATE SCHEMA {0};".format(quote_ident(schema)))
        for schema, table in reversed(replace):
            script.append("DELETE FROM {0};".format(table_key(schema, table)))
        script += pieces
        script_path = os.path.join(os.path.dirname(os.path.abspath(backup_dir)), ".restore-{0}.sql".format(temp_db))
        fd = os.open(script_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(script) + "\n")
        try:
            with libpq_environment(params, database) as env:
                result = _run([find_binary("psql", bin_dir), "--no-password", "-X", "-q", "--single-transaction",
                               "-v", "ON_ERROR_STOP=1", "-d", database, "-f", script_path], env)
        finally:
            os.unlink(script_path)
        if result.returncode != 0:
            raise BackupError("restoring {0} into {1} failed and was rolled back (nothing changed): {2}".format(
                ", ".join(plan["replace_rows_of"] + plan["create"]) or ", ".join(new_schemas), database,
                last_lines(result.stderr, 3)), kind="restore")
    finally:
        try:
            _drop_database(admin, temp_db)
        finally:
            admin.close()
    problems = _compare_restored(params, database, manifest, {table_key(*t) for t in tables})
    return dict(plan, changed=True, problems=problems)


def _table_args(tables):
    args = []
    for schema, table in tables:
        args += ["-t", '"{0}"."{1}"'.format(schema.replace('"', '""'), table.replace('"', '""'))]
    return args


def _dump_plain(pg_dump, dbname, args, env):
    result = _run([pg_dump, "--no-password", "-Fp", "-d", dbname] + args, env)
    if result.returncode != 0:
        raise BackupError("extracting objects from the restored backup failed: " + last_lines(result.stderr, 3),
                          kind="restore")
    return result.stdout
