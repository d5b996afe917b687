#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_validate: is the database what the code expects, with nothing lost."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_validate
short_description: Validate a database after a migration (FKs, orphans, indexes, CRUD probe, conformance, integrity)
description:
  - C(foreign_keys) every foreign key is validated; every NOT VALID one is scanned for orphan rows (count and sample).
  - C(invalid_indexes) no index is left INVALID (a failed CREATE INDEX CONCURRENTLY).
  - C(crud_probe) insert, read, update and delete along the foreign keys the code declares (from the reference;
    those touching the tables the I(plan) changes, when it names any), with values made up from the code's
    types, inside a transaction that is ALWAYS rolled back; skipped in check mode.
  - C(conformance) the live schema diffed against the code's reference (I(reference_snapshot), or
    I(reference_ddl) loaded into a throwaway database on the I(scratch) server); blocking differences,
    missing and invalid indexes fail.
  - C(integrity) with I(run_id), the run's stored before fingerprint is reconciled with a fingerprint taken
    now, planned changes explained (quarantined rows, retired tables, recorded explanations, I(explanations)).
  - Never commits anything to the target database. Reports C(changed=false).
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Every check but the CRUD probe runs (read only); the probe, which writes and rolls back, is skipped.
  diff_mode:
    support: none
options:
  checks:
    description: Checks to run.
    type: list
    elements: str
    choices: [foreign_keys, invalid_indexes, crud_probe, conformance, integrity]
    default: [foreign_keys, invalid_indexes, crud_probe, conformance, integrity]
  exclude_schemas:
    description: Schemas left out of the foreign key and index checks (product schemas always are).
    type: list
    elements: str
    default: []
  reference_ddl:
    description: DDL file of what the code expects (loaded into a throwaway database on I(scratch)).
    type: path
  reference_snapshot:
    description: A schema snapshot file of what the code expects (instead of I(reference_ddl)).
    type: path
  scratch:
    description:
      - The server where a throwaway database is created for I(reference_ddl), with the same option names as
        this module's connection; fill it with C(hostvars[<host>] | pgsafe_connection). Default the target's
        own server (database C(postgres)).
    type: dict
  conformance_ignore:
    description: C({schemas, patterns}) left out of the conformance diff (product schemas always are).
    type: dict
    default: {}
  before_snapshot:
    description:
      - Schema snapshot file of the target taken before the run (the fingerprint role writes one into the run's
        artifacts). With it, conformance judges the run, not the world - drift the I(plan) targets that is still
        there fails, and drift that appeared during the run fails; drift that existed before and that the plan
        does not touch is reported as pre-existing and does not fail (unless I(strict_conformance)).
      - When the file does not exist (another job, another directory), the snapshot run I(run_id) kept in
        C(pgsafe.schema_snapshot) under I(before_label) is used. Without either, every blocking difference
        from the code fails.
    type: path
  plan:
    description:
      - The run's plan (C(pgsafe_plan) - schema_fix, table_merge, table_cleanup, auth_schema_removal) - the columns,
        foreign keys and merge targets it aims at, and the tables and schemas it removes on purpose.
    type: dict
    default: {}
  strict_conformance:
    description: Pre-existing blocking drift fails too (as if the run had to leave the database equal to the code).
    type: bool
    default: false
  run_id:
    description: Run whose stored before fingerprint is reconciled (integrity check; skipped without it).
    type: str
  before_label:
    description: Label of the stored before fingerprint.
    type: str
    default: before
  explanations:
    description: Planned changes (see pgsafe_fingerprint_compare).
    type: list
    elements: dict
    default: []
  fail_on_problem:
    description: Fail the task when a check fails (the results are returned either way).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Validate prod after the fix
  pgsafe_validate:
    reference_ddl: "{{ playbook_dir }}/../files/reference/bazaar_vid.sql"
    run_id: "{{ migration_run_id }}"
  register: validate_result
"""

RETURN = r"""
ok:
  description: True when no check failed.
  returned: always
  type: bool
checks:
  description: One entry per check, C(check), C(status) (ok, failed, skipped), C(summary), C(items).
  returned: always
  type: list
  elements: dict
failed_checks:
  description: Names of the checks that failed.
  returned: always
  type: list
  elements: str
rows:
  description: One flat row per check, C(check), C(status), C(summary) (for reports).
  returned: always
  type: list
  elements: dict
integrity:
  description: The reconciliation (see pgsafe_fingerprint_compare) when the integrity check ran.
  returned: when run_id is given
  type: dict
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_validate_run import ALL_CHECKS, ValidationError, failure_message, validate


def main():
    module = PgsafeModule(
        argument_spec=dict(
            checks=dict(type="list", elements="str", default=list(ALL_CHECKS), choices=ALL_CHECKS),
            exclude_schemas=dict(type="list", elements="str", default=[]),
            reference_ddl=dict(type="path"),
            reference_snapshot=dict(type="path"),
            scratch=second_connection_option(),
            conformance_ignore=dict(type="dict", default={}),
            before_snapshot=dict(type="path"),
            plan=dict(type="dict", default={}),
            strict_conformance=dict(type="bool", default=False),
            run_id=dict(type="str"),
            before_label=dict(type="str", default="before"),
            explanations=dict(type="list", elements="dict", default=[]),
            fail_on_problem=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    conn = module.connect(read_only=True, settings={"statement_timeout": "600s", "lock_timeout": "5s"})
    try:
        result = validate(p, conn, module.check_mode)
    except ValidationError as exc:
        module.fail_json(msg=str(exc))
    if result["failed_checks"] and p["fail_on_problem"]:
        module.fail_json(msg=failure_message(result["checks"]), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
