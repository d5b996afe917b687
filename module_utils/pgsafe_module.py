# -*- coding: utf-8 -*-
"""The one way a pgsafe module runs (community.postgresql's shape).

``PgsafeModule`` is an AnsibleModule with the shared connection options already in its
argument spec; ``connect`` fails the task with a message naming the target (never the
password); every result carries ``queries``, the statements its connections ran.
"""
from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgsafe_connection import ConnectionFailure, connect, connection_argument_spec, \
    executed_queries


class PgsafeModule(AnsibleModule):
    """AnsibleModule + the connection options + ``queries`` in every result."""

    def __init__(self, argument_spec=None, **kwargs):
        super().__init__(argument_spec=connection_argument_spec(**(argument_spec or {})), **kwargs)

    def connect(self, params=None, **kwargs):
        """A psycopg2 connection to ``params`` (default this module's own); fails the task when unreachable."""
        try:
            return connect(self.params if params is None else params, **kwargs)
        except ConnectionFailure as exc:
            self.fail_json(msg=str(exc))
        return None  # not reached: fail_json exits

    def diff_of(self, before, after):
        """A ``diff`` entry for --diff runs (None otherwise)."""
        return {"before": before, "after": after} if self._diff else None

    def exit_json(self, **result):
        result.setdefault("queries", executed_queries())
        if result.get("diff") is None:
            result.pop("diff", None)
        super().exit_json(**result)
