# -*- coding: utf-8 -*-
"""The run's own records in the target's product schema: ``pgsafe.run`` and ``pgsafe.journal``.

One place for what the modules that keep these records share:

* ``product_records(module, **nothing)``: the connection and cursor of a module that works on the
  product's records (read only in check mode); when the product schema is not installed there is
  nothing recorded, so the module exits unchanged with ``nothing``;
* ``start_run`` / ``finish_run`` / ``mark_run``: a run's row in ``pgsafe.run``;
* ``record_start`` / ``record_end``: a module's whole run record (connection, product schema installed or
  upgraded, the row, commit): pgsafe_run, and pgsafe_preflight once its checks passed;
* ``read_journal``: a run's journal lines, in order (the report's "what changed, and how to undo it");
* ``journal_undo``: an undone step, journaled in the undoing run and in the run it undoes;
* ``journal_if_installed``: one bookkeeping line, written only where the product schema exists.
"""
from __future__ import annotations

import contextlib
import json

from ansible.module_utils.pgsafe_meta import ensure_meta_schema, journal, meta_schema_installed


@contextlib.contextmanager
def product_records(module, **nothing):
    """(conn, cur) on the target of ``module`` (a PgsafeModule), read only in check mode, closed after.

    Without the product schema nothing was ever recorded: the module exits ``changed=False`` with
    ``nothing`` (its documented empty result) before the body runs.
    """
    conn = module.connect(read_only=module.check_mode)
    try:
        with conn.cursor() as cur:
            if not meta_schema_installed(cur):
                module.exit_json(changed=False, **nothing)
            yield conn, cur
    finally:
        conn.close()


def start_run(cur, run_id, playbook, environment, operator=None, awx_job_id=None, details=None):
    """The run's row (an existing one is kept: a re-recorded start changes nothing)."""
    cur.execute("INSERT INTO pgsafe.run (run_id, playbook, environment, operator, awx_job_id, details) "
                "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (run_id) DO NOTHING",
                (run_id, playbook, environment, operator, awx_job_id, _json(details)))


def finish_run(cur, run_id, status, details=None):
    """The run's end: its status, when it finished, ``details`` merged into its own."""
    cur.execute("UPDATE pgsafe.run SET status = %s, finished_at = now(), details = details || %s::jsonb "
                "WHERE run_id = %s", (status, _json(details), run_id))


def mark_run(cur, run_id, status):
    """A later verdict on a finished run (``rolled_back``); its end time stays."""
    cur.execute("UPDATE pgsafe.run SET status = %s WHERE run_id = %s", (status, run_id))


JOURNAL_OF_RUN = ("SELECT step, object, status, details, rollback_sql, at::text FROM pgsafe.journal "
                  "WHERE run_id = %s ORDER BY id")


def read_journal(cur, run_id):
    """The run's journal lines in order, as dicts (step, object, status, details, rollback_sql, at);
    [] where there is no journal table yet."""
    cur.execute("SELECT to_regclass('pgsafe.journal') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    cur.execute(JOURNAL_OF_RUN, (run_id,))
    names = [column[0] for column in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def install_product_schema(module, conn, cur, **failure):
    """The product schema installed or upgraded (True when this call created it); fails the task naming the
    grant when the login may not (``failure``: more keys of that failed result)."""
    import psycopg2.errors

    p = module.params
    try:
        return ensure_meta_schema(cur)
    except psycopg2.errors.InsufficientPrivilege as exc:
        conn.rollback()
        module.fail_json(msg="cannot install the product schema pgsafe in {0}: {1}. Grant CREATE on the "
                             "database to {2}, or have a DBA run the product schema DDL once "
                             "(module_utils/pgsafe_meta.py) and give the schema to {2}".format(
                                 p["login_db"], str(exc).strip(), p["login_user"]), **failure)
    return False  # not reached: fail_json exits


def record_start(module, run_id, playbook, environment, operator=None, awx_job_id=None, details=None):
    """The run's start recorded on ``module``'s target (product schema installed first); True when this call
    installed the product schema."""
    conn = module.connect()
    try:
        with conn.cursor() as cur:
            created = install_product_schema(module, conn, cur)
            start_run(cur, run_id, playbook, environment, operator, awx_job_id, details)
        conn.commit()
    finally:
        conn.close()
    return created


def record_end(module, run_id, status, details=None, with_journal=False):
    """The run's end recorded on ``module``'s target: (product schema installed by this call, the run's journal
    or None). With ``with_journal`` the journal is read first, in the same transaction, and becomes the
    ``journal`` of ``details["report_document"]`` (when there is one) as it is recorded; a journal that
    cannot be read is [] (with a warning), and a failure to record still returns it."""
    import psycopg2

    details = dict(details or {})
    conn = module.connect()
    try:
        with conn.cursor() as cur:
            rows = None
            if with_journal:
                try:
                    rows = read_journal(cur, run_id)
                except psycopg2.Error as exc:
                    conn.rollback()
                    module.warn("the run's journal could not be read: {0}".format(str(exc).strip()))
                    rows = []
                if isinstance(details.get("report_document"), dict):
                    details["report_document"] = dict(details["report_document"], journal=rows)
            created = install_product_schema(module, conn, cur, **({} if rows is None else {"journal": rows}))
            finish_run(cur, run_id, status, details)
        conn.commit()
    finally:
        conn.close()
    return created, rows


def journal_undo(cur, rollback_run_id, undone_run_id, action):
    """An undone step (``action``: journal_id, object, action, outcome) in both runs' journals.

    The undoing run's line says what was done; the undone run's line marks the step as undone, so a
    rollback interrupted half-way resumes where it stopped (``plan_rollback`` skips it).
    """
    step = "rollback:{0}".format(action["journal_id"])
    journal(cur, rollback_run_id, step, "completed", obj=action["object"],
            details={"undoes_run": undone_run_id, "action": action["action"], "outcome": action.get("outcome")})
    journal(cur, undone_run_id, step, "completed", obj=action["object"],
            details={"rollback_run_id": rollback_run_id})


def journal_if_installed(conn, run_id, step, status, obj=None, details=None):
    """One journal line where the product schema exists (bookkeeping: the target's data is not touched); commits.

    Returns whether it was written.
    """
    with conn.cursor() as cur:
        installed = meta_schema_installed(cur)
        if installed:
            journal(cur, run_id, step, status, obj, details)
    conn.commit()
    return installed


def _json(details):
    return json.dumps(details or {}, sort_keys=True, default=str)
