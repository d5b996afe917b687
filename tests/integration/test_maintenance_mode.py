"""Maintenance mode hooks (issue 8) around the changing phases of sprint90_dev.yml, on fresh databases.

The hooks are argv commands (the test's Python, no shell) that append one line to a marker file:
the transition, the time, and what the hook saw in its environment. Dev runs without a rehearsal
gate, so each case is one playbook run; sprint90_prod.yml has the same steps in the same places.
"""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.pg import run_playbook, write_inventory

ANALYTICS = '"bazaar-vid_export_analytics"'
# Appends "<transition> <epoch> <PGSAFE_RUN_STATUS> <PGSAFE_RUN_ID>" to argv[1], then exits argv[2].
HOOK = ("import os, sys, time; open(sys.argv[1], 'a').write(' '.join([os.environ['PGSAFE_MAINTENANCE'], "
        "repr(time.time()), os.environ['PGSAFE_RUN_STATUS'], os.environ['PGSAFE_RUN_ID']]) + '\\n'); "
        "sys.exit(int(sys.argv[2]))")


def hook(marker: Path, exit_code: int = 0, *extra: str) -> dict:
    return {"argv": [sys.executable, "-c", HOOK, str(marker), str(exit_code), *extra]}


def marks(marker: Path) -> list[list[str]]:
    return [line.split() for line in marker.read_text().splitlines()] if marker.exists() else []


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()


