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
  engine:
    description:
      - C(pg_dump) - the logical backups above guard the step.
      - C(pgbackrest) - a recorded pgBackRest backup of I(pgbackrest)'s stanza must also guard it - verified,
        restore-tested, within I(max_age_minutes), with an archived PITR target, and whose repository
        C(pgbackrest verify) finds intact now (a damaged file is named in the refusal); the tables in I(covers)
        are then guarded by targeted logical backups, so no whole-database dump is needed (with I(covers)
        C(database) the physical backup alone guards).
    type: str
    choices: [pg_dump, pgbackrest]
    default: pg_dump
  pgbackrest:
    description: With I(engine=pgbackrest) - C(stanza), C(base_dir) and C(run_as), as given to pgsafe_pgbackrest.
    type: dict
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
pitr:
  description: With I(engine=pgbackrest), the physical backup (C(backup_id), C(label), C(stanza), C(repo)) and its
    PITR target (C(lsn), C(time)) - the way back to just before the run (docs/pitr.md).
  returned: when found with engine=pgbackrest
  type: dict
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

from ansible.module_utils.pgsafe_backup import BackupError, find_usable_backup, guard_failure_message, parse_covers
from ansible.module_utils.pgsafe_backup_records import fetch_backup_records
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_pgbackrest import is_physical
from ansible.module_utils.pgsafe_pgbackrest_run import guard_physical


def main():
    module = PgsafeModule(
        argument_spec=dict(
            covers=dict(type="list", elements="str", required=True),
            max_age_minutes=dict(type="int", default=180),
            backup_root=dict(type="path"),
            require_restore_tested=dict(type="bool", default=True),
            engine=dict(type="str", choices=["pg_dump", "pgbackrest"], default="pg_dump"),
            pgbackrest=dict(type="dict"),
            inventory=dict(type="str", default="inventories/<env>"),
            inventory_host=dict(type="str", default="<host>"),
            source=second_connection_option(),
        ),
        required_if=[("engine", "pgbackrest", ("pgbackrest",))],
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
    pitr = physical_guard(module, records, now, database) if p["engine"] == "pgbackrest" else None
    try:
        if pitr and parse_covers(p["covers"]) == [{"type": "database"}]:  # the physical backup alone guards
            record, decision = [r for r in records if r["backup_id"] == pitr["backup_id"]][0], None
        else:  # tables: the targeted logical backups (a physical backup has no files to check by checksum)
            record, decision = find_usable_backup([r for r in records if not is_physical(r)], p["covers"],
                                                  p["max_age_minutes"], now, p["require_restore_tested"],
                                                  p["backup_root"])
    except BackupError as exc:
        module.fail_json(msg=str(exc), found=False)
    if record is None:
        msg = guard_failure_message(database, p["covers"], p["max_age_minutes"], decision, p["inventory"],
                                    p["inventory_host"])
        if pitr:
            msg += (" With backup_engine=pgbackrest the whole-database backup is physical: each step takes its "
                    "targeted dump (set schema_fix_take_backup: true for the type change; docs/pitr.md).")
        if module.check_mode:
            module.exit_json(changed=False, found=False, msg=msg, warnings=[msg])
        module.fail_json(msg=msg, found=False)
    locations = list(record.get("locations") or [])
    age = (now - record["taken_at"]).total_seconds() / 60.0
    module.exit_json(changed=False, found=True, backup_id=record["backup_id"], taken_at=record["taken_at"].isoformat(),
                     age_minutes=round(age, 1), location=record.get("verified_location") or (locations or [None])[0],
                     locations=locations, covers=record["covers"], pitr=pitr)


def physical_guard(module, records, now, database):
    """engine=pgbackrest: the physical backup that guards the run, or the refusal (fails, or warns in check mode)."""
    p = module.params
    record, refusal = guard_physical(records, now, database, p["max_age_minutes"], p["pgbackrest"], p["inventory"],
                                     p["inventory_host"])
    if record is None:
        if module.check_mode:
            module.exit_json(changed=False, found=False, msg=refusal, warnings=[refusal])
        module.fail_json(msg=refusal, found=False)
    info = record["details"]["pgbackrest"]
    return {"backup_id": record["backup_id"], "label": info["label"], "stanza": info["stanza"], "repo": info["repo"],
            "lsn": info["pitr_target"]["lsn"], "time": info["pitr_target"]["time"],
            "verified_now": record["verify_now"]["status"]}


if __name__ == "__main__":
    main()
