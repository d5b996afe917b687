#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup_retention: prune old backups, never the only verified one."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup_retention
short_description: Delete old backups of one destination by count and age, never the newest verified one
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
options:
  root:
    description: The destination directory (holding C(<backup_id>/) directories).
    type: path
    required: true
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
stale_tmp_removed:
  description: Temporary directories of interrupted runs removed.
  returned: always
  type: list
  elements: str
"""

import datetime
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_backup import select_retention
from ansible.module_utils.pgsafe_backup_exec import scan_destination
from ansible.module_utils.pgsafe_connection import connection_argument_spec


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            root=dict(type="path", required=True),
            keep_count=dict(type="int", default=7),
            keep_days=dict(type="float", default=14),
            stale_tmp_hours=dict(type="float", default=24),
        ),
        supports_check_mode=True,
    )
    p = module.params
    backups, temporary = scan_destination(p["root"])
    delete, keep = select_retention(backups, p["keep_count"], p["keep_days"],
                                    datetime.datetime.now(datetime.timezone.utc))
    paths = {b["backup_id"]: b["path"] for b in backups}
    stale = [t["path"] for t in temporary if time.time() - t["mtime"] > p["stale_tmp_hours"] * 3600]
    if not module.check_mode:
        for item in delete:
            shutil.rmtree(paths[item["backup_id"]])
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
    for item in delete + keep:
        item["path"] = paths[item["backup_id"]]
    report_items = [{"location": item["path"], "check": "retention: " + item["reason"], "result": "deleted"}
                    for item in delete] + [{"location": path, "check": "retention: interrupted run", "result": "removed"}
                                           for path in stale]
    module.exit_json(changed=bool(delete or stale), deleted=delete, kept=keep, stale_tmp_removed=stale,
                     root=os.path.abspath(p["root"]), report_items=report_items)


if __name__ == "__main__":
    main()