def column_type(server, db, table, column):
    return server.execute(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = %s::regclass AND attname = %s", (table, column))[0][0]


@pytest.fixture
def dev(tmp_path, pg_server, scratch_server, dev_db):
    inventory = write_inventory(tmp_path / "inv", {"dev": (pg_server, dev_db), "staging": (scratch_server, "postgres")},
                                extra_vars={"backup_destinations": [str(tmp_path / "b1"), str(tmp_path / "b2")]},
                                shipped_plans=True)
    artifacts = tmp_path / "artifacts"

    def play(check=False, **extra):
        result = run_playbook("sprint90_dev.yml", inventory=str(inventory), extra_vars=extra, check=check,
                              limit="dev", env={"PGSAFE_ARTIFACTS_ROOT": str(artifacts)})
        report_path = artifacts / "dev" / "sprint90_dev" / "latest" / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        return result.returncode, " ".join((result.stdout + result.stderr).split()), report

    return {"play": play, "marker": tmp_path / "marker", "server": pg_server, "db": dev_db}


def test_hooks_wrap_the_changing_phases(dev):
    code, out, report = dev["play"](pgsafe_maintenance_enter=hook(dev["marker"]),
                                    pgsafe_maintenance_exit=hook(dev["marker"], 0, "--token=s3cr3t-token"))
    assert code == 0, out[-4000:]
    assert "s3cr3t-token" not in out  # the hooks' arguments never reach the log
    (enter, at_enter, status_enter, run_enter), (leave, at_exit, status_exit, run_exit) = marks(dev["marker"])
    assert (enter, leave) == ("enter", "exit")
    assert status_enter == status_exit == "running" and run_enter == run_exit == report["run_id"]
    phases = {p["phase"]: p for p in report["timeline"]}
    order = [p["phase"] for p in report["timeline"]]
    assert order.index("backup") < order.index("maintenance_enter") < order.index("schema_fix")
    assert order.index("validate") < order.index("maintenance_exit") < order.index("record_converged")
    # The hooks really ran in between: after the backup finished and before schema_fix started, and
    # after validation finished.
    assert epoch(phases["backup"]["finished_at"]) <= float(at_enter) <= epoch(phases["schema_fix"]["started_at"])
    assert epoch(phases["validate"]["finished_at"]) <= float(at_exit)
    section = report["sections"]["maintenance_mode"]
    assert section["status"] == "ok", section
    assert [(i["transition"], i["result"]) for i in section["items"]] == [("enter", "ok"), ("exit", "ok")]
    assert float(at_exit) - float(at_enter) <= section["seconds_in_maintenance"]
    assert "in maintenance mode for" in section["summary"]
    assert "s3cr3t-token" not in json.dumps(report)
    assert column_type(dev["server"], dev["db"], ANALYTICS, "export_id") == "uuid"


def test_check_mode_runs_no_hook(dev):
    code, out, report = dev["play"](check=True, pgsafe_maintenance_enter=hook(dev["marker"]),
                                    pgsafe_maintenance_exit=hook(dev["marker"]))
    assert code == 0, out[-4000:]
    assert marks(dev["marker"]) == []
    section = report["sections"]["maintenance_mode"]
    assert section["status"] == "planned"
    assert "would enter" in section["summary"] and "would exit" in section["summary"]
    assert {i["result"] for i in section["items"]} == {"would run (check mode)"}
    # a plan, never "succeeded"; nothing in this dev plan would stop a real run
    assert report["status"] == "planned" and report["would_stop_at"] == [], report["would_stop_at"]


def test_exit_runs_when_a_later_phase_fails(dev, pg_server, tmp_path):
    # The plan prechecked every value; then, while the app enters maintenance mode (after the plan), a writer
    # slips in a value that does not cast to uuid: schema_fix re-checks under its lock and fails, after the
    # enter hook ran.
    script = tmp_path / "late_writer.py"
    dsn = dict(pg_server.libpq, dbname=dev["db"])
    script.write_text(
        "import psycopg2, subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', %r, %r, '0'], check=True)\n"
        "conn = psycopg2.connect(**%r)\nconn.autocommit = True\n"
        "conn.cursor().execute('UPDATE \"bazaar-vid_export_analytics\" SET export_id = %%s WHERE ctid = "
        "(SELECT min(ctid) FROM \"bazaar-vid_export_analytics\")', ('late-not-a-uuid',))\n"
        % (HOOK, str(dev["marker"]), dsn))
    script.chmod(0o600)
    code, out, report = dev["play"](pgsafe_maintenance_enter={"argv": [sys.executable, str(script)]},
                                    pgsafe_maintenance_exit=hook(dev["marker"]))
    assert code != 0
    assert "failed in phase schema_fix" in out, out[-4000:]
    assert "late-not-a-uuid" in out
    assert [(m[0], m[2]) for m in marks(dev["marker"])] == [("enter", "running"), ("exit", "failed")]
    assert report["status"] == "failed" and report["failed_phase"] == "schema_fix"
    section = report["sections"]["maintenance_mode"]
    assert section["status"] == "ok" and section["still_in_maintenance"] is False
    assert column_type(dev["server"], dev["db"], ANALYTICS, "export_id") == "text"


@pytest.mark.slow
def test_a_failing_exit_hook_fails_the_run_saying_the_app_is_still_in_maintenance(dev):
    code, out, report = dev["play"](pgsafe_maintenance_enter=hook(dev["marker"]),
                                    pgsafe_maintenance_exit=hook(dev["marker"], 3))
    assert code != 0
    assert "failed in phase maintenance_exit" in out, out[-4000:]
    assert "THE APP IS STILL IN MAINTENANCE MODE" in out and "playbooks/maintenance_exit.yml" in out
    assert [m[0] for m in marks(dev["marker"])] == ["enter", "exit"]  # tried once, not again in the rescue
    section = report["sections"]["maintenance_mode"]
    assert section["status"] == "failed" and section["still_in_maintenance"] is True
    assert section["items"][-1]["result"] == "failed: exit code 3"


def test_a_malformed_hook_fails_before_anything_changes(dev):
    code, out, report = dev["play"](pgsafe_maintenance_enter="app-maintenance on --token=s3cr3t-token",
                                    pgsafe_maintenance_exit=hook(dev["marker"]))
    assert code != 0
    assert "pgsafe_maintenance_enter is a string: a shell command line is not accepted" in out, out[-4000:]
    assert "Fix: pgsafe_maintenance_enter: {argv:" in out
    assert "s3cr3t-token" not in out
    assert marks(dev["marker"]) == []
    assert report["timeline"] == []  # not even the preflight ran
    server, db = dev["server"], dev["db"]
    if server.execute(db, "SELECT to_regclass('pgsafe.backup') IS NOT NULL") == [(True,)]:
        assert server.execute(db, "SELECT count(*) FROM pgsafe.backup") == [(0,)]  # no backup taken
    assert column_type(server, db, ANALYTICS, "export_id") == "text"


def test_schema_changed_after_the_plan_stops_the_run_before_its_first_change(dev, pg_server, tmp_path):
    """Something outside the plan adds a column after the plan was made (here: the enter hook, between the plan and
    the first step): the run re-reads the schema before its first change and refuses, nothing of the plan ran,
    and the app leaves maintenance mode. (Drift appearing later, during the steps, is judged by validation:
    tests/unit/test_conformance_judgement.py and test_validate.py.)"""
    script = tmp_path / "stray.py"
    dsn = dict(pg_server.libpq, dbname=dev["db"])
    script.write_text("import psycopg2\nconn = psycopg2.connect(**%r)\nconn.autocommit = True\n"
                      "conn.cursor().execute('ALTER TABLE \"bazaar-vid_user\" ADD COLUMN stray_flag text')\n" % dsn)
    script.chmod(0o600)
    code, out, report = dev["play"](pgsafe_maintenance_enter={"argv": [sys.executable, str(script)]},
                                    pgsafe_maintenance_exit=hook(dev["marker"]))
    assert code != 0, out[-3000:]
    assert "moved since this run planned it" in " ".join(out.split()), out[-3000:]
    assert "Start phase schema_fix]" not in out and "Start phase table_merge]" not in out
    assert column_type(pg_server, dev["db"], ANALYTICS, "export_id") == "text"
    assert dev["marker"].exists()  # the exit hook ran: the app is out of maintenance mode
    assert "moved since this run planned it" in json.dumps(report["failure"])
