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
      - For I(left_source=live), connection options (C(login_host), C(login_port), C(login_user),
        C(login_password), C(login_db), C(ssl_mode), ...) that override the module's own connection.
        Empty means the module's own connection.
    type: dict
    default: {}
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
    default: {}
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
  scratch_login_host:
    description: Host of the scratch server that loads C(ddl) sources. Default the module's I(login_host).
    type: str
  scratch_login_port:
    description: Port of the scratch server. Default the module's I(login_port).
    type: int
  scratch_login_user:
    description: Role on the scratch server; needs CREATEDB. Default the module's I(login_user).
    type: str
  scratch_login_password:
    description: Password of I(scratch_login_user). Default the module's I(login_password).
    type: str
  scratch_login_db:
    description: Maintenance database the scratch database is created from a connection to.
    type: str
    default: postgres
  scratch_ssl_mode:
    description: libpq sslmode for the scratch server. Default the module's I(ssl_mode).
    type: str
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  scratch_connect_params:
    description: Further libpq parameters for the scratch server.
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
    scratch_login_host: "{{ hostvars['staging'].pg_host }}"
    scratch_login_port: "{{ hostvars['staging'].pg_port }}"
    scratch_login_user: "{{ hostvars['staging'].pg_user }}"
    scratch_login_password: "{{ hostvars['staging'].pg_password }}"
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
"""

import gc
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import (CONNECTION_OPTION_NAMES, ConnectionFailure, connect,
                                                    connection_argument_spec)
from ansible.module_utils.pgsafe_proposal import declared_candidates, propose, render_proposal_yaml
from ansible.module_utils.pgsafe_schema_diff import diff_snapshots, summarize
from ansible.module_utils.pgsafe_schema_diff_render import flat_items, render_html, render_markdown
from ansible.module_utils.pgsafe_snapshot import (DEFAULT_IGNORE_SCHEMAS, SnapshotSourceError, ddl_snapshot,
                                                  live_snapshot, read_snapshot_file, schema_fingerprint)
from ansible.module_utils.pgsafe_snapshot_pair import read_snapshot_pair

SIDE_OPTIONS = dict(source=dict(type="str", choices=["live", "snapshot", "ddl"], default="live"),
                    path=dict(type="path"), connection=dict(type="dict", default={}), label=dict(type="str"))


def _side_spec(side):
    spec = {}
    for name, option in SIDE_OPTIONS.items():
        spec["{0}_{1}".format(side, name)] = dict(option)
    spec["{0}_label".format(side)]["default"] = side
    return spec


def exact_counts(module, live, audit):
    """Exact rows (read-only) of the live tables the statistics call empty (or never analyzed) and of those
    asked for: an estimate never makes a table a retirement candidate."""
    from ansible.module_utils.pgsafe_identifiers import qualified, split_qualified
    from ansible.module_utils.pgsafe_retire import exact_count
    params = module.params
    conn_params = {name: params.get(name) for name in CONNECTION_OPTION_NAMES}
    conn_params.update(params["left_connection"] or {})
    asked = {qualified(*split_qualified(name)) for name in audit}
    keys = [k for k, t in live["tables"].items()
            if k in asked or not t.get("analyzed", True) or not max(t.get("reltuples") or 0, t.get("live_rows") or 0)]
    conn = connect(conn_params, read_only=True)
    try:
        with conn.cursor() as cur:
            out = {key: exact_count(cur, *split_qualified(key)) for key in keys}
        conn.rollback()
        return out
    finally:
        conn.close()


def scratch_params(params):
    """Connection options of the scratch server: scratch_* over the module's own connection."""
    out = {name: params.get(name) for name in CONNECTION_OPTION_NAMES}
    for name in ("login_host", "login_port", "login_user", "login_password", "login_db", "ssl_mode", "connect_params"):
        value = params.get("scratch_" + name)
        if value not in (None, ""):
            out[name] = value
    out["session_role"] = None
    return out


