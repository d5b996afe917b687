# -*- coding: utf-8 -*-
"""Gates before prod changes anything: plan fingerprint, rehearsal, confirmation, window, staleness.

Plain Python (no Ansible, no database): the module ``pgsafe_gate`` feeds it catalog facts and
attestation rows (read by module_utils/pgsafe_attestations.py); ``gate_facts`` turns them and the
module's options into the facts ``evaluate_gates`` decides on, ``gate_outcome`` into the module's
result; tests exercise every rule directly.
"""
from __future__ import annotations

import datetime as _dt
import re

from ansible.module_utils.pgsafe_plan import data_since, differences, json_sha256

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class GateError(ValueError):
    """A gate configuration is malformed; the message names the variable and the fix."""


def plan_fingerprint(plan, product_version):
    """Stable hash of the plan variables and the product version.

    The plan is canonical JSON (sorted keys, no whitespace), so the same plan written in
    another key order or YAML style gives the same fingerprint.
    """
    return json_sha256({"plan": plan, "product_version": product_version})


_WINDOW_RE = re.compile(
    r"^(?P<days>[A-Za-z]{3}(?:-[A-Za-z]{3})?(?:,[A-Za-z]{3}(?:-[A-Za-z]{3})?)*|daily)\s+"
    r"(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")


def _parse_days(text):
    if text.lower() == "daily":
        return set(range(7))
    days = set()
    for part in text.lower().split(","):
        if "-" in part:
            first, last = part.split("-")
            i, j = DAYS.index(first), DAYS.index(last)
            k = i
            while True:
                days.add(k)
                if k == j:
                    break
                k = (k + 1) % 7
        else:
            days.add(DAYS.index(part))
    return days


def _minutes(hhmm):
    hours, minutes = (int(x) for x in hhmm.split(":"))
    if hours > 24 or minutes > 59 or (hours == 24 and minutes):
        raise GateError("time {0!r} is not HH:MM".format(hhmm))
    return hours * 60 + minutes


def parse_window(spec):
    """Parse ``always``, ``never`` or windows like ``Sat 02:00-06:00``, ``Mon-Fri 22:00-02:00``.

    Several windows: a list or a ``;``-separated string. Times are UTC; a window whose end is
    before its start runs past midnight into the next day.
    """
    if isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        items = [s.strip() for s in str(spec).split(";") if s.strip()]
    if not items:
        raise GateError("pgsafe_maintenance_window is empty: set 'always' or e.g. 'Sat 02:00-06:00'")
    windows = []
    for item in items:
        if str(item).lower() in ("always", "never"):
            windows.append(str(item).lower())
            continue
        match = _WINDOW_RE.match(str(item).strip())
        try:
            if not match:
                raise ValueError
            windows.append((_parse_days(match.group("days")), _minutes(match.group("start")),
                            _minutes(match.group("end"))))
        except (ValueError, GateError):
            raise GateError("pgsafe_maintenance_window {0!r} is not understood: use 'always', or days and UTC "
                            "times like 'Sat 02:00-06:00' or 'Mon-Fri 22:00-02:00'".format(item)) from None
    return windows


def in_window(spec, now):
    """True when ``now`` (an aware or UTC-naive datetime) falls in one of the windows."""
    return _window_position(spec, now)[0]


# Phases a rehearsal has that the real run does not (the copy of prod into staging, the attestation).
REHEARSAL_ONLY_PHASES = ("restore_copy", "attest")


def rehearsed_duration(phases):
    """Seconds the rehearsal spent on what the real run will do too (its timeline minus the copy), or None."""
    if not phases:
        return None
    return round(sum(float(p.get("seconds") or 0) for p in phases if p.get("phase") not in REHEARSAL_ONLY_PHASES), 2)


def minutes_left(spec, now):
    """Minutes left in the window ``now`` falls in (the longest if several overlap); None when unbounded
    (``always``) or outside every window."""
    return _window_position(spec, now)[1]


