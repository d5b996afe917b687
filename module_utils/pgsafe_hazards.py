# -*- coding: utf-8 -*-
"""The one vocabulary of hazards: every plan step, every schema difference and every report uses it.

A hazard is a short string from ``HAZARDS``; a step carries a sorted list of them. ``hazards_of``
turns the flag form the schema diff uses ({rewrite, scan, lock, data_loss, cast_may_fail}) into it.
Plain Python (no Ansible, no database).
"""
from __future__ import annotations

# name -> what it means for the people in the maintenance window
HAZARDS = {
    "rewrite": "the table is rewritten (time and disk grow with its size; writers wait)",
    "table_scan": "the whole table is read (time grows with its size)",
    "access_exclusive_lock": "takes ACCESS EXCLUSIVE: reads and writes of the table wait for it",
    "share_lock": "takes a SHARE (ROW EXCLUSIVE) lock: writes to the table wait for it",
    "data_loss": "data leaves the live schema (set aside in pgsafe_quarantine / pgsafe.quarantine_row, restorable)",
    "cast_may_fail": "a value may not convert to the new type (prechecked on the real data)",
    "quarantine": "rows are moved to pgsafe.quarantine_row (restorable with restore_quarantine.yml)",
    "fk_validation_scan": "a foreign key is validated: both tables are scanned under SHARE UPDATE EXCLUSIVE",
    "index_build": "an index is built (CONCURRENTLY where possible: writers keep running)",
    "column_order": "the column moves to the end of its table (SELECT * order changes)",
    "non_transactional": "runs outside a transaction (CONCURRENTLY): an interruption leaves an INVALID index, "
                         "cleaned up by the next run",
    "dependents": "other objects depend on what changes (views, foreign keys): they are dropped and recreated",
    "code_mentions_column": "a function, trigger function or event trigger mentions a changed column (the server "
                            "does not track it): review the lines the plan lists",
}


class UnknownHazard(ValueError):
    """A hazard name outside the vocabulary (a programming error, named with the list)."""


def checked(names):
    """Sorted unique hazard names; refuses any name outside ``HAZARDS``."""
    out = sorted(set(names))
    unknown = [n for n in out if n not in HAZARDS]
    if unknown:
        raise UnknownHazard("unknown hazard(s) {0}: use one of {1}".format(", ".join(unknown), ", ".join(HAZARDS)))
    return out


def hazards_of(flags):
    """The hazard names of the schema diff's flag dict {rewrite, scan, lock, data_loss, cast_may_fail}."""
    names = []
    if flags.get("rewrite"):
        names.append("rewrite")
    if flags.get("scan"):
        names.append("table_scan")
    lock = (flags.get("lock") or "").upper()
    if lock == "ACCESS EXCLUSIVE":
        names.append("access_exclusive_lock")
    elif lock.startswith("SHARE"):
        names.append("share_lock")
    if flags.get("data_loss"):
        names.append("data_loss")
    if flags.get("cast_may_fail"):
        names.append("cast_may_fail")
    return checked(names)


def describe(names):
    """[{hazard, meaning}] for reports."""
    return [{"hazard": n, "meaning": HAZARDS[n]} for n in checked(names)]
