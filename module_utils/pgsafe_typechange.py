# -*- coding: utf-8 -*-
"""Safe column type changes: plan, precheck on the real data, apply (rewrite or online), quarantine.

The exports fix of Sprint 90: bring columns across related tables to declared types in one planned
unit, then create and validate the foreign keys the code declares.  Order of a unit:

    precheck (read only) -> drop FKs on the changed columns -> convert parents and children together
    -> recreate / add FKs NOT VALID -> VALIDATE each FK (short, weak locks)

Plain Python.  The pure parts (type parsing, plan building from catalog facts, hazards, ordering,
rollback SQL text, strategy choice, disk estimate, precheck interpretation) need no database and
are unit tested; the functions taking a cursor/connection run the SQL.  Identifiers go through
``psycopg2.sql.Identifier``, values are parameters.  The only raw SQL accepted from a plan is an
explicit ``using`` / ``default`` expression, which is validated first (``validate_expression``).

Precheck castability (documented choice):
* server >= 16: ``pg_input_is_valid(value, target_type)``: the server's own input function.
* server < 16, target uuid: a strict regex of exactly what ``uuid_in`` accepts (32 hex digits,
  optional hyphen after each group of 4, optional surrounding braces, nothing else: no spaces).
  Rows the regex accepts are cast with the real ``::uuid`` in the same SELECT (so a disagreement
  can only make the precheck fail, never pass wrongly); every value the regex rejects is then cast
  by the server one by one inside a SAVEPOINT of the read-only transaction, and is reported only if
  the server rejects it too.  No function is created, nothing is written.
* server < 16, varchar(n)/char(n): ``length(value) > n`` (the ALTER keeps assignment semantics, so
  an overlong value would error, never truncate).
* anything else (or an explicit ``using``): the exact expression over every row in a SAVEPOINT; on
  error, the distinct offending values are located with per-value SAVEPOINT casts (capped).
"""
from __future__ import annotations

import hashlib
import json
import re
import time

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified, split_qualified

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    import psycopg2
    from psycopg2 import errors as pg_errors
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = None
    pg_errors = None
    sql = None

NEW_SUFFIX = "pgsafe_new"
SAMPLE_LIMIT = 20
SCAN_CAP = 10000
DEFAULT_ONLINE_THRESHOLD = 256 * 1024 * 1024

UUID_REGEX = r"^(\{[0-9A-Fa-f]{4}(-?[0-9A-Fa-f]{4}){7}\}|[0-9A-Fa-f]{4}(-?[0-9A-Fa-f]{4}){7})$"
_UUID_RE = re.compile(UUID_REGEX)

FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_ACTION_WORDS = {v: v for v in FK_ACTIONS.values()}
_ACTION_WORDS.update({"NO_ACTION": "NO ACTION", "SET_NULL": "SET NULL", "SET_DEFAULT": "SET DEFAULT"})

_TYPE_ALIASES = {
    "varchar": "character varying", "char": "character", "bpchar": "character", "int": "integer",
    "int4": "integer", "int8": "bigint", "int2": "smallint", "float8": "double precision", "float4": "real",
    "bool": "boolean", "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
    "timetz": "time with time zone", "time": "time without time zone", "decimal": "numeric",
}


