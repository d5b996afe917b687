"""run_over_cursors: every item once, in order of taking, never two threads on one cursor, errors stop the rest."""
from __future__ import annotations

import threading
import time

import pytest

from ansible.module_utils.pgsafe_parallel import run_over_cursors


class Cursor:
    def __init__(self, name):
        self.name = name
        self.busy = threading.Lock()
        self.items = []


def test_every_item_once_results_in_item_order_and_all_cursors_work():
    cursors = [Cursor("a"), Cursor("b"), Cursor("c")]
    overlaps = []

    def work(cur, item):
        if not cur.busy.acquire(blocking=False):
            overlaps.append(cur.name)
            return None
        try:
            cur.items.append(item)
            time.sleep(0.002 * (item % 3))
            return (item, cur.name)
        finally:
            cur.busy.release()

    results = run_over_cursors(cursors, range(30), work)
    assert [r[0] for r in results] == list(range(30))
    assert sorted(i for c in cursors for i in c.items) == list(range(30))
    assert not overlaps
    assert all(c.items for c in cursors)  # the work was spread


def test_first_error_is_raised_after_every_thread_stopped_and_no_new_item_is_taken():
    cursors = [Cursor("a"), Cursor("b")]
    started, done = [], []

    def work(cur, item):
        started.append(item)
        if item == 2:
            raise ValueError("table 2 is gone")
        time.sleep(0.01)
        done.append(item)
        return item

    with pytest.raises(ValueError, match="table 2 is gone"):
        run_over_cursors(cursors, range(50), work)
    assert len(started) < 10  # stopped taking new items soon after the error
    assert threading.active_count() == 1  # every worker thread joined


def test_one_cursor_runs_in_the_callers_thread():
    caller = threading.get_ident()
    assert run_over_cursors([Cursor("a")], ["x", "y"], lambda cur, item: (item, threading.get_ident())) == [
        ("x", caller), ("y", caller)]
    assert run_over_cursors([Cursor("a"), Cursor("b")], [], lambda cur, item: item) == []
