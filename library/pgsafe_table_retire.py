#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_table_retire: safe drop (quarantine), restore and purge of tables."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_table_retire
short_description: Retire unused tables into a quarantine schema, restore them, or purge them after retention
version_added: "0.1.0"
author: pgsafe maintainers
description:
  - I(state=retired) moves each table of I(tables) into the quarantine schema (C(ALTER TABLE ... SET SCHEMA),
    collision-free derived name, recorded in C(pgsafe.quarantined_object) with a retention date) when an exact
    count says it is empty (or equals its declared I(expected_rows)) and nothing that stays depends on it
    (inbound foreign keys, views, policies, defaults, triggers, functions by pg_depend and by body search,
    sequences it owns that others use).
  - Emptiness and dependents are checked again under ACCESS EXCLUSIVE inside the transaction that moves the
    table; a table that is not empty is skipped and reported with its row count, whatever the plan says.
    Each table moves in a transaction of its own.
  - I(state=restored) moves quarantined tables back under their original names in one step (by name, or every
    table quarantined by I(restore_run_id)). I(state=purged) drops (RESTRICT, never CASCADE) quarantined
    tables whose retention expired, only with the I(backup_id) of their final dump.
  - Check mode plans in a READ ONLY transaction (no lock, no DDL). Diff mode shows where each table is before
    and after. A second run reports changed=false.
  - The backup guard is the caller's job (roles C(table_cleanup) and C(table_merge) run it first).
extends_documentation_fragment:
  - pgsafe_connection
  - pgsafe_guard
options:
  state:
    description: C(retired) (quarantine), C(restored) (move back) or C(purged) (drop expired quarantined tables).
    type: str
    choices: [retired, restored, purged]
    default: retired
  tables:
    description:
      - Tables, as C(name), C(schema.name) or C({name, schema, expected_rows}). C(expected_rows) defaults to 0.
      - With I(state=restored), the original names of the tables to move back.
      - With I(state=purged), optional filter on original names (default every expired one).
    type: list
    elements: raw
    default: []
  run_id:
    description: Run id recorded in the journal and in C(pgsafe.quarantined_object).
    type: str
    required: true
  retention_days:
    description: Days a retired table is kept in quarantine before it may be purged.
    type: int
    default: 30
  reason:
    description: Why the tables are retired (recorded).
    type: str
    default: unused table (Sprint 90 cleanup)
  restore_run_id:
    description: With I(state=restored), move back every table quarantined by this run.
    type: str
  lock_timeout:
    description: lock_timeout for the ACCESS EXCLUSIVE lock on each table.
    type: str
    default: 5s
  lock_retries:
    description:
      - How many times a table's transaction is retried when its lock is not obtained within I(lock_timeout) (or
        it hits a deadlock), after 0.5 s doubling up to 5 s; then the module fails closed for that table. 0 to 20.
    type: int
    default: 0
  fail_on_skipped:
    description: Fail (after moving the tables that qualify) when a table was skipped or blocked.
    type: bool
    default: false
  expected_statements_sha256:
    description:
      - "The C(statements_sha256) of the plan's retire steps (M(pgsafe_plan)), by table (schema.table). Before the
        first move the module renders each table's statements and refuses, moving nothing, when one differs (the
        database moved since the plan)."
    type: dict
attributes:
  check_mode:
    support: full
    description: Plans in a READ ONLY transaction (no lock, no DDL); restore and purge say what they would do.
  diff_mode:
    support: full
    description: Where each table is before and after.
"""

EXAMPLES = r"""
- name: Retire the tables found empty in prod
  pgsafe_table_retire:
    run_id: "{{ run_context_run_id }}"
    tables: [bazaar-vid_component_error, bazaar-vid_patch, {name: api_usage_metric, expected_rows: 0}]
    backup_id: "{{ backup_guard_result.backup_id }}"

- name: Put them back (rollback)
  pgsafe_table_retire:
    run_id: "{{ run_context_run_id }}"
    state: restored
    restore_run_id: 20261125T160000Z-abc123
