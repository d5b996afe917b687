#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_schema_removal: remove unused schemas, RESTRICT, after finding every outside dependent."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_schema_removal
short_description: Remove schemas the application does not use, refusing when anything outside depends on them
version_added: "0.1.0"
author: pgsafe maintainers
description:
  - Lists every object inside each schema of I(schemas) and every dependency from outside - recorded ones
    (pg_depend - views, column defaults, RLS policies, constraints, functions with SQL-standard bodies, columns
    of its types) and textual ones (function bodies, view definitions, defaults and policies in other schemas
    mentioning C(schema.), roles or databases whose search_path names it). Grants on the schema and default
    privileges are listed too (they go with it).
  - A schema with outside dependents, or one the login may not drop (owned by another role), is refused
    (C(blocked)). Schemas removed together may depend on each other. With I(independent=false) (default) one
    blocked schema stops all of them and the module fails, nothing dropped; with I(independent=true) the
    others are removed and the blocked ones reported.
  - Removal drops the schema's own objects explicitly in dependency order, each RESTRICT, then
    C(DROP SCHEMA ... RESTRICT), one transaction per schema; CASCADE is never used.
  - The schema-level backup (restore-tested) is the caller's job (role C(auth_schema_removal)); its id is recorded
    in C(pgsafe.journal) with every drop. Restore a schema with playbooks/restore.yml from that backup.
  - Check mode plans in a READ ONLY transaction. A second run reports changed=false.
extends_documentation_fragment:
  - pgsafe_connection
  - pgsafe_guard
options:
  schemas:
    description: Schemas to remove.
    type: list
    elements: str
    required: true
  independent:
    description: Let schemas without dependents proceed when another schema of the list is blocked.
    type: bool
    default: false
  allow_dependents:
    description:
      - Schemas whose textual outside references (function bodies, search_path) are accepted. Recorded
        dependencies still block - DROP ... RESTRICT would fail on them anyway.
    type: list
    elements: str
    default: []
  run_id:
    description: Run id recorded in the journal.
    type: str
    required: true
  expected_statements_sha256:
    description:
      - "The C(statements_sha256) of the plan's schema removal steps (M(pgsafe_plan)), by C(schema:<name>). Before the
        first drop the module renders each schema's statements and refuses, dropping nothing, when one differs."
    type: dict
  lock_timeout:
    description: lock_timeout for the drops.
    type: str
    default: 5s
  lock_retries:
    description:
      - How many times a schema's transaction is retried when a drop's lock is not obtained within I(lock_timeout)
        (or it hits a deadlock), after 0.5 s doubling up to 5 s; then the module fails closed for that schema.
        0 to 20.
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Plans in a READ ONLY transaction; nothing is dropped.
  diff_mode:
    support: full
    description: Each schema's objects before, and dropped or kept after.
"""

EXAMPLES = r"""
- name: Remove dev's auth schemas
  pgsafe_schema_removal:
    run_id: "{{ run_context_run_id }}"
    schemas: [auth, pgrst, neon_auth]
    independent: true
    backup_id: "{{ auth_schema_removal_backup_id }}"
"""

RETURN = r"""
queries:
  description: The SQL this module ran, drops included, in the order it ran.
  returned: always
  type: list
  elements: str
schemas:
  description: Per schema - schema, action (remove|removed|blocked|held|converged), reason, owner, objects
    (kind, name, owner, rows), dependents (kind, object, description, blocking), notes, statements.
  returned: always
  type: list
  elements: dict
attempts:
  description: Every schema's transaction, with its outcome (ok, or the SQLSTATE of a lock timeout) and time.
  returned: always
  type: list
  elements: dict
removed:
  description: Schemas removed by this run.
  returned: always
  type: list
  elements: str
report_items:
  description: Flat rows for the run report (schema, action, owner, objects, dependents, reason).
  returned: always
  type: list
  elements: dict
blocked:
  description: Schemas refused, with the reason.
  returned: always
  type: list
  elements: dict
diff:
  description: Each schema's object count before, and dropped or kept after.
  returned: when diff mode
  type: dict
