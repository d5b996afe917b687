"""Fleets (playbooks/fleet.yml, fleet_plan.yml, fleet_rehearsal.yml): one plan over every database of a group.

Real databases on the test cluster, real ansible-playbook runs. The fast tests (CI's `make integration`)
stop fleets of three before anything changes; the slow one runs the acceptance scenario on twenty
databases: the canary's failure stops the rest, the fix and a re-run converge all twenty, applying none
twice, and one fleet report lists them all.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.pg import fleet_inventory_head, link_prod_plan_files, run_playbook

EXPORTS = '"bazaar-vid_exports"'


def write_fleet_inventory(directory: Path, server, databases: list[str], group: str = "fleet",
                          staging: str | None = None, host_vars: dict | None = None) -> Path:
    """An inventory of one fleet group (hosts db_01.. on ``databases``) and ``staging`` (the rehearsal copy and
    scratch server) outside it, both in group ``plan`` whose group_vars are the Sprint 90 prod plan files (the
    rehearsal plans the same files). Backups go under ``directory``."""
    lines = fleet_inventory_head(directory) + [
        "  children:", "    plan:", "      children:", f"        {group}:", "          hosts:"]
    for n, dbname in enumerate(databases, 1):
        lines += [f"            {host(n)}:", f"              pg_port: {server.port}",
                  f"              pg_database: {dbname}"]
    lines += ["        rehearsal:", "          hosts:", "            staging:", f"              pg_port: {server.port}",
              f"              pg_database: {staging or 'postgres'}"]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    link_prod_plan_files(directory)
    for name, values in (host_vars or {}).items():
        (directory / "host_vars").mkdir(exist_ok=True)
        (directory / "host_vars" / f"{name}.yml").write_text(json.dumps(values) + "\n")
    return directory / "hosts.yml"


def host(n: int) -> str:
    return f"db_{n:02d}"


class Fleet:
    """A fleet of fresh Sprint 90 prod databases on one test cluster, and its playbook runs."""

    def __init__(self, server, tmp: Path, size: int, host_vars: dict | None = None):
        self.server, self.tmp, self.size = server, tmp, size
        template = server.ensure_template("prod")
        self.databases = [server.create_database(template=template) for _ in range(size)]
        self.staging = server.create_database(template=template)
        self.artifacts = tmp / "artifacts"
        self.inventory = write_fleet_inventory(tmp / "inv", server, self.databases, staging=self.staging,
                                               host_vars=host_vars)

    def drop(self):
        for dbname in [*self.databases, self.staging]:
            self.server.drop_database(dbname)

    def play(self, playbook: str, **extra):
        extra.setdefault("fleet_group", "fleet")
        result = run_playbook(playbook, inventory=str(self.inventory), extra_vars=extra,
                              env={"PGSAFE_ARTIFACTS_ROOT": str(self.artifacts)}, timeout=7200)
        return result.returncode, result.stdout + result.stderr

    def apply(self):
        return self.play("fleet.yml", confirm_fleet="fleet")

    def column_type(self, dbname: str) -> str:
        return self.server.execute(dbname, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                           "WHERE attrelid = %s::regclass AND attname = 'id'", (EXPORTS,))[0][0]

    def fleet_runs_recorded(self, dbname: str) -> int:
        """Runs of fleet.yml recorded in this database's pgsafe.run (0 when none ever started there)."""
        if not self.server.execute(dbname, "SELECT to_regclass('pgsafe.run') IS NOT NULL")[0][0]:
            return 0
        return self.server.execute(dbname, "SELECT count(*) FROM pgsafe.run WHERE playbook = 'fleet'")[0][0]

    def applied_runs(self, dbname: str) -> int:
        """Runs of fleet.yml that changed this database (journaled type changes)."""
        if not self.server.execute(dbname, "SELECT to_regclass('pgsafe.journal') IS NOT NULL")[0][0]:
            return 0
        return self.server.execute(dbname, "SELECT count(DISTINCT run_id) FROM pgsafe.journal "
                                           "WHERE step LIKE 'typechange%%' AND status = 'completed'")[0][0]

    def report(self) -> dict:
        return json.loads((self.artifacts / "fleets" / "fleet" / "latest" / "fleet_report.json").read_text())


def statuses(report: dict) -> dict:
    return {m["host"]: m["status"] for m in report["members"]}


@pytest.fixture
def fleet_of_three(pg_server, tmp_path):
    fleet = Fleet(pg_server, tmp_path, 3)
    yield fleet
    fleet.drop()


