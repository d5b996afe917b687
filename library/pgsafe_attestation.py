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
options:
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
"""

import json

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_meta import ensure_meta_schema


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            plan_fingerprint=dict(type="str", required=True),
            product_version=dict(type="str", required=True),
            environment=dict(type="str", required=True),
            run_id=dict(type="str", required=True),
            schema_fingerprint_before=dict(type="str", required=True),
            result=dict(type="str", required=True, choices=["passed", "failed"]),
            details=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=True)
    try:
        conn = connect(p)
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
            cur.execute(
                "INSERT INTO pgsafe.attestation (plan_fingerprint, product_version, environment, run_id, "
                "schema_fingerprint_before, result, details) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
                (p["plan_fingerprint"], p["product_version"], p["environment"], p["run_id"],
                 p["schema_fingerprint_before"], p["result"], json.dumps(p["details"], default=str)))
            attestation_id = cur.fetchone()[0]
        conn.commit()
    finally:
        conn.close()
    module.exit_json(changed=True, attestation_id=attestation_id)


if __name__ == "__main__":
    main()
