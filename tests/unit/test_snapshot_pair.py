"""read_snapshot_pair: the right schema is read in a forked process and comes back equal, value for value."""
from __future__ import annotations

import copy
import json
import os
import signal
import time

import pytest

from ansible.module_utils.pgsafe_snapshot import FORMAT_VERSION, KINDS
from ansible.module_utils.pgsafe_snapshot_pair import read_snapshot_pair


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def snapshot(tables, pid=None):
    snap = {"format_version": FORMAT_VERSION, "meta": {"database": "d", "pid": pid}}
    for kind in KINDS:
        snap[kind] = {}
    snap["tables"] = tables
    snap["indexes"] = {'"public"."i"': {"table": '"public"."t1"', "keys": ["a"], "valid": True}}
    return snap


def table(*columns, comment=None):
    return {"comment": comment, "reltuples": 1.5,
            "columns": {name: {"position": i + 1, "type": typ, "not_null": False, "default": None}
                        for i, (name, typ) in enumerate(columns)}}


LEFT = {'"public"."t1"': table(("a", "integer"), ("b", "text")), '"public"."t2"': table(("id", "uuid")),
        '"public"."only left"': table(("x", "text"))}
RIGHT = {'"public"."t2"': table(("id", "uuid")), '"public"."t1"': table(("a", "bigint"), ("b", "text")),
         '"public"."only right"': table(("y", "text"), comment="é \u00a0 \"quoted\"")}


def test_the_right_snapshot_comes_back_equal_in_its_own_order_sharing_equal_objects():
    parent = os.getpid()
    left, right = read_snapshot_pair(lambda: snapshot(copy.deepcopy(LEFT), os.getpid()),
                                     lambda: snapshot(copy.deepcopy(RIGHT), os.getpid()))
    assert left["meta"]["pid"] == parent and right["meta"]["pid"] != parent  # really read elsewhere
    expected = snapshot(copy.deepcopy(RIGHT), right["meta"]["pid"])
    assert right == expected
    assert json.dumps(right) == json.dumps(expected)  # same key order everywhere
    assert right["tables"]['"public"."t2"'] is left["tables"]['"public"."t2"']  # equal: not sent again
    assert right["tables"]['"public"."t1"'] is not left["tables"]['"public"."t1"']


def test_a_failing_left_side_still_gets_the_whole_right_snapshot():
    def fail():
        raise ValueError("left broke")

    left, right = read_snapshot_pair(fail, lambda: snapshot(copy.deepcopy(RIGHT)))
    assert isinstance(left, ValueError) and str(left) == "left broke"
    assert right == snapshot(copy.deepcopy(RIGHT))


def test_errors_of_the_right_side_come_back_with_type_and_message():
    left, right = read_snapshot_pair(lambda: 1, lambda: {}["missing"])
    assert left == 1 and isinstance(right, KeyError) and "missing" in str(right)

    def fail():
        raise Unpicklable("catalog gone")

    _, right = read_snapshot_pair(lambda: 1, fail)
    assert isinstance(right, RuntimeError) and "Unpicklable: catalog gone" in str(right)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind


def test_plain_results_are_sent_whole():
    assert read_snapshot_pair(lambda: ("l", [1]), lambda: {"r": (2.5, None, True)}) == [("l", [1]),
                                                                                    {"r": (2.5, None, True)}]


def test_an_interrupted_left_side_neither_hangs_nor_leaves_the_child_behind():
    big = snapshot({'"public"."t{0}"'.format(i): {"schema": "public", "name": "t{0}".format(i), "pad": "x" * 200}
                    for i in range(2000)})  # its digests alone outgrow a pipe's buffer

    def interrupted():
        time.sleep(0.3)  # the child is blocked writing by now
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("read_snapshot_pair hung"))
    signal.alarm(20)
    try:
        with pytest.raises(KeyboardInterrupt):
            read_snapshot_pair(interrupted, lambda: copy.deepcopy(big))
    finally:
        signal.alarm(0)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left to reap
