# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Callback pgsafe_progress: long work shows progress in the console (and in AWX's job output).

Modules doing long work (dumps, restore tests, backfills, fingerprints) write progress records
(module_utils/pgsafe_progress.py) under this controller's pid; while a task runs, this callback
prints each record updated since the last tick, every PGSAFE_PROGRESS_SECONDS (default 30):

    pgsafe progress: pg_dump of bazaar_vid: 1.2 GB of ~3.4 GB (35%), about 40 s left, 22 s so far

Beside the playbooks (callback_plugins/ next to a playbook is always searched, ansible-runner and AWX
included, whose environment replaces ansible.cfg's callback_plugins), and needs no enabling.
"""
from __future__ import annotations

import os
import shutil
import threading
import time

import ansible.module_utils
from ansible.plugins.callback import CallbackBase

_UTILS = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "module_utils"))
if _UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_UTILS)

from ansible.module_utils.pgsafe_progress import describe, progress_root, read_records  # noqa: E402

DOCUMENTATION = r"""
name: pgsafe_progress
type: notification
short_description: Print the progress of pgsafe's long work every 30 seconds
description:
  - Prints the progress records of the modules of this run (bytes or rows done of total, an estimate of
    the time left) at least every C(PGSAFE_PROGRESS_SECONDS) seconds while a task runs.
requirements:
  - the modules run where the controller runs (local connection, the usual way to reach hosted databases)
"""


class CallbackModule(CallbackBase):
    """Progress of long work, printed from a background thread of the controller."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "pgsafe_progress"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self):
        super().__init__()
        self._interval = max(float(os.environ.get("PGSAFE_PROGRESS_SECONDS", "30")), 0.5)
        self._directory = os.path.join(progress_root(), str(os.getpid()))
        self._stop = threading.Event()
        self._thread = None
        self._last = time.time()

    def _tick(self):
        while not self._stop.wait(self._interval):
            since, self._last = self._last, time.time()
            for record in read_records(self._directory, newer_than=since):
                self._display.display("pgsafe progress: " + describe(record))

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="pgsafe-progress", daemon=True)
            self._thread.start()

    def v2_playbook_on_stats(self, stats):
        self._stop.set()
        shutil.rmtree(self._directory, ignore_errors=True)
