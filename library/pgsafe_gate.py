#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_gate: the gates that stand before any change to prod."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_gate
short_description: Check the gates before a run changes a database (rehearsal, confirmation, window, staleness)
description:
  - Computes the plan fingerprint (a hash of the plan variables and the product version).
  - With I(require_rehearsal), demands a passing rehearsal of the same plan fingerprint within
    I(rehearsal_max_age_days), read from C(pgsafe.attestation) in the target database (the
    rehearsal records it there), and that the live schema's fingerprint equals the one the
    rehearsal started from (a stale plan is refused) or the one it ended with (the plan is
    already applied, so the run converges without changes).
  - With I(confirm_required), demands I(confirm_database) equal to the target's database name.
  - Demands the current time be inside I(window) unless I(window_override_reason) is given (the
    reason is returned so the run records it).
  - Inside a bounded window, demands that what is left of it holds the rehearsal's duration (its phases
    but the copy into staging) times 1.5; the same I(window_override_reason) overrides it.
  - Reads only, in a READ ONLY transaction; fails before anything changes, naming each closed gate
    and what to do. In check mode a closed gate is a warning (C(would_refuse)), so the plan can be shown.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Decides the same gates; a closed gate is a warning and C(would_refuse), not a failure.
  diff_mode:
    support: none
    description: Reads only (READ ONLY transaction); nothing changes, so there is nothing to compare.
options:
  environment:
    description: Environment name, for messages.
    type: str
    required: true
  plan:
    description:
      - The plan variables of a run that has no plan step (rollback, purge); hashed with I(product_version) into
        the plan fingerprint. Give I(plan_fingerprint) instead for runs planned by M(pgsafe_plan).
    type: dict
  plan_fingerprint:
    description: The fingerprint of the run's plan (M(pgsafe_plan)); the rehearsal gate looks for it.
    type: str
  plan_canonical:
    description: The canonical plan (M(pgsafe_plan)), to name what differs from the plan rehearsed last.
    type: dict
  row_effects:
    description:
      - The plan's row effects per step (M(pgsafe_plan)); compared with those the passing rehearsal recorded
        (C(data_since_rehearsal)), shown, never part of the fingerprint.
    type: dict
  overrides:
    description:
      - "Named overrides (name -> reason) carried by the plan: C(rehearsal), C(confirmation) and C(window) pass
        their gate, shown as overridden with the reason."
    type: dict
    default: {}
  product_version:
    description: Version of this product, part of the plan fingerprint.
    type: str
    required: true
  require_rehearsal:
    description: Demand a passing rehearsal of the same plan and an unchanged schema.
    type: bool
    default: false
  rehearsal_max_age_days:
    description: How old the passing rehearsal may be.
    type: float
    default: 7
  confirm_required:
    description: Demand I(confirm_database).
    type: bool
    default: false
  confirm_database:
    description: What the operator typed (AWX survey answer).
    type: str
  window:
    description: Maintenance window (UTC), e.g. C(always), C(Sat 02:00-06:00), C(Mon-Fri 22:00-02:00).
    type: raw
    default: always
  window_override_reason:
    description: A reason to run outside the window; recorded with the run.
    type: str
  now:
    description: Current time as ISO 8601 (tests); default the database server's clock.
    type: str
"""

EXAMPLES = r"""
- name: Check the gates before changing prod
  pgsafe_gate:
    environment: prod
    plan: "{{ {'schema_fix': schema_fix_plan, 'cleanup': table_cleanup_plan} }}"
    product_version: "{{ pgsafe_product_version }}"
    require_rehearsal: true
    confirm_required: true
    confirm_database: "{{ confirm_database | default(omit) }}"
    window: "{{ pgsafe_maintenance_window }}"
    window_override_reason: "{{ window_override_reason | default(omit) }}"
"""

RETURN = r"""
plan_fingerprint:
  description: Hash of the plan and product version.
  returned: always
  type: str
schema_fingerprint:
  description: Fingerprint of the live schema (product schemas ignored).
  returned: always
  type: str
gates:
  description: Every gate with passed, detail and remedy.
  returned: always
  type: list
  elements: dict
window_overridden:
  description: Whether the run proceeds outside its window on an override reason.
  returned: always
  type: bool
plan_rehearsed:
  description: Whether a passing rehearsal of this plan started from the live schema within the age limit.
  returned: always
  type: bool
would_refuse:
  description: In check mode, whether a real run would stop at a closed gate.
  returned: check mode
  type: bool
data_since_rehearsal:
  description: How the rows each step affects moved since the passing rehearsal (step, table, measure, then, now).
  returned: when row_effects is given and a passing rehearsal exists
  type: list
  elements: dict
plan_converged:
  description:
    - Whether a passing run of this plan (a rehearsal, or an earlier run on this database) ended with
      the live schema; the run then has nothing left to do and takes no new backup.
  returned: always
  type: bool
queries:
  description: The statements this module ran, in order (catalog and attestation reads).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_attestations import newest_rehearsal, read_attestations
from ansible.module_utils.pgsafe_gates import (GateError, evaluate_gates, failed_gates, failure_message, gate_facts,
                                               gate_outcome, plan_fingerprint)
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_reading import read_only_cursor
from ansible.module_utils.pgsafe_snapshot import schema_fingerprint, take_snapshot


def _measure(module, fingerprint):
    """What the gates need from the target, read in one READ ONLY transaction."""
    with read_only_cursor(module) as cur:
        cur.execute("SELECT now(), current_database()")
        server_now, database = cur.fetchone()
        measured = dict(now=server_now, database=database, attestations=read_attestations(cur, fingerprint),
                        live=schema_fingerprint(take_snapshot(cur)))
        measured["last"] = newest_rehearsal(cur, module.params["environment"]) \
            if module.params["plan_canonical"] else None
    return measured


def main():
    module = PgsafeModule(
        argument_spec=dict(
            environment=dict(type="str", required=True),
            plan=dict(type="dict"),
            plan_fingerprint=dict(type="str"),
            plan_canonical=dict(type="dict"),
            overrides=dict(type="dict", default={}),
            row_effects=dict(type="dict"),
            product_version=dict(type="str", required=True),
            require_rehearsal=dict(type="bool", default=False),
            rehearsal_max_age_days=dict(type="float", default=7),
            confirm_required=dict(type="bool", default=False),
            confirm_database=dict(type="str"),
            window=dict(type="raw", default="always"),
            window_override_reason=dict(type="str"),
            now=dict(type="str"),
        ),
        required_one_of=[("plan", "plan_fingerprint")],
        supports_check_mode=True,
    )
    p = module.params
    fingerprint = p["plan_fingerprint"] or plan_fingerprint(p["plan"], p["product_version"])
    facts = gate_facts(p, fingerprint, _measure(module, fingerprint))
    try:
        results = evaluate_gates(facts)
    except GateError as exc:
        module.fail_json(msg=str(exc), plan_fingerprint=fingerprint)
    outcome = gate_outcome(p, facts, results)
    if failed_gates(results):
        message = failure_message(results, "{0} (database {1})".format(p["environment"], facts["database"]))
        if not module.check_mode:
            module.fail_json(msg=message, **outcome)
        # --check changes nothing: show the whole plan, and say which gates a real run would stop at.
        module.warn("a real run would stop here: " + message)
        module.exit_json(would_refuse=True, msg=message, **outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