"""

RETURN = r"""
queries:
  description: What ran on the database, in order (plan reads, each LOCK TABLE and move, journal rows).
  returned: always
  type: list
  elements: str
tables:
  description: One entry per table - table, action (retire|retired|skip|blocked|converged|absent|restore|restored|
    purge|purged), reason, row_count, dependencies, quarantine_table, retain_until.
  returned: always
  type: list
  elements: dict
attempts:
  description: Every transaction that takes a lock, with its outcome (ok, or the SQLSTATE of a lock timeout) and time.
  returned: always
  type: list
  elements: dict
skipped:
  description: Tables left in place because they hold rows (or not the declared count), with their row counts.
  returned: always
  type: list
  elements: dict
blocked:
  description: Tables left in place because something that stays depends on them.
  returned: always
  type: list
  elements: dict
report_items:
  description: Flat rows for the run report (table, action, row_count, reason, quarantine_table, retain_until).
  returned: always
  type: list
  elements: dict
diff:
  description: Where each table is before and after.
  returned: when diff mode
  type: dict
"""

from ansible.module_utils.pgsafe_backup import BackupError, check_guard, guard_argument_spec
from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_locks import LockError, lock_retries_option, locking_connection, run_step
from ansible.module_utils.pgsafe_meta import ensure_meta_schema
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_plan import statements_digest
from ansible.module_utils.pgsafe_plan_steps import plan_object_key
from ansible.module_utils.pgsafe_retire import (RetireError, ensure_retire_schema, normalize_table_spec, plan,
                                                planned_statements, purge_table, purgeable, restorable, restore_table,
                                                retire_table)

ARGUMENT_SPEC = dict(
    state=dict(type="str", default="retired", choices=["retired", "restored", "purged"]),
    tables=dict(type="list", elements="raw", default=[]),
    run_id=dict(type="str", required=True),
    retention_days=dict(type="int", default=30),
    reason=dict(type="str", default="unused table (Sprint 90 cleanup)"),
    restore_run_id=dict(type="str"),
    **guard_argument_spec(),
    lock_timeout=dict(type="str", default="5s"),
    **lock_retries_option(),
    fail_on_skipped=dict(type="bool", default=False),
    expected_statements_sha256=dict(type="dict"),
)
AFTER = {"retired": "in {quarantine_table}", "retire": "would move to quarantine", "restored": "in place",
         "restore": "in place", "purged": "dropped after backup", "purge": "would be dropped"}


def _step(module, conn, attempts, what, work):
    """One table's transaction: lock timeouts retried (lock_retries), check mode rolled back."""
    return run_step(conn, work, module.params["lock_retries"], attempts, what, dry_run=module.check_mode)


def _retire(module, conn, attempts):
    params = module.params
    with conn.cursor() as cur:
        planned = plan(cur, params["tables"])
        expected = params["expected_statements_sha256"] or {}
        for entry in planned:
            key = plan_object_key(entry["table"])
            if entry["action"] == "retire" and key in expected and \
                    statements_digest(planned_statements(cur, entry)) != expected[key]:
                raise RetireError("the statements that retire {0} differ from the plan's (the database moved since "
                                  "the plan): nothing was moved; re-run, which plans again".format(entry["table"]))
        covers = [p["backup_object"] for p in planned if p["action"] == "retire"]
        guard = check_guard(cur, params["backup_id"], covers, params["backup_max_age_minutes"],
                            params["guard_override"]) if covers and not module.check_mode else {}
    conn.rollback()
    if module.check_mode:
        return planned
    with conn.cursor() as cur:
        ensure_meta_schema(cur)
        ensure_retire_schema(cur)
    conn.commit()
    leaving = [(p["schema"], p["name"]) for p in planned if p["action"] == "retire"]
    results = []
    for entry in planned:
        if entry["action"] != "retire":
            results.append(entry)
            continue
        results.append(_step(module, conn, attempts, "retire " + entry["table"], lambda cur, entry=entry: retire_table(
            cur, params["run_id"], entry, retention_days=params["retention_days"], reason=params["reason"],
            leaving=leaving, details={"backup_id": params["backup_id"], "guard": guard})))
    return results


