# -*- coding: utf-8 -*-
"""The type change unit planned: the plan from the declared targets and the catalog facts (changes, FKs,
views, strategy, hazards, blockers), its steps and statements in the order the engine runs them, and the
unit planned and prechecked on the real data (read-only): one implementation.

Used by the module that applies it (pgsafe_column_types) and by the run's plan step (pgsafe_plan), so both
see the same plan, the same precheck and the same statements.
"""
from __future__ import annotations

import hashlib
import json
import os

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified, quote_ident, table_key
from ansible.module_utils.pgsafe_locks import lock_statements
from ansible.module_utils.pgsafe_typechange_copy import (choose_methods, left_original_hazards, left_originals,
                                                     method_statements, method_steps, read_copy_facts)
from ansible.module_utils.pgsafe_typechange_dependents import collations_to_keep, plan_dependents
from ansible.module_utils.pgsafe_typechange_facts import canonicalise_targets, gather_facts
from ansible.module_utils.pgsafe_typechange_online import partition_online_blockers
from ansible.module_utils.pgsafe_typechange_orphans import quarantine_set
from ansible.module_utils.pgsafe_typechange_parse import NEW_SUFFIX, TypeChangeError, canonical_type_text
from ansible.module_utils.pgsafe_typechange_precheck import interpret_precheck, precheck
from ansible.module_utils.pgsafe_typechange_rewrite import rewrite_statements
from ansible.module_utils.pgsafe_typechange_rollback import rollback_sql
from ansible.module_utils.pgsafe_typechange_sql import (add_fk_statements, drop_fk_statements, drop_view_statements,
                                                        online_check_name, partition_facts, recreate_view_statements,
                                                        unit_lock_plan, validate_fk_steps)

DEFAULT_ONLINE_THRESHOLD = 256 * 1024 * 1024


def choose_strategy(requested, table_sizes, threshold=DEFAULT_ONLINE_THRESHOLD, online_blockers=None):
    """rewrite | online.  auto: online when any touched table (with indexes) exceeds the threshold."""
    blockers = online_blockers or []
    if requested == "rewrite":
        return "rewrite", "requested"
    if requested == "online":
        if blockers:
            raise TypeChangeError("strategy online is not possible: " + "; ".join(blockers) +
                                  ". Use strategy rewrite (in a maintenance window) or fix the blocker")
        return "online", "requested"
    big = {t: s for t, s in table_sizes.items() if s > threshold}
    if big and not blockers:
        return "online", "auto: {0} larger than {1} bytes".format(", ".join(sorted(big)), threshold)
    if big:
        return "rewrite", "auto: large tables but online impossible ({0})".format("; ".join(blockers))
    return "rewrite", "auto: every touched table is below {0} bytes".format(threshold)


def disk_requirement(table_sizes, strategy, margin_bytes):
    """Bytes a change needs free: about 2x table+indexes for a rewrite, 1x for online, plus the margin."""
    total = sum(table_sizes.values())
    return (2 if strategy == "rewrite" else 1) * total + int(margin_bytes or 0)


def disk_verdict(required, available):
    if available is None:
        return {"required_bytes": required, "available_bytes": None, "ok": True,
                "note": "free space not measurable: pass disk_free_bytes to check it"}
    ok = available >= required
    return {"required_bytes": required, "available_bytes": available, "ok": ok,
            "note": "enough free space" if ok else
            "need {0} bytes free (about 2x table+indexes plus margin), {1} available".format(required, available)}


def fk_matches(declared, existing):
    """Does an existing FK (catalog facts) match the declared one?"""
    return (existing["columns"] == declared["columns"] and existing["ref_schema"] == declared["ref_schema"]
            and existing["ref_table"] == declared["ref_table"] and existing["ref_columns"] == declared["ref_columns"]
            and existing["on_delete"] == declared["on_delete"] and existing["on_update"] == declared["on_update"])


def _touch(touched, key):
    if key not in touched:
        touched.append(key)


