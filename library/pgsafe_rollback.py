#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_rollback: undo a run, newest step first, from its journal."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_rollback
short_description: Undo a pgsafe run from its journal, newest step first
description:
  - Reads the run's completed steps from C(pgsafe.journal) and undoes them in reverse order
    (see module_utils/pgsafe_rollback.py) - removed schemas restored from the verified backup the
    removal took, retired tables moved back, a merge target the run created set aside in the
    quarantine schema, type changes reverted with the rollback SQL the change generated (which
    also puts quarantined rows back, hash-checked).
  - Each undone step is journaled as C(rollback:<journal id>), so a rollback interrupted half-way
    resumes where it stopped; the run is marked C(rolled_back) at the end.
  - Check mode returns the plan, read in a READ ONLY transaction, and changes nothing.
  - Diff mode shows each step the run completed as it left it, then what undoing it does.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Reads the run's journal in a READ ONLY transaction and returns the undo actions; changes nothing.
  diff_mode:
    support: full
    description: Each step of the run to undo, as the run left it and what its undo does (rollback SQL, set aside,
      schema restored).
options:
  run_id:
    description: Run to undo; default the newest run of I(playbooks) that changed something.
    type: str
  playbooks:
    description: Playbooks whose runs may be undone when I(run_id) is not given.
    type: list
    elements: str
    default: [sprint90_prod, sprint90_dev, sprint90_rehearsal, schema_fix, cleanup]
  rollback_run_id:
    description: Run id of this rollback (journaled with each undone step).
    type: str
    required: true
  pg_bin_dir:
    description: Directory of pg_restore/pg_dump/psql for schema restores.
    type: path
"""

EXAMPLES = r"""
- name: Undo the newest Sprint 90 run on this database
  pgsafe_rollback:
    rollback_run_id: "{{ run_context_run_id }}"
"""

RETURN = r"""
run_id:
  description: The run undone (null when there was nothing to undo).
  returned: always
  type: str
actions:
  description: The undo actions, newest step first, each with journal_id, step, object, action and outcome.
  returned: always
  type: list
  elements: dict
queries:
  description: The statements this module's connections ran, in order (a schema restore's pg_restore not included).
  returned: always
  type: list
  elements: str
diff:
  description: Each step as the run left it (before) and what its undo does (after).
  returned: diff mode, when there is a run to undo
  type: dict
"""

from ansible.module_utils.pgsafe_journal import journal_undo, mark_run, product_records
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_rollback import (RollbackError, backup_locations, newest_undoable_run, plan_rollback,
                                                  read_journal, rollback_diff, undo)


def _plan(module, cur):
    """(run id, undo actions) of the run to undo, read in the current transaction; exits when there is none."""
    run_id = module.params["run_id"] or newest_undoable_run(cur, module.params["playbooks"])
    if run_id is None:
        module.exit_json(changed=False, run_id=None, actions=[], msg="no run to undo: already converged")
    entries = read_journal(cur, run_id)
    if not entries:
        module.fail_json(msg="run {0} has no journal in this database: check the run id (pgsafe.run)".format(run_id))
    try:
        actions = plan_rollback(entries)
        for action in actions:
            if action["action"] == "restore_schema":
                action["locations"] = backup_locations(cur, action["backup_id"])
    except RollbackError as exc:
        module.fail_json(msg=str(exc), run_id=run_id)
    return run_id, actions


def main():
    module = PgsafeModule(
        argument_spec=dict(
            run_id=dict(type="str"),
            playbooks=dict(type="list", elements="str",
                           default=["sprint90_prod", "sprint90_dev", "sprint90_rehearsal", "schema_fix", "cleanup"]),
            rollback_run_id=dict(type="str", required=True),
            pg_bin_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    with product_records(module, run_id=None, actions=[], msg="no pgsafe run recorded: nothing to undo") as (conn, cur):
        run_id, actions = _plan(module, cur)
        conn.rollback()
        diff = module.diff_of(*rollback_diff(actions, run_id))
        if module.check_mode or not actions:
            module.exit_json(changed=bool(actions), run_id=run_id, actions=actions, diff=diff)
        conn.autocommit = True
        for action in actions:
            try:
                undo(conn, p, action, run_id)
            except RollbackError as exc:
                module.fail_json(msg=str(exc), run_id=run_id, actions=actions)
            journal_undo(cur, p["rollback_run_id"], run_id, action)
        mark_run(cur, run_id, "rolled_back")
    module.exit_json(changed=True, run_id=run_id, actions=actions, diff=diff)


if __name__ == "__main__":
    main()
