#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_schema_diff: compare two schemas and classify the hazard of every difference."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_schema_diff
short_description: Compare two PostgreSQL schemas (live, snapshot file or DDL file) and classify every difference
description:
  - Compares a I(left) schema (the database that would be changed) with a I(right) schema (the state wanted,
    e.g. what the application code expects). Each side is one of
    C(live) (a database, read in a READ ONLY transaction),
    C(snapshot) (a file written by M(pgsafe_snapshot)), or
    C(ddl) (a SQL file loaded into a throwaway, uniquely named database on the scratch server, created from
    template0 and dropped afterwards).
  - Every difference carries its object (quoted qualified name), both sides, a severity (blocking, warning,
    info) and the hazard of making left look like right (table rewrite, full scan, lock level, data loss,
    a cast that can fail, and a note saying how to do it safely).
  - Column-order differences are returned apart (C(column_order), informational, explained with the cost of a
    rebuild). Comments are compared on every object kind.
  - The product's own schemas (C(pgsafe), C(pgsafe_quarantine)) are always ignored.
  - Never changes a target database. With C(ddl) sources a scratch database is created and dropped on the
    scratch server, also in check mode (it is never a target). C(changed) is always false.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description:
      - Reads only; a C(ddl) side is still loaded into a throwaway database on the scratch server (never a
        target).
  diff_mode:
    support: none
