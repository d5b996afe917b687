#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_quarantine_restore: put quarantined rows back, hash-identical."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_quarantine_restore
short_description: Restore the rows a run set aside in pgsafe.quarantine_row
description:
  - Re-inserts every not yet restored row quarantined by C(run_id) (parents before children, the reverse of
    their removal), in one transaction, and checks that each restored row hashes (sha256 of its jsonb) exactly like
    the quarantined copy; any difference or error rolls everything back.
  - "Rows rejected by a foreign key (e.g. orphans put back while the new FK exists) make it fail with the fix:
    run the change's rollback SQL first, or restore the missing parent."
  - Marks restored rows with C(restored_at); a second run restores nothing (C(changed=false)).
  - Check mode counts what would be restored, in a READ ONLY transaction.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
options:
  run_id:
    description: The run whose quarantined rows to restore.
    type: str
    required: true
  tables:
    description: Restrict to these tables (C(schema.table) or C("schema"."table")); all by default.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Put back the rows the exports fix set aside
  pgsafe_quarantine_restore:
    run_id: "{{ rollback_run_id }}"
"""

RETURN = r"""
restored:
  description: Rows restored per table.
  returned: always
  type: dict
pending:
  description: Rows still quarantined for the run per table (in check mode, what would be restored).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_meta import meta_schema_installed
from ansible.module_utils.pgsafe_typechange import TypeChangeError, restore_quarantine


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(run_id=dict(type="str", required=True),
                                               tables=dict(type="list", elements="str", default=[])),
        supports_check_mode=True,
    )
    p = module.params
    try:
        conn = connect(p, read_only=module.check_mode)
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    try:
        with conn.cursor() as cur:
            if not meta_schema_installed(cur):
                module.exit_json(changed=False, restored={}, pending={}, msg="no product schema: nothing quarantined")
            cur.execute("SELECT source_schema, source_table, count(*) FROM pgsafe.quarantine_row "
                        "WHERE run_id = %s AND restored_at IS NULL GROUP BY 1, 2", (p["run_id"],))
            pending = {qualified(r[0], r[1]): r[2] for r in cur.fetchall()}
            if module.check_mode or not pending:
                conn.rollback()
                module.exit_json(changed=bool(pending), restored={}, pending=pending)
            try:
                restored = restore_quarantine(cur, p["run_id"], p["tables"] or None)
            except TypeChangeError as exc:
                conn.rollback()
                module.fail_json(msg=str(exc), pending=pending)
        conn.commit()
    finally:
        conn.close()
    module.exit_json(changed=bool(restored), restored=restored, pending={})


if __name__ == "__main__":
    main()
