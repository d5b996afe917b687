#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_column_types: safe, FK-aware column type changes (thin: logic in module_utils)."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_column_types
short_description: Bring columns across related tables to declared types, then create and validate FKs
version_added: "0.1.0"
author: pgsafe maintainers
description:
  - "Plans one unit from the declared C(changes) and C(foreign_keys) and the live catalog (columns, FKs,
    indexes, dependent views, defaults), prechecks it on the real data with the exact cast that will run, then
    drops the FKs on the changed columns, converts parents and children together, recreates the FKs and adds the
    declared ones C(NOT VALID), and validates each of them."
  - "Precheck (read only): every non-null value that does not cast is listed (count, sample primary keys and
    values); values that cast but normalise (upper case, braces, no hyphens) are reported; two values of a unique
    column that become one value are a collision that stops the plan; orphans of each FK to create are found
    comparing values after the cast; free disk (about 2x the tables and their indexes) is checked."
  - On servers >= 16 castability uses C(pg_input_is_valid); on older servers the exact cast of every value in a
    savepoint and, only when it fails, a strict regex of what C(uuid_in) accepts to list the values, confirmed by
    the server's own cast of each rejected value in a savepoint (uuid), a length check
    (varchar(n)), or the exact expression in a savepoint (anything else).
  - C(orphan_policy=quarantine) moves orphan rows and the rows depending on them into C(pgsafe.quarantine_row)
    (source table, primary key, reason, run id, row as jsonb, sha256) in the same transaction as their removal;
    M(pgsafe_quarantine_restore) puts them back.
  - "Strategies: C(rewrite) (ALTER ... TYPE ... USING in one transaction under C(lock_timeout), bounded retries with
    backoff, then fail closed) and C(online) (shadow column, sync trigger, batched throttled backfill, shadow indexes
    built CONCURRENTLY, a short swap). C(auto) picks online above C(online_threshold_bytes)."
  - "Every dependent of a retyped column is found in the catalogs before the first change and decided per
    strategy (C(plan.dependents)); the full list is in roles/schema_fix/README.md. Carried over by the server
    (rewrite): indexes, primary key / unique / exclusion / check constraints, extended statistics, the default,
    an owned sequence, an identity column (to an integer type), column grants, statistics target, comment,
    replica identity / cluster index. Re-created by the plan: foreign keys (NOT VALID, then validated), views (same
    transaction), a non-default collation (ALTER ... TYPE ... COLLATE). Definitions the server re-parses (index
    expressions and predicates, checks, statistics expressions, the default, a re-created view) are parsed over
    the new types in the plan, and a rebuilt index needs an operator class for the new type; one that does not
    parse is refused."
  - "Refused in the plan, naming the object, the reason and the fix, nothing changed: materialized views, views
    other objects depend on, rules, trigger WHEN clauses and UPDATE OF lists, policies, generated columns,
    functions with SQL-standard bodies, publication column lists and row filters, partition keys, inherited
    columns, typed tables, tables with inheritance children, the table's row type used by a column elsewhere,
    any other object pg_depend records on the column. Online additionally refuses (C(auto) then picks rewrite)
    what its swap does not rebuild: expression/partial/non-btree indexes, check and exclusion constraints,
    extended statistics, owned sequences, identity, collation, column grants, statistics target, replica
    identity / cluster index."
  - "Hazards, with the lines: functions and trigger functions whose body names the column (the server does not
    track them); enabled event triggers."
  - "A failed apply says \"re-run to resume\" only when a re-run can succeed (lock timeout, deadlock,
    serialization failure, lost connection, server shutdown); otherwise \"this will fail again until\" and what
    to fix, with the object the server named."
  - Check mode plans in a READ ONLY transaction (no DDL, no writes, no lock stronger than ACCESS SHARE) and returns
    the plan with its hazards. Diff mode shows column and FK definitions before/after.
  - Idempotent; a second run reports C(changed=false) and C(already converged).
