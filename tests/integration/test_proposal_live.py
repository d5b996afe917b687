"""Declarative proposals on real Postgres: the local Sprint 90 prod (and dev) against the code's reference DDL.

The live side is snapshotted and the reference loaded exactly as tests/integration/test_schema_snapshot.py does
(live_snapshot of the fixture database; ddl_snapshot of files/reference/bazaar_vid.sql in a throwaway database on
the scratch server), then diffed with diff_snapshots(live, reference).
"""
from __future__ import annotations

import pytest
import yaml

from ansible.module_utils.pgsafe_proposal import plan_document, propose, render_proposal_yaml
from ansible.module_utils.pgsafe_schema_diff import diff_snapshots
from ansible.module_utils.pgsafe_snapshot import ddl_snapshot, live_snapshot, qname
from ansible.module_utils.pgsafe_typechange_facts import gather_facts
from ansible.module_utils.pgsafe_typechange_parse import normalise_changes, normalise_fks
from ansible.module_utils.pgsafe_typechange_plan import build_plan
from tests import pg

REFERENCE_PATH = "files/reference/bazaar_vid.sql"
REFERENCE = (pg.ROOT / REFERENCE_PATH).read_text()
HAND_WRITTEN = pg.ROOT / "inventories/prod/host_vars/prod"
EXPORTS, ANALYTICS = "public.bazaar-vid_exports", "public.bazaar-vid_export_analytics"
FK_NAMES = {
    (EXPORTS, "bazaar-vid_exports_user_id_bazaar-vid_user_id_fk"): ("user_id", "public.bazaar-vid_user"),
    (EXPORTS, "bazaar-vid_exports_project_id_bazaar-vid_project_id_fk"): ("project_id", "public.bazaar-vid_project"),
    (ANALYTICS, "bazaar-vid_export_analytics_export_id_bazaar-vid_exports_id_fk"): ("export_id", EXPORTS),
}
EMPTY_DECLARED = ("bazaar-vid_component_error", "bazaar-vid_patch", "bazaar-vid_scene_plan", "bazaar-vid_scene_specs")
LEGACY_DECLARED = ("bazaar-vid_project_memory", "bazaar-vid_metric", "bazaar-vid_agent_message")


@pytest.fixture(scope="module")
def reference(scratch_server):
    """The code's reference schema, loaded into a throwaway database on the scratch server."""
    snapshot, _ = ddl_snapshot(scratch_server.module_params("postgres"), REFERENCE, label="bazaar_vid.sql")
    return snapshot


def proposal_of(server, db, reference):
    live = live_snapshot(server.module_params(db))
    return live, propose(live, reference, diff_snapshots(live, reference))


def stepped_tables(prop):
    plan = prop.get("schema_fix_plan") or {}
    return ({c["table"] for c in plan.get("changes", [])} | {f["table"] for f in plan.get("foreign_keys", [])}
            | {a["table"] for a in prop.get("schema_additions", [])})


