# -*- coding: utf-8 -*-
"""Validation after a migration: foreign keys, orphans, invalid indexes, a CRUD probe, conformance.

Every check reads inside a ``READ ONLY`` transaction, except the CRUD probe, which writes inside a
transaction that is ALWAYS rolled back (with short lock and statement timeouts) and is skipped in
check mode.  Nothing a validation does is ever committed.  (PostgreSQL counts the probe's
attempted, rolled-back rows in ``pg_stat_user_tables.n_tup_ins/upd/del`` of the probed tables; the
data, the fingerprints and every other table's counters stay untouched.)

Each check returns ``{"check", "status": ok|failed|skipped, "summary", "items": [...]}``; a
validation fails when any check failed.

Plain Python; SQL built with psycopg2.sql.
"""
from __future__ import annotations

import uuid

from ansible.module_utils.pgsafe_fingerprint import table_key
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
ORPHAN_SAMPLE = 10


def _sql():
    from psycopg2 import sql
    return sql


def _check(name, status, summary, items=None):
    return {"check": name, "status": status, "summary": summary, "items": list(items or [])}


# --------------------------------------------------------------------------- foreign keys and orphans
def foreign_keys(cur, exclude_schemas=()):
    """Every FK of user tables: name, table, columns, ref_table, ref_columns, validated, match."""
    excluded = list(SYSTEM_SCHEMAS) + list(PRODUCT_SCHEMAS) + list(exclude_schemas or ())
    cur.execute(
        "SELECT con.conname, n.nspname, c.relname, rn.nspname, rc.relname, con.convalidated, con.confmatchtype, "
        "  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord) "
        "        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), "
        "  ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord) "
        "        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord) "
        "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace "
        "WHERE con.contype = 'f' AND n.nspname <> ALL (%s::text[]) AND NOT c.relispartition "
        "ORDER BY n.nspname, c.relname, con.conname", (excluded,))
    return [{"name": r[0], "schema": r[1], "table": r[2], "ref_schema": r[3], "ref_table": r[4], "validated": r[5],
             "match": r[6], "columns": list(r[7]), "ref_columns": list(r[8])} for r in cur.fetchall()]


def orphan_query(fk, count_only=True):
    """Rows of the child violating ``fk`` (MATCH SIMPLE: rows with a NULL key column are not checked)."""
    sql = _sql()
    notnull = sql.SQL(" AND ").join(sql.SQL("t.{0} IS NOT NULL").format(sql.Identifier(c)) for c in fk["columns"])
    match = sql.SQL(" AND ").join(sql.SQL("p.{0} = t.{1}").format(sql.Identifier(rc), sql.Identifier(c))
                                  for c, rc in zip(fk["columns"], fk["ref_columns"], strict=True))
    what = sql.SQL("count(*)") if count_only else sql.SQL("jsonb_build_object({0})").format(
        sql.SQL(", ").join(sql.SQL("{0}, t.{1}").format(sql.Literal(c), sql.Identifier(c)) for c in fk["columns"]))
    query = sql.SQL("SELECT {0} FROM {1}.{2} t WHERE {3} AND NOT EXISTS (SELECT 1 FROM {4}.{5} p WHERE {6})").format(
        what, sql.Identifier(fk["schema"]), sql.Identifier(fk["table"]), notnull, sql.Identifier(fk["ref_schema"]),
        sql.Identifier(fk["ref_table"]), match)
    if not count_only:
        query = sql.SQL("{0} LIMIT {1}").format(query, sql.Literal(ORPHAN_SAMPLE))
    return query


