# -*- coding: utf-8 -*-
"""The run's own records in the target's product schema: ``pgsafe.run`` and ``pgsafe.journal``.

One place for what the modules that keep these records share:

* ``product_records(module, **nothing)``: the connection and cursor of a module that works on the
  product's records (read only in check mode); when the product schema is not installed there is
  nothing recorded, so the module exits unchanged with ``nothing``;
* ``start_run`` / ``finish_run`` / ``mark_run``: a run's row in ``pgsafe.run``;
* ``journal_undo``: an undone step, journaled in the undoing run and in the run it undoes;
* ``journal_if_installed``: one bookkeeping line, written only where the product schema exists.
"""
from __future__ import annotations

import contextlib
import json

from ansible.module_utils.pgsafe_meta import journal, meta_schema_installed


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
