"""One plan per run, on real databases and real playbook runs.

- plan.yml writes plan.json/plan.md listing every step with its SQL and typed hazards, and changes nothing.
- A run whose merge maps a column the source lacks, or whose source holds a NULL for a NOT NULL target column,
  fails in the plan step: nothing earlier in the plan ran (export_analytics.export_id is still text, no FK).
- Every step kind's failing precheck fails the plan, leaving the steps before it unapplied.
- A retired switch (-e gates_require_rehearsal=false, -e schema_fix_backup_guard=false) is refused with the
  named override to use; a named override runs, heads the report, is recorded, and changes the fingerprint.
"""
from __future__ import annotations

import json
import os
import subprocess

import psycopg2
import pytest

from ansible.module_utils.pgsafe_hazards import HAZARDS
from ansible.module_utils.pgsafe_plan import failed_steps, normalise_intent
from ansible.module_utils.pgsafe_plan_steps import build_plan
from tests.faults import faultlib as fl

PG_BIN = "/usr/lib/postgresql/15/bin"
FK = "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"


def public_dump(server, db):
    """Schema and data of the public schema, as pg_dump writes them (the target's own data)."""
    env = dict(os.environ, PGPASSWORD=server.libpq["password"])
    out = subprocess.run([f"{PG_BIN}/pg_dump", "-h", server.libpq["host"], "-p", str(server.port), "-U",
                          server.libpq["user"], "-n", "public", "--no-owner", db], env=env, check=True,
                         capture_output=True, text=True).stdout
    # (\restrict lines carry a random key per dump)
    return "\n".join(line for line in out.splitlines() if not line.startswith(("-- Dump", "\\restrict", "\\unrestrict")))


def run_dir(env, environment, playbook):
    return env.artifacts / environment / playbook / "latest"


def fk_exists(server, db, name):
    return bool(server.execute(db, "SELECT 1 FROM pg_constraint WHERE conname = %s", (name,)))