class TypeChangeError(Exception):
    """The change cannot (or must not) proceed; the message names the object and the fix."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


class LockRetriesExhausted(TypeChangeError):
    """lock_timeout fired on every attempt: failed closed."""


# --------------------------------------------------------------------------- pure helpers
def canonical_type_text(text):
    """Normalise a type spelling for comparison with format_type(): 'varchar(255)' -> 'character varying(255)'."""
    if not isinstance(text, str) or not text.strip():
        raise TypeChangeError("a target type must be a non-empty string, got {0!r}".format(text))
    t = " ".join(text.strip().lower().split())
    m = re.match(r"^([a-z_][a-z0-9_ ]*?)\s*(\(\s*([0-9]+(\s*,\s*[0-9]+)?)\s*\))?\s*(\[\])?$", t)
    if not m:
        raise TypeChangeError("target type {0!r} is not a plain type name: write e.g. uuid, varchar(255), "
                              "numeric(10,2)".format(text))
    base, mods, arr = m.group(1), m.group(3), m.group(5) or ""
    base = _TYPE_ALIASES.get(base, base)
    mods = ",".join(p.strip() for p in mods.split(",")) if mods else None
    if mods is None:
        return base + arr
    if base in ("timestamp without time zone", "timestamp with time zone", "time without time zone",
                "time with time zone"):
        head, _, tail = base.partition(" ")
        return "{0}({1}) {2}{3}".format(head, mods, tail, arr)
    return "{0}({1}){2}".format(base, mods, arr)


def varchar_limit(type_text):
    """n of character varying(n) / character(n), else None."""
    m = re.match(r"^(character varying|character)\((\d+)\)$", canonical_type_text(type_text))
    return int(m.group(2)) if m else None


def is_uuid_target(type_text):
    return canonical_type_text(type_text) == "uuid"


def uuid_accepts(value):
    """What uuid_in accepts (mirror of the server regex, for unit tests and reports)."""
    return value is not None and bool(_UUID_RE.match(value))


def normalise_uuid(value):
    """Canonical text of a uuid spelling uuid_in accepts, else None."""
    if not uuid_accepts(value):
        return None
    h = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    return "{0}-{1}-{2}-{3}-{4}".format(h[:8], h[8:12], h[12:16], h[16:20], h[20:])


_FORBIDDEN_EXPR = re.compile(r";|--|/\*|\*/|\\")


def validate_expression(expr, what):
    """An operator-written SQL expression (using / default): one expression, no statement separator."""
    if not isinstance(expr, str) or not expr.strip():
        raise TypeChangeError("{0} must be a non-empty SQL expression".format(what))
    if _FORBIDDEN_EXPR.search(expr):
        raise TypeChangeError("{0} {1!r} contains ';', a comment or a backslash: give a single SQL expression"
                              .format(what, expr))
    depth = 0
    for ch in expr:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            break
    if depth != 0 or expr.count("'") % 2 or expr.count('"') % 2:
        raise TypeChangeError("{0} {1!r} has unbalanced parentheses or quotes".format(what, expr))
    return expr.strip()


def fk_action(word):
    key = (word or "NO ACTION").strip().upper().replace("-", " ")
    key = " ".join(key.split())
    if key.replace(" ", "_") in _ACTION_WORDS:
        return _ACTION_WORDS[key.replace(" ", "_")]
    if key in _ACTION_WORDS:
        return _ACTION_WORDS[key]
    raise TypeChangeError("unknown FK action {0!r}: use NO ACTION, RESTRICT, CASCADE, SET NULL or SET DEFAULT"
                          .format(word))


def normalise_changes(changes, default_schema="public"):
    """Validate and normalise the declared changes (list of dicts)."""
    out, seen = [], set()
    for i, ch in enumerate(changes or []):
        if not isinstance(ch, dict) or not ch.get("table") or not ch.get("column") or not ch.get("type"):
            raise TypeChangeError("changes[{0}] needs table, column and type".format(i))
        schema, table = split_qualified(ch["table"], default_schema)
        item = {"schema": schema, "table": table, "column": ch["column"], "type": canonical_type_text(ch["type"]),
                "type_text": ch["type"].strip(), "using": None, "default": None,
                # A default given sets it, drop_default drops it; no default (absent, or null as Ansible passes an
                # option not given) keeps it: the plan step and the module read the same change the same way.
                "set_default": ch.get("default") is not None or bool(ch.get("drop_default")),
                "not_null": ch.get("not_null")}
        if ch.get("using") is not None:
            item["using"] = validate_expression(ch["using"], "changes[{0}].using".format(i))
        if "default" in ch and ch["default"] is not None:
            item["default"] = validate_expression(str(ch["default"]), "changes[{0}].default".format(i))
        key = (schema, table, ch["column"])
        if key in seen:
            raise TypeChangeError("column {0}.{1} appears twice in changes".format(qualified(schema, table),
                                                                                    ch["column"]))
        seen.add(key)
        out.append(item)
    return out


def normalise_fks(fks, default_schema="public"):
    out = []
    for i, fk in enumerate(fks or []):
        for key in ("name", "table", "columns", "ref_table", "ref_columns"):
            if not fk.get(key):
                raise TypeChangeError("foreign_keys[{0}] needs {1}".format(i, key))
        schema, table = split_qualified(fk["table"], default_schema)
        rschema, rtable = split_qualified(fk["ref_table"], default_schema)
        cols = list(fk["columns"]) if isinstance(fk["columns"], list) else [fk["columns"]]
        rcols = list(fk["ref_columns"]) if isinstance(fk["ref_columns"], list) else [fk["ref_columns"]]
        if len(cols) != len(rcols):
            raise TypeChangeError("foreign key {0}: columns and ref_columns differ in length".format(fk["name"]))
        out.append({"name": fk["name"], "schema": schema, "table": table, "columns": cols,
                    "ref_schema": rschema, "ref_table": rtable, "ref_columns": rcols,
                    "on_delete": fk_action(fk.get("on_delete")), "on_update": fk_action(fk.get("on_update"))})
    return out


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


def build_plan(changes, fks, facts, strategy="auto", threshold=DEFAULT_ONLINE_THRESHOLD):
    """The plan from declared targets and catalog facts (see gather_facts for the facts' shape).

    Returns {changes, foreign_keys, drop_fks, views, steps, hazards, blockers, converged, strategy, ...}.
    Blockers stop the change (listed with the fix); hazards are warnings.
    """
    tables = facts["tables"]
    blockers, hazards, online_blockers = [], [], []
    plan_changes = []
    touched = []
    for ch in changes:
        key = (ch["schema"], ch["table"])
        t = tables.get(key)
        name = qualified(*key)
        if t is None:
            blockers.append("table {0} does not exist".format(name))
            continue
        col = t["columns"].get(ch["column"])
        if col is None:
            blockers.append("column {0}.{1} does not exist".format(name, qualified("x", ch["column"])[4:]))
            continue
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
            hazards.append("leftover column {0}.{1} from an interrupted online run: it will be dropped"
                           .format(name, item["new_column"]))
        plan_changes.append(item)
        if needs or default_change or nn_change or new_col is not None:
            if key not in touched:
                touched.append(key)
        if needs and not t["pk"]:
            online_blockers.append("{0} has no primary key (needed for batched backfill)".format(name))
        for idx in t["indexes"]:
            if ch["column"] in idx["columns"] and needs and not idx["simple"]:
                online_blockers.append("index {0} on {1} is an expression/partial/non-btree index".format(
                    idx["name"], name))
        for chk in t.get("checks", []):
            if ch["column"] in chk["columns"] and needs and chk["name"] != online_check_name(ch["column"]):
                online_blockers.append("check constraint {0} on {1} uses the column".format(chk["name"], name))
        if ch["using"] and needs:
            hazards.append("explicit using expression for {0}.{1}: {2}".format(name, ch["column"], ch["using"]))
    changed_cols = {(c["schema"], c["table"], c["column"]) for c in plan_changes if c["needs_type"]}
    # Declared FKs: state and type compatibility after the change.
    plan_fks = []
    target_type = {(c["schema"], c["table"], c["column"]): c["type"] for c in plan_changes}
    for fk in fks:
        key = (fk["schema"], fk["table"])
        rkey = (fk["ref_schema"], fk["ref_table"])
        if key not in tables or rkey not in tables:
            blockers.append("foreign key {0}: table {1} or {2} does not exist".format(
                fk["name"], qualified(*key), qualified(*rkey)))
            continue
        for c, rc in zip(fk["columns"], fk["ref_columns"], strict=True):
            for k, cc in ((key, c), (rkey, rc)):
                if cc not in tables[k]["columns"]:
                    blockers.append("foreign key {0}: column {1}.{2} does not exist".format(fk["name"], qualified(*k), cc))
            if c in tables[key]["columns"] and rc in tables[rkey]["columns"]:
                ct = target_type.get(key + (c,), canonical_type_text(tables[key]["columns"][c]["type"]))
                pt = target_type.get(rkey + (rc,), canonical_type_text(tables[rkey]["columns"][rc]["type"]))
                if _fk_type_family(ct) != _fk_type_family(pt):
                    blockers.append("foreign key {0}: {1}.{2} will be {3} but {4}.{5} will be {6}: declare a change "
                                    "so both sides have the same type".format(fk["name"], qualified(*key), c, ct,
                                                                              qualified(*rkey), rc, pt))
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
        plan_fks.append(dict(fk, state=state))
        if state != "valid":
            for k in (key, rkey):
                if k not in touched:
                    touched.append(k)
    declared_names = {(f["schema"], f["table"], f["name"]) for f in fks}
    # Existing FKs on changed columns (either side) that are not declared: dropped and recreated as they were.
    drop_fks = []
    for e in facts["fks"]:
        on_changed = any((e["schema"], e["table"], c) in changed_cols for c in e["columns"]) or \
            any((e["ref_schema"], e["ref_table"], c) in changed_cols for c in e["ref_columns"])
        declared = (e["schema"], e["table"], e["name"]) in declared_names
        if on_changed and not declared:
            drop_fks.append(dict(e, recreate=True))
            hazards.append("existing foreign key {0} on {1} uses a changed column: dropped and recreated NOT VALID, "
                           "then validated".format(e["name"], qualified(e["schema"], e["table"])))
            if (e["schema"], e["table"]) not in touched:
                touched.append((e["schema"], e["table"]))
        elif declared:
            d = next(f for f in plan_fks if (f["schema"], f["table"], f["name"]) == (e["schema"], e["table"], e["name"]))
            if d["state"] in ("different", "recreate"):
                drop_fks.append(dict(e, recreate=False))
    views = [v for v in facts["views"] if any((v["dep_schema"], v["dep_table"], c) in changed_cols
                                              for c in v["dep_columns"])]
    for v in views:
        if v["has_dependents"]:
            blockers.append("view {0} depends on a changed column and other objects depend on the view: drop or "
                            "recreate them around this change".format(qualified(v["schema"], v["name"])))
        elif v["kind"] != "v":
            blockers.append("materialized view {0} depends on a changed column: drop it before and recreate it "
                            "after this change".format(qualified(v["schema"], v["name"])))
        else:
            hazards.append("view {0} depends on a changed column: it is recreated in the same transaction".format(
                qualified(v["schema"], v["name"])))
    seen_views, uniq_views = set(), []
    for v in views:
        if (v["schema"], v["name"]) not in seen_views:
            seen_views.add((v["schema"], v["name"]))
            uniq_views.append(v)
    sizes = {qualified(*k): tables[k]["size_bytes"] for k in touched if k in tables}
    type_tables = {(c["schema"], c["table"]) for c in plan_changes if c["needs_type"] or c["leftover_new_column"]}
    chosen, why = ("rewrite", "nothing to convert")
    if type_tables:
        try:
            chosen, why = choose_strategy(strategy, {qualified(*k): tables[k]["size_bytes"] for k in type_tables},
                                          threshold, online_blockers)
        except TypeChangeError as exc:
            blockers.append(str(exc))
            chosen, why = "online", "requested"
        if any(c["leftover_new_column"] and c["needs_type"] for c in plan_changes) and not online_blockers:
            chosen, why = "online", "resuming an interrupted online run (leftover column found)"
    if chosen == "online" and type_tables:
        hazards.append("online strategy: converted columns move to the end of their table (SELECT * column order "
                       "changes); column-level grants and statistics targets on them are not carried over")
    converged = not any(c["needs_type"] or c["needs_default"] or c["needs_not_null"] or c["leftover_new_column"]
                        for c in plan_changes) and all(f["state"] == "valid" for f in plan_fks)
    plan = {"changes": plan_changes, "foreign_keys": plan_fks, "drop_fks": drop_fks, "views": uniq_views,
            "touched_tables": [qualified(*k) for k in touched], "touched_keys": touched, "table_sizes": sizes,
            "strategy": chosen, "strategy_reason": why, "blockers": blockers, "hazards": hazards,
            "converged": converged}
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
        steps.append("online: add shadow columns, sync trigger, batched throttled backfill, shadow indexes "
                     "CONCURRENTLY, NOT NULL check validated")
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


def interpret_precheck(raw):
    """Turn raw precheck findings into a verdict: {ok, problems[], notes[]}.

    raw: {invalid: [{table, column, count, samples}], normalising: [...], collisions: [...],
          orphans: [{fk, count, samples}], disk: {...}, orphan_policy}
    """
    problems, notes = [], []
    for item in raw.get("invalid", []):
        if item["count"]:
            problems.append("{0}.{1}: {2} value(s) do not cast to {3}: {4}".format(
                item["table"], item["column"], item["count"], item["type"],
                ", ".join("{0} -> {1!r}".format(json.dumps(s["pk"], sort_keys=True), s["value"])
                          for s in item["samples"])))
    for item in raw.get("normalising", []):
        if item["count"]:
            notes.append("{0}.{1}: {2} value(s) castable, will normalise (e.g. {3})".format(
                item["table"], item["column"], item["count"],
                ", ".join("{0!r} -> {1}".format(s["value"], s["normalised"]) for s in item["samples"][:5])))
    for item in raw.get("collisions", []):
        if item["count"]:
            problems.append("{0}.{1}: {2} group(s) of distinct values become the same {3} (collision): {4}".format(
                item["table"], item["column"], item["count"], item["type"],
                "; ".join("{0} <- {1}".format(s["normalised"], ", ".join(repr(v) for v in s["values"]))
                          for s in item["samples"])))
    policy = raw.get("orphan_policy", "fail")
    for item in raw.get("orphans", []):
        if item["count"]:
            msg = "foreign key {0}: {1} orphan row(s) in {2} (compared after the cast): {3}".format(
                item["fk"], item["count"], item["table"],
                ", ".join(json.dumps(s["pk"], sort_keys=True) for s in item["samples"]))
            if policy == "fail":
                problems.append(msg + " (orphan_policy fail: fix the data or use orphan_policy quarantine)")
            else:
                notes.append(msg + " -> quarantined")
    if raw.get("would_quarantine"):
        notes.append("would quarantine (orphans and the rows depending on them): " + ", ".join(
            "{0}: {1}".format(k, v) for k, v in sorted(raw["would_quarantine"].items())))
    disk = raw.get("disk")
    if disk and not disk["ok"]:
        problems.append("not enough disk: " + disk["note"])
    return {"ok": not problems, "problems": problems, "notes": notes}


def rollback_sql(plan, run_id):
    """SQL that puts the columns, defaults and FKs back as they were, then the quarantined rows back."""
    lines = ["-- pgsafe rollback of type change run {0}".format(run_id), "BEGIN;",
             "SET LOCAL lock_timeout = '10s';"]
    for f in plan["foreign_keys"]:
        if f["state"] != "valid":
            lines.append("ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1};".format(
                qualified(f["schema"], f["table"]), _qi(f["name"])))
    for f in plan["drop_fks"]:
        if f["recreate"]:
            lines.append("ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1};".format(
                qualified(f["schema"], f["table"]), _qi(f["name"])))
    for v in plan["views"]:
        lines.append("DROP VIEW IF EXISTS {0};".format(qualified(v["schema"], v["name"])))
    for c in plan["changes"]:
        tbl = qualified(c["schema"], c["table"])
        col = _qi(c["column"])
        if c["needs_type"]:
            lines.append("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT;".format(tbl, col))
            lines.append("ALTER TABLE {0} ALTER COLUMN {1} TYPE {2} USING {1}::{2};".format(tbl, col, c["from_type"]))
        if c["needs_type"] or c["needs_default"]:
            if c["default_before"]:
                lines.append("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2};".format(tbl, col, c["default_before"]))
            else:
                lines.append("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT;".format(tbl, col))
        if c["needs_not_null"]:
            lines.append("ALTER TABLE {0} ALTER COLUMN {1} DROP NOT NULL;".format(tbl, col))
    for v in plan["views"]:
        lines.append("CREATE VIEW {0} AS {1}".format(qualified(v["schema"], v["name"]), v["definition"].strip()))
    for f in plan["drop_fks"]:
        lines.append("ALTER TABLE {0} ADD CONSTRAINT {1} {2};".format(
            qualified(f["schema"], f["table"]), _qi(f["name"]), f["definition"]))
    lines.append(quarantine_restore_sql(run_id).strip())
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def quarantine_restore_sql(run_id):
    """Pure SQL restore of a run's quarantined rows (parents first: reverse order of removal)."""
    rid = "'" + str(run_id).replace("'", "''") + "'"
    return """DO $pgsafe_restore$
DECLARE q record;
BEGIN
  FOR q IN SELECT id, source_schema, source_table, row_data FROM pgsafe.quarantine_row
           WHERE run_id = {0} AND restored_at IS NULL ORDER BY id DESC LOOP
    EXECUTE format('INSERT INTO %I.%I SELECT (jsonb_populate_record(NULL::%I.%I, $1)).*',
                   q.source_schema, q.source_table, q.source_schema, q.source_table) USING q.row_data;
    UPDATE pgsafe.quarantine_row SET restored_at = now() WHERE id = q.id;
  END LOOP;
END
$pgsafe_restore$;
""".format(rid)


def _qi(name):
    return '"' + name.replace('"', '""') + '"'


def diff_columns(plan):
    """Diff mode: column definitions before/after."""
    before, after = [], []
    for c in plan["changes"]:
        name = "{0}.{1}".format(qualified(c["schema"], c["table"]), _qi(c["column"]))
        nn_before = " NOT NULL" if c["notnull"] else ""
        nn_after = " NOT NULL" if (c["notnull"] or c["not_null"]) else ""
        d_before = " DEFAULT " + c["default_before"] if c["default_before"] else ""
        d_after_expr = c["default"] if c["set_default"] else c["default_before"]
        d_after = " DEFAULT " + d_after_expr if d_after_expr else ""
        before.append("{0} {1}{2}{3}".format(name, c["from_type"], nn_before, d_before))
        after.append("{0} {1}{2}{3}".format(name, c["type"], nn_after, d_after))
    for f in plan["foreign_keys"]:
        defn = "CONSTRAINT {0} FOREIGN KEY ({1}) REFERENCES {2} ({3}) ON DELETE {4} ON UPDATE {5}".format(
            _qi(f["name"]), ", ".join(_qi(c) for c in f["columns"]), qualified(f["ref_schema"], f["ref_table"]),
            ", ".join(_qi(c) for c in f["ref_columns"]), f["on_delete"], f["on_update"])
        if f["state"] != "missing":
            before.append(qualified(f["schema"], f["table"]) + " " + defn + ("" if f["state"] == "valid" else
                                                                             " (" + f["state"] + ")"))
        after.append(qualified(f["schema"], f["table"]) + " " + defn)
    return {"before": "\n".join(before) + "\n", "after": "\n".join(after) + "\n"}


def backoff_delays(retries, base, maximum):
    """Sleep before each retry: base * 2**n, capped (bounded schedule)."""
    return [min(base * (2 ** n), maximum) for n in range(max(0, retries))]


def plan_fingerprint(plan):
    keep = {"changes": [{k: c[k] for k in ("schema", "table", "column", "type", "using", "default")}
                        for c in plan["changes"]],
            "foreign_keys": [{k: f[k] for k in ("name", "schema", "table", "columns", "ref_schema", "ref_table",
                                                "ref_columns", "on_delete", "on_update")} for f in plan["foreign_keys"]]}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- catalog facts
def _ident(*parts):
    return sql.Identifier(*parts)


def gather_facts(cur, changes, fks):
    """Catalog facts of every table named by the changes and FKs (and FKs pointing at them)."""
    keys = []
    for c in changes:
        keys.append((c["schema"], c["table"]))
    for f in fks:
        keys += [(f["schema"], f["table"]), (f["ref_schema"], f["ref_table"])]
    keys = list(dict.fromkeys(keys))
    cur.execute("SELECT current_setting('server_version_num')::int")
    facts = {"server_version_num": cur.fetchone()[0], "tables": {}, "fks": [], "views": []}
    oids = {}
    for schema, table in keys:
        cur.execute("SELECT c.oid, pg_total_relation_size(c.oid), c.relkind FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        row = cur.fetchone()
        if row is None or row[2] not in ("r", "p"):
            continue
        oid = row[0]
        oids[oid] = (schema, table)
        cur.execute("SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
                    "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum), a.attnum "
                    "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                    "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (oid,))
        cols = {r[0]: {"type": r[1], "notnull": r[2], "default": r[3], "comment": r[4], "attnum": r[5]}
                for r in cur.fetchall()}
        cur.execute("SELECT a.attname FROM pg_index i JOIN unnest(i.indkey) WITH ORDINALITY k(attnum, o) ON true "
                    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                    "WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.o", (oid,))
        pk = [r[0] for r in cur.fetchall()]
        cur.execute("""SELECT ic.relname, i.indisunique, i.indisprimary, con.conname, con.contype,
                              (i.indexprs IS NULL AND i.indpred IS NULL AND am.amname = 'btree'),
                              ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, o)
                                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                                    ORDER BY k.o)::text[], pg_get_indexdef(i.indexrelid), i.indisvalid,
                              ARRAY(SELECT a.attname FROM pg_attribute a
                                    WHERE a.attrelid = i.indrelid AND a.attnum = ANY(pull_attnums.n))::text[]
                         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
                         LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
                              AND con.contype IN ('p', 'u', 'x')
                         CROSS JOIN LATERAL (SELECT i.indkey::int2[] AS n) pull_attnums
                        WHERE i.indrelid = %s ORDER BY ic.relname""", (oid,))
        indexes = [{"name": r[0], "unique": r[1], "primary": r[2], "constraint": r[3], "contype": r[4],
                    "simple": bool(r[5]), "columns": list(r[6]), "definition": r[7], "valid": r[8]}
                   for r in cur.fetchall()]
        cur.execute("SELECT con.conname, ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = con.conrelid "
                    "AND a.attnum = ANY(con.conkey))::text[] FROM pg_constraint con WHERE con.conrelid = %s "
                    "AND con.contype = 'c'", (oid,))
        checks = [{"name": r[0], "columns": list(r[1])} for r in cur.fetchall()]
        cur.execute("SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = %s AND NOT t.tgisinternal", (oid,))
        triggers = [r[0] for r in cur.fetchall()]
        facts["tables"][(schema, table)] = {"oid": oid, "columns": cols, "pk": pk, "size_bytes": row[1],
                                            "indexes": indexes, "checks": checks, "triggers": triggers}
    if oids:
        cur.execute("""SELECT con.conname, n.nspname, c.relname, rn.nspname, rc.relname,
                              ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, o)
                                    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                                    ORDER BY k.o)::text[],
                              ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, o)
                                    JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                                    ORDER BY k.o)::text[],
                              con.confdeltype, con.confupdtype, con.convalidated, pg_get_constraintdef(con.oid)
                         FROM pg_constraint con
                         JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                         JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                        WHERE con.contype = 'f' AND (con.conrelid = ANY(%s) OR con.confrelid = ANY(%s))
                        ORDER BY con.conname""", (list(oids), list(oids)))
        for r in cur.fetchall():
            facts["fks"].append({"name": r[0], "schema": r[1], "table": r[2], "ref_schema": r[3], "ref_table": r[4],
                                 "columns": list(r[5]), "ref_columns": list(r[6]), "on_delete": FK_ACTIONS[r[7]],
                                 "on_update": FK_ACTIONS[r[8]], "validated": r[9],
                                 "definition": r[10].replace(" NOT VALID", "")})
        cur.execute("""SELECT DISTINCT v.oid, vn.nspname, v.relname, v.relkind, src.relnamespace::regnamespace::text,
                              src.relname, a.attname, pg_get_viewdef(v.oid), obj_description(v.oid, 'pg_class'),
                              pg_get_userbyid(v.relowner), v.reloptions,
                              EXISTS (SELECT 1 FROM pg_depend d2 JOIN pg_rewrite r2 ON r2.oid = d2.objid
                                       WHERE d2.refobjid = v.oid AND r2.ev_class <> v.oid)
                         FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                         JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace
                         JOIN pg_class src ON src.oid = d.refobjid
                         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                        WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                          AND d.refobjid = ANY(%s) AND v.oid <> d.refobjid""", (list(oids),))
        views = {}
        for r in cur.fetchall():
            s, t = oids[_oid_of(facts, r[4], r[5])] if _oid_of(facts, r[4], r[5]) else (r[4], r[5])
            v = views.setdefault((r[0], s, t), {"oid": r[0], "schema": r[1], "name": r[2], "kind": r[3],
                                               "dep_schema": s, "dep_table": t, "dep_columns": [],
                                               "definition": r[7], "comment": r[8], "owner": r[9],
                                               "options": list(r[10] or []), "has_dependents": r[11]})
            v["dep_columns"].append(r[6])
        for v in views.values():
            cur.execute("SELECT coalesce(pg_get_userbyid(NULLIF(a.grantee, 0)), 'PUBLIC'), a.privilege_type, "
                        "a.is_grantable FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %s "
                        "AND a.grantee <> c.relowner", (v["oid"],))
            v["grants"] = [list(g) for g in cur.fetchall()]
        facts["views"] = list(views.values())
    return facts


def _oid_of(facts, schema_text, table):
    schema = schema_text.strip('"').replace('""', '"')
    for k, t in facts["tables"].items():
        if k == (schema, table):
            return t["oid"]
    return None


def canonicalise_targets(cur, changes):
    """Check each declared type exists on the server; store its format_type() spelling."""
    for c in changes:
        base = re.sub(r"\(.*\)", "", c["type"]).strip()
        cur.execute("SELECT to_regtype(%s)::text", (base,))
        if cur.fetchone()[0] is None:
            raise TypeChangeError("type {0!r} for {1}.{2} does not exist on the server".format(
                c["type_text"], qualified(c["schema"], c["table"]), c["column"]))


# --------------------------------------------------------------------------- expressions
def _type_sql(type_text):
    return sql.SQL(canonical_type_text(type_text))  # validated by canonical_type_text's strict grammar


def cast_expr(change, ref, alias=None):
    """After-value expression of a changed column, given the column reference (Composable).

    An explicit ``using`` names columns bare (as in ALTER ... USING); outside the ALTER it is evaluated
    scoped to the row of ``alias`` so that it cannot pick a column of another table in the query.
    """
    if change["using"]:
        if alias is None:
            return sql.SQL("({0})").format(sql.SQL(change["using"]))
        return sql.SQL("(SELECT ({0}) FROM (SELECT {1}.*) AS pgsafe_row)").format(
            sql.SQL(change["using"]), sql.Identifier(alias))
    return sql.SQL("CAST({0} AS {1})").format(ref, _type_sql(change["type"]))


def after_value(plan_changes, schema, table, column, alias):
    """The value a column will have after the planned change, for the row of ``alias``."""
    ref = sql.SQL("{0}.{1}").format(sql.Identifier(alias), sql.Identifier(column))
    for c in plan_changes:
        if (c["schema"], c["table"], c["column"]) == (schema, table, column) and c["needs_type"]:
            return cast_expr(c, ref, alias)
    return ref


def pk_json(cols, alias):
    return sql.SQL("jsonb_build_object({0})").format(sql.SQL(", ").join(
        sql.SQL("{0}, {1}.{2}").format(sql.Literal(c), sql.Identifier(alias), sql.Identifier(c)) for c in cols))


def row_hash_expr(columns, alias, plan_changes, schema, table, after_names=None):
    """Order-independent 64-bit content hash of a row, columns by name, planned casts applied."""
    parts = []
    for c in columns:
        ref = sql.SQL("{0}.{1}").format(sql.Identifier(alias), sql.Identifier((after_names or {}).get(c, c)))
        expr = ref if after_names is not None else after_value(plan_changes, schema, table, c, alias)
        parts.append(sql.SQL("({0})::text").format(expr))
    return sql.SQL("('x' || left(md5(jsonb_build_array({0})::text), 16))::bit(64)::bigint::numeric").format(
        sql.SQL(", ").join(parts))


def table_hash(cur, schema, table, columns, plan_changes, where=None, params=None, after=False):
    """(count, sum of row hashes) of a table (or the rows matching ``where``)."""
    q = sql.SQL("SELECT count(*), coalesce(sum({0}), 0) FROM {1} AS t").format(
        row_hash_expr(columns, "t", plan_changes, schema, table, {c: c for c in columns} if after else None),
        _ident(schema, table))
    if where is not None:
        q = q + sql.SQL(" WHERE ") + where
    cur.execute(q, params)
    n, s = cur.fetchone()
    return {"rows": n, "sum": str(s)}


# --------------------------------------------------------------------------- precheck
def precheck(cur, plan, orphan_policy, server_version_num, disk=None, orphans_found=None):
    """Read-only checks on the real data.  Returns the raw findings (see interpret_precheck).

    ``orphans_found`` (a dict) receives every orphan's primary key per declared FK, for
    quarantine_set in the same transaction.
    """
    raw = {"invalid": [], "normalising": [], "collisions": [], "orphans": [], "orphan_policy": orphan_policy,
           "nulls": [], "disk": disk}
    facts_pk = plan["_facts"]["tables"]
    bad_cols = set()
    for c in plan["changes"]:
        if not c["needs_type"] and not c["needs_not_null"]:
            continue
        key = (c["schema"], c["table"])
        pk = facts_pk[key]["pk"] or [c["column"]]
        tbl = _ident(*key)
        col = sql.Identifier(c["column"])
        label = qualified(*key)
        if c["needs_type"]:
            found = _invalid_values(cur, c, tbl, col, pk, server_version_num)
            raw["invalid"].append(dict(found, table=label, column=c["column"], type=c["type"]))
            if found["count"]:
                bad_cols.add(key + (c["column"],))
        if c["not_null"] or c["notnull"]:
            cur.execute(sql.SQL("SELECT count(*) FROM {0} WHERE {1} IS NULL").format(tbl, col))
            n = cur.fetchone()[0]
            if n:
                cur.execute(sql.SQL("SELECT {0} FROM {1} t WHERE t.{2} IS NULL LIMIT %s").format(
                    pk_json(pk, "t"), tbl, col), (SAMPLE_LIMIT,))
                raw["invalid"].append({"table": label, "column": c["column"], "type": c["type"] + " NOT NULL",
                                       "count": n, "samples": [{"pk": r[0], "value": None} for r in cur.fetchall()]})
                bad_cols.add(key + (c["column"],))
        if c["needs_type"] and is_uuid_target(c["type"]) and not c["using"] and key + (c["column"],) not in bad_cols:
            norm = sql.SQL("CAST({0} AS uuid)::text").format(col)
            cur.execute(sql.SQL("SELECT count(*) FROM {0} WHERE {1} IS NOT NULL AND {1}::text <> {2}").format(
                tbl, col, norm))
            n = cur.fetchone()[0]
            samples = []
            if n:
                cur.execute(sql.SQL("SELECT {0}, {1}::text, {2} FROM {3} t WHERE {1} IS NOT NULL AND {1}::text <> {2} "
                                    "LIMIT %s").format(pk_json(pk, "t"), col, norm, tbl), (SAMPLE_LIMIT,))
                samples = [{"pk": r[0], "value": r[1], "normalised": r[2]} for r in cur.fetchall()]
            raw["normalising"].append({"table": label, "column": c["column"], "count": n, "samples": samples})
            if _is_unique_column(facts_pk[key], c["column"]):
                cur.execute(sql.SQL("SELECT {2}, array_agg({1}::text ORDER BY {1}::text) FROM {0} WHERE {1} IS NOT NULL "
                                    "GROUP BY 1 HAVING count(DISTINCT {1}::text) > 1 LIMIT %s").format(tbl, col, norm),
                            (SAMPLE_LIMIT,))
                rows = cur.fetchall()
                raw["collisions"].append({"table": label, "column": c["column"], "type": c["type"], "count": len(rows),
                                          "samples": [{"normalised": r[0], "values": list(r[1])} for r in rows]})
    raw["bad_columns"] = sorted(bad_cols)
    if not bad_cols and not any(x["count"] for x in raw["collisions"]):
        for fk in plan["foreign_keys"]:
            if fk["state"] == "valid":
                continue
            found = find_orphans(cur, plan, fk, limit=SAMPLE_LIMIT)
            raw["orphans"].append({"fk": fk["name"], "table": qualified(fk["schema"], fk["table"]),
                                   "count": found["count"], "samples": found["samples"]})
            if orphans_found is not None:
                orphans_found[fk["name"]] = found["pks"]
    return raw


def _is_unique_column(t, column):
    return any(i["unique"] and i["columns"] == [column] for i in t["indexes"])


def _invalid_values(cur, change, tbl, col, pk, server_version_num):
    """Rows whose value does not convert with the exact cast that will run."""
    pkj = pk_json(pk, "t")
    target = change["type"]
    if not change["using"] and server_version_num >= 160000:
        cond = sql.SQL("t.{0} IS NOT NULL AND NOT pg_input_is_valid(t.{0}::text, %s)").format(col)
        return _count_and_sample(cur, tbl, pkj, col, cond, (target,))
    if not change["using"] and is_uuid_target(target):
        # Regex of what uuid_in accepts; accepted rows are really cast in the same statement.
        cur.execute(sql.SQL("SELECT count(*), count(CASE WHEN t.{0}::text ~ %s THEN CAST(t.{0} AS uuid) END) "
                            "FROM {1} t WHERE t.{0} IS NOT NULL").format(col, tbl), (UUID_REGEX,))
        total, accepted = cur.fetchone()
        if total == accepted:  # every value matched the regex and was cast: nothing to list
            return {"count": 0, "samples": [], "method": "uuid regex + server cast of each rejected value"}
        cur.execute(sql.SQL("SELECT {0}, t.{1}::text FROM {2} t WHERE t.{1} IS NOT NULL AND NOT (t.{1}::text ~ %s) "
                            "LIMIT %s").format(pkj, col, tbl), (UUID_REGEX, SCAN_CAP))
        rejected = cur.fetchall()
        confirmed = [r for r in rejected if not _server_casts(cur, r[1], sql.SQL("uuid"))]
        count = len(confirmed)
        if len(rejected) == SCAN_CAP:
            cur.execute(sql.SQL("SELECT count(*) FROM {0} t WHERE t.{1} IS NOT NULL AND NOT (t.{1}::text ~ %s)").format(
                tbl, col), (UUID_REGEX,))
            count = max(count, cur.fetchone()[0])
        return {"count": count, "samples": [{"pk": r[0], "value": r[1]} for r in confirmed[:SAMPLE_LIMIT]],
                "method": "uuid regex + server cast of each rejected value"}
    limit = varchar_limit(target)
    if not change["using"] and limit is not None:
        cond = sql.SQL("length(t.{0}::text) > %s").format(col)
        return _count_and_sample(cur, tbl, pkj, col, cond, (limit,), method="length <= {0}".format(limit))
    if not change["using"] and target == "text":
        return {"count": 0, "samples": [], "method": "every value casts to text"}
    # Generic: the exact expression over every row; on error, find the offending values one by one.
    expr = cast_expr(change, sql.SQL("t.{0}").format(col), "t")
    cur.execute("SAVEPOINT pgsafe_cast")
    try:
        cur.execute(sql.SQL("SELECT count({0}) FROM {1} t").format(expr, tbl))
        cur.execute("RELEASE SAVEPOINT pgsafe_cast")
        return {"count": 0, "samples": [], "method": "full cast in a savepoint"}
    except psycopg2.Error as exc:
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast")
        if getattr(exc, "pgcode", None) in ("57014", "55P03", "40P01"):  # a timeout says nothing about values
            raise
        first_error = str(exc).strip().splitlines()[0]
    cur.execute(sql.SQL("SELECT {0}, t.{1}::text FROM {2} t LIMIT %s").format(pkj, col, tbl), (SCAN_CAP * 10,))
    bad = []
    for pkv, value in cur.fetchall():
        cur.execute("SAVEPOINT pgsafe_cast")
        try:
            cur.execute(sql.SQL("SELECT {0} FROM {1} t WHERE {2} = %s::jsonb").format(
                expr, tbl, pk_json(pk, "t")), (json.dumps(pkv),))
            cur.execute("RELEASE SAVEPOINT pgsafe_cast")
        except psycopg2.Error:
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast")
            bad.append({"pk": pkv, "value": value})
    return {"count": max(len(bad), 1), "samples": bad[:SAMPLE_LIMIT] or [{"pk": None, "value": first_error}],
            "method": "full cast in a savepoint, then per row"}


def _server_casts(cur, value, type_sql):
    cur.execute("SAVEPOINT pgsafe_cast")
    try:
        cur.execute(sql.SQL("SELECT CAST(%s::text AS {0})").format(type_sql), (value,))
        cur.execute("RELEASE SAVEPOINT pgsafe_cast")
        return True
    except psycopg2.Error:
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_cast")
        return False


def _count_and_sample(cur, tbl, pkj, col, cond, params, method="pg_input_is_valid"):
    cur.execute(sql.SQL("SELECT count(*) FROM {0} t WHERE {1}").format(tbl, cond), params)
    n = cur.fetchone()[0]
    samples = []
    if n:
        cur.execute(sql.SQL("SELECT {0}, t.{1}::text FROM {2} t WHERE {3} LIMIT %s").format(pkj, col, tbl, cond),
                    tuple(params) + (SAMPLE_LIMIT,))
        samples = [{"pk": r[0], "value": r[1]} for r in cur.fetchall()]
    return {"count": n, "samples": samples, "method": method}


def find_orphans(cur, plan, fk, limit=None):
    """Child rows of a declared FK with no parent, comparing the values AFTER the planned casts."""
    facts = plan["_facts"]["tables"]
    child = (fk["schema"], fk["table"])
    parent = (fk["ref_schema"], fk["ref_table"])
    pk = facts[child]["pk"] or fk["columns"]
    conds = [sql.SQL("{0} = {1}").format(
        after_value(plan["changes"], parent[0], parent[1], rc, "p"),
        after_value(plan["changes"], child[0], child[1], c, "c"))
        for c, rc in zip(fk["columns"], fk["ref_columns"], strict=True)]
    notnull = sql.SQL(" AND ").join(sql.SQL("c.{0} IS NOT NULL").format(sql.Identifier(c)) for c in fk["columns"])
    q = sql.SQL("SELECT {0} FROM {1} c WHERE {2} AND NOT EXISTS (SELECT 1 FROM {3} p WHERE {4})").format(
        pk_json(pk, "c"), _ident(*child), notnull, _ident(*parent), sql.SQL(" AND ").join(conds))
    cur.execute(q)
    rows = [r[0] for r in cur.fetchall()]
    return {"count": len(rows), "samples": [{"pk": r} for r in (rows[:limit] if limit else rows)], "pks": rows}


def dependents_of(cur, plan, edge, parent_pks):
    """Rows of edge's child table referencing the given parent rows (values compared after the casts)."""
    facts = plan["_facts"]["tables"]
    child = (edge["schema"], edge["table"])
    parent = (edge["ref_schema"], edge["ref_table"])
    pk = facts[child]["pk"]
    conds = [sql.SQL("{0} = {1}").format(
        after_value(plan["changes"], parent[0], parent[1], rc, "p"),
        after_value(plan["changes"], child[0], child[1], c, "c"))
        for c, rc in zip(edge["columns"], edge["ref_columns"], strict=True)]
    ppk = facts[parent]["pk"]
    q = sql.SQL("SELECT {0} FROM {1} c WHERE EXISTS (SELECT 1 FROM {2} p WHERE {3} AND ({4}) IN "
                "(SELECT {5} FROM jsonb_populate_recordset(NULL::{2}, %s::jsonb) x))").format(
        pk_json(pk, "c"), _ident(*child), _ident(*parent), sql.SQL(" AND ").join(conds),
        sql.SQL(", ").join(sql.SQL("p.{0}").format(sql.Identifier(c)) for c in ppk),
        sql.SQL(", ").join(sql.SQL("x.{0}").format(sql.Identifier(c)) for c in ppk))
    cur.execute(q, (json.dumps(parent_pks),))
    return [r[0] for r in cur.fetchall()]


def quarantine_set(cur, plan, orphans_found=None):
    """Orphans of every declared FK plus every row depending on them (closure over declared + existing FKs).

    Returns an ordered list [(table key, reason, [pk dicts])] in removal order (children before parents).
    ``orphans_found``: what precheck found per FK in the SAME transaction (not scanned again).
    """
    facts = plan["_facts"]["tables"]
    chosen = {}  # key -> {json(pk): (pk, reason)}
    order = []

    def add(key, pks, reason):
        bucket = chosen.setdefault(key, {})
        if key not in order:
            order.append(key)
        new = []
        for p in pks:
            k = json.dumps(p, sort_keys=True)
            if k not in bucket:
                bucket[k] = (p, reason)
                new.append(p)
        return new

    frontier = []
    for fk in plan["foreign_keys"]:
        if fk["state"] == "valid":
            continue
        key = (fk["schema"], fk["table"])
        if not facts[key]["pk"]:
            raise TypeChangeError("table {0} has orphans for {1} but no primary key to quarantine them by: add one"
                                  .format(qualified(*key), fk["name"]))
        found = (orphans_found or {}).get(fk["name"])
        if found is None:
            found = find_orphans(cur, plan, fk)["pks"]
        new = add(key, found, "orphan: no parent in {0} for foreign key {1}".format(
            qualified(fk["ref_schema"], fk["ref_table"]), fk["name"]))
        if new:
            frontier.append((key, new))
    edges = [f for f in plan["foreign_keys"]] + [
        e for e in plan["_facts"]["fks"] if not any(e["name"] == f["name"] and e["table"] == f["table"]
                                                    for f in plan["foreign_keys"])]
    while frontier:
        key, pks = frontier.pop(0)
        for e in edges:
            if (e["ref_schema"], e["ref_table"]) != key:
                continue
            ckey = (e["schema"], e["table"])
            if ckey not in facts:
                raise TypeChangeError("rows of {0} reference quarantined rows of {1} but {0} was not inspected: "
                                      "declare it in the plan".format(qualified(*ckey), qualified(*key)))
            if not facts[ckey]["pk"]:
                raise TypeChangeError("table {0} depends on quarantined rows but has no primary key".format(
                    qualified(*ckey)))
            deps = dependents_of(cur, plan, e, pks)
            new = add(ckey, deps, "depends on quarantined row of {0} via {1}".format(qualified(*key), e["name"]))
            if new:
                frontier.append((ckey, new))
    ranked = removal_order(order, edges)
    return [(k, [v[0] for v in chosen[k].values()], sorted({v[1] for v in chosen[k].values()}))
            for k in ranked if chosen[k]]


def removal_order(keys, edges):
    """Tables in the order their rows can be removed: every referencing table before the tables it references
    (restore runs the reverse: parents first)."""
    parents = {k: {(e["ref_schema"], e["ref_table"]) for e in edges if (e["schema"], e["table"]) == k}
               & set(keys) - {k} for k in keys}
    placed = []
    while len(placed) < len(keys):
        ready = [k for k in keys if k not in placed and parents[k] <= set(placed)]
        placed.append(ready[0] if ready else next(k for k in keys if k not in placed))  # a cycle: keep going
    return list(reversed(placed))


def quarantine_rows(cur, plan, qset, run_id):
    """Move rows into pgsafe.quarantine_row and delete them, in the caller's transaction.

    Returns per-table {rows, hash sum (planned casts applied)} of what was moved.
    """
    facts = plan["_facts"]["tables"]
    moved = {}
    for key, pks, reasons in qset:
        t = facts[key]
        cols = list(t["columns"])
        match = sql.SQL("({0}) IN (SELECT {1} FROM jsonb_populate_recordset(NULL::{2}, %s::jsonb) x)").format(
            sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(c)) for c in t["pk"]),
            sql.SQL(", ").join(sql.SQL("x.{0}").format(sql.Identifier(c)) for c in t["pk"]), _ident(*key))
        h = table_hash(cur, key[0], key[1], cols, plan["changes"], where=match, params=(json.dumps(pks),))
        reason = "; ".join(reasons)
        cur.execute(sql.SQL("""WITH moved AS (DELETE FROM {0} AS t WHERE {1} RETURNING t.*)
            INSERT INTO pgsafe.quarantine_row (run_id, source_schema, source_table, source_pk, reason, row_data,
                                               row_sha256)
            SELECT %s, %s, %s, {2}, %s, to_jsonb(m), encode(sha256(convert_to(to_jsonb(m)::text, 'UTF8')), 'hex')
              FROM moved m""").format(_ident(*key), match, pk_json(t["pk"], "m")),
            (json.dumps(pks), run_id, key[0], key[1], reason))
        if cur.rowcount != h["rows"]:
            raise TypeChangeError("quarantine of {0}: {1} rows copied but {2} expected: rolled back".format(
                qualified(*key), cur.rowcount, h["rows"]))
        moved[qualified(*key)] = dict(h, reason=reason, pks=pks[:SAMPLE_LIMIT])
    return moved


