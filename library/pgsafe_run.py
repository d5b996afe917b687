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
  journal:
    description:
      - With I(state=succeeded) or I(state=failed), read the run's journal first (in the same transaction) and
        return it as C(journal); when I(details) has a C(report_document), the journal is recorded as its
        C(journal) (the run_report role closes a run this way, in one module run). Read in check mode too.
    type: bool
    default: false
  release_run_lock:
    description:
      - Pid of the run lock's holder process (pgsafe_run_lock's, or pgsafe_preflight's I(run_lock)) to stop
        once the end is recorded, also when recording it failed; what pgsafe_run_lock I(state=released) does.
        Nothing is released in check mode.
    type: int
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
journal:
  description: The run's journal lines in order (step, object, status, details, rollback_sql, at), with I(journal).
  returned: with journal
  type: list
  elements: dict
run_lock_released:
  description: Whether the holder process named by I(release_run_lock) was running and was stopped.
  returned: with release_run_lock
  type: bool
queries:
  description: The statements this module ran, in order (the product schema's DDL when it installs it).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_journal import read_journal, record_end, record_start
from ansible.module_utils.pgsafe_meta import meta_schema_installed
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_run_lock import release


def _check(module):
    """Check mode: nothing written; whether the product schema would be installed (and the journal, if asked)."""
    p = module.params
    conn = module.connect(read_only=True)
    try:
        with conn.cursor() as cur:
            installed = meta_schema_installed(cur)
            rows = read_journal(cur, p["run_id"]) if p["journal"] and installed else []
        conn.rollback()
    finally:
        conn.close()
    extra = {"journal": rows} if p["journal"] else {}
    module.exit_json(changed=not installed, meta_schema_created=False, run_id=p["run_id"], **extra)


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
            journal=dict(type="bool", default=False),
            release_run_lock=dict(type="int"),
        ),
        required_if=[("state", "started", ("playbook", "environment"))],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "started" and (p["journal"] or p["release_run_lock"] is not None):
        module.fail_json(msg="journal and release_run_lock close a run: use them with state succeeded or failed")
    if module.check_mode:
        _check(module)
    extra = {}
    try:
        if p["state"] == "started":
            created = record_start(module, p["run_id"], p["playbook"], p["environment"], p["operator"],
                                   p["awx_job_id"], p["details"])
        else:
            created, rows = record_end(module, p["run_id"], p["state"], p["details"], with_journal=p["journal"])
            if rows is not None:
                extra["journal"] = rows
    finally:  # also when recording failed: the run is over either way
        if p["release_run_lock"] is not None:
            extra["run_lock_released"] = release(p["release_run_lock"])
    module.exit_json(changed=True, meta_schema_created=created, run_id=p["run_id"], **extra)


if __name__ == "__main__":
    main()
