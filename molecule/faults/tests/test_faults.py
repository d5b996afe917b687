"""Verify the faults scenario: every fault struck mid-run, nothing was lost, the converge after them
completed and left the exports pair as the code declares it.

Fault rounds are recorded by molecule/shared/faults.py in state/faults.jsonl (side_effect.yml).
"""
from __future__ import annotations

import json
import os

import pytest
import verify_lib as lib

testinfra_hosts = ["local://"]

SCALE = float(os.environ.get("PGSAFE_MOLECULE_SCALE") or 1)


@pytest.fixture(scope="module")
def rounds():
    path = lib.ephemeral() / "state" / "faults.jsonl"
    with open(path, encoding="utf-8") as handle:
        return {r["strike"]: r for r in map(json.loads, handle) if r}


def test_every_fault_struck_mid_run(rounds):
    assert sorted(rounds) == ["lock", "stop", "terminate"]
    for strike, result in rounds.items():
        assert result["struck"], f"{strike}: the type change never waited for its lock, the fault did not strike"


def test_a_failed_run_left_the_user_schemas_as_they_were(rounds):
    """A run the fault made fail changed nothing outside the product schemas: no half-converted column."""
    failed = {s: r for s, r in rounds.items() if r["playbook_rc"] != 0}
    assert "lock" in failed, "holding a conflicting lock for the whole run must make the change fail closed"
    for strike, result in failed.items():
        assert result["user_schema_differences"] == [], f"{strike}: {result['user_schema_differences']}"


def test_the_lock_wait_was_bounded(rounds):
    """lock_timeout and bounded retries: the run gave up on its own, long before the round's timeout."""
    assert rounds["lock"]["playbook_s"] < 240, rounds["lock"]


def test_no_row_was_lost():
    lost, miscounted = lib.lost_rows("prod", lib.current("prod"))
    assert lost == {}
    assert miscounted == {}


@pytest.mark.parametrize("table", ["bazaar-vid_exports", "bazaar-vid_export_analytics"])
def test_the_exports_pair_matches_the_code(table):
    reference = lib.table_definition("prod", "public", table, dbname=lib.ensure_reference("prod"))
    actual = lib.table_definition("prod", "public", table)
    assert actual == reference


def test_orphans_are_in_quarantine():
    counts = lib.sprint90_fixtures.counts("prod", SCALE)
    rows = dict(lib.query("prod", "SELECT source_table, count(*) FROM pgsafe.quarantine_row "
                                  "WHERE restored_at IS NULL GROUP BY 1"))
    assert rows == {"bazaar-vid_exports": counts["exports_orphan"],
                    "bazaar-vid_export_analytics": counts["analytics_orphan"]}


def test_the_last_run_succeeded(host):
    report = host.file(f"{os.environ['PGSAFE_ARTIFACTS_ROOT']}/prod/schema_fix/latest/report.json")
    assert report.exists
    data = json.loads(report.content_string)
    assert data["status"] == "succeeded"
    assert lib.query("prod", "SELECT status FROM pgsafe.run WHERE run_id = %s", (data["run_id"],)) == [("succeeded",)]
    invalid = lib.query("prod", "SELECT conname FROM pg_constraint WHERE contype = 'f' AND NOT convalidated")
    assert invalid == []
