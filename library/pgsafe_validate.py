#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_validate: is the database what the code expects, with nothing lost."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_validate
short_description: Validate a database after a migration (FKs, orphans, indexes, CRUD probe, conformance, integrity)
description:
  - C(foreign_keys) every foreign key is validated; every NOT VALID one is scanned for orphan rows (count and sample).
  - C(invalid_indexes) no index is left INVALID (a failed CREATE INDEX CONCURRENTLY).
  - C(crud_probe) insert, read, update and delete along the foreign keys the code declares (from the reference;
    those touching the tables the I(plan) changes, when it names any), with values made up from the code's
    types, inside a transaction that is ALWAYS rolled back; skipped in check mode.
  - C(conformance) the live schema diffed against the code's reference (I(reference_snapshot), or
    I(reference_ddl) loaded into a throwaway database on the I(scratch) server); blocking differences,
    missing and invalid indexes fail.
  - C(integrity) with I(run_id), the run's stored before fingerprint is reconciled with a fingerprint taken
    now, planned changes explained (quarantined rows, retired tables, recorded explanations, I(explanations)).
  - Never commits anything to the target database. Reports C(changed=false).
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
options:
  checks:
    description: Checks to run.
    type: list
    elements: str
    choices: [foreign_keys, invalid_indexes, crud_probe, conformance, integrity]
    default: [foreign_keys, invalid_indexes, crud_probe, conformance, integrity]
  exclude_schemas:
    description: Schemas left out of the foreign key and index checks (product schemas always are).
    type: list
    elements: str
    default: []
  reference_ddl:
    description: DDL file of what the code expects (loaded into a throwaway database on I(scratch)).
    type: path
  reference_snapshot:
    description: A schema snapshot file of what the code expects (instead of I(reference_ddl)).
    type: path
  scratch:
    description:
      - Connection options (login_host, login_port, login_user, login_password, login_db, ...) of a server
        where a throwaway database may be created for I(reference_ddl); default, the target's server.
    type: dict
    default: {}
    suboptions:
      login_host:
        description: Host.
        type: str
      login_port:
        description: Port.
        type: int
      login_user:
        description: Role.
        type: str
      login_password:
        description: Password (never logged).
        type: str
      login_db:
        description: Maintenance database to connect to (default postgres).
        type: str
      ssl_mode:
        description: libpq sslmode.
        type: str
  conformance_ignore:
    description: C({schemas, patterns}) left out of the conformance diff (product schemas always are).
    type: dict
    default: {}
  before_snapshot:
    description:
      - Schema snapshot file of the target taken before the run (the fingerprint role writes one into the run's
        artifacts). With it, conformance judges the run, not the world - drift the I(plan) targets that is still
        there fails, and drift that appeared during the run fails; drift that existed before and that the plan
        does not touch is reported as pre-existing and does not fail (unless I(strict_conformance)).
      - When the file does not exist (another job, another directory), the snapshot run I(run_id) kept in
        C(pgsafe.schema_snapshot) under I(before_label) is used. Without either, every blocking difference
        from the code fails.
    type: path
  plan:
    description:
      - The run's plan (C(pgsafe_plan) - schema_fix, table_merge, table_cleanup, auth_schema_removal) - the columns,
        foreign keys and merge targets it aims at, and the tables and schemas it removes on purpose.
    type: dict
    default: {}
  strict_conformance:
    description: Pre-existing blocking drift fails too (as if the run had to leave the database equal to the code).
    type: bool
    default: false
  run_id:
    description: Run whose stored before fingerprint is reconciled (integrity check; skipped without it).
    type: str
  before_label:
    description: Label of the stored before fingerprint.
    type: str
    default: before
  explanations:
    description: Planned changes (see pgsafe_fingerprint_compare).
    type: list
    elements: dict
    default: []
  fail_on_problem:
    description: Fail the task when a check fails (the results are returned either way).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Validate prod after the fix
  pgsafe_validate:
    reference_ddl: "{{ playbook_dir }}/../files/reference/bazaar_vid.sql"
    run_id: "{{ migration_run_id }}"
  register: validate_result
"""

RETURN = r"""
ok:
  description: True when no check failed.
  returned: always
  type: bool
checks:
  description: One entry per check, C(check), C(status) (ok, failed, skipped), C(summary), C(items).
  returned: always
  type: list
  elements: dict
failed_checks:
  description: Names of the checks that failed.
  returned: always
  type: list
  elements: str
rows:
  description: One flat row per check, C(check), C(status), C(summary) (for reports).
  returned: always
  type: list
  elements: dict
