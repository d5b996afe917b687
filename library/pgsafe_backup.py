#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup: a complete, manifested logical backup of a target database."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup
short_description: Take a logical backup (pg_dump) with a manifest, written atomically
description:
  - Dumps the whole database, or named tables/schemas, with C(pg_dump) in directory format (parallel
    jobs) or custom format, into C(<destination>/.tmp-<backup_id>/), writes C(manifest.json) (what it
    covers, server version, who/when/why, the size and sha256 of every file, and per-table row counts and
    content hashes taken in the same snapshot as the dump via C(pg_export_snapshot) and C(--snapshot)),
    then renames the directory to C(<destination>/<backup_id>/). A killed or failed dump never leaves a
    directory that looks like a backup; the temporary directory is removed on failure.
  - Refuses before dumping when a table has row-level security the login does not bypass, when the login
    cannot read a table, when a named object does not exist, or when the destination has less free space
    than the estimated size (the message gives the numbers).
  - Detects the documented abort of a parallel dump when another session requests an exclusive lock, and
    reports it as "no backup".
  - Dumps roles and tablespaces (C(pg_dumpall --globals-only)) for whole-database backups when the server
    permits it; on hosted services that do not, the result says so (C(globals.status=unavailable)).
  - Records the backup in C(pgsafe.backup) of the target database as NOT verified; C(pgsafe_backup_verify)
    marks it verified after the restore test.
  - Passwords reach pg_dump through a 0600 passfile, never the command line or PGPASSWORD.
  - In check mode nothing is dumped or written; the module checks privileges, row security and space
    inside a READ ONLY transaction and returns the plan.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description:
      - Nothing is dumped or written; privileges, row security and free space are checked in a READ ONLY
        transaction and the plan is returned.
  diff_mode:
    support: none
