# -*- coding: utf-8 -*-
"""The server side of a backup: client programs (pg_dump & co), connections and the catalog checks of
what a backup covers (exists, readable, not hidden by row security, how big).

Passwords reach pg_dump/pg_restore/pg_dumpall/psql only through the 0600 passfile of
``pgsafe_connection.libpq_environment``: never argv, never PGPASSWORD.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

from ansible.module_utils.pgsafe_backup import (PINNED_SETTINGS, SYSTEM_SCHEMAS, BackupError, describe_cover,
                                                missing_objects, tables_in_scope)
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect
from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_partitions import partitions_by_table
from ansible.module_utils.pgsafe_progress import Progress


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


def die_with_parent(cmd):
    """Linux: run under ``setpriv --pdeathsig KILL`` so pg_dump dies with a killed controller."""
    wrapper = shutil.which("setpriv")
    if wrapper and sys.platform.startswith("linux"):
        return [wrapper, "--pdeathsig", "KILL", "--"] + cmd
    return cmd


def _sql():
    from psycopg2 import sql
    return sql


def list_tables(cur):
    """Every ordinary and partitioned table outside the system schemas, as (schema, table), ordered; partitions
    are not listed: a partitioned table's rows are counted and hashed once, through it (``partitions_of``)."""
    cur.execute("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
                "AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
                "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' ORDER BY 1, 2", (list(SYSTEM_SCHEMAS),))
    return [tuple(row) for row in cur.fetchall()]


def partitions_of(cur, tables):
    """``{(schema, table): [(schema, partition), ...]}`` for the partitioned tables among ``tables``: every
    partition at any depth, by name.  pg_dump -t of a partitioned table (before --table-and-children, PG 16)
    dumps none of its partitions, so a targeted backup names them too."""
    return {key: [(schema, name) for _oid, schema, name in tree]
            for key, tree in partitions_by_table(cur, tables).items()}


def list_schemas(cur):
    cur.execute("SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) ORDER BY 1", (list(SYSTEM_SCHEMAS),))
    return [row[0] for row in cur.fetchall()]


def server_facts(cur):
    cur.execute("SELECT current_setting('server_version'), current_user, current_database(), "
                "(SELECT oid FROM pg_database WHERE datname = current_database()), "
                "r.rolsuper, r.rolbypassrls FROM pg_roles r WHERE r.rolname = current_user")
    version, user, database, oid, superuser, bypassrls = cur.fetchone()
    return {"server_version": version, "current_user": user, "database": database, "database_oid": int(oid),
            "superuser": bool(superuser), "bypassrls": bool(bypassrls)}


def _tables_where(cur, tables, condition):
    """The quoted names (``"schema"."table"``, as a Fix: statement takes them) of ``tables`` for which
    ``condition`` (SQL on pg_class c, pg_namespace n) is true."""
    found = []
    for schema, table in tables:
        cur.execute("SELECT " + condition + " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        row = cur.fetchone()
        if row is not None and row[0]:
            found.append(qualified(schema, table))
    return found


def privilege_problems(cur, tables):
    """Tables the login cannot read (SELECT) or whose schema it cannot use."""
    return _tables_where(cur, tables, "NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, "
                                      "'SELECT'))")


def rls_problems(cur, tables, facts):
    """Tables with row security that would hide rows from this login (the dump would be incomplete)."""
    if facts["superuser"] or facts["bypassrls"]:
        return []
    return _tables_where(cur, tables, "c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, "
                                      "'USAGE'))")


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


def connect_or_fail(params, dbname=None, **kwargs):
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


def run_program(cmd, env, timeout=None):
    return subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                          check=False)


def dump_target(backup_dir, manifest):
    return os.path.join(backup_dir, "dump" if manifest.get("format") == "directory" else "dump.custom")


def database_bytes(admin, name):
    """pg_database_size of ``name`` (a restore's progress)."""
    with admin.cursor() as cur:
        cur.execute("SELECT pg_database_size(%s)", (name,))
        return cur.fetchone()[0]


def restore_progress(name, manifest):
    """The progress record of a restore into ``name``: bytes of the database against the source's estimate."""
    return Progress("pg_restore of {0} into {1}".format(manifest.get("backup_id", "a backup"), name), unit="bytes",
                    total=manifest.get("estimate_bytes"), estimated=True)


def database_exists(admin, name):
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cur.fetchone() is not None


def drop_database(admin, name):
    sql = _sql()
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {0}").format(sql.Identifier(name)))


def prepare_schemas(params, dbname, manifest):
    """A table-level (-t) dump does not create its tables' schemas: create them in the empty database."""
    if any(c["type"] != "table" for c in manifest.get("covers", [])):
        return
    sql = _sql()
    conn = connect_or_fail(params, dbname=dbname, autocommit=True)
    try:
        with conn.cursor() as cur:
            for schema in sorted({e["schema"] for e in manifest["tables"].values()}):
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(sql.Identifier(schema)))
    finally:
        conn.close()