def load_side(module, side, ignore_schemas, ignore_patterns):
    params = module.params
    source, path = params[side + "_source"], params[side + "_path"]
    if source == "live":
        conn_params = {name: params.get(name) for name in CONNECTION_OPTION_NAMES}
        unknown = sorted(set(params[side + "_connection"]) - set(CONNECTION_OPTION_NAMES))
        if unknown:
            raise SnapshotSourceError("{0}_connection has unknown options {1}; use {2}".format(
                side, ", ".join(unknown), ", ".join(CONNECTION_OPTION_NAMES)))
        conn_params.update({k: v for k, v in params[side + "_connection"].items() if v is not None})
        return live_snapshot(conn_params, ignore_schemas, ignore_patterns)
    if source == "snapshot":
        return read_snapshot_file(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SnapshotSourceError("cannot read the DDL file {0}: {1}".format(path, exc.strerror)) from None
    snap, _ = ddl_snapshot(scratch_params(params), text, ignore_schemas, ignore_patterns,
                           prefix=params["scratch_database_prefix"], label=os.path.basename(path))
    return snap


def main():
    spec = connection_argument_spec(
        scratch_login_host=dict(type="str"), scratch_login_port=dict(type="int"),
        scratch_login_user=dict(type="str"), scratch_login_password=dict(type="str", no_log=True),
        scratch_login_db=dict(type="str", default="postgres"),
        scratch_ssl_mode=dict(type="str", choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]),
        scratch_connect_params=dict(type="dict"),
        scratch_database_prefix=dict(type="str", default="pgsafe_scratch"),
        ignore_schemas=dict(type="list", elements="str", default=[]),
        ignore_patterns=dict(type="list", elements="str", default=[]),
        propose=dict(type="bool", default=False),
        propose_audit_tables=dict(type="list", elements="str", default=[]),
    )
    spec.update(_side_spec("left"))
    spec.update(_side_spec("right"))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    params = module.params
    ignore_schemas = tuple(DEFAULT_IGNORE_SCHEMAS) + tuple(params["ignore_schemas"])
    def loader(side):
        def load():
            try:
                return load_side(module, side, ignore_schemas, params["ignore_patterns"])
            except (ConnectionFailure, SnapshotSourceError) as exc:
                raise SnapshotSourceError("{0} side ({1}): {2}".format(side, params[side + "_label"], exc)) from None
            except Exception as exc:  # noqa: BLE001 - any catalog/psycopg2 error, with the side named
                raise SnapshotSourceError("{0} side ({1}): cannot read the schema: {2}".format(
                    side, params[side + "_label"], " ".join(str(exc).split()))) from None
        return load

    for side in ("left", "right"):  # option errors first, before anything is read
        if params[side + "_source"] in ("snapshot", "ddl") and not params[side + "_path"]:
            module.fail_json(msg="{0}_source={1} needs {0}_path (the {2} file)".format(
                side, params[side + "_source"], "snapshot" if params[side + "_source"] == "snapshot" else "SQL"))
    # Both sides are read at the same time (the right one in a child process).  The two snapshots (tens of
    # thousands of acyclic objects) live until this process exits: the cyclic collector is kept off while
    # they are built and then told to leave them alone (gc.freeze), during the diff and in its final pass
    # at exit (10 ms at 2,000 tables).
    gc.disable()
    loaded = read_snapshot_pair(loader("left"), loader("right"))
    gc.freeze()
    gc.enable()
    errors = [str(result) for result in loaded if isinstance(result, Exception)]
    if errors:
        module.fail_json(msg="; ".join(errors))
    sides = {"left": loaded[0], "right": loaded[1]}
    diffs = diff_snapshots(sides["left"], sides["right"],
                           ignore={"schemas": params["ignore_schemas"], "patterns": params["ignore_patterns"]})
    result = summarize(diffs)
    left_label, right_label = params["left_label"], params["right_label"]
    if params["propose"]:
        proposal = propose(sides["left"], sides["right"], diffs)
        if params["left_source"] == "live":
            counts = exact_counts(module, sides["left"], params["propose_audit_tables"])
            declared_candidates(proposal, sides["left"], sides["right"], counts, params["propose_audit_tables"])
        result["proposal"] = proposal
        result["proposal_yaml"] = render_proposal_yaml(proposal, left_label, params["right_path"] or right_label)
    module.exit_json(
        changed=False, identical=not diffs, left_label=left_label, right_label=right_label,
        left_fingerprint=schema_fingerprint(sides["left"]), right_fingerprint=schema_fingerprint(sides["right"]),
        items=flat_items(result["differences"] + result["column_order"], "{0} vs {1}".format(left_label, right_label)),
        markdown=render_markdown(result, left_label, right_label), html=render_html(result, left_label, right_label),
        **result)


if __name__ == "__main__":
    main()
