#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_fingerprint_compare: reconcile two fingerprints, fail on unexplained loss."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_fingerprint_compare
short_description: Reconcile a before and an after data fingerprint; fail on any unexplained difference
description:
  - Compares per table the row count and content hash of a before fingerprint with an after fingerprint
    and explains each difference as planned, or flags it as loss.
  - The before fingerprint is given (I(before)) or loaded from C(pgsafe.fingerprint) (I(run_id) and
    I(before_label)); the after one is given, loaded (I(after_label)) or taken now (the default), with the
    normalisations the before fingerprint used.
  - "Planned changes: rows in C(pgsafe.quarantine_row) of the run (rows and hashes are accounted:
    before = after + quarantined), tables in C(pgsafe.quarantined_object) (their set-aside copy must equal
    before), explanations recorded by the run in C(pgsafe.fingerprint_explanation), and I(explanations)."
  - Never writes (READ ONLY transactions); runs the same in check mode.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Compares (read only) exactly as in a real run; nothing is ever written.
  diff_mode:
    support: none
options:
  run_id:
    description: Run whose stored fingerprints and recorded planned changes are used.
    type: str
  before:
    description: A fingerprint as returned by pgsafe_fingerprint (its C(fingerprint) or C(tables)).
    type: dict
  before_label:
    description: Label of the stored before fingerprint (with I(run_id)).
    type: str
    default: before
  after:
    description: A fingerprint to compare with, instead of a stored or a live one.
    type: dict
  after_label:
    description: Label of a stored after fingerprint; when omitted (and no I(after)) a live fingerprint is taken.
    type: str
  tables:
    description: Tables of the live after fingerprint (default every user table).
    type: list
    elements: str
    default: []
  explanations:
    description:
      - "Planned changes, each a dict with C(kind) and C(table): C(cast) (column, optional value_changing),
        C(quarantine) (rows, hash), C(merge) (rows, optional hash, from), C(delete) (rows, optional hash),
        C(retire) and C(rename) (to), C(drop) (only for an empty table), C(writes) (growth allowed)."
    type: list
    elements: dict
    default: []
  use_recorded:
    description: Add the planned changes the run recorded in the product schema.
    type: bool
    default: true
  normalize:
    description: Extra per-column normalisations (as in pgsafe_fingerprint).
    type: dict
    default: {}
  uuid_text:
    description: UUID spelling normalisation of text columns (default, the before fingerprint's).
    type: str
    choices: [auto, "off"]
  workers:
    description: Connections used for a live fingerprint.
    type: int
    default: 2
  fail_on_loss:
    description: Fail when any difference is unexplained.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Prove nothing was lost by the run
  pgsafe_fingerprint_compare:
    run_id: "{{ run_context_run_id }}"
    explanations:
      - {kind: merge, table: public.bazaar-vid_api_usage_metric, from: public.api_usage_metric, rows: 250}
"""

RETURN = r"""
ok:
  description: True when every difference is explained.
  returned: always
  type: bool
tables:
  description: Per table C(table), C(status) (identical, explained, explained_unverified, added, loss),
    C(before_rows), C(after_rows), C(expected_rows), C(explained_by), C(type_changes), C(detail).
  returned: always
  type: list
  elements: dict
losses:
  description: Every unexplained difference, C(table), C(kind) (rows_missing, values_changed, rows_added,
    table_missing), C(rows), C(detail).
  returned: always
  type: list
  elements: dict
summary:
  description: One line for people.
  returned: always
  type: str
before:
  description: Id, label, taken_at, tables and total_rows of the before fingerprint.
  returned: always
  type: dict
after:
  description: The same for the after fingerprint.
  returned: always
  type: dict
explanations:
  description: The planned changes used (recorded and given).
  returned: always
  type: list
  elements: dict
queries:
  description: The statements this module's connections ran, in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.pgsafe_connection import ConnectionFailure
from ansible.module_utils.pgsafe_fingerprint import FingerprintError, compare, read_only_connections
from ansible.module_utils.pgsafe_module import PgsafeModule


def main():
    module = PgsafeModule(
        argument_spec=dict(
            run_id=dict(type="str"),
            before=dict(type="dict"),
            before_label=dict(type="str", default="before"),
            after=dict(type="dict"),
            after_label=dict(type="str"),
            tables=dict(type="list", elements="str", default=[]),
            explanations=dict(type="list", elements="dict", default=[]),
            use_recorded=dict(type="bool", default=True),
            normalize=dict(type="dict", default={}),
            uuid_text=dict(type="str", choices=["auto", "off"]),
            workers=dict(type="int", default=2),
            fail_on_loss=dict(type="bool", default=True),
        ),
        required_one_of=[("run_id", "before")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        with read_only_connections(p) as (conn, more):
            result = compare(conn, run_id=p["run_id"], before=p["before"], before_label=p["before_label"],
                             after=p["after"], after_label=p["after_label"], explanations=p["explanations"],
                             use_recorded=p["use_recorded"], normalize=p["normalize"], uuid_text=p["uuid_text"],
                             tables=p["tables"], connect=more, workers=p["workers"])
    except (FingerprintError, ConnectionFailure) as exc:
        module.fail_json(msg=str(exc))
    result.pop("after_fingerprint", None)
    if result["losses"] and p["fail_on_loss"]:
        module.fail_json(msg="data fingerprints differ without explanation: {0}".format(result["summary"]),
                         changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
