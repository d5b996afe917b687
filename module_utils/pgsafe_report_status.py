# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status of a report section, and of a run, decided in one place.

Every role leaves a ``<role>_report_section`` fact whose ``status`` is one of STATUSES.  The roles say
what they observed (nothing to do, check mode with work to do, something changed, ...); the decision is
made here, with one fixed precedence, instead of in nested Jinja ternaries in each role:

    skipped > failed > converged > planned > changed > partial > ok > otherwise

``otherwise`` (default ``ok``) is the status when none of the conditions holds.
"""
from __future__ import annotations

# Highest precedence first.
STATUSES = ("skipped", "failed", "converged", "planned", "changed", "partial", "ok")
RUN_STATUSES = ("succeeded", "failed", "planned")
_TRUE = ("true", "yes", "on", "1", "y", "t")
_FALSE = ("false", "no", "off", "0", "n", "f", "", "none", "null")


def as_bool(value) -> bool:
    """A condition as Jinja hands it over: a bool, a number, a string ('True', 'false', ...) or a collection."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    return bool(value)


def section_status(conditions: dict, otherwise: str = "ok") -> str:
    """The section's status: the first of STATUSES whose condition holds, else ``otherwise``."""
    unknown = sorted(set(conditions) - set(STATUSES))
    if unknown:
        raise ValueError(f"unknown status condition(s) {', '.join(unknown)}: use {', '.join(STATUSES)}")
    if otherwise not in STATUSES:
        raise ValueError(f"otherwise must be one of {', '.join(STATUSES)}, got {otherwise!r}")
    for status in STATUSES:
        if as_bool(conditions.get(status, False)):
            return status
    return otherwise


def run_status(status: str, check_mode=False) -> str:
    """The run's overall status: a --check run that would succeed is 'planned', never 'succeeded'."""
    if status not in RUN_STATUSES:
        raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, got {status!r}")
    if status == "succeeded" and as_bool(check_mode):
        return "planned"
    return status
