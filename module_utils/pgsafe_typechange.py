# -*- coding: utf-8 -*-
"""Safe column type changes: apply a planned unit (rewrite or online), quarantine, validate, journal.

The exports fix of Sprint 90: bring columns across related tables to declared types in one planned
unit, then create and validate the foreign keys the code declares.  Order of a unit:

    precheck (read only) -> drop FKs on the changed columns -> convert parents and children together
    -> recreate / add FKs NOT VALID -> VALIDATE each FK (short, weak locks)

The parts, one job each: pgsafe_typechange_parse (the declared changes), pgsafe_typechange_facts (catalog),
pgsafe_typechange_plan (the plan, its steps and statements; plan and precheck of one unit),
pgsafe_typechange_precheck (the real data), pgsafe_typechange_orphans (rows set aside),
pgsafe_typechange_sql (SQL pieces), pgsafe_typechange_rewrite / pgsafe_typechange_online (the strategies),
pgsafe_typechange_rollback (rollback SQL); locks and retries in pgsafe_locks, quarantined rows in
pgsafe_quarantine.  This file holds the Runner: the plumbing both strategies share.
"""
from __future__ import annotations

import json
import threading

from ansible.module_utils.pgsafe_content_hash import EMPTY_HASH, add_hashes
from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_locks import run_with_retries
from ansible.module_utils.pgsafe_typechange_online import OnlineStrategy
from ansible.module_utils.pgsafe_typechange_orphans import quarantine_rows, quarantine_set
from ansible.module_utils.pgsafe_typechange_parse import TypeChangeError
from ansible.module_utils.pgsafe_typechange_rewrite import RewriteStrategy
from ansible.module_utils.pgsafe_typechange_rollback import rollback_sql
from ansible.module_utils.pgsafe_typechange_backfill import clone_connection, close_sessions
from ansible.module_utils.pgsafe_typechange_sql import table_hash, unit_lock_plan, validate_fk_groups

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    from psycopg2 import errors as pg_errors
except ImportError:  # pragma: no cover
    pg_errors = None


MAX_VALIDATION_SESSIONS = 3  # referencing tables validated side by side at most


def _validate_one(conn, stmt, settings_cb, attempts, retries, backoff, backoff_max, what):
    """One VALIDATE in a transaction of its own (the step's settings, bounded retries on lock timeouts)."""
    def work(cur):
        settings_cb(cur)
        cur.execute(stmt)
    run_with_retries(conn, work, retries, backoff, backoff_max, attempts, what)


def _validate_group(conn, group, settings_cb, attempts, retries, backoff, backoff_max):
    """VALIDATE each FK of one group in order on ``conn``: (names done, names that found a violating row)."""
    done, violated = [], []
    for name, stmt in group:
        try:
            _validate_one(conn, stmt, settings_cb, attempts, retries, backoff, backoff_max, "validate " + name)
            done.append(name)
        except pg_errors.ForeignKeyViolation:
            conn.rollback()
            violated.append((name, stmt))
    return done, violated


def _sessions_for(conn, groups, connect):
    """One session per group: the run's own for the first, new ones (at most MAX_VALIDATION_SESSIONS in all) for
    the others when ``connect`` gives them and ``conn`` has no transaction open (cloning reads its settings)."""
    sessions = [conn] * len(groups)
    if connect is None or conn.get_transaction_status() != 0:  # psycopg2.extensions.TRANSACTION_STATUS_IDLE
        return sessions, []
    extra = []
    for n in range(1, min(len(groups), MAX_VALIDATION_SESSIONS)):
        try:
            sessions[n] = connect()
        except Exception:  # noqa: BLE001 - slower, not less safe: the group on the run's own session
            break
        extra.append(sessions[n])
    return sessions, extra


def validate_fks(conn, plan, settings_cb, attempts, retries, backoff, backoff_max, on_failure=None, connect=None):
    """VALIDATE each FK added NOT VALID (SHARE UPDATE EXCLUSIVE: writes continue); the FKs of different referencing
    tables side by side on sessions of their own when ``connect`` gives them (``validate_fk_groups``).  An FK that
    finds a violating row (written after the orphan scan) is handed to ``on_failure`` (which sets the rows aside)
    and validated again on ``conn`` after the others; without ``on_failure`` the change fails there."""
    groups = validate_fk_groups(plan)
    sessions, extra = _sessions_for(conn, groups, connect)
    results, errors = [None] * len(groups), []

    def run(n):
        try:
            results[n] = _validate_group(sessions[n], groups[n], settings_cb, attempts, retries, backoff, backoff_max)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(n,), daemon=True, name="pgsafe-validate-{0}".format(n))
               for n in range(len(groups)) if sessions[n] is not conn]
    try:
        for thread in threads:
            thread.start()
        for n in range(len(groups)):
            if sessions[n] is conn:
                run(n)
    finally:
        for thread in threads:
            thread.join()
        close_sessions(extra)
    if errors:
        raise errors[0]
    done = [name for names, _violated in results for name in names]
    for name, stmt in [v for _names, violated in results for v in violated]:
        if on_failure is None:
            raise TypeChangeError("VALIDATE of {0} found a row without its parent: set those rows aside or fix them, "
                                  "then re-run".format(name))
        on_failure(name)
        _validate_one(conn, stmt, settings_cb, attempts, retries, backoff, backoff_max,
                      "validate " + name + " (after rescan)")
        done.append(name)
    return done


