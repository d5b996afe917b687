"""Sprint 90 end to end on fresh fixture databases: rehearsal -> prod (gated) -> re-run -> dev -> rollback.

One module-scoped scenario (the steps build on each other); every step asserts catalog and data
outcomes, not just exit codes.
"""
from __future__ import annotations

import json
import re

import pytest

from tests.pg import run_playbook, write_inventory

EXPORTS, ANALYTICS = '"bazaar-vid_exports"', '"bazaar-vid_export_analytics"'


def recap(out: str, host: str) -> dict:
    match = re.search(rf"^{host}\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out, re.M)
    assert match, out[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True))


def column_type(server, db, table, column):
    return server.execute(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = %s::regclass AND attname = %s", (table, column))[0][0]


def count(server, db, relation):
    return server.execute(db, f"SELECT count(*) FROM {relation}")[0][0]


@pytest.fixture(scope="module")
def scenario(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sprint90")
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging, \
            pg_server.sprint90_database("dev") as dev:
        inventory = write_inventory(tmp / "inv", {"prod": (pg_server, prod), "staging": (pg_server, staging),
                                                  "dev": (pg_server, dev)},
                                    extra_vars={"backup_destinations": [str(tmp / "b1"), str(tmp / "b2")]},
                                    shipped_plans=True)
        yield {"server": pg_server, "prod": prod, "staging": staging, "dev": dev, "inventory": str(inventory),
               "artifacts": tmp / "artifacts", "tmp": tmp}


def play(scenario, playbook, **extra):
    result = run_playbook(playbook, inventory=scenario["inventory"], extra_vars=extra or None,
                          env={"PGSAFE_ARTIFACTS_ROOT": str(scenario["artifacts"])})
    return result.returncode, result.stdout + result.stderr


def test_prod_refuses_before_any_rehearsal(scenario):
    code, out = play(scenario, "sprint90_prod.yml", confirm_database=scenario["prod"])
    assert code != 0
    assert "rehearsal: no rehearsal of this plan" in " ".join(out.split()), out[-3000:]
    assert column_type(scenario["server"], scenario["prod"], EXPORTS, "id") == "text"


def test_rehearsal_passes_and_attests_in_prod(scenario):
    code, out = play(scenario, "sprint90_rehearsal.yml")
    assert code == 0, out[-3000:]
    server = scenario["server"]
    assert column_type(server, scenario["staging"], EXPORTS, "id") == "uuid"
    assert column_type(server, scenario["prod"], EXPORTS, "id") == "text"  # prod untouched by the rehearsal
    rows = server.execute(scenario["prod"], "SELECT result, environment FROM pgsafe.attestation")
    assert rows == [("passed", "staging")]
    report = json.loads((scenario["artifacts"] / "staging/sprint90_rehearsal/latest/report.json").read_text())
    assert [p["phase"] for p in report["timeline"]][:3] == ["preflight", "restore_copy", "plan"]
    # prod's backup was restored once, into staging, and that restore is its recorded restore test.
    tested = server.execute(scenario["prod"], "SELECT verified, restore_tested, details->'verification'->'restore_test' "
                                              "FROM pgsafe.backup ORDER BY taken_at DESC LIMIT 1")
    assert tested[0][:2] == (True, True), tested
    assert tested[0][2]["database"] == scenario["staging"] and tested[0][2]["status"] == "ok"
    # ... and that backup, proven equal to the copy, is the copy's own whole-database backup: no second
    # dump of staging (the destructive steps still take their targeted backups).
    prod_backup = server.execute(scenario["prod"], "SELECT backup_id FROM pgsafe.backup ORDER BY taken_at DESC "
                                                   "LIMIT 1")[0][0]
    staging_oid = server.execute(scenario["staging"], "SELECT oid FROM pg_database WHERE datname = "
                                                      "current_database()")[0][0]
    wholes = server.execute(scenario["staging"], "SELECT backup_id, verified, restore_tested, "
                                                 "details->'restored_copy'->>'of_database' FROM pgsafe.backup "
                                                 "WHERE (details->>'database_oid')::bigint = %s AND kind = 'database'",
                            (staging_oid,))
    assert wholes == [(prod_backup, True, True, scenario["prod"])], wholes
    assert "No second dump" in report["sections"]["rehearsal_copy_backup"]["summary"]
    # The copy's before fingerprint was read with that restore's comparison (one read, two proofs), stored once
    # for the run, and validation reconciled every table with it.
    befores = server.execute(scenario["staging"], "SELECT run_id, jsonb_object_keys(tables) FROM pgsafe.fingerprint "
                                                  "WHERE label = 'before'")
    assert {run for run, _ in befores} == {report["run_id"]} and len(befores) >= 5, befores
    assert "read with the restore comparison" in report["sections"]["fingerprint"]["summary"]


def test_prod_without_confirmation_changes_nothing(scenario):
    code, out = play(scenario, "sprint90_prod.yml")
    assert code != 0
    assert f"-e confirm_database={scenario['prod']}" in " ".join(out.split()), out[-3000:]
    assert column_type(scenario["server"], scenario["prod"], EXPORTS, "id") == "text"


def test_prod_run_fixes_exports_and_sets_orphans_aside(scenario):
    code, out = play(scenario, "sprint90_prod.yml", confirm_database=scenario["prod"])
    assert code == 0, out[-3000:]
    server, prod = scenario["server"], scenario["prod"]
    assert column_type(server, prod, EXPORTS, "id") == "uuid"
    assert column_type(server, prod, EXPORTS, "user_id") == "character varying(255)"
    assert column_type(server, prod, EXPORTS, "project_id") == "uuid"
    assert column_type(server, prod, ANALYTICS, "export_id") == "uuid"
    assert count(server, prod, EXPORTS) == 132 and count(server, prod, ANALYTICS) == 373
    quarantined = dict(server.execute(prod, "SELECT source_table, count(*) FROM pgsafe.quarantine_row "
                                            "GROUP BY 1"))
    assert quarantined == {"bazaar-vid_exports": 2, "bazaar-vid_export_analytics": 6}
    invalid = server.execute(prod, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT convalidated")
    assert invalid == [(0,)]
    fks = server.execute(prod, "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN "
                               f"('{EXPORTS}'::regclass, '{ANALYTICS}'::regclass)")
    assert fks == [(3,)]
    assert server.execute(prod, "SELECT to_regclass('\"bazaar-vid_patch\"')") == [(None,)]
    assert server.execute(prod, "SELECT to_regclass('pgsafe_quarantine.\"public_bazaar-vid_patch\"') IS NOT NULL") \
        == [(True,)]
    run_dir = scenario["artifacts"] / "prod" / "sprint90_prod" / "latest"
    report = json.loads((run_dir / "report.json").read_text())
    # every backup the run took is listed (the whole pre-change one first, then the step's targeted one)
    backups = report["sections"]["backup"]["backups"]
    assert backups[0]["scope"] == "whole database" and len(backups) >= 1, backups
    assert report["sections"]["backup"]["guards"], "no step named the backup that guards it"
    page = (run_dir / "report.html").read_text()
    assert "Rows before and after, per table" in page and "134 &#8594; 132 (explained)" in page


def test_prod_rerun_is_converged_with_zero_changes(scenario):
    code, out = play(scenario, "sprint90_prod.yml", confirm_database=scenario["prod"])
    assert code == 0, out[-3000:]
    assert recap(out, "prod")["changed"] == 0
    report = json.loads((scenario["artifacts"] / "prod/sprint90_prod/latest/report.json").read_text())
    assert "Already converged" in report["sections"]["gates"]["summary"]
    assert "backup" not in [p["phase"] for p in report["timeline"]]


def test_dev_run(scenario):
    code, out = play(scenario, "sprint90_dev.yml")
    assert code == 0, out[-3000:]
    server, dev = scenario["server"], scenario["dev"]
    assert column_type(server, dev, ANALYTICS, "export_id") == "uuid"
    assert count(server, dev, '"bazaar-vid_api_usage_metric"') == 250
    assert server.execute(dev, "SELECT to_regclass('public.api_usage_metric')") == [(None,)]
    schemas = {r[0] for r in server.execute(dev, "SELECT nspname FROM pg_namespace")}
    assert not {"auth", "pgrst", "neon_auth"} & schemas


def test_dev_rerun_is_converged(scenario):
    code, out = play(scenario, "sprint90_dev.yml")
    assert code == 0, out[-3000:]
    assert recap(out, "dev")["changed"] == 0


def test_rollback_dev_restores_every_table_exactly(scenario):
    code, out = play(scenario, "rollback.yml", rollback_hosts="dev")
    assert code == 0, out[-3000:]
    server, dev = scenario["server"], scenario["dev"]
    assert column_type(server, dev, ANALYTICS, "export_id") == "text"
    schemas = {r[0] for r in server.execute(dev, "SELECT nspname FROM pg_namespace")}
    assert {"auth", "pgrst", "neon_auth"} <= schemas
    assert count(server, dev, "neon_auth.users_sync") == 5
    assert count(server, dev, "api_usage_metric") == 250
    report = json.loads((scenario["artifacts"] / "dev/rollback/latest/report.json").read_text())
    assert "identical" in report["sections"]["rollback"]["summary"]
    assert "loss" not in report["sections"]["rollback"]["summary"]


def test_rollback_prod_needs_confirmation_then_puts_orphans_back(scenario):
    server, prod = scenario["server"], scenario["prod"]
    # The first successful prod run is the one that changed something (the refused ones have no journal).
    run_id = server.execute(prod, "SELECT run_id FROM pgsafe.run WHERE playbook = 'sprint90_prod' "
                                  "AND status = 'succeeded' ORDER BY started_at LIMIT 1")[0][0]
    code, out = play(scenario, "rollback.yml", rollback_hosts="prod", rollback_run_id=run_id)
    assert code != 0 and "confirm_database" in out
    code, out = play(scenario, "rollback.yml", rollback_hosts="prod", rollback_run_id=run_id,
                     confirm_database=prod)
    assert code == 0, out[-3000:]
    assert column_type(server, prod, EXPORTS, "id") == "text"
    assert count(server, prod, EXPORTS) == 134 and count(server, prod, ANALYTICS) == 379
    assert server.execute(prod, "SELECT count(*) FROM pgsafe.quarantine_row WHERE restored_at IS NULL") == [(0,)]
