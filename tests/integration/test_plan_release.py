"""The plan through a release: rehearsal on staging, then prod, on real databases.

- A merge added to prod's plan files is rehearsed and then executed by the prod run (never attested and skipped).
- After a passing rehearsal, changing one statement's input (a lock timeout) makes prod refuse, naming it.
- The proposal from the code's reference, committed as the plan files and applied through the rehearsal and
  prod, leaves no blocking drift against the reference.
"""
from __future__ import annotations

import json
import re
import shutil

import yaml

from ansible.module_utils.pgsafe_schema_diff import diff_snapshots
from ansible.module_utils.pgsafe_snapshot import ddl_snapshot
from tests.faults import faultlib as fl
from tests.integration.test_plan_run import run_dir
from tests.integration.test_schema_snapshot import REFERENCE, snap

METRIC = "public.bazaar-vid_api_usage_metric"


def release_env(pg_server, tmp_path, prod, staging):
    return fl.Env(tmp_path, {"prod": (pg_server, prod), "staging": (pg_server, staging)})


def test_a_merge_added_to_prods_plan_is_rehearsed_and_run_by_prod(pg_server, tmp_path):
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        # prod's old metric table gets rows the code's table lacks: now there is something to merge
        pg_server.execute(prod, 'INSERT INTO public."api_usage_metric" SELECT gen_random_uuid(), "provider", "model", '
                                '"userId", "projectId", "toolName", "success", "responseTime", "tokenCount", '
                                '"errorType", "errorMessage", "timestamp" FROM public."bazaar-vid_api_usage_metric" '
                                'LIMIT 7')
        target_before = pg_server.execute(prod, 'SELECT count(*) FROM public."bazaar-vid_api_usage_metric"')[0][0]
        env = release_env(pg_server, tmp_path, prod, staging)
        cleanup = fl.plan("prod", "cleanup")
        columns = [r[0] for r in pg_server.execute(prod, "SELECT attname FROM pg_attribute WHERE attrelid = "
                                                         "'public.api_usage_metric'::regclass AND attnum > 0")]
        extra = {"table_merge_merges": [{"source": "public.api_usage_metric", "target": METRIC,
                                         "column_map": {c: c for c in columns}}],
                 "table_cleanup_tables": [t for t in cleanup["table_cleanup_tables"] if not isinstance(t, dict)]}
        env.rehearse(**extra)
        # data moves between the rehearsal and the window: one more row arrives (same SQL, same fingerprint)
        pg_server.execute(prod, 'INSERT INTO public."api_usage_metric" SELECT gen_random_uuid(), "provider", "model", '
                                '"userId", "projectId", "toolName", "success", "responseTime", "tokenCount", '
                                '"errorType", "errorMessage", "timestamp" FROM public."api_usage_metric" LIMIT 1')
        result = env.prod(**extra)
        assert result.returncode == 0, result.flat[-5000:]
        assert "Start phase table_merge]" in result.stdout
        report = fl.latest_report(env, "prod", "sprint90_prod")
        assert "table_merge" in [p["phase"] for p in report["timeline"]]
        moved = report["sections"]["gates"]["data_since_rehearsal"]
        assert {"step": "02-table_merge", "table": "public.api_usage_metric", "measure": "rows", "then": 7,
                "now": 8} in moved, moved
        assert pg_server.execute(prod, 'SELECT count(*) FROM public."bazaar-vid_api_usage_metric"')[0][0] == target_before + 8
        assert pg_server.execute(prod, "SELECT to_regclass('public.api_usage_metric')")[0][0] is None
        plan = json.loads((run_dir(env, "prod", "sprint90_prod") / "plan.json").read_text())
        assert [s["kind"] for s in plan["plan"]["steps"]] == ["type_change", "table_merge"] + ["table_retire"] * 4


def test_prod_refuses_a_plan_whose_timeout_changed_since_the_rehearsal(pg_server, tmp_path):
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        env = release_env(pg_server, tmp_path, prod, staging)
        env.rehearse()
        before = fl.fingerprint(pg_server, prod)
        plan = dict(fl.plan("prod", "schema_fix")["schema_fix_plan"], lock_timeout="10s")
        result = env.prod(schema_fix_plan=plan)
        assert result.returncode != 0
        assert "is not the one rehearsed last" in result.flat, result.flat[-4000:]
        assert "step 01-type_change" in result.flat and "lock_timeout" in result.flat and "10s" in result.flat
        assert "Start phase backup]" not in result.stdout
        assert fl.fingerprint(pg_server, prod) == before
        assert fl.column_type(pg_server, prod, fl.EXPORTS, "id") == "text"


def test_the_proposal_applied_through_the_release_leaves_no_blocking_drift(pg_server, scratch_server, tmp_path):
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        env = release_env(pg_server, tmp_path, prod, staging)
        proposed = env.run("plan.yml", {"plan_from": "reference"})
        assert proposed.returncode == 0, proposed.flat[-4000:]
        text = (run_dir(env, "prod", "plan") / "proposed_plan.yml").read_text()
        proposal = yaml.safe_load(text)
        fks = {fk["name"] for fk in proposal["schema_fix_plan"]["foreign_keys"]}
        assert {"bazaar-vid_exports_user_id_bazaar-vid_user_id_fk", "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk",
                "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"} <= fks
        assert {(c["table"], c["column"]) for c in proposal["schema_fix_plan"]["changes"]} >= {
            ("public.bazaar-vid_exports", "id"), ("public.bazaar-vid_exports", "project_id"),
            ("public.bazaar-vid_export_analytics", "export_id")}
        assert "api_usage_metric" in text and "rows 0" in text  # a candidate, with its evidence, as a comment
        assert "api_usage_metric" not in json.dumps(proposal)  # ... never a step
        # the empty tables (declared, but empty and never written) and the legacy ones (listed for audit by the
        # inventory) are candidates with their exact rows, as comments only
        for name in ("component_error", "patch", "scene_plan", "scene_specs"):
            assert re.search(rf"public\.bazaar-vid_{name} \(table\): suggested retire \(quarantine\)\n#\s+evidence: "
                             rf"rows 0\b", text), name
        for name in ("project_memory", "metric", "agent_message"):
            found = re.search(rf"public\.bazaar-vid_{name} \(table\): suggested audit\n#\s+evidence: rows (\d+)", text)
            assert found and int(found.group(1)) > 0, name
            assert f"bazaar-vid_{name}" not in json.dumps(proposal)
        # committed as the plan files: prod's own, staging's a link to them (as the inventory template does)
        host_vars = env.inv_dir / "host_vars"
        shutil.rmtree(host_vars)
        (host_vars / "prod").mkdir(parents=True)
        (host_vars / "prod" / "proposed_plan.yml").write_text(text)
        (host_vars / "staging").mkdir()
        (host_vars / "staging" / "proposed_plan.yml").symlink_to("../prod/proposed_plan.yml")
        env.rehearse()
        result = env.prod()
        assert result.returncode == 0, result.flat[-5000:]
        reference, _ = ddl_snapshot(scratch_server.module_params("postgres"), REFERENCE, label="bazaar_vid.sql")
        blocking = [d for d in diff_snapshots(snap(pg_server, prod), reference) if d["severity"] == "blocking"]
        assert blocking == [], blocking
