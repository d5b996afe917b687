#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_preflight: can we reach the target, and as whom."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_preflight
short_description: Check that a target database is reachable and describe the session
description:
  - Connects over libpq in a READ ONLY transaction and reports the server version, the login's
    privileges, the database size and whether the product schema is installed.
  - Never changes anything; runs the same in check mode.
  - Fails with a message naming the target (never the password) when the database cannot be reached.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
options:
  min_server_version:
    description: Lowest server major version accepted.
    type: int
    default: 13
  tables:
    description:
      - Tables the plan touches (C(schema.table), quoted parts allowed). For these the preflight
        checks that no other session holds a lock on them, and, with I(require_owner), that the
        login owns them (or can SET ROLE to the owner), since ALTER TABLE needs ownership.
    type: list
    elements: str
    default: []
  require_owner:
    description:
      - Fail when the login cannot act as the owner of every table in I(tables), or lacks C(CREATE) on
        their schemas (retiring a table, restoring it and creating a merge target need it).
    type: bool
    default: false
  readable_tables:
    description:
      - Tables the run only reads (validation, fingerprints); the preflight names each one that exists
        and that the login cannot C(SELECT). Tables in I(tables) are always checked for C(SELECT) too.
        Missing tables are not a problem here (a retired table is gone on purpose).
    type: list
    elements: str
    default: []
  max_transaction_age_seconds:
    description: Fail when another session has a transaction open longer than this (it would block DDL).
    type: int
    default: 300
  require_writable:
    description:
      - Fail when the session cannot write - a hot standby, or a login or database configured with
        C(default_transaction_read_only) - so a changing run stops before it starts. Ignored in check mode.
    type: bool
    default: true
  max_replication_lag_bytes:
    description: Fail when a replica lags more than this many bytes of WAL behind (0 disables the check).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Check connectivity to the target database
  pgsafe_preflight:
    login_host: "{{ pg_host }}"
    login_port: "{{ pg_port }}"
    login_user: "{{ pg_user }}"
    login_password: "{{ pg_password }}"
    login_db: "{{ pg_database }}"
"""

RETURN = r"""
server_version:
  description: Server version string.
  returned: success
  type: str
  sample: "15.18"
server_version_num:
  description: Server version number.
  returned: success
  type: int
  sample: 150018
current_user:
  description: The role the session runs as.
  returned: success
  type: str
is_superuser:
  description: Whether that role is a superuser.
  returned: success
  type: bool
problems:
  description: Every blocking finding (long transactions, locks held on the plan's tables, ownership, replica lag).
  returned: always
  type: list
  elements: str
replicas:
  description: Replicas seen in pg_stat_replication with their lag in bytes.
  returned: success
  type: list
  elements: dict
database_size_bytes:
  description: Size of the target database.
  returned: success
  type: int
meta_schema_installed:
  description: Whether the product schema (pgsafe) exists at the current version.
  returned: success
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_identifiers import IdentifierError, qualified, quote_ident, split_qualified
from ansible.module_utils.pgsafe_meta import meta_schema_access, meta_schema_installed

LONG_TRANSACTIONS = """
    SELECT pid, usename, state, extract(epoch FROM now() - xact_start)::int, left(query, 120)
      FROM pg_stat_activity
     WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
       AND datname = current_database()
       AND now() - xact_start > make_interval(secs => %s)
"""
LOCKS_ON_TABLES = """
    SELECT l.pid, l.mode, n.nspname, c.relname
      FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE l.pid <> pg_backend_pid()
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
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
        cur.execute(LOCKS_ON_TABLES, ([n[0] for n in names], [n[1] for n in names]))
        for pid, mode, schema, table in cur.fetchall():
            problems.append("session {0} holds {1} on {2}: wait for it to finish or stop it before the run".format(
                pid, mode, qualified(schema, table)))
    return problems


def _unreadable(user, schema, table):
    return ("login {0} cannot read table {1}: GRANT pg_read_all_data (or SELECT on it) to the login, "
            "see docs/least-privilege.md".format(user, qualified(schema, table)))


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            min_server_version=dict(type="int", default=13),
            tables=dict(type="list", elements="str", default=[]),
            readable_tables=dict(type="list", elements="str", default=[]),
            require_owner=dict(type="bool", default=False),
            max_transaction_age_seconds=dict(type="int", default=300),
            max_replication_lag_bytes=dict(type="int", default=0),
            require_writable=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    try:
        names = [split_qualified(t) for t in module.params["tables"]]
        readable_names = [split_qualified(t) for t in module.params["readable_tables"]]
        readable_names = [n for n in readable_names if n not in names]
    except IdentifierError as exc:
        module.fail_json(msg="preflight tables: {0}".format(exc))
    try:
        conn = connect(module.params, read_only=True)
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                        "current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), "
                        "pg_database_size(current_database())")
            version, version_num, user, superuser, size = cur.fetchone()
            installed = meta_schema_installed(cur)
            problems = inspect_tables(cur, names, readable_names, module.params, user)
            if meta_schema_access(cur) == "no-access":
                problems.append("login {0} cannot use the product schema pgsafe (it records runs, backups and "
                                "quarantined rows there): GRANT USAGE, CREATE ON SCHEMA pgsafe and the privileges on "
                                "its tables to it, or run as the login that installed it".format(user))
            cur.execute(LONG_TRANSACTIONS, (module.params["max_transaction_age_seconds"],))
            for pid, user, state, age, query in cur.fetchall():
                problems.append("session {0} ({1}, {2}) has had a transaction open for {3}s ({4!r}): it would "
                                "block DDL; end it before the run".format(pid, user, state, age, query))
            cur.execute(READ_ONLY_SETTINGS)
            standby, read_only_login = cur.fetchone()
            if module.params["require_writable"] and not module.check_mode and (standby or read_only_login):
                problems.append("the session cannot write: {0}. A changing run needs the primary and a login without "
                                "default_transaction_read_only (use this login for validate.yml and --check runs "
                                "only)".format("the server is a hot standby" if standby else
                                               "login {0} is configured with default_transaction_read_only".format(user)))
            cur.execute(REPLICAS)
            replicas = [dict(name=r[0], address=r[1], state=r[2], lag_bytes=r[3]) for r in cur.fetchall()]
            limit = module.params["max_replication_lag_bytes"]
            for replica in replicas:
                if limit and replica["lag_bytes"] > limit:
                    problems.append("replica {0} lags {1} bytes behind (limit {2}): wait for it to catch up".format(
                        replica["name"], replica["lag_bytes"], limit))
        conn.rollback()
    finally:
        conn.close()
    if version_num // 10000 < module.params["min_server_version"]:
        module.fail_json(msg="server {0} is older than the supported minimum {1}: upgrade the server or "
                             "lower min_server_version".format(version, module.params["min_server_version"]))
    facts = dict(server_version=version, server_version_num=version_num, current_user=user,
                 is_superuser=bool(superuser), database_size_bytes=size, meta_schema_installed=installed,
                 problems=problems, replicas=replicas)
    if problems:
        module.fail_json(msg="preflight found {0} problem(s): {1}".format(len(problems), " | ".join(problems)),
                         **facts)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
