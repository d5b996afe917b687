"""Fault cases: the target cannot be reached, or is reached with bad credentials."""
from __future__ import annotations

import pytest

from tests.pg import run_playbook, write_inventory


@pytest.fixture
def inventory(tmp_path, pg_server, prod_db):
    return write_inventory(tmp_path / "inv", {"staging": (pg_server, prod_db)})


def test_unreachable_database_fails_naming_target_and_remedy(inventory, rows_lost):
    result = run_playbook("sprint90_rehearsal.yml", inventory=str(inventory), extra_vars={"pg_port": 1})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot connect to postgres@127.0.0.1:1/" in out
    assert "make db-up" in out
    rows_lost(0)


def test_wrong_password_is_never_echoed(inventory, rows_lost):
    result = run_playbook("sprint90_rehearsal.yml", inventory=str(inventory),
                          extra_vars={"pg_password": "Wr0ng-Secret-xyz"})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "password authentication failed" in out
    assert "Wr0ng-Secret-xyz" not in out
    rows_lost(0)