"""

from ansible.module_utils.pgsafe_backup import BackupError, check_guard, guard_argument_spec
from ansible.module_utils.pgsafe_locks import LockError, lock_retries_option, locking_connection, run_step
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_plan import statements_digest
from ansible.module_utils.pgsafe_schema_removal import SchemaRemovalError, plan, removal_statements, remove_schema

ARGUMENT_SPEC = dict(
    schemas=dict(type="list", elements="str", required=True),
    independent=dict(type="bool", default=False),
    allow_dependents=dict(type="list", elements="str", default=[]),
    run_id=dict(type="str", required=True),
    expected_statements_sha256=dict(type="dict"),
    **guard_argument_spec(),
    lock_timeout=dict(type="str", default="5s"),
    **lock_retries_option(),
)


def _public(entry):
    return {k: v for k, v in entry.items() if k not in ("inside", "info")}


def _journal_skipped(conn, run_id, entries):
    with conn.cursor() as cur:
        ensure_meta_schema(cur)
        for e in entries:
            journal(cur, run_id, "schema_removal", "skipped", e["schema"], {"action": e["action"], "reason": e["reason"]})
    conn.commit()


def _refuse_if_blocked(module, conn, planned, blocked):
    """Blocked schemas and independent false: journal and fail, nothing dropped."""
    if not blocked or module.params["independent"] or module.check_mode:
        return
    _journal_skipped(conn, module.params["run_id"], planned)
    module.fail_json(msg="schema removal refused, nothing dropped: " + "; ".join(
        "{0}: {1}".format(b["schema"], b["reason"]) for b in blocked) +
        " (fix the dependents, or set independent to let the other schemas proceed)",
        schemas=[_public(e) for e in planned], blocked=blocked, removed=[])


def _check(module, conn, planned):
    """Statements as planned, and the backup guard: refuse before the first drop."""
    p = module.params
    covers = ["schema:" + e["schema"] for e in planned if e["action"] == "remove"]
    expected = p["expected_statements_sha256"] or {}
    with conn.cursor() as cur:
        moved = [e["schema"] for e in planned if e["action"] == "remove" and "schema:" + e["schema"] in expected
                 and statements_digest(removal_statements(cur, e)) != expected["schema:" + e["schema"]]]
        if moved:
            raise SchemaRemovalError("the statements that remove {0} differ from the plan's (the database moved "
                                     "since the plan): nothing was dropped; re-run, which plans again".format(
                                         ", ".join(moved)))
        if covers and not module.check_mode:
            check_guard(cur, p["backup_id"], covers, p["backup_max_age_minutes"], p["guard_override"])
    conn.rollback()


def _remove(module, conn, planned, results, attempts):
    """Each removable schema in a transaction of its own (lock timeouts retried)."""
    p = module.params
    for entry in planned:
        if entry["action"] != "remove" or module.check_mode:
            results.append(_public(entry))
            continue

        def work(cur, entry=entry):
            ensure_meta_schema(cur)
            return remove_schema(cur, p["run_id"], entry, p["backup_id"])
        statements = run_step(conn, work, p["lock_retries"], attempts, "remove schema " + entry["schema"])
        results.append(dict(_public(entry), action="removed", statements=statements))


def _outcome(module, results, blocked):
    removed = [e["schema"] for e in results if e["action"] == "removed"]
    out = {"changed": bool(removed) or (module.check_mode and any(e["action"] == "remove" for e in results)),
           "schemas": results, "removed": removed, "blocked": blocked}
    out["report_items"] = [{"schema": e["schema"], "action": e["action"], "owner": e.get("owner", ""),
                            "objects": ", ".join(o["name"] for o in e.get("objects", [])),
                            "dependents": "; ".join(d["description"] for d in e.get("dependents", [])),
                            "reason": e["reason"]} for e in results]
    shown = [e for e in results if e["action"] != "converged"]
    out["diff"] = module.diff_of(
        "".join("schema {0}: {1} objects\n".format(e["schema"], len(e.get("objects", []))) for e in shown),
        "".join("schema {0}: {1}\n".format(e["schema"], "dropped" if e["action"] in ("remove", "removed") else
                                            "kept ({0})".format(e["action"])) for e in shown))
    return out


def main():
    module = PgsafeModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    conn = locking_connection(module)
    results, attempts = [], []
    try:
        with conn.cursor() as cur:
            planned = plan(cur, p["schemas"], allow_dependents=p["allow_dependents"], independent=p["independent"])
        conn.rollback()
        blocked = [{"schema": e["schema"], "reason": e["reason"]} for e in planned if e["action"] == "blocked"]
        _refuse_if_blocked(module, conn, planned, blocked)
        _check(module, conn, planned)
        _remove(module, conn, planned, results, attempts)
        if blocked and not module.check_mode:
            with conn.cursor() as cur:
                for b in blocked:
                    journal(cur, p["run_id"], "schema_removal", "skipped", b["schema"], b)
            conn.commit()
    except (SchemaRemovalError, BackupError, LockError) as exc:
        module.fail_json(msg=str(exc), attempts=attempts)
    except Exception as exc:  # noqa: BLE001
        module.fail_json(msg="schema removal failed, the schema being dropped was rolled back: {0}".format(
            " ".join(str(exc).split())), schemas=results, attempts=attempts)
    finally:
        conn.close()
    if blocked:
        module.warn("schemas left in place: " + "; ".join("{0}: {1}".format(b["schema"], b["reason"])
                                                          for b in blocked))
    module.exit_json(attempts=attempts, **_outcome(module, results, blocked))


if __name__ == "__main__":
    main()
