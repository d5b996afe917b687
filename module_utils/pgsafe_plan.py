# -*- coding: utf-8 -*-
"""One plan per run: the intent (the inventory's plan files) read whole, checked, and turned into data.

The plan is a list of ordered steps; each step carries the SQL exactly as its engine will run it, its lock
level and timeouts, typed hazards (module_utils/pgsafe_hazards.py), its precheck on the real data (offending
rows with their keys), the row effects it expects, the backup that must cover it, and its rollback SQL.
Its fingerprint is the sha256 of the canonical plan: steps, statements, hazards, order, the schema
fingerprint it was made against, the named overrides and the product version. Counts and offending rows
are data: they are shown and compared, never fingerprinted.

This file has no database code apart from ``build_plan`` (which calls each engine's read-only planner in
the caller's READ ONLY transaction); everything else is plain Python, unit-tested without a database.
"""
from __future__ import annotations

import hashlib
import json

from ansible.module_utils.pgsafe_hazards import checked

PLAN_FORMAT = 1

# step kind -> the role (phase) that applies it; the order here is the order steps run in.
STEP_PHASES = {
    "type_change": "schema_fix",
    "schema_addition": "schema_additions",
    "table_merge": "table_merge",
    "table_retire": "table_cleanup",
    "schema_removal": "auth_schema_removal",
}

# The only ways to relax a safeguard: each needs a reason, is carried in the plan (so it changes the
# fingerprint), is written to the product schema and heads the report.
OVERRIDES = {
    "rehearsal": "run without a passing rehearsal of this plan on staging",
    "confirmation": "run without -e confirm_database=<the target database>",
    "window": "run outside the maintenance window",
    "backup_guard": "change objects without a verified, restore-tested backup that covers them",
}

# Overrides that only open a gate (whether this run may start now): they change the plan's fingerprint but
# not what runs, so the rehearsal of the same SQL still counts (rehearsal_fingerprint leaves them out).
GATE_OVERRIDES = ("rehearsal", "confirmation", "window")

# Variables older playbooks honoured; they no longer switch anything off, and saying so is better than
# ignoring them.
RETIRED_SWITCHES = {
    "gates_require_rehearsal": "rehearsal",
    "gates_confirm_required": "confirmation",
    "schema_fix_backup_guard": "backup_guard",
}

SECTIONS = {
    "schema_fix": ("orphan_policy", "strategy", "changes", "foreign_keys", "lock_timeout", "statement_timeout"),
    "schema_additions": None,
    "table_merge": None,
    "table_cleanup": ("tables", "retention_days", "lock_timeout"),
    "auth_schema_removal": ("schemas", "independent", "allow_dependents", "lock_timeout"),
}
MERGE_KEYS = ("source", "target", "column_map", "policy", "drop_source_columns", "allow_lossy_casts",
              "lock_timeout")
DEFAULT_LOCK_TIMEOUT = {"schema_fix": "3s", "schema_additions": "5s", "table_merge": "5s", "table_cleanup": "5s",
                        "auth_schema_removal": "5s"}


class PlanError(ValueError):
    """Bad intent: the message names the key and the fix; nothing was changed."""


def _refuse_unknown(where, given, known):
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise PlanError("{0}: unknown key(s) {1}; expected only {2} (see docs/plan-files.md)".format(
            where, ", ".join(unknown), ", ".join(known)))


def _list(where, value):
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise PlanError("{0} must be a list, got {1}: write it as a YAML list".format(where, type(value).__name__))
    return value


def normalise_overrides(overrides, retired_switches=None):
    """{name: reason} checked against OVERRIDES; a retired switch set to false is refused with the fix."""
    for var, value in sorted((retired_switches or {}).items()):
        if value is not None and str(value).strip().lower() in ("false", "no", "0", "off"):
            raise PlanError("{0}={1} no longer turns anything off: to {2}, set pgsafe_overrides.{3}='<reason>' "
                            "(recorded with the run, shown at the top of its report)".format(
                                var, value, OVERRIDES[RETIRED_SWITCHES[var]], RETIRED_SWITCHES[var]))
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise PlanError("pgsafe_overrides must be a mapping {name: reason}, one of " + ", ".join(OVERRIDES))
    _refuse_unknown("pgsafe_overrides", overrides, OVERRIDES)
    out = {}
    for name, reason in sorted(overrides.items()):
        if reason is None or not str(reason).strip():
            raise PlanError("pgsafe_overrides.{0} needs a reason (why it is safe to {1}): it heads the report".format(
                name, OVERRIDES[name]))
        out[name] = " ".join(str(reason).split())
    return out


