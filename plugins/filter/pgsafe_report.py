# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters pgsafe_report_status and pgsafe_run_status: a report section's status, and a run's, decided in Python.

    status: "{{ {'failed': monitor_result.breaches | length > 0, 'changed': monitor_result.kind == 'baseline'}
                | pgsafe_report_status }}"
    status: "{{ {'planned': ansible_check_mode} | pgsafe_report_status('changed') }}"
    status: "{{ run_report_status | pgsafe_run_status(ansible_check_mode) }}"

Precedence: skipped > failed > converged > planned > changed > partial > ok > the fallback (module_utils/
pgsafe_report_status.py).
"""
from __future__ import annotations

import os

import ansible.module_utils
from ansible.errors import AnsibleFilterError

# The project's module_utils/ joins ansible.module_utils here, as for modules (and the progress callback).
_UTILS = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "module_utils"))
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils.pgsafe_report_status import run_status, section_status  # noqa: E402


def pgsafe_report_status(conditions, otherwise="ok"):
    """The status of a report section from its conditions ({'failed': ..., 'planned': ..., ...})."""
    if not hasattr(conditions, "items"):
        raise AnsibleFilterError("pgsafe_report_status takes a dict of conditions ({{'failed': ..., 'changed': ...}}), "
                                 "got {0}".format(type(conditions).__name__))
    try:
        return section_status(dict(conditions), otherwise)
    except ValueError as exc:
        raise AnsibleFilterError("pgsafe_report_status: {0}".format(exc)) from exc


def pgsafe_run_status(status, check_mode=False):
    """The run's overall status (succeeded, failed; planned for a --check run that would succeed)."""
    try:
        return run_status(status, check_mode)
    except ValueError as exc:
        raise AnsibleFilterError("pgsafe_run_status: {0}".format(exc)) from exc


class FilterModule:  # pylint: disable=too-few-public-methods
    """pgsafe's report filters."""

    def filters(self):
        return {"pgsafe_report_status": pgsafe_report_status, "pgsafe_run_status": pgsafe_run_status}
