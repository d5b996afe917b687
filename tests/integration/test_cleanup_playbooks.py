"""The cleanup playbooks end to end on fresh Sprint 90 databases: real backups, real reports, re-runs.

* dev: cleanup.yml with dev's shipped plan (merge, retire, remove the auth schemas), re-run converges,
  a removed schema comes back from its restore-tested backup through restore.yml;
* prod: legacy_audit.yml with a writer on project_memory; purge_quarantine.yml after retention.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.cleanup_helpers import all_table_hashes, exists, quarantined, run_module, schema_exists, table_hash
from tests.pg import ROOT, run_playbook, write_inventory


def plan(host):
    return yaml.safe_load((ROOT / f"inventories/local/host_vars/{host}/cleanup.yml").read_text())


def report(root: Path, env: str, playbook: str) -> dict:
    return json.loads((root / env / playbook / "latest" / "report.json").read_text())


def playbook(name, inv, root, extra, **kw):
    result = run_playbook(name, inventory=str(inv), extra_vars=extra, env={"PGSAFE_ARTIFACTS_ROOT": str(root)}, **kw)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    return result


@pytest.fixture
def dev_inventory(tmp_path, pg_server, scratch_server, dev_db):
    return write_inventory(tmp_path / "inv", {"dev": (pg_server, dev_db), "staging": (scratch_server, "postgres")})


def test_dev_cleanup_end_to_end_converges_and_schema_restores(tmp_path, pg_server, dev_db, dev_inventory):
    before = all_table_hashes(pg_server, dev_db)
    extra = dict(plan("dev"), cleanup_targets="dev")
    root = tmp_path / "artifacts"
    playbook("cleanup.yml", dev_inventory, root, extra)
    doc = report(root, "dev", "cleanup")
    sections = doc["sections"]
    assert sections["table_merge"]["status"] == "changed"
    assert sections["table_merge"]["items"][0]["inserted"] == 250
    assert sections["table_merge"]["proofs"][0]["ok"] is True
    assert [i["action"] for i in sections["table_cleanup"]["items"]] == ["retired"] * 4
    assert {i["schema"]: i["action"] for i in sections["auth_schema_removal"]["items"]} == {
        "auth": "removed", "pgrst": "removed", "neon_auth": "removed"}
    # Nothing lost: every table is unchanged, or moved whole into quarantine, or (schemas) in a verified backup.
    after = all_table_hashes(pg_server, dev_db)
    for key, value in before.items():
        schema, name = key.split(".", 1)
        if key in after:
            assert after[key] == value, key
        elif schema == "public":
            qschema, qname = quarantined(pg_server, dev_db, name)
            assert table_hash(pg_server, dev_db, qschema, qname) == value, key
        else:
            assert schema == "neon_auth"
    assert table_hash(pg_server, dev_db, "public", "bazaar-vid_api_usage_metric")[0] == 250
    backups = pg_server.execute(dev_db, "SELECT covers, restore_tested FROM pgsafe.backup ORDER BY taken_at")
    assert all(tested for _c, tested in backups) and len(backups) == 3
    assert sorted(c.get("schema") for c in backups[-1][0]) == ["auth", "neon_auth", "pgrst"]

    playbook("cleanup.yml", dev_inventory, root, extra)  # the second run changes nothing
    again = report(root, "dev", "cleanup")["sections"]
    assert {again[s]["status"] for s in ("table_merge", "table_cleanup", "auth_schema_removal")} == {"converged"}
    assert all_table_hashes(pg_server, dev_db) == after
    assert len(pg_server.execute(dev_db, "SELECT 1 FROM pgsafe.backup")) == 3  # no new backup needed

    # A removed schema comes back from its backup (what the rollback does).
    playbook("restore.yml", dev_inventory, root, {"restore_host": "dev", "restore_mode": "objects",
                                                  "restore_objects": ["schema:neon_auth"], "restore_confirm": dev_db})
    assert table_hash(pg_server, dev_db, "neon_auth", "users_sync") == before["neon_auth.users_sync"]


def test_legacy_audit_sees_the_writer(tmp_path, pg_server, scratch_server, prod_db):
    inv = write_inventory(tmp_path / "inv", {"prod": (pg_server, prod_db), "staging": (scratch_server, "postgres")})
    app = tmp_path / "app" / "src" / "server"
    app.mkdir(parents=True)
    (app / "memory.ts").write_text("export const projectMemory = pgTable('bazaar-vid_project_memory', {});\n"
                                   "db.select().from(projectMemory);\n")
    (app / "metrics.ts").write_text("// bazaar-vid_metrics_v2 and metrics are other tables\n")
    stop = threading.Event()

    def writer():
        conn = pg_server.connect(prod_db)
        project = pg_server.execute(prod_db, 'SELECT id FROM "bazaar-vid_project" LIMIT 1')[0][0]
        while not stop.is_set():
            with conn.cursor() as cur:
                cur.execute('''INSERT INTO "bazaar-vid_project_memory" (project_id, memory_type, memory_key,
                               memory_value) VALUES (%s, 'user_preference', 'k', 'v')''', (project,))
            time.sleep(0.2)
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        root = tmp_path / "artifacts"
        playbook("legacy_audit.yml", inv, root, {"legacy_audit_targets": "prod", "legacy_audit_sample_seconds": 4,
                                                  "legacy_audit_tables": plan("prod")["legacy_audit_tables"],
                                                  "legacy_audit_app_path": str(tmp_path / "app")})
    finally:
        stop.set()
        thread.join()
    section = report(root, "prod", "legacy_audit")["sections"]["legacy_audit"]
    verdicts = {t["name"]: t for t in section["tables"]}
    assert verdicts["bazaar-vid_project_memory"]["verdict"] == "in use"
    assert verdicts["bazaar-vid_project_memory"]["writes"]["n_tup_ins"] > 0
    assert verdicts["bazaar-vid_project_memory"]["code_references"]["projectMemory"]["count"] == 2
    assert verdicts["bazaar-vid_metric"]["verdict"] == "dormant"
    assert verdicts["bazaar-vid_metric"]["code_references"]["bazaar-vid_metric"]["count"] == 0
    assert verdicts["bazaar-vid_agent_message"]["verdict"] == "dormant"
    assert verdicts["bazaar-vid_metric"]["rows"] == 389
    assert "in use" in section["summary"].lower() or "IN USE" in section["summary"]


def test_purge_quarantine_after_retention_takes_a_final_dump(tmp_path, pg_server, scratch_server, prod_db):
    inv = write_inventory(tmp_path / "inv", {"prod": (pg_server, prod_db), "staging": (scratch_server, "postgres")})
    retired = run_module("pgsafe_table_retire", dict(pg_server.module_params(prod_db), run_id="t-old",
                                                     tables=plan("prod")["table_cleanup_tables"]))
    assert retired["rc"] == 0 and len([t for t in retired["tables"] if t["action"] == "retired"]) == 5
    root = tmp_path / "artifacts"
    nothing = run_module("pgsafe_table_retire", dict(pg_server.module_params(prod_db), run_id="t-p", state="purged",
                                                     backup_id="x"), check=True)
    assert nothing["rc"] == 0 and nothing["tables"] == [] and not nothing["changed"]  # nothing expired yet
    assert all(quarantined(pg_server, prod_db, t.split(".", 1)[1]) for t in plan("prod")["table_cleanup_tables"][:4])
    pg_server.execute(prod_db, "UPDATE pgsafe.quarantined_object SET retain_until = now() - interval '1 day' "
                               "WHERE original_name IN ('bazaar-vid_patch', 'api_usage_metric')")
    playbook("purge_quarantine.yml", inv, root, {"purge_quarantine_targets": "prod", "confirm_database": prod_db})
    section = report(root, "prod", "purge_quarantine")["sections"]["table_cleanup_purge"]
    assert section["status"] == "changed" and section["backup_id"]
    assert sorted(i["action"] for i in section["items"]) == ["purged", "purged"]
    purged = pg_server.execute(prod_db, "SELECT original_name, purge_backup_id FROM pgsafe.quarantined_object "
                                        "WHERE purged_at IS NOT NULL ORDER BY 1")
    assert [p[0] for p in purged] == ["api_usage_metric", "bazaar-vid_patch"]
    assert {p[1] for p in purged} == {section["backup_id"]}
    covers = pg_server.execute(prod_db, "SELECT covers, restore_tested FROM pgsafe.backup WHERE backup_id = %s",
                               (section["backup_id"],))[0]
    assert covers[1] is True and sorted(c.get("table") for c in covers[0]) == [
        "public_api_usage_metric", "public_bazaar-vid_patch"]
    assert not exists(pg_server, prod_db, "pgsafe_quarantine", "public_bazaar-vid_patch")
    assert exists(pg_server, prod_db, "pgsafe_quarantine", "public_bazaar-vid_scene_plan")  # not expired: kept
    assert schema_exists(pg_server, prod_db, "pgsafe_quarantine")