def normalise_intent(intent):
    """The run's intent, checked whole: {section: ...} with every default filled in."""
    if not isinstance(intent, dict):
        raise PlanError("the plan (pgsafe_plan) must be a mapping of sections: " + ", ".join(SECTIONS))
    _refuse_unknown("pgsafe_plan", intent, SECTIONS)
    fix = intent.get("schema_fix") or {}
    if not isinstance(fix, dict):
        raise PlanError("schema_fix_plan must be a mapping with changes and foreign_keys")
    _refuse_unknown("schema_fix_plan", fix, SECTIONS["schema_fix"])
    if fix.get("orphan_policy", "fail") not in ("fail", "quarantine"):
        raise PlanError("schema_fix_plan.orphan_policy is {0!r}: use fail or quarantine".format(fix["orphan_policy"]))
    if fix.get("strategy", "auto") not in ("auto", "rewrite", "online"):
        raise PlanError("schema_fix_plan.strategy is {0!r}: use auto, rewrite or online".format(fix["strategy"]))
    merges = []
    for i, m in enumerate(_list("table_merge_merges", intent.get("table_merge"))):
        where = "table_merge_merges[{0}]".format(i)
        if not isinstance(m, dict):
            raise PlanError(where + " must be a mapping with source, target and column_map")
        _refuse_unknown(where, m, MERGE_KEYS)
        for key in ("source", "target", "column_map"):
            if not m.get(key):
                raise PlanError("{0}.{1} is missing: a merge names its source, its target and how columns map".format(
                    where, key))
        merges.append(dict({"policy": "fail", "drop_source_columns": [], "allow_lossy_casts": False,
                            "lock_timeout": DEFAULT_LOCK_TIMEOUT["table_merge"]}, **m))
    cleanup = intent.get("table_cleanup") or {}
    _refuse_unknown("table_cleanup", cleanup, SECTIONS["table_cleanup"])
    removal = intent.get("auth_schema_removal") or {}
    _refuse_unknown("auth_schema_removal", removal, SECTIONS["auth_schema_removal"])
    return {
        "schema_fix": {"changes": _list("schema_fix_plan.changes", fix.get("changes")),
                       "foreign_keys": _list("schema_fix_plan.foreign_keys", fix.get("foreign_keys")),
                       "orphan_policy": fix.get("orphan_policy", "fail"), "strategy": fix.get("strategy", "auto"),
                       "lock_timeout": str(fix.get("lock_timeout") or DEFAULT_LOCK_TIMEOUT["schema_fix"]),
                       "statement_timeout": str(fix["statement_timeout"]) if fix.get("statement_timeout") else None},
        "schema_additions": _list("schema_additions", intent.get("schema_additions")),
        "table_merge": merges,
        "table_cleanup": {"tables": _list("table_cleanup_tables", cleanup.get("tables")),
                          "retention_days": int(cleanup.get("retention_days") or 30),
                          "lock_timeout": str(cleanup.get("lock_timeout") or DEFAULT_LOCK_TIMEOUT["table_cleanup"])},
        "auth_schema_removal": {
            "schemas": _list("auth_schema_removal_schemas", removal.get("schemas")),
            "independent": bool(removal.get("independent", False)),
            "allow_dependents": _list("auth_schema_removal_allow_dependents", removal.get("allow_dependents")),
            "lock_timeout": str(removal.get("lock_timeout") or DEFAULT_LOCK_TIMEOUT["auth_schema_removal"])},
    }