def restore_quarantine(cur, run_id, tables=None):
    """Put a run's quarantined rows back, parents first; verify each restored row hash-identical.

    Runs in the caller's transaction (commit after).  Returns {table: rows restored}.
    """
    cur.execute("SELECT id, source_schema, source_table, row_data, row_sha256 FROM pgsafe.quarantine_row "
                "WHERE run_id = %s AND restored_at IS NULL ORDER BY id DESC", (run_id,))
    rows = cur.fetchall()
    restored = {}
    for qid, schema, table, data, digest in rows:
        if tables and qualified(schema, table) not in tables and "{0}.{1}".format(schema, table) not in tables:
            continue
        cur.execute("SAVEPOINT pgsafe_restore")
        try:
            cur.execute(sql.SQL("INSERT INTO {0} SELECT (jsonb_populate_record(NULL::{0}, %s::jsonb)).* "
                                "RETURNING encode(sha256(convert_to(to_jsonb({1})::text, 'UTF8')), 'hex')").format(
                _ident(schema, table), sql.Identifier(table)), (json.dumps(data),))
            got = cur.fetchone()[0]
            cur.execute("RELEASE SAVEPOINT pgsafe_restore")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_restore")
            raise TypeChangeError("cannot restore quarantined row {0} of {1}: {2}. If a foreign key rejects it, run "
                                  "the change's rollback SQL first (it drops the new FKs) or restore the missing "
                                  "parent".format(qid, qualified(schema, table), str(exc).strip().splitlines()[0])) from None
        if got != digest:
            raise TypeChangeError("restored row {0} of {1} differs from the quarantined copy (sha256 {2} != {3}): "
                                  "rolled back".format(qid, qualified(schema, table), got, digest))
        cur.execute("UPDATE pgsafe.quarantine_row SET restored_at = now() WHERE id = %s", (qid,))
        restored[qualified(schema, table)] = restored.get(qualified(schema, table), 0) + 1
    return restored


