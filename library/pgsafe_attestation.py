#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_attestation: record the result of a rehearsal for a plan fingerprint."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_attestation
short_description: Record a rehearsal's result for a plan fingerprint in the source database
description:
  - Writes one row in C(pgsafe.attestation) of the database the rehearsal was taken from (prod), so
    that prod's gate (M(pgsafe_gate)) finds it there - the plan fingerprint, the product version, the
    schema fingerprint the rehearsal started from, the result and the phase timings.
  - Writes nothing in check mode.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Writes nothing; reports the attestation it would record.
  diff_mode:
    support: full
    description: The row recorded (an attestation is only ever appended, so there is nothing before it).
options:
  record_in:
    description:
      - The database whose product schema records the attestation when it is not this task's own (the
        rehearsal runs on the copy and attests in its source's C(pgsafe.attestation), where the gate looks),
        with the same option names as this module's connection; fill it with
        C(hostvars[<host>] | pgsafe_connection). Default this module's connection.
    type: dict
  plan_fingerprint:
    description: Fingerprint of the rehearsed plan (from M(pgsafe_gate)).
    type: str
    required: true
  product_version:
    description: Product version that ran the rehearsal.
    type: str
    required: true
  environment:
    description: Where the rehearsal ran (staging).
    type: str
    required: true
  run_id:
    description: Run id of the rehearsal.
    type: str
    required: true
  schema_fingerprint_before:
    description: Schema fingerprint of the restored copy before the plan ran (the source's schema).
    type: str
    required: true
  result:
    description: Outcome of the rehearsal.
    type: str
    choices: [passed, failed]
    required: true
  details:
    description: Phase timings and anything else worth keeping.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Attest the rehearsal in prod's product schema
  pgsafe_attestation:
    plan_fingerprint: "{{ gates_plan_fingerprint }}"
    product_version: "{{ pgsafe_product_version }}"
    environment: staging
    run_id: "{{ run_context_run_id }}"
    schema_fingerprint_before: "{{ rehearsal_schema_fingerprint_before }}"
    result: passed
"""

RETURN = r"""
attestation_id:
  description: Id of the row written (absent in check mode).
  returned: success
  type: int
queries:
  description: The statements this module ran, in order (none in check mode).
  returned: always
  type: list
  elements: str
diff:
  description: Nothing before, the attestation row after.
  returned: diff mode
  type: dict
"""

from ansible.module_utils.pgsafe_attestations import attestation_row, record_attestation
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_meta import ensure_meta_schema
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            plan_fingerprint=dict(type="str", required=True),
            product_version=dict(type="str", required=True),
            environment=dict(type="str", required=True),
            run_id=dict(type="str", required=True),
            schema_fingerprint_before=dict(type="str", required=True),
            result=dict(type="str", required=True, choices=["passed", "failed"]),
            details=dict(type="dict", default={}),
            record_in=second_connection_option(),
        ),
        supports_check_mode=True,
    )
    row = attestation_row(module.params)
    diff = module.diff_of({}, row)
    if module.check_mode:
        module.exit_json(changed=True, diff=diff)
    conn = module.connect(module.params["record_in"])
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
            attestation_id = record_attestation(cur, row)
        conn.commit()
    finally:
        conn.close()
    module.exit_json(changed=True, attestation_id=attestation_id, diff=diff)


if __name__ == "__main__":
    main()