def check_foreign_keys(cur, exclude_schemas=()):
    """All FKs validated; every NOT VALID one scanned for orphans (count and a sample)."""
    fks = foreign_keys(cur, exclude_schemas)
    items, failed = [], 0
    for fk in fks:
        item = {"constraint": fk["name"], "table": table_key(fk["schema"], fk["table"]),
                "references": table_key(fk["ref_schema"], fk["ref_table"]),
                "columns": ", ".join(fk["columns"]), "validated": fk["validated"], "orphans": None, "sample": ""}
        if not fk["validated"]:
            failed += 1
            cur.execute(orphan_query(fk))
            item["orphans"] = cur.fetchone()[0]
            if item["orphans"]:
                cur.execute(orphan_query(fk, count_only=False))
                item["sample"] = "; ".join(str(r[0]) for r in cur.fetchall())
        items.append(item)
    not_valid = [i for i in items if not i["validated"]]
    orphans = sum(i["orphans"] or 0 for i in not_valid)
    if not_valid:
        summary = "{0} of {1} foreign keys NOT VALID ({2}); {3} orphan rows under them. Quarantine the orphans, " \
                  "then ALTER TABLE ... VALIDATE CONSTRAINT".format(
                      len(not_valid), len(fks), ", ".join(i["constraint"] for i in not_valid), orphans)
    else:
        summary = "all {0} foreign keys are validated".format(len(fks))
    return _check("foreign_keys", "failed" if failed else "ok", summary, not_valid or items)


def check_invalid_indexes(cur, exclude_schemas=()):
    excluded = list(SYSTEM_SCHEMAS) + list(PRODUCT_SCHEMAS) + list(exclude_schemas or ())
    cur.execute("SELECT n.nspname, t.relname, i.relname, pg_catalog.pg_get_indexdef(x.indexrelid), x.indisready "
                "FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_catalog.pg_class t ON t.oid = x.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
                "WHERE NOT x.indisvalid AND n.nspname <> ALL (%s::text[]) ORDER BY 1, 2, 3", (excluded,))
    items = [{"table": table_key(r[0], r[1]), "index": r[2], "definition": r[3], "ready": r[4]} for r in cur.fetchall()]
    if items:
        return _check("invalid_indexes", "failed", "{0} INVALID indexes (failed CREATE INDEX CONCURRENTLY?): drop "
                      "and rebuild them: {1}".format(len(items), ", ".join(i["index"] for i in items)), items)
    return _check("invalid_indexes", "ok", "no invalid index")


# --------------------------------------------------------------------------- CRUD probe
def _exists(cur, schema, table):
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table_key_quoted(schema, table),))
    return cur.fetchone()[0]


def table_key_quoted(schema, table):
    return '"{0}"."{1}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