# --------------------------------------------------------------------------- locks and retries
RETRYABLE = ("55P03", "40P01")  # lock_not_available, deadlock_detected


def run_with_retries(conn, work, retries, backoff, backoff_max, attempts_log, what):
    """Run work(cur) in a transaction; on lock timeout/deadlock roll back, sleep, retry; then fail closed."""
    delays = backoff_delays(retries, backoff, backoff_max)
    for attempt in range(retries + 1):
        started = time.monotonic()
        wall = time.time()
        try:
            with conn.cursor() as cur:
                result = work(cur)
            conn.commit()
            attempts_log.append({"step": what, "attempt": attempt + 1, "outcome": "ok", "started_at": round(wall, 3),
                                 "seconds": round(time.monotonic() - started, 3)})
            return result
        except psycopg2.Error as exc:
            conn.rollback()
            code = getattr(exc, "pgcode", None)
            attempts_log.append({"step": what, "attempt": attempt + 1, "outcome": code or "error",
                                 "started_at": round(wall, 3), "seconds": round(time.monotonic() - started, 3),
                                 "error": str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)})
            if code not in RETRYABLE:
                raise
            if attempt == retries:
                raise LockRetriesExhausted(
                    "{0}: the lock was not obtained within lock_timeout on {1} attempt(s); failed closed, nothing "
                    "changed. Find the blocking session (pg_stat_activity / pg_locks), or retry in a quieter window "
                    "/ raise retries".format(what, retries + 1), attempts=list(attempts_log)) from None
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