def test_fleet_plans_that_differ_stop_the_fleet_before_any_change(fleet_of_three):
    """One plan per fleet: a database whose schema differs plans other SQL; the fleet names it, changes nothing."""
    fleet = fleet_of_three
    odd = fleet.databases[2]
    fleet.server.execute(odd, 'ALTER TABLE "bazaar-vid_exports" ADD COLUMN tenant_note text')
    code, out = fleet.apply()
    assert code != 0
    flat = " ".join(out.split())
    assert "one plan per fleet: 1 plan(s) differently from db_01" in flat, out[-3000:]
    assert f"db_03 ({odd}, plan" in flat
    assert [fleet.column_type(db) for db in fleet.databases] == ["text"] * 3
    assert [fleet.applied_runs(db) for db in fleet.databases] == [0, 0, 0]
    report = fleet.report()
    assert statuses(report) == {"db_01": "not run", "db_02": "not run", "db_03": "not run"}
    assert "one plan per fleet" in report["stop"] and report["status"] == "failed"


def test_canary_failure_stops_the_rest_with_nothing_changed(fleet_of_three):
    """Without a rehearsal the canary's own gate refuses: the fleet stops there, the others never start."""
    fleet = fleet_of_three
    code, out = fleet.apply()
    assert code != 0
    assert "Stopped at db_01" in " ".join(out.split()), out[-3000:]
    assert [fleet.column_type(db) for db in fleet.databases] == ["text"] * 3
    report = fleet.report()
    assert statuses(report) == {"db_01": "failed", "db_02": "not run", "db_03": "not run"}
    canary = report["members"][0]
    assert canary["failed_phase"] == "gates" and Path(canary["report"]).exists()
    canary_report = json.loads(Path(canary["report"]).read_text())
    assert canary_report["status"] == "failed" and "rehearsal" in canary_report["failure"]["reason"]
    # The others' runs never started: no run recorded in their product schema.
    assert [fleet.fleet_runs_recorded(db) for db in fleet.databases] == [1, 0, 0]
    table = (fleet.artifacts / "fleets" / "fleet" / "latest" / "fleet_report.md").read_text()
    assert [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| t_")] \
        == ["db_01 (canary)", "db_02", "db_03"]


@pytest.mark.slow
def test_fleet_of_twenty_canary_failure_fix_and_rerun_converge_all_once(pg_server, tmp_path):
    """Acceptance: 20 databases. One rehearsal covers the fleet; the canary's failure (its backup cannot be
    written) stops the rest with nothing changed; after the fix a re-run converges all 20, applying each once;
    a third run skips all 20 as converged; one fleet report lists them all."""
    bad = tmp_path / "not-a-directory"
    bad.write_text("a file where the canary's backups should go\n")
    fleet = Fleet(pg_server, tmp_path, 20)
    try:
        code, out = fleet.play("fleet_rehearsal.yml")
        assert code == 0, out[-4000:]
        covered = [fleet.server.execute(db, "SELECT count(*) FROM pgsafe.attestation WHERE result = 'passed' "
                                            "AND details ? 'covered_by'")[0][0] for db in fleet.databases[1:]]
        assert covered == [1] * 19

        # The fault, after the rehearsal (which backs the canary up too): the canary's backups cannot be written.
        (fleet.inventory.parent / "host_vars").mkdir(exist_ok=True)
        (fleet.inventory.parent / "host_vars" / f"{host(1)}.yml").write_text(
            json.dumps({"backup_destinations": [f"{bad}/b1", f"{bad}/b2"]}) + "\n")

        code, out = fleet.apply()
        assert code != 0 and "Stopped at db_01" in " ".join(out.split()), out[-4000:]
        report = fleet.report()
        assert statuses(report)[host(1)] == "failed" and report["members"][0]["failed_phase"] == "backup"
        assert set(list(statuses(report).values())[1:]) == {"not run"}
        assert [fleet.column_type(db) for db in fleet.databases] == ["text"] * 20
        assert [fleet.applied_runs(db) for db in fleet.databases] == [0] * 20

        (fleet.inventory.parent / "host_vars" / f"{host(1)}.yml").unlink()  # the fix: the canary's backups
        code, out = fleet.apply()
        assert code == 0, out[-4000:]
        report = fleet.report()
        assert len(report["members"]) == 20 and set(statuses(report).values()) == {"succeeded"}
        assert all(m["rows_quarantined"] == 8 and m["rows_changed"] > 0 for m in report["members"])
        assert [fleet.column_type(db) for db in fleet.databases] == ["uuid"] * 20
        assert [fleet.applied_runs(db) for db in fleet.databases] == [1] * 20

        code, out = fleet.apply()
        assert code == 0, out[-4000:]
        report = fleet.report()
        assert set(statuses(report).values()) == {"converged"}, statuses(report)
        assert [fleet.applied_runs(db) for db in fleet.databases] == [1] * 20
        assert re.search(r"Fleet fleet \(20 databases\): SUCCEEDED; 20 converged", " ".join(out.split()))
    finally:
        fleet.drop()