# --------------------------------------------------------------------------- steps as data
def statements_digest(texts):
    """sha256 of a step's SQL texts in order: the applying module computes it again from what it is about to run
    and refuses when it differs (the database moved since the plan)."""
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def new_step(kind, objects, **fields):
    """A step with every field present (one shape for every kind)."""
    step = {"kind": kind, "phase": STEP_PHASES[kind], "objects": list(objects), "converged": False,
            "statements": [], "hazards": [], "precheck": {"ok": True, "problems": [], "notes": [],
                                                          "offending_rows": []},
            "row_effects": {}, "backup_covers": [], "rollback_sql": [], "params": {}}
    step.update(fields)
    step["hazards"] = checked(step["hazards"])
    step["statements_sha256"] = statements_digest([st["sql"] for st in step["statements"]])
    return step


def statement(sql_text, lock_level, lock_timeout=None, statement_timeout=None, transactional=True):
    return {"sql": sql_text, "lock_level": lock_level, "lock_timeout": lock_timeout,
            "statement_timeout": statement_timeout, "transactional": bool(transactional)}


def number_steps(steps):
    """Order by kind (STEP_PHASES order, stable within a kind) and give each an id like 01-type_change."""
    order = list(STEP_PHASES)
    ordered = sorted(steps, key=lambda s: order.index(s["kind"]))
    for i, step in enumerate(ordered, 1):
        step["id"] = "{0:02d}-{1}".format(i, step["kind"])
    return ordered


def object_conflicts(steps):
    """Objects two pending steps of different kinds both change: one run changes an object once."""
    seen, problems = {}, []
    for step in steps:
        if step["converged"]:
            continue
        for obj in step["objects"]:
            other = seen.get(obj)
            if other is not None and other["kind"] != step["kind"]:
                problems.append("{0} is changed by step {1} and by step {2}: put one of them in a later run".format(
                    obj, other["id"], step["id"]))
            seen.setdefault(obj, step)
    return problems


def canonical(plan, gate_overrides=True):
    """What the fingerprint covers: no counts, no offending rows, no timings.

    ``gate_overrides=False`` leaves out the overrides that only open a gate (GATE_OVERRIDES): what the
    rehearsal attests and prod's gate compares is what runs.
    """
    overrides = {k: v for k, v in plan["overrides"].items() if gate_overrides or k not in GATE_OVERRIDES}
    return {
        "format": PLAN_FORMAT,
        "product_version": plan["product_version"],
        "schema_fingerprint": plan["schema_fingerprint"],
        "overrides": overrides,
        "steps": [{"id": s["id"], "kind": s["kind"], "objects": s["objects"], "statements": s["statements"],
                   "hazards": s["hazards"], "backup_covers": s["backup_covers"], "params": s["params"]}
                  for s in plan["steps"] if not s["converged"]],
    }


def fingerprint(plan, gate_overrides=True):
    """sha256 of the canonical plan (``gate_overrides=False``: the rehearsal fingerprint, what runs)."""
    return json_sha256(canonical(plan, gate_overrides))