LOCK_MODES = ("ACCESS EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE")


def lock_tables(cur, keyed_modes):
    """LOCK TABLE each (key, mode), in the given order (waits at most lock_timeout each)."""
    for stmt in lock_statements(keyed_modes):
        cur.execute(stmt)


# --------------------------------------------------------------------------- DDL pieces
def _fk_sql(fk, not_valid=True):
    if fk.get("recreate"):  # an existing FK put back as it was: the server's own definition text
        body = sql.SQL(fk["definition"])
    else:
        body = sql.SQL("FOREIGN KEY ({0}) REFERENCES {1} ({2}) ON DELETE {3} ON UPDATE {4}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in fk["columns"]), _ident(fk["ref_schema"], fk["ref_table"]),
            sql.SQL(", ").join(sql.Identifier(c) for c in fk["ref_columns"]), sql.SQL(fk_action(fk["on_delete"])),
            sql.SQL(fk_action(fk["on_update"])))
    return sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} {2}{3}").format(
        _ident(fk["schema"], fk["table"]), sql.Identifier(fk["name"]), body, sql.SQL(" NOT VALID" if not_valid else ""))


def drop_fk_statements(plan):
    return [sql.SQL("ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1}").format(
        _ident(f["schema"], f["table"]), sql.Identifier(f["name"])) for f in plan["drop_fks"]]


