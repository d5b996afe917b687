# -*- coding: utf-8 -*-
"""Each step kind planned on the live database through its own engine's read-only planner.

Called by build_plan in the caller's READ ONLY transaction. The statements are those the engines run
(the same functions render them); data-dependent parts (which rows go to quarantine) are named in a
``--`` line and listed in the precheck, not in the statements.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_plan import new_step, statement
from ansible.module_utils.pgsafe_retire import exact_count

AE = "ACCESS EXCLUSIVE"


def plan_object_key(name):
    """schema.table, parts quoted only when needed: one spelling of an object in every step and report."""
    from ansible.module_utils.pgsafe_identifiers import split_qualified, table_key
    return table_key(*split_qualified(name))


_key = plan_object_key


def _text(cur, stmt):
    return stmt if isinstance(stmt, str) else stmt.as_string(cur)


def _counts(cur, objects):
    from ansible.module_utils.pgsafe_identifiers import split_qualified
    out = {}
    for obj in objects:
        schema, name = split_qualified(obj)
        out[obj] = exact_count(cur, schema, name)
    return out


# --------------------------------------------------------------------------- type change
def type_change_step(cur, fix, options):
    from ansible.module_utils.pgsafe_typechange_parse import normalise_changes, normalise_fks
    from ansible.module_utils.pgsafe_typechange_plan import unit_statements
    from ansible.module_utils.pgsafe_typechange_plan import plan_unit
    if not fix["changes"] and not fix["foreign_keys"]:
        return []
    changes, fks = normalise_changes(fix["changes"]), normalise_fks(fix["foreign_keys"])
    unit = plan_unit(cur, changes, fks, fix["orphan_policy"], fix["strategy"], options.get("online_threshold_bytes",
                                                                                           256 * 1024 * 1024),
                     options.get("disk_free_bytes"), options.get("disk_margin_bytes", 64 * 1024 * 1024),
                     options.get("host", ""), options.get("run_id", "plan"))
    plan, public, raw = unit["plan"], unit["public"], unit["precheck"] or {}
    lock_t, stmt_t = fix["lock_timeout"], fix["statement_timeout"]
    stmts = [statement(_text(cur, s["sql"]), s["lock_level"], lock_t, stmt_t, s["transactional"])
             for s in unit_statements(plan, fix["orphan_policy"])]
    converting = [c for c in plan["changes"] if c["needs_type"]]
    hazards = ["access_exclusive_lock"] if stmts else []
    if converting:
        hazards += ["cast_may_fail", "table_scan"] + (["column_order"] if plan["strategy"] == "online" else ["rewrite"])
    if any(f["state"] != "valid" for f in plan["foreign_keys"]) or any(f["recreate"] for f in plan["drop_fks"]):
        hazards.append("fk_validation_scan")
    if plan["drop_fks"] or plan["views"]:
        hazards.append("dependents")
    if any(d.get(plan["strategy"]) == "hazard" for d in plan.get("dependents", [])):
        hazards.append("code_mentions_column")
    quarantined = raw.get("would_quarantine") or {}
    if quarantined:
        hazards.append("quarantine")
    offending = []
    for group in ("invalid", "collisions", "orphans"):
        for item in raw.get(group, []):
            for sample in item.get("samples", []) if item.get("count") else []:
                offending.append(dict(sample, check=group[:-1] if group != "invalid" else "cast",
                                      table=item.get("table"), column=item.get("column") or item.get("fk")))
    counts = _counts(cur, public["changed_objects"]) if stmts and unit["verdict"]["ok"] else {}
    effects = {t: {"rows": n, "quarantined": quarantined.get(t, 0), "kept": n - quarantined.get(t, 0)}
               for t, n in counts.items()}
    params = {"changes": fix["changes"], "foreign_keys": fix["foreign_keys"], "orphan_policy": fix["orphan_policy"],
              "strategy": plan["strategy"], "lock_timeout": lock_t, "statement_timeout": stmt_t}
    return [new_step("type_change", public["touched_objects"] or [o for o in public["changed_objects"]],
                     converged=plan["converged"] and not plan["blockers"], statements=stmts, hazards=hazards,
                     precheck={"ok": unit["verdict"]["ok"], "problems": unit["verdict"]["problems"],
                               "notes": unit["verdict"]["notes"] + list(plan["hazards"]), "offending_rows": offending},
                     row_effects=effects, backup_covers=public["guard_objects"] if stmts else [],
                     rollback_sql=[unit["rollback_sql"]] if unit["rollback_sql"] else [], params=params,
                     strategy="{0} ({1})".format(plan["strategy"], plan["strategy_reason"]))]


# --------------------------------------------------------------------------- merge
def merge_steps(cur, merges, options):
    from ansible.module_utils.pgsafe_merge import Context, MergeError, planned_statements
    from ansible.module_utils.pgsafe_merge import plan as plan_merge
    from ansible.module_utils.pgsafe_retire import planned_statements as retire_statements
    steps = []
    for m in merges:
        lock_t = m["lock_timeout"]
        try:
            ctx = Context(cur, m["source"], m["target"], m["column_map"], policy=m["policy"],
                          target_definition=options.get("reference_sql"), drop_source_columns=m["drop_source_columns"],
                          allow_lossy_casts=m["allow_lossy_casts"])
            planned = plan_merge(cur, ctx)
        except (MergeError, ValueError) as exc:
            steps.append(new_step("table_merge", [m["source"], m["target"]], params=m,
                                  precheck={"ok": False, "problems": [str(exc)], "notes": [], "offending_rows": []}))
            continue
        action = planned["action"]
        offending = [dict(r, check=p["kind"], column=p["column"]) for p in planned.get("problems") or []
                     for r in p.get("rows", [])]
        offending += [dict(d, check="differs_from_target") for d in planned.get("differing") or []]
        stmts = []
        if action == "merge":
            stmts = [statement(s, "SHARE ROW EXCLUSIVE", lock_t) for s in planned_statements(cur, ctx)]
            stmts += [statement(s, AE, lock_t) for s in retire_statements(
                cur, {"schema": ctx.source_schema, "name": ctx.source_name})]
        hazards = ["share_lock", "table_scan", "data_loss", "access_exclusive_lock"] if stmts else []
        if planned.get("differing"):
            hazards.append("quarantine")
        effects = {}
        if action == "merge":
            effects = {_key(ctx.source): {"rows": planned["source_rows"], "copied": planned["to_insert"],
                                    "identical": planned["identical"], "quarantined": planned["differing_count"],
                                    "then": "moved to pgsafe_quarantine"},
                       _key(ctx.target): {"rows": planned.get("target_rows") or 0,
                                    "after": (planned.get("target_rows") or 0) + planned["to_insert"]}}
        steps.append(new_step(
            "table_merge", [_key(ctx.source), _key(ctx.target)], converged=action == "converged", statements=stmts,
            hazards=hazards, row_effects=effects,
            backup_covers=[_key(o) for o in planned.get("backup_objects", [])] if stmts else [],
            precheck={"ok": action != "refused", "problems": [planned["reason"]] if action == "refused" else [],
                      "notes": [] if action == "refused" else [planned["reason"]], "offending_rows": offending},
            rollback_sql=["-- playbooks/restore_quarantine.yml puts the source back; rows copied into {0} are "
                          "those of pgsafe.journal (table_merge) for this run".format(ctx.target)] if stmts else [],
            params=m))
    return steps


# --------------------------------------------------------------------------- retire
def retire_steps(cur, cleanup, options):
    from ansible.module_utils.pgsafe_retire import plan as plan_retire
    from ansible.module_utils.pgsafe_retire import planned_statements
    if not cleanup["tables"]:
        return []
    steps = []
    for item, entry in zip(cleanup["tables"], plan_retire(cur, cleanup["tables"]), strict=True):
        action = entry["action"]
        ok = action in ("retire", "converged", "absent")
        problems = [] if ok else ["{0}: {1} ({2})".format(entry["table"], entry["reason"], action)]
        if not ok and not options.get("fail_on_skipped", True):
            ok, problems = True, []
        stmts = [statement(s, AE, cleanup["lock_timeout"]) for s in planned_statements(cur, entry)] \
            if action == "retire" else []
        steps.append(new_step(
            "table_retire", [_key(entry["table"])], converged=action in ("converged", "absent"), statements=stmts,
            hazards=["access_exclusive_lock", "data_loss"] if stmts else [],
            precheck={"ok": ok, "problems": problems, "notes": [entry["reason"]] if ok else [],
                      "offending_rows": [{"table": entry["table"], "rows": entry["row_count"]}] if problems else []},
            row_effects={_key(entry["table"]): {"rows": entry["row_count"], "then": "moved to pgsafe_quarantine for {0} "
                                                                              "days".format(cleanup["retention_days"])}}
            if stmts else {},
            backup_covers=[_key(entry["backup_object"])] if stmts else [],
            rollback_sql=["-- playbooks/restore_quarantine.yml (or table_cleanup tasks_from=restore) moves {0} "
                          "back".format(entry["table"])] if stmts else [],
            params={"table": item, "retention_days": cleanup["retention_days"], "lock_timeout": cleanup["lock_timeout"]}))
    return steps


# --------------------------------------------------------------------------- schema removal
def schema_removal_steps(cur, removal, options):
    from ansible.module_utils.pgsafe_schema_removal import SchemaRemovalError, removal_statements
    from ansible.module_utils.pgsafe_schema_removal import plan as plan_removal
    if not removal["schemas"]:
        return []
    try:
        entries = plan_removal(cur, removal["schemas"], removal["allow_dependents"], removal["independent"])
    except SchemaRemovalError as exc:
        return [new_step("schema_removal", removal["schemas"], params=removal,
                         precheck={"ok": False, "problems": [str(exc)], "notes": [], "offending_rows": []})]
    steps = []
    for entry in entries:
        action = entry["action"]
        ok = action in ("remove", "converged") or (action == "blocked" and removal["independent"])
        stmts = [statement(s, AE, removal["lock_timeout"]) for s in removal_statements(cur, entry)] \
            if action == "remove" else []
        holding = [o for o in entry.get("objects", []) if o.get("rows")]
        steps.append(new_step(
            "schema_removal", ["schema:" + entry["schema"]], converged=action == "converged", statements=stmts,
            hazards=["access_exclusive_lock", "data_loss"] if stmts else [],
            precheck={"ok": ok, "problems": [] if ok else ["schema {0}: {1}".format(entry["schema"], entry["reason"])],
                      "notes": [entry["reason"]] + list(entry.get("notes") or []) if ok else [],
                      "offending_rows": [{"dependent": d["description"]} for d in entry.get("dependents", [])
                                         if d.get("blocking")] if not ok else []},
            row_effects={_key(o["name"]): {"rows": o["rows"], "then": "dropped (in the schema backup)"} for o in holding},
            backup_covers=["schema:" + entry["schema"]] if stmts else [],
            rollback_sql=["-- playbooks/restore.yml with the run's schema backup (object schema:{0})".format(
                entry["schema"])] if stmts else [],
            params={"schema": entry["schema"], "independent": removal["independent"],
                    "allow_dependents": removal["allow_dependents"], "lock_timeout": removal["lock_timeout"]}))
    return steps


# --------------------------------------------------------------------------- additions
def addition_steps(cur, additions, options):
    if not additions:
        return []
    from ansible.module_utils.pgsafe_additions import normalise_additions, objects_sha256, plan_additions
    items = normalise_additions(additions)
    planned_all = plan_additions(cur, items)
    expected = objects_sha256(planned_all)
    steps = []
    for raw, planned in zip(additions, planned_all, strict=True):
        stmts = [statement(s["sql"], s["lock_level"], options.get("additions_lock_timeout", "5s"),
                           None, s["transactional"]) for s in planned["statements"]]
        pre = planned["precheck"]
        steps.append(new_step(
            "schema_addition", [planned["object"]], converged=planned["converged"], statements=stmts,
            hazards=planned["hazards"] if stmts else [],
            precheck={"ok": pre["ok"], "problems": list(pre.get("problems", [])), "notes": [],
                      "offending_rows": list(pre.get("offending_rows", []))},
            backup_covers=[], rollback_sql=list(planned.get("rollback_sql", [])), params=raw,
            expected_sha256={planned["object"]: expected[planned["object"]]} if planned["object"] in expected else {}))
    return steps


PLANNERS = (("schema_fix", type_change_step), ("schema_additions", addition_steps), ("table_merge", merge_steps),
            ("table_cleanup", retire_steps), ("auth_schema_removal", schema_removal_steps))


def plan_steps(cur, intent, options):
    """Every step of the run, planned on the live database (read-only), in the order they run."""
    steps = []
    for section, planner in PLANNERS:
        steps += planner(cur, intent[section], options)
    return steps


def build_plan(cur, intent, overrides, product_version, options):
    """The whole plan of the run (read-only): steps, conflicts, schema fingerprint, fingerprint."""
    import datetime as _dt

    from ansible.module_utils.pgsafe_plan import fingerprint, number_steps, object_conflicts
    from ansible.module_utils.pgsafe_snapshot import schema_fingerprint, take_snapshot
    cur.execute("SELECT current_database()")
    database = cur.fetchone()[0]
    steps = number_steps(plan_steps(cur, intent, options))
    plan = {"database": database, "product_version": product_version, "overrides": overrides,
            "schema_fingerprint": schema_fingerprint(take_snapshot(cur)), "steps": steps,
            "conflicts": object_conflicts(steps), "intent": intent,
            "made_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    plan["fingerprint"] = fingerprint(plan)
    plan["rehearsal_fingerprint"] = fingerprint(plan, gate_overrides=False)
    return plan
