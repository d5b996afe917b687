# -*- coding: utf-8 -*-
"""Restoring backups: a whole database, or tables/schemas in one transaction, compared with the manifest
table by table; a matching whole restore recorded as the backup's restore test."""
from __future__ import annotations

import json
import os
import time
import uuid

from ansible.module_utils.pgsafe_backup import (VERIFICATION_NAME, BackupError, compare_tables, covers_object,
                                                describe_cover, last_lines, load_manifest, parse_covers,
                                                table_args, tables_in_scope, verification_document, verify_files)
from ansible.module_utils.pgsafe_backup_records import record_backup
from ansible.module_utils.pgsafe_backup_server import (_sql, connect_or_fail, database_bytes, database_exists, drop_database,
                                                       dump_target, find_binary, list_schemas, list_tables,
                                                       partitions_of, pin_settings, prepare_schemas, restore_progress,
                                                       run_program, server_facts)
from ansible.module_utils.pgsafe_connection import describe_target, libpq_environment
from ansible.module_utils.pgsafe_content_hash import manifest_sum_sql, table_stats
from ansible.module_utils.pgsafe_fingerprint import (SNAPSHOT_FACTS_SQL, add_piece, fingerprint_document,
                                                     fingerprint_table, piece_filters, store_once)
from ansible.module_utils.pgsafe_fingerprint import list_tables as list_user_tables
from ansible.module_utils.pgsafe_identifiers import canonical_key, qualified, quote_ident, table_key
from ansible.module_utils.pgsafe_parallel import export_snapshot, join_snapshot, run_over_cursors
from ansible.module_utils.pgsafe_progress import watching
from ansible.module_utils.pgsafe_snapshot import schema_fingerprint, take_snapshot


def _compare_restored(params, dbname, manifest, keys=None, jobs=2, fingerprint=False):
    """Problems of the restored tables against the manifest; with ``fingerprint``, (problems, the data fingerprint
    of the restored database taken in the same read)."""
    wanted = {k: v for k, v in manifest["tables"].items() if keys is None or canonical_key(k) in keys}
    stats, fp = read_restored(params, dbname, wanted, jobs, fingerprint=fingerprint)
    problems = compare_tables(wanted, stats)
    return (problems, fp) if fingerprint else problems


def restored_stats(params, dbname, entries, jobs=2, snapshot=None, methods=None):
    """Row counts and content hashes (the manifest's methods) of the manifest ``entries`` present in the
    restored database ``dbname``: one snapshot, shared by up to ``jobs`` connections that take the
    tables largest first, so a big restore is compared on every core the server has.

    ``snapshot``: read in that exported snapshot instead of a new one (the rehearsal's consistency point on
    the source, pgsafe_pgbackrest_copy); ``methods``: {table_key: method} instead of the entries' ({}: each
    table's own, as a backup's manifest takes them)."""
    return read_restored(params, dbname, entries, jobs, snapshot, methods)[0]


def read_restored(params, dbname, entries, jobs=2, snapshot=None, methods=None, fingerprint=False):
    """``(restored_stats, fingerprint or None)``. With ``fingerprint``, the same read also takes the data
    fingerprint (pgsafe_fingerprint's, of every user table) of ``dbname``: in the one snapshot the manifest
    is compared in, a table hashed by the manifest's "record" method gives both hashes in ONE scan (same rows,
    same snapshot: ``fingerprint_table(also=...)``); any other table (text method, inheritance children, not
    in the manifest) is read once per proof, still in that snapshot. The fingerprint's ``schema_fingerprint``
    is pgsafe_snapshot's of the same snapshot."""
    conn = connect_or_fail(params, dbname=dbname, read_only=snapshot is None)
    workers = []
    try:
        if snapshot:
            cur = join_snapshot(conn, snapshot)
        else:
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            cur = conn.cursor()
        with cur:
            # The schema too, first (the login's own settings, as pgsafe_snapshot reads it), in the same snapshot.
            schema = schema_fingerprint(take_snapshot(cur)) if fingerprint else None
            pin_settings(cur)
            methods = _methods(entries) if methods is None else methods
            work, facts = _read_jobs(cur, entries, methods, fingerprint, max(1, int(jobs or 1)))
            cursors = [cur]
            jobs = min(int(jobs or 1), len(work))
            if jobs > 1:
                exported = export_snapshot(cur)
                for _ in range(jobs - 1):
                    workers.append(connect_or_fail(params, dbname=dbname))
                    cursors.append(join_snapshot(workers[-1], exported))
                    pin_settings(cursors[-1])
            stats, tables = {}, {}
            for part in run_over_cursors(cursors, work, lambda own, job: _read_one(own, job, methods)):
                for key, entry in part[0].items():  # a piece's rows and hash add to the table's (sums)
                    stats[key] = dict(entry, rows=stats[key]["rows"] + entry["rows"], hash=str(
                        int(stats[key]["hash"]) + int(entry["hash"]))) if key in stats else entry
                for key, entry in part[1].items():
                    add_piece(tables, key, entry)
            return stats, (dict(fingerprint_document(facts[0], facts[1], tables), schema_fingerprint=schema)
                           if fingerprint else None)
    finally:
        for own in workers:
            own.close()
        conn.close()


