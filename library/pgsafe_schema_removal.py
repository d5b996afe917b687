#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_schema_removal: remove unused schemas, RESTRICT, after finding every outside dependent."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_schema_removal
short_description: Remove schemas the application does not use, refusing when anything outside depends on them
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
version_added: "0.1.0"
author: pgsafe maintainers
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
schemas:
  description: Per schema - schema, action (remove|removed|blocked|held|converged), reason, owner, objects
    (kind, name, owner, rows), dependents (kind, object, description, blocking), notes, statements.
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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_backup import BackupError, check_guard, guard_argument_spec
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal
from ansible.module_utils.pgsafe_plan import statements_digest
from ansible.module_utils.pgsafe_schema_removal import SchemaRemovalError, plan, removal_statements, remove_schema


def _public(entry):
    return {k: v for k, v in entry.items() if k not in ("inside", "info")}


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            schemas=dict(type="list", elements="str", required=True),
            independent=dict(type="bool", default=False),
            allow_dependents=dict(type="list", elements="str", default=[]),
            run_id=dict(type="str", required=True),
            expected_statements_sha256=dict(type="dict"),
            **guard_argument_spec(),
            lock_timeout=dict(type="str", default="5s"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        conn = connect(p, read_only=module.check_mode, settings={"lock_timeout": p["lock_timeout"]})
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    results = []
    try:
        with conn.cursor() as cur:
            planned = plan(cur, p["schemas"], allow_dependents=p["allow_dependents"], independent=p["independent"])
        conn.rollback()
        blocked = [{"schema": e["schema"], "reason": e["reason"]} for e in planned if e["action"] == "blocked"]
        if blocked and not p["independent"]:
            if not module.check_mode:
                with conn.cursor() as cur:
                    ensure_meta_schema(cur)
                    for e in planned:
                        journal(cur, p["run_id"], "schema_removal", "skipped", e["schema"],
                                {"action": e["action"], "reason": e["reason"]})
                conn.commit()
                module.fail_json(msg="schema removal refused, nothing dropped: " + "; ".join(
                    "{0}: {1}".format(b["schema"], b["reason"]) for b in blocked) +
                    " (fix the dependents, or set independent to let the other schemas proceed)",
                    schemas=[_public(e) for e in planned], blocked=blocked, removed=[])
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
        for entry in planned:
            if entry["action"] != "remove" or module.check_mode:
                results.append(_public(entry))
                continue
            try:
                with conn.cursor() as cur:
                    ensure_meta_schema(cur)
                    statements = remove_schema(cur, p["run_id"], entry, p["backup_id"])
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            results.append(dict(_public(entry), action="removed", statements=statements))
        if blocked and not module.check_mode:
            with conn.cursor() as cur:
                for b in blocked:
                    journal(cur, p["run_id"], "schema_removal", "skipped", b["schema"], b)
            conn.commit()
    except (SchemaRemovalError, BackupError) as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # noqa: BLE001
        module.fail_json(msg="schema removal failed, the schema being dropped was rolled back: {0}".format(
            " ".join(str(exc).split())), schemas=results)
    finally:
        conn.close()
    removed = [e["schema"] for e in results if e["action"] == "removed"]
    out = {"changed": bool(removed) or (module.check_mode and any(e["action"] == "remove" for e in results)),
           "schemas": results, "removed": removed, "blocked": blocked}
    if blocked:
        module.warn("schemas left in place: " + "; ".join("{0}: {1}".format(b["schema"], b["reason"])
                                                          for b in blocked))
    out["report_items"] = [{"schema": e["schema"], "action": e["action"], "owner": e.get("owner", ""),
                            "objects": ", ".join(o["name"] for o in e.get("objects", [])),
                            "dependents": "; ".join(d["description"] for d in e.get("dependents", [])),
                            "reason": e["reason"]} for e in results]
    if module._diff:
        out["diff"] = {"before": "".join("schema {0}: {1} objects\n".format(e["schema"], len(e.get("objects", [])))
                                         for e in results if e["action"] != "converged"),
                       "after": "".join("schema {0}: {1}\n".format(e["schema"], "dropped" if e["action"] in (
                           "remove", "removed") else "kept ({0})".format(e["action"]))
                           for e in results if e["action"] != "converged")}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