def _window_position(spec, now):
    """(inside, minutes left) of ``now`` in the windows of ``spec``; minutes left is None when unbounded."""
    if now.tzinfo is not None:
        now = now.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    minute = now.hour * 60 + now.minute + now.second / 60.0
    day = now.weekday()
    inside, best = False, None
    for window in parse_window(spec):
        if window == "always":
            return True, None
        if window == "never":
            continue
        days, start, end = window
        left = None
        if start <= end:
            if day in days and start <= minute < end:
                left = end - minute
        elif day in days and minute >= start:
            left = 24 * 60 - minute + end
        elif ((day - 1) % 7) in days and minute < end:
            left = end - minute
        if left is not None:
            inside, best = True, max(left, best or 0)
    return inside, best


def evaluate_gates(facts):
    """Decide every gate. ``facts`` holds what the module measured or was given:

    environment, requires_rehearsal (bool), plan_fingerprint, attestations (list of dicts with
    plan_fingerprint, result, attested_at (aware datetime), schema_fingerprint_before, run_id),
    rehearsal_max_age_days, live_schema_fingerprint, confirm_required (bool), confirm_database,
    database, window, now, window_override_reason, window_time_margin (the rehearsal's duration, from its
    attestation's ``duration_seconds``, times this must fit in what is left of the window; default 1.5).

    Returns a list of {gate, passed, detail, remedy}.
    """
    overrides = facts.get("overrides") or {}
    results = []
    if facts.get("confirm_required"):
        results.append(_confirmation_gate(facts, overrides))
    inside = in_window(facts.get("window", "always"), facts["now"])
    reason = (overrides.get("window") or facts.get("window_override_reason") or "").strip()
    results.append(_window_gate(facts, inside, reason))
    if facts.get("requires_rehearsal") and overrides.get("rehearsal"):
        results.append({"gate": "rehearsal", "passed": True, "overridden": True, "remedy": "",
                        "detail": "no rehearsal required: overridden: " + overrides["rehearsal"]})
    elif facts.get("requires_rehearsal"):
        passing, gate = _rehearsal_gate(facts)
        results.append(gate)
        rehearsed = passing[0].get("duration_seconds") if passing else None
        left = minutes_left(facts.get("window", "always"), facts["now"]) if inside else None
        if rehearsed is not None and left is not None:
            results.append(_time_left_gate(facts, rehearsed, left, reason))
        if passing:
            results.append(_not_stale_gate(passing[0], facts.get("live_schema_fingerprint")))
    return results


def _confirmation_gate(facts, overrides):
    if overrides.get("confirmation"):
        return {"gate": "confirmation", "passed": True, "overridden": True, "remedy": "",
                "detail": "overridden: " + overrides["confirmation"]}
    given = facts.get("confirm_database")
    passed = given == facts.get("database")
    return {
        "gate": "confirmation", "passed": passed,
        "detail": "confirm_database matches the target database" if passed else
        "confirm_database is {0} but the target database is {1!r}".format(
            "missing" if given in (None, "") else repr(given), facts.get("database")),
        "remedy": "" if passed else "re-run with -e confirm_database={0} (AWX: answer the survey question) "
                                   "after checking the inventory targets the right database".format(
                                       facts.get("database")),
    }


def _window_gate(facts, inside, reason):
    return {
        "gate": "maintenance_window", "passed": inside or bool(reason),
        "detail": ("inside the window {0!r}".format(facts.get("window")) if inside else
                   "outside the window {0!r}, overridden: {1}".format(facts.get("window"), reason) if reason else
                   "{0} is outside the maintenance window {1!r} of {2}".format(
                       facts["now"].strftime("%a %H:%M UTC"), facts.get("window"), facts.get("environment"))),
        "remedy": "" if inside or reason else
        "wait for the window, or set window_override_reason='<why>' (it is recorded with the run)",
        "overridden": bool(reason) and not inside,
    }