def json_sha256(value, ensure_ascii=True):
    """sha256 (hex) of ``value`` as canonical JSON: sorted keys, no whitespace (the one way a plan is hashed)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=ensure_ascii, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _short(value, width=120):
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."


def differences(ours, theirs, ours_label="this plan", theirs_label="the rehearsed plan"):
    """What differs between two canonical plans, named: step, field, both values."""
    out = []
    for key in ("product_version", "schema_fingerprint", "overrides"):
        if ours.get(key) != theirs.get(key):
            out.append("{0}: {1} has {2}, {3} has {4}".format(key, ours_label, _short(ours.get(key)), theirs_label,
                                                              _short(theirs.get(key))))
    a, b = ours.get("steps", []), theirs.get("steps", [])
    if [s["id"] for s in a] != [s["id"] for s in b]:
        out.append("steps: {0} has {1}, {2} has {3}".format(ours_label, [s["id"] for s in a] or "none", theirs_label,
                                                            [s["id"] for s in b] or "none"))
    for sa, sb in zip(a, b, strict=False):
        for field in ("objects", "hazards", "backup_covers", "params"):
            if sa.get(field) != sb.get(field):
                out.append("step {0} {1}: {2} has {3}, {4} has {5}".format(
                    sa["id"], field, ours_label, _short(_param_delta(sa[field], sb.get(field))), theirs_label,
                    _short(_param_delta(sb.get(field), sa[field]))))
        for i, (x, y) in enumerate(zip(sa["statements"], sb["statements"], strict=False), 1):
            for field in sorted(set(x) | set(y)):
                if x.get(field) != y.get(field):
                    mine, theirs_text = _around_difference(x.get(field), y.get(field))
                    out.append("step {0} statement {1} {2}: {3} has {4!r}, {5} has {6!r}".format(
                        sa["id"], i, field, ours_label, mine, theirs_label, theirs_text))
        if len(sa["statements"]) != len(sb["statements"]):
            out.append("step {0}: {1} statements here, {2} rehearsed".format(sa["id"], len(sa["statements"]),
                                                                            len(sb["statements"])))
    return out


def _around_difference(a, b, width=50):
    """Both texts cut around where they start to differ (a long statement shows the part that matters)."""
    a, b = str(a), str(b)
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, at - width)
    def cut(t):
        return (("..." if start else "") + t[start:at + width] + ("..." if len(t) > at + width else ""))
    return cut(a), cut(b)


def _param_delta(mine, other):
    """The part of a dict that differs from the other one (whole value otherwise)."""
    if isinstance(mine, dict) and isinstance(other, dict):
        return {k: v for k, v in mine.items() if other.get(k) != v}
    return mine


def row_effects_by_step(steps):
    """{step id: row_effects} of the pending steps (what a rehearsal records next to its fingerprint)."""
    return {s["id"]: s["row_effects"] for s in steps if not s["converged"] and s["row_effects"]}


def data_since(now, then):
    """How the data moved between two plans of the same SQL: [{step, table, measure, then, now}] that differ."""
    out = []
    for step_id in sorted(set(now) | set(then)):
        ours, theirs = now.get(step_id, {}), then.get(step_id, {})
        for table in sorted(set(ours) | set(theirs)):
            a, b = ours.get(table, {}), theirs.get(table, {})
            for measure in sorted(set(a) | set(b)):
                if a.get(measure) != b.get(measure):
                    out.append({"step": step_id, "table": table, "measure": measure, "then": b.get(measure),
                                "now": a.get(measure)})
    return out


def failed_steps(plan):
    return [s for s in plan["steps"] if not s["precheck"]["ok"]]


def failure_message(plan):
    """One message naming each failing step, its objects, the problem, the offending rows and the fix."""
    parts = []
    for s in failed_steps(plan):
        rows = s["precheck"]["offending_rows"][:10]
        parts.append("step {0} ({1}): {2}{3}".format(
            s["id"], ", ".join(s["objects"]) or "-", "; ".join(s["precheck"]["problems"]),
            " | offending rows: " + json.dumps(rows, sort_keys=True, default=str) if rows else ""))
    parts += plan.get("conflicts", [])
    return ("the plan cannot run, nothing was changed (every step is checked before the first change): "
            + " || ".join(parts) + ". Fix the data or the plan files, then re-run")


def summary(plan):
    pending = [s for s in plan["steps"] if not s["converged"]]
    return {"steps": len(plan["steps"]), "pending": len(pending),
            "converged": len(plan["steps"]) - len(pending),
            "phases": list(dict.fromkeys(s["phase"] for s in pending)),
            "hazards": sorted({h for s in pending for h in s["hazards"]}),
            "failed": [s["id"] for s in failed_steps(plan)]}


def report_rows(plan):
    """One flat row per step for the run report."""
    return [{"id": s["id"], "objects": ", ".join(s["objects"]),
             "state": "already done" if s["converged"] else ("precheck failed" if not s["precheck"]["ok"] else "to run"),
             "hazards": ", ".join(s["hazards"]), "problems": "; ".join(s["precheck"]["problems"]),
             "offending_rows": json.dumps(s["precheck"]["offending_rows"][:10], sort_keys=True, default=str)
             if s["precheck"]["offending_rows"] else ""} for s in plan["steps"]]


def render_markdown(plan):
    """plan.md: for the people in the window."""
    lines = ["# Plan {0}".format(plan["fingerprint"][:12]), "",
             "- Target: `{0}` (schema {1})".format(plan.get("database", "?"), plan["schema_fingerprint"][:12]),
             "- Product version {0}; made {1}".format(plan["product_version"], plan.get("made_at", "")),
             "- Fingerprint: `{0}`".format(plan["fingerprint"]),
             "- Rehearsal fingerprint (what runs; gate overrides left out): `{0}`".format(
                 plan.get("rehearsal_fingerprint", "")), ""]
    if plan["overrides"]:
        lines += ["## Overrides (each relaxes a safeguard)", ""]
        lines += ["- **{0}**: {1}".format(k, v) for k, v in plan["overrides"].items()] + [""]
    s = summary(plan)
    lines += ["{0} step(s): {1} to run, {2} already done.".format(s["steps"], s["pending"], s["converged"]), ""]
    for step in plan["steps"]:
        state = "already done" if step["converged"] else ("PRECHECK FAILED" if not step["precheck"]["ok"] else "to run")
        lines += ["## {0} ({1})".format(step["id"], state), "",
                  "- Objects: " + (", ".join("`{0}`".format(o) for o in step["objects"]) or "-"),
                  "- Hazards: " + (", ".join(step["hazards"]) or "none"),
                  "- Backup must cover: " + (", ".join("`{0}`".format(o) for o in step["backup_covers"]) or "-")]
        for problem in step["precheck"]["problems"]:
            lines.append("- **Problem**: " + problem)
        for note in step["precheck"]["notes"]:
            lines.append("- Note: " + note)
        if step["precheck"]["offending_rows"]:
            lines.append("- Offending rows: `{0}`".format(json.dumps(step["precheck"]["offending_rows"][:20],
                                                                     sort_keys=True, default=str)))
        for table, effect in sorted(step["row_effects"].items()):
            lines.append("- Rows of `{0}`: {1}".format(table, ", ".join("{0} {1}".format(k, v)
                                                                       for k, v in effect.items())))
        if step["statements"]:
            lines += ["", "```sql"]
            for st in step["statements"]:
                lines.append("{0};  -- {1}{2}{3}".format(
                    st["sql"].rstrip(";"), st["lock_level"] or "no lock",
                    ", lock_timeout " + st["lock_timeout"] if st.get("lock_timeout") else "",
                    "" if st["transactional"] else ", outside a transaction"))
            lines.append("```")
        if step["rollback_sql"]:
            lines += ["", "Rollback:", "", "```sql"] + list(step["rollback_sql"]) + ["```"]
        lines.append("")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the plan module's result
def planning_options(params):
    """What the step planners need from the plan module's options."""
    return {"reference_sql": params["reference_sql"], "fail_on_skipped": params["fail_on_skipped"],
            "online_threshold_bytes": params["online_threshold_bytes"], "disk_free_bytes": params["disk_free_bytes"],
            "host": params.get("login_unix_socket") or params.get("login_host") or "", "run_id": params["run_id"]}