def test_prod_proposal_fixes_the_exports_pair_and_lists_the_rest(pg_server, prod_db, reference):
    live, prop = proposal_of(pg_server, prod_db, reference)
    plan = prop["schema_fix_plan"]
    assert plan["orphan_policy"] == "quarantine" and plan["strategy"] == "auto"
    assert {(c["table"], c["column"]): c for c in plan["changes"]} == {
        (EXPORTS, "id"): {"table": EXPORTS, "column": "id", "type": "uuid", "default": "gen_random_uuid()",
                          "not_null": True},
        (EXPORTS, "project_id"): {"table": EXPORTS, "column": "project_id", "type": "uuid", "not_null": True},
        (EXPORTS, "user_id"): {"table": EXPORTS, "column": "user_id", "type": "varchar(255)", "not_null": True},
        (ANALYTICS, "export_id"): {"table": ANALYTICS, "column": "export_id", "type": "uuid", "not_null": True},
    }
    fks = {(f["table"], f["name"]): f for f in plan["foreign_keys"]}
    assert set(fks) == set(FK_NAMES)
    for key, (column, ref_table) in FK_NAMES.items():
        declared = reference["constraints"][qname("public", key[0].split(".", 1)[1], key[1])]
        assert fks[key] == {"name": key[1], "table": key[0], "columns": [column], "ref_table": ref_table,
                            "ref_columns": ["id"], "on_delete": declared["on_delete"].lower(),
                            "on_update": declared["on_update"].lower()}
        assert fks[key]["on_delete"] == "cascade"
    # the real drift besides the exports pair: additive, each the way that keeps writers running
    assert prop["schema_additions"] == [
        {"kind": "add_column", "table": "public.bazaar-vid_project", "column": "audio", "type": "jsonb",
         "not_null": False},
        {"kind": "set_not_null", "table": "public.bazaar-vid_message", "column": "sequence"}]
    # the only table the code does not declare: a candidate with its rows, never a step
    candidates = {c["object"]: c for c in prop["candidates"]}
    old = candidates["public.api_usage_metric"]
    assert old["kind"] == "table" and old["suggested"] == "retire (quarantine)"
    assert old["evidence"]["rows"] == 0 and old["evidence"]["writes"] == 0 and old["evidence"]["dependents"] == []
    assert "public.bazaar-vid_api_usage_metric" in old["why"]  # its declared twin: nothing to merge, it is empty
    assert {c["object"] for c in prop["candidates"] if c["kind"] == "table"} == {"public.api_usage_metric"}
    # the columns the code dropped: candidates (their table's rows as evidence), never steps
    job = "public.bazaar-vid_custom_component_job"
    assert {c["object"] for c in prop["candidates"] if c["kind"] == "column"} == {
        "{0}.{1}".format(job, c) for c in ("original_tsx_code", "last_fix_attempt", "fix_issues")}
    assert all(c["evidence"]["rows"] == 60 for c in prop["candidates"] if c["kind"] == "column")
    # the empty and legacy tables: the code declares them (follow the data), so neither candidates nor steps
    for name in EMPTY_DECLARED + LEGACY_DECLARED:
        assert qname("public", name) in reference["tables"] and qname("public", name) in live["tables"]
        assert "public." + name not in candidates and "public." + name not in stepped_tables(prop)
    assert not stepped_tables(prop) & set(candidates)
    not_proposed = {(n["object"], n["attribute"]) for n in prop["not_proposed"]}
    assert ("public.show_db_tree()", "presence") in not_proposed
    assert ("public.message_project_sequence_idx", "name") in not_proposed  # a rename: never a second index