integrity:
  description: The reconciliation (see pgsafe_fingerprint_compare) when the integrity check ran.
  returned: when run_id is given
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec
from ansible.module_utils.pgsafe_fingerprint import FingerprintError, compare
from ansible.module_utils.pgsafe_validate import check_conformance, check_foreign_keys, check_invalid_indexes, \
    crud_probe, plan_targets

ALL_CHECKS = ["foreign_keys", "invalid_indexes", "crud_probe", "conformance", "integrity"]


def _reference_loader(module, p):
    """A call that builds the code's reference snapshot (file checks done here, in the module's thread)."""
    from ansible.module_utils.pgsafe_snapshot import ddl_snapshot, read_snapshot_file

    if p["reference_snapshot"]:
        return lambda: (read_snapshot_file(p["reference_snapshot"]), p["reference_snapshot"])
    if not p["reference_ddl"]:
        return lambda: (None, None)
    try:
        with open(p["reference_ddl"], encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        module.fail_json(msg="cannot read reference_ddl {0}: {1}".format(p["reference_ddl"], exc.strerror))
    scratch = {k: p[k] for k in ("login_host", "login_port", "login_user", "login_password", "login_unix_socket",
                                 "ssl_mode", "ca_cert", "ssl_cert", "ssl_key", "connect_params")}
    scratch["login_db"] = "postgres"
    scratch.update({k: v for k, v in (p["scratch"] or {}).items() if v is not None})
    return lambda: (ddl_snapshot(scratch, text, prefix="pgsafe_validate_ref", label=p["reference_ddl"])[0],
                    p["reference_ddl"])


def _before_snapshot(cur, path, run_id, label):
    """(snapshot, note) of the schema before the run: the file, else the one the run kept in the product
    schema; (None, why) when there is none to judge against (then every blocking difference counts)."""
    import os

    from ansible.module_utils.pgsafe_meta import load_schema_snapshot
    from ansible.module_utils.pgsafe_snapshot import SnapshotSourceError, check_snapshot, read_snapshot_file

    if path and os.path.exists(path):
        try:
            return read_snapshot_file(path), "; before: {0}".format(path)
        except SnapshotSourceError as exc:  # judged without a baseline: stricter, never laxer
            return None, "; {0}".format(exc)
    if run_id:
        stored = load_schema_snapshot(cur, run_id, label)
        if stored is not None:
            try:
                return check_snapshot(stored), "; before: run {0}'s snapshot in pgsafe.schema_snapshot".format(run_id)
            except ValueError as exc:
                return None, "; run {0}'s stored snapshot is unusable: {1}".format(run_id, exc)
        return None, "; run {0} kept no {1} snapshot (fingerprint_before skipped?)".format(run_id, label)
    if path:
        return None, "; no before snapshot at {0}: was the fingerprint_before phase skipped?".format(path)
    return None, ""


class _Background:
    """Run a call in a thread (the reference is loaded on the scratch server while the target is checked)."""

    def __init__(self, call):
        import threading
        self._outcome = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call):
        try:
            self._outcome = (True, call())
        except Exception as exc:  # noqa: BLE001 - re-raised by result()
            self._outcome = (False, exc)

    def wait(self):
        self._thread.join()

    def result(self):
        self.wait()
        ok, value = self._outcome
        if not ok:
            raise value
        return value