def _restore(module, conn, attempts):
    params = module.params
    with conn.cursor() as cur:
        records = []
        for item in params["tables"]:
            found = restorable(cur, item=item)
            if not found:
                spec = normalize_table_spec(item)
                raise RetireError("no quarantine record for {0}.{1}: nothing to restore from quarantine (restore it "
                                  "from a backup with playbooks/restore.yml)".format(spec["schema"], spec["name"]))
            records.extend(found)
        if params["restore_run_id"]:
            records.extend(restorable(cur, run_id=params["restore_run_id"]))
    return [_step(module, conn, attempts, "restore " + qualified(record["schema"], record["name"]),
                  lambda cur, record=record: restore_table(cur, params["run_id"], record, apply=not module.check_mode))
            for record in records]


def _purge(module, conn, attempts):
    params = module.params
    wanted = {(s["schema"], s["name"]) for s in map(normalize_table_spec, params["tables"])}
    with conn.cursor() as cur:
        records = [r for r in purgeable(cur) if not wanted or (r["schema"], r["name"]) in wanted]
    conn.rollback()
    if module.check_mode:
        return [dict(r, action="purge", reason="retention expired {0}".format(r["retain_until"])) for r in records]
    return [_step(module, conn, attempts, "purge " + record["table"], lambda cur, record=record: purge_table(
        cur, params["run_id"], record, params["backup_id"])) for record in records]


def _outcome(params, results):
    """The module's result from the per-table results: skipped, blocked and the report's rows."""
    done_actions = {"retired", "restored", "purged", "retire", "restore", "purge"}
    skipped = [{"table": r["table"], "row_count": r.get("row_count"), "reason": r["reason"]}
               for r in results if r["action"] == "skip"]
    blocked = [{"table": r["table"], "reason": r["reason"]} for r in results if r["action"] == "blocked"]
    report_items = [{"table": r.get("table") or r.get("original"), "action": r["action"],
                     "row_count": r.get("row_count"), "reason": r.get("reason"),
                     "quarantine_table": r.get("quarantine_table") or (r.get("table") if params["state"] == "purged"
                                                                       else None),
                     "retain_until": r.get("retain_until")} for r in results]
    report_items = [{k: ("" if v is None else v) for k, v in item.items()} for item in report_items]
    return {"changed": any(r["action"] in done_actions for r in results), "tables": results, "skipped": skipped,
            "blocked": blocked, "report_items": report_items}


def _where(results):
    """(before, after) text: where each table is."""
    before = "\n".join("{0}: {1}".format(r["table"], "in place" if r["action"] not in ("restored", "restore")
                                          else "in quarantine") for r in results) + "\n"
    after = "\n".join("{0}: {1}".format(r["table"], AFTER[r["action"]].format(
        quarantine_table=r.get("quarantine_table")) if r["action"] in AFTER else "unchanged ({0})".format(r["action"]))
        for r in results) + "\n"
    return before, after


def main():
    module = PgsafeModule(argument_spec=ARGUMENT_SPEC, required_if=[("state", "purged", ("backup_id",))],
                          supports_check_mode=True)
    params = module.params
    conn = locking_connection(module)
    attempts = []
    try:
        handler = {"retired": _retire, "restored": _restore, "purged": _purge}[params["state"]]
        results = handler(module, conn, attempts)
    except (RetireError, BackupError, LockError, ValueError) as exc:
        module.fail_json(msg=str(exc), attempts=attempts)
    except Exception as exc:  # noqa: BLE001 - database errors: name them, nothing was committed for that table
        module.fail_json(msg="{0} failed: {1} (the table being handled was left as it was; fix and re-run)".format(
            params["state"], " ".join(str(exc).split())), attempts=attempts)
    finally:
        conn.close()
    out = dict(_outcome(params, results), attempts=attempts, diff=module.diff_of(*_where(results)))
    if params["fail_on_skipped"] and (out["skipped"] or out["blocked"]):
        module.fail_json(msg="tables left in place: " + "; ".join("{0}: {1}".format(x["table"], x["reason"])
                                                                  for x in out["skipped"] + out["blocked"]), **out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
