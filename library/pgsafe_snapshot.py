#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_snapshot: a versioned JSON snapshot of a live database's schema."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_snapshot
short_description: Snapshot the schema of a live PostgreSQL database
description:
  - Reads the catalog of the target database in a READ ONLY transaction (always, not only in check
    mode) with one query per object kind - schemas, tables, columns, constraints, indexes, views and
    materialized views, functions and procedures, triggers, sequences, extensions, enums, domains and
    row-level security policies, with the comments of each - and returns a versioned, JSON-serialisable
    document (C(format_version)) plus its schema fingerprint.
  - Dropped columns never appear; partitions are tables with C(partition_of) and C(partition_bound);
    indexes and constraints cloned onto partitions are left to their parent; objects that belong to an
    extension are left out (the extension itself is listed).
  - The schema fingerprint is a sha256 of a canonical form that leaves out the product's own schemas
    (C(pgsafe), C(pgsafe_quarantine)) and volatile data (row estimates, sizes, time taken).
  - With I(dest), the snapshot is also written to a JSON file on the host running the task (not in check
    mode); C(changed) is true only when that file's content changed.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Reads the schema; writes neither I(dest) nor the product schema.
  diff_mode:
    support: partial
    description:
      - When I(dest) changes, the snapshot written (canonical form, first 20,000 characters) as after;
        nothing as before.
options:
  dest:
    description:
      - File to write the snapshot to (JSON). Parent directories must exist.
      - A snapshot written here can be compared later with M(pgsafe_schema_diff) (I(left_source=snapshot)).
    type: path
  ignore_schemas:
    description:
      - Schemas to leave out, on top of the product's own schemas and the system schemas (always left out).
    type: list
    elements: str
    default: []
  ignore_patterns:
    description:
      - Shell-style patterns (fnmatch, case-sensitive) on the unquoted C(schema.name) of objects to leave
        out, e.g. C(public.tmp_*). A table's columns, constraints, indexes, triggers and policies match
        as C(schema.table.name) and go with their table.
    type: list
    elements: str
    default: []
  return_snapshot:
    description: Return the whole snapshot in the result (set false for big schemas when I(dest) is enough).
    type: bool
    default: true
  store:
    description:
      - Also keep the snapshot in the target's product schema (C(pgsafe.schema_snapshot)) under I(run_id) and
        I(label), where a later job (validation in another AWX job) finds it. Not in check mode.
    type: bool
    default: false
  run_id:
    description: Run the stored snapshot belongs to (required with I(store)).
    type: str
  label:
    description: Label of the stored snapshot (C(before), C(after)).
    type: str
    default: before
"""

EXAMPLES = r"""
- name: Snapshot prod's schema into the run's artifacts
  pgsafe_snapshot:
    dest: "{{ run_context_run_dir }}/snapshot.json"
    ignore_patterns:
      - "public.tmp_*"
  register: drift_report_snapshot

- name: Remember the fingerprint for the prod gate
  ansible.builtin.set_fact:
    my_schema_fingerprint: "{{ drift_report_snapshot.fingerprint }}"
"""

RETURN = r"""
fingerprint:
  description: Schema fingerprint (sha256 hex of the canonical snapshot, product schemas left out).
  returned: success
  type: str
  sample: 1dcac8eb905a746f9e4bd977c11040e98e623dbe7871f4d664a175fa8f5fa1ef
format_version:
  description: Version of the snapshot document format.
  returned: success
  type: int
  sample: 1
counts:
  description: Number of objects per kind (and of columns).
  returned: success
  type: dict
  sample: {tables: 16, columns: 142, constraints: 37, indexes: 35, functions: 3}
snapshot:
  description: The snapshot document (keys of each kind are quoted qualified names).
  returned: when return_snapshot is true
  type: dict
dest:
  description: Where the snapshot was written.
  returned: when dest is set
  type: str
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

import json
import os
import tempfile

from ansible.module_utils.pgsafe_connection import ConnectionFailure
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS
from ansible.module_utils.pgsafe_snapshot import (DEFAULT_IGNORE_SCHEMAS, FORMAT_VERSION, canonical, dumps,
                                                  live_snapshot, schema_fingerprint, snapshot_counts)


def _same_schema_on_disk(path, fingerprint):
    try:
        with open(path, encoding="utf-8") as handle:
            return schema_fingerprint(json.load(handle)) == fingerprint
    except (OSError, ValueError, KeyError):
        return False


def _store(module, params, snap, fingerprint):
    from ansible.module_utils.pgsafe_connection import connect
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema, store_schema_snapshot

    try:
        conn = connect(params)
        try:
            with conn.cursor() as cur:
                ensure_meta_schema(cur)
                stored = store_schema_snapshot(cur, dumps(snap), fingerprint, params["run_id"], params["label"])
            conn.commit()
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - a connection or privilege error, named with the fix
        module.fail_json(msg="cannot keep the schema snapshot in pgsafe.schema_snapshot: {0}. The login needs "
                             "INSERT on the product schema (or run without store)".format(" ".join(str(exc).split())))
    return stored


def main():
    module = PgsafeModule(
        argument_spec=dict(
            dest=dict(type="path"),
            ignore_schemas=dict(type="list", elements="str", default=[]),
            ignore_patterns=dict(type="list", elements="str", default=[]),
            return_snapshot=dict(type="bool", default=True),
            store=dict(type="bool", default=False),
            run_id=dict(type="str"),
            label=dict(type="str", default="before"),
        ),
        required_if=[("store", True, ["run_id"])],
        supports_check_mode=True,
    )
    params = module.params
    ignore_schemas = tuple(DEFAULT_IGNORE_SCHEMAS) + tuple(s for s in params["ignore_schemas"] if s not in PRODUCT_SCHEMAS)
    try:
        snap = live_snapshot(params, ignore_schemas, params["ignore_patterns"])
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    except Exception as exc:  # noqa: BLE001 - report any catalog error with the target named
        module.fail_json(msg="cannot snapshot the schema of {0}: {1}".format(params["login_db"], exc))
    fingerprint = schema_fingerprint(snap)
    result = dict(changed=False, fingerprint=fingerprint, format_version=FORMAT_VERSION, counts=snapshot_counts(snap))
    dest = params["dest"]
    if dest:
        result["dest"] = dest
        # A file holding the same schema is left alone (idempotent: only meta/row estimates would change).
        if not _same_schema_on_disk(dest, fingerprint):
            result["changed"] = True
            if not module.check_mode:
                directory = os.path.dirname(os.path.abspath(dest))
                try:
                    fd, tmp = tempfile.mkstemp(prefix=".snapshot-", dir=directory)
                    with os.fdopen(fd, "w", encoding="utf-8") as handle:
                        handle.write(dumps(snap))
                    os.chmod(tmp, 0o640)
                    os.replace(tmp, dest)
                except OSError as exc:
                    module.fail_json(msg="cannot write the snapshot to {0}: {1}. Create the directory or choose "
                                         "another dest".format(dest, exc.strerror))
    if params["store"] and not module.check_mode:
        result["stored_id"] = _store(module, params, snap, fingerprint)
        result["changed"] = True
    if params["return_snapshot"]:
        result["snapshot"] = snap
    if result["changed"]:
        result["diff"] = module.diff_of("", json.dumps(canonical(snap), indent=1, sort_keys=True)[:20000])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