def test_prod_proposal_is_what_the_engines_accept(pg_server, prod_db, reference):
    """The rendered file round-trips, and the type change engine plans it on prod with no blocker."""
    _, prop = proposal_of(pg_server, prod_db, reference)
    text = render_proposal_yaml(prop, "local prod (Sprint 90 fixture)", REFERENCE_PATH)
    loaded = yaml.safe_load(text)
    assert loaded == plan_document(prop) and set(loaded) == {"schema_fix_plan", "schema_additions"}
    assert "# - public.api_usage_metric (table): suggested retire (quarantine)" in text
    assert "rows 0" in text and "REVIEW" in text and REFERENCE_PATH in text
    changes = normalise_changes(loaded["schema_fix_plan"]["changes"])
    fks = normalise_fks(loaded["schema_fix_plan"]["foreign_keys"])
    with pg_server.connect(prod_db, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        plan = build_plan(changes, fks, gather_facts(cur, changes, fks))
        conn.rollback()
    assert plan["blockers"] == [] and not plan["converged"]
    assert {f["name"]: f["state"] for f in plan["foreign_keys"]} == {name: "missing" for _, name in FK_NAMES}
    additions = pytest.importorskip("ansible.module_utils.pgsafe_additions")
    with pg_server.connect(prod_db, autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        steps = additions.plan_additions(cur, loaded["schema_additions"])
        conn.rollback()
    assert [(s["kind"], s["converged"]) for s in steps] == [("add_column", False), ("set_not_null", False)]
    assert [s["precheck"]["problems"] for s in steps] == [[], []]


def test_prod_proposal_against_the_hand_written_inventory(pg_server, prod_db, reference):
    """Where the generated proposal and inventories/prod/host_vars/prod agree, and where they differ (on purpose)."""
    _, prop = proposal_of(pg_server, prod_db, reference)
    hand = yaml.safe_load((HAND_WRITTEN / "schema_fix.yml").read_text())["schema_fix_plan"]
    cleanup = yaml.safe_load((HAND_WRITTEN / "cleanup.yml").read_text())
    plan = prop["schema_fix_plan"]

    def changes(items):
        return sorted((c["schema"], c["table"], c["column"], c["type"], c["default"], c["not_null"], c["set_default"])
                      for c in normalise_changes(items))

    def fks(items):
        return sorted(tuple((k, str(v)) for k, v in sorted(f.items())) for f in normalise_fks(items))

    # the same type fixes and foreign keys (the hand-written file leaves on_update to its default, NO ACTION)
    assert changes(plan["changes"]) == changes(hand["changes"])
    assert fks(plan["foreign_keys"]) == fks(hand["foreign_keys"])
    assert (plan["orphan_policy"], plan["strategy"]) == (hand["orphan_policy"], hand["strategy"])
    # differences: the hand-written inventory has no schema_additions (project.audio, message.sequence) ...
    assert "schema_additions" not in yaml.safe_load((HAND_WRITTEN / "schema_fix.yml").read_text())
    assert len(prop["schema_additions"]) == 2
    # ... retires the four empty tables the code declares (the proposal lists only the undeclared api_usage_metric)
    hand_retired = {t if isinstance(t, str) else t["name"] for t in cleanup["table_cleanup_tables"]}
    retired = {c["object"] for c in prop["candidates"] if c["suggested"] == "retire (quarantine)"}
    assert hand_retired - retired == {"public." + t for t in EMPTY_DECLARED}
    assert retired == {"public.api_usage_metric"} <= hand_retired
    # ... and audits legacy tables the code declares (no candidate: the diff does not call them extra)
    assert set(cleanup["legacy_audit_tables"]) == {"public." + t for t in LEGACY_DECLARED}
    assert not {c["object"] for c in prop["candidates"]} & set(cleanup["legacy_audit_tables"])
    # the columns the code dropped are candidates the hand-written inventory does not mention
    assert not any("original_tsx_code" in str(v) for v in cleanup.values())


def test_dev_old_metric_table_is_a_merge_candidate(pg_server, dev_db, reference):
    """Dev lacks the declared bazaar-vid_api_usage_metric and holds its columns as api_usage_metric (250 rows)."""
    _, prop = proposal_of(pg_server, dev_db, reference)
    candidates = {c["object"]: c for c in prop["candidates"]}
    old = candidates["public.api_usage_metric"]
    assert old["suggested"] == "merge into public.bazaar-vid_api_usage_metric / rename"
    assert old["evidence"]["rows"] == 250
    assert {c["object"] for c in prop["candidates"] if c["kind"] == "schema"} == {"auth", "pgrst", "neon_auth"}
    assert candidates["neon_auth.users_sync"]["suggested"] == "audit"
    missing = [n for n in prop["not_proposed"] if n["object"] == "public.bazaar-vid_api_usage_metric"]
    assert len(missing) == 1 and "public.api_usage_metric" in missing[0]["why"]
    assert [c["column"] for c in prop["schema_fix_plan"]["changes"]] == ["export_id"]
    assert not stepped_tables(prop) & set(candidates)
