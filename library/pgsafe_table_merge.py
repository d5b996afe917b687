#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_table_merge: merge a duplicate table into the one the code uses, with proof."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_table_merge
short_description: Merge a source table into a target table through an explicit column mapping, prove it, retire the source
description:
  - Copies every row of I(source) into I(target) through I(column_map) (source column -> target column; values are
    cast to the target column's type where the types differ), in ONE transaction with the source locked against
    writes (SHARE ROW EXCLUSIVE; its row count is compared again at the end).
  - Creates the target from I(target_definition) (the code's DDL, e.g. the contents of
    files/reference/bazaar_vid.sql; the module takes the target's CREATE TABLE, CREATE INDEX and COMMENT
    statements from it) when it does not exist.
  - Precheck on the real rows, listing them by primary key - values that do not cast, casts that would change a
    value, NULL into a NOT NULL column, missing parents of the target's foreign keys. Any of them refuses the merge.
  - Primary-key collisions - identical rows are skipped; differing rows refuse the merge (I(policy=fail)) or, with
    I(policy=keep_target), the target row stays and the source row is copied to C(pgsafe.quarantine_row).
  - Proof before the source goes - EXCEPT both ways over the mapped columns and an ordered content hash of both
    sides; quarantined rows must be in C(pgsafe.quarantine_row) by sha256. Then the source is retired into the
    quarantine schema (not dropped), in the same transaction. Any failure rolls everything back.
  - Check mode plans in a READ ONLY transaction. Diff mode shows row counts before and after. After success a
    re-run reports changed=false (already converged).
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
  - pgsafe_guard
options:
  source:
    description: The duplicate table (C(name) or C(schema.name); quote names with dots).
    type: str
    required: true
  target:
    description: The table the code uses.
    type: str
    required: true
  column_map:
    description: Source column -> target column, for every source column (a dict, or a list of C({source, target})).
    type: raw
    required: true
  drop_source_columns:
    description: Source columns deliberately not carried over (their values are lost; they stay in the quarantined source).
    type: list
    elements: str
    default: []
  policy:
    description: What to do with source rows whose key exists in the target with different values.
    type: str
    choices: [fail, keep_target]
    default: fail
  target_definition:
    description: SQL text holding the target's CREATE TABLE (and its indexes); used only when the target is missing.
    type: str
  allow_lossy_casts:
    description: Accept casts that change values (e.g. text re-spelled as uuid); they are still listed.
    type: bool
    default: false
  retire_source:
    description: Move the source to the quarantine schema after the proof (same transaction).
    type: bool
    default: true
  retention_days:
    description: Days the retired source stays in quarantine.
    type: int
    default: 30
  run_id:
    description: Run id recorded in the journal, quarantine rows and quarantined objects.
    type: str
    required: true
  expected_statements_sha256:
    description:
      - The C(statements_sha256) of the plan's merge step (M(pgsafe_plan)). Before changing anything the module
        renders the statements it is about to run and refuses when they differ (the database moved since the plan).
    type: str
  sample_limit:
    description: How many offending rows to list per problem.
    type: int
    default: 20
  lock_timeout:
    description: lock_timeout for the locks on the source.
    type: str
    default: 5s
"""

EXAMPLES = r"""
- name: Merge dev's old api_usage_metric into the prefixed table
  pgsafe_table_merge:
    run_id: "{{ run_context_run_id }}"
    source: api_usage_metric
    target: bazaar-vid_api_usage_metric
    target_definition: "{{ lookup('ansible.builtin.file', 'files/reference/bazaar_vid.sql') }}"
    column_map: {id: id, provider: provider, model: model, userId: userId, success: success,
                 responseTime: responseTime, timestamp: timestamp}
"""

RETURN = r"""
action:
  description: merge (check mode), merged, converged or refused.
  returned: always
  type: str
reason:
  description: One line saying what happened or why not.
  returned: always
  type: str
problems:
  description: Precheck findings - kind (cast, lossy, not_null, fk), column, count, rows (pk, value).
  returned: when planned
  type: list
  elements: dict
differing:
  description: Colliding keys whose rows differ (pk, columns).
  returned: when planned
  type: list
  elements: dict
inserted:
  description: Rows copied.
  returned: when merged
  type: int
proof:
  description: EXCEPT counts both ways, row counts and content hashes of both sides.
  returned: when merged
  type: dict
backup_objects:
  description: What the merge touches, as schema.table (source, and the target when it exists), for the backup role.
  returned: when planned
  type: list
  elements: str
report_item:
  description: One flat row for the run report.
  returned: always
  type: dict
retired:
  description: Where the source went (quarantine_table, retain_until).
  returned: when merged
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_backup import BackupError, check_guard, guard_argument_spec
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_merge import Context, MergeError, apply, plan, planned_statements
from ansible.module_utils.pgsafe_plan import statements_digest
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal
from ansible.module_utils.pgsafe_retire import RetireError, ensure_retire_schema
from ansible.module_utils.pgsafe_retire import planned_statements as retire_statements


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            source=dict(type="str", required=True),
            target=dict(type="str", required=True),
            column_map=dict(type="raw", required=True),
            drop_source_columns=dict(type="list", elements="str", default=[]),
            policy=dict(type="str", default="fail", choices=["fail", "keep_target"]),
            target_definition=dict(type="str"),
            allow_lossy_casts=dict(type="bool", default=False),
            retire_source=dict(type="bool", default=True),
            retention_days=dict(type="int", default=30),
            run_id=dict(type="str", required=True),
            expected_statements_sha256=dict(type="str"),
            **guard_argument_spec(),
            sample_limit=dict(type="int", default=20),
            lock_timeout=dict(type="str", default="5s"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        conn = connect(p, read_only=module.check_mode, settings={"lock_timeout": p["lock_timeout"]})
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))

    def context(cur):
        return Context(cur, p["source"], p["target"], p["column_map"], policy=p["policy"],
                       target_definition=p["target_definition"], drop_source_columns=p["drop_source_columns"],
                       allow_lossy_casts=p["allow_lossy_casts"], sample_limit=p["sample_limit"])

    try:
        with conn.cursor() as cur:
            planned = plan(cur, context(cur))
        conn.rollback()
        before = {"source_rows": planned.get("source_rows"), "target_rows": planned.get("target_rows"),
                  "target_exists": planned.get("target_exists")}
        if planned["action"] == "converged" or module.check_mode:
            result = planned
        elif planned["action"] == "refused":
            if not module.check_mode:
                with conn.cursor() as cur:
                    ensure_meta_schema(cur)
                    journal(cur, p["run_id"], "table_merge", "failed", planned["source"],
                            {"reason": planned["reason"], "problems": planned.get("problems", []),
                             "differing": planned.get("differing", [])})
                conn.commit()
            module.fail_json(msg="merge {0} -> {1} refused, nothing changed: {2}".format(
                planned["source"], planned["target"], planned["reason"]), **{k: planned.get(k) for k in (
                    "problems", "differing", "differing_count", "identical", "source_dependents")})
        else:
            with conn.cursor() as cur:
                ctx = context(cur)
                digest = statements_digest(planned_statements(cur, ctx) + retire_statements(
                    cur, {"schema": ctx.source_schema, "name": ctx.source_name}))
            conn.rollback()
            if p["expected_statements_sha256"] and digest != p["expected_statements_sha256"]:
                module.fail_json(msg="merge {0} -> {1}: its statements differ from the plan's (the database moved "
                                     "since the plan): nothing was changed; re-run, which plans again".format(
                                         planned["source"], planned["target"]))
            with conn.cursor() as cur:
                guard = check_guard(cur, p["backup_id"], planned["backup_objects"], p["backup_max_age_minutes"],
                                    p["guard_override"])
                ensure_meta_schema(cur)
                ensure_retire_schema(cur)
            conn.commit()
            try:
                with conn.cursor() as cur:
                    journal(cur, p["run_id"], "table_merge", "started", planned["source"],
                            {"target": planned["target"], "backup_id": p["backup_id"], "guard": guard})
                    result = apply(cur, context(cur), p["run_id"], retention_days=p["retention_days"],
                                   retire_source=p["retire_source"])
                conn.commit()
            except Exception:
                conn.rollback()
                raise
    except (MergeError, RetireError, BackupError, ValueError) as exc:
        module.fail_json(msg=str(exc) + " (nothing was changed: the merge runs in one transaction)")
    except Exception as exc:  # noqa: BLE001
        module.fail_json(msg="merge {0} -> {1} failed and was rolled back, nothing changed: {2}".format(
            p["source"], p["target"], " ".join(str(exc).split())))
    finally:
        conn.close()
    changed = result["action"] in ("merge", "merged")
    out = {k: v for k, v in result.items() if k not in ("quarantine",)}
    out["changed"] = changed
    keys = ("source", "target", "action", "source_rows", "target_rows", "to_insert", "inserted", "identical",
            "quarantined", "reason")
    out["report_item"] = {k: "" if result.get(k) is None else result.get(k) for k in keys}
    if module._diff:
        after = dict(before)
        if result["action"] in ("merge", "merged"):
            moved = result.get("inserted", result.get("to_insert", 0))
            after = {"source_rows": "(retired to quarantine)" if p["retire_source"] else before["source_rows"],
                     "target_rows": (before["target_rows"] or 0) + moved, "target_exists": True}
        out["diff"] = {"before": before, "after": after}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
