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
  - Changes nothing by itself; runs the same in check mode.
  - "When asked, and only once every check passed (never in check mode): takes the run lock (I(run_lock), what
    pgsafe_run_lock I(state=acquired) does) and then records the run's start in C(pgsafe.run) (I(record_run),
    what pgsafe_run I(state=started) does, installing the product schema when needed), in the same module run.
    A run refused the lock records nothing; when the record fails, the lock just taken is let go."
  - Fails with a message naming the target (never the password) when the database cannot be reached.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Runs the same checks (reads only), except that a read-only session is not a problem; takes no
      lock and records nothing.
  diff_mode:
    support: none
    description: The checks read only (READ ONLY transaction); the run lock and the run record are bookkeeping.
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
  run_id:
    description: The run (named to a run refused the lock, and recorded). Required with I(run_lock) or I(record_run).
    type: str
  run_lock:
    description:
      - After the checks passed, hold the run lock for I(run_id) (one writing run at a time per database, a holder
        process; module_utils/pgsafe_run_lock.py); fails naming the run that holds it. Not in check mode.
    type: bool
    default: false
  run_lock_max_hours:
    description: With I(run_lock), the holder lets go after this long even if the controller cannot be watched.
    type: float
    default: 12
  record_run:
    description:
      - After the checks passed (and the lock was taken), record the start of run I(run_id) in C(pgsafe.run). Not in
        check mode.
    type: dict
    suboptions:
      playbook:
        description: Playbook name.
        type: str
        required: true
      environment:
        description: Environment name (prod, dev, staging, ...).
        type: str
        required: true
      operator:
        description: Who runs it (AWX user or the controller's user).
        type: str
      awx_job_id:
        description: AWX job id, when the run is an AWX job.
        type: str
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
run_lock:
  description: The run lock taken (I(run_lock)) - holder_pid, backend_pid, controller_pid; empty when none was taken.
  returned: always
  type: dict
run_recorded:
  description: Whether the run's start was recorded (I(record_run)).
  returned: always
  type: bool
meta_schema_created:
  description: Whether recording the run installed the product schema.
  returned: always
  type: bool
queries:
  description: The statements this module ran, in order (catalog and statistics reads; the run record).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_identifiers import IdentifierError
from ansible.module_utils.pgsafe_journal import record_start
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_preflight import inspect_session, table_names, too_old
from ansible.module_utils.pgsafe_reading import read_only_cursor
from ansible.module_utils.pgsafe_run_lock import release, take


def open_run(module):
    """The checks passed: the run lock, then the run's start record (as asked; never in check mode)."""
    p, record = module.params, module.params["record_run"]
    lock, created = {}, False
    if module.check_mode:
        return lock, False, created
    if p["run_lock"]:
        lock = take(module, p["run_id"], p["run_lock_max_hours"])
    if record is not None:
        try:
            created = record_start(module, p["run_id"], record["playbook"], record["environment"], record["operator"],
                                   record["awx_job_id"])
        except BaseException:  # fail_json exits too: the run does not go on, so its lock goes
            if lock:
                release(lock["holder_pid"])
            raise
    return lock, record is not None, created


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
            run_id=dict(type="str"),
            run_lock=dict(type="bool", default=False),
            run_lock_max_hours=dict(type="float", default=12),
            record_run=dict(type="dict", options=dict(
                playbook=dict(type="str", required=True),
                environment=dict(type="str", required=True),
                operator=dict(type="str"),
                awx_job_id=dict(type="str"),
            )),
        ),
        required_if=[("run_lock", True, ["run_id"])],
        required_by={"record_run": "run_id"},
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
    lock, recorded, created = open_run(module)
    module.exit_json(changed=False, run_lock=lock, run_recorded=recorded, meta_schema_created=created, **facts)


if __name__ == "__main__":
    main()