def _plan_change(ch, t, notes):
    """One declared change against its column: what it needs (type, default, NOT NULL); online blockers."""
    key = (ch["schema"], ch["table"])
    name = qualified(*key)
    col = t["columns"][ch["column"]]
    current = col["type"]
    new_col = t["columns"].get(derived_name(ch["column"], suffix=NEW_SUFFIX))
    needs = canonical_type_text(current) != ch["type"]
    default_change = ch["set_default"] and (col["default"] or None) != (ch["default"] or None)
    nn_change = ch["not_null"] is True and not col["notnull"]
    item = dict(ch, from_type=current, needs_type=needs, needs_default=default_change,
                needs_not_null=nn_change, notnull=col["notnull"], default_before=col["default"],
                comment=col.get("comment"), leftover_new_column=new_col is not None,
                new_column=derived_name(ch["column"], suffix=NEW_SUFFIX))
    if new_col is not None and not needs:
        notes["hazards"].append("leftover column {0}.{1} from an interrupted online run: it will be dropped"
                                .format(name, item["new_column"]))
    if needs or default_change or nn_change or new_col is not None:
        _touch(notes["touched"], key)
    if needs and not t["pk"]:
        notes["online_blockers"].append("{0} has no primary key (needed for batched backfill)".format(name))
    if needs:
        notes["online_blockers"].extend(partition_online_blockers(name, t, ch["column"]))
    for idx in t["indexes"]:
        if ch["column"] in idx["columns"] and needs and not idx["simple"]:
            notes["online_blockers"].append("index {0} on {1} is an expression/partial/non-btree index".format(
                idx["name"], name))
    for chk in t.get("checks", []):
        if ch["column"] in chk["columns"] and needs and chk["name"] != online_check_name(ch["column"]):
            notes["online_blockers"].append("check constraint {0} on {1} uses the column".format(chk["name"], name))
    if ch["using"] and needs:
        notes["hazards"].append("explicit using expression for {0}.{1}: {2}".format(name, ch["column"], ch["using"]))
    return item


def _plan_changes(changes, tables, notes):
    plan_changes = []
    for ch in changes:
        key = (ch["schema"], ch["table"])
        t = tables.get(key)
        name = qualified(*key)
        if t is None:
            notes["blockers"].append("table {0} does not exist".format(name))
            continue
        if t["columns"].get(ch["column"]) is None:
            notes["blockers"].append("column {0}.{1} does not exist".format(name, qualified("x", ch["column"])[4:]))
            continue
        plan_changes.append(_plan_change(ch, t, notes))
    return plan_changes


def _fk_type_problems(fk, tables, target_type):
    """Blockers of a declared FK: missing columns, or both sides not of one type family after the change."""
    key, rkey = (fk["schema"], fk["table"]), (fk["ref_schema"], fk["ref_table"])
    problems = []
    for c, rc in zip(fk["columns"], fk["ref_columns"], strict=True):
        for k, cc in ((key, c), (rkey, rc)):
            if cc not in tables[k]["columns"]:
                problems.append("foreign key {0}: column {1}.{2} does not exist".format(fk["name"], qualified(*k), cc))
        if c in tables[key]["columns"] and rc in tables[rkey]["columns"]:
            ct = target_type.get(key + (c,), canonical_type_text(tables[key]["columns"][c]["type"]))
            pt = target_type.get(rkey + (rc,), canonical_type_text(tables[rkey]["columns"][rc]["type"]))
            if _fk_type_family(ct) != _fk_type_family(pt):
                problems.append("foreign key {0}: {1}.{2} will be {3} but {4}.{5} will be {6}: declare a change "
                                "so both sides have the same type".format(fk["name"], qualified(*key), c, ct,
                                                                          qualified(*rkey), rc, pt))
    return problems


def _fk_state(fk, facts, changed_cols, hazards):
    """missing | different | not_valid | valid, or recreate when it is on a changed column."""
    key, rkey = (fk["schema"], fk["table"]), (fk["ref_schema"], fk["ref_table"])
    existing = next((e for e in facts["fks"] if e["name"] == fk["name"] and (e["schema"], e["table"]) == key), None)
    if existing is None:
        state = "missing"
    elif not fk_matches(fk, existing):
        state = "different"
        hazards.append("foreign key {0} exists with another definition: it will be dropped and recreated"
                       .format(fk["name"]))
    elif not existing["validated"]:
        state = "not_valid"
    else:
        state = "valid"
    touches_changed = any(key + (c,) in changed_cols for c in fk["columns"]) or \
        any(rkey + (c,) in changed_cols for c in fk["ref_columns"])
    if touches_changed and state in ("valid", "not_valid"):
        state = "recreate"
    return state


