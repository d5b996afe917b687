#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_run: open and close a run record in the product schema."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_run
short_description: Record a run of a pgsafe playbook in the target database
description:
  - Installs or upgrades the product schema C(pgsafe) when needed, then records the start
    (I(state=started)) or the end (I(state=succeeded), I(state=failed)) of a run in C(pgsafe.run).
  - In check mode nothing is written; the module reports what it would record.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Writes nothing; reports whether the product schema would be installed.
  diff_mode:
    support: none
    description: A run record is appended or closed; there is no earlier state to compare.
options:
  run_id:
    description: Identifier of the run (the artifacts directory name).
    type: str
    required: true
  state:
    description: What to record.
    type: str
    choices: [started, succeeded, failed]
    default: started
  playbook:
    description: Playbook name (required with I(state=started)).
    type: str
  environment:
    description: Environment name (prod, dev, staging, ...).
    type: str
  operator:
    description: Who runs it (AWX user or the controller's user).
    type: str
  awx_job_id:
    description: AWX job id, when the run is an AWX job.
    type: str
  details:
    description: JSON details stored with the run (merged on finish).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Record the start of the run
  pgsafe_run:
    run_id: "{{ pgsafe_run_id }}"
    playbook: backup
    environment: "{{ pgsafe_environment }}"
"""

RETURN = r"""
meta_schema_created:
  description: Whether the product schema was installed by this call.
  returned: always
  type: bool
run_id:
  description: The run id recorded.
  returned: always
  type: str
queries:
  description: The statements this module ran, in order (the product schema's DDL when it installs it).
  returned: always
  type: list
  elements: str
"""

try:
    import psycopg2
    import psycopg2.errors
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None

from ansible.module_utils.pgsafe_journal import finish_run, start_run
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, meta_schema_installed
from ansible.module_utils.pgsafe_module import PgsafeModule


def _install(module, conn, cur):
    """The product schema, installed or upgraded (True when this call created it); fails naming the grant."""
    p = module.params
    try:
        return ensure_meta_schema(cur)
    except psycopg2.errors.InsufficientPrivilege as exc:
        conn.rollback()
        module.fail_json(msg="cannot install the product schema pgsafe in {0}: {1}. Grant CREATE on the "
                             "database to {2}, or have a DBA run the product schema DDL once "
                             "(module_utils/pgsafe_meta.py) and give the schema to {2}".format(
                                 p["login_db"], str(exc).strip(), p["login_user"]))


def main():
    module = PgsafeModule(
        argument_spec=dict(
            run_id=dict(type="str", required=True),
            state=dict(type="str", default="started", choices=["started", "succeeded", "failed"]),
            playbook=dict(type="str"),
            environment=dict(type="str"),
            operator=dict(type="str"),
            awx_job_id=dict(type="str"),
            details=dict(type="dict", default={}),
        ),
        required_if=[("state", "started", ("playbook", "environment"))],
        supports_check_mode=True,
    )
    p = module.params
    conn = module.connect(read_only=module.check_mode)
    try:
        with conn.cursor() as cur:
            if module.check_mode:
                installed = meta_schema_installed(cur)
                conn.rollback()
                module.exit_json(changed=not installed, meta_schema_created=False, run_id=p["run_id"])
            created = _install(module, conn, cur)
            if p["state"] == "started":
                start_run(cur, p["run_id"], p["playbook"], p["environment"], p["operator"], p["awx_job_id"],
                          p["details"])
            else:
                finish_run(cur, p["run_id"], p["state"], p["details"])
        conn.commit()
    finally:
        conn.close()
    module.exit_json(changed=True, meta_schema_created=created, run_id=p["run_id"])


if __name__ == "__main__":
    main()
