import datetime as dt

import pytest

from ansible.module_utils.pgsafe_gates import (GateError, evaluate_gates, failed_gates, failure_message,
                                               gate_facts, gate_outcome, in_window, minutes_left, parse_window,
                                               plan_converged, plan_fingerprint, rehearsed_duration)

UTC = dt.timezone.utc
SAT_3AM = dt.datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # a Saturday
WED_NOON = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_plan_fingerprint_ignores_key_order_but_not_content():
    a = plan_fingerprint({"x": 1, "y": [1, 2]}, "0.1.0")
    assert a == plan_fingerprint({"y": [1, 2], "x": 1}, "0.1.0")
    assert a != plan_fingerprint({"x": 1, "y": [2, 1]}, "0.1.0")
    assert a != plan_fingerprint({"x": 1, "y": [1, 2]}, "0.2.0")


@pytest.mark.parametrize(("spec", "now", "expected"), [
    ("always", WED_NOON, True),
    ("never", WED_NOON, False),
    ("Sat 02:00-06:00", SAT_3AM, True),
    ("Sat 02:00-06:00", WED_NOON, False),
    ("Sat 02:00-06:00", SAT_3AM.replace(hour=6), False),
    ("Fri 22:00-02:00", SAT_3AM.replace(hour=1, minute=59), True),  # runs past midnight into Saturday
    ("Fri 22:00-02:00", SAT_3AM.replace(hour=2), False),
    ("Mon-Fri 11:00-13:00", WED_NOON, True),
    ("Fri-Mon 11:00-13:00", WED_NOON, False),
    ("daily 11:30-12:30", WED_NOON, True),
    (["Sat 02:00-06:00", "Wed 11:00-12:01"], WED_NOON, True),
    ("Sat 02:00-06:00; Wed 11:00-12:01", WED_NOON, True),
])
def test_windows(spec, now, expected):
    assert in_window(spec, now) is expected


@pytest.mark.parametrize("bad", ["", "Saturday 2-6", "Sat 25:00-26:00", "Sat 02:00"])
def test_bad_window_names_the_variable(bad):
    with pytest.raises(GateError, match="pgsafe_maintenance_window"):
        parse_window(bad)


def facts(**over):
    base = dict(environment="prod", requires_rehearsal=True, plan_fingerprint="p" * 64,
                attestations=[dict(plan_fingerprint="p" * 64, result="passed", run_id="r1",
                                   attested_at=WED_NOON - dt.timedelta(days=1), schema_fingerprint_before="s1")],
                rehearsal_max_age_days=7, live_schema_fingerprint="s1", confirm_required=True,
                confirm_database="bazaar_vid", database="bazaar_vid", window="always", now=WED_NOON,
                window_override_reason=None)
    base.update(over)
    return base


def test_all_gates_open():
    results = evaluate_gates(facts())
    assert failed_gates(results) == []
    assert {r["gate"] for r in results} == {"confirmation", "maintenance_window", "rehearsal", "plan_not_stale"}


def test_missing_confirmation_names_the_fix():
    results = evaluate_gates(facts(confirm_database=None))
    assert [r["gate"] for r in failed_gates(results)] == ["confirmation"]
    assert "-e confirm_database=bazaar_vid" in failure_message(results)


def test_wrong_database_confirmed():
    results = evaluate_gates(facts(confirm_database="bazaar_vid_staging"))
    assert "'bazaar_vid_staging'" in failure_message(results)


def test_outside_window_and_override():
    closed = evaluate_gates(facts(window="Sat 02:00-06:00"))
    assert [r["gate"] for r in failed_gates(closed)] == ["maintenance_window"]
    assert "window_override_reason" in failure_message(closed)
    overridden = evaluate_gates(facts(window="Sat 02:00-06:00", window_override_reason="incident 4711"))
    assert failed_gates(overridden) == []
    assert any(r.get("overridden") for r in overridden)