def crud_probe(conn, schema="public", prefix="bazaar-vid_"):
    """Insert, read, update and delete with the code's types on the key tables; ALWAYS rolled back.

    user (varchar id) -> project (uuid) -> export (uuid id, user_id, project_id) -> analytics row
    (uuid export_id); read back with the code's join ``analytics.export_id = exports.id``; update
    the export; delete the project and expect the code's ON DELETE CASCADE to remove the export and
    its analytics.  Values are sent as untyped literals, so the probe also runs while a column is
    still text (the join then fails where the code's would, and is reported).
    """
    sql = _sql()
    t = {name: sql.SQL("{0}.{1}").format(sql.Identifier(schema), sql.Identifier(prefix + name))
         for name in ("user", "project", "exports", "export_analytics")}
    tag = uuid.uuid4().hex[:12]
    ids = {"user": "pgsafe-probe-" + tag, "project": str(uuid.uuid4()), "export": str(uuid.uuid4()),
           "analytics": str(uuid.uuid4())}
    steps = []
    saved = conn.autocommit
    conn.autocommit = True
    cur = conn.cursor()
    try:
        cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE")
        cur.execute("SET LOCAL lock_timeout = '2s'")
        cur.execute("SET LOCAL statement_timeout = '15s'")
        cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        missing = [prefix + n for n in ("user", "project", "exports", "export_analytics")
                   if not _exists(cur, schema, prefix + n)]
        if missing:
            return _check("crud_probe", "skipped", "key tables missing: {0}".format(", ".join(missing)))

        def step(name, statement, params, expect=None):
            cur.execute("SAVEPOINT pgsafe_probe")
            try:
                cur.execute(statement, params)
                got = cur.fetchall() if cur.description else cur.rowcount
            except Exception as exc:  # noqa: BLE001 - any database error is the probe's finding
                cur.execute("ROLLBACK TO SAVEPOINT pgsafe_probe")
                steps.append({"step": name, "status": "failed", "detail": " ".join(str(exc).split())[:300]})
                return None
            cur.execute("RELEASE SAVEPOINT pgsafe_probe")
            value = got[0][0] if isinstance(got, list) and got and len(got[0]) == 1 else got
            if expect is not None and value != expect:
                steps.append({"step": name, "status": "failed",
                              "detail": "expected {0!r}, got {1!r}".format(expect, value)})
            else:
                steps.append({"step": name, "status": "ok", "detail": ""})
            return got

        step("insert user (varchar id)", sql.SQL("INSERT INTO {0} (id, name, email) VALUES (%s, %s, %s)").format(
            t["user"]), (ids["user"], "pgsafe probe", ids["user"] + "@probe.invalid"), 1)
        step("insert project (uuid id, varchar userId)", sql.SQL(
            "INSERT INTO {0} (id, {1}, title, props) VALUES (%s, %s, %s, %s)").format(
                t["project"], sql.Identifier("userId")), (ids["project"], ids["user"], "probe " + tag, "{}"), 1)
        step("insert export (uuid id, user_id, project_id)", sql.SQL(
            "INSERT INTO {0} (id, user_id, project_id, render_id, status, metadata) VALUES (%s, %s, %s, %s, %s, %s)"
        ).format(t["exports"]), (ids["export"], ids["user"], ids["project"], "pgsafe-probe-" + tag, "pending",
                                 '{"probe": true}'), 1)
        step("insert analytics row (uuid export_id)", sql.SQL(
            "INSERT INTO {0} (id, export_id, event, event_data) VALUES (%s, %s, %s, %s)").format(
                t["export_analytics"]), (ids["analytics"], ids["export"], "started", '{"probe": true}'), 1)
        step("read export with its analytics (the code's join)", sql.SQL(
            "SELECT count(*) FROM {0} e JOIN {1} a ON a.export_id = e.id WHERE e.id = %s").format(
                t["exports"], t["export_analytics"]), (ids["export"],), 1)
        step("update export", sql.SQL(
            "UPDATE {0} SET status = 'completed', progress = 100, completed_at = now() WHERE id = %s").format(
                t["exports"]), (ids["export"],), 1)
        step("delete project", sql.SQL("DELETE FROM {0} WHERE id = %s").format(t["project"]), (ids["project"],), 1)
        step("export and analytics removed by ON DELETE CASCADE", sql.SQL(
            "SELECT (SELECT count(*) FROM {0} WHERE id::text = %s) + (SELECT count(*) FROM {1} WHERE id::text = %s)"
        ).format(t["exports"], t["export_analytics"]), (ids["export"], ids["analytics"]), 0)
        step("delete user", sql.SQL("DELETE FROM {0} WHERE id = %s").format(t["user"]), (ids["user"],), 1)
    finally:
        cur.execute("ROLLBACK")
        cur.close()
        conn.autocommit = saved
    failed = [s for s in steps if s["status"] == "failed"]
    if failed:
        return _check("crud_probe", "failed", "{0} of {1} probe steps failed (rolled back): {2}".format(
            len(failed), len(steps), "; ".join("{0}: {1}".format(s["step"], s["detail"]) for s in failed)), steps)
    return _check("crud_probe", "ok", "insert/read/update/delete with the code's types on {0} key tables "
                  "(rolled back)".format(len(t)), steps)


# --------------------------------------------------------------------------- conformance
def blocking_differences(differences):
    """Differences that fail a validation: blocking ones, plus a missing or invalid index."""
    out = []
    for d in differences:
        missing_index = d["kind"] == "index" and d.get("attribute") in ("presence", "valid") and d.get("left") in (
            None, False)
        if d["severity"] == "blocking" or missing_index:
            out.append(d)
    return out