def _plan_fks(fks, facts, plan_changes, changed_cols, notes):
    """Declared FKs: state and type compatibility after the change."""
    tables = facts["tables"]
    target_type = {(c["schema"], c["table"], c["column"]): c["type"] for c in plan_changes}
    plan_fks = []
    for fk in fks:
        key, rkey = (fk["schema"], fk["table"]), (fk["ref_schema"], fk["ref_table"])
        if key not in tables or rkey not in tables:
            notes["blockers"].append("foreign key {0}: table {1} or {2} does not exist".format(
                fk["name"], qualified(*key), qualified(*rkey)))
            continue
        notes["blockers"].extend(_fk_type_problems(fk, tables, target_type))
        state = _fk_state(fk, facts, changed_cols, notes["hazards"])
        plan_fks.append(dict(fk, state=state))
        if state != "valid":
            for k in (key, rkey):
                _touch(notes["touched"], k)
    return plan_fks


def _plan_drop_fks(fks, facts, plan_fks, changed_cols, notes):
    """Existing FKs on changed columns (either side) that are not declared: dropped and recreated as they were;
    declared ones that differ or sit on a changed column: dropped (and added as declared)."""
    declared_names = {(f["schema"], f["table"], f["name"]) for f in fks}
    drop_fks = []
    for e in facts["fks"]:
        on_changed = any((e["schema"], e["table"], c) in changed_cols for c in e["columns"]) or \
            any((e["ref_schema"], e["ref_table"], c) in changed_cols for c in e["ref_columns"])
        declared = (e["schema"], e["table"], e["name"]) in declared_names
        if on_changed and not declared:
            drop_fks.append(dict(e, recreate=True))
            notes["hazards"].append("existing foreign key {0} on {1} uses a changed column: dropped and recreated "
                                    "NOT VALID, then validated".format(e["name"], qualified(e["schema"], e["table"])))
            _touch(notes["touched"], (e["schema"], e["table"]))
        elif declared:
            d = next(f for f in plan_fks if (f["schema"], f["table"], f["name"]) == (e["schema"], e["table"], e["name"]))
            if d["state"] in ("different", "recreate"):
                drop_fks.append(dict(e, recreate=False))
    return drop_fks


def _plan_views(facts, changed_cols, notes):
    """Views on a changed column: recreated in the same transaction (blocked when others depend on them)."""
    views = [v for v in facts["views"] if any((v["dep_schema"], v["dep_table"], c) in changed_cols
                                              for c in v["dep_columns"])]
    for v in views:
        name = qualified(v["schema"], v["name"])
        if v["has_dependents"]:
            notes["blockers"].append("view {0} depends on a changed column and other objects depend on the view: "
                                     "drop or recreate them around this change".format(name))
        elif v["kind"] != "v":
            notes["blockers"].append("materialized view {0} depends on a changed column: drop it before and "
                                     "recreate it after this change".format(name))
        else:
            notes["hazards"].append("view {0} depends on a changed column: it is recreated in the same "
                                    "transaction".format(name))
    seen_views, uniq_views = set(), []
    for v in views:
        if (v["schema"], v["name"]) not in seen_views:
            seen_views.add((v["schema"], v["name"]))
            uniq_views.append(v)
    return uniq_views


def _plan_strategy(plan_changes, tables, strategy, threshold, notes):
    """(strategy, why) for the tables whose columns convert."""
    type_tables = {(c["schema"], c["table"]) for c in plan_changes if c["needs_type"] or c["leftover_new_column"]}
    chosen, why = ("rewrite", "nothing to convert")
    online_blockers = notes["online_blockers"]
    if type_tables:
        try:
            chosen, why = choose_strategy(strategy, {qualified(*k): tables[k]["size_bytes"] for k in type_tables},
                                          threshold, online_blockers)
        except TypeChangeError as exc:
            notes["blockers"].append(str(exc))
            chosen, why = "online", "requested"
        if any(c["leftover_new_column"] and c["needs_type"] for c in plan_changes) and not online_blockers:
            chosen, why = "online", "resuming an interrupted online run (leftover column found)"
    if chosen == "online" and type_tables:
        notes["hazards"].append("online strategy: converted columns move to the end of their table (SELECT * column "
                                "order changes)")
    return chosen, why


