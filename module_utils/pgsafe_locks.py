# -*- coding: utf-8 -*-
"""Strong locks, taken one way: validated LOCK TABLE statements and bounded retries on lock timeouts.

Every engine that takes a strong lock (type change, table retire, schema removal, merge) builds its
``LOCK TABLE`` here (only the known modes; identifiers quoted) and runs the transaction that needs it
through :func:`run_with_retries`: the session's ``lock_timeout`` bounds each wait, a lock timeout or a
deadlock rolls the transaction back and retries after a bounded, doubling pause, and the last failure
fails closed (:class:`LockRetriesExhausted`, nothing changed).  Every attempt is logged.
"""
from __future__ import annotations

import time

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = None
    sql = None

from ansible.module_utils.pgsafe_failures import LOCK_CONFLICT_CODES

# Retried in place: a lock timeout or a deadlock (the failure classification's lock conflicts, one list).
RETRYABLE = LOCK_CONFLICT_CODES
LOCK_MODES = ("ACCESS EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE")
DEFAULT_BACKOFF = 0.5
DEFAULT_BACKOFF_MAX = 5.0


class LockError(Exception):
    """A lock cannot be taken as asked; the message names the table and the fix."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


class LockRetriesExhausted(LockError):
    """lock_timeout fired on every attempt: failed closed."""


def backoff_delays(retries, base, maximum):
    """Sleep before each retry: base * 2**n, capped (bounded schedule)."""
    return [min(base * (2 ** n), maximum) for n in range(max(0, retries))]


def lock_statements(keyed_modes):
    """``LOCK TABLE`` of each ((schema, table), mode), in the given order; only the modes of LOCK_MODES."""
    for _key, mode in keyed_modes:
        if mode not in LOCK_MODES:
            raise LockError("unknown lock mode {0!r}".format(mode))
    return [sql.SQL("LOCK TABLE {0} IN " + mode + " MODE").format(sql.Identifier(*key)) for key, mode in keyed_modes]


def lock_tables(cur, keyed_modes):
    """LOCK TABLE each (key, mode), in the given order (waits at most lock_timeout each)."""
    for stmt in lock_statements(keyed_modes):
        cur.execute(stmt)


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


def retry_on_lock(attempt, retries, backoff, backoff_max, attempts_log, what, undo=None):
    """Call attempt(); on a lock timeout or deadlock call undo(), sleep and retry; then fail closed.

    Any other database error is raised at once (after undo).  ``attempts_log`` receives one entry per
    attempt: step, attempt, outcome (ok or the SQLSTATE), started_at, seconds (and the error).
    """
    delays = backoff_delays(retries, backoff, backoff_max)
    for n in range(retries + 1):
        started = time.monotonic()
        wall = time.time()
        try:
            result = attempt()
        except psycopg2.Error as exc:
            if undo is not None:
                undo()
            code = getattr(exc, "pgcode", None)
            attempts_log.append({"step": what, "attempt": n + 1, "outcome": code or "error",
                                 "started_at": round(wall, 3), "seconds": round(time.monotonic() - started, 3),
                                 "error": _first_line(exc)})
            if code not in RETRYABLE:
                raise
            if n == retries:
                raise LockRetriesExhausted(
                    "{0}: the lock was not obtained within lock_timeout on {1} attempt(s); failed closed, nothing "
                    "changed. Find the blocking session (pg_stat_activity / pg_locks), or retry in a quieter window "
                    "/ raise retries".format(what, retries + 1), attempts=list(attempts_log)) from None
            time.sleep(delays[n])
            continue
        attempts_log.append({"step": what, "attempt": n + 1, "outcome": "ok", "started_at": round(wall, 3),
                             "seconds": round(time.monotonic() - started, 3)})
        return result
    raise AssertionError("unreachable")  # pragma: no cover


def run_with_retries(conn, work, retries, backoff=DEFAULT_BACKOFF, backoff_max=DEFAULT_BACKOFF_MAX,
                     attempts_log=None, what="transaction"):
    """Run work(cur) in a transaction of its own and commit; lock timeouts/deadlocks retried (retry_on_lock)."""
    def attempt():
        with conn.cursor() as cur:
            result = work(cur)
        conn.commit()
        return result
    return retry_on_lock(attempt, retries, backoff, backoff_max, [] if attempts_log is None else attempts_log,
                         what, undo=conn.rollback)


def check_retries(retries, most=20):
    """The retry count an operator gave, bounded (None when fine, else the message)."""
    if retries < 0 or retries > most:
        return "retries must be between 0 and {0} (bounded retries)".format(most)
    return None


def run_step(conn, work, retries=0, attempts_log=None, what="transaction", dry_run=False):
    """One step of a module in a transaction of its own: committed through run_with_retries, or rolled back when
    ``dry_run`` (check mode).  Any failure rolls the transaction back before it is raised."""
    if dry_run:
        try:
            with conn.cursor() as cur:
                return work(cur)
        finally:
            conn.rollback()
    try:
        return run_with_retries(conn, work, retries, attempts_log=attempts_log, what=what)
    except Exception:
        conn.rollback()
        raise


def lock_retries_option():
    """The option of every module that takes strong locks: bounded retries after a lock timeout or deadlock."""
    return dict(lock_retries=dict(type="int", default=0))


def locking_connection(module, retries_option="lock_retries"):
    """The connection of a module that takes strong locks: its retries checked (bounded), its ``lock_timeout``
    set on the session, READ ONLY in check mode."""
    problem = check_retries(module.params[retries_option])
    if problem:
        module.fail_json(msg=problem)
    return module.connect(read_only=module.check_mode, settings={"lock_timeout": module.params["lock_timeout"]})
