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
"""

import datetime as dt

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_gates import (GateError, evaluate_gates, failed_gates, failure_message,
                                               plan_converged, plan_fingerprint, plan_rehearsed, rehearsed_duration)
from ansible.module_utils.pgsafe_meta import meta_schema_installed
from ansible.module_utils.pgsafe_plan import data_since, differences
from ansible.module_utils.pgsafe_snapshot import schema_fingerprint, take_snapshot


def read_attestations(cur, fingerprint):
    if not meta_schema_installed(cur):
        return []
    cur.execute("SELECT plan_fingerprint, result, attested_at, schema_fingerprint_before, run_id, "
                "details ->> 'schema_fingerprint_after', environment, details -> 'phases', details -> 'row_effects' "
                "FROM pgsafe.attestation WHERE plan_fingerprint = %s ORDER BY attested_at DESC", (fingerprint,))
    keys = ("plan_fingerprint", "result", "attested_at", "schema_fingerprint_before", "run_id",
            "schema_fingerprint_after", "environment", "phases", "row_effects")
    rows = [dict(zip(keys, row, strict=True)) for row in cur.fetchall()]
    for row in rows:
        row["duration_seconds"] = rehearsed_duration(row.pop("phases"))
    return rows


def newest_rehearsal(cur, environment):
    """The newest passing rehearsal recorded elsewhere (fingerprint, canonical plan), or None."""
    if not meta_schema_installed(cur):
        return None
    cur.execute("SELECT plan_fingerprint, details -> 'canonical' FROM pgsafe.attestation WHERE result = 'passed' "
                "AND environment <> %s AND details ? 'canonical' ORDER BY attested_at DESC LIMIT 1", (environment,))
    row = cur.fetchone()
    return {"fingerprint": row[0], "canonical": row[1]} if row else None


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
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
    try:
        conn = connect(p, read_only=True)
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT now(), current_database()")
            server_now, database = cur.fetchone()
            attestations = read_attestations(cur, fingerprint)
            live = schema_fingerprint(take_snapshot(cur))
            last = newest_rehearsal(cur, p["environment"]) if p["plan_canonical"] else None
        conn.rollback()
    finally:
        conn.close()
    now = dt.datetime.fromisoformat(p["now"]) if p["now"] else server_now
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    facts = dict(environment=p["environment"], requires_rehearsal=p["require_rehearsal"],
                 plan_fingerprint=fingerprint, attestations=attestations,
                 rehearsal_max_age_days=p["rehearsal_max_age_days"], live_schema_fingerprint=live,
                 confirm_required=p["confirm_required"], confirm_database=p["confirm_database"],
                 database=database, window=p["window"], now=now,
                 window_override_reason=p["window_override_reason"], overrides=p["overrides"])
    if last and last["fingerprint"] != fingerprint and not any(a["plan_fingerprint"] == fingerprint
                                                               for a in attestations):
        facts.update(rehearsed_fingerprint=last["fingerprint"],
                     rehearsed_differences=differences(p["plan_canonical"], last["canonical"] or {}))
    try:
        results = evaluate_gates(facts)
    except GateError as exc:
        module.fail_json(msg=str(exc), plan_fingerprint=fingerprint)
    overridden = any(r.get("overridden") for r in results if r["gate"] in ("maintenance_window", "time_left"))
    outcome = dict(changed=False, plan_fingerprint=fingerprint, schema_fingerprint=live, gates=results,
                   window_overridden=overridden, plan_converged=plan_converged(attestations, fingerprint, live),
                   plan_rehearsed=plan_rehearsed(attestations, fingerprint, live, p["environment"], now,
                                                 p["rehearsal_max_age_days"]))
    rehearsed = sorted((a for a in attestations if a.get("result") == "passed"
                        and a.get("environment", "rehearsal") != p["environment"]),
                       key=lambda a: a["attested_at"], reverse=True)
    if p["row_effects"] is not None and rehearsed:
        outcome["data_since_rehearsal"] = data_since(p["row_effects"], rehearsed[0].get("row_effects") or {})
    if failed_gates(results):
        message = failure_message(results, "{0} (database {1})".format(p["environment"], database))
        if not module.check_mode:
            module.fail_json(msg=message, **outcome)
        # --check changes nothing: show the whole plan, and say which gates a real run would stop at.
        module.warn("a real run would stop here: " + message)
        module.exit_json(would_refuse=True, msg=message, **outcome)
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