def build_plan(changes, fks, facts, strategy="auto", threshold=DEFAULT_ONLINE_THRESHOLD, online_method="auto"):
    """The plan from declared targets and catalog facts (see gather_facts for the facts' shape).

    Returns {changes, foreign_keys, drop_fks, views, dependents, steps, hazards, blockers, converged, strategy, ...}.
    Blockers stop the change (listed with the fix); hazards are warnings.  ``dependents`` lists every dependent of
    a retyped column with its decision per strategy (pgsafe_typechange_dependents).
    """
    tables = facts["tables"]
    notes = {"blockers": [], "hazards": left_original_hazards(facts.get("left_originals", [])), "online_blockers": [],
             "touched": []}
    plan_changes = _plan_changes(changes, tables, notes)
    changed_cols = {(c["schema"], c["table"], c["column"]) for c in plan_changes if c["needs_type"]}
    plan_fks = _plan_fks(fks, facts, plan_changes, changed_cols, notes)
    drop_fks = _plan_drop_fks(fks, facts, plan_fks, changed_cols, notes)
    uniq_views = _plan_views(facts, changed_cols, notes)
    dependents = plan_dependents(facts.get("dependents", []), changed_cols, notes)
    keep = collations_to_keep(facts.get("dependents", []), changed_cols)
    for c in plan_changes:
        c["collation"] = keep.get((c["schema"], c["table"], c["column"]))
    touched = notes["touched"]
    sizes = {qualified(*k): tables[k]["size_bytes"] for k in touched if k in tables}
    chosen, why = _plan_strategy(plan_changes, tables, strategy, threshold, notes)
    converged = not any(c["needs_type"] or c["needs_default"] or c["needs_not_null"] or c["leftover_new_column"]
                        for c in plan_changes) and all(f["state"] == "valid" for f in plan_fks)
    plan = {"changes": plan_changes, "foreign_keys": plan_fks, "drop_fks": drop_fks, "views": uniq_views,
            "dependents": dependents,
            "touched_tables": [qualified(*k) for k in touched], "touched_keys": touched, "table_sizes": sizes,
            "strategy": chosen, "strategy_reason": why, "blockers": notes["blockers"], "hazards": notes["hazards"],
            "converged": converged}
    plan["methods"] = choose_methods(
        plan, tables, facts.get("copy", {}), facts.get("server_version_num", 0), online_method) if chosen == "online" else {}
    plan["steps"] = plan_steps(plan)
    return plan


def _fk_type_family(t):
    t = canonical_type_text(t)
    if t.startswith("character varying") or t == "text" or t.startswith("character"):
        return "text"
    return t


def plan_steps(plan):
    """Human-readable ordered steps of the unit."""
    steps = []
    if plan["converged"]:
        return ["already converged: nothing to do"]
    steps.append("precheck (read only): castability, normalisation, collisions, orphans after the cast, disk")
    conv = [c for c in plan["changes"] if c["needs_type"] or c["needs_default"] or c["needs_not_null"]]
    if plan["strategy"] == "online" and conv:
        steps.extend(method_steps(plan.get("methods", {})))
    steps.append("quarantine orphan rows and their dependents (same transaction as their removal)")
    for f in plan["drop_fks"]:
        steps.append("drop foreign key {0} on {1}".format(f["name"], qualified(f["schema"], f["table"])))
    for v in plan["views"]:
        steps.append("drop view {0} (recreated below)".format(qualified(v["schema"], v["name"])))
    for c in conv:
        steps.append("{0}.{1}: {2} -> {3}{4}".format(qualified(c["schema"], c["table"]), c["column"], c["from_type"],
                                                     c["type"], " (swap)" if plan["strategy"] == "online" else ""))
    for v in plan["views"]:
        steps.append("recreate view {0}".format(qualified(v["schema"], v["name"])))
    for f in plan["drop_fks"]:
        if f["recreate"]:
            steps.append("recreate foreign key {0} NOT VALID".format(f["name"]))
    for f in plan["foreign_keys"]:
        if f["state"] in ("missing", "different", "recreate"):
            steps.append("add foreign key {0} NOT VALID".format(f["name"]))
    for f in plan["foreign_keys"] + [d for d in plan["drop_fks"] if d["recreate"]]:
        if f.get("state", "recreate") != "valid":
            steps.append("validate foreign key {0}".format(f["name"]))
    return steps