def main():
    module = AnsibleModule(
        argument_spec=connection_argument_spec(
            checks=dict(type="list", elements="str", default=list(ALL_CHECKS), choices=ALL_CHECKS),
            exclude_schemas=dict(type="list", elements="str", default=[]),
            reference_ddl=dict(type="path"),
            reference_snapshot=dict(type="path"),
            scratch=dict(type="dict", default={}, options=dict(
                login_host=dict(type="str"), login_port=dict(type="int"), login_user=dict(type="str"),
                login_password=dict(type="str", no_log=True), login_db=dict(type="str"),
                ssl_mode=dict(type="str"))),
            conformance_ignore=dict(type="dict", default={}),
            before_snapshot=dict(type="path"),
            plan=dict(type="dict", default={}),
            strict_conformance=dict(type="bool", default=False),
            run_id=dict(type="str"),
            before_label=dict(type="str", default="before"),
            explanations=dict(type="list", elements="dict", default=[]),
            fail_on_problem=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    checks, result = [], {}
    try:
        conn = connect(p, read_only=True, settings={"statement_timeout": "600s", "lock_timeout": "5s"})
    except ConnectionFailure as exc:
        module.fail_json(msg=str(exc))
    extra = []
    # The code's reference DDL is loaded into a throwaway database on the scratch server meanwhile.
    needs_reference = "conformance" in p["checks"] or "crud_probe" in p["checks"]
    reference_job = _Background(_reference_loader(module, p)) if needs_reference else None
    live = reference = None
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            if "foreign_keys" in p["checks"]:
                checks.append(check_foreign_keys(cur, p["exclude_schemas"]))
            if "invalid_indexes" in p["checks"]:
                checks.append(check_invalid_indexes(cur, p["exclude_schemas"]))
            if needs_reference:
                from ansible.module_utils.pgsafe_snapshot import take_snapshot

                live = take_snapshot(cur)
        conn.rollback()
        conn.set_session(isolation_level="DEFAULT", readonly=True)
        reference_error = None
        if needs_reference:
            try:
                reference, source = reference_job.result()
            except Exception as exc:  # noqa: BLE001 - SnapshotSourceError, ConnectionFailure, psycopg2 errors
                reference, source = None, " ".join(str(exc).split())
                reference_error = "cannot build the code's reference schema: {0}".format(source)
        if "conformance" in p["checks"]:
            if reference_error:
                checks.append({"check": "conformance", "status": "failed", "items": [], "summary": reference_error})
            elif reference is None:
                checks.append({"check": "conformance", "status": "skipped", "items": [],
                               "summary": "no reference_ddl or reference_snapshot given"})
            else:
                with conn.cursor() as cur:
                    before, note = _before_snapshot(cur, p["before_snapshot"], p["run_id"], p["before_label"])
                conn.rollback()
                entry = check_conformance(live, reference, p["conformance_ignore"] or None, before_snapshot=before,
                                          plan=p["plan"], strict=p["strict_conformance"],
                                          applied=not module.check_mode)
                entry["summary"] += " (reference: {0}{1})".format(source, note)
                checks.append(entry)
        if "integrity" in p["checks"]:
            if not p["run_id"]:
                checks.append({"check": "integrity", "status": "skipped", "items": [],
                               "summary": "no run id given: no stored before fingerprint to reconcile"})
            else:
                def more():
                    other = connect(p, read_only=True)
                    extra.append(other)
                    return other
                try:
                    rec = compare(conn, run_id=p["run_id"], before_label=p["before_label"],
                                  explanations=p["explanations"], connect=more, workers=2)
                except FingerprintError as exc:
                    if module.check_mode:  # a run in check mode stores no before fingerprint and changes nothing
                        checks.append({"check": "integrity", "status": "skipped", "items": [], "summary": (
                            "check mode: {0} (a real run stores it and reconciles every table here)".format(exc))})
                    else:
                        checks.append({"check": "integrity", "status": "failed", "items": [], "summary": str(exc)})
                else:
                    rec.pop("after_fingerprint", None)
                    result["integrity"] = rec
                    items = [{"table": t["table"], "status": t["status"], "before_rows": t["before_rows"],
                              "after_rows": t["after_rows"], "detail": t["detail"]}
                             for t in rec["tables"] if t["status"] != "identical"]
                    checks.append({"check": "integrity", "status": "ok" if rec["ok"] else "failed",
                                   "summary": "run {0}: {1}".format(p["run_id"], rec["summary"]), "items": items})
        if "crud_probe" in p["checks"]:
            if module.check_mode:
                checks.append({"check": "crud_probe", "status": "skipped", "items": [],
                               "summary": "check mode: the probe writes (always rolled back), so it is not run"})
            elif reference is None:
                checks.append({"check": "crud_probe", "status": "failed" if reference_error else "skipped",
                               "items": [], "summary": reference_error or "no reference_ddl or reference_snapshot "
                                                                          "given: the probe follows the code's schema"})
            else:
                pconn = connect(p)
                try:
                    checks.append(crud_probe(pconn, reference, live, plan_targets(p["plan"])["changed_tables"]))
                finally:
                    pconn.rollback()
                    pconn.close()
    finally:
        conn.close()
        for other in extra:
            other.close()
        if reference_job is not None:  # never leave its throwaway database half-made behind
            reference_job.wait()
    failed = [c["check"] for c in checks if c["status"] == "failed"]
    rows = []
    for c in checks:
        rows.append({"check": c["check"], "status": c["status"], "summary": c["summary"]})
        if c["status"] == "failed":
            for item in c["items"][:25]:
                rows.append({"check": c["check"], "status": "detail", "summary": "; ".join(
                    "{0}={1}".format(k, v) for k, v in item.items() if v not in (None, "", []))})
    result.update(ok=not failed, checks=checks, failed_checks=failed, rows=rows)
    if failed and p["fail_on_problem"]:
        module.fail_json(msg="validation failed: {0}".format("; ".join(
            "{0}: {1}".format(c["check"], c["summary"]) for c in checks if c["status"] == "failed")), **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
