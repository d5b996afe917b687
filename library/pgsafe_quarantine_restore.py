#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_quarantine_restore: put quarantined rows back, hash-identical."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_quarantine_restore
short_description: Restore the rows a run set aside in pgsafe.quarantine_row
version_added: "0.1.0"
author: pgsafe maintainers
description:
  - Re-inserts every not yet restored row quarantined by C(run_id) (parents before children, the reverse of
    their removal), in one transaction, and checks that each restored row hashes (sha256 of its jsonb) exactly like
    the quarantined copy; any difference or error rolls everything back.
  - "Rows rejected by a foreign key (e.g. orphans put back while the new FK exists) make it fail with the fix:
    run the change's rollback SQL first, or restore the missing parent."
  - Marks restored rows with C(restored_at); a second run restores nothing (C(changed=false)).
  - Check mode counts what would be restored, in a READ ONLY transaction.
  - Diff mode shows, per table, the rows in quarantine before and after (and how many went back).
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
attributes:
  check_mode:
    support: full
    description: Counts what would be restored, in a READ ONLY transaction.
  diff_mode:
    support: full
    description: Rows in quarantine per table before, and after the restore (with how many were restored).
"""

EXAMPLES = r"""
- name: Put back the rows the exports fix set aside
  pgsafe_quarantine_restore:
    run_id: "{{ rollback_run_id }}"
"""

RETURN = r"""
queries:
  description: Queries run - the pending count, then each row re-inserted and marked restored.
  returned: always
  type: list
  elements: str
restored:
  description: Rows restored per table.
  returned: always
  type: dict
pending:
  description: Rows still quarantined for the run per table (in check mode, what would be restored).
  returned: always
  type: dict
diff:
  description: Rows in quarantine per table before and after (text, one line per table).
  returned: diff mode
  type: dict
"""

from ansible.module_utils.pgsafe_meta import meta_schema_installed
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_quarantine import QuarantineError, pending_rows, restore_diff, restore_rows


def _restore(module, conn):
    """(pending before, restored or None when nothing ran: check mode, or nothing pending)."""
    p = module.params
    with conn.cursor() as cur:
        if not meta_schema_installed(cur):
            module.exit_json(changed=False, restored={}, pending={}, msg="no product schema: nothing quarantined")
        pending = pending_rows(cur, p["run_id"])
        if module.check_mode or not pending:
            conn.rollback()
            return pending, None
        try:
            restored = restore_rows(cur, p["run_id"], p["tables"] or None)
        except QuarantineError as exc:
            conn.rollback()
            module.fail_json(msg=str(exc), pending=pending)
    conn.commit()
    return pending, restored


def main():
    module = PgsafeModule(argument_spec=dict(run_id=dict(type="str", required=True),
                                             tables=dict(type="list", elements="str", default=[])),
                          supports_check_mode=True)
    conn = module.connect(read_only=module.check_mode)
    try:
        pending, restored = _restore(module, conn)
    finally:
        conn.close()
    if restored is None:  # check mode (every pending row would go back), or nothing pending
        module.exit_json(changed=bool(pending), restored={}, pending=pending,
                         diff=module.diff_of(*restore_diff(pending, pending)))
    module.exit_json(changed=bool(restored), restored=restored, pending={},
                     diff=module.diff_of(*restore_diff(pending, restored)))


if __name__ == "__main__":
    main()
