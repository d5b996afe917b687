"""Validation judges the run, not the world: conformance with the code against the schema before the run."""
from __future__ import annotations

import copy

from ansible.module_utils.pgsafe_snapshot import qname
from ansible.module_utils.pgsafe_validate import check_conformance, plan_targets

from tests.unit.test_schema_diff import EXPORTS, base, col

USER = qname("public", "bazaar-vid_user")
PLAN = {"schema_fix": {"changes": [{"table": "public.bazaar-vid_exports", "column": "user_id", "type": "uuid"}],
                       "foreign_keys": [{"name": "exports_user_fk", "table": "public.bazaar-vid_exports"}]},
        "table_merge": [{"source": "public.api_usage_metric", "target": "public.bazaar-vid_api_usage_metric"}],
        "table_cleanup": {"tables": ["public.bazaar-vid_patch", {"name": "public.old", "expected_rows": 0}]},
        "auth_schema_removal": {"schemas": ["auth"]}}


def snapshots():
    """(code, before, after): before has a targeted type drift and an untouched pre-existing one."""
    code = base()
    before = copy.deepcopy(code)
    before["tables"][EXPORTS]["columns"]["user_id"]["type"] = "text"  # targeted by the plan
    before["tables"][USER]["columns"]["email"]["type"] = "text"  # pre-existing, not in the plan
    after = copy.deepcopy(before)
    after["tables"][EXPORTS]["columns"]["user_id"]["type"] = "character varying(255)"  # the run fixed it
    return code, before, after


def by_judgement(entry):
    out = {}
    for item in entry["items"]:
        out.setdefault(item["judgement"], set()).add(item["object"])
    return out


def test_plan_targets_quote_every_name_the_way_snapshots_key_them():
    targets = plan_targets(PLAN)
    assert targets["objects"] == {EXPORTS + '."user_id"', EXPORTS + '."exports_user_fk"',
                                  qname("public", "bazaar-vid_api_usage_metric")}
    assert targets["absent_tables"] == {qname("public", "api_usage_metric"), qname("public", "bazaar-vid_patch"),
                                        qname("public", "old")}
    assert targets["absent_schemas"] == {'"auth"'}
    assert targets["changed_tables"] == {EXPORTS, qname("public", "bazaar-vid_api_usage_metric")}
    assert plan_targets({}) == {"objects": set(), "absent_tables": set(), "absent_schemas": set(),
                                "changed_tables": set()}


def test_a_correct_run_passes_with_pre_existing_drift_reported_not_failing():
    code, before, after = snapshots()
    entry = check_conformance(after, code, before_snapshot=before, plan=PLAN)
    assert entry["status"] == "ok", entry["summary"]
    judged = by_judgement(entry)
    assert judged["pre-existing"] == {USER + '."email"'} and judged["fixed"] == {EXPORTS + '."user_id"'}
    assert "1 pre-existing" in entry["summary"] and "1 fixed" in entry["summary"]


def test_strict_mode_fails_on_pre_existing_blocking_drift():
    code, before, after = snapshots()
    entry = check_conformance(after, code, before_snapshot=before, plan=PLAN, strict=True)
    assert entry["status"] == "failed" and USER + '."email"' in entry["summary"]


def test_targeted_drift_still_there_fails_naming_it():
    code, before, _after = snapshots()
    entry = check_conformance(before, code, before_snapshot=before, plan=PLAN)
    assert entry["status"] == "failed"
    assert "drift the plan targets is still there: " + EXPORTS + '."user_id"' in entry["summary"]
    assert by_judgement(entry)["targeted"] == {EXPORTS + '."user_id"'}


def test_drift_introduced_during_the_run_fails_naming_it():
    code, before, after = snapshots()
    after["tables"][EXPORTS]["columns"]["stray"] = col(9, "text")  # added between plan and validate
    entry = check_conformance(after, code, before_snapshot=before, plan=PLAN)
    assert entry["status"] == "failed"
    assert "new drift appeared during the run: " + EXPORTS + '."stray"' in entry["summary"]


def test_a_pre_existing_difference_the_run_changed_is_new():
    code, before, after = snapshots()
    after["tables"][USER]["columns"]["email"]["type"] = "character varying(10)"  # still wrong, and changed
    entry = check_conformance(after, code, before_snapshot=before, plan=PLAN)
    assert by_judgement(entry)["new"] == {USER + '."email"'} and entry["status"] == "failed"


def test_tables_and_schemas_removed_by_the_plan_are_planned_not_missing():
    code, before, after = snapshots()
    patch = qname("public", "bazaar-vid_patch")
    for snap in (code, before):
        snap["tables"][patch] = copy.deepcopy(code["tables"][USER])
        snap["tables"][patch]["name"] = "bazaar-vid_patch"
    code["schemas"]['"auth"'] = {"name": "auth", "comment": None}
    entry = check_conformance(after, code, before_snapshot=before, plan=PLAN)
    assert entry["status"] == "ok", entry["summary"]
    assert by_judgement(entry)["planned"] == {patch, '"auth"'}
    other = copy.deepcopy(PLAN)
    other["table_cleanup"]["tables"] = []  # not the plan's: a table that vanished is new drift
    assert check_conformance(after, code, before_snapshot=before, plan=other)["status"] == "failed"


def test_without_a_before_snapshot_every_blocking_difference_fails():
    code, _before, after = snapshots()
    entry = check_conformance(after, code, plan=PLAN)
    assert entry["status"] == "failed" and "no before snapshot" in entry["summary"]
    assert by_judgement(entry)["unjudged"] == {USER + '."email"'}


def test_new_cosmetic_differences_do_not_fail():
    code, before, after = snapshots()
    after["tables"][EXPORTS]["columns"]["note"]["comment"] = "a comment the code does not have"
    entry = check_conformance(after, code, before_snapshot=before, plan=PLAN)
    assert entry["status"] == "ok" and by_judgement(entry)["new_cosmetic"] == {EXPORTS + '."note"'}


def test_check_mode_shows_targeted_drift_as_what_the_plan_would_fix():
    code, before, _after = snapshots()
    entry = check_conformance(before, code, before_snapshot=before, plan=PLAN, applied=False)
    assert entry["status"] == "ok" and by_judgement(entry)["to_fix"] == {EXPORTS + '."user_id"'}