extends_documentation_fragment:
  - pgsafe_connection
  - pgsafe_guard
options:
  changes:
    description: Columns to bring to a type.
    type: list
    elements: dict
    default: []
    suboptions:
      table:
        description: Table, C(table) or C(schema.table) (quote parts containing dots).
        type: str
        required: true
      column:
        description: Column name, exactly as in the catalog.
        type: str
        required: true
      type:
        description: Target type, e.g. C(uuid), C(varchar(255)).
        type: str
        required: true
      using:
        description:
          - Optional explicit conversion expression over the table's columns (one SQL expression; no C(;), no
            comments). Default is C(CAST(column AS type)), or plain assignment for varchar(n)/text so that an
            overlong value errors instead of being truncated.
        type: str
      default:
        description: Default to set after the change (an SQL expression). Omit (or null) to keep the current one.
        type: raw
      drop_default:
        description: Drop the column's default after the change.
        type: bool
      not_null:
        description: Require the column to be NOT NULL (NULLs are then reported by the precheck).
        type: bool
  foreign_keys:
    description: Foreign keys the code declares, created C(NOT VALID) and then validated.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Constraint name.
        type: str
        required: true
      table:
        description: Referencing table.
        type: str
        required: true
      columns:
        description: Referencing columns.
        type: list
        elements: str
        required: true
      ref_table:
        description: Referenced table.
        type: str
        required: true
      ref_columns:
        description: Referenced columns.
        type: list
        elements: str
        required: true
      on_delete:
        description: ON DELETE action.
        type: str
        default: NO ACTION
      on_update:
        description: ON UPDATE action.
        type: str
        default: NO ACTION
  orphan_policy:
    description: What to do with rows whose parent is missing (after the cast).
    type: str
    choices: [fail, quarantine]
    default: fail
  strategy:
    description: How to convert.
    type: str
    choices: [auto, rewrite, online]
    default: auto
  online_method:
    description:
      - How the online strategy converts each table. C(auto) copies a table into a new one and swaps them (copy and
        swap) when every dependent of the table is carried over, else adds shadow columns (the plan names why, per
        table, in C(plan.methods)); C(shadow_columns) keeps the shadow-column method for every table.
    type: str
    choices: [auto, shadow_columns]
    default: auto
  online_threshold_bytes:
    description: With C(strategy=auto), tables (with indexes) larger than this use the online strategy.
    type: int
    default: 268435456
  lock_timeout:
    description: lock_timeout of every locking step (the longest a writer can queue behind one attempt).
    type: str
    default: 3s
  statement_timeout:
    description: statement_timeout of every step (unset by default).
    type: str
  retries:
    description: How many times a step is retried after a lock timeout or deadlock (then it fails closed).
    type: int
    default: 3
  backoff_seconds:
    description: First sleep between retries; doubles each retry.
    type: float
    default: 0.5
  backoff_max_seconds:
    description: Longest sleep between retries.
    type: float
    default: 5.0
  batch_size:
    description: Rows per backfill batch (online).
    type: int
    default: 5000
  batch_target_ms:
    description:
      - Time budget of one backfill batch (online). A batch keeps its rows locked until it commits, so an
        application write to one of them waits up to one batch; the batch size adapts (halves when a batch is
        slower, grows up to I(batch_size) when faster). 0 keeps I(batch_size) fixed.
    type: int
    default: 40
  throttle_ms:
    description: Pause between backfill batches (online), to limit WAL pressure on replicas.
    type: int
    default: 0
  verify:
    description: Check row counts and content hashes (planned casts applied to the before side) inside the change.
    type: bool
    default: true
  disk_free_bytes:
    description: Free bytes on the server's data volume, when the module cannot measure it itself.
    type: int
  disk_margin_bytes:
    description: Extra free space required on top of the estimate.
    type: int
    default: 67108864
    aliases: [disk_margin]
  run_id:
    description: Run id recorded in the journal and with quarantined rows.
    type: str
    required: true
  precheck:
    description:
      - "In check mode, C(false) plans from the catalog only, without the precheck's scans of the data (the plan, its
        statements and C(guard_objects), nothing read from the tables), for a caller that applies next: the applying
        run always prechecks the real data itself, in its READ ONLY transaction before its first change. Outside
        check mode it is ignored."
    type: bool
    default: true
  expected_statements_sha256:
    description:
      - The C(statements_sha256) of the plan's type change step (M(pgsafe_plan)). The module renders the statements
        it is about to run and refuses, changing nothing, when they differ (the database moved since the plan).
    type: str
