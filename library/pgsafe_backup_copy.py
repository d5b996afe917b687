#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_backup_copy: a checksum-verified copy of a backup, and its record."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_backup_copy
short_description: Copy a pgsafe backup to another directory, verified by checksum, and record the location
description:
  - Copies C(<src>) to C(<destination>/.tmp-<backup_id>/), checks every file against the manifest, then
    renames it to C(<destination>/<backup_id>/). An existing identical copy is left alone (changed=false); an
    existing different one is an error.
  - Adds the copy (and I(extra_locations), e.g. a remote copy made with ansible.builtin.copy and verified
    there) to the backup's C(locations) in C(pgsafe.backup) of the target database when I(record) is set.
  - In check mode nothing is copied or recorded.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Nothing is copied or recorded.
  diff_mode:
    support: none
options:
  src:
    description: The complete backup directory to copy.
    type: path
    required: true
  destination:
    description: Directory receiving C(<backup_id>/); omit to only record I(extra_locations).
    type: path
  extra_locations:
    description: Locations verified elsewhere (e.g. C(host:/dir/<backup_id>)) to record.
    type: list
    elements: str
    default: []
  record:
    description: Record the locations in C(pgsafe.backup) of the target database.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Second local copy
  pgsafe_backup_copy:
    src: "{{ backup_result.path }}"
    destination: /var/backups/pgsafe-mirror/prod
"""

RETURN = r"""
path:
  description: The copy.
  returned: when destination is given
  type: str
backup_id:
  description: The backup copied.
  returned: always
  type: str
report_item:
  description: One row for the backup role's report (location, check, result).
  returned: success
  type: dict
locations:
  description: Locations recorded by this call.
  returned: always
  type: list
  elements: str
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_backup import load_manifest, reported_failures
from ansible.module_utils.pgsafe_backup_exec import copy_backup
from ansible.module_utils.pgsafe_backup_records import add_backup_locations
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            destination=dict(type="path"),
            extra_locations=dict(type="list", elements="str", default=[]),
            record=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    with reported_failures(module, "copy", database_errors=False):
        manifest = load_manifest(p["src"])[0]
        if module.check_mode:
            module.exit_json(changed=True, backup_id=manifest["backup_id"], locations=[])
        locations, changed, path = list(p["extra_locations"]), False, None
        if p["destination"]:
            result = copy_backup(p["src"], p["destination"])
            path, changed = result["path"], result["changed"]
            locations.insert(0, path)
        if p["record"] and locations:
            add_backup_locations(p, manifest["backup_id"], locations)
            changed = True
    module.exit_json(changed=changed, backup_id=manifest["backup_id"], path=path, locations=locations,
                     report_item={"location": ", ".join(locations), "check": "copy, sha256 of every file checked",
                                  "result": "ok" if changed else "already there, identical"})


if __name__ == "__main__":
    main()
