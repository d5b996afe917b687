"""Monitoring rates, limits, breaches and the timeline chart, without a database."""
import xml.etree.ElementTree as ET

import pytest

from ansible.module_utils.pgsafe_monitor import (MonitorError, _count_errors, breaches, judge, limits, rates, reading_kind,
                                                 timeline_of, timeline_points, timeline_rows, timeline_svg)


def reading(epoch, rollbacks=0, deadlocks=0, temp=0, seq=0, errors=None, calls=0, total=0.0, invalid=(), reset=""):
    return {"epoch": epoch, "db": {"xact_commit": 100, "xact_rollback": rollbacks, "deadlocks": deadlocks,
                                   "conflicts": 0, "temp_files": temp, "stats_reset": reset},
            "tables": {"public.bazaar-vid_exports": {"seq_scan": seq}},
            "statements": {"available": True, "tables": {"public.bazaar-vid_exports": {"calls": calls,
                                                                                       "total_ms": total}}},
            "invalid_indexes": list(invalid), "log": {"errors": errors}}


def test_rates_per_minute_and_counter_reset():
    r = rates(reading(0, rollbacks=10, seq=5, calls=10, total=100.0), reading(120, rollbacks=70, seq=65, errors=8,
                                                                            calls=30, total=700.0))
    assert r["minutes"] == 2 and r["rollbacks_per_minute"] == 30 and r["seq_scans_per_minute"] == 30
    assert r["errors_per_minute"] == 4 and r["statement_mean_ms"] == 30.0 and r["invalid_indexes"] == 0
    reset = rates(reading(0, rollbacks=500), reading(60, rollbacks=20, reset="2026-01-01"))
    assert reset["rollbacks_per_minute"] == 20
    assert rates(reading(0), reading(60))["errors_per_minute"] is None  # log not readable: unknown, not zero


def test_limits_take_the_larger_of_max_and_baseline_factor():
    lim = limits({"rollbacks_per_minute": {"max": 30, "factor": 3}, "invalid_indexes": 0},
                 {"rollbacks_per_minute": 20, "invalid_indexes": 0})
    assert lim["rollbacks_per_minute"] == 60 and lim["invalid_indexes"] == 0
    assert limits({}, {"rollbacks_per_minute": 1})["rollbacks_per_minute"] == 30
    with pytest.raises(MonitorError):
        limits({"cpu": 1}, {})


def test_breaches_only_above_the_limit():
    lim = {"rollbacks_per_minute": 60, "invalid_indexes": 0, "errors_per_minute": 5}
    found = breaches({"rollbacks_per_minute": 61, "invalid_indexes": 1, "errors_per_minute": None}, lim,
                     {"rollbacks_per_minute": 20})
    assert [(b["metric"], b["value"], b["limit"]) for b in found] == [("rollbacks_per_minute", 61, 60),
                                                                     ("invalid_indexes", 1, 0)]
    assert breaches({"rollbacks_per_minute": 60, "invalid_indexes": 0}, lim) == []


def test_error_lines_filtered_by_database():
    log = ("2026-01-01 10:00:00 UTC [1] postgres@bazaar_vid ERROR:  division by zero\n"
           "2026-01-01 10:00:00 UTC [2] postgres@other ERROR:  boom\n"
           "2026-01-01 10:00:00 UTC [1] postgres@bazaar_vid STATEMENT:  select 1/0\n"
           "2026-01-01 10:00:01 UTC [3] postgres@bazaar_vid FATAL:  terminating connection\n")
    assert _count_errors(log, "bazaar_vid") == 2
    assert _count_errors(log) == 3


def test_timeline_svg_is_well_formed_and_marks_breaches():
    samples = [{"taken_at": "2026-01-01T10:00:00Z", "kind": "baseline", "metrics": {"rates": {"rollbacks_per_minute": 2}}},
               {"taken_at": "2026-01-01T10:15:00Z", "kind": "sample", "metrics": {"rates": {"rollbacks_per_minute": 3}}},
               {"taken_at": "2026-01-01T10:30:00Z", "kind": "sample", "metrics": {"rates": {"rollbacks_per_minute": 90,
                                                                                           "invalid_indexes": 1}}}]
    svg = timeline_svg(samples, {"rollbacks_per_minute": 30, "invalid_indexes": 0})
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    assert root.tag.endswith("svg")
    red = [c for c in root.iter("{http://www.w3.org/2000/svg}circle") if c.get("fill") == "#c00"]
    assert len(red) == 2  # the rollback spike and the invalid index
    assert "limit 30" in svg and ET.fromstring(timeline_svg([], {})) is not None  # noqa: S314


def stored(i, kind, rollbacks_rate=None, found=()):
    return {"id": i, "kind": kind, "taken_at": "2026-01-01T00:0{0}:00Z".format(i),
            "metrics": {"rates": {"rollbacks_per_minute": rollbacks_rate}}, "breaches": list(found)}


def test_a_sample_without_a_baseline_captures_one():
    assert reading_kind("sample", [], "r1") == ("baseline", "no baseline for series r1: captured one now; samples "
                                                            "compare with it from the next run")
    assert reading_kind("sample", [stored(1, "baseline")], "r1") == ("sample", None)
    assert reading_kind("baseline", [stored(1, "baseline")], "r1") == ("baseline", None)


def test_judge_a_baseline_by_its_own_rates_and_a_sample_by_the_newest_baseline():
    first, second = reading(0, rollbacks=0), reading(60, rollbacks=200)
    got, base, lim, found = judge("baseline", first, second, [], {})
    assert got is base and got["rollbacks_per_minute"] == 200 and lim["rollbacks_per_minute"] == 600 and found == []
    samples = [stored(1, "baseline", 5), stored(2, "sample", 7)]
    samples[0]["metrics"]["rates"] = {"rollbacks_per_minute": 5}
    got, base, lim, found = judge("sample", first, second, samples, {})
    assert base == {"rollbacks_per_minute": 5} and lim["rollbacks_per_minute"] == 30
    assert [b["metric"] for b in found] == ["rollbacks_per_minute"]


def test_the_timeline_starts_at_the_newest_baseline():
    samples = [stored(1, "sample"), stored(2, "baseline", 1), stored(3, "sample", 2)]
    row = stored(4, "sample", 90, [{"metric": "rollbacks_per_minute", "value": 90, "limit": 30}])
    assert [s["id"] for s in timeline_of(samples, row)] == [2, 3, 4]
    assert [s["id"] for s in timeline_of(samples, stored(4, "baseline"))] == [4]  # a new baseline starts afresh
    rows = timeline_rows(timeline_of(samples, row))
    assert rows[-1]["rollbacks_per_minute"] == 90 and rows[-1]["breaches"] == "rollbacks_per_minute=90>30"
    assert timeline_points([row])[0]["rates"] == {"rollbacks_per_minute": 90}