def test_no_rehearsal_of_this_plan():
    results = evaluate_gates(facts(plan_fingerprint="q" * 64))
    assert [r["gate"] for r in failed_gates(results)] == ["rehearsal"]
    assert "rehearse.yml" in failure_message(results)


def test_failed_or_old_rehearsal_refused():
    failed = facts()
    failed["attestations"][0]["result"] = "failed"
    assert "failed" in failure_message(evaluate_gates(failed))
    old = facts()
    old["attestations"][0]["attested_at"] = WED_NOON - dt.timedelta(days=8)
    assert "too old" in failure_message(evaluate_gates(old))


def test_stale_plan_refused():
    results = evaluate_gates(facts(live_schema_fingerprint="s2"))
    assert [r["gate"] for r in failed_gates(results)] == ["plan_not_stale"]
    assert "rehearse again" in failure_message(results)


def test_newest_passing_rehearsal_decides_staleness():
    f = facts(live_schema_fingerprint="s2")
    f["attestations"].append(dict(plan_fingerprint="p" * 64, result="passed", run_id="r2",
                                  attested_at=WED_NOON - dt.timedelta(hours=1), schema_fingerprint_before="s2"))
    assert failed_gates(evaluate_gates(f)) == []


def test_already_applied_plan_passes_as_converged():
    f = facts(live_schema_fingerprint="s9")
    f["attestations"][0]["schema_fingerprint_after"] = "s9"
    results = evaluate_gates(f)
    assert failed_gates(results) == []
    assert [r for r in results if r["gate"] == "plan_not_stale"][0]["converged"] is True


def test_failure_message_names_the_target():
    assert failure_message(evaluate_gates(facts(confirm_database=None)), "prod (database bazaar_vid)").startswith(
        "Refusing to change prod (database bazaar_vid): confirmation: confirm_database is missing but the target "
        "database is 'bazaar_vid'")


def test_own_records_do_not_count_as_a_rehearsal():
    f = facts()
    f["attestations"][0]["environment"] = "prod"
    assert [r["gate"] for r in failed_gates(evaluate_gates(f))] == ["rehearsal"]


def test_plan_converged_needs_a_passing_run_ending_with_the_live_schema():
    atts = [dict(plan_fingerprint="p", result="passed", schema_fingerprint_after="s2"),
            dict(plan_fingerprint="p", result="failed", schema_fingerprint_after="s3")]
    assert plan_converged(atts, "p", "s2") is True
    assert plan_converged(atts, "p", "s3") is False
    assert plan_converged(atts, "q", "s2") is False


@pytest.mark.parametrize(("spec", "now", "left"), [
    ("always", WED_NOON, None),
    ("Sat 02:00-06:00", SAT_3AM, 180),
    ("Sat 02:00-06:00", WED_NOON, None),  # outside
    ("Fri 22:00-02:00", SAT_3AM.replace(hour=1), 60),  # past midnight
    ("Fri 22:00-02:00", SAT_3AM - dt.timedelta(hours=4, minutes=30), 210),  # Fri 22:30
    ("Sat 02:00-04:00; Sat 02:30-06:00", SAT_3AM, 180),  # overlapping: the longest
])
def test_minutes_left_in_the_window(spec, now, left):
    assert minutes_left(spec, now) == left


def _rehearsed(minutes):
    return [dict(plan_fingerprint="p" * 64, result="passed", run_id="r1", attested_at=SAT_3AM - dt.timedelta(days=1),
                 schema_fingerprint_before="s1", duration_seconds=minutes * 60)]


