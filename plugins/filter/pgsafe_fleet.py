# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters pgsafe_fleet_one_plan and pgsafe_fleet_report: a fleet's one plan, and its report, decided in Python.

    fleet_plan_check: "{{ hosts | map('extract', hostvars, 'fleet_planned') | pgsafe_fleet_one_plan(hosts, canary) }}"
    fleet_report_document: "{{ fleet | pgsafe_fleet_report(members, reports, databases) }}"

The decisions live in module_utils/pgsafe_fleet.py (unit-tested without Ansible).
"""
from __future__ import annotations

import os

import ansible.module_utils
from ansible.errors import AnsibleFilterError

# The project's module_utils/ joins ansible.module_utils here, as for modules (and the progress callback).
_UTILS = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "module_utils"))
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils.pgsafe_fleet import fleet_document, one_plan  # noqa: E402


def pgsafe_fleet_one_plan(planned, hosts, canary):
    """Whether the fleet's databases share one plan (see pgsafe_fleet.one_plan)."""
    try:
        return one_plan(list(planned), list(hosts), canary)
    except ValueError as exc:
        raise AnsibleFilterError("pgsafe_fleet_one_plan: {0}".format(exc)) from exc


def pgsafe_fleet_report(fleet, members, reports, databases):
    """The fleet report's document (see pgsafe_fleet.fleet_document)."""
    try:
        return fleet_document(dict(fleet), dict(members), dict(reports), dict(databases))
    except ValueError as exc:
        raise AnsibleFilterError("pgsafe_fleet_report: {0}".format(exc)) from exc


class FilterModule:  # pylint: disable=too-few-public-methods
    """pgsafe's fleet filters."""

    def filters(self):
        return {"pgsafe_fleet_one_plan": pgsafe_fleet_one_plan, "pgsafe_fleet_report": pgsafe_fleet_report}
