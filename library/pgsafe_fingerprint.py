#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_fingerprint: per-table row counts and content hashes."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_fingerprint
short_description: Take a data fingerprint (exact row count and content hash per table)
description:
  - Reads every chosen table once, server side, inside a C(READ ONLY REPEATABLE READ) transaction with
    pinned session settings (TimeZone, DateStyle, IntervalStyle, extra_float_digits, bytea_output), and
    returns per table the exact row count and an order-independent 64-bit content hash.
  - Values are normalised before hashing (see module_utils/pgsafe_fingerprint.py for the exact canonical
    form), so a text column holding UUIDs compares equal to the uuid column it becomes, upper-case or
    braced UUID spellings equal their canonical form, and jsonb key order does not matter.
  - With I(store=true) the fingerprint is written into C(pgsafe.fingerprint) (label, run id); in check
    mode nothing is written. Taking the fingerprint itself never writes.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Takes the fingerprint (read only) and stores nothing.
  diff_mode:
    support: none
options:
  tables:
    description:
      - Tables to fingerprint, as C(schema.table) (C(public) when no schema is given; quote parts that
        contain dots). Tables of the product schemas may be named explicitly.
      - Default, every user table outside the product schemas (pgsafe, pgsafe_quarantine), system schemas
        and I(exclude_schemas).
    type: list
    elements: str
    default: []
  exclude_schemas:
    description: Schemas left out when I(tables) is empty.
    type: list
    elements: str
    default: []
  normalize:
    description:
      - Explicit per-column normalisation, C({"schema.table" {"column" uuid}}). One of C(uuid), C(jsonb),
        C(text), C(numeric), C(timestamp_utc), C(ignore).
    type: dict
    default: {}
  uuid_text:
    description:
      - C(auto) hashes every UUID-spelled value of a text-like column as its canonical uuid spelling;
        C(off) hashes text as it is.
    type: str
    choices: [auto, "off"]
    default: auto
  workers:
    description: Connections used in parallel (they share one snapshot).
    type: int
    default: 2
  label:
    description: Label stored with the fingerprint (e.g. C(before), C(after)).
    type: str
    default: adhoc
  run_id:
    description: Run id stored with the fingerprint.
    type: str
  store:
    description:
      - Write the fingerprint into C(pgsafe.fingerprint) (not in check mode). When the newest stored fingerprint
        of the same I(run_id) and I(label) has the same tables, nothing is written (C(changed=false)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Fingerprint every user table before the migration
  pgsafe_fingerprint:
    label: before
    run_id: "{{ run_context_run_id }}"
    store: true
  register: fingerprint_before

- name: Fingerprint the exports pair, treating the text ids as uuids
  pgsafe_fingerprint:
    tables: [public.bazaar-vid_exports, public.bazaar-vid_export_analytics]
    normalize:
      public.bazaar-vid_exports: {id: uuid, project_id: uuid}
"""

RETURN = r"""
tables:
  description: Per table C(schema.table) its C(rows), C(hash) (16 hex digits), C(columns) (name to type),
    C(kinds) (name to hash kind) and C(normalize) when given.
  returned: success
  type: dict
  sample: {"public.bazaar-vid_exports": {"rows": 134, "hash": "e988ac191fe0560a", "columns": {"id": "text"}}}
fingerprint:
  description: The whole fingerprint (algorithm, taken_at, snapshot_xmin, settings, uuid_text, tables).
  returned: success
  type: dict
algorithm:
  description: Canonical form and hash version.
  returned: success
  type: str
  sample: pgsafe-fp-v4
total_rows:
  description: Sum of the row counts.
  returned: success
  type: int
stored_id:
  description: Id of the row in pgsafe.fingerprint (null when not stored; the existing row when already stored).
  returned: success
  type: int
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_connection import ConnectionFailure
from ansible.module_utils.pgsafe_fingerprint import FingerprintError, fingerprint, read_only_connections, store_once
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            tables=dict(type="list", elements="str", default=[]),
            exclude_schemas=dict(type="list", elements="str", default=[]),
            normalize=dict(type="dict", default={}),
            uuid_text=dict(type="str", default="auto", choices=["auto", "off"]),
            workers=dict(type="int", default=2),
            label=dict(type="str", default="adhoc"),
            run_id=dict(type="str"),
            store=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    stored_id, changed = None, bool(p["store"])
    try:
        with read_only_connections(p) as (conn, more):
            fp = fingerprint(conn, tables=p["tables"], normalize=p["normalize"], uuid_text=p["uuid_text"],
                             exclude_schemas=p["exclude_schemas"], connect=more, workers=p["workers"])
        if p["store"] and not module.check_mode:
            stored_id, changed = store_once(p, fp, p["label"], p["run_id"])
    except (FingerprintError, ConnectionFailure) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=changed, tables=fp["tables"], fingerprint=fp, algorithm=fp["algorithm"],
                     total_rows=sum(t["rows"] for t in fp["tables"].values()), stored_id=stored_id)


if __name__ == "__main__":
    main()