def test_the_rehearsed_duration_must_fit_what_is_left_of_the_window():
    fits = evaluate_gates(facts(window="Sat 02:00-06:00", now=SAT_3AM, attestations=_rehearsed(100)))
    assert failed_gates(fits) == [] and "180 min left" in next(r for r in fits if r["gate"] == "time_left")["detail"]
    late = evaluate_gates(facts(window="Sat 02:00-06:00", now=SAT_3AM.replace(hour=5), attestations=_rehearsed(50)))
    (closed,) = failed_gates(late)  # 75 min needed with the 1.5x margin, 60 left
    assert closed["gate"] == "time_left" and "may not finish inside the window" in closed["detail"]
    assert "start earlier" in closed["remedy"]
    overridden = evaluate_gates(facts(window="Sat 02:00-06:00", now=SAT_3AM.replace(hour=5),
                                      attestations=_rehearsed(50), window_override_reason="short on time, approved"))
    assert failed_gates(overridden) == []
    # no duration recorded (older attestations) or no bounded window: no such gate
    assert "time_left" not in {r["gate"] for r in evaluate_gates(facts(window="always", attestations=_rehearsed(900)))}
    assert "time_left" not in {r["gate"] for r in evaluate_gates(facts(window="Sat 02:00-06:00", now=SAT_3AM))}


def test_rehearsed_duration_leaves_out_the_copy_and_the_attestation():
    phases = [{"phase": "preflight", "seconds": 0.5}, {"phase": "restore_copy", "seconds": 300},
              {"phase": "schema_fix", "seconds": 40.25}, {"phase": "validate", "seconds": 9}, {"phase": "attest", "seconds": 1}]
    assert rehearsed_duration(phases) == 49.75
    assert rehearsed_duration([]) is None and rehearsed_duration(None) is None


GATE_PARAMS = dict(environment="prod", require_rehearsal=True, rehearsal_max_age_days=7, confirm_required=False,
                   confirm_database=None, window="always", window_override_reason=None, overrides={},
                   plan_canonical=None, row_effects=None, now=None)


def test_gate_facts_take_the_servers_clock_unless_now_is_given():
    measured = dict(now=WED_NOON, database="db", attestations=[], live="L" * 64, last=None)
    facts = gate_facts(GATE_PARAMS, "f" * 64, measured)
    assert facts["now"] == WED_NOON and facts["database"] == "db" and facts["live_schema_fingerprint"] == "L" * 64
    facts = gate_facts(dict(GATE_PARAMS, now="2026-11-28T03:00:00"), "f" * 64, measured)
    assert facts["now"] == SAT_3AM  # a naive time is UTC
    assert "rehearsed_differences" not in facts


def test_gate_facts_name_what_differs_from_the_plan_rehearsed_last():
    ours = {"product_version": "1", "schema_fingerprint": "s", "overrides": {}, "steps": []}
    theirs = dict(ours, product_version="0")
    measured = dict(now=WED_NOON, database="db", attestations=[], live="L", last={"fingerprint": "r" * 64,
                                                                                  "canonical": theirs})
    facts = gate_facts(dict(GATE_PARAMS, plan_canonical=ours), "f" * 64, measured)
    assert facts["rehearsed_fingerprint"] == "r" * 64 and facts["rehearsed_differences"]
    gate = [r for r in evaluate_gates(facts) if r["gate"] == "rehearsal"][0]
    assert not gate["passed"] and "not the one rehearsed last" in gate["detail"]


def test_gate_outcome_reports_the_rehearsal_and_the_data_since():
    rehearsal = {"plan_fingerprint": "f" * 64, "result": "passed", "attested_at": WED_NOON - dt.timedelta(hours=1),
                 "schema_fingerprint_before": "L", "schema_fingerprint_after": "A", "run_id": "r1",
                 "environment": "staging", "row_effects": {}}
    measured = dict(now=WED_NOON, database="db", attestations=[rehearsal], live="L", last=None)
    params = dict(GATE_PARAMS, row_effects={})
    facts = gate_facts(params, "f" * 64, measured)
    out = gate_outcome(params, facts, evaluate_gates(facts))
    assert out["changed"] is False and out["plan_rehearsed"] is True and out["plan_converged"] is False
    assert out["window_overridden"] is False and out["data_since_rehearsal"] == []
    assert not failed_gates(out["gates"])
