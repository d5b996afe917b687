#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup_verify: checksums, table of contents and the restore test."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup_verify
short_description: Verify a pgsafe backup (checksums, pg_restore --list, restore test) and record the verdict
description:
  - Checks the manifest's own checksum, then every file against the manifest (catches a deleted, truncated,
    changed or appended file, a file the manifest does not list, a damaged C(toc.dat) or manifest), then
    reads the table of contents with C(pg_restore --list).
  - C(pg_restore --list) reads only the table of contents, so a missing data file passes it. The restore
    test (I(checks) contains C(restore)) restores the backup into a fresh, uniquely named scratch database on
    the scratch server (I(scratch)), refuses a non-empty target, compares every table's row
    count and content hash with the manifest, and drops the scratch database. Only a restore-tested backup
    satisfies C(pgsafe_backup_guard). Schema-level and table-level backups get the restore test too.
  - Writes C(verification.json) into the backup directory and records the verdict (verified,
    restore_tested, locations) in C(pgsafe.backup) of the target database (connection options).
  - Fails (after recording the failed verdict) when the backup does not verify, naming the file or table.
  - In check mode only the checksums and the table of contents are read; nothing is written.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: partial
    description: Checksums and table of contents only (no restore test); nothing is written or recorded.
  diff_mode:
    support: none
options:
  path:
    description: Directory of the backup (C(<destination>/<backup_id>)).
    type: path
    required: true
  checks:
    description: Which checks to run; C(restore) implies the other two.
    type: list
    elements: str
    choices: [checksums, toc, restore]
    default: [checksums, toc, restore]
  scratch:
    description:
      - The scratch server of the restore test, with the same option names as this module's connection (fill
        it with C(hostvars[<host>] | pgsafe_connection)); its role needs CREATEDB, its I(login_db) is where
        CREATE/DROP DATABASE run. Required when I(checks) contains C(restore).
    type: dict
  jobs:
    description: Parallel pg_restore jobs for the restore test.
    type: int
    default: 2
  record:
    description: Record the verdict in C(pgsafe.backup) of the target database.
    type: bool
    default: true
  locations:
    description: Every place the backup is stored (recorded); default I(path).
    type: list
    elements: str
    default: []
  write:
    description: Write C(verification.json) into the backup directory.
    type: bool
    default: true
  fail_on_unverified:
    description: Fail the task when the backup does not verify.
    type: bool
    default: true
  pg_bin_dir:
    description: Directory of pg_restore; default the newest C(/usr/lib/postgresql/*/bin), then PATH.
    type: path
"""

EXAMPLES = r"""
- name: Verify and restore-test the backup on staging
  pgsafe_backup_verify:
    path: "{{ backup_result.path }}"
    scratch_login_host: "{{ hostvars['staging'].pg_host }}"
    scratch_login_port: "{{ hostvars['staging'].pg_port }}"
    scratch_login_user: "{{ hostvars['staging'].pg_user }}"
    scratch_login_password: "{{ hostvars['staging'].pg_password }}"
  no_log: false

- name: Check a copy by checksum only, without recording
  pgsafe_backup_verify:
    path: /mnt/offsite/prod-20261125T150000Z-ab12cd
    checks: [checksums]
    record: false
"""

RETURN = r"""
backup_id:
  description: The backup verified.
  returned: always
  type: str
verified:
  description: Manifest, checksums and table of contents are all good.
  returned: always
  type: bool
restore_tested:
  description: The restore test passed (row counts and content hashes match the manifest).
  returned: always
  type: bool
checks:
  description: Outcome per check (manifest, checksums, toc, restore).
  returned: always
  type: dict
problems:
  description: What failed, each naming the file or table.
  returned: always
  type: list
  elements: dict
restore_test:
  description: Scratch database, server, seconds, tables compared, pg_restore errors.
  returned: always
  type: dict
queries:
  description: The statements this module's connections ran, in order (pg_dump, pg_restore and psql are not listed).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import reported_failures
from ansible.module_utils.pgsafe_backup_exec import verify_backup
from ansible.module_utils.pgsafe_backup_records import record_backup
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            checks=dict(type="list", elements="str", choices=["checksums", "toc", "restore"],
                        default=["checksums", "toc", "restore"]),
            scratch=second_connection_option(),
            jobs=dict(type="int", default=2),
            record=dict(type="bool", default=True),
            locations=dict(type="list", elements="str", default=[]),
            write=dict(type="bool", default=True),
            fail_on_unverified=dict(type="bool", default=True),
            pg_bin_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    checks = list(p["checks"])
    if module.check_mode:
        checks = [c for c in checks if c != "restore"] or ["checksums"]
    recorded = False
    with reported_failures(module, "verification", verified=False, restore_tested=False):
        manifest, doc = verify_backup(p["path"], checks=checks, scratch_params=p["scratch"], bin_dir=p["pg_bin_dir"],
                                      jobs=p["jobs"], write=p["write"] and not module.check_mode)
        if p["record"] and not module.check_mode and manifest is not None:
            record_backup(p, manifest, doc["manifest_sha256"], p["locations"] or [p["path"]], doc)
            recorded = True
    wanted_restore = "restore" in checks
    ok = doc["verified"] and (doc["restore_tested"] or not wanted_restore)
    result = dict(changed=not module.check_mode, backup_id=doc["backup_id"], verified=doc["verified"],
                  restore_tested=doc["restore_tested"], checks=doc["checks"], problems=doc["problems"],
                  restore_test=doc["restore_test"], recorded=recorded)
    if not ok and p["fail_on_unverified"]:
        module.fail_json(msg="backup {0} at {1} does NOT verify: {2}. It is recorded as not verified; the guard will "
                             "refuse it. Take a new backup".format(doc["backup_id"], p["path"], "; ".join(
                                 pr["message"] for pr in doc["problems"][:6]) or "restore test not run"), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
