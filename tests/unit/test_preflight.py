"""Preflight decisions (module_utils/pgsafe_preflight.py) against a scripted cursor."""
from __future__ import annotations

import pytest

from ansible.module_utils.pgsafe_identifiers import IdentifierError
from ansible.module_utils.pgsafe_preflight import (LONG_TRANSACTIONS, READ_ONLY_SETTINGS, REPLICAS, long_transactions,
                                                   read_only_session, replication, table_names, too_old)


class Cursor:
    """Answers each statement with the rows scripted for it."""

    def __init__(self, rows_by_query):
        self.rows_by_query, self.rows = rows_by_query, []

    def execute(self, query, args=None):
        self.rows = list(self.rows_by_query[query])

    def fetchall(self):
        return self.rows

    def fetchone(self):
        return self.rows[0]


def test_table_names_split_and_leave_the_changed_ones_out_of_the_read_ones():
    names, readable = table_names(['public."a.b"', "x"], ["public.c", 'public."a.b"'])
    assert names == [("public", "a.b"), ("public", "x")] and readable == [("public", "c")]
    with pytest.raises(IdentifierError):
        table_names(['"unterminated'], [])


def test_too_old_names_the_version_and_the_fix():
    assert too_old({"server_version_num": 130004, "server_version": "13.4"}, 13) is None
    assert "server 12.1 is older than the supported minimum 13" in too_old(
        {"server_version_num": 120001, "server_version": "12.1"}, 13)


def test_long_transactions_and_a_read_only_session_are_problems_naming_the_session():
    cur = Cursor({LONG_TRANSACTIONS: [(42, "app", "idle in transaction", 900, "UPDATE t")],
                  READ_ONLY_SETTINGS: [(False, True)]})
    (problem,) = long_transactions(cur, 300)
    assert problem.startswith("session 42 (app, idle in transaction) has had a transaction open for 900s")
    (problem,) = read_only_session(cur, "migrator")
    assert "login migrator is configured with default_transaction_read_only" in problem
    assert read_only_session(Cursor({READ_ONLY_SETTINGS: [(False, False)]}), "migrator") == []


def test_only_replicas_beyond_the_limit_are_problems():
    cur = Cursor({REPLICAS: [("r1", "10.0.0.2", "streaming", 10), ("r2", None, "catchup", 5000)]})
    replicas, problems = replication(cur, 100)
    assert [r["name"] for r in replicas] == ["r1", "r2"] and len(problems) == 1 and "replica r2 lags 5000" in problems[0]
    assert replication(cur, 0)[1] == []
