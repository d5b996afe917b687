# -*- coding: utf-8 -*-
"""Applying the additive schema steps planned by module_utils/pgsafe_additions.py.

``apply_addition`` runs one step's statements exactly as planned (each transactional one in a
transaction of its own under SET LOCAL timeouts, CONCURRENTLY ones in autocommit) and re-plans to
prove it converged; ``apply_steps`` runs a whole plan, journaling each step; ``moved_objects``
compares the steps with a reviewed plan's sha256; ``additions_diff`` is the --diff of a plan.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_additions import JOURNAL_STEP, AdditionError, objects_sha256, plan_additions
from ansible.module_utils.pgsafe_failures import failure_message
from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal

try:
    import psycopg2
    from psycopg2 import extensions as pg_extensions
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None
    pg_extensions = None


class StepFailed(AdditionError):
    """A step failed while the plan was applied; the message names what was applied before it."""


def moved_objects(steps, expected):
    """Why the steps differ from the reviewed plan (empty when they run exactly what was planned)."""
    actual = objects_sha256(steps)
    out = ["{0}: not among the additions (the reviewed plan had it)".format(o) for o in expected if o not in actual]
    for obj in dict.fromkeys(s["object"] for s in steps if not s["converged"]):
        if obj not in expected:
            out.append("{0}: not in the reviewed plan".format(obj))
        elif expected[obj] != actual[obj]:
            out.append("{0}: the statements it would run differ from the planned ones (sha256 {1}, planned {2})".format(
                obj, actual[obj], expected[obj]))
    return out


def additions_diff(steps):
    """(before, after) texts for --diff: each object's state now, and once its step ran."""
    return tuple("".join("{0} ({1}): {2}\n".format(s["object"], s["kind"], s[key]) for s in steps)
                 for key in ("before", "after"))


def journal_step(conn, run_id, step, status, error=None):
    """One journal line for a step (its statements, hazards, sha256 and rollback SQL); commits."""
    details = {"kind": step["kind"], "position": step["position"], "sha256": step["sha256"], "hazards": step["hazards"],
               "statements": [s["sql"] for s in step["statements"]]}
    if error:
        details["error"] = error
    with conn.cursor() as cur:
        journal(cur, run_id, JOURNAL_STEP, status, step["object"], details,
                rollback_sql="\n".join(s + ";" for s in step["rollback_sql"]) or None)
    conn.commit()


def apply_steps(conn, steps, run_id, lock_timeout, statement_timeout, result):
    """Run every pending step in order, each journaled (started, then completed or failed).

    ``result`` (queries, applied, changed) is kept up to date; the first failing step raises StepFailed.
    """
    with conn.cursor() as cur:
        ensure_meta_schema(cur)
    conn.commit()
    for step in steps:
        if step["converged"]:
            continue
        journal_step(conn, run_id, step, "started")
        try:
            executed = apply_addition(conn, step, lock_timeout, statement_timeout)
        except AdditionError as exc:
            result["queries"].extend(exc.executed)
            result["changed"] = bool(result["queries"])
            journal_step(conn, run_id, step, "failed", error=str(exc))
            raise StepFailed("{0} (applied before it: {1})".format(exc, ", ".join(result["applied"]) or "nothing"),
                             exc.executed) from None
        result["queries"].extend(executed)
        result["applied"].append(step["object"])
        result["changed"] = True
        journal_step(conn, run_id, step, "completed")


# --------------------------------------------------------------------------- apply
def _set_session(cur, lock_timeout, statement_timeout, local):
    cur.execute("SELECT set_config('lock_timeout', %s, %s)", (str(lock_timeout), local))
    if statement_timeout is not None:
        cur.execute("SELECT set_config('statement_timeout', %s, %s)", (str(statement_timeout), local))


def _run_statement(conn, statement, lock_timeout, statement_timeout):
    """One planned statement: in a transaction of its own (SET LOCAL timeouts), or in autocommit (CONCURRENTLY)."""
    if statement["transactional"]:
        conn.autocommit = False
        with conn.cursor() as cur:
            _set_session(cur, lock_timeout, statement_timeout, True)
            cur.execute(statement["sql"])
        conn.commit()
        return
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
        before = cur.fetchone()
        _set_session(cur, lock_timeout, statement_timeout, False)
        try:
            cur.execute(statement["sql"])
        finally:
            _set_session(cur, before[0], before[1], False)


def apply_addition(conn, step, lock_timeout="5s", statement_timeout=None):
    """Run exactly step["statements"] in order (each transactional one in a transaction of its own under SET LOCAL
    lock_timeout, CONCURRENTLY ones in autocommit), then re-plan: AdditionError unless converged.  Returns the SQL run;
    a converged step runs nothing.  AdditionError.executed lists what ran; the next plan resumes from the state left.
    """
    if step["converged"] or not step["statements"]:
        return []
    if not step["precheck"]["ok"]:
        raise AdditionError("{0}: precheck failed, nothing run: {1}".format(
            step["object"], " | ".join(step["precheck"]["problems"])))
    if conn.get_transaction_status() != pg_extensions.TRANSACTION_STATUS_IDLE:
        raise AdditionError("{0}: the connection has an open transaction: commit or roll it back first".format(step["object"]))
    autocommit, executed = conn.autocommit, []
    try:
        for statement in step["statements"]:
            try:
                _run_statement(conn, statement, lock_timeout, statement_timeout)
            except psycopg2.Error as exc:
                if not conn.autocommit:
                    conn.rollback()
                raise AdditionError("{0} (done before it: {1})".format(
                    failure_message(exc, statement["sql"], step["object"]), "; ".join(executed) or "nothing"),
                    executed) from None
            executed.append(statement["sql"])
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            again = plan_additions(cur, [step["item"]])[0]
    finally:
        conn.rollback()
        conn.autocommit = autocommit
    if not again["converged"]:
        raise AdditionError("{0}: not converged after its statements ran (now: {1}; problems: {2})".format(
            step["object"], again["before"], " | ".join(again["precheck"]["problems"]) or "none"), executed)
    return executed
