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
attributes:
  check_mode:
    support: full
    description: Runs the same checks (reads only), except that a read-only session is not a problem.
  diff_mode:
    support: none
    description: Reads only (READ ONLY transaction); nothing changes.
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
queries:
  description: The statements this module ran, in order (catalog and statistics reads).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_identifiers import IdentifierError
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_preflight import inspect_session, table_names, too_old
from ansible.module_utils.pgsafe_reading import read_only_cursor


def main():
    module = PgsafeModule(
        argument_spec=dict(
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
    p = module.params
    try:
        names, readable_names = table_names(p["tables"], p["readable_tables"])
    except IdentifierError as exc:
        module.fail_json(msg="preflight tables: {0}".format(exc))
    with read_only_cursor(module) as cur:
        facts = inspect_session(cur, names, readable_names, p, module.check_mode)
    if too_old(facts, p["min_server_version"]):
        module.fail_json(msg=too_old(facts, p["min_server_version"]))
    if facts["problems"]:
        module.fail_json(msg="preflight found {0} problem(s): {1}".format(
            len(facts["problems"]), " | ".join(facts["problems"])), **facts)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
