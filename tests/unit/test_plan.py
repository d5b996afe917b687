"""The run's one plan as data: intent checked whole, overrides named, fingerprint of the SQL, differences named."""
from __future__ import annotations

import copy

import pytest

from ansible.module_utils.pgsafe_hazards import HAZARDS, UnknownHazard, checked, hazards_of
from ansible.module_utils.pgsafe_plan import (
    STEP_PHASES,
    PlanError,
    canonical,
    data_since,
    differences,
    failure_message,
    fingerprint,
    json_sha256,
    new_step,
    normalise_intent,
    normalise_overrides,
    number_steps,
    object_conflicts,
    plan_result,
    planning_options,
    render_markdown,
    statement,
    summary,
)


def a_plan(**step_fields):
    fk = statement('ALTER TABLE "public"."a-b" ADD CONSTRAINT "fk" FOREIGN KEY ("x") REFERENCES "public"."p" ("id") '
                   'ON DELETE CASCADE NOT VALID', "ACCESS EXCLUSIVE", "3s")
    steps = [new_step("table_retire", ["public.empty"], statements=[statement("LOCK TABLE x", "ACCESS EXCLUSIVE")],
                      hazards=["access_exclusive_lock", "data_loss"], backup_covers=["public.empty"],
                      params={"table": "public.empty"}, row_effects={"public.empty": {"rows": 0}}),
             new_step("type_change", ["public.a-b"], statements=[fk], hazards=["rewrite", "cast_may_fail"],
                      backup_covers=["public.a-b"], params={"lock_timeout": "3s", "on_delete": "cascade"},
                      row_effects={"public.a-b": {"rows": 134, "quarantined": 2}}, **step_fields)]
    plan = {"product_version": "0.2.0", "schema_fingerprint": "s" * 64, "overrides": {}, "database": "db",
            "steps": number_steps(steps), "conflicts": []}
    plan["fingerprint"] = fingerprint(plan)
    return plan


def test_steps_run_in_kind_order_with_ids():
    plan = a_plan()
    assert [s["id"] for s in plan["steps"]] == ["01-type_change", "02-table_retire"]
    assert list(STEP_PHASES)[:1] == ["type_change"]


def test_fingerprint_ignores_counts_and_offending_rows_but_not_sql_timeouts_or_order():
    plan = a_plan()
    moved = copy.deepcopy(plan)
    moved["steps"][0]["row_effects"]["public.a-b"]["rows"] = 999
    moved["steps"][0]["precheck"]["offending_rows"] = [{"pk": {"id": 1}}]
    assert fingerprint(moved) == plan["fingerprint"]
    for change in (lambda p: p["steps"][0]["statements"][0].update(lock_timeout="10s"),
                   lambda p: p["steps"][0]["params"].update(on_delete="restrict"),
                   lambda p: p["steps"][0]["hazards"].append("table_scan"),
                   lambda p: p.update(schema_fingerprint="t" * 64),
                   lambda p: p.update(product_version="0.3.0"),
                   lambda p: p.update(overrides={"backup_guard": "a reason"}),
                   lambda p: p["steps"].reverse()):
        other = copy.deepcopy(plan)
        change(other)
        assert fingerprint(other) != plan["fingerprint"]


def test_converged_steps_are_not_fingerprinted():
    plan = a_plan()
    done = copy.deepcopy(plan)
    done["steps"][1]["converged"] = True
    assert [s["id"] for s in canonical(done)["steps"]] == ["01-type_change"]
    assert summary(done)["pending"] == 1 and summary(done)["converged"] == 1


def test_differences_name_the_step_and_the_field():
    plan = a_plan()
    other = copy.deepcopy(plan)
    other["steps"][0]["params"]["on_delete"] = "restrict"
    other["steps"][0]["statements"][0]["sql"] = other["steps"][0]["statements"][0]["sql"].replace("CASCADE", "RESTRICT")
    found = differences(canonical(other), canonical(plan), "prod's plan", "the rehearsed plan")
    assert any("step 01-type_change params" in d and "restrict" in d for d in found), found
    assert any("step 01-type_change statement 1" in d and "RESTRICT" in d for d in found), found
    assert differences(canonical(plan), canonical(plan)) == []
    assert any(d.startswith("schema_fingerprint") for d in differences(canonical(dict(plan, schema_fingerprint="x")),
                                                                       canonical(plan)))


def test_failure_names_step_object_problem_and_rows():
    plan = a_plan(precheck={"ok": False, "problems": ["column mapping: source has no column metadata"],
                            "notes": [], "offending_rows": [{"pk": {"id": 7}, "column": "metadata"}]})
    msg = failure_message(plan)
    assert "step 01-type_change (public.a-b)" in msg and "metadata" in msg and '"id": 7' in msg
    assert "nothing was changed" in msg
    assert summary(plan)["failed"] == ["01-type_change"]


def test_two_kinds_changing_one_object_conflict():
    steps = number_steps([new_step("type_change", ["public.t"]), new_step("table_retire", ["public.t"])])
    assert object_conflicts(steps) and "public.t" in object_conflicts(steps)[0]
    assert object_conflicts(number_steps([new_step("table_retire", ["public.a"]),
                                          new_step("table_retire", ["public.b"])])) == []


