"""Fleets decided in Python (module_utils/pgsafe_fleet.py): one plan per fleet, each database's row, the report."""
import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils.pgsafe_fleet import fleet_document, one_plan, rows_changed, rows_quarantined

from plugins.filter.pgsafe_fleet import FilterModule

HOSTS = ["db_01", "db_02", "db_03"]


def planned(pending, fingerprint="f" * 64, failed="", database=None):
    return {"database": database, "pending": pending, "rehearsal_fingerprint": fingerprint, "failed": failed,
            "report": "/r.json"}


def test_fleet_one_plan_when_every_pending_database_plans_the_canarys_sql():
    check = one_plan([planned(3), planned("3"), planned(0, "c" * 64)], HOSTS, "db_01")
    assert check["stop"] == "" and check["fingerprint"] == "f" * 64
    assert check["pending"] == ["db_01", "db_02"] and check["converged"] == ["db_03"]


def test_fleet_plans_that_differ_stop_before_any_change_naming_the_databases():
    check = one_plan([planned(3), planned(3, "d" * 64, database="bazaar_vid_02"), planned(3)], HOSTS, "db_01")
    assert check["differing"] == ["db_02"]
    assert "one plan per fleet: 1 plan(s) differently from db_01" in check["stop"]
    assert "db_02 (bazaar_vid_02, plan dddddddddddd...)" in check["stop"]
    assert "nothing changed on any database" in check["stop"]


def test_fleet_a_failing_plan_stops_the_fleet_naming_it_and_why():
    check = one_plan([planned(3), planned(None, None, failed="step 01 would fail: 2 rows"), planned(3)],
                     HOSTS, "db_01")
    assert check["failed"] == ["db_02"] and "db_02: step 01 would fail: 2 rows" in check["stop"]


def test_fleet_converged_canary_leaves_the_first_pending_database_as_the_reference():
    check = one_plan([planned(0, "c" * 64), planned(2, "e" * 64), planned(2, "e" * 64)], HOSTS, "db_01")
    assert check["stop"] == "" and check["fingerprint"] == "e" * 64 and check["converged"] == ["db_01"]


def test_fleet_everything_converged_has_no_plan_to_run():
    check = one_plan([planned(0), planned(0), planned(0)], HOSTS, "db_01")
    assert check["fingerprint"] is None and check["stop"] == "" and len(check["converged"]) == 3


def test_canary_outside_the_fleet_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="fleet_canary 'db_09' is not a database of the fleet"):
        one_plan([planned(1)] * 3, HOSTS, "db_09")


REPORT = {
    "status": "succeeded", "started_at": "2026-12-05T10:00:00", "finished_at": "2026-12-05T10:01:30.5",
    "sections": {
        "schema_fix": {"counts": {'"public"."exports"': {"before": 134, "after": 132, "quarantined": 2},
                                  '"public"."analytics"': {"before": 379, "after": 373, "quarantined": 6}},
                       "quarantined": {'"public"."exports"': 2, '"public"."analytics"': 6}},
        "table_cleanup": {"items": [{"action": "retired", "row_count": 0}, {"action": "skipped", "row_count": 9}]},
        "table_merge": {"items": [{"inserted": 10}]},
    },
}


def test_fleet_rows_changed_and_set_aside_come_from_the_run_report():
    assert rows_changed(REPORT) == 134 + 379 + 10
    assert rows_quarantined(REPORT) == 8
    assert rows_changed({"sections": {}}) == 0 and rows_quarantined(None) == 0


def test_fleet_report_lists_every_database_and_stops_at_the_first_failure():
    members = {"db_01": {"status": "succeeded", "report": "/a/report.json"},
               "db_02": {"status": "failed", "report": "/b/report.json", "reason": "backup failed"},
               "db_03": {"status": "not run", "report": "/c/plan.json", "reason": "the fleet stopped"},
               "db_04": {}}
    reports = {"db_01": REPORT, "db_02": dict(REPORT, status="failed", failed_phase="backup", sections={}),
               "db_03": REPORT}
    fleet = {"group": "tenants", "run_id": "r1", "canary": "db_01", "started_at": "2026-12-05T10:00:00",
             "finished_at": "2026-12-05T10:05:00", "stop": ""}
    doc = fleet_document(fleet, members, reports, {h: h.replace("db", "vid") for h in members})
    assert [m["host"] for m in doc["members"]] == ["db_01", "db_02", "db_03", "db_04"]
    assert [m["status"] for m in doc["members"]] == ["succeeded", "failed", "not run", "not run"]
    assert doc["members"][0] == {"host": "db_01", "database": "vid_01", "status": "succeeded", "seconds": 90.5,
                                 "rows_changed": 523, "rows_quarantined": 8, "failed_phase": None, "reason": "",
                                 "report": "/a/report.json"}
    assert doc["members"][1]["failed_phase"] == "backup" and doc["members"][2]["seconds"] is None
    assert doc["status"] == "failed" and doc["stopped_at"] == "db_02" and doc["seconds"] == 300.0
    assert doc["rows_changed"] == 523 and doc["rows_quarantined"] == 8
    assert doc["summary"].startswith("Fleet tenants (4 databases): FAILED; 1 succeeded, 1 failed, 2 not run")


def test_fleet_report_of_a_converged_fleet_succeeds():
    members = {h: {"status": "converged", "report": "/p.json"} for h in HOSTS}
    doc = fleet_document({"group": "g", "stop": ""}, members, {}, {})
    assert doc["status"] == "succeeded" and doc["counts"]["converged"] == 3 and doc["rows_changed"] == 0


def test_fleet_filters_name_themselves_on_bad_input():
    filters = FilterModule().filters()
    with pytest.raises(AnsibleFilterError, match="pgsafe_fleet_one_plan: fleet_canary"):
        filters["pgsafe_fleet_one_plan"]([planned(1)], ["db_01"], "db_02")
    with pytest.raises(AnsibleFilterError, match="pgsafe_fleet_report: fleet member db_01: unknown status"):
        filters["pgsafe_fleet_report"]({"group": "g"}, {"db_01": {"status": "done"}}, {}, {})


def test_fleet_report_of_a_check_run_is_planned_and_changes_nothing():
    members = {"db_01": {"status": "planned", "report": "/a.json"}, "db_02": {"status": "converged"}}
    doc = fleet_document({"group": "g", "stop": ""}, members, {"db_01": REPORT}, {})
    assert doc["status"] == "planned" and doc["rows_changed"] == 0 and doc["members"][0]["seconds"] == 90.5