def plan_targets(plan):
    """What a run's plan (``pgsafe_plan``: schema_fix, table_merge, table_cleanup, auth_schema_removal) aims at.

    Returns snapshot keys: ``objects`` (columns, foreign keys and tables whose drift from the code the run must
    remove), ``absent_tables`` and ``absent_schemas`` (retired, merged away or removed on purpose: missing
    afterwards is the plan, not drift).  Names the plan gives unquoted (``public.bazaar-vid_exports``) are
    split as the plan files write them.
    """
    from ansible.module_utils.pgsafe_identifiers import split_qualified
    from ansible.module_utils.pgsafe_snapshot import qname

    def table(name):
        if isinstance(name, dict):
            name = name.get("name") or name.get("table")
        return qname(*split_qualified(name))

    plan = plan or {}
    fix = plan.get("schema_fix") or {}
    objects, absent_tables, absent_schemas = set(), set(), set()
    for change in fix.get("changes") or ():
        objects.add(table(change["table"]) + "." + qname(change["column"]))
    for fk in fix.get("foreign_keys") or ():
        objects.add(table(fk["table"]) + "." + qname(fk["name"]))
    for merge in plan.get("table_merge") or ():
        objects.add(table(merge["target"]))
        absent_tables.add(table(merge["source"]))
    for name in (plan.get("table_cleanup") or {}).get("tables") or ():
        absent_tables.add(table(name))
    for schema in (plan.get("auth_schema_removal") or {}).get("schemas") or ():
        absent_schemas.add(qname(schema))
    return {"objects": objects, "absent_tables": absent_tables, "absent_schemas": absent_schemas}


def _owner_tables(*snapshots):
    """Object key -> the key of the table it belongs to (columns, constraints, indexes, triggers, policies)."""
    owners = {}
    for snap in snapshots:
        if not snap:
            continue
        for tkey, tbl in snap.get("tables", {}).items():
            owners[tkey] = tkey
            for column in tbl.get("columns", {}):
                owners[tkey + '."' + column.replace('"', '""') + '"'] = tkey
        for kind in ("constraints", "indexes", "triggers", "policies"):
            for key, obj in snap.get(kind, {}).items():
                owners[key] = obj.get("table")
    return owners


def _targeted(d, targets):
    return d["object"] in targets["objects"]


def _planned_absence(d, targets, owners):
    """A table or schema missing because the plan retired or removed it on purpose."""
    if d.get("left") is not None or d.get("attribute") != "presence":
        return False
    if d["kind"] == "schema":
        return d["object"] in targets["absent_schemas"]
    return owners.get(d["object"], d["object"]) in targets["absent_tables"]


def judge_conformance(after, before=None, targets=None, owners=None, strict=False):
    """Sort the differences from the code after a run by what the run did about them.

    ``after`` and ``before`` are diff_snapshots() results (live vs the code, after and before the run).  Each
    item gets a ``judgement``:

    * ``targeted``: drift on an object the plan aims at is still there (fails);
    * ``new``: blocking or warning drift that was not there before the run, or whose live side the run changed
      (fails); new info-level items (comments, column order, equivalent spellings) are ``new_cosmetic``;
    * ``planned``: a table or schema missing because the plan retired or removed it (restorable);
    * ``pre-existing``: there before the run, untouched by it (fails only with ``strict``, when blocking);
    * ``fixed``: there before, gone after.

    Without ``before`` (no baseline), every blocking difference and every missing or invalid index fails
    (``unjudged``), as a validation outside a run must.
    """
    targets = targets or {"objects": set(), "absent_tables": set(), "absent_schemas": set()}
    owners = owners or {}
    failing = {id(d) for d in blocking_differences(after)}
    items = []

    def add(d, judgement, fails):
        items.append(dict(d, judgement=judgement, fails=fails))

    if before is None:
        for d in after:
            if _planned_absence(d, targets, owners):
                add(d, "planned", False)
            elif _targeted(d, targets):
                add(d, "targeted", True)
            else:
                add(d, "unjudged", id(d) in failing)
        return items
    known = {(d["kind"], d["object"], d["attribute"]): d for d in before}
    seen = set()
    for d in after:
        key = (d["kind"], d["object"], d["attribute"])
        earlier = known.get(key)
        seen.add(key)
        if _planned_absence(d, targets, owners):
            add(d, "planned", False)
        elif _targeted(d, targets):
            add(d, "targeted", True)
        elif earlier is not None and earlier.get("left") == d.get("left"):
            add(d, "pre-existing", bool(strict) and id(d) in failing)
        elif d["severity"] == "info":
            add(d, "new_cosmetic", False)
        else:
            add(d, "new", True)
    for key, d in known.items():
        if key not in seen:
            add(d, "fixed", False)
    return items