options:
  destination:
    description: Directory (on the host running the task) that receives C(<backup_id>/).
    type: path
    required: true
  covers:
    description:
      - What to back up. C(database) (the default), C(schema:<name>) or C(schema.table) (quote names that
        contain dots, e.g. C("odd.schema"."t")). One backup covers schemas or tables, not both.
    type: list
    elements: str
    default: [database]
  backup_id:
    description: Identifier (directory name); generated as C(<database>-<UTC stamp>-<random>) when omitted.
    type: str
  format:
    description: C(directory) (parallel, with I(jobs)) or C(custom).
    type: str
    choices: [directory, custom]
    default: directory
  jobs:
    description: Parallel pg_dump jobs (directory format).
    type: int
    default: 2
  compression:
    description:
      - gzip level of pg_dump (C(-Z), 0-9). The default 1 is measured at 2.3 times the speed of pg_dump's
        own default (level 6) for a file about 5% larger (Sprint 90 fixture at scale 300, 367 MB,
        2.2 s and 115 MB against 5.0 s and 109 MB); 0 writes uncompressed files (fastest, about 2.4 times
        bigger). Recorded in the manifest.
    type: int
    default: 1
  reason:
    description: Why the backup is taken (recorded in the manifest).
    type: str
    default: ''
  operator:
    description: Who takes it (recorded in the manifest); defaults to the login role.
    type: str
    default: ''
  run_id:
    description: The pgsafe run that takes it.
    type: str
  globals:
    description: Also dump roles and tablespaces (whole-database backups only).
    type: bool
    default: true
  space_factor:
    description:
      - Free space required at the destination, as a multiple of the tables' on-disk size (plus 16 MB).
        C(0) disables the check.
    type: float
    default: 1.0
  lock_timeout:
    description: How long to wait for the tables' ACCESS SHARE locks (and pg_dump's C(--lock-wait-timeout)).
    type: str
    default: 60s
  record:
    description: Record the (not yet verified) backup in C(pgsafe.backup) of the target database.
    type: bool
    default: true
  pg_bin_dir:
    description: Directory of pg_dump/pg_dumpall; default the newest C(/usr/lib/postgresql/*/bin), then PATH.
    type: path
"""

EXAMPLES = r"""
- name: Back up the whole database
  pgsafe_backup:
    destination: "{{ playbook_dir }}/../backups/prod"
    reason: before Sprint 90

- name: Back up the two tables a type change rewrites
  pgsafe_backup:
    destination: /var/backups/pgsafe/prod
    covers: [public.bazaar-vid_exports, public.bazaar-vid_export_analytics]
    format: custom
"""

RETURN = r"""
backup_id:
  description: Identifier of the backup (its directory name).
  returned: success
  type: str
path:
  description: Directory of the complete backup.
  returned: success, not in check mode
  type: str
taken_at:
  description: Snapshot time of the dump (UTC, ISO 8601).
  returned: success, not in check mode
  type: str
manifest_sha256:
  description: sha256 of manifest.json.
  returned: success, not in check mode
  type: str
total_size:
  description: Bytes of the backup's files.
  returned: success, not in check mode
  type: int
tables:
  description: Tables counted and hashed in the manifest (number; the plan's list in check mode).
  returned: success
  type: raw
globals:
  description: Whether roles/tablespaces were dumped (status dumped, dumped without role passwords, unavailable, not requested).
  returned: success, not in check mode
  type: dict
estimate_bytes:
  description: Estimated size (sum of the tables' on-disk size).
  returned: always
  type: int
free_bytes:
  description: Free space at the destination.
  returned: always
  type: int
failure_kind:
  description: On failure, the class of failure (lock_conflict, disk_space, disk_full, rls, permission, unreachable, killed, ...).
  returned: failure
  type: str
queries:
  description: The statements this module's connections ran, in order (pg_dump, pg_restore and psql are not listed).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import reported_failures
from ansible.module_utils.pgsafe_backup_exec import plan_backup, take_backup
from ansible.module_utils.pgsafe_backup_records import record_backup
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            destination=dict(type="path", required=True),
            covers=dict(type="list", elements="str", default=["database"]),
            backup_id=dict(type="str"),
            format=dict(type="str", default="directory", choices=["directory", "custom"]),
            jobs=dict(type="int", default=2),
            compression=dict(type="int", default=1),
            reason=dict(type="str", default=""),
            operator=dict(type="str", default=""),
            run_id=dict(type="str"),
            globals=dict(type="bool", default=True),
            space_factor=dict(type="float", default=1.0),
            lock_timeout=dict(type="str", default="60s"),
            record=dict(type="bool", default=True),
            pg_bin_dir=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        with reported_failures(module, "backup"):
            plan = plan_backup(p, p["covers"], p["destination"], p["space_factor"])
        if not plan["space_ok"]:
            module.fail_json(msg="cannot back up: " + plan["space_message"], failure_kind="disk_space",
                             estimate_bytes=plan["estimate_bytes"], free_bytes=plan["free_bytes"])
        module.exit_json(changed=True, backup_id=p["backup_id"] or "(generated at run time)",
                         tables=plan["tables"], estimate_bytes=plan["estimate_bytes"],
                         free_bytes=plan["free_bytes"], covers=plan["covers"])
    with reported_failures(module, "backup"):
        result = take_backup(p, p["destination"], p["covers"], backup_id=p["backup_id"], fmt=p["format"],
                             jobs=p["jobs"], compression=p["compression"], reason=p["reason"],
                             operator=p["operator"], run_id=p["run_id"],
                             bin_dir=p["pg_bin_dir"], space_factor=p["space_factor"], include_globals=p["globals"],
                             lock_timeout=p["lock_timeout"])
        if p["record"]:
            record_backup(p, result["manifest"], result["manifest_sha256"], [result["path"]])
    manifest = result.pop("manifest")
    module.exit_json(changed=True, covers=manifest["covers"], **result)


if __name__ == "__main__":
    main()
