# -*- coding: utf-8 -*-
"""One validation run as pgsafe_validate does it: the checks in order on one READ ONLY connection to the target,
the code's reference loaded meanwhile (in a thread) on the scratch server; the rows for the report."""
from __future__ import annotations

import os
import threading

from ansible.module_utils.pgsafe_connection import connect
from ansible.module_utils.pgsafe_fingerprint import FingerprintError, compare
from ansible.module_utils.pgsafe_meta import load_schema_snapshot
from ansible.module_utils.pgsafe_snapshot import (SnapshotSourceError, check_snapshot, ddl_snapshot,
                                                  read_snapshot_file, scratch_server, take_snapshot)
from ansible.module_utils.pgsafe_validate import (check_conformance, check_foreign_keys, check_invalid_indexes,
                                                  crud_probe, plan_targets)

ALL_CHECKS = ["foreign_keys", "invalid_indexes", "crud_probe", "conformance", "integrity"]


class ValidationError(Exception):
    """The validation cannot run as asked (an unreadable file); the message says which."""


def _skipped(check, summary, status="skipped"):
    return {"check": check, "status": status, "items": [], "summary": summary}


def _reference_loader(p):
    """A call that builds the code's reference snapshot (file checks done here, in the module's thread); raises
    ValidationError when the DDL file cannot be read."""
    if p["reference_snapshot"]:
        return lambda: (read_snapshot_file(p["reference_snapshot"]), p["reference_snapshot"])
    if not p["reference_ddl"]:
        return lambda: (None, None)
    try:
        with open(p["reference_ddl"], encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ValidationError("cannot read reference_ddl {0}: {1}".format(p["reference_ddl"], exc.strerror)) from None
    scratch = scratch_server(p, p["scratch"])
    return lambda: (ddl_snapshot(scratch, text, prefix="pgsafe_validate_ref", label=p["reference_ddl"])[0],
                    p["reference_ddl"])


def _before_snapshot(cur, path, run_id, label):
    """(snapshot, note) of the schema before the run: the file, else the one the run kept in the product
    schema; (None, why) when there is none to judge against (then every blocking difference counts)."""
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


def _reference(job):
    """(reference snapshot, its source, the error that prevented it)."""
    try:
        reference, source = job.result()
        return reference, source, None
    except Exception as exc:  # noqa: BLE001 - SnapshotSourceError, ConnectionFailure, psycopg2 errors
        source = " ".join(str(exc).split())
        return None, source, "cannot build the code's reference schema: {0}".format(source)


def _conformance(p, conn, live, reference, source, error, check_mode):
    if error:
        return _skipped("conformance", error, "failed")
    if reference is None:
        return _skipped("conformance", "no reference_ddl or reference_snapshot given")
    with conn.cursor() as cur:
        before, note = _before_snapshot(cur, p["before_snapshot"], p["run_id"], p["before_label"])
    conn.rollback()
    entry = check_conformance(live, reference, p["conformance_ignore"] or None, before_snapshot=before,
                              plan=p["plan"], strict=p["strict_conformance"], applied=not check_mode)
    entry["summary"] += " (reference: {0}{1})".format(source, note)
    return entry


def _integrity(p, conn, check_mode, extra, result):
    if not p["run_id"]:
        return _skipped("integrity", "no run id given: no stored before fingerprint to reconcile")

    def more():
        other = connect(p, read_only=True)
        extra.append(other)
        return other
    try:
        rec = compare(conn, run_id=p["run_id"], before_label=p["before_label"], explanations=p["explanations"],
                      connect=more, workers=2)
    except FingerprintError as exc:
        if check_mode:  # a run in check mode stores no before fingerprint and changes nothing
            return _skipped("integrity", "check mode: {0} (a real run stores it and reconciles every table "
                                         "here)".format(exc))
        return _skipped("integrity", str(exc), "failed")
    rec.pop("after_fingerprint", None)
    result["integrity"] = rec
    items = [{"table": t["table"], "status": t["status"], "before_rows": t["before_rows"],
              "after_rows": t["after_rows"], "detail": t["detail"]} for t in rec["tables"] if t["status"] != "identical"]
    return {"check": "integrity", "status": "ok" if rec["ok"] else "failed",
            "summary": "run {0}: {1}".format(p["run_id"], rec["summary"]), "items": items}


def _crud_probe(p, live, reference, error, check_mode):
    if check_mode:
        return _skipped("crud_probe", "check mode: the probe writes (always rolled back), so it is not run")
    if reference is None:
        return _skipped("crud_probe", error or "no reference_ddl or reference_snapshot given: the probe follows the "
                                               "code's schema", "failed" if error else "skipped")
    pconn = connect(p)
    try:
        return crud_probe(pconn, reference, live, plan_targets(p["plan"])["changed_tables"])
    finally:
        pconn.rollback()
        pconn.close()


def validate(p, conn, check_mode):
    """Run the checks ``p["checks"]`` (the module's options) on ``conn`` (READ ONLY, closed here); the result."""
    checks, result, extra = [], {}, []
    # The code's reference DDL is loaded into a throwaway database on the scratch server meanwhile.
    needs_reference = "conformance" in p["checks"] or "crud_probe" in p["checks"]
    try:
        reference_job = _Background(_reference_loader(p)) if needs_reference else None
    except ValidationError:
        conn.close()
        raise
    live = reference = source = error = None
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with conn.cursor() as cur:
            if "foreign_keys" in p["checks"]:
                checks.append(check_foreign_keys(cur, p["exclude_schemas"]))
            if "invalid_indexes" in p["checks"]:
                checks.append(check_invalid_indexes(cur, p["exclude_schemas"]))
            if needs_reference:
                live = take_snapshot(cur)
        conn.rollback()
        conn.set_session(isolation_level="DEFAULT", readonly=True)
        if needs_reference:
            reference, source, error = _reference(reference_job)
        if "conformance" in p["checks"]:
            checks.append(_conformance(p, conn, live, reference, source, error, check_mode))
        if "integrity" in p["checks"]:
            checks.append(_integrity(p, conn, check_mode, extra, result))
        if "crud_probe" in p["checks"]:
            checks.append(_crud_probe(p, live, reference, error, check_mode))
    finally:
        conn.close()
        for other in extra:
            other.close()
        if reference_job is not None:  # never leave its throwaway database half-made behind
            reference_job.wait()
    return dict(result, **report(checks))


def report(checks):
    """ok, checks, failed_checks and the flat rows (with up to 25 items of each failed check)."""
    failed = [c["check"] for c in checks if c["status"] == "failed"]
    rows = []
    for c in checks:
        rows.append({"check": c["check"], "status": c["status"], "summary": c["summary"]})
        if c["status"] == "failed":
            for item in c["items"][:25]:
                rows.append({"check": c["check"], "status": "detail", "summary": "; ".join(
                    "{0}={1}".format(k, v) for k, v in item.items() if v not in (None, "", []))})
    return {"ok": not failed, "checks": checks, "failed_checks": failed, "rows": rows}


def failure_message(checks):
    return "validation failed: {0}".format("; ".join(
        "{0}: {1}".format(c["check"], c["summary"]) for c in checks if c["status"] == "failed"))
