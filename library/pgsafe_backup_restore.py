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
      - Connection options (C(login_host), C(login_port), C(login_user), C(login_password), C(login_db),
        C(ssl_mode)) of the database the backup was taken of. With I(mode=database), a restore whose every
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
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_backup import BackupError, load_manifest
from ansible.module_utils.pgsafe_backup_exec import (record_backup, record_restore_test, restore_database,
                                                     restore_objects)
from ansible.module_utils.pgsafe_connection import connection_argument_spec, describe_target


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            path=dict(type="path", required=True),
            mode=dict(type="str", default="database", choices=["database", "objects"]),
            target_database=dict(type="str"),
            objects=dict(type="list", elements="str", default=[]),
            confirm_overwrite=dict(type="str", default=""),
            jobs=dict(type="int", default=2),
            no_owner=dict(type="bool", default=False),
            pg_bin_dir=dict(type="path"),
            record_restore_test_in=dict(type="dict", options=dict(
                login_host=dict(type="str", default=""), login_port=dict(type="int", default=5432),
                login_user=dict(type="str", default="postgres"), login_password=dict(type="str", default="",
                                                                                      no_log=True),
                login_db=dict(type="str", required=True), ssl_mode=dict(type="str", default="prefer"))),
            record_as_target_backup=dict(type="bool", default=False),
            target_backup_locations=dict(type="list", elements="path", default=[]),
        ),
        required_if=[("mode", "database", ("target_database",)), ("mode", "objects", ("objects",))],
        supports_check_mode=True,
    )
    p = module.params
    started = time.monotonic()
    try:
        if p["mode"] == "database":
            result = restore_database(p, p["path"], p["target_database"], p["confirm_overwrite"], p["pg_bin_dir"],
                                      p["jobs"], p["no_owner"], module.check_mode)
            result["restore_test_recorded"] = result["recorded_as_target_backup"] = False
            evidence = {"database": p["target_database"], "server": describe_target(p, p["target_database"]),
                        "tables_compared": result["tables"], "seconds": round(time.monotonic() - started, 3),
                        "how": "whole restore compared with the manifest (pgsafe_backup_restore)"}
            if p["record_restore_test_in"] and not module.check_mode and not result["problems"]:
                record_restore_test(p["record_restore_test_in"], p["path"], evidence)
                result["restore_test_recorded"] = True
            if p["record_as_target_backup"] and not module.check_mode and not result["problems"]:
                manifest, manifest_sha = load_manifest(p["path"])
                checks = {"checksums": "ok", "restore": "ok"}
                record_backup(dict(p, login_db=p["target_database"]), manifest, manifest_sha,
                              p["target_backup_locations"] or [p["path"]],
                              {"verified": True, "restore_tested": True, "checks": checks, "problems": [],
                               "restore_test": evidence}, restored_copy=evidence)
                result["recorded_as_target_backup"] = True
        else:
            result = restore_objects(p, p["path"], p["objects"], p["confirm_overwrite"], p["pg_bin_dir"],
                                     module.check_mode)
    except OSError as exc:
        module.fail_json(msg="{0} failed: {1}; nothing was recorded as verified".format("restore", exc), failure_kind="io")
    except BackupError as exc:
        module.fail_json(msg=str(exc), failure_kind=exc.kind)
    except Exception as exc:  # a database error: reported without a traceback, naming nothing secret
        module.fail_json(msg="{0} failed: {1}".format("restore", " ".join(str(exc).split())), failure_kind="database")
    if result["problems"]:
        module.fail_json(msg="restored, but the content differs from the backup's manifest: " + "; ".join(
            pr["message"] for pr in result["problems"][:5]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
