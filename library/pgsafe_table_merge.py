#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_table_merge: merge a duplicate table into the one the code uses, with proof."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_table_merge
short_description: Merge a source table into a target table through an explicit column mapping, prove it, retire the source
version_added: "0.1.0"
author: pgsafe maintainers
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
  lock_retries:
    description:
      - How many times the merge's transaction is retried when the source's lock is not obtained within
        I(lock_timeout) (or it hits a deadlock), after 0.5 s doubling up to 5 s; then it fails closed. 0 to 20.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Plans and prechecks in a READ ONLY transaction (no lock, no write); returns what would be copied.
  diff_mode:
    support: full
    description: Row counts of source and target (and whether the target exists) before and after.
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
queries:
  description: Statements run on the database in order - plan reads, then the lock, copy, proof and retire of the source.
  returned: always
  type: list
  elements: str
action:
  description: merge (check mode), merged, converged or refused.
  returned: always
  type: str
attempts:
  description: Every try of the merge's transaction, with its outcome (ok, or the SQLSTATE of a lock timeout) and time.
  returned: when merged
  type: list
  elements: dict
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
diff:
  description: Source and target row counts (and whether the target exists) before and after.
  returned: when diff mode
  type: dict
"""

from ansible.module_utils.pgsafe_backup import BackupError, check_guard, guard_argument_spec
from ansible.module_utils.pgsafe_locks import LockError, lock_retries_option, locking_connection, run_step
from ansible.module_utils.pgsafe_merge import Context, MergeError, apply, plan, planned_statements
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_plan import statements_digest
from ansible.module_utils.pgsafe_retire import RetireError, ensure_retire_schema
from ansible.module_utils.pgsafe_retire import planned_statements as retire_statements

ARGUMENT_SPEC = dict(
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
    **lock_retries_option(),
)
REPORT_KEYS = ("source", "target", "action", "source_rows", "target_rows", "to_insert", "inserted", "identical",
               "quarantined", "reason")


def _context(p, cur):
    return Context(cur, p["source"], p["target"], p["column_map"], policy=p["policy"],
                   target_definition=p["target_definition"], drop_source_columns=p["drop_source_columns"],
                   allow_lossy_casts=p["allow_lossy_casts"], sample_limit=p["sample_limit"])


def _refuse(module, conn, planned):
    """Journal the refusal (not in check mode) and fail, nothing changed."""
    p = module.params
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


def _check_statements(module, conn, planned):
    """Fail, nothing changed, when the statements about to run are not the plan's."""
    p = module.params
    with conn.cursor() as cur:
        ctx = _context(p, cur)
        digest = statements_digest(planned_statements(cur, ctx) + retire_statements(
            cur, {"schema": ctx.source_schema, "name": ctx.source_name}))
    conn.rollback()
    if p["expected_statements_sha256"] and digest != p["expected_statements_sha256"]:
        module.fail_json(msg="merge {0} -> {1}: its statements differ from the plan's (the database moved "
                             "since the plan): nothing was changed; re-run, which plans again".format(
                                 planned["source"], planned["target"]))


def _merge(module, conn, planned, attempts):
    """Guard, then the merge in one transaction (journaled as started; retried on a lock timeout)."""
    p = module.params
    with conn.cursor() as cur:
        guard = check_guard(cur, p["backup_id"], planned["backup_objects"], p["backup_max_age_minutes"],
                            p["guard_override"])
        ensure_meta_schema(cur)
        ensure_retire_schema(cur)
    conn.commit()

    def work(cur):
        journal(cur, p["run_id"], "table_merge", "started", planned["source"],
                {"target": planned["target"], "backup_id": p["backup_id"], "guard": guard})
        return apply(cur, _context(p, cur), p["run_id"], retention_days=p["retention_days"],
                     retire_source=p["retire_source"])
    return run_step(conn, work, p["lock_retries"], attempts, "merge " + planned["source"])


def _run(module, conn, attempts):
    """(counts before, result): the plan, or the merge when it may go ahead."""
    with conn.cursor() as cur:
        planned = plan(cur, _context(module.params, cur))
    conn.rollback()
    before = {"source_rows": planned.get("source_rows"), "target_rows": planned.get("target_rows"),
              "target_exists": planned.get("target_exists")}
    if planned["action"] == "converged" or module.check_mode:
        return before, planned
    if planned["action"] == "refused":
        _refuse(module, conn, planned)
    _check_statements(module, conn, planned)
    return before, _merge(module, conn, planned, attempts)


def _counts_after(p, before, result):
    if result["action"] not in ("merge", "merged"):
        return dict(before)
    moved = result.get("inserted", result.get("to_insert", 0))
    return {"source_rows": "(retired to quarantine)" if p["retire_source"] else before["source_rows"],
            "target_rows": (before["target_rows"] or 0) + moved, "target_exists": True}


def main():
    module = PgsafeModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    conn = locking_connection(module)
    attempts = []
    try:
        before, result = _run(module, conn, attempts)
    except (MergeError, RetireError, BackupError, LockError, ValueError) as exc:
        module.fail_json(msg=str(exc) + " (nothing was changed: the merge runs in one transaction)")
    except Exception as exc:  # noqa: BLE001
        module.fail_json(msg="merge {0} -> {1} failed and was rolled back, nothing changed: {2}".format(
            p["source"], p["target"], " ".join(str(exc).split())))
    finally:
        conn.close()
    out = {k: v for k, v in result.items() if k not in ("quarantine",)}
    out["changed"] = result["action"] in ("merge", "merged")
    out["report_item"] = {k: "" if result.get(k) is None else result.get(k) for k in REPORT_KEYS}
    if attempts:
        out["attempts"] = attempts
    out["diff"] = module.diff_of(before, _counts_after(p, before, result))
    module.exit_json(**out)


if __name__ == "__main__":
    main()