attributes:
  check_mode:
    support: full
    description: Plans and prechecks in a READ ONLY transaction; returns the plan, its hazards and what would run.
  diff_mode:
    support: full
    description: Column and foreign key definitions before and after.
"""

EXAMPLES = r"""
- name: Fix the exports pair in prod
  pgsafe_column_types:
    run_id: "{{ run_context_run_id }}"
    orphan_policy: quarantine
    changes:
      - {table: bazaar-vid_exports, column: id, type: uuid, default: gen_random_uuid()}
      - {table: bazaar-vid_exports, column: user_id, type: varchar(255)}
      - {table: bazaar-vid_exports, column: project_id, type: uuid}
      - {table: bazaar-vid_export_analytics, column: export_id, type: uuid}
    foreign_keys:
      - name: bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk
        table: bazaar-vid_export_analytics
        columns: [export_id]
        ref_table: bazaar-vid_exports
        ref_columns: [id]
        on_delete: cascade
"""

RETURN = r"""
queries:
  description: Every statement the module ran (catalog reads, precheck scans, the change and its journal), in order.
  returned: always
  type: list
  elements: str
converged:
  description: True when nothing was (or needed to be) done.
  returned: always
  type: bool
attempts:
  description: Every locking attempt with its outcome and duration.
  returned: always
  type: list
  elements: dict
message:
  description: One line summary ("already converged", "converted ...").
  returned: always
  type: str
plan:
  description:
    - The plan (changes with from/to types, foreign keys with their state, views, steps, strategy), with
      C(touched_objects), C(changed_objects) and C(guard_objects) (tables whose rows or columns can change, what
      the backup must cover) as C(schema.table) lists, C(fingerprint_explanations) and C(report_items).
  returned: always
  type: dict
hazards:
  description: Warnings of the plan.
  returned: always
  type: list
  elements: str
precheck:
  description: Raw precheck findings (invalid values, normalising values, collisions, orphans, disk) and verdict.
  returned: when a change was planned
  type: dict
quarantined:
  description: Rows moved to pgsafe.quarantine_row per table.
  returned: success
  type: dict
counts:
  description: Rows per changed table before/after/quarantined.
  returned: success
  type: dict
rollback_sql:
  description: SQL that undoes the change and restores the quarantined rows (also in pgsafe.journal.rollback_sql).
  returned: when a change was planned
  type: str
diff:
  description: Column and FK definitions before/after.
  returned: diff mode
  type: dict
