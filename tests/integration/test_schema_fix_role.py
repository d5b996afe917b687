"""Role schema_fix through playbooks/schema_fix.yml on copies of the Sprint 90 databases, with the shipped plans."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.pg import ROOT, run_playbook, write_inventory
from tests.typefix_support import ANALYTICS, EXPORTS, column_types, data_fingerprint, fks, schema_fingerprint


def shipped(host):
    return yaml.safe_load((ROOT / f"inventories/local/host_vars/{host}/schema_fix.yml").read_text())["schema_fix_plan"]


def report(result):
    line = [x for x in result.stdout.splitlines() if "report: " in x][-1]
    path = Path(line.split("report: ")[1].strip().strip("'\"")).with_suffix(".json")
    return json.loads(path.read_text())


def test_prod_plan_check_then_apply_then_converged(tmp_path, pg_server, prod_db):
    inv = write_inventory(tmp_path / "inv", {"staging": (pg_server, prod_db)})
    extra = {"schema_fix_plan": shipped("prod"), "schema_fix_hosts": "staging"}
    env = {"PGSAFE_ARTIFACTS_ROOT": str(tmp_path / "artifacts"), "PGSAFE_BACKUP_MIRROR": str(tmp_path / "mirror")}
    schema_before, data_before = schema_fingerprint(pg_server, prod_db), data_fingerprint(pg_server, prod_db)

    check = run_playbook("schema_fix.yml", inventory=str(inv), extra_vars=extra, check=True, env=env)
    assert check.returncode == 0, check.stdout[-3000:]
    section = report(check)["sections"]["schema_fix"]
    assert section["status"] == "planned" and any("quarantined" in h for h in section["hazards"])
    assert schema_fingerprint(pg_server, prod_db) == schema_before
    assert data_fingerprint(pg_server, prod_db) == data_before

    applied = run_playbook("schema_fix.yml", inventory=str(inv), extra_vars=extra, env=env)
    assert applied.returncode == 0, applied.stdout[-4000:]
    section = report(applied)["sections"]["schema_fix"]
    assert section["status"] == "changed"
    assert section["counts"]['"public"."bazaar-vid_exports"'] == {"before": 134, "after": 132, "quarantined": 2}
    assert section["counts"]['"public"."bazaar-vid_export_analytics"'] == {"before": 379, "after": 373,
                                                                           "quarantined": 6}
    assert "explained" in section["fingerprints"]
    assert column_types(pg_server, prod_db, EXPORTS)["id"] == "uuid"
    assert column_types(pg_server, prod_db, ANALYTICS)["export_id"] == "uuid"
    assert all(fks(pg_server, prod_db)[f["name"]][0] for f in shipped("prod")["foreign_keys"])
    assert pg_server.execute(prod_db, "SELECT count(*) FROM pgsafe.quarantine_row")[0][0] == 8
    assert pg_server.execute(prod_db, "SELECT count(*) FROM pgsafe.backup WHERE verified")[0][0] >= 1

    again = run_playbook("schema_fix.yml", inventory=str(inv), extra_vars=extra, env=env)
    assert again.returncode == 0, again.stdout[-3000:]
    section = report(again)["sections"]["schema_fix"]
    assert section["status"] == "converged" and section["summary"].startswith("already converged")
    assert "backup" not in report(again)["sections"]  # nothing to change: no new backup taken


def test_dev_plan_converts_only_the_analytics_column(tmp_path, pg_server, dev_db):
    # staging is the scratch host where the backup role restore-tests the targeted backup
    inv = write_inventory(tmp_path / "inv", {"dev": (pg_server, dev_db), "staging": (pg_server, "postgres")})
    env = {"PGSAFE_ARTIFACTS_ROOT": str(tmp_path / "artifacts"), "PGSAFE_BACKUP_MIRROR": str(tmp_path / "mirror")}
    counts_before = {t: pg_server.execute(dev_db, f'SELECT count(*) FROM "{t}"')[0][0] for t in (EXPORTS, ANALYTICS)}
    result = run_playbook("schema_fix.yml", inventory=str(inv), extra_vars={"schema_fix_plan": shipped("dev")}, env=env)
    assert result.returncode == 0, result.stdout[-4000:]
    assert column_types(pg_server, dev_db, ANALYTICS)["export_id"] == "uuid"
    assert fks(pg_server, dev_db)["bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"][0] is True
    assert {t: pg_server.execute(dev_db, f'SELECT count(*) FROM "{t}"')[0][0] for t in counts_before} == counts_before


def test_planning_without_precheck_reads_no_row_and_plans_the_same_statements(pg_server, prod_db):
    """precheck: false (the role's planning run before an apply that prechecks itself) plans from the catalog only:
    no statement of it reads the changed tables, and its plan and statements equal the prechecking run's."""
    from tests.cleanup_helpers import run_module
    fix = shipped("prod")
    args = dict(pg_server.module_params(prod_db), run_id="precheck-off", changes=fix["changes"],
                foreign_keys=fix["foreign_keys"], orphan_policy=fix["orphan_policy"])
    full = run_module("pgsafe_column_types", args, check=True)
    light = run_module("pgsafe_column_types", dict(args, precheck=False), check=True)
    assert full["rc"] == 0 and light["rc"] == 0, (full, light)
    assert full["precheck"]["orphans"] and light.get("precheck") is None
    assert light["statements_sha256"] == full["statements_sha256"]
    assert light["plan"]["guard_objects"] == full["plan"]["guard_objects"]
    scans = [q for q in light["queries"] if 'FROM "public"."bazaar-vid_export' in q]
    assert not scans and any('FROM "public"."bazaar-vid_export' in q for q in full["queries"])
