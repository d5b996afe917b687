#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup_retention: prune old backups, never the only verified one."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup_retention
short_description: Delete old backups of destinations by count and age, never the newest verified one
description:
  - Keeps a backup when it is among the newest I(keep_count) or younger than I(keep_days); deletes the rest.
  - The newest verified and restore-tested backup (by its C(verification.json)) is always kept, so retention
    can never delete the only verified copy. Directories without a valid manifest are never touched.
  - Temporary directories (C(.tmp-*)) left by killed runs are removed once older than I(stale_tmp_hours).
  - Needs no database connection (runs on the host holding the destination). Check mode reports only.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Reports what would be deleted and kept; deletes nothing.
  diff_mode:
    support: full
    description: Per destination, the backups before (every backup found) and after (the ones kept).
options:
  root:
    description: The destination directory (holding C(<backup_id>/) directories).
    type: path
  roots:
    description:
      - Several destination directories, each pruned on its own (as if the module ran once per root);
        one of I(root) or I(roots) is required.
    type: list
    elements: path
  keep_count:
    description: Keep the newest N backups.
    type: int
    default: 7
  keep_days:
    description: Keep backups younger than N days.
    type: float
    default: 14
  stale_tmp_hours:
    description: Remove temporary directories older than this many hours.
    type: float
    default: 24
"""

EXAMPLES = r"""
- name: Keep a week of backups
  pgsafe_backup_retention:
    root: /var/backups/pgsafe/prod
    keep_count: 7
    keep_days: 7

- name: The same rule on every local destination, in one run
  pgsafe_backup_retention:
    roots: [/var/backups/pgsafe/prod, /mnt/mirror/pgsafe/prod]
"""

RETURN = r"""
deleted:
  description: Backups deleted (would be, in check mode), with the reason.
  returned: always
  type: list
  elements: dict
kept:
  description: Backups kept, with the reason.
  returned: always
  type: list
  elements: dict
report_items:
  description: Rows for the backup role's report (location, check, result).
  returned: always
  type: list
  elements: dict
roots:
  description: The destinations pruned (absolute paths).
  returned: always
  type: list
  elements: str
stale_tmp_removed:
  description: Temporary directories of interrupted runs removed.
  returned: always
  type: list
  elements: str
queries:
  description: Always empty (retention opens no database connection).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.pgsafe_backup_records import prune, retention_diff
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            root=dict(type="path"),
            roots=dict(type="list", elements="path"),
            keep_count=dict(type="int", default=7),
            keep_days=dict(type="float", default=14),
            stale_tmp_hours=dict(type="float", default=24),
        ),
        required_one_of=[("root", "roots")],
        mutually_exclusive=[("root", "roots")],
        supports_check_mode=True,
    )
    p = module.params
    roots = [p["root"]] if p["root"] else list(dict.fromkeys(p["roots"]))
    deleted, kept, stale, report_items = [], [], [], []
    for root in roots:
        d, k, s, r = prune(root, p["keep_count"], p["keep_days"], p["stale_tmp_hours"], module.check_mode)
        deleted += d
        kept += k
        stale += s
        report_items += r
    module.exit_json(changed=bool(deleted or stale), deleted=deleted, kept=kept, stale_tmp_removed=stale,
                     root=os.path.abspath(roots[0]) if p["root"] else None,
                     roots=[os.path.abspath(r) for r in roots], report_items=report_items,
                     diff=module.diff_of(*retention_diff(deleted, kept)))


if __name__ == "__main__":
    main()