class Runner(RewriteStrategy, OnlineStrategy):
    """Applies a plan on a live connection (autocommit off), journaling each step."""

    def __init__(self, conn, plan, run_id, orphan_policy="fail", lock_timeout="3s", statement_timeout=None,
                 retries=3, backoff=0.5, backoff_max=5.0, batch_size=5000, throttle_ms=0, verify=True,
                 progress=None, batch_target_ms=40):
        self.conn, self.plan, self.run_id = conn, plan, run_id
        self.orphan_policy = orphan_policy
        self.lock_timeout, self.statement_timeout = lock_timeout, statement_timeout
        self.retries, self.backoff, self.backoff_max = retries, backoff, backoff_max
        self.batch_size, self.throttle_ms, self.verify = batch_size, throttle_ms, verify
        self.batch_target_ms = batch_target_ms
        self.attempts, self.moved, self.events = [], {}, []
        self.progress = progress or (lambda msg: None)
        self.facts = plan["_facts"]["tables"]
        self.rollback = rollback_sql(plan, run_id)
        self.counts = {}

    def settings(self, cur):
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(self.lock_timeout),))
        if self.statement_timeout:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(self.statement_timeout),))

    def journal(self, step, status, obj=None, details=None, rollback=None, cur=None, conn=None):
        """One journal row: in ``cur``'s transaction, or in a transaction of its own on ``conn`` (the Runner's
        connection by default; the online strategy's other sessions pass theirs)."""
        from ansible.module_utils.pgsafe_meta import journal as write
        if cur is not None:
            write(cur, self.run_id, step, status, obj, details, rollback)
            return
        conn = conn or self.conn
        with conn.cursor() as c:
            write(c, self.run_id, step, status, obj, details, rollback)
        conn.commit()

    def txn(self, what, work, conn=None):
        """work(cur) in a transaction of its own on ``conn`` (default the Runner's), with the step's settings and
        bounded retries on lock timeouts."""
        def wrapped(cur):
            self.settings(cur)
            return work(cur)
        return run_with_retries(conn or self.conn, wrapped, self.retries, self.backoff, self.backoff_max,
                                self.attempts, what)

    def changed_tables(self):
        out = []
        for c in self.plan["changes"]:
            key = (c["schema"], c["table"])
            if (c["needs_type"] or c["needs_default"] or c["needs_not_null"]) and key not in out:
                out.append(key)
        return out

    def lock_plan(self):
        return unit_lock_plan(self.plan)

    def hash_tables(self, cur, keys, after=False):
        return {qualified(*k): table_hash(cur, k[0], k[1], list(self.facts[k]["columns"]), self.plan["changes"],
                                          after=after) for k in keys}

    def quarantine(self, cur):
        qset = quarantine_set(cur, self.plan)
        if not qset:
            return {}
        if self.orphan_policy != "quarantine":
            listing = "; ".join("{0}: {1} row(s) ({2}) e.g. {3}".format(
                qualified(*k), len(p), "; ".join(r), json.dumps(p[:5], sort_keys=True)) for k, p, r in qset)
            raise TypeChangeError("orphan rows found and orphan_policy is fail: " + listing +
                                  ". Fix the data or set orphan_policy: quarantine; nothing changed")
        moved = quarantine_rows(cur, self.plan, qset, self.run_id)
        for name, m in moved.items():
            prev = self.moved.get(name, {"rows": 0, "hash": EMPTY_HASH})
            self.moved[name] = dict(m, rows=prev["rows"] + m["rows"], hash=add_hashes(prev["hash"], m["hash"]))
        return moved

    def rescan_and_quarantine(self, fk_name):
        self.events.append("VALIDATE of {0} found rows inserted after the scan: re-scan".format(fk_name))
        self.txn("quarantine (rescan after {0})".format(fk_name), self.quarantine)

    def validate(self):
        done = validate_fks(self.conn, self.plan, self.settings, self.attempts, self.retries, self.backoff,
                            self.backoff_max, on_failure=self.rescan_and_quarantine,
                            connect=lambda: clone_connection(self.conn))
        for name in done:
            self.journal("fk:validate", "completed", name)
        return done

    def _journal_failure(self, step, exc):
        try:
            self.conn.rollback()
            self.journal(step, "failed", None, {"error": str(exc).strip()[:2000]})
        except Exception as err:  # noqa: BLE001 - the connection may be gone (terminated backend); the server rolled back
            self.events.append("could not journal the failure: {0}".format(str(err).strip()[:200]))


def ensure_typechange_schema(cur):
    """Nothing beyond pgsafe_meta's schema is needed; kept as the hook for later versions."""
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    return ensure_meta_schema(cur)
