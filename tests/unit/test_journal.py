"""The run's records (module_utils/pgsafe_journal.py) and the rollback's undo steps, against a recording cursor."""
from __future__ import annotations

import json

import pytest

from ansible.module_utils.pgsafe_journal import (finish_run, journal_if_installed, journal_undo, mark_run,
                                                 product_records, start_run)
from ansible.module_utils.pgsafe_reading import read_only_cursor
from ansible.module_utils.pgsafe_rollback import RollbackError, plan_rollback, rollback_diff, undo


class Cursor:
    def __init__(self, conn):
        self.conn = conn

    def execute(self, query, args=None):
        self.conn.executed.append((" ".join(str(query).split()), args))

    def fetchone(self):
        return self.conn.answers.pop(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Conn:
    def __init__(self, answers=()):
        self.executed, self.answers, self.closed, self.commits = [], list(answers), False, 0

    def cursor(self):
        return Cursor(self)

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks = getattr(self, "rollbacks", 0) + 1

    def close(self):
        self.closed = True


class Exited(Exception):
    pass


class Module:
    check_mode = False

    def __init__(self, conn):
        self.conn, self.connected_read_only, self.result = conn, None, None

    def connect(self, read_only=False, **kwargs):
        self.connected_read_only, self.connect_kwargs = read_only, kwargs
        return self.conn

    def exit_json(self, **result):
        self.result = result
        raise Exited


def test_start_finish_and_mark_a_run():
    conn = Conn()
    cur = conn.cursor()
    start_run(cur, "r1", "backup", "prod", details={"b": 1, "a": 2})
    finish_run(cur, "r1", "succeeded", {"x": 1})
    mark_run(cur, "r1", "rolled_back")
    (insert, args), (finish, fargs), (mark, margs) = conn.executed
    assert insert.startswith("INSERT INTO pgsafe.run") and "ON CONFLICT (run_id) DO NOTHING" in insert
    assert args == ("r1", "backup", "prod", None, None, '{"a": 2, "b": 1}')
    assert "finished_at = now()" in finish and fargs == ("succeeded", '{"x": 1}', "r1")
    assert "finished_at" not in mark and margs == ("rolled_back", "r1")


def test_an_undone_step_is_journaled_in_both_runs():
    conn = Conn()
    journal_undo(conn.cursor(), "rb", "r1", {"journal_id": 6, "object": "t", "action": "sql", "outcome": "done"})
    (_, mine), (_, theirs) = conn.executed
    assert mine[:4] == ("rb", "rollback:6", "t", "completed")
    assert json.loads(mine[4]) == {"undoes_run": "r1", "action": "sql", "outcome": "done"}
    assert theirs[:4] == ("r1", "rollback:6", "t", "completed") and json.loads(theirs[4]) == {"rollback_run_id": "rb"}
    # the undone run's line is what a resumed rollback skips
    journal = [{"id": 6, "step": "table_retire", "object": "t", "status": "completed", "details": {},
                "rollback_sql": "ALTER ..."},
               {"id": 9, "step": "rollback:6", "object": "t", "status": "completed", "details": {},
                "rollback_sql": None}]
    assert plan_rollback(journal) == []


def test_product_records_exit_unchanged_without_the_product_schema():
    conn = Conn(answers=[(False,)])
    module = Module(conn)
    module.check_mode = True
    with pytest.raises(Exited), product_records(module, restored={}, msg="nothing"):
        pytest.fail("the body runs only where the product schema exists")
    assert module.result == {"changed": False, "restored": {}, "msg": "nothing"}
    assert module.connected_read_only is True and conn.closed


def test_journal_if_installed_writes_only_where_the_schema_is():
    absent = Conn(answers=[(False,)])
    assert journal_if_installed(absent, "r1", "plan", "completed") is False
    assert not any("INSERT" in q for q, _ in absent.executed) and absent.commits == 1


def test_rollback_diff_says_what_each_undo_does():
    actions = [{"journal_id": 7, "step": "schema_removal", "object": '"auth"', "action": "restore_schema",
                "schema": "auth", "backup_id": "b1"},
               {"journal_id": 6, "step": "table_retire", "object": "t", "action": "sql", "sql": "ALTER a;\nALTER b;"}]
    before, after = rollback_diff(actions, "r1")
    assert before.splitlines() == ['"auth" (schema_removal, journal 7): as run r1 left it',
                                   "t (table_retire, journal 6): as run r1 left it"]
    assert "schema auth restored from backup b1" in after and "  ALTER a;\n  ALTER b;" in after


def test_undo_runs_the_rollback_sql_and_refuses_a_manual_step():
    conn = Conn()
    action = {"journal_id": 6, "step": "table_retire", "object": "t", "action": "sql", "sql": "ALTER x"}
    undo(conn, {"rollback_run_id": "rb"}, action, "r1")
    assert conn.executed == [("ALTER x", None)] and action["outcome"] == "rollback SQL executed"
    with pytest.raises(RollbackError, match="cannot be undone automatically: look"):
        undo(conn, {}, {"journal_id": 3, "step": "odd", "object": None, "action": "manual", "note": "look"}, "r1")


def test_read_only_cursor_rolls_back_or_commits_and_always_closes():
    conn = Conn()
    module = Module(conn)
    with read_only_cursor(module, settings={"lock_timeout": "2s"}) as cur:
        cur.execute("SELECT 1")
    assert module.connected_read_only and module.connect_kwargs == {"settings": {"lock_timeout": "2s"}}
    assert conn.rollbacks == 1 and conn.commits == 0 and conn.closed
    conn = Conn()
    with read_only_cursor(Module(conn), commit=True):
        pass
    assert conn.commits == 1 and conn.closed
    conn = Conn()
    with pytest.raises(ZeroDivisionError), read_only_cursor(Module(conn)):
        1 / 0  # noqa: B018
    assert conn.closed and conn.commits == 0
