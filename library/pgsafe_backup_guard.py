#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup_guard: no destructive step without a verified, fresh backup."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup_guard
short_description: Require a verified, restore-tested, recent backup covering the objects a step touches
description:
  - Looks in C(pgsafe.backup) of the target database for a backup that covers every object in I(covers)
    (a whole-database backup covers everything; a schema backup covers the schema's tables), was verified
    AND restore-tested, and was taken within I(max_age_minutes) by the database's clock.
  - Records copied in by restoring another database are ignored (they carry the other database's oid).
  - With I(backup_root) the backup's files must still be present and match the manifest's checksums in at
    least one of its recorded locations (or under I(backup_root)).
  - Fails before anything else when there is none, saying which backup is missing, of what, and the command
    that takes it. In check mode it reports the same verdict without failing (a backup taken earlier in the
    same real run would not exist during a check run).
  - Read-only, it opens a READ ONLY transaction and writes nothing.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Read only in any mode; in check mode a missing backup is a warning, not a failure.
  diff_mode:
    support: none
options:
  source:
    description:
      - The database whose backups are searched, when it is not this task's own (the rehearsal looks up its
        source's backup), with the same option names as this module's connection; fill it with
        C(hostvars[<host>] | pgsafe_connection). Default this module's connection.
    type: dict
  covers:
    description: Objects the destructive step touches - C(database), C(schema:<name>) or C(schema.table).
    type: list
    elements: str
    required: true
  max_age_minutes:
    description: Newest acceptable age of the backup, in minutes.
    type: int
    default: 180
  backup_root:
    description: Also require the backup's files to verify by checksum (in a recorded location or under this root).
    type: path
  require_restore_tested:
    description:
      - Require a backup that was restore-tested. Set it to C(false) only when the next step restores the
        backup and compares it with its manifest (the rehearsal's copy into staging), which is then recorded
        as its restore test.
    type: bool
    default: true
  inventory:
    description: Inventory path for the command in the failure message.
    type: str
    default: inventories/<env>
  inventory_host:
    description: Inventory host for the command in the failure message.
    type: str
    default: <host>
"""

EXAMPLES = r"""
- name: Refuse to change the exports tables without a fresh verified backup of them
  pgsafe_backup_guard:
    covers: [public.bazaar-vid_exports, public.bazaar-vid_export_analytics]
    max_age_minutes: 60
    inventory: "{{ inventory_dir }}"
    inventory_host: "{{ inventory_hostname }}"
"""

RETURN = r"""
found:
  description: A covering backup exists (false only in check mode; otherwise the task fails).
  returned: always
  type: bool
backup_id:
  description: The newest covering backup.
  returned: when found
  type: str
taken_at:
  description: When it was taken (ISO 8601).
  returned: when found
  type: str
age_minutes:
  description: Its age by the database's clock.
  returned: when found
  type: float
location:
  description: Where its files are (the first recorded location that verified, or the first recorded one).
  returned: when found
  type: str
locations:
  description: Every recorded location.
  returned: when found
  type: list
  elements: str
covers:
  description: What that backup covers.
  returned: when found
  type: list
  elements: dict
msg:
  description: The refusal, when there is no covering backup.
  returned: when not found
  type: str
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import BackupError, find_usable_backup, guard_failure_message
from ansible.module_utils.pgsafe_backup_records import fetch_backup_records
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            covers=dict(type="list", elements="str", required=True),
            max_age_minutes=dict(type="int", default=180),
            backup_root=dict(type="path"),
            require_restore_tested=dict(type="bool", default=True),
            inventory=dict(type="str", default="inventories/<env>"),
            inventory_host=dict(type="str", default="<host>"),
            source=second_connection_option(),
        ),
        supports_check_mode=True,
    )
    p = module.params
    conn = module.connect(p["source"], read_only=True)
    try:
        with conn.cursor() as cur:
            records, now = fetch_backup_records(cur)
            cur.execute("SELECT current_database()")
            database = cur.fetchone()[0]
        conn.rollback()
    finally:
        conn.close()
    try:
        record, decision = find_usable_backup(records, p["covers"], p["max_age_minutes"], now,
                                              p["require_restore_tested"], p["backup_root"])
    except BackupError as exc:
        module.fail_json(msg=str(exc), found=False)
    if record is None:
        msg = guard_failure_message(database, p["covers"], p["max_age_minutes"], decision, p["inventory"],
                                    p["inventory_host"])
        if module.check_mode:
            module.exit_json(changed=False, found=False, msg=msg, warnings=[msg])
        module.fail_json(msg=msg, found=False)
    locations = list(record.get("locations") or [])
    age = (now - record["taken_at"]).total_seconds() / 60.0
    module.exit_json(changed=False, found=True, backup_id=record["backup_id"], taken_at=record["taken_at"].isoformat(),
                     age_minutes=round(age, 1), location=record.get("verified_location") or (locations or [None])[0],
                     locations=locations, covers=record["covers"])


if __name__ == "__main__":
    main()