def diff_columns(plan):
    """Diff mode: column definitions before/after."""
    before, after = [], []
    for c in plan["changes"]:
        name = "{0}.{1}".format(qualified(c["schema"], c["table"]), quote_ident(c["column"]))
        nn_before = " NOT NULL" if c["notnull"] else ""
        nn_after = " NOT NULL" if (c["notnull"] or c["not_null"]) else ""
        d_before = " DEFAULT " + c["default_before"] if c["default_before"] else ""
        d_after_expr = c["default"] if c["set_default"] else c["default_before"]
        d_after = " DEFAULT " + d_after_expr if d_after_expr else ""
        before.append("{0} {1}{2}{3}".format(name, c["from_type"], nn_before, d_before))
        after.append("{0} {1}{2}{3}".format(name, c["type"], nn_after, d_after))
    for f in plan["foreign_keys"]:
        defn = "CONSTRAINT {0} FOREIGN KEY ({1}) REFERENCES {2} ({3}) ON DELETE {4} ON UPDATE {5}".format(
            quote_ident(f["name"]), ", ".join(quote_ident(c) for c in f["columns"]), qualified(f["ref_schema"], f["ref_table"]),
            ", ".join(quote_ident(c) for c in f["ref_columns"]), f["on_delete"], f["on_update"])
        if f["state"] != "missing":
            before.append(qualified(f["schema"], f["table"]) + " " + defn + ("" if f["state"] == "valid" else
                                                                             " (" + f["state"] + ")"))
        after.append(qualified(f["schema"], f["table"]) + " " + defn)
    return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}


def plan_fingerprint(plan):
    keep = {"changes": [{k: c[k] for k in ("schema", "table", "column", "type", "using", "default")}
                        for c in plan["changes"]],
            "foreign_keys": [{k: f[k] for k in ("name", "schema", "table", "columns", "ref_schema", "ref_table",
                                                "ref_columns", "on_delete", "on_update")} for f in plan["foreign_keys"]]}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def unit_statements(plan, orphan_policy="fail"):
    """Every statement of the unit in the order the engine runs it: [{sql, lock_level, transactional}].

    ``sql`` is a psycopg2 Composable (render with .as_string(cur)) or a ``-- comment`` naming a data-dependent
    part (which rows are quarantined: the precheck lists them).  The online strategy's batches are named, not
    listed one by one.
    """
    if plan["converged"]:
        return []
    locks = unit_lock_plan(plan)
    strongest = "ACCESS EXCLUSIVE" if any(m == "ACCESS EXCLUSIVE" for _k, m in locks) else "SHARE ROW EXCLUSIVE"
    out = []

    def add(stmts, level, transactional=True):
        out.extend({"sql": st, "lock_level": level, "transactional": transactional} for st in stmts)

    if plan["strategy"] == "online":
        add(["-- online: ADD COLUMN shadow columns, a sync trigger, batched backfill (batch size adapts), "
             "CREATE INDEX CONCURRENTLY on the shadows, NOT NULL through a validated CHECK"], "SHARE UPDATE EXCLUSIVE",
            transactional=False)
        add(method_statements(plan.get("methods", {})), "SHARE ROW EXCLUSIVE", transactional=False)
    for stmt, (_key, mode) in zip(lock_statements(locks), locks, strict=True):
        add([stmt], mode)
    if orphan_policy == "quarantine":
        add(["-- orphans after the cast and the rows depending on them: to pgsafe.quarantine_row, then deleted"],
            strongest)
    add(drop_fk_statements(plan), strongest)
    add(drop_view_statements(plan), strongest)
    if plan["strategy"] == "online":
        add(["-- online swap: drop the old columns, rename the shadows into place"], strongest)
    else:
        add(rewrite_statements(plan), strongest)
    add(recreate_view_statements(plan), strongest)
    add([st for _n, st in add_fk_statements(plan)], strongest)
    for _n, st, level in validate_fk_steps(plan):
        add([st], level, transactional=False)
    return out


