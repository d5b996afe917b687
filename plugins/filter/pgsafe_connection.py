# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter pgsafe_connection: a host's connection options, built from that host's own pg_* variables.

    module_defaults: {pgsafe_backup: "{{ hostvars[inventory_hostname] | pgsafe_connection }}"}
    scratch: "{{ hostvars['staging'] | pgsafe_connection }}"
"""
from __future__ import annotations

import os

import ansible.module_utils
from ansible.errors import AnsibleFilterError

# The project's module_utils/ joins ansible.module_utils here, as for modules (and the progress callback).
_UTILS = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "module_utils"))
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils.pgsafe_connection import connection_from_host_vars  # noqa: E402


def pgsafe_connection(host_vars, lock_timeout=None, statement_timeout=None):
    """Connection options (login_host, login_port, ...) of the host whose variables are given."""
    if not hasattr(host_vars, "get"):
        raise AnsibleFilterError("pgsafe_connection takes a host's variables (hostvars['<host>']), got {0}".format(
            type(host_vars).__name__))
    if host_vars.get("pg_host") in (None, "") and host_vars.get("pg_database") in (None, ""):
        raise AnsibleFilterError("pgsafe_connection: this host has neither pg_host nor pg_database set: give the "
                                 "inventory host its pg_host, pg_port, pg_user, pg_password and pg_database")
    return connection_from_host_vars(host_vars, lock_timeout, statement_timeout)


class FilterModule:  # pylint: disable=too-few-public-methods
    """pgsafe's filters."""

    def filters(self):
        return {"pgsafe_connection": pgsafe_connection}