"""

import time

from ansible.module_utils.pgsafe_backup import BackupError, check_guard, guard_argument_spec
from ansible.module_utils.pgsafe_failures import failure_message
from ansible.module_utils.pgsafe_locks import LockError, locking_connection
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_plan import statements_digest
from ansible.module_utils.pgsafe_typechange import Runner, ensure_typechange_schema
from ansible.module_utils.pgsafe_typechange_facts import gather_facts
from ansible.module_utils.pgsafe_typechange_parse import TypeChangeError, normalise_changes, normalise_fks
from ansible.module_utils.pgsafe_typechange_plan import build_plan, diff_columns, plan_unit, unit_statements

CHANGE_SPEC = dict(table=dict(type="str", required=True), column=dict(type="str", required=True),
                   type=dict(type="str", required=True), using=dict(type="str"), default=dict(type="raw"),
                   drop_default=dict(type="bool"), not_null=dict(type="bool"))
FK_SPEC = dict(name=dict(type="str", required=True), table=dict(type="str", required=True),
               columns=dict(type="list", elements="str", required=True), ref_table=dict(type="str", required=True),
               ref_columns=dict(type="list", elements="str", required=True),
               on_delete=dict(type="str", default="NO ACTION"), on_update=dict(type="str", default="NO ACTION"))
ARGUMENT_SPEC = dict(
    changes=dict(type="list", elements="dict", default=[], options=CHANGE_SPEC),
    foreign_keys=dict(type="list", elements="dict", default=[], options=FK_SPEC),
    orphan_policy=dict(type="str", default="fail", choices=["fail", "quarantine"]),
    strategy=dict(type="str", default="auto", choices=["auto", "rewrite", "online"]),
    online_threshold_bytes=dict(type="int", default=256 * 1024 * 1024),
    online_method=dict(type="str", default="auto", choices=["auto", "shadow_columns"]),
    lock_timeout=dict(type="str", default="3s"),
    statement_timeout=dict(type="str"),
    retries=dict(type="int", default=3),
    backoff_seconds=dict(type="float", default=0.5),
    backoff_max_seconds=dict(type="float", default=5.0),
    batch_size=dict(type="int", default=5000),
    batch_target_ms=dict(type="int", default=40),
    throttle_ms=dict(type="int", default=0),
    verify=dict(type="bool", default=True),
    disk_free_bytes=dict(type="int"),
    disk_margin_bytes=dict(type="int", default=64 * 1024 * 1024, aliases=["disk_margin"]),
    run_id=dict(type="str", required=True),
    expected_statements_sha256=dict(type="str"),
    precheck=dict(type="bool", default=True),
    **guard_argument_spec(),
)


def _plan(module, conn, changes, fks, result):
    """Plan and precheck in a READ ONLY transaction; exits when converged (or in check mode), fails when blocked."""
    p = module.params
    with conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        unit = plan_unit(cur, changes, fks, p["orphan_policy"], p["strategy"], p["online_threshold_bytes"],
                         p["disk_free_bytes"], p["disk_margin_bytes"],
                         p.get("login_unix_socket") or p.get("login_host") or "", p["run_id"],
                         scan_data=p["precheck"] or not module.check_mode, online_method=p["online_method"])
        plan = unit["plan"]
        result.update(plan=unit["public"], hazards=plan["hazards"], plan_fingerprint=unit["fingerprint"])
        if module._diff:
            result["diff"] = diff_columns(plan)
        conn.rollback()
        if plan["blockers"]:
            module.fail_json(msg="the type change cannot proceed, nothing changed: " + "; ".join(plan["blockers"]),
                             **result)
        if plan["converged"]:
            result.update(converged=True, message="already converged: every column has its target type and "
                                                  "every declared foreign key exists and is valid")
            module.exit_json(**result)
        result.update(precheck=unit["precheck"], rollback_sql=unit["rollback_sql"])
        texts = [st["sql"] if isinstance(st["sql"], str) else st["sql"].as_string(cur)
                 for st in unit_statements(plan, p["orphan_policy"])]
    result["statements_sha256"] = statements_digest(texts)
    if p["expected_statements_sha256"] and p["expected_statements_sha256"] != result["statements_sha256"]:
        module.fail_json(msg="the statements of this type change differ from the plan's (the database moved "
                             "since the plan): nothing was changed; re-run, which plans again", **result)
    if not unit["verdict"]["ok"]:
        module.fail_json(msg="precheck failed, nothing changed: " + " | ".join(unit["verdict"]["problems"]), **result)
    result["hazards"] = unit["hazards"]
    if module.check_mode:
        result.update(changed=True, message="would convert ({0}): {1}{2}".format(
            plan["strategy"], "; ".join(plan["steps"]),
            "" if unit["precheck"] else " (data not prechecked here: the applying run prechecks it first)"))
        module.exit_json(**result)
    return unit


def _runner(module, conn, plan, progress):
    p = module.params
    return Runner(conn, plan, p["run_id"], orphan_policy=p["orphan_policy"], lock_timeout=p["lock_timeout"],
                  statement_timeout=p["statement_timeout"], retries=p["retries"], backoff=p["backoff_seconds"],
                  backoff_max=p["backoff_max_seconds"], batch_size=p["batch_size"], throttle_ms=p["throttle_ms"],
                  verify=p["verify"], progress=progress.append, batch_target_ms=p["batch_target_ms"])


def _apply(module, conn, unit, result):
    """Guard, then the change (rewrite or online); fails naming what went wrong. Returns (runner, validated)."""
    p = module.params
    plan = unit["plan"]
    conn.set_session(readonly=False)
    with conn.cursor() as cur:
        result["guard"] = check_guard(cur, p["backup_id"], unit["public"]["guard_objects"],
                                      p["backup_max_age_minutes"], p["guard_override"])
        ensure_typechange_schema(cur)
    conn.commit()
    result["progress"] = []
    runner = _runner(module, conn, plan, result["progress"])
    try:
        validated = runner.online() if plan["strategy"] == "online" else runner.rewrite()
    except (TypeChangeError, LockError) as exc:
        result.update(attempts=runner.attempts, events=runner.events)
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # noqa: BLE001 - database errors: the transaction was rolled back
        result.update(attempts=runner.attempts, events=runner.events)
        module.fail_json(msg=failure_message(exc, "the type change", ", ".join(plan["touched_tables"])) +
                         ". The failed transaction was rolled back by the server; pgsafe.journal shows the last "
                         "completed step", **result)
    return runner, validated


def _converged_after(conn, changes, fks):
    with conn.cursor() as cur:
        after = build_plan(changes, fks, gather_facts(cur, changes, fks), "rewrite")
    conn.commit()
    return after


def main():
    module = PgsafeModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    result = {"changed": False, "converged": False, "hazards": [], "attempts": [], "quarantined": {}, "counts": {}}
    try:
        changes = normalise_changes(p["changes"])
        fks = normalise_fks(p["foreign_keys"])
    except Exception as exc:  # noqa: BLE001 - bad input: say which
        module.fail_json(msg=str(exc), **result)
    # statement_timeout applies to the change steps (Runner), not to the precheck scans.
    conn = locking_connection(module, "retries")
    try:
        unit = _plan(module, conn, changes, fks, result)
        plan = unit["plan"]
        started = time.monotonic()
        runner, validated = _apply(module, conn, unit, result)
        after = _converged_after(conn, changes, fks)
        if not after["converged"]:
            module.fail_json(msg="type change ran but the catalog is not converged: " + "; ".join(after["steps"]),
                             **result)
        result.update(changed=True, converged=True, attempts=runner.attempts, events=runner.events,
                      quarantined={k: v["rows"] for k, v in runner.moved.items()}, counts=runner.counts,
                      validated_foreign_keys=validated, seconds=round(time.monotonic() - started, 3),
                      message="converted {0} column(s) with strategy {1}; {2} foreign key(s) validated; {3} row(s) "
                              "quarantined".format(sum(1 for c in plan["changes"] if c["needs_type"]),
                                                   plan["strategy"], len(validated),
                                                   sum(v["rows"] for v in runner.moved.values())))
        module.exit_json(**result)
    except (TypeChangeError, BackupError) as exc:
        module.fail_json(msg=str(exc), **result)
    except Exception as exc:  # noqa: BLE001 - a database error outside the change (plan reads, guard, journal)
        if not getattr(exc, "pgcode", None) and type(exc).__module__.split(".")[0] != "psycopg2":
            raise
        module.fail_json(msg=failure_message(exc, "the type change (before or after its transaction)",
                                             ", ".join(c["table"] for c in changes)), **result)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
