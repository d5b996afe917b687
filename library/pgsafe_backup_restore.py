#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup_restore: restore a pgsafe backup, never over something without confirmation."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup_restore
short_description: Restore a pgsafe backup into a new database, or put tables/schemas back into the target
description:
  - Checks the backup's files against its manifest first (a damaged backup is never restored).
  - I(mode=database) restores the whole backup into I(target_database) on the server of the connection
    options; the database is created. An existing database is overwritten (dropped and re-created) only
    when I(confirm_overwrite) equals its name.
  - I(mode=objects) puts the tables or schemas in I(objects) back into the connection's database, in one
    transaction (psql --single-transaction, ON_ERROR_STOP); a missing table or schema is created with its
    data, indexes and constraints; the rows of an existing table are replaced, which requires
    I(confirm_overwrite) equal to the database name. Any error (e.g. a foreign key from a table not restored
    that still references deleted rows) rolls everything back.
  - After restoring, per-table row counts and content hashes are compared with the manifest (C(problems)).
  - Check mode returns the plan (what would be created or replaced) and changes nothing.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Returns the plan (what would be created or replaced) and changes nothing.
  diff_mode:
    support: full
    description:
      - The target before (its existing tables whose rows are replaced, or whether the database is
        overwritten) and after (every table it gets, with the backup's row count).
options:
  path:
    description: Directory of the backup.
    type: path
    required: true
  mode:
    description: C(database) (into a new database) or C(objects) (tables/schemas into the target).
    type: str
    choices: [database, objects]
    default: database
  target_database:
    description: Database to create for I(mode=database).
    type: str
  objects:
    description: Tables (C(schema.table)) or schemas (C(schema:<name>)) to restore for I(mode=objects).
    type: list
    elements: str
    default: []
  confirm_overwrite:
    description: The name of the database whose existing content may be overwritten.
    type: str
    default: ''
  jobs:
    description: Parallel pg_restore jobs (I(mode=database), directory format).
    type: int
    default: 2
  no_owner:
    description: Restore without ownership and privileges (I(mode=database)), e.g. on another server.
    type: bool
    default: false
  pg_bin_dir:
    description: Directory of pg_restore/pg_dump/psql.
    type: path
  record_restore_test_in:
    description:
      - The database the backup was taken of, with the same option names as this module's connection (fill
        it with C(hostvars[<host>] | pgsafe_connection)). With I(mode=database), a restore whose every
        table matches the manifest (rows and content hash) is recorded there, and in the backup's
        C(verification.json), as the backup's restore test; the backup must already be verified by
        checksums and table of contents. The rehearsal uses it so that its copy into staging is the prod
        backup's restore test instead of a second, identical restore.
    type: dict
  record_as_target_backup:
    description:
      - With I(mode=database) and the connection's database equal to I(target_database) (the rehearsal's
        copy), a restore whose every table matches the manifest is also recorded in the target's
        C(pgsafe.backup) as the target's own verified, restore-tested backup (marked C(restored_copy)),
        the target's content is exactly the backup's, so restoring it again is the target's way back.
        Saves the rehearsal a second dump and restore test of a copy it has just proven.
    type: bool
    default: false
  target_backup_locations:
    description: Locations of the backup (its copies) to record with I(record_as_target_backup); default I(path).
    type: list
    elements: path
    default: []
  fingerprint_label:
    description:
      - With I(mode=database), the comparison with the manifest also takes the restored database's data
        fingerprint (pgsafe_fingerprint's, every user table, its defaults) in the SAME snapshot, a table hashed
        by the manifest's record method in the same scan, and, when every table matched, stores it in the
        target's C(pgsafe.fingerprint) under this label and I(fingerprint_run_id). One read serves the restore
        test and the rehearsal's before fingerprint; empty, no fingerprint.
    type: str
    default: ''
  fingerprint_run_id:
    description: The run the fingerprint is stored with (I(fingerprint_label)).
    type: str
"""

EXAMPLES = r"""
- name: Restore the newest backup into a new database
  pgsafe_backup_restore:
    path: "{{ restore_backup_path }}"
    target_database: bazaar_vid_restored_20261125

- name: Put one table's rows back
  pgsafe_backup_restore:
    path: "{{ restore_backup_path }}"
    mode: objects
    objects: [public.bazaar-vid_exports]
    confirm_overwrite: bazaar_vid
"""

RETURN = r"""
backup_id:
  description: The backup restored.
  returned: success
  type: str
target_database:
  description: The database restored into (mode database).
  returned: mode database
  type: str
replace_rows_of:
  description: Existing tables whose rows were replaced (mode objects).
  returned: mode objects
  type: list
  elements: str
create:
  description: Tables created (mode objects).
  returned: mode objects
  type: list
  elements: str
problems:
  description: Tables whose restored rows or content hash differ from the manifest.
  returned: success
  type: list
  elements: dict
restore_test_recorded:
  description: Whether this restore was recorded as the backup's restore test (I(record_restore_test_in)).
  returned: mode database
  type: bool
recorded_as_target_backup:
  description: Whether the backup was recorded as the target's own backup (I(record_as_target_backup)).
  returned: mode database
  type: bool
fingerprint:
  description:
    - The restored database's data fingerprint (algorithm, taken_at, snapshot_xmin, settings, uuid_text, tables),
      read with the comparison (I(fingerprint_label)).
  returned: mode database, fingerprint_label given, every table matched
  type: dict
schema_fingerprint:
  description:
    - The restored database's schema fingerprint (pgsafe_snapshot's), read at the start of the comparison, in its
      snapshot (I(fingerprint_label)).
  returned: mode database, fingerprint_label given, every table matched
  type: str
fingerprint_stored_id:
  description: Id of the fingerprint's row in the target's pgsafe.fingerprint (the existing row when already stored).
  returned: mode database, fingerprint_label given, every table matched, not check mode
  type: int
queries:
  description: The statements this module's connections ran, in order (pg_dump, pg_restore and psql are not listed).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import reported_failures
from ansible.module_utils.pgsafe_backup_restore import restore_database_recorded, restore_diff, restore_objects
from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            mode=dict(type="str", default="database", choices=["database", "objects"]),
            target_database=dict(type="str"),
            objects=dict(type="list", elements="str", default=[]),
            confirm_overwrite=dict(type="str", default=""),
            jobs=dict(type="int", default=2),
            no_owner=dict(type="bool", default=False),
            pg_bin_dir=dict(type="path"),
            record_restore_test_in=second_connection_option(),
            record_as_target_backup=dict(type="bool", default=False),
            target_backup_locations=dict(type="list", elements="path", default=[]),
            fingerprint_label=dict(type="str", default=""),
            fingerprint_run_id=dict(type="str"),
        ),
        required_if=[("mode", "database", ("target_database",)), ("mode", "objects", ("objects",))],
        supports_check_mode=True,
    )
    p = module.params
    with reported_failures(module, "restore"):
        if p["mode"] == "database":
            result = restore_database_recorded(p, module.check_mode)
        else:
            result = restore_objects(p, p["path"], p["objects"], p["confirm_overwrite"], p["pg_bin_dir"],
                                     module.check_mode)
    result["diff"] = module.diff_of(*restore_diff(result))
    if result["problems"]:
        module.fail_json(msg="restored, but the content differs from the backup's manifest: " + "; ".join(
            pr["message"] for pr in result["problems"][:5]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