def journal_details(plan):
    """What the run journal keeps of a plan (step ``plan``)."""
    return {"fingerprint": plan["fingerprint"], "overrides": plan["overrides"], "canonical": canonical(plan),
            "summary": summary(plan)}


def plan_result(plan, expected=None, expected_label="the expected plan"):
    """(the plan module's result, why it refuses or None).

    It refuses a step whose precheck fails, an object two steps change, and, with ``expected`` (a
    rehearsal canonical plan), any difference from it.
    """
    out = dict(changed=False, refused=False, plan=plan, canonical=canonical(plan), fingerprint=plan["fingerprint"],
               rehearsal_canonical=canonical(plan, gate_overrides=False),
               rehearsal_fingerprint=plan["rehearsal_fingerprint"],
               markdown=render_markdown(plan), summary=summary(plan), report_rows=report_rows(plan),
               row_effects=row_effects_by_step(plan["steps"]))
    problem = None
    if expected is not None:
        out["differences"] = differences(out["rehearsal_canonical"], expected, "this plan", expected_label)
    if failed_steps(plan) or plan["conflicts"]:
        problem = failure_message(plan)
    elif expected is not None and out["differences"]:
        problem = "this plan ({0}) is not {1}: {2}".format(plan["rehearsal_fingerprint"][:12], expected_label,
                                                          " | ".join(out["differences"]))
    out["refused"] = problem is not None
    return out, problem