def _rehearsal_gate(facts):
    """(passing rehearsals of this plan, newest first; the rehearsal gate)."""
    env, now = facts.get("environment"), facts["now"]
    max_age = _dt.timedelta(days=float(facts.get("rehearsal_max_age_days", 7)))
    # A rehearsal ran elsewhere (staging): the target's own records of past runs don't count.
    matching = [a for a in facts.get("attestations", [])
                if a.get("plan_fingerprint") == facts["plan_fingerprint"]
                and a.get("environment", "rehearsal") != env]
    passing = [a for a in matching if a.get("result") == "passed" and now - a["attested_at"] <= max_age]
    passing.sort(key=lambda a: a["attested_at"], reverse=True)
    if passing:
        newest = passing[0]
        detail = "rehearsal {0} passed at {1} for this plan".format(newest.get("run_id"),
                                                                      newest["attested_at"].isoformat())
        remedy = ""
    elif matching:
        detail = "no PASSING rehearsal of this plan ({0}...) within {1} days: the newest one {2}".format(
            facts["plan_fingerprint"][:12], max_age.days,
            "failed" if any(a.get("result") == "failed" for a in matching) else "is too old")
        remedy = "fix the cause, then re-run playbooks/rehearse.yml on staging"
    elif facts.get("rehearsed_differences"):
        detail = "the plan ({0}...) is not the one rehearsed last ({1}...): {2}".format(
            facts["plan_fingerprint"][:12], (facts.get("rehearsed_fingerprint") or "?")[:12],
            " | ".join(facts["rehearsed_differences"]))
        remedy = ("prod runs exactly the SQL staging ran: rehearse this plan (playbooks/rehearse.yml), or put the "
                  "plan files back as rehearsed, then re-run")
    else:
        detail = "no rehearsal of this plan ({0}...) was recorded: always test on staging first".format(
            facts["plan_fingerprint"][:12])
        remedy = "run playbooks/rehearse.yml (staging) with the same plan, then re-run"
    return passing, {"gate": "rehearsal", "passed": bool(passing), "detail": detail, "remedy": remedy}


def _time_left_gate(facts, rehearsed, left, reason):
    margin = float(facts.get("window_time_margin", 1.5))
    needed = float(rehearsed) * margin / 60.0
    fits = needed <= left
    return {
        "gate": "time_left", "passed": fits or bool(reason), "overridden": bool(reason) and not fits,
        "minutes_left": round(left, 1), "minutes_needed": round(needed, 1),
        "detail": "{0:.0f} min left in the window; the rehearsal took {1:.1f} min ({2:.1f} min with the "
                  "{3:g}x margin){4}".format(left, float(rehearsed) / 60.0, needed, margin,
                                             "" if fits else (", overridden: " + reason if reason else
                                                              ": it may not finish inside the window")),
        "remedy": "" if fits or reason else "start earlier in the window (or in the next one), or set "
                                             "window_override_reason='<why>' (recorded with the run)",
    }


def _not_stale_gate(newest, live):
    expected = newest.get("schema_fingerprint_before")
    converged = newest.get("schema_fingerprint_after")
    fresh = expected is not None and expected == live
    done = converged is not None and converged == live
    return {
        "gate": "plan_not_stale", "passed": fresh or done, "converged": done and not fresh,
        "detail": "the live schema is the one the rehearsal started from" if fresh else
        "the live schema is the one the rehearsal ended with: the plan is already applied (re-run converges)"
        if done else
        "the live schema ({0}...) differs from the one the rehearsal started from ({1}...)".format(
            (live or "?")[:12], (expected or "?")[:12]),
        "remedy": "" if fresh or done else "the schema changed since the rehearsal: take a new backup, "
                                           "rehearse again on staging, then re-run",
    }


