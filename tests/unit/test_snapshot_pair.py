"""run_concurrently: the two sides of a diff are read in separate processes, results and errors come back."""
from __future__ import annotations

import os

import pytest

from ansible.module_utils.pgsafe_snapshot import run_concurrently


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def test_results_in_order_and_the_second_call_runs_in_another_process():
    parent = os.getpid()
    results = run_concurrently(lambda: {"pid": os.getpid(), "side": "left", "rows": [1, 2.5, None, True, "x"]},
                               lambda: {"pid": os.getpid(), "side": "right", "nested": {"a": ("t", 1)}})
    assert [r["side"] for r in results] == ["left", "right"]
    assert results[0]["pid"] == parent and results[1]["pid"] != parent
    assert results[0]["rows"] == [1, 2.5, None, True, "x"] and results[1]["nested"] == {"a": ("t", 1)}


def test_an_error_in_the_child_is_raised_here_with_its_type_and_message():
    with pytest.raises(KeyError, match="missing"):
        run_concurrently(lambda: 1, lambda: {}["missing"])


def test_an_unpicklable_error_keeps_its_name_and_message():
    def fail():
        raise Unpicklable("catalog gone")

    with pytest.raises(RuntimeError, match="Unpicklable: catalog gone"):
        run_concurrently(lambda: 1, fail)


def test_an_error_in_the_first_call_still_reaps_the_child():
    def fail():
        raise ValueError("left broke")

    with pytest.raises(ValueError, match="left broke"):
        run_concurrently(fail, lambda: 2)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind


def test_single_call_runs_here():
    assert run_concurrently(os.getpid) == [os.getpid()]