def add_fk_statements(plan):
    """(name, statement) of every FK added NOT VALID: the existing ones put back, then the declared ones."""
    out = [(f["name"], _fk_sql(f)) for f in plan["drop_fks"] if f["recreate"]]
    out += [(f["name"], _fk_sql(dict(f, recreate=False))) for f in plan["foreign_keys"]
            if f["state"] in ("missing", "different", "recreate")]
    return out


def drop_view_statements(plan):
    return [sql.SQL("DROP VIEW {0}").format(_ident(v["schema"], v["name"])) for v in plan["views"]]


def recreate_view_statements(plan):
    stmts = []
    for v in plan["views"]:
        name = _ident(v["schema"], v["name"])
        with_opts = sql.SQL("")
        if v["options"]:
            opts = []
            for o in v["options"]:
                k, _, val = o.partition("=")
                opts.append(sql.SQL("{0} = {1}").format(sql.Identifier(k), sql.Literal(val)))
            with_opts = sql.SQL(" WITH ({0})").format(sql.SQL(", ").join(opts))
        stmts.append(sql.SQL("CREATE VIEW {0}{1} AS ").format(name, with_opts)
                     + sql.SQL(v["definition"].rstrip().rstrip(";")))
        stmts.append(sql.SQL("ALTER VIEW {0} OWNER TO {1}").format(name, sql.Identifier(v["owner"])))
        if v["comment"] is not None:
            stmts.append(sql.SQL("COMMENT ON VIEW {0} IS {1}").format(name, sql.Literal(v["comment"])))
        for grantee, priv, grantable in v.get("grants", []):
            stmts.append(sql.SQL("GRANT {0} ON {1} TO {2}{3}").format(
                sql.SQL(priv), name, sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee),
                sql.SQL(" WITH GRANT OPTION" if grantable else "")))
    return stmts


def validate_fk_statements(plan):
    """(name, statement) of every VALIDATE CONSTRAINT, in order."""
    names = [(f["schema"], f["table"], f["name"]) for f in plan["drop_fks"] if f["recreate"]]
    names += [(f["schema"], f["table"], f["name"]) for f in plan["foreign_keys"] if f["state"] != "valid"]
    return [(name, sql.SQL("ALTER TABLE {0} VALIDATE CONSTRAINT {1}").format(_ident(schema, table),
                                                                          sql.Identifier(name)))
            for schema, table, name in names]


def lock_statements(keyed_modes):
    for _key, mode in keyed_modes:
        if mode not in LOCK_MODES:
            raise TypeChangeError("unknown lock mode {0!r}".format(mode))
    return [sql.SQL("LOCK TABLE {0} IN " + mode + " MODE").format(_ident(*key)) for key, mode in keyed_modes]


def drop_fks(cur, plan):
    for stmt in drop_fk_statements(plan):
        cur.execute(stmt)


def add_fks_not_valid(cur, plan):
    added = []
    for name, stmt in add_fk_statements(plan):
        cur.execute(stmt)
        added.append(name)
    return added


def drop_views(cur, plan):
    for stmt in drop_view_statements(plan):
        cur.execute(stmt)


def recreate_views(cur, plan):
    for stmt in recreate_view_statements(plan):
        cur.execute(stmt)


def validate_fks(conn, plan, settings_cb, attempts, retries, backoff, backoff_max, on_failure=None):
    """VALIDATE each FK added NOT VALID (SHARE UPDATE EXCLUSIVE: writes continue)."""
    done = []
    for name, stmt in validate_fk_statements(plan):
        def work(cur, stmt=stmt):
            settings_cb(cur)
            cur.execute(stmt)
        try:
            run_with_retries(conn, work, retries, backoff, backoff_max, attempts, "validate " + name)
        except psycopg2.errors.ForeignKeyViolation:
            if on_failure is None:
                raise
            on_failure(name)
            run_with_retries(conn, work, retries, backoff, backoff_max, attempts, "validate " + name + " (after rescan)")
        done.append(name)
    return done


