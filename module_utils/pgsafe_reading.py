# -*- coding: utf-8 -*-
"""Reading a target: one READ ONLY transaction, then the connection closed, whatever happened.

Modules that only read (gates, preflight, the plan, monitoring readings) share this instead of each
writing connect / try / rollback / finally close around their reads.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def read_only_cursor(module, commit=False, **connect_kwargs):
    """A cursor in one READ ONLY transaction on the target of ``module`` (a PgsafeModule).

    ``module.connect`` fails the task naming an unreachable target.  The transaction is rolled back
    after the body, or committed with ``commit`` (monitoring: its own readings must not count as
    rollbacks); the connection is closed in every case.
    """
    conn = module.connect(read_only=True, **connect_kwargs)
    try:
        with conn.cursor() as cur:
            yield cur
        if commit:
            conn.commit()
        else:
            conn.rollback()
    finally:
        conn.close()
