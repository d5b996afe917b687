#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_legacy_audit: is a legacy table still in use?  Evidence and a verdict."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_legacy_audit
short_description: Audit legacy tables - rows, size, writes over a sampling window, dependencies, code references
description:
  - For each table - exact row count, size, write activity over I(sample_seconds) (deltas of pg_stat_user_tables
    n_tup_ins/upd/del, the row count again, the newest value of each timestamp column), inbound and outbound
    dependencies, and optionally references in an application checkout (I(app_path)) to the table name, the
    name without I(code_prefix) and its camelCase identifier.
  - Verdict per table - C(in use) (written during the window), C(empty) (no rows, no writes) or C(dormant).
  - Reads only. Outside check mode the verdicts are recorded in C(pgsafe.journal) (step legacy_audit).
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Audits (read only, sampling writes as in a real run) and journals nothing.
  diff_mode:
    support: none
options:
  tables:
    description: Tables to audit (C(name) or C(schema.name)).
    type: list
    elements: str
    required: true
  sample_seconds:
    description: Length of the sampling window.
    type: int
    default: 30
  app_path:
    description: An application checkout on the host running the task, searched for references.
    type: path
  code_prefix:
    description: Table-name prefix the ORM adds (C(bazaar-vid_)), stripped to find code identifiers.
    type: str
    default: ''
  run_id:
    description: Run id for the journal entry.
    type: str
"""

EXAMPLES = r"""
- name: Audit the legacy tables over one minute
  pgsafe_legacy_audit:
    tables: [bazaar-vid_project_memory, bazaar-vid_metric, bazaar-vid_agent_message]
    sample_seconds: 60
    code_prefix: bazaar-vid_
    run_id: "{{ run_context_run_id }}"
"""

RETURN = r"""
tables:
  description: Per table - table, verdict, evidence (list of sentences), rows, rows_before, size_bytes, writes,
    lifetime_writes, newest, inbound, outbound, code_identifiers, code_references.
  returned: always
  type: list
  elements: dict
report_items:
  description: Flat rows for the run report (table, verdict, rows, size_bytes, writes_in_window, newest,
    code_references, evidence).
  returned: always
  type: list
  elements: dict
verdicts:
  description: Table (bare name for public tables, else schema.name) -> verdict.
  returned: always
  type: dict
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_audit import audit
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal


def main():
    module = PgsafeModule(
        argument_spec=dict(
            tables=dict(type="list", elements="str", required=True),
            sample_seconds=dict(type="int", default=30),
            app_path=dict(type="path"),
            code_prefix=dict(type="str", default=""),
            run_id=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    conn = module.connect(read_only=True)
    try:
        results = audit(conn, p["tables"], sample_seconds=p["sample_seconds"], app_path=p["app_path"],
                        code_prefix=p["code_prefix"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    finally:
        conn.close()
    if p["run_id"] and not module.check_mode:
        conn = module.connect()
        try:
            with conn.cursor() as cur:
                ensure_meta_schema(cur)
                for r in results:
                    journal(cur, p["run_id"], "legacy_audit", "completed", r["table"],
                            {k: r.get(k) for k in ("verdict", "evidence", "rows", "writes", "newest")})
            conn.commit()
        finally:
            conn.close()
    report_items = [{"table": r["name"], "verdict": r["verdict"], "rows": r.get("rows"),
                     "size_bytes": r.get("size_bytes"),
                     "writes_in_window": " ".join("{0}={1}".format(k, v) for k, v in sorted(r.get("writes", {}).items())),
                     "newest": " ".join("{0}={1}".format(k, v) for k, v in sorted((r.get("newest") or {}).items())),
                     "code_references": sum(v["count"] for v in (r.get("code_references") or {}).values())
                     if r.get("code_references") is not None else "",
                     "evidence": "; ".join(r["evidence"])} for r in results]
    module.exit_json(changed=False, tables=results, report_items=report_items, verdicts={
        (r["name"] if r["schema"] == "public" else "{0}.{1}".format(r["schema"], r["name"])): r["verdict"]
        for r in results})


if __name__ == "__main__":
    main()
