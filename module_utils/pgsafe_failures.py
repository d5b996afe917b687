# -*- coding: utf-8 -*-
"""Honest failure messages: does a failed step succeed when re-run, and if not, what must be fixed first.

One classification for every applying step (the type change, its online backfill, the additions).  A failure
that a re-run can get past (a lock timeout, a deadlock, a serialization failure, a lost connection, a server
shutting down, a cancel) says "re-run to resume"; any other failure will fail the same way again, so its
message says what to fix, naming the object the server named (its DETAIL and HINT are kept).
"""
from __future__ import annotations

# Lock conflicts: the same transaction succeeds once the other session lets go (pgsafe_locks retries these
# in place, within one run).
LOCK_CONFLICT_CODES = ("55P03", "40P01")  # lock_not_available, deadlock_detected
# SQLSTATEs a re-run can get past: the same work succeeds once the other session is gone or the server is back.
TRANSIENT_CODES = {
    "55P03": "a lock was not granted within lock_timeout (another session held it)",
    "40P01": "a deadlock with another session",
    "40001": "a serialization failure with another session",
    "57P01": "the server was shut down by an administrator",
    "57P02": "the server crashed",
    "57P03": "the server was not accepting connections",
    "53300": "the server had too many connections",
}
# What to fix, by SQLSTATE class or code, for the failures that repeat.
FIXES = {
    "0A000": "the object named in the error allows the change (a dependent of the column: drop it before the "
             "change and recreate it after; the plan lists every dependent it knows)",
    "42883": "the definition named in the error works with the new type (an operator or function is missing for "
             "it): change that definition first, or declare a using expression that keeps it valid",
    "42804": "the types match: the default, using expression or definition named in the error casts to the new type "
             "(declare a default, drop_default or a using expression)",
    "42P16": "the column is changed where the server allows it (on the parent table, or outside the partition key)",
    "42809": "the table is no longer a typed table (ALTER TABLE ... NOT OF), or the type is changed instead",
    "42501": "the login has the privilege named in the error (GRANT it, or run as the owner of the object)",
    "57014": "the statement fits its statement_timeout (raise statement_timeout, or run in a longer window)",
    "22": "the data named in the error converts to the new type (fix or quarantine those rows; the precheck "
          "lists values that do not cast)",
    "23": "the rows that violate the constraint named in the error are fixed or set aside",
    "53": "the server has the resources the error names (free disk, memory or connections)",
    "42": "the statement named in the error is valid on this database (its objects exist and have the expected "
          "definitions)",
}


def _code(exc):
    return getattr(exc, "pgcode", None) or ""


def is_transient(exc):
    """True when re-running the same work can succeed: the cause is another session or the connection."""
    code = _code(exc)
    if code in TRANSIENT_CODES or code.startswith("08"):
        return True
    if code == "57014":  # cancel: a lock_timeout comes as 55P03; a statement_timeout repeats, a user cancel does not
        return "statement timeout" not in str(exc)
    if not code:  # no SQLSTATE: the connection was lost (psycopg2 OperationalError / InterfaceError)
        return type(exc).__name__ in ("OperationalError", "InterfaceError")
    return False


def what_to_fix(exc):
    """The fix of a failure that repeats (by SQLSTATE, most specific first)."""
    code = _code(exc)
    return FIXES.get(code) or FIXES.get(code[:2]) or "the cause in the error above is fixed"


def server_error_text(exc, limit=600):
    """The error on one line with its DETAIL and HINT (which name the object), cut to ``limit`` characters."""
    text = " ".join(str(exc).split())
    diag = getattr(exc, "diag", None)
    for part in (getattr(diag, "message_detail", None), getattr(diag, "message_hint", None)):
        if part and " ".join(part.split()) not in text:
            text += " " + " ".join(part.split())
    return text[:limit]


def failure_message(exc, what, objects=""):
    """``what`` (the step) on ``objects`` failed: the error, then either "re-run to resume" or what to fix."""
    code = _code(exc) or type(exc).__name__
    head = "{0}{1} failed ({2}): {3}".format(what, " on " + objects if objects else "", code, server_error_text(exc))
    if is_transient(exc):
        why = TRANSIENT_CODES.get(_code(exc), "the connection was lost or the statement was cancelled")
        return head + ". Transient ({0}): re-run to resume".format(why)
    return head + ". This will fail again until " + what_to_fix(exc)
