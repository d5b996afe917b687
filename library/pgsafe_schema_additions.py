#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_schema_additions: additive schema steps that keep writers running (thin: logic in module_utils)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_schema_additions
short_description: Add columns, indexes, NOT NULL and defaults the way that keeps writers running
description:
  - "Plans one step per item of I(additions) from the live catalog, prechecks it on the real data, then runs it:
    C(add_column) (C(ALTER TABLE ... ADD COLUMN), catalog only with a non-volatile default), C(create_index)
    (C(CREATE [UNIQUE] INDEX CONCURRENTLY); an INVALID index of that name left by an interrupted build is dropped
    first with C(DROP INDEX CONCURRENTLY)), C(set_not_null) (C(CHECK (col IS NOT NULL) NOT VALID), C(VALIDATE),
    C(SET NOT NULL) proven by the validated check, C(DROP CONSTRAINT)), C(set_default) and C(drop_default)."
  - "Precheck (read only): an C(add_column) whose default calls a volatile function (C(random()),
    C(gen_random_uuid()), C(clock_timestamp()), C(nextval()), ...) would rewrite the table, so it is refused on a
    table with rows, with the fix (add it nullable, C(set_default), backfill, C(set_not_null)); C(not_null) without a
    default on a table with rows is refused with its row count; C(set_not_null) counts the NULL rows (sample primary
    keys); a unique C(create_index) counts the duplicate key groups (sample keys). Any failing precheck refuses the
    whole run before a statement runs."
  - "Each transactional statement runs in a transaction of its own under C(SET LOCAL lock_timeout) (no ACCESS
    EXCLUSIVE lock is held across a scan); CONCURRENTLY statements run in autocommit. The plan is state-aware: a
    re-run after an interruption resumes (INVALID index rebuilt, NOT VALID check validated, leftover check dropped)."
  - Items are planned in order; a column added by an earlier item counts as present for the later ones.
  - Every applied step is journalled in C(pgsafe.journal) (step C(schema_additions)) with its rollback SQL.
  - Check mode plans in a READ ONLY transaction and returns the steps with their exact SQL and C(sha256); pass
    C(sha256) to I(expected_sha256) of the real run to refuse it when the database moved since the plan.
    Diff mode shows each object before and after. A second run reports C(changed=false).
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Plans in a READ ONLY transaction and returns the steps with their exact SQL and C(sha256).
  diff_mode:
    support: full
    description: Each object before and after its step.
options:
  additions:
    description:
      - "The items, each a dict with C(kind) and the keys of that kind -
        C(add_column) C(table), C(column), C(type), optional C(default) (SQL expression) and C(not_null) (default false);
        C(create_index) C(table), C(name), C(columns), optional C(unique) (default false), C(method) (default btree)
        and C(where) (SQL predicate); C(set_not_null) C(table), C(column); C(set_default) C(table), C(column),
        C(default); C(drop_default) C(table), C(column)."
      - C(table) is C(table) or C(schema.table) (quote parts containing dots); names are taken exactly as in the
        catalog (hyphens and camelCase welcome). Expressions are one SQL expression, no C(;), no comments.
    type: list
    elements: dict
    default: []
  expected_sha256:
    description:
      - The C(sha256) returned by the check-mode plan (object -> sha256 of its statements). When given, the run
        refuses, naming the object, if a statement it would run differs from the planned ones.
      - Steps that are converged now run nothing and pass.
    type: dict
  lock_timeout:
    description: lock_timeout of every statement (the longest a writer can queue behind one attempt).
    type: str
    default: 5s
  statement_timeout:
    description: statement_timeout of every statement (unset by default).
    type: str
  run_id:
    description: Run id recorded in the journal.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Plan the additions (check mode) and keep their hashes
  pgsafe_schema_additions:
    run_id: "{{ run_context_run_id }}"
    additions: "{{ schema_additions }}"
  check_mode: true
  register: additions_plan

- name: Run exactly what was planned
  pgsafe_schema_additions:
    run_id: "{{ run_context_run_id }}"
    expected_sha256: "{{ additions_plan.sha256 }}"
    additions:
      - {kind: add_column, table: bazaar-vid_exports, column: createdAt, type: timestamptz, default: now()}
      - {kind: create_index, table: bazaar-vid_exports, name: exports_createdAt_idx, columns: [createdAt]}
      - {kind: set_default, table: bazaar-vid_exports, column: status, default: "'pending'"}
      - {kind: set_not_null, table: bazaar-vid_exports, column: status}
"""

RETURN = r"""
steps:
  description:
    - One per item - kind, object, converged, statements (sql, lock_level, transactional), hazards, precheck (ok,
      problems, offending_rows, rows), rollback_sql, tables, before, after, position, sha256, item (normalised).
  returned: always
  type: list
  elements: dict
sha256:
  description: Object -> sha256 of the statements planned for it (feed to I(expected_sha256)).
  returned: always
  type: dict
applied:
  description: Objects whose statements ran.
  returned: always
  type: list
  elements: str
queries:
  description: Every planned SQL statement executed, in order (session settings and catalog reads not included).
  returned: always
  type: list
  elements: str
diff:
  description: Each object before and after.
  returned: diff mode
  type: dict
"""

from ansible.module_utils.pgsafe_additions import AdditionError, normalise_additions, objects_sha256, plan_additions
from ansible.module_utils.pgsafe_additions_apply import StepFailed, additions_diff, apply_steps, moved_objects
from ansible.module_utils.pgsafe_module import PgsafeModule


def _refusal(steps, expected):
    """Why the planned steps must not run (a failing precheck, the database moved since the review), or None."""
    problems = [x for s in steps for x in s["precheck"]["problems"]]
    if problems:
        return "precheck failed, nothing changed: " + " | ".join(problems)
    moved = moved_objects(steps, expected) if expected is not None else []
    if moved:
        return ("the database moved since the plan, nothing changed: " + " | ".join(moved)
                + " (plan again in check mode and review it)")
    return None


def main():
    module = PgsafeModule(
        argument_spec=dict(
            additions=dict(type="list", elements="dict", default=[]),
            expected_sha256=dict(type="dict"),
            lock_timeout=dict(type="str", default="5s"),
            statement_timeout=dict(type="str"),
            run_id=dict(type="str", required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "steps": [], "sha256": {}, "applied": [], "queries": []}
    try:
        items = normalise_additions(p["additions"])
    except AdditionError as exc:
        module.fail_json(msg=str(exc), **result)
    conn = module.connect(read_only=module.check_mode)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            steps = plan_additions(cur, items)
        conn.rollback()
        result.update(steps=steps, sha256=objects_sha256(steps), diff=module.diff_of(*additions_diff(steps)))
        if result["diff"] is None:
            del result["diff"]
        refusal = _refusal(steps, p["expected_sha256"])
        if refusal:
            module.fail_json(msg=refusal, **result)
        if module.check_mode:
            module.exit_json(**dict(result, changed=any(not s["converged"] for s in steps)))
        apply_steps(conn, steps, p["run_id"], p["lock_timeout"], p["statement_timeout"], result)
    except StepFailed as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # noqa: BLE001 - database errors: name them
        module.fail_json(msg="schema additions failed: {0} (re-run: the plan resumes from the state left)".format(
            " ".join(str(exc).split())), **result)
    finally:
        conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
