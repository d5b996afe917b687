# -*- coding: utf-8 -*-
"""The type change unit planned and prechecked on the real data (read-only): one implementation.

Used by the module that applies it (pgsafe_column_types) and by the run's plan step (pgsafe_plan), so both
see the same plan, the same precheck and the same statements.
"""
from __future__ import annotations

import os

from ansible.module_utils.pgsafe_identifiers import quote_ident
from ansible.module_utils.pgsafe_typechange import (
    build_plan,
    canonicalise_targets,
    disk_requirement,
    disk_verdict,
    gather_facts,
    interpret_precheck,
    plan_fingerprint,
    precheck,
    quarantine_set,
    rollback_sql,
)


def object_key(schema, table):
    """schema.table as the backup and fingerprint modules take it (parts quoted only when needed)."""
    def part(x):
        return quote_ident(x) if ("." in x or '"' in x) else x
    return part(schema) + "." + part(table)


def public_plan(plan):
    out = {k: v for k, v in plan.items() if not k.startswith("_") and k != "touched_keys"}
    out["drop_fks"] = [dict(f) for f in plan["drop_fks"]]
    out["views"] = [{k: v for k, v in x.items() if k != "oid"} for x in plan["views"]]
    out["touched_objects"] = [object_key(*k) for k in plan["touched_keys"]]
    out["changed_objects"] = list(dict.fromkeys(object_key(c["schema"], c["table"]) for c in plan["changes"]))
    guard = [object_key(c["schema"], c["table"]) for c in plan["changes"]]
    guard += [object_key(f["schema"], f["table"]) for f in plan["foreign_keys"] if f["state"] != "valid"]
    guard += [object_key(f["schema"], f["table"]) for f in plan["drop_fks"]]
    out["guard_objects"] = list(dict.fromkeys(guard))
    out["fingerprint_explanations"] = [
        {"kind": "cast", "table": object_key(c["schema"], c["table"]), "column": c["column"]}
        for c in plan["changes"] if c["needs_type"]]
    out["report_items"] = [
        {"object": object_key(c["schema"], c["table"]) + "." + c["column"], "before": c["from_type"], "after": c["type"],
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
              disk_free_bytes=None, disk_margin_bytes=64 * 1024 * 1024, host="", run_id="plan"):
    """Plan and precheck one type change unit in the caller's (read-only) transaction.

    ``changes``/``fks`` are normalised (normalise_changes / normalise_fks). Returns
    {plan (internal, with _facts), public (for people and the backup role), fingerprint, hazards,
    precheck (raw findings with verdict), verdict {ok, problems, notes}, rollback_sql}.
    Blocked or converged units come back with ``precheck`` None.
    """
    canonicalise_targets(cur, changes)
    facts = gather_facts(cur, changes, fks)
    plan = build_plan(changes, fks, facts, strategy, threshold)
    plan["_facts"] = facts
    out = {"plan": plan, "public": public_plan(plan), "fingerprint": plan_fingerprint(plan),
           "hazards": list(plan["hazards"]), "precheck": None, "rollback_sql": "",
           "verdict": {"ok": not plan["blockers"], "problems": list(plan["blockers"]), "notes": []}}
    if plan["blockers"] or plan["converged"]:
        return out
    free, where = available_disk(cur, disk_free_bytes, host)
    disk = disk_verdict(disk_requirement(dict(plan["table_sizes"]), plan["strategy"], disk_margin_bytes), free)
    disk["measured_at"] = where
    orphans_found = {}
    raw = precheck(cur, plan, orphan_policy, facts["server_version_num"], disk, orphans_found)
    if orphan_policy == "quarantine" and any(o["count"] for o in raw["orphans"]):
        qset = quarantine_set(cur, plan, orphans_found)
        raw["would_quarantine"] = {object_key(*k): len(pks) for k, pks, _ in qset}
    verdict = interpret_precheck(raw)
    raw["verdict"] = verdict
    out.update(precheck=raw, verdict=verdict, rollback_sql=rollback_sql(plan, run_id),
               hazards=list(plan["hazards"]) + verdict["notes"])
    return out