def test_markdown_lists_every_step_with_its_sql_and_hazards():
    text = render_markdown(dict(a_plan(), overrides={"rehearsal": "dev has no copy"}))
    assert "## 01-type_change (to run)" in text and "## 02-table_retire (to run)" in text
    assert "ON DELETE CASCADE NOT VALID" in text and "cast_may_fail" in text
    assert "**rehearsal**: dev has no copy" in text


@pytest.mark.parametrize("intent, words", [
    ({"schema_fix": {"changes": [], "orphans": "x"}}, ["schema_fix_plan", "orphans"]),
    ({"unknown_section": {}}, ["pgsafe_plan", "unknown_section"]),
    ({"schema_fix": {"orphan_policy": "delete"}}, ["orphan_policy", "quarantine"]),
    ({"table_merge": [{"source": "a", "target": "b"}]}, ["table_merge_merges[0].column_map"]),
    ({"table_merge": [{"source": "a", "target": "b", "column_map": {"x": "x"}, "colum_map": {}}]},
     ["table_merge_merges[0]", "colum_map"]),
    ({"table_cleanup": {"tables": "public.t"}}, ["table_cleanup_tables", "list"]),
])
def test_bad_intent_is_refused_naming_the_key(intent, words):
    with pytest.raises(PlanError) as exc:
        normalise_intent(intent)
    for word in words:
        assert word in str(exc.value)


def test_intent_defaults_are_filled_in():
    intent = normalise_intent({})
    assert intent["schema_fix"]["lock_timeout"] == "3s" and intent["table_merge"] == []
    assert intent["auth_schema_removal"]["independent"] is False


def test_overrides_need_a_known_name_and_a_reason():
    assert normalise_overrides({"rehearsal": "  dev   has no copy "}) == {"rehearsal": "dev has no copy"}
    with pytest.raises(PlanError, match="needs a reason"):
        normalise_overrides({"backup_guard": " "})
    with pytest.raises(PlanError, match="unknown key"):
        normalise_overrides({"gates": "x"})


@pytest.mark.parametrize("switch, override", [("gates_require_rehearsal", "rehearsal"),
                                              ("gates_confirm_required", "confirmation"),
                                              ("schema_fix_backup_guard", "backup_guard")])
def test_a_retired_switch_set_false_is_refused_with_the_override_to_use(switch, override):
    with pytest.raises(PlanError) as exc:
        normalise_overrides({}, {switch: False})
    assert "pgsafe_overrides.{0}".format(override) in str(exc.value)
    assert normalise_overrides({}, {switch: None}) == {} and normalise_overrides({}, {switch: True}) == {}


def test_one_hazard_vocabulary():
    assert hazards_of({"rewrite": True, "lock": "ACCESS EXCLUSIVE", "cast_may_fail": True}) == [
        "access_exclusive_lock", "cast_may_fail", "rewrite"]
    assert set(checked(list(HAZARDS))) == set(HAZARDS)
    with pytest.raises(UnknownHazard):
        new_step("type_change", ["t"], hazards=["scary"])


def test_data_since_the_rehearsal_names_what_moved():
    then = {"01-type_change": {"public.a-b": {"rows": 134, "quarantined": 2, "kept": 132}}}
    now = {"01-type_change": {"public.a-b": {"rows": 140, "quarantined": 3, "kept": 137}}}
    moved = data_since(now, then)
    assert {"step": "01-type_change", "table": "public.a-b", "measure": "quarantined", "then": 2, "now": 3} in moved
    assert len(moved) == 3 and data_since(then, then) == []


def test_json_sha256_is_canonical_json():
    assert json_sha256({"b": 1, "a": [1, "é"]}) == json_sha256({"a": [1, "é"], "b": 1})
    assert json_sha256(["é"]) != json_sha256(["é"], ensure_ascii=False)
    assert len(json_sha256(None)) == 64


def _with_rehearsal_fingerprint(plan):
    plan["rehearsal_fingerprint"] = fingerprint(plan, gate_overrides=False)
    return plan


def test_plan_result_of_a_good_plan_refuses_nothing():
    plan = _with_rehearsal_fingerprint(a_plan())
    out, problem = plan_result(plan)
    assert problem is None and out["refused"] is False and out["changed"] is False
    assert out["fingerprint"] == plan["fingerprint"] and "differences" not in out
    assert set(out) >= {"canonical", "rehearsal_canonical", "markdown", "summary", "report_rows", "row_effects"}


def test_plan_result_refuses_a_failing_precheck_and_a_plan_that_is_not_the_expected_one():
    failing = _with_rehearsal_fingerprint(a_plan(precheck={"ok": False, "problems": ["boom"], "notes": [],
                                                           "offending_rows": []}))
    out, problem = plan_result(failing)
    assert out["refused"] and "boom" in problem
    good = _with_rehearsal_fingerprint(a_plan())
    other = copy.deepcopy(good)
    other["product_version"] = "9.9.9"
    out, problem = plan_result(good, canonical(other, gate_overrides=False), "the rehearsed plan")
    assert out["refused"] and out["differences"] and "is not the rehearsed plan" in problem
    out, problem = plan_result(good, canonical(good, gate_overrides=False))
    assert problem is None and out["differences"] == []


def test_planning_options_take_the_socket_before_the_host():
    params = {"reference_sql": None, "fail_on_skipped": True, "online_threshold_bytes": 1, "disk_free_bytes": None,
              "login_unix_socket": "/run/postgresql", "login_host": "db", "run_id": "r"}
    assert planning_options(params)["host"] == "/run/postgresql"
    assert planning_options(dict(params, login_unix_socket=""))["host"] == "db"
