# -*- coding: utf-8 -*-
"""Progress of long work (dumps, restores, backfills, fingerprints), for the console and AWX.

A module doing long work writes a small JSON record (what, done, total, unit, started) to a file;
the controller's callback (playbooks/callback_plugins/pgsafe_progress.py) prints every progress
record of its own run at least every 30 seconds while a task runs:

    pgsafe progress: pg_dump of app@db:5432/bazaar_vid: 1.2 GB of ~3.4 GB (35%), about 40 s left

The file lives in ``<progress root>/<controller pid>/`` so two runs on one machine never show each
other's progress; the module finds the controller (ansible-playbook) among its ancestors.  With a
runner host over SSH the record is written there and nothing is shown (the work is unchanged).

Plain Python: no Ansible import (ansible.module_utils is only where the shared helpers live).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time

from ansible.module_utils.pgsafe_run_lock import controller_pid
from ansible.module_utils.pgsafe_sizes import human_bytes

WRITE_EVERY_SECONDS = 1.0


def progress_root():
    """Where progress records go (PGSAFE_PROGRESS_DIR, else a per-user directory under the temp dir)."""
    return os.environ.get("PGSAFE_PROGRESS_DIR") or os.path.join(
        tempfile.gettempdir(), "pgsafe-progress-{0}".format(os.getuid()))


def human(amount, unit):
    return human_bytes(amount) if unit == "bytes" else "{0:,} {1}".format(int(amount), unit)


def describe(record, now=None):
    """One line for a progress record: what, done of total, percent and an estimate of the time left."""
    now = time.time() if now is None else now
    done, total, unit = record.get("done") or 0, record.get("total"), record.get("unit") or "rows"
    started = record.get("started")
    elapsed = max(now - float(now if started is None else started), 0.0)
    text = "{0}: {1}".format(record.get("what", "work"), human(done, unit))
    if total:
        text += " of {0}{1} ({2:.0f}%)".format("~" if record.get("estimated") else "", human(total, unit),
                                                min(100.0, 100.0 * done / total))
        if 0 < done < total and elapsed >= 1:
            left = elapsed * (total - done) / done
            text += ", about {0} left".format(_duration(left))
    if record.get("note"):
        text += " " + record["note"]
    text += ", {0} so far".format(_duration(elapsed))
    return text


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 90:
        return "{0} s".format(seconds)
    if seconds < 5400:
        return "{0} min".format(int(round(seconds / 60.0)))
    return "{0:.1f} h".format(seconds / 3600.0)


class Progress:
    """A progress record of one piece of long work; a context manager that removes it when done."""

    def __init__(self, what, total=None, unit="rows", estimated=False, note=None, root=None, controller=None):
        self.record = {"what": what, "done": 0, "total": total, "unit": unit, "estimated": bool(estimated),
                       "note": note, "started": time.time()}
        owner = controller if controller is not None else controller_pid()
        self.path = None
        if owner:
            directory = os.path.join(root or progress_root(), str(owner))
            try:
                os.makedirs(directory, mode=0o700, exist_ok=True)
                self.path = os.path.join(directory, "{0}-{1}.json".format(os.getpid(), id(self)))
            except OSError:
                self.path = None  # progress is a courtesy: never a reason to fail the work
        self._written = 0.0

    def update(self, done, total=None, force=False):
        self.record["done"] = done
        if total is not None:
            self.record["total"] = total
        now = time.time()
        if self.path and (force or now - self._written >= WRITE_EVERY_SECONDS):
            self._written = now
            self.record["updated"] = now
            temporary = self.path + ".tmp"
            try:
                with open(temporary, "w") as handle:
                    json.dump(self.record, handle)
                os.replace(temporary, self.path)
            except OSError:
                pass

    def advance(self, amount):
        self.update(self.record["done"] + amount)

    def close(self):
        if self.path:
            for path in (self.path, self.path + ".tmp"):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def __enter__(self):
        self.update(0, force=True)
        return self

    def __exit__(self, *exc):
        self.close()
        return False


@contextlib.contextmanager
def watching(progress, measure, interval=1.0):
    """While the block runs, a background thread updates ``progress`` with ``measure()`` every ``interval``."""
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            try:
                progress.update(measure())
            except Exception:  # noqa: BLE001,S110 - a failed measurement never stops the work
                pass

    thread = threading.Thread(target=loop, name="pgsafe-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join(timeout=interval + 5)


def row_estimate(cur, table):
    """The planner's row estimate of ``table`` (a quoted ``"schema"."name"``): the total of a table's progress."""
    cur.execute("SELECT GREATEST(c.reltuples::bigint, coalesce(s.n_live_tup, 0)) FROM pg_catalog.pg_class c "
                "LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = %s::regclass", (table,))
    row = cur.fetchone()
    return int(row[0]) if row and row[0] and row[0] > 0 else None


def directory_bytes(path):
    """Bytes of the files under ``path`` (a dump directory as it grows)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(folder, name))
            except OSError:
                pass
    return total


def read_records(directory, newer_than=0.0):
    """The progress records in ``directory`` updated after ``newer_than`` (for the callback)."""
    records = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return records
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name)) as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            continue
        if float(record.get("updated") or record.get("started") or 0) >= newer_than:
            records.append(record)
    return records