JUDGEMENT_ORDER = {"targeted": 0, "new": 1, "unjudged": 2, "pre-existing": 3, "planned": 4, "new_cosmetic": 5,
                   "fixed": 6}


def check_conformance(live_snapshot, reference_snapshot, ignore=None, before_snapshot=None, plan=None,
                      strict=False):
    """Conformance with the code's schema, judged against the run when a before snapshot is given.

    A run fails validation when drift its plan targets is still there or when it introduced new drift; drift
    that existed before and that the plan does not touch is reported as pre-existing (``strict`` makes the
    blocking part of it fail too).  Without a before snapshot, every blocking difference fails.
    """
    from ansible.module_utils.pgsafe_schema_diff import diff_snapshots

    after = diff_snapshots(live_snapshot, reference_snapshot, ignore=ignore)
    before = diff_snapshots(before_snapshot, reference_snapshot, ignore=ignore) if before_snapshot else None
    targets = plan_targets(plan)
    judged = judge_conformance(after, before, targets, _owner_tables(before_snapshot, live_snapshot,
                                                                       reference_snapshot), strict)
    judged.sort(key=lambda d: (not d["fails"], JUDGEMENT_ORDER.get(d["judgement"], 9),
                               {"blocking": 0, "warning": 1, "info": 2}.get(d["severity"], 3), d["object"]))
    counts = {}
    for d in judged:
        counts[d["judgement"]] = counts.get(d["judgement"], 0) + 1
    items = [{"judgement": d["judgement"], "fails": d["fails"], "severity": d["severity"], "kind": d["kind"],
              "object": d["object"], "attribute": d.get("attribute"), "live": _short(d.get("left")),
              "code": _short(d.get("right")), "summary": d.get("summary")}
             for d in judged if d["judgement"] != "new_cosmetic" or d["kind"] != "column_order"]
    failed = [d for d in judged if d["fails"]]
    tally = ", ".join("{0} {1}".format(counts[k], k) for k in sorted(counts, key=lambda k: JUDGEMENT_ORDER.get(k, 9)))
    if before is None:
        head = "no before snapshot, every blocking difference counts"
    else:
        head = "judged against the schema before the run{0}".format(" (strict)" if strict else "")
    if failed:
        reasons = []
        for judgement, text in (("targeted", "drift the plan targets is still there"),
                                ("new", "new drift appeared during the run"),
                                ("pre-existing", "pre-existing blocking drift (strict mode)"),
                                ("unjudged", "blocking differences from the code")):
            found = [d["object"] for d in failed if d["judgement"] == judgement]
            if found:
                reasons.append("{0}: {1}".format(text, ", ".join(found[:8]) + (" ..." if len(found) > 8 else "")))
        return _check("conformance", "failed", "{0}; {1} ({2})".format("; ".join(reasons), head, tally), items)
    return _check("conformance", "ok", "nothing the plan targets differs from the code and no new drift ({0}; "
                  "{1})".format(head, tally or "no difference at all"), items)


def _short(value):
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= 160 else text[:157] + "..."
