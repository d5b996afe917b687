#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_plan: the run's one plan, prechecked whole on the real data (thin: logic in module_utils)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_plan
short_description: Plan a whole run (every step, its SQL, hazards and precheck) in one READ ONLY transaction
description:
  - Reads the run's intent (the inventory's plan files, see docs/plan-files.md) whole, refuses bad input naming the
    key and the fix, and plans every step on the live database through each engine's own read-only planner, in the
    order the run applies them (type change, additive changes, merges, retirements, schema removals).
  - Each step carries the SQL exactly as its engine runs it, lock level and timeouts, typed hazards
    (module_utils/pgsafe_hazards.py), its precheck on the real data with the offending rows, the row effects it
    expects, the objects its verified backup must cover, and its rollback SQL.
  - A step whose precheck fails fails the module before anything changed (the plan is still returned, so the caller
    writes it out); so does an object two steps of different kinds both change.
  - C(fingerprint) is the sha256 of the canonical plan (steps, statements, hazards, order, the schema fingerprint,
    the overrides, the product version); counts and offending rows are not part of it.
  - With I(expected), the module refuses unless its fingerprint equals the expected one, naming what differs.
  - Never changes the target; outside check mode it appends the plan to the run journal (pgsafe.journal) when the
    product schema exists.
version_added: "0.2.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Plans the same way (the plan never changes the target) and writes no journal line.
  diff_mode:
    support: none
    description: Nothing in the target changes; the plan itself (C(markdown), C(differences)) says what a run would do.
options:
  intent:
    description: The run's intent, sections C(schema_fix), C(schema_additions), C(table_merge), C(table_cleanup),
      C(auth_schema_removal) (the group_vars C(pgsafe_plan)).
    type: dict
    required: true
  overrides:
    description: "Named overrides (name -> reason): C(rehearsal), C(confirmation), C(window), C(backup_guard)."
    type: dict
    default: {}
  retired_switches:
    description: Values of variables that used to switch safeguards off (refused with the fix when set to false).
    type: dict
    default: {}
  product_version:
    description: The product's version (the VERSION file), part of the fingerprint.
    type: str
    required: true
  reference_sql:
    description: The code's DDL, for merges whose target does not exist yet (its CREATE TABLE is planned from it).
    type: str
  expected:
    description: A rehearsal canonical plan (C(rehearsal_canonical) of an earlier result) this plan must equal.
    type: dict
  expected_label:
    description: How to call the expected plan in messages.
    type: str
    default: the expected plan
  fail_on_skipped:
    description: A listed table that cannot be retired (it holds rows, or something depends on it) fails the plan.
    type: bool
    default: true
  online_threshold_bytes:
    description: With strategy C(auto), tables larger than this are converted online.
    type: int
    default: 268435456
  disk_free_bytes:
    description: Free bytes on the server's data volume when it cannot be measured.
    type: int
  run_id:
    description: The run, for the journal entry.
    type: str
    required: true
  record:
    description: Append the plan to the run journal (C(pgsafe.journal)) when the product schema exists.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Plan the run
  pgsafe_plan:
    intent: "{{ pgsafe_plan }}"
    overrides: "{{ pgsafe_overrides | default({}) }}"
    product_version: "{{ pgsafe_product_version }}"
    run_id: "{{ run_context_run_id }}"
  register: plan_result
  failed_when: false
"""

RETURN = r"""
refused:
  description: True when the plan cannot run (bad input, a failing precheck, a conflict, not the expected plan).
  returned: always
  type: bool
plan:
  description: The plan (database, schema_fingerprint, overrides, steps, conflicts, fingerprint, intent).
  returned: always when the intent was valid
  type: dict
canonical:
  description: What the fingerprint covers.
  returned: always when the intent was valid
  type: dict
fingerprint:
  description: sha256 of the canonical plan.
  returned: always when the intent was valid
  type: str
rehearsal_canonical:
  description: The canonical plan without the overrides that only open a gate (rehearsal, confirmation, window).
  returned: always when the intent was valid
  type: dict
rehearsal_fingerprint:
  description: sha256 of C(rehearsal_canonical) - what runs; the rehearsal attests it and prod's gate compares it.
  returned: always when the intent was valid
  type: str
markdown:
  description: plan.md.
  returned: always when the intent was valid
  type: str
row_effects:
  description: Row effects of the pending steps by step id (recorded by a rehearsal, compared by prod's gate).
  returned: always when the intent was valid
  type: dict
report_rows:
  description: One flat row per step (id, objects, state, hazards, problems, offending_rows) for the report.
  returned: always when the intent was valid
  type: list
  elements: dict
summary:
  description: Steps, pending, converged, phases, hazards, failed step ids.
  returned: always when the intent was valid
  type: dict
differences:
  description: What differs from I(expected).
  returned: when expected is given
  type: list
  elements: str
queries:
  description: The statements this module ran, in order (the planners' catalog and precheck reads, the journal line).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_connection import connect
from ansible.module_utils.pgsafe_journal import journal_if_installed
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_plan import (PlanError, failed_steps, journal_details, normalise_intent,
                                              normalise_overrides, plan_result, planning_options)
from ansible.module_utils.pgsafe_plan_steps import build_plan
from ansible.module_utils.pgsafe_reading import read_only_cursor


def _record(module, plan, status):
    """The plan in the run journal (the product's own record: the target's data is not touched); warns on failure."""
    try:
        conn = connect(module.params)
        try:
            journal_if_installed(conn, module.params["run_id"], "plan", status, plan["database"], journal_details(plan))
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - the journal is bookkeeping: say so, keep the plan
        module.warn("the plan was not written to the run journal: " + " ".join(str(exc).split()))


def _build(module, intent, overrides):
    """The plan, built in one READ ONLY transaction; fails the task (refused, nothing changed) on any error."""
    p = module.params
    try:
        with read_only_cursor(module) as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            return build_plan(cur, intent, overrides, p["product_version"], planning_options(p))
    except Exception as exc:  # noqa: BLE001 - bad names, privileges: say what, nothing changed
        module.fail_json(msg="planning failed, nothing was changed: " + " ".join(str(exc).split()), refused=True)
    return None  # not reached: fail_json exits


def main():
    module = PgsafeModule(
        argument_spec=dict(
            intent=dict(type="dict", required=True),
            overrides=dict(type="dict", default={}),
            retired_switches=dict(type="dict", default={}),
            product_version=dict(type="str", required=True),
            reference_sql=dict(type="str"),
            expected=dict(type="dict"),
            expected_label=dict(type="str", default="the expected plan"),
            fail_on_skipped=dict(type="bool", default=True),
            online_threshold_bytes=dict(type="int", default=256 * 1024 * 1024),
            disk_free_bytes=dict(type="int"),
            run_id=dict(type="str", required=True),
            record=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        overrides = normalise_overrides(p["overrides"], p["retired_switches"])
        intent = normalise_intent(p["intent"])
    except PlanError as exc:
        module.fail_json(msg="bad plan input, nothing was changed: {0}".format(exc), refused=True)
    plan = _build(module, intent, overrides)
    out, problem = plan_result(plan, p["expected"], p["expected_label"])
    if p["record"] and not module.check_mode:
        _record(module, plan, "failed" if failed_steps(plan) or plan["conflicts"] else "completed")
    if problem:
        module.fail_json(msg=problem, **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