options:
  left_source:
    description: Where the left schema comes from.
    type: str
    choices: [live, snapshot, ddl]
    default: live
  left_path:
    description: Snapshot file (I(left_source=snapshot)) or SQL file (I(left_source=ddl)).
    type: path
  left_connection:
    description:
      - For I(left_source=live), the database to read when it is not the module's own, with the same option
        names as this module's connection; fill it with C(hostvars[<host>] | pgsafe_connection).
    type: dict
  left_label:
    description: Name of the left side in the rendered tables.
    type: str
    default: left
  right_source:
    description: Where the right schema comes from.
    type: str
    choices: [live, snapshot, ddl]
    default: live
  right_path:
    description: Snapshot file (I(right_source=snapshot)) or SQL file (I(right_source=ddl)).
    type: path
  right_connection:
    description: Like I(left_connection), for the right side.
    type: dict
  right_label:
    description: Name of the right side in the rendered tables.
    type: str
    default: right
  propose:
    description:
      - "Also propose a plan that makes the left side look like the right one (C(proposal), C(proposal_yaml)):
        additive changes and type fixes with their foreign keys as steps; destructive items (drops, merges, schema
        removals, tables the right side does not declare) only as candidates with their evidence, never as steps."
    type: bool
    default: false
  propose_audit_tables:
    description:
      - With I(propose) and a live left side, tables (schema.table) listed as audit candidates with their exact rows
        (the inventory's legacy_audit_tables). Declared tables that are empty (exact count) and never written are
        listed as retirement candidates.
    type: list
    elements: str
    default: []
  scratch:
    description:
      - The server that loads C(ddl) sides (its role needs CREATEDB; the throwaway database is created from a
        connection to its I(login_db)), with the same option names as this module's connection; fill it with
        C(hostvars[<host>] | pgsafe_connection). Default the module's own server (database C(postgres)).
    type: dict
  scratch_database_prefix:
    description: Prefix of the throwaway database's name (a random suffix makes it unique).
    type: str
    default: pgsafe_scratch
  ignore_schemas:
    description: Schemas to ignore on both sides, on top of the product's own schemas.
    type: list
    elements: str
    default: []
  ignore_patterns:
    description:
      - Shell-style patterns (fnmatch, case-sensitive) on unquoted C(schema.name) (C(schema.table.name) for a
        table's columns, constraints, indexes, triggers and policies) of objects to ignore on both sides.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Compare prod with what the code expects (DDL loaded on the scratch server)
  pgsafe_schema_diff:
    left_label: prod
    right_source: ddl
    right_path: "{{ playbook_dir }}/../files/reference/bazaar_vid.sql"
    right_label: reference
    scratch: "{{ hostvars['staging'] | pgsafe_connection }}"
  register: diff_vs_reference

- name: Compare a saved snapshot with the live database
  pgsafe_schema_diff:
    left_source: snapshot
    left_path: /var/lib/pgsafe/prod-before.json
    right_source: live
    ignore_patterns: ["public.tmp_*"]
"""

RETURN = r"""
proposal:
  description: With I(propose), the proposed steps (schema_fix_plan, schema_additions), candidates and not_proposed.
  returned: when propose
  type: dict
proposal_yaml:
  description: With I(propose), the proposal as a host_vars YAML file (candidates as comments only).
  returned: when propose
  type: str
differences:
  description:
    - Every difference except column order, sorted by severity, kind, object. Each is
      C({kind, object, attribute, left, right, severity, summary, hazard}); C(attribute) is C(presence) when
      the object exists on one side only (the other side is null); C(hazard) is
      C({rewrite, scan, lock, data_loss, cast_may_fail, note}).
  returned: success
  type: list
  elements: dict
  sample:
    - kind: column
      object: '"public"."bazaar-vid_exports"."id"'
      attribute: type
      left: text
      right: uuid
      severity: blocking
      hazard: {rewrite: true, scan: true, lock: ACCESS EXCLUSIVE, data_loss: false, cast_may_fail: true,
               note: "rewrites the table ..."}
column_order:
  description: Tables whose shared columns come in another order (informational), with the cost of a rebuild.
  returned: success
  type: list
  elements: dict
counts:
  description: Number of differences per severity (column order not counted).
  returned: success
  type: dict
  sample: {blocking: 8, warning: 9, info: 0}
counts_by_kind:
  description: Number of differences per object kind.
  returned: success
  type: dict
total:
  description: Number of differences (column order not counted).
  returned: success
  type: int
identical:
  description: True when there is no difference at all (column order included).
  returned: success
  type: bool
left_label:
  description: The I(left_label) given.
  returned: success
  type: str
right_label:
  description: The I(right_label) given.
  returned: success
  type: str
left_fingerprint:
  description: Schema fingerprint of the left side.
  returned: success
  type: str
right_fingerprint:
  description: Schema fingerprint of the right side.
  returned: success
  type: str
items:
  description: The differences and column-order entries as flat dicts (for report tables).
  returned: success
  type: list
  elements: dict
markdown:
  description: The comparison rendered as Markdown (one table per object kind, column order explained).
  returned: success
  type: str
html:
  description: The comparison rendered as an HTML fragment (a side-by-side table per object kind).
  returned: success
  type: str
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_connection import second_connection_option
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_schema_diff_sources import comparison, option_errors, read_sides
from ansible.module_utils.pgsafe_snapshot import SnapshotSourceError


def side_spec(side):
    return {side + "_source": dict(type="str", choices=["live", "snapshot", "ddl"], default="live"),
            side + "_path": dict(type="path"), side + "_connection": second_connection_option(),
            side + "_label": dict(type="str", default=side)}


def main():
    module = PgsafeModule(
        argument_spec=dict(
            scratch=second_connection_option(),
            scratch_database_prefix=dict(type="str", default="pgsafe_scratch"),
            ignore_schemas=dict(type="list", elements="str", default=[]),
            ignore_patterns=dict(type="list", elements="str", default=[]),
            propose=dict(type="bool", default=False),
            propose_audit_tables=dict(type="list", elements="str", default=[]),
            **side_spec("left"), **side_spec("right")),
        supports_check_mode=True,
    )
    problem = option_errors(module.params)
    if problem:
        module.fail_json(msg=problem)
    try:
        left, right = read_sides(module.params)
    except SnapshotSourceError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **comparison(module.params, left, right))


if __name__ == "__main__":
    main()