def public_plan(plan):
    out = {k: v for k, v in plan.items() if not k.startswith("_") and k != "touched_keys"}
    out["drop_fks"] = [dict(f) for f in plan["drop_fks"]]
    out["views"] = [{k: v for k, v in x.items() if k != "oid"} for x in plan["views"]]
    out["touched_objects"] = [table_key(*k) for k in plan["touched_keys"]]
    out["changed_objects"] = list(dict.fromkeys(table_key(c["schema"], c["table"]) for c in plan["changes"]))
    guard = [table_key(c["schema"], c["table"]) for c in plan["changes"]]
    guard += [table_key(f["schema"], f["table"]) for f in plan["foreign_keys"] if f["state"] != "valid"]
    guard += [table_key(f["schema"], f["table"]) for f in plan["drop_fks"]]
    out["guard_objects"] = list(dict.fromkeys(guard))
    out["fingerprint_explanations"] = [
        {"kind": "cast", "table": table_key(c["schema"], c["table"]), "column": c["column"]}
        for c in plan["changes"] if c["needs_type"]]
    out["report_items"] = [
        {"object": table_key(c["schema"], c["table"]) + "." + c["column"], "before": c["from_type"], "after": c["type"],
         "state": "convert" if c["needs_type"] else "converged"} for c in plan["changes"]] + [
        {"object": "FK " + f["name"], "before": f["state"], "after": "valid",
         "state": "converged" if f["state"] == "valid" else "create"} for f in plan["foreign_keys"]]
    return out


def available_disk(cur, disk_free_bytes=None, host=""):
    """Free bytes on the server's data volume: given, or measured when the server is local; else None."""
    if disk_free_bytes is not None:
        return disk_free_bytes, "given"
    if host not in ("", "localhost", "127.0.0.1", "::1") and not host.startswith("/"):
        return None, "remote server"
    try:
        cur.execute("SELECT current_setting('data_directory')")
        st = os.statvfs(cur.fetchone()[0])
        return st.f_bavail * st.f_frsize, "data directory"
    except Exception:  # noqa: BLE001 - not superuser / not local: not measurable
        cur.connection.rollback()
        cur.execute("SET TRANSACTION READ ONLY")
        return None, "not measurable"


def plan_unit(cur, changes, fks, orphan_policy="fail", strategy="auto", threshold=256 * 1024 * 1024,
              disk_free_bytes=None, disk_margin_bytes=64 * 1024 * 1024, host="", run_id="plan", scan_data=True,
              online_method="auto"):
    """Plan and precheck one type change unit in the caller's (read-only) transaction.

    ``changes``/``fks`` are normalised (normalise_changes / normalise_fks). Returns
    {plan (internal, with _facts), public (for people and the backup role), fingerprint, hazards,
    precheck (raw findings with verdict), verdict {ok, problems, notes}, rollback_sql}.
    Blocked or converged units come back with ``precheck`` None; so does every unit with ``scan_data=False``
    (the plan from the catalog only, for a caller whose change prechecks the data itself before it starts).
    """
    canonicalise_targets(cur, changes)
    facts = gather_facts(cur, changes, fks)
    facts["partitions"] = partition_facts(cur, facts["tables"])
    facts["copy"] = read_copy_facts(cur, facts["tables"])
    facts["left_originals"] = left_originals(cur)
    plan = build_plan(changes, fks, facts, strategy, threshold, online_method)
    plan["_facts"] = facts
    out = {"plan": plan, "public": public_plan(plan), "fingerprint": plan_fingerprint(plan),
           "hazards": list(plan["hazards"]), "precheck": None, "rollback_sql": "",
           "verdict": {"ok": not plan["blockers"], "problems": list(plan["blockers"]), "notes": []}}
    if plan["blockers"] or plan["converged"] or not scan_data:
        return out
    free, where = available_disk(cur, disk_free_bytes, host)
    disk = disk_verdict(disk_requirement(dict(plan["table_sizes"]), plan["strategy"], disk_margin_bytes), free)
    disk["measured_at"] = where
    orphans_found = {}
    raw = precheck(cur, plan, orphan_policy, facts["server_version_num"], disk, orphans_found)
    if orphan_policy == "quarantine" and any(o["count"] for o in raw["orphans"]):
        qset = quarantine_set(cur, plan, orphans_found)
        raw["would_quarantine"] = {table_key(*k): len(pks) for k, pks, _ in qset}
    verdict = interpret_precheck(raw)
    raw["verdict"] = verdict
    out.update(precheck=raw, verdict=verdict, rollback_sql=rollback_sql(plan, run_id),
               hazards=list(plan["hazards"]) + verdict["notes"])
    return out
