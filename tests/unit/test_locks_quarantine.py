"""Unit tests of the shared primitives: lock statements and bounded lock retries (pgsafe_locks), quarantined rows'
restore SQL and diff (pgsafe_quarantine).  No database: a fake connection stands in."""
from __future__ import annotations

import psycopg2
import pytest
from ansible.module_utils import pgsafe_locks as locks
from ansible.module_utils.pgsafe_quarantine import restore_diff, restore_sql


def lock_error(code):
    class Failed(psycopg2.OperationalError):
        pgcode = property(lambda self: code)
    return Failed("canceling statement due to lock timeout")


class FakeConn:
    def __init__(self):
        self.commits = self.rollbacks = 0

    def cursor(self):
        conn = self

        class Cursor:
            def __enter__(self):
                return conn

            def __exit__(self, *exc):
                return False
        return Cursor()

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks += 1


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(locks.time, "sleep", lambda seconds: None)


def test_backoff_is_bounded_and_doubles():
    assert locks.backoff_delays(5, 0.5, 2.0) == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert locks.backoff_delays(0, 1, 1) == []


def test_only_known_lock_modes_are_rendered():
    with pytest.raises(locks.LockError, match="unknown lock mode"):
        locks.lock_statements([(("public", "t"), "ACCESS EXCLUSIVE; DROP TABLE t")])
    assert len(locks.lock_statements([(("public", "t"), "SHARE ROW EXCLUSIVE")])) == 1


def test_a_lock_timeout_is_retried_then_commits():
    conn, attempts, calls = FakeConn(), [], []

    def work(cur):
        calls.append(1)
        if len(calls) < 3:
            raise lock_error("55P03")
        return "done"
    assert locks.run_with_retries(conn, work, 3, 0.1, 1.0, attempts, "retire t") == "done"
    assert [a["outcome"] for a in attempts] == ["55P03", "55P03", "ok"]
    assert (conn.rollbacks, conn.commits) == (2, 1)


def test_retries_exhausted_fail_closed_naming_the_step():
    conn, attempts = FakeConn(), []

    def work(cur):
        raise lock_error("40P01")
    with pytest.raises(locks.LockRetriesExhausted, match="retire t: the lock was not obtained .* 2 attempt"):
        locks.run_with_retries(conn, work, 1, 0.1, 1.0, attempts, "retire t")
    assert conn.commits == 0 and conn.rollbacks == 2


def test_other_database_errors_are_not_retried():
    conn, attempts = FakeConn(), []

    def work(cur):
        raise lock_error("23503")
    with pytest.raises(psycopg2.OperationalError):
        locks.run_with_retries(conn, work, 5, 0.1, 1.0, attempts, "x")
    assert len(attempts) == 1


def test_run_step_rolls_back_in_check_mode_and_on_any_failure():
    conn = FakeConn()
    assert locks.run_step(conn, lambda cur: 1, dry_run=True) == 1
    assert (conn.rollbacks, conn.commits) == (1, 0)
    with pytest.raises(ValueError):
        locks.run_step(conn, lambda cur: (_ for _ in ()).throw(ValueError("no")))
    assert conn.rollbacks == 2


def test_retries_are_bounded():
    assert locks.check_retries(0) is None and locks.check_retries(20) is None
    assert "between 0 and 20" in locks.check_retries(21)
    assert "between 0 and 20" in locks.check_retries(-1)


def test_restore_sql_quotes_the_run_id_and_restores_parents_first():
    text = restore_sql("run'1")
    assert "run_id = 'run''1'" in text and "ORDER BY id DESC" in text


def test_restore_diff_counts_rows_in_quarantine_before_and_after():
    before, after = restore_diff({'"public"."a"': 3, '"public"."b"': 1}, {'"public"."a"': 3})
    assert before == '"public"."a": 3 row(s) in quarantine\n"public"."b": 1 row(s) in quarantine\n'
    assert after == ('"public"."a": 0 row(s) in quarantine, 3 restored\n'
                     '"public"."b": 1 row(s) in quarantine, 0 restored\n')