def set_defaults_sql(change):
    tbl = _ident(change["schema"], change["table"])
    col = sql.Identifier(change["column"])
    if change["set_default"]:
        if change["default"]:
            return [sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2}").format(tbl, col, sql.SQL(change["default"]))]
        return [sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT").format(tbl, col)]
    return []


def rewrite_statements(plan):
    """ALTER TABLE statements of the rewrite: one per table, every changed column of it in one rewrite."""
    by_table = {}
    for c in plan["changes"]:
        if c["needs_type"] or c["needs_default"] or c["needs_not_null"]:
            by_table.setdefault((c["schema"], c["table"]), []).append(c)
    stmts = []
    for key, cols in by_table.items():
        actions = []
        for c in cols:
            col = sql.Identifier(c["column"])
            if c["needs_type"]:
                if c["default_before"] and c["set_default"]:
                    actions.append(sql.SQL("ALTER COLUMN {0} DROP DEFAULT").format(col))
                if c["using"]:
                    using = sql.SQL(" USING ({0})").format(sql.SQL(c["using"]))
                elif varchar_limit(c["type"]) is not None or c["type"] == "text":
                    using = sql.SQL("")  # assignment cast: an overlong value errors instead of truncating
                else:
                    using = sql.SQL(" USING CAST({0} AS {1})").format(col, _type_sql(c["type"]))
                actions.append(sql.SQL("ALTER COLUMN {0} TYPE {1}{2}").format(col, _type_sql(c["type"]), using))
            if c["needs_not_null"]:
                actions.append(sql.SQL("ALTER COLUMN {0} SET NOT NULL").format(col))
        stmts.append(sql.SQL("ALTER TABLE {0} ").format(_ident(*key)) + sql.SQL(", ").join(actions))
        for c in cols:
            if c["needs_type"] or c["needs_default"]:
                stmts += set_defaults_sql(c)
    return stmts


# --------------------------------------------------------------------------- apply
def online_check_name(column):
    return derived_name(column, suffix="pgsafe_nn")


def trigger_function_name(table_oid):
    return "typechange_sync_{0}".format(table_oid)


TRIGGER_NAME = "pgsafe_typechange_sync"


def unit_lock_plan(plan):
    """(table, mode) in a fixed order.  Tables whose rows or columns change: ACCESS EXCLUSIVE; tables only
    referenced by an FK being added: SHARE ROW EXCLUSIVE (what ADD FOREIGN KEY takes; reads continue)."""
    strong = {(c["schema"], c["table"]) for c in plan["changes"]
              if c["needs_type"] or c["needs_default"] or c["needs_not_null"]}
    strong |= {(f["schema"], f["table"]) for f in plan["foreign_keys"] if f["state"] != "valid"}
    strong |= {(f["schema"], f["table"]) for f in plan["drop_fks"]}
    keys = sorted(plan["touched_keys"])
    return [(k, "ACCESS EXCLUSIVE" if k in strong else "SHARE ROW EXCLUSIVE") for k in keys]


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
    add([st for _n, st in validate_fk_statements(plan)], "SHARE UPDATE EXCLUSIVE", transactional=False)
    return out


class Runner:
    """Applies a plan on a live connection (autocommit off), journaling each step."""

    def __init__(self, conn, plan, run_id, orphan_policy="fail", lock_timeout="3s", statement_timeout=None,
                 retries=3, backoff=0.5, backoff_max=5.0, batch_size=5000, throttle_ms=0, verify=True,
                 progress=None, batch_target_ms=100):
        self.conn, self.plan, self.run_id = conn, plan, run_id
        self.orphan_policy = orphan_policy
        self.lock_timeout, self.statement_timeout = lock_timeout, statement_timeout
        self.retries, self.backoff, self.backoff_max = retries, backoff, backoff_max
        self.batch_size, self.throttle_ms, self.verify = batch_size, throttle_ms, verify
        self.batch_target_ms = batch_target_ms
        self.attempts, self.moved, self.events = [], {}, []
        self.progress = progress or (lambda msg: None)
        self.facts = plan["_facts"]["tables"]
        self.rollback = rollback_sql(plan, run_id)
        self.counts = {}

    # -- plumbing
    def settings(self, cur):
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (str(self.lock_timeout),))
        if self.statement_timeout:
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(self.statement_timeout),))

    def journal(self, step, status, obj=None, details=None, rollback=None, cur=None):
        from ansible.module_utils.pgsafe_meta import journal as write
        if cur is not None:
            write(cur, self.run_id, step, status, obj, details, rollback)
            return
        with self.conn.cursor() as c:
            write(c, self.run_id, step, status, obj, details, rollback)
        self.conn.commit()

    def txn(self, what, work):
        def wrapped(cur):
            self.settings(cur)
            return work(cur)
        return run_with_retries(self.conn, wrapped, self.retries, self.backoff, self.backoff_max, self.attempts, what)

    def changed_tables(self):
        out = []
        for c in self.plan["changes"]:
            key = (c["schema"], c["table"])
            if (c["needs_type"] or c["needs_default"] or c["needs_not_null"]) and key not in out:
                out.append(key)
        return out

    def lock_plan(self):
        return unit_lock_plan(self.plan)

    def hash_tables(self, cur, keys, after=False):
        return {qualified(*k): table_hash(cur, k[0], k[1], list(self.facts[k]["columns"]), self.plan["changes"],
                                          after=after) for k in keys}

    def quarantine(self, cur):
        qset = quarantine_set(cur, self.plan)
        if not qset:
            return {}
        if self.orphan_policy != "quarantine":
            listing = "; ".join("{0}: {1} row(s) ({2}) e.g. {3}".format(
                qualified(*k), len(p), "; ".join(r), json.dumps(p[:5], sort_keys=True)) for k, p, r in qset)
            raise TypeChangeError("orphan rows found and orphan_policy is fail: " + listing +
                                  ". Fix the data or set orphan_policy: quarantine; nothing changed")
        moved = quarantine_rows(cur, self.plan, qset, self.run_id)
        for name, m in moved.items():
            prev = self.moved.get(name, {"rows": 0, "sum": "0"})
            self.moved[name] = dict(m, rows=prev["rows"] + m["rows"], sum=str(int(prev["sum"]) + int(m["sum"])))
        return moved

    def rescan_and_quarantine(self, fk_name):
        self.events.append("VALIDATE of {0} found rows inserted after the scan: re-scan".format(fk_name))
        self.txn("quarantine (rescan after {0})".format(fk_name), self.quarantine)

    def validate(self):
        done = validate_fks(self.conn, self.plan, self.settings, self.attempts, self.retries, self.backoff,
                            self.backoff_max, on_failure=self.rescan_and_quarantine)
        for name in done:
            self.journal("fk:validate", "completed", name)
        return done

    # -- rewrite: one transaction under ACCESS EXCLUSIVE locks
    def rewrite(self):
        self.journal("typechange:rewrite", "started", ",".join(self.plan["touched_tables"]),
                     {"steps": self.plan["steps"]})

        def work(cur):
            lock_tables(cur, self.lock_plan())
            keys = self.changed_tables()
            before = self.hash_tables(cur, keys) if self.verify else {}
            moved = self.quarantine(cur)
            for name in moved:
                key = split_qualified(name)
                if self.verify and name not in before:
                    before[name] = table_hash(cur, key[0], key[1], list(self.facts[key]["columns"]),
                                              self.plan["changes"])
                    before[name]["rows"] += moved[name]["rows"]
                    before[name]["sum"] = str(int(before[name]["sum"]) + int(moved[name]["sum"]))
            drop_fks(cur, self.plan)
            drop_views(cur, self.plan)
            for stmt in rewrite_statements(self.plan):
                cur.execute(stmt)
            recreate_views(cur, self.plan)
            added = add_fks_not_valid(cur, self.plan)
            if self.verify:
                after = {}
                for name in before:
                    key = split_qualified(name)
                    after[name] = table_hash(cur, key[0], key[1], list(self.facts[key]["columns"]), self.plan["changes"],
                                             after=True)
                self.check_content(before, after, moved)
            self.journal("typechange:rewrite", "completed", ",".join(self.plan["touched_tables"]),
                         {"fks_added_not_valid": added, "quarantined": {k: v["rows"] for k, v in moved.items()}},
                         self.rollback, cur=cur)
            return added

        try:
            self.txn("type change (rewrite)", work)
        except Exception as exc:
            self._journal_failure("typechange:rewrite", exc)
            raise
        return self.validate()

    def check_content(self, before, after, moved):
        for name, b in before.items():
            a = after[name]
            m = moved.get(name, {"rows": 0, "sum": "0"})
            self.counts[name] = {"before": b["rows"], "after": a["rows"], "quarantined": m["rows"]}
            if b["rows"] != a["rows"] + m["rows"] or int(b["sum"]) != int(a["sum"]) + int(m["sum"]):
                raise TypeChangeError("content check failed on {0}: before {1} rows (hash {2}) != after {3} + "
                                      "quarantined {4} (hash {5} + {6}); rolled back".format(
                                          name, b["rows"], b["sum"], a["rows"], m["rows"], a["sum"], m["sum"]))

    def _journal_failure(self, step, exc):
        try:
            self.conn.rollback()
            self.journal(step, "failed", None, {"error": str(exc).strip()[:2000]})
        except Exception as err:  # noqa: BLE001 - the connection may be gone (terminated backend); the server rolled back
            self.events.append("could not journal the failure: {0}".format(str(err).strip()[:200]))

    # -- online: shadow column + trigger + batched backfill + short swap
    def online(self):
        conv = [c for c in self.plan["changes"] if c["needs_type"]]
        other = [c for c in self.plan["changes"] if not c["needs_type"] and (c["needs_default"] or c["needs_not_null"])]
        if other:
            raise TypeChangeError("online strategy: default/NOT NULL-only changes ({0}) must use strategy rewrite"
                                  .format(", ".join(c["column"] for c in other)))
        by_table = {}
        for c in conv:
            by_table.setdefault((c["schema"], c["table"]), []).append(c)
        self.journal("typechange:online", "started", ",".join(self.plan["touched_tables"]), {"steps": self.plan["steps"]})
        try:
            for key, cols in by_table.items():
                self.txn("add shadow columns and sync trigger on " + qualified(*key),
                         lambda cur, key=key, cols=cols: self._shadow(cur, key, cols))
                self.journal("online:shadow", "completed", qualified(*key))
            for key, cols in by_table.items():
                self._backfill(key, cols)
            for key, cols in by_table.items():
                self._shadow_indexes(key, cols)
                self._not_null_checks(key, cols)
            for key, cols in by_table.items():
                self._verify_backfill(key, cols)
            self.journal("online:backfill", "completed", ",".join(qualified(*k) for k in by_table))
            self.txn("quarantine orphans", self.quarantine)
            self.txn("swap", lambda cur: self._swap(cur, by_table))
            with self.conn.cursor() as cur:  # counted after the swap, outside its lock (writes may have added rows)
                for key in by_table:
                    cur.execute(sql.SQL("SELECT count(*) FROM {0}").format(_ident(*key)))
                    entry = self.counts.setdefault(qualified(*key), {})
                    entry["after"] = cur.fetchone()[0]
                    entry["quarantined"] = self.moved.get(qualified(*key), {}).get("rows", 0)
            self.conn.commit()
        except Exception as exc:
            self._journal_failure("typechange:online", exc)
            raise
        return self.validate()

    def _new_expr(self, c, row_alias):
        ref = sql.SQL("{0}.{1}").format(sql.SQL(row_alias), sql.Identifier(c["column"]))
        if c["using"]:
            return sql.SQL("(SELECT ({0}) FROM (SELECT {1}.*) AS s)").format(sql.SQL(c["using"]), sql.SQL(row_alias))
        if varchar_limit(c["type"]) is not None or c["type"] == "text":
            return ref
        return sql.SQL("CAST({0} AS {1})").format(ref, _type_sql(c["type"]))

    def _shadow(self, cur, key, cols):
        tbl = _ident(*key)
        for c in cols:
            cur.execute(sql.SQL("ALTER TABLE {0} ADD COLUMN IF NOT EXISTS {1} {2}").format(
                tbl, sql.Identifier(c["new_column"]), _type_sql(c["type"])))
        fname = _ident("pgsafe", trigger_function_name(self.facts[key]["oid"]))
        body = sql.SQL("BEGIN\n{0}\nRETURN NEW;\nEND").format(sql.SQL("\n").join(
            sql.SQL("NEW.{0} := {1};").format(sql.Identifier(c["new_column"]), self._new_expr(c, "NEW")) for c in cols))
        cur.execute(sql.SQL("CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS {1}").format(
            fname, sql.Literal(body.as_string(cur))))
        cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(TRIGGER_NAME), tbl))
        cur.execute(sql.SQL("CREATE TRIGGER {0} BEFORE INSERT OR UPDATE ON {1} FOR EACH ROW EXECUTE FUNCTION {2}()")
                    .format(sql.Identifier(TRIGGER_NAME), tbl, fname))

    def _backfill(self, key, cols):
        tbl = _ident(*key)
        pk = self.facts[key]["pk"]
        pkl = sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk)
        sets = sql.SQL(", ").join(sql.SQL("{0} = {1}").format(sql.Identifier(c["new_column"]), self._new_expr(c, "t"))
                                  for c in cols)
        differs = sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM {1}").format(
            sql.Identifier(c["new_column"]), self._new_expr(c, "t")) for c in cols)
        join = sql.SQL(" AND ").join(sql.SQL("t.{0} = b.{0}").format(sql.Identifier(p)) for p in pk)
        last, total, batches, started = None, 0, 0, time.monotonic()
        size = min(self.batch_size, 500) if self.batch_target_ms else self.batch_size
        while True:
            if last is None:
                where = sql.SQL("true")
                params = ()
            else:
                where = sql.SQL("({0}) > (SELECT {1} FROM jsonb_populate_record(NULL::{2}, %s::jsonb) l)").format(
                    pkl, sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk), tbl)
                params = (json.dumps(last),)
            q = sql.SQL("""WITH b AS (SELECT {0} FROM {1} t WHERE {2} ORDER BY {0} LIMIT %s),
                              u AS (UPDATE {1} t SET {3} FROM b WHERE {4} AND ({5}) RETURNING 1)
                           SELECT (SELECT to_jsonb(z) FROM (SELECT * FROM b ORDER BY {6} DESC LIMIT 1) z),
                                  (SELECT count(*) FROM b), (SELECT count(*) FROM u)""").format(
                pkl, tbl, where, sets, join, differs,
                sql.SQL(", ").join(sql.Identifier(p) for p in pk))

            def work(cur, q=q, params=params, size=size):
                cur.execute(q, params + (size,))
                return cur.fetchone()
            t0 = time.monotonic()
            last_row, seen, updated = self.txn("backfill " + qualified(*key), work)
            took_ms = (time.monotonic() - t0) * 1000
            full = seen >= size
            if self.batch_target_ms:  # a batch holds its rows' locks until it commits: keep it under the budget
                if took_ms > self.batch_target_ms:
                    size = max(50, size // 2)
                elif took_ms < self.batch_target_ms / 2:
                    size = min(self.batch_size, int(size * 1.5) + 1)
            batches += 1
            total += updated
            if last_row is not None:
                last = last_row
            if batches % 20 == 0 or not full:
                msg = "{0}: {1} rows backfilled in {2} batches ({3:.1f}s)".format(qualified(*key), total, batches,
                                                                               time.monotonic() - started)
                self.progress(msg)
                self.journal("online:backfill:progress", "completed", qualified(*key),
                             {"rows": total, "batches": batches, "last_key": last, "batch_size": size})
            if not full:
                break
            if self.throttle_ms:
                time.sleep(self.throttle_ms / 1000.0)
        self.events.append("backfilled {0} rows of {1} in {2} batches".format(total, qualified(*key), batches))

    def _shadow_indexes(self, key, cols):
        tbl = _ident(*key)
        subst = {c["column"]: c["new_column"] for c in cols}
        old_autocommit = self.conn.autocommit
        self.conn.commit()
        self.conn.autocommit = True
        try:
            with self.conn.cursor() as cur:
                for idx in self.facts[key]["indexes"]:
                    if not any(c in subst for c in idx["columns"]):
                        continue
                    shadow = derived_name(idx["name"], suffix=NEW_SUFFIX)
                    cur.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                "WHERE c.relnamespace = %s::regnamespace AND c.relname = %s",
                                (sql.Identifier(key[0]).as_string(cur), shadow))
                    row = cur.fetchone()
                    if row is not None and row[0]:
                        continue
                    if row is not None:  # an invalid index left by an interrupted CONCURRENTLY build
                        self.events.append("dropped invalid index {0} and rebuilt it".format(shadow))
                        cur.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(_ident(key[0], shadow)))
                    create = sql.SQL("CREATE {0}INDEX CONCURRENTLY {1} ON {2} ({3})").format(
                        sql.SQL("UNIQUE " if idx["unique"] else ""), sql.Identifier(shadow), tbl,
                        sql.SQL(", ").join(sql.Identifier(subst.get(c, c)) for c in idx["columns"]))
                    # CONCURRENTLY waits for older transactions under SHARE UPDATE EXCLUSIVE, which does not block
                    # writers: a longer lock_timeout is harmless here; a failed build is dropped and retried.
                    cur.execute("SELECT set_config('lock_timeout', '60s', false)")
                    for attempt, delay in enumerate(backoff_delays(self.retries, self.backoff, self.backoff_max) + [None]):
                        try:
                            cur.execute(create)
                            break
                        except psycopg2.Error as exc:
                            self.attempts.append({"step": "create index " + shadow, "attempt": attempt + 1,
                                                  "outcome": getattr(exc, "pgcode", None) or "error"})
                            cur.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(_ident(key[0], shadow)))
                            if getattr(exc, "pgcode", None) not in RETRYABLE or delay is None:
                                raise
                            time.sleep(delay)
                    cur.execute("SELECT set_config('lock_timeout', %s, false)", (str(self.lock_timeout),))
                    self.journal("online:index", "completed", shadow)
        finally:
            self.conn.autocommit = old_autocommit

    def _not_null_checks(self, key, cols):
        tbl = _ident(*key)
        for c in cols:
            if not (c["notnull"] or c["not_null"]):
                continue
            name = online_check_name(c["column"])

            def add(cur, c=c, name=name):
                cur.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s AND conname = %s",
                            (self.facts[key]["oid"], name))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} CHECK ({2} IS NOT NULL) NOT VALID").format(
                        tbl, sql.Identifier(name), sql.Identifier(c["new_column"])))
            self.txn("add NOT NULL check on " + c["new_column"], add)
            self.txn("validate NOT NULL check on " + c["new_column"], lambda cur, name=name: cur.execute(
                sql.SQL("ALTER TABLE {0} VALIDATE CONSTRAINT {1}").format(tbl, sql.Identifier(name))))

    def _verify_backfill(self, key, cols):
        tbl = _ident(*key)
        cond = sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM {1}").format(
            sql.Identifier(c["new_column"]), self._new_expr(c, "t")) for c in cols)
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FILTER (WHERE {0}), count(*) FROM {1} t").format(cond, tbl))
            bad, n = cur.fetchone()
        self.conn.commit()
        if bad:
            raise TypeChangeError("{0}: {1} of {2} rows differ between the column and its shadow after the backfill; "
                                  "re-run to resume".format(qualified(*key), bad, n))
        self.counts.setdefault(qualified(*key), {})["before"] = n

    def _swap(self, cur, by_table):
        lock_tables(cur, self.lock_plan())
        drop_fks(cur, self.plan)
        drop_views(cur, self.plan)
        for key, cols in by_table.items():
            tbl = _ident(*key)
            t = self.facts[key]
            cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(TRIGGER_NAME), tbl))
            cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {0}()").format(
                _ident("pgsafe", trigger_function_name(t["oid"]))))
            names = {c["column"] for c in cols}
            affected = [i for i in t["indexes"] if any(c in names for c in i["columns"])]
            for idx in affected:
                if idx["constraint"]:
                    cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(tbl, sql.Identifier(idx["constraint"])))
            for c in cols:
                if c["notnull"] or c["not_null"]:
                    cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET NOT NULL").format(
                        tbl, sql.Identifier(c["new_column"])))
                    cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(
                        tbl, sql.Identifier(online_check_name(c["column"]))))
                cur.execute(sql.SQL("ALTER TABLE {0} DROP COLUMN {1}").format(tbl, sql.Identifier(c["column"])))
                cur.execute(sql.SQL("ALTER TABLE {0} RENAME COLUMN {1} TO {2}").format(
                    tbl, sql.Identifier(c["new_column"]), sql.Identifier(c["column"])))
                default = c["default"] if c["set_default"] else c["default_before"]
                if default:
                    cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2}").format(
                        tbl, sql.Identifier(c["column"]), sql.SQL(default)))
                if c["comment"] is not None:
                    cur.execute(sql.SQL("COMMENT ON COLUMN {0}.{1} IS {2}").format(
                        tbl, sql.Identifier(c["column"]), sql.Literal(c["comment"])))
            for idx in affected:
                shadow = derived_name(idx["name"], suffix=NEW_SUFFIX)
                if idx["constraint"]:
                    kind = "PRIMARY KEY" if idx["contype"] == "p" else "UNIQUE"
                    cur.execute(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} " + kind + " USING INDEX {2}").format(
                        tbl, sql.Identifier(idx["constraint"]), sql.Identifier(shadow)))
                    if idx["constraint"] != idx["name"]:
                        cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(
                            _ident(key[0], idx["constraint"]), sql.Identifier(idx["name"])))
                else:
                    cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(_ident(key[0], shadow),
                                                                               sql.Identifier(idx["name"])))
        recreate_views(cur, self.plan)
        added = add_fks_not_valid(cur, self.plan)
        self.journal("typechange:online", "completed", ",".join(self.plan["touched_tables"]),
                     {"fks_added_not_valid": added, "quarantined": {k: v["rows"] for k, v in self.moved.items()}},
                     self.rollback, cur=cur)
        return added


def ensure_typechange_schema(cur):
    """Nothing beyond pgsafe_meta's schema is needed; kept as the hook for later versions."""
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    return ensure_meta_schema(cur)