def plan_converged(attestations, plan_fp, live_schema_fingerprint):
    """True when a passing run of this plan (a rehearsal, or an earlier run here) ended with the live schema.

    The run then has nothing left to do at the schema level, so it takes no new backup; its steps
    still plan on the real data and would refuse to change anything without one.
    """
    return any(a.get("plan_fingerprint") == plan_fp and a.get("result") == "passed"
               and a.get("schema_fingerprint_after") and a.get("schema_fingerprint_after") == live_schema_fingerprint
               for a in attestations)


def plan_rehearsed(attestations, plan_fp, live_schema_fingerprint, environment, now, max_age_days=7):
    """True when a passing rehearsal (elsewhere) of this plan started from the live schema, recently.

    Re-running the rehearsal would then only repeat it: it reports "already rehearsed" instead.
    """
    max_age = _dt.timedelta(days=float(max_age_days))
    return any(a.get("plan_fingerprint") == plan_fp and a.get("result") == "passed"
               and a.get("environment", "rehearsal") != environment
               and a.get("schema_fingerprint_before") == live_schema_fingerprint
               and now - a["attested_at"] <= max_age for a in attestations)


def failed_gates(results):
    return [r for r in results if not r["passed"]]


def failure_message(results, target="the target"):
    """One message naming every closed gate and what to do about it."""
    lines = ["{0}: {1}. To proceed: {2}".format(r["gate"], r["detail"], r["remedy"]) for r in failed_gates(results)]
    return "Refusing to change {0}: ".format(target) + " | ".join(lines)


def gate_facts(params, fingerprint, measured):
    """The facts ``evaluate_gates`` decides on, from the module's options (``params``) and what it read.

    ``measured``: now (the server's clock), database, attestations (of ``fingerprint``), live (the live schema's
    fingerprint) and last (the newest passing rehearsal recorded elsewhere: fingerprint, canonical; or None).
    """
    now = _dt.datetime.fromisoformat(params["now"]) if params.get("now") else measured["now"]
    if now.tzinfo is None:
        now = now.replace(tzinfo=_dt.timezone.utc)
    attestations = measured["attestations"]
    facts = dict(environment=params["environment"], requires_rehearsal=params["require_rehearsal"],
                 plan_fingerprint=fingerprint, attestations=attestations,
                 rehearsal_max_age_days=params["rehearsal_max_age_days"], live_schema_fingerprint=measured["live"],
                 confirm_required=params["confirm_required"], confirm_database=params["confirm_database"],
                 database=measured["database"], window=params["window"], now=now,
                 window_override_reason=params["window_override_reason"], overrides=params["overrides"])
    last = measured.get("last")
    if last and last["fingerprint"] != fingerprint and not any(a["plan_fingerprint"] == fingerprint
                                                               for a in attestations):
        facts.update(rehearsed_fingerprint=last["fingerprint"],
                     rehearsed_differences=differences(params["plan_canonical"], last["canonical"] or {}))
    return facts


def gate_outcome(params, facts, results):
    """The gate module's result (it changes nothing): fingerprints, every gate, what the run and its report use."""
    fingerprint, live, env = facts["plan_fingerprint"], facts["live_schema_fingerprint"], facts["environment"]
    attestations = facts["attestations"]
    overridden = any(r.get("overridden") for r in results if r["gate"] in ("maintenance_window", "time_left"))
    outcome = dict(changed=False, plan_fingerprint=fingerprint, schema_fingerprint=live, gates=results,
                   window_overridden=overridden, plan_converged=plan_converged(attestations, fingerprint, live),
                   plan_rehearsed=plan_rehearsed(attestations, fingerprint, live, env, facts["now"],
                                                 params["rehearsal_max_age_days"]))
    rehearsed = sorted((a for a in attestations if a.get("result") == "passed"
                        and a.get("environment", "rehearsal") != env),
                       key=lambda a: a["attested_at"], reverse=True)
    if params.get("row_effects") is not None and rehearsed:
        outcome["data_since_rehearsal"] = data_since(params["row_effects"], rehearsed[0].get("row_effects") or {})
    return outcome
