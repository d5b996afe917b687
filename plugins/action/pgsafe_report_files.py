# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action pgsafe_report_files: on the controller (a local connection, no become) the files are written here, in
the worker process, by the module's own code (module_utils/pgsafe_report_files.py): the report was rendered on
the controller and is written there, without a module start-up (Python, AnsiballZ, ansible.module_utils.basic:
about half a second a run). Anywhere else the module runs as usual."""
from __future__ import annotations

import os

import ansible.module_utils
from ansible.plugins.action import ActionBase

# The project's module_utils/ joins ansible.module_utils here, as for modules (and the filter plugins).
_UTILS = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "module_utils"))
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils.pgsafe_report_files import ARGUMENT_SPEC, argument_problem, write_report_files  # noqa: E402

LOCAL_TRANSPORTS = ("local", "ansible.builtin.local")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def _on_controller(self):
        return getattr(self._connection, "transport", None) in LOCAL_TRANSPORTS and not self._play_context.become

    def run(self, tmp=None, task_vars=None):
        if not self._on_controller():
            return self._execute_module(module_name="pgsafe_report_files", module_args=self._task.args,
                                        task_vars=task_vars)
        result = super().run(tmp, task_vars)
        _, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        mode, problem = argument_problem(params)
        if problem:
            result.update(failed=True, msg=problem, on_controller=True)
            return result
        result.update(write_report_files(params, mode, check_mode=self._task.check_mode), on_controller=True)
        return result
