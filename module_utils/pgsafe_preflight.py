# -*- coding: utf-8 -*-
"""Preflight: can this login run the plan on this target, and what stands in its way.

One catalog read per concern (read only, in the caller's transaction): the session (version, role,
size, product schema), the plan's tables (present, readable, owned, unlocked), the tables the run
only reads, long transactions, a read-only session, lagging replicas.  Every blocking finding is a
problem naming what to do.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_identifiers import qualified, quote_ident, split_qualified
from ansible.module_utils.pgsafe_meta import meta_schema_access, meta_schema_installed

LONG_TRANSACTIONS = """
    SELECT pid, usename, state, extract(epoch FROM now() - xact_start)::int, left(query, 120)
      FROM pg_stat_activity
     WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
       AND datname = current_database()
       AND now() - xact_start > make_interval(secs => %s)
"""
# A lock held by a transaction younger than this is the application's ordinary traffic (each strong lock of
# the run waits for it under a lock timeout, with retries): only older holders stand in the run's way.
LOCK_HOLDER_GRACE_SECONDS = 1.0
LOCKS_ON_TABLES = """
    SELECT l.pid, l.mode, n.nspname, c.relname
      FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.pid <> pg_backend_pid()
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
       AND clock_timestamp() - a.xact_start > make_interval(secs => %s)
"""
OWNERSHIP = """
    SELECT t.nspname, t.relname, c.oid IS NOT NULL, coalesce(pg_has_role(current_user, c.relowner, 'USAGE'), false),
           coalesce(has_table_privilege(c.oid, 'SELECT'), false),
           coalesce(has_schema_privilege(n.oid, 'CREATE'), false)
      FROM unnest(%s::text[], %s::text[]) AS t(nspname, relname)
      LEFT JOIN pg_namespace n ON n.nspname = t.nspname
      LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.relname
"""
READ_ONLY_SETTINGS = """
    SELECT pg_is_in_recovery(),
           EXISTS (SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) AS c
                    WHERE s.setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
                      AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                      AND lower(c) IN ('default_transaction_read_only=on', 'default_transaction_read_only=true',
                                       'default_transaction_read_only=1'))
"""
REPLICAS = """
    SELECT application_name, client_addr::text, state,
           coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint
      FROM pg_stat_replication
"""


def inspect_tables(cur, names, readable_names, params, user):
    """Problems of the plan's tables (``names``: present, readable, owned when required, unlocked) and of
    the tables the run only reads (``readable_names``: readable where they exist), in one catalog read."""
    problems, no_create = [], []
    changing = set(names)
    everything = list(names) + [n for n in readable_names if n not in changing]
    if not everything:
        return problems
    cur.execute(OWNERSHIP, ([n[0] for n in everything], [n[1] for n in everything]))
    for schema, table, exists, owner, readable, can_create in cur.fetchall():
        if (schema, table) not in changing:
            if exists and not readable:  # a missing table is not this check's business
                problems.append(_unreadable(user, schema, table))
            continue
        if not exists:
            problems.append("table {0} does not exist: check the plan's table names".format(qualified(schema, table)))
            continue
        if params["require_owner"] and not owner:
            problems.append("must be owner of table {0}: run as its owner, or GRANT the owning role to the "
                            "migration login (SET ROLE through session_role)".format(qualified(schema, table)))
        if not readable:
            problems.append(_unreadable(user, schema, table))
        if params["require_owner"] and not can_create and schema not in no_create:
            no_create.append(schema)
    for schema in no_create:
        problems.append("login {0} lacks CREATE on schema {1} (retiring, restoring and merging tables there need "
                        "it): GRANT CREATE ON SCHEMA {1} TO the role that owns its tables".format(
                            user, quote_ident(schema)))
    if names:
        cur.execute(LOCKS_ON_TABLES, ([n[0] for n in names], [n[1] for n in names], LOCK_HOLDER_GRACE_SECONDS))
        for pid, mode, schema, table in cur.fetchall():
            problems.append("session {0} holds {1} on {2}: wait for it to finish or stop it before the run".format(
                pid, mode, qualified(schema, table)))
    return problems


def _unreadable(user, schema, table):
    return ("login {0} cannot read table {1}: GRANT pg_read_all_data (or SELECT on it) to the login, "
            "see docs/least-privilege.md".format(user, qualified(schema, table)))


def table_names(tables, readable_tables):
    """(tables the plan changes, tables it only reads and does not change) as (schema, table); IdentifierError."""
    names = [split_qualified(t) for t in tables]
    readable = [split_qualified(t) for t in readable_tables]
    return names, [n for n in readable if n not in names]


def inspect_session(cur, names, readable_names, params, check_mode=False):
    """The preflight's facts (server, role, size, product schema, replicas) with every problem found."""
    cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                "current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                "pg_database_size(current_database())")
    version, version_num, user, superuser, size = cur.fetchone()
    installed = meta_schema_installed(cur)
    problems = inspect_tables(cur, names, readable_names, params, user)
    if meta_schema_access(cur) == "no-access":
        problems.append("login {0} cannot use the product schema pgsafe (it records runs, backups and "
                        "quarantined rows there): GRANT USAGE, CREATE ON SCHEMA pgsafe and the privileges on "
                        "its tables to it, or run as the login that installed it".format(user))
    problems += long_transactions(cur, params["max_transaction_age_seconds"])
    if params["require_writable"] and not check_mode:
        problems += read_only_session(cur, user)
    replicas, lagging = replication(cur, params["max_replication_lag_bytes"])
    return dict(server_version=version, server_version_num=version_num, current_user=user,
                is_superuser=bool(superuser), database_size_bytes=size, meta_schema_installed=installed,
                problems=problems + lagging, replicas=replicas)


def long_transactions(cur, max_age_seconds):
    cur.execute(LONG_TRANSACTIONS, (max_age_seconds,))
    return ["session {0} ({1}, {2}) has had a transaction open for {3}s ({4!r}): it would block DDL; end it "
            "before the run".format(pid, user, state, age, query) for pid, user, state, age, query in cur.fetchall()]


def read_only_session(cur, user):
    cur.execute(READ_ONLY_SETTINGS)
    standby, read_only_login = cur.fetchone()
    if not (standby or read_only_login):
        return []
    return ["the session cannot write: {0}. A changing run needs the primary and a login without "
            "default_transaction_read_only (use this login for validate.yml and --check runs only)".format(
                "the server is a hot standby" if standby else
                "login {0} is configured with default_transaction_read_only".format(user))]


def replication(cur, limit):
    """(replicas with their lag, problems of those lagging more than ``limit`` bytes; 0: no limit)."""
    cur.execute(REPLICAS)
    replicas = [dict(name=r[0], address=r[1], state=r[2], lag_bytes=r[3]) for r in cur.fetchall()]
    return replicas, ["replica {0} lags {1} bytes behind (limit {2}): wait for it to catch up".format(
        r["name"], r["lag_bytes"], limit) for r in replicas if limit and r["lag_bytes"] > limit]


def too_old(facts, min_server_version):
    """Why the server is refused (older than the supported minimum), or None."""
    if facts["server_version_num"] // 10000 >= min_server_version:
        return None
    return ("server {0} is older than the supported minimum {1}: upgrade the server or lower "
            "min_server_version".format(facts["server_version"], min_server_version))