def _read_jobs(cur, entries, methods, fingerprint, workers):
    """The reads, largest first: ("stats", table) for the manifest, ("fp", table, relkind, piece) for the
    fingerprint, ("both", table, relkind, piece) where one scan gives both (record method, and the same rows: no
    inheritance children, which the manifest's scan includes and the fingerprint's ONLY leaves to their own
    entries); a large ordinary table's fingerprint reads in pieces over the ``workers`` (piece_filters)."""
    names = [qualified(e["schema"], e["table"]) for e in entries.values()]
    targets, parents, facts, block_size = {}, set(), None, 0
    if fingerprint:
        cur.execute(SNAPSHOT_FACTS_SQL)
        facts = cur.fetchone()
        cur.execute("SELECT current_setting('block_size')::int * "
                    "(current_setting('server_version_num')::int >= 140000)::int")
        block_size = cur.fetchone()[0]  # 0: no block ranges before PostgreSQL 14, each table read whole
        targets = {(s, t): kind for s, t, kind in list_user_tables(cur)}
        cur.execute("SELECT DISTINCT n.nspname, c.relname FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c "
                    "ON c.oid = i.inhparent JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace")
        parents = set(cur.fetchall())
    cur.execute("SELECT k, c.oid IS NOT NULL, coalesce(pg_relation_size(c.oid), 0) "
                "FROM unnest(%s::text[]) AS k LEFT JOIN pg_class c ON c.oid = to_regclass(k)",
                (names + [qualified(*t) for t in targets],))
    found = {k: (present, size) for k, present, size in cur.fetchall()}
    jobs = []

    def hashed(how, table, kind):
        size = found.get(qualified(*table), (False, 0))[1]
        pieces = piece_filters(size, block_size, workers) if block_size and kind == "r" else [None]
        return [(-size // len(pieces), (how, table, kind, where)) for where in pieces]

    for e in entries.values():
        table = (e["schema"], e["table"])
        if not found.get(qualified(*table), (False,))[0]:
            continue
        kind = targets.pop(table, None)
        if kind and methods.get(table_key(*table)) == "record" and (kind == "p" or table not in parents):
            jobs += hashed("both", table, kind)
        else:
            jobs += [(-found[qualified(*table)][1], ("stats", table))] + (hashed("fp", table, kind) if kind else [])
    for table, kind in targets.items():
        jobs += hashed("fp", table, kind)
    jobs.sort(key=lambda job: job[0])
    return [job for _, job in jobs], facts


def _read_one(cur, job, methods):
    """({table_key: manifest stats}, {table_key: fingerprint entry}) of one job of _read_jobs."""
    if job[0] == "stats":
        return table_stats(cur, [job[1]], methods), {}
    key, entry, more = fingerprint_table(cur, job[1][0], job[1][1], job[2], where=job[3],
                                         also=[manifest_sum_sql("record")] if job[0] == "both" else [])
    if job[0] == "fp":
        return {}, {key: entry}
    stats = {"schema": job[1][0], "table": job[1][1], "rows": entry["rows"], "hash": more[0], "method": "record"}
    return {key: stats}, {key: entry}


def _methods(entries):
    """Hash method per table (table_key) as recorded in a manifest (old manifests: text; keys of any spelling)."""
    return {canonical_key(key): entry.get("method", "text") for key, entry in entries.items()}


def restore_database(params, backup_dir, target_database, confirm_overwrite="", bin_dir=None, jobs=2,
                     no_owner=False, check_mode=False, fingerprint=False):
    """Restore a whole backup into ``target_database`` (created); an existing one needs the confirmation.
    ``fingerprint``: the comparison's read also takes the restored database's data fingerprint (``fingerprint``
    in the result), in the snapshot the tables are compared in."""
    manifest, _ = load_manifest(backup_dir)
    problems = verify_files(backup_dir, manifest)
    if problems:
        raise BackupError("backup {0} does not match its manifest ({1}): refusing to restore it".format(
            manifest["backup_id"], "; ".join(p["message"] for p in problems[:3])), kind="damaged")
    admin = connect_or_fail(params, dbname="postgres" if params.get("login_db") == target_database else None,
                     autocommit=True)
    sql = _sql()
    try:
        exists = database_exists(admin, target_database)
        if exists and confirm_overwrite != target_database:
            raise BackupError("database {0} already exists: restoring would overwrite it. Restore into a new "
                              "database (restore_target_database), or confirm with restore_confirm={0}".format(
                                  target_database), kind="confirmation")
        plan = {"backup_id": manifest["backup_id"], "target_database": target_database, "overwrites": exists,
                "tables": len(manifest["tables"]),
                "rows_from_backup": {canonical_key(k): e["rows"] for k, e in manifest["tables"].items()}}
        if check_mode:
            return dict(plan, changed=True, problems=[])
        if exists:
            drop_database(admin, target_database)
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
    watcher = connect_or_fail(params, dbname="postgres" if params.get("login_db") == target_database else None,
                              autocommit=True)
    try:
        with libpq_environment(params, target_database) as env, \
                restore_progress(target_database, manifest) as progress, \
                watching(progress, lambda: database_bytes(watcher, target_database)):
            result = run_program(cmd, env)
    finally:
        watcher.close()
    if result.returncode != 0:
        raise BackupError("pg_restore into {0} failed: {1}. The partially restored database {0} was left for "
                          "inspection; drop it before retrying".format(target_database, last_lines(result.stderr, 4)),
                          kind="restore")
    if fingerprint:
        problems, fp = _compare_restored(params, target_database, manifest, jobs=jobs, fingerprint=True)
        return dict(plan, changed=True, problems=problems, schema_fingerprint=fp.pop("schema_fingerprint"),
                    fingerprint=fp)
    return dict(plan, changed=True, problems=_compare_restored(params, target_database, manifest, jobs=jobs))


def restore_database_recorded(params, check_mode=False):
    """pgsafe_backup_restore's I(mode=database): ``restore_database`` with the module's options, then, when every
    table matched the manifest, the restore recorded as the backup's restore test (``record_restore_test_in``)
    and as the target's own backup (``record_as_target_backup``, the rehearsal's copy)."""
    p = params
    started = time.monotonic()
    label = p.get("fingerprint_label") or ""
    result = restore_database(p, p["path"], p["target_database"], p["confirm_overwrite"], p["pg_bin_dir"],
                              p["jobs"], p["no_owner"], check_mode, fingerprint=bool(label))
    result["restore_test_recorded"] = result["recorded_as_target_backup"] = False
    if check_mode or result["problems"]:
        result.pop("fingerprint", None)  # of a copy that is not the backup: nothing to stand on
        result.pop("schema_fingerprint", None)
        return result
    if label:
        # The restored database's data fingerprint, read in the snapshot its tables were just proven equal to the
        # manifest in (the same scans): stored as the run's fingerprint ``label`` of the copy.
        result["fingerprint_stored_id"] = store_once(dict(p, login_db=p["target_database"]), result["fingerprint"],
                                                     label, p.get("fingerprint_run_id"))[0]
    evidence = {"database": p["target_database"], "server": describe_target(p, p["target_database"]),
                "tables_compared": result["tables"], "seconds": round(time.monotonic() - started, 3),
                "how": "whole restore compared with the manifest (pgsafe_backup_restore)"}
    if p["record_restore_test_in"]:
        record_restore_test(p["record_restore_test_in"], p["path"], evidence)
        result["restore_test_recorded"] = True
    if p["record_as_target_backup"]:
        manifest, manifest_sha = load_manifest(p["path"])
        record_backup(dict(p, login_db=p["target_database"]), manifest, manifest_sha,
                      p["target_backup_locations"] or [p["path"]],
                      {"verified": True, "restore_tested": True, "checks": {"checksums": "ok", "restore": "ok"},
                       "problems": [], "restore_test": evidence}, restored_copy=evidence)
        result["recorded_as_target_backup"] = True
    return result


def restore_diff(result):
    """(before, after) of a restore for --diff: the target's tables whose rows are replaced (or the database
    overwritten), then every table the target gets with the backup's row count."""
    rows = result.get("rows_from_backup") or {}
    if "target_database" in result:
        before = {"database": result["target_database"], "exists": result["overwrites"]}
        after = {"database": result["target_database"], "tables": rows}
    else:
        before = {"database": result["database"], "tables_whose_rows_are_replaced": result["replace_rows_of"]}
        after = {"database": result["database"], "tables": rows, "schemas_created": result["create_schemas"]}
    return before, after


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
    conn = connect_or_fail(source_params)
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


def _objects_plan(params, backup_dir, covers, confirm_overwrite):
    """What restoring ``covers`` from the backup would do to the target (nothing changed; refusals raised)."""
    manifest, _ = load_manifest(backup_dir)
    problems = verify_files(backup_dir, manifest)
    if problems:
        raise BackupError("backup {0} does not match its manifest ({1}): refusing to restore from it".format(
            manifest["backup_id"], "; ".join(p["message"] for p in problems[:3])), kind="damaged")
    wanted = parse_covers(covers)
    if wanted == [{"type": "database"}]:
        raise BackupError("restore_objects takes tables or schemas; to restore the whole database use "
                          "restore_mode=database (into a new database)", kind="bad_input")
    not_in_backup = [describe_cover(c) for c in wanted if not covers_object(manifest["covers"], c)]
    if not_in_backup:
        raise BackupError("backup {0} does not contain {1}".format(manifest["backup_id"], ", ".join(not_in_backup)),
                          kind="bad_input")
    tables = tables_in_scope([(e["schema"], e["table"]) for e in manifest["tables"].values()], wanted)
    conn = connect_or_fail(params, read_only=True)
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
    rows = {canonical_key(k): e["rows"] for k, e in manifest["tables"].items()}
    plan = {"backup_id": manifest["backup_id"], "database": database,
            "replace_rows_of": [table_key(*t) for t in replace], "create": [table_key(*t) for t in create],
            "create_schemas": new_schemas, "rows_from_backup": {table_key(*t): rows.get(table_key(*t)) for t in tables}}
    if replace and confirm_overwrite != database:
        raise BackupError("restoring would replace the rows of existing tables {0} in database {1}: confirm with "
                          "restore_confirm={1} (nothing was changed)".format(", ".join(plan["replace_rows_of"]),
                                                                           database), kind="confirmation")
    work = {"manifest": manifest, "tables": tables, "replace": replace, "create": create,
            "new_schemas": new_schemas, "existing_schemas": existing_schemas}
    return plan, work


def _extract_objects(params, backup_dir, temp_db, work, bin_dir):
    """The backup restored into ``temp_db``; the plain SQL that creates or refills exactly the planned objects."""
    manifest, new_schemas, create, replace = work["manifest"], work["new_schemas"], work["create"], work["replace"]
    prepare_schemas(params, temp_db, manifest)
    cmd = [find_binary("pg_restore", bin_dir), "--no-password", "--no-owner", "--no-acl", "-d", temp_db,
           dump_target(backup_dir, manifest)]
    pieces = []
    with libpq_environment(params, temp_db) as env:
        run_program(cmd, env)  # errors of a partial (-t/-n) dump, e.g. FKs to tables it lacks, are expected here
        partitions = _restored_partitions(params, temp_db, create + replace)
        pg_dump = find_binary("pg_dump", bin_dir)
        if new_schemas:
            args = []
            for schema in new_schemas:
                args += ["-n", '"' + schema.replace('"', '""') + '"']
            pieces.append(_dump_plain(pg_dump, temp_db, args, env))
        create_rest = [t for t in create if t[0] not in new_schemas]
        if create_rest:
            pieces.append(_dump_plain(pg_dump, temp_db, table_args(create_rest, partitions) + ["--no-owner", "--no-acl"],
                                      env))
        if replace:
            pieces.append(_dump_plain(pg_dump, temp_db, table_args(replace, partitions) + ["--data-only"], env))
    script = ["\\set ON_ERROR_STOP on"]
    for schema in sorted({t[0] for t in create if t[0] not in new_schemas and t[0] not in work["existing_schemas"]}):
        script.append("CREATE SCHEMA {0};".format(quote_ident(schema)))
    for schema, table in reversed(replace):
        script.append("DELETE FROM {0};".format(qualified(schema, table)))
    return script + pieces


def _run_script(params, database, script, script_path, bin_dir):
    """psql --single-transaction with ON_ERROR_STOP: all of the script, or nothing."""
    fd = os.open(script_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(script) + "\n")
    try:
        with libpq_environment(params, database) as env:
            return run_program([find_binary("psql", bin_dir), "--no-password", "-X", "-q", "--single-transaction",
                                "-v", "ON_ERROR_STOP=1", "-d", database, "-f", script_path], env)
    finally:
        os.unlink(script_path)


def restore_objects(params, backup_dir, covers, confirm_overwrite="", bin_dir=None, check_mode=False):
    """Put tables/schemas from a backup back into the target database, in ONE transaction.

    A missing table or schema is created with its data, indexes and constraints; an existing table has
    its rows replaced (DELETE + the backup's rows), which needs ``confirm_overwrite`` equal to the
    database name. The backup is first restored into a temporary database on the target server, from
    which pg_dump extracts exactly the objects; the script runs with psql --single-transaction and
    ON_ERROR_STOP, so an error (e.g. a foreign key from a table not restored) changes nothing.
    """
    sql = _sql()
    plan, work = _objects_plan(params, backup_dir, covers, confirm_overwrite)
    database = plan["database"]
    if check_mode:
        return dict(plan, changed=bool(work["tables"] or work["new_schemas"]), problems=[])
    temp_db = "pgsafe_rs_" + uuid.uuid4().hex[:12]
    admin = connect_or_fail(params, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {0} TEMPLATE template0").format(sql.Identifier(temp_db)))
        script = _extract_objects(params, backup_dir, temp_db, work, bin_dir)
        script_path = os.path.join(os.path.dirname(os.path.abspath(backup_dir)), ".restore-{0}.sql".format(temp_db))
        result = _run_script(params, database, script, script_path, bin_dir)
        if result.returncode != 0:
            raise BackupError("restoring {0} into {1} failed and was rolled back (nothing changed): {2}".format(
                ", ".join(plan["replace_rows_of"] + plan["create"]) or ", ".join(work["new_schemas"]), database,
                last_lines(result.stderr, 3)), kind="restore")
    finally:
        try:
            drop_database(admin, temp_db)
        finally:
            admin.close()
    problems = _compare_restored(params, database, work["manifest"], {table_key(*t) for t in work["tables"]})
    return dict(plan, changed=True, problems=problems)


def _restored_partitions(params, database, tables):
    """The partitions of the partitioned ones among ``tables`` in the restored copy (extracted with them)."""
    conn = connect_or_fail(params, dbname=database, read_only=True)
    try:
        with conn.cursor() as cur:
            return partitions_of(cur, tables)
    finally:
        conn.close()


def _dump_plain(pg_dump, dbname, args, env):
    result = run_program([pg_dump, "--no-password", "-Fp", "-d", dbname] + args, env)
    if result.returncode != 0:
        raise BackupError("extracting objects from the restored backup failed: " + last_lines(result.stderr, 3),
                          kind="restore")
    return result.stdout