def test_plan_yml_lists_every_step_and_changes_nothing(pg_server, prod_db, tmp_path):
    env = fl.Env(tmp_path, {"prod": (pg_server, prod_db)})
    before = public_dump(pg_server, prod_db)
    result = env.run("plan.yml")
    assert result.returncode == 0, result.flat[-4000:]
    assert public_dump(pg_server, prod_db) == before
    # not even the product's own records: the plan lives in the run's artifacts
    assert pg_server.execute(prod_db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgsafe%'") == [(0,)]
    plan = json.loads((run_dir(env, "prod", "plan") / "plan.json").read_text())
    steps = plan["plan"]["steps"]
    assert [s["kind"] for s in steps] == ["type_change"] + ["table_retire"] * 5
    assert plan["summary"]["pending"] == 6 and plan["fingerprint"] == plan["plan"]["fingerprint"]
    for step in steps:
        assert step["statements"] and set(step["hazards"]) <= set(HAZARDS) and step["hazards"], step["id"]
        assert step["backup_covers"], step["id"]
    sql = [s["sql"] for s in steps[0]["statements"]]
    assert any('ALTER COLUMN "id" TYPE uuid' in s for s in sql)
    assert sum("ADD CONSTRAINT" in s and "NOT VALID" in s for s in sql) == 3
    assert sum("VALIDATE CONSTRAINT" in s for s in sql) == 3
    assert steps[0]["row_effects"]['public.bazaar-vid_exports'] == {"rows": 134, "quarantined": 2, "kept": 132}
    md = (run_dir(env, "prod", "plan") / "plan.md").read_text()
    for step in steps:
        assert f"## {step['id']} (to run)" in md
    assert 'ALTER TABLE "public"."bazaar-vid_scene_plan" RENAME TO "public_bazaar-vid_scene_plan"' in md
    assert 'ALTER TABLE "public"."public_bazaar-vid_scene_plan" SET SCHEMA "pgsafe_quarantine"' in md


def dev_merge(column_map):
    merge = dict(fl.plan("dev", "cleanup")["table_merge_merges"][0])
    merge["column_map"] = column_map
    return [merge]


def assert_nothing_of_the_plan_ran(server, db, result, *needles):
    assert result.returncode != 0
    assert "failed in phase plan" in result.flat, result.flat[-4000:]
    for needle in needles:
        assert needle in result.flat, (needle, result.flat[-4000:])
    for phase in ("backup", "schema_fix", "table_merge", "table_cleanup", "auth_schema_removal"):
        assert f"Start phase {phase}]" not in result.stdout
    assert fl.column_type(server, db, fl.ANALYTICS, "export_id") == "text"
    assert not fk_exists(server, db, FK)
    assert server.execute(db, 'SELECT count(*) FROM public."api_usage_metric"')[0][0] == 250
    assert server.execute(db, "SELECT to_regclass('public.\"bazaar-vid_api_usage_metric\"')")[0][0] is None


def test_dev_merge_mapping_a_column_the_source_lacks_fails_in_the_plan_step(pg_server, dev_db, tmp_path):
    env = fl.Env(tmp_path, {"dev": (pg_server, dev_db)})
    column_map = dict(fl.plan("dev", "cleanup")["table_merge_merges"][0]["column_map"], metadata="metadata")
    result = env.run("sprint90_dev.yml", {"table_merge_merges": dev_merge(column_map)})
    assert_nothing_of_the_plan_ran(pg_server, dev_db, result, "step 02-table_merge", "metadata")
    report = fl.latest_report(env, "dev", "sprint90_dev")
    assert report["failed_phase"] == "plan" and "metadata" in json.dumps(report["failure"])


def test_dev_merge_source_null_into_not_null_target_fails_in_the_plan_step(pg_server, dev_db, tmp_path):
    pg_server.execute(dev_db, 'ALTER TABLE public."api_usage_metric" ALTER COLUMN "provider" DROP NOT NULL')
    row = pg_server.execute(dev_db, 'UPDATE public."api_usage_metric" SET "provider" = NULL WHERE "id" = '
                                    '(SELECT min("id"::text)::uuid FROM public."api_usage_metric") RETURNING "id"::text')
    env = fl.Env(tmp_path, {"dev": (pg_server, dev_db)})
    result = env.run("sprint90_dev.yml")
    assert_nothing_of_the_plan_ran(pg_server, dev_db, result, "step 02-table_merge", "NOT NULL", row[0][0])
    md = (run_dir(env, "dev", "sprint90_dev") / "report.md").read_text()
    assert row[0][0] in md and "Why it failed" in md


def plan_on(server, db, intent):
    conn = psycopg2.connect(**dict(server.libpq, dbname=db))
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            reference = open("files/reference/bazaar_vid.sql").read()  # noqa: SIM115 - read once
            return build_plan(cur, normalise_intent(intent), {}, "test", {"reference_sql": reference})
    finally:
        conn.rollback()
        conn.close()


def dev_intent():
    cleanup, fix = fl.plan("dev", "cleanup"), fl.plan("dev", "schema_fix")
    return {"schema_fix": fix["schema_fix_plan"], "table_merge": cleanup["table_merge_merges"],
            "table_cleanup": {"tables": cleanup["table_cleanup_tables"]},
            "auth_schema_removal": {"schemas": cleanup["auth_schema_removal_schemas"], "independent": False}}


BREAKERS = {
    "type_change": ("UPDATE public.\"bazaar-vid_export_analytics\" SET export_id = 'not-a-uuid' "
                    "WHERE ctid = (SELECT min(ctid) FROM public.\"bazaar-vid_export_analytics\")", "not-a-uuid"),
    "table_merge": ('ALTER TABLE public."api_usage_metric" RENAME COLUMN "model" TO "model_name"', "model"),
    "table_retire": ("CREATE TABLE public.\"pgsafe-probe-rows\" AS SELECT 1 AS id", "pgsafe-probe-rows"),
    "schema_removal": ("CREATE VIEW public.pgsafe_test_uses_auth AS SELECT * FROM neon_auth.users_sync",
                       "pgsafe_test_uses_auth"),
}


@pytest.mark.parametrize("kind", ["type_change", "table_merge", "table_retire", "schema_removal"])
def test_each_step_kind_failing_fails_the_whole_plan_and_changes_nothing(pg_server, dev_db, kind):
    statement, needle = BREAKERS[kind]
    intent = dev_intent()
    pg_server.execute(dev_db, statement)
    if kind == "table_retire":  # listed for retirement, but it holds a row
        intent["table_cleanup"]["tables"].append("public.pgsafe-probe-rows")
    before = fl.fingerprint(pg_server, dev_db)
    plan = plan_on(pg_server, dev_db, intent)
    failed = failed_steps(plan)
    assert {s["kind"] for s in failed} == {kind}, [(s["id"], s["precheck"]["problems"]) for s in failed]
    text = json.dumps([s["precheck"] for s in failed], default=str)
    assert needle in text, text
    assert fl.fingerprint(pg_server, dev_db) == before
    assert fl.column_type(pg_server, dev_db, fl.ANALYTICS, "export_id") == "text"


def test_a_retired_switch_is_refused_and_a_named_override_heads_the_report(pg_server, scratch_server, prod_db,
                                                                          tmp_path):
    # staging here only receives the backup's restore test (a never-rehearsed prod)
    env = fl.Env(tmp_path, {"prod": (pg_server, prod_db), "staging": (scratch_server, "postgres")})
    for switch, override in (("gates_require_rehearsal", "rehearsal"), ("schema_fix_backup_guard", "backup_guard")):
        result = env.prod(**{switch: False})
        assert result.returncode != 0 and "failed in phase plan" in result.flat, result.flat[-3000:]
        assert f"{switch}=False no longer turns anything off" in result.flat
        assert f"pgsafe_overrides.{override}='<reason>'" in result.flat
        assert fl.column_type(pg_server, prod_db, fl.EXPORTS, "id") == "text"
    # without a rehearsal and without an override, the gate refuses
    plain = env.prod()
    assert plain.returncode != 0 and "no rehearsal of this plan" in plain.flat
    assert fl.column_type(pg_server, prod_db, fl.EXPORTS, "id") == "text"
    reason = "INC-9 exports down for every user; staging is being rebuilt; approved by the on-call DBA"
    run = env.prod(pgsafe_overrides={"rehearsal": reason})
    assert run.returncode == 0, run.flat[-4000:]
    assert fl.column_type(pg_server, prod_db, fl.EXPORTS, "id") == "uuid"
    md = (run_dir(env, "prod", "sprint90_prod") / "report.md").read_text()
    assert md.index("OVERRIDDEN SAFEGUARDS") < md.index("## Phases") and reason in md
    plan = json.loads((run_dir(env, "prod", "sprint90_prod") / "plan.json").read_text())
    assert plan["plan"]["overrides"] == {"rehearsal": reason}
    recorded = pg_server.execute(prod_db, "SELECT details::text FROM pgsafe.run WHERE playbook = 'sprint90_prod' "
                                          "ORDER BY started_at DESC LIMIT 1")[0][0]
    assert reason in recorded


def test_the_guard_override_is_in_the_plan_and_changes_its_fingerprint(pg_server, prod_db, tmp_path):
    env = fl.Env(tmp_path, {"prod": (pg_server, prod_db)})
    plain = env.run("plan.yml")
    assert plain.returncode == 0, plain.flat[-3000:]
    first = json.loads((run_dir(env, "prod", "plan") / "plan.json").read_text())
    guarded = env.run("plan.yml", {"pgsafe_overrides": {"backup_guard": "the disk for backups is being replaced"}})
    assert guarded.returncode == 0, guarded.flat[-3000:]
    second = json.loads((run_dir(env, "prod", "plan") / "plan.json").read_text())
    assert second["plan"]["overrides"] == {"backup_guard": "the disk for backups is being replaced"}
    assert second["fingerprint"] != first["fingerprint"]
    # it changes what runs (no guard), so a rehearsal without it does not count for it
    assert second["rehearsal_fingerprint"] != first["rehearsal_fingerprint"]
    window = env.run("plan.yml", {"window_override_reason": "late night fix"})
    third = json.loads((run_dir(env, "prod", "plan") / "plan.json").read_text())
    assert window.returncode == 0 and third["fingerprint"] != first["fingerprint"]
    # a window override only opens a gate: the SQL that runs, and so the rehearsal that counts, are the same
    assert third["rehearsal_fingerprint"] == first["rehearsal_fingerprint"]


def test_a_failing_last_step_leaves_every_earlier_step_unapplied(pg_server, dev_db, tmp_path):
    """Dev's plan ends with the schema removals; a view outside depends on one of them, and the plan does not let
    independent schemas proceed: the run stops in the plan step, before the type change, the merge and the
    retirements, which would all have worked."""
    pg_server.execute(dev_db, BREAKERS["schema_removal"][0])
    env = fl.Env(tmp_path, {"dev": (pg_server, dev_db)})
    result = env.run("sprint90_dev.yml", {"auth_schema_removal_independent": False})
    assert_nothing_of_the_plan_ran(pg_server, dev_db, result, "schema_removal", "pgsafe_test_uses_auth")
    for table in fl.plan("dev", "cleanup")["table_cleanup_tables"]:
        name = table.split(".", 1)[1]
        assert pg_server.execute(dev_db, "SELECT to_regclass(%s)", (f'public."{name}"',))[0][0] is not None
    assert pg_server.execute(dev_db, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('auth', 'pgrst', "
                                     "'neon_auth')") == [(3,)]


def test_applying_modules_refuse_statements_other_than_the_plans(pg_server, prod_db):
    """Each applying module renders what it is about to run and refuses when it is not the plan's (here: a digest
    that cannot match), changing nothing."""
    from tests.cleanup_helpers import run_module
    fix = fl.plan("prod", "schema_fix")["schema_fix_plan"]
    base = dict(pg_server.module_params(prod_db), run_id="t-moved", guard_override="test: a throwaway copy")
    wrong = "0" * 64
    before = fl.fingerprint(pg_server, prod_db)
    typefix = run_module("pgsafe_column_types", dict(base, changes=fix["changes"], foreign_keys=fix["foreign_keys"],
                                                     orphan_policy="quarantine", expected_statements_sha256=wrong))
    assert typefix["rc"] != 0 and "differ from the plan's" in typefix["msg"], typefix.get("msg")
    retire = run_module("pgsafe_table_retire", dict(base, tables=["public.bazaar-vid_patch"],
                                                    expected_statements_sha256={"public.bazaar-vid_patch": wrong}))
    assert retire["rc"] != 0 and "differ from the plan's" in retire["msg"], retire.get("msg")
    assert fl.fingerprint(pg_server, prod_db) == before
    assert fl.column_type(pg_server, prod_db, fl.EXPORTS, "id") == "text"
