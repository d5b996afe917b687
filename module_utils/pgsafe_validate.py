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

from ansible.module_utils.pgsafe_identifiers import table_key
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
PROBE_MAX_EDGES = 12


def probe_value(typ, tag, serial):
    """A text literal the server casts to ``typ`` (None: no value can be made up for that type)."""
    base = typ.split("(")[0].strip()
    if typ.endswith("[]"):
        return "{}"
    if base == "uuid":
        return str(uuid.uuid4())
    if base in ("text", "character varying", "character", "citext"):
        text = "pgsafe-probe-{0}-{1}".format(tag, serial)
        length = typ[typ.index("(") + 1:typ.index(")")] if "(" in typ else ""
        return text[-int(length):] if length.isdigit() else text
    if base in ("integer", "bigint", "smallint", "numeric", "real", "double precision"):
        return str(serial % 30000 + 1)
    if base == "boolean":
        return "false"
    if base in ("json", "jsonb"):
        return "{}"
    if base == "date":
        return "2026-01-01"
    if base.startswith("timestamp"):
        return "2026-01-01 00:00:00+00"
    if base.startswith("time"):
        return "00:00:00"
    return None


def _probe_edges(reference, live, focus_tables=()):
    """The code's foreign keys to probe: both tables exist live and differ; with ``focus_tables``, only those
    touching them; at most PROBE_MAX_EDGES, in key order."""
    edges = []
    for key, con in sorted(reference.get("constraints", {}).items()):
        if con.get("type") != "foreign key" or con["table"] not in live.get("tables", {}):
            continue
        if con.get("references") not in live["tables"] or con["table"] == con.get("references"):
            continue
        if focus_tables and con["table"] not in focus_tables and con["references"] not in focus_tables:
            continue
        edges.append(dict(con, key=key))
    return edges[:PROBE_MAX_EDGES]


class _Prober:
    """Rows made up from the code's declared columns, written the way the code would (never committed)."""

    def __init__(self, cur, reference, tag):
        self.cur, self.ref, self.tag, self.serial = cur, reference, tag, 0
        self.stage = ""
        self.fks, self.pks, self.referenced = {}, {}, {}
        for con in reference.get("constraints", {}).values():
            if con.get("type") == "foreign key":
                self.fks.setdefault(con["table"], []).append(con)
                self.referenced.setdefault(con["references"], []).extend(con["ref_columns"])
            elif con.get("type") == "primary key":
                self.pks[con["table"]] = con["columns"]

    def rel(self, tkey):
        sql = _sql()
        tbl = self.ref["tables"][tkey]
        return sql.SQL("{0}.{1}").format(sql.Identifier(tbl["schema"]), sql.Identifier(tbl["name"]))

    def insert(self, tkey, given=None, depth=0):
        """Insert one row into ``tkey`` (parents of its required foreign keys first); its values by column."""
        sql = _sql()
        if depth > 6:
            raise ValueError("foreign keys nest deeper than 6 tables from {0}".format(tkey))
        values = dict(given or {})
        columns = self.ref["tables"][tkey]["columns"]
        for con in self.fks.get(tkey, ()):
            if any(c in values for c in con["columns"]):
                continue
            if all(columns.get(c, {}).get("not_null") for c in con["columns"]) and con["references"] != tkey:
                parent = self.insert(con["references"], depth=depth + 1)
                values.update(zip(con["columns"], (parent[rc] for rc in con["ref_columns"]), strict=True))
        for name, col in columns.items():
            if name in values or not col.get("not_null") or col.get("default") or col.get("identity") \
                    or col.get("generated"):
                continue
            self.serial += 1
            value = probe_value(col["type"], self.tag, self.serial)
            if value is None:
                raise ValueError("no probe value for {0}.{1} ({2})".format(tkey, name, col["type"]))
            values[name] = value
        keys = list(values)
        returning = list(dict.fromkeys(self.pks.get(tkey, []) + self.referenced.get(tkey, []))) or keys[:1]
        self.cur.execute(sql.SQL("INSERT INTO {0} ({1}) VALUES ({2}) RETURNING {3}").format(
            self.rel(tkey), sql.SQL(", ").join(sql.Identifier(k) for k in keys),
            sql.SQL(", ").join(sql.Placeholder() * len(keys)),
            sql.SQL(", ").join(sql.SQL("{0}::text").format(sql.Identifier(c)) for c in returning)),
            [values[k] for k in keys])
        return dict(values, **dict(zip(returning, self.cur.fetchone(), strict=True)))

    @staticmethod
    def where(row, columns, alias=None):
        """``col::text = %s AND ...`` (columns of ``alias`` when given) and its parameters from ``row``."""
        sql = _sql()
        prefix = sql.SQL(alias + ".") if alias else sql.SQL("")
        return sql.SQL(" AND ").join(sql.SQL("{0}{1}::text = %s").format(prefix, sql.Identifier(c))
                                     for c in columns), [row[c] for c in columns]

    def probe(self, fk):
        """Insert a parent and a child, read them with the code's join, update the child, delete the parent
        expecting the declared ON DELETE; raises naming the failure (``self.stage`` says where)."""
        sql = _sql()
        cur, child, parent = self.cur, fk["table"], fk["references"]
        action = fk.get("on_delete") or "NO ACTION"
        self.stage = "insert"
        prow = self.insert(parent)
        crow = self.insert(child, dict(zip(fk["columns"], (prow[c] for c in fk["ref_columns"]), strict=True)))
        self.stage = "read with the code's join"
        ckey = self.pks.get(child) or fk["columns"]
        join = sql.SQL(" AND ").join(sql.SQL("c.{0} = p.{1}").format(sql.Identifier(a), sql.Identifier(b))
                                     for a, b in zip(fk["columns"], fk["ref_columns"], strict=True))
        found_cond, params = self.where(crow, ckey, alias="c")
        cur.execute(sql.SQL("SELECT count(*) FROM {0} c JOIN {1} p ON {2} WHERE {3}").format(
            self.rel(child), self.rel(parent), join, found_cond), params)
        found = cur.fetchone()[0]
        if found != 1:
            raise ValueError("the join found {0} rows, not 1".format(found))
        self.stage = "update"
        cond, params = self.where(crow, ckey)
        cur.execute(sql.SQL("UPDATE {0} SET {1} = {1} WHERE {2}").format(
            self.rel(child), sql.Identifier(fk["columns"][0]), cond), params)
        if cur.rowcount != 1:
            raise ValueError("updated {0} rows, not 1".format(cur.rowcount))
        self.stage = "delete the parent ({0})".format(action)
        pcond, pparams = self.where(prow, fk["ref_columns"])
        delete = sql.SQL("DELETE FROM {0} WHERE {1}").format(self.rel(parent), pcond)
        if action in ("NO ACTION", "RESTRICT"):
            cur.execute("SAVEPOINT pgsafe_probe_delete")
            try:
                cur.execute(delete, pparams)
            except Exception:  # noqa: BLE001 - the refusal the code declares
                cur.execute("ROLLBACK TO SAVEPOINT pgsafe_probe_delete")
                return
            raise ValueError("deleting the parent was allowed although the code declares {0}".format(action))
        cur.execute(delete, pparams)
        cur.execute(sql.SQL("SELECT {0} FROM {1} WHERE {2}").format(
            sql.SQL(", ").join(sql.SQL("{0}::text").format(sql.Identifier(c)) for c in fk["columns"]),
            self.rel(child), cond), params)
        rows = cur.fetchall()
        if action == "CASCADE" and rows:
            raise ValueError("the child row outlived its parent (the code declares ON DELETE CASCADE)")
        if action == "SET NULL" and (len(rows) != 1 or any(v is not None for v in rows[0])):
            raise ValueError("the child's key was not set to NULL (the code declares ON DELETE SET NULL)")


def crud_probe(conn, reference, live, focus_tables=()):
    """Insert, read, update and delete the way the code's schema says, on its foreign keys; ALWAYS rolled back.

    For each foreign key the code declares between two live tables (those touching ``focus_tables``, the
    tables the run changed, when given): insert a parent row and a child row pointing at it (required columns
    filled with values made up from the code's types, sent untyped so the probe also runs while a column is
    still text), read the child back with the code's join, update it, delete the parent and expect the code's
    ON DELETE action.  Each foreign key in its own savepoint; the whole probe in one transaction that is
    rolled back.
    """
    edges = _probe_edges(reference, live, set(focus_tables or ()))
    if not edges:
        return _check("crud_probe", "skipped", "no foreign key the code declares between live tables{0}".format(
            " touching the plan's tables" if focus_tables else ""))
    steps, probed = [], set()
    saved = conn.autocommit
    conn.autocommit = True
    cur = conn.cursor()
    try:
        cur.execute("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE")
        cur.execute("SET LOCAL lock_timeout = '2s'")
        cur.execute("SET LOCAL statement_timeout = '15s'")
        cur.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        prober = _Prober(cur, reference, uuid.uuid4().hex[:8])
        for fk in edges:
            name = "{0} -> {1} ({2})".format(fk["table"], fk["references"], fk["name"])
            cur.execute("SAVEPOINT pgsafe_probe")
            try:
                prober.probe(fk)
            except Exception as exc:  # noqa: BLE001 - any database error is the probe's finding
                steps.append({"step": name, "status": "failed",
                              "detail": "{0}: {1}".format(prober.stage, " ".join(str(exc).split())[:300])})
            else:
                probed.update((fk["table"], fk["references"]))
                steps.append({"step": name, "status": "ok", "detail": "insert, join, update, delete ({0})".format(
                    fk.get("on_delete") or "NO ACTION")})
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_probe")
    finally:
        cur.execute("ROLLBACK")
        cur.close()
        conn.autocommit = saved
    failed = [s for s in steps if s["status"] == "failed"]
    if failed:
        return _check("crud_probe", "failed", "{0} of {1} foreign keys of the code failed the probe (rolled back): "
                      "{2}".format(len(failed), len(steps), "; ".join(
                          "{0}: {1}".format(s["step"], s["detail"]) for s in failed)), steps)
    return _check("crud_probe", "ok", "insert/read/update/delete along {0} foreign keys of the code's schema "
                  "(rolled back): {1}".format(len(steps), ", ".join(sorted(probed))), steps)


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
    afterwards is the plan, not drift), ``changed_tables`` (the tables the run writes to: the CRUD probe's
    focus).  Names the plan gives unquoted (``public.bazaar-vid_exports``) are split as the plan files write
    them.
    """
    from ansible.module_utils.pgsafe_identifiers import split_qualified
    from ansible.module_utils.pgsafe_snapshot import qname

    def table(name):
        if isinstance(name, dict):
            name = name.get("name") or name.get("table")
        return qname(*split_qualified(name))

    plan = plan or {}
    fix = plan.get("schema_fix") or {}
    objects, absent_tables, absent_schemas, changed = set(), set(), set(), set()
    for change in fix.get("changes") or ():
        changed.add(table(change["table"]))
        objects.add(table(change["table"]) + "." + qname(change["column"]))
    for fk in fix.get("foreign_keys") or ():
        changed.add(table(fk["table"]))
        objects.add(table(fk["table"]) + "." + qname(fk["name"]))
    for merge in plan.get("table_merge") or ():
        changed.add(table(merge["target"]))
        objects.add(table(merge["target"]))
        absent_tables.add(table(merge["source"]))
    for name in (plan.get("table_cleanup") or {}).get("tables") or ():
        absent_tables.add(table(name))
    for schema in (plan.get("auth_schema_removal") or {}).get("schemas") or ():
        absent_schemas.add(qname(schema))
    return {"objects": objects, "absent_tables": absent_tables, "absent_schemas": absent_schemas,
            "changed_tables": changed}


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


def judge_conformance(after, before=None, targets=None, owners=None, strict=False, applied=True):
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
    (``unjudged``), as a validation outside a run must.  With ``applied=False`` (check mode: the plan was not
    run), targeted drift is ``to_fix`` (what the plan would fix) and fails nothing.
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
                add(d, "targeted" if applied else "to_fix", applied)
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
            add(d, "targeted" if applied else "to_fix", applied)
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


JUDGEMENT_ORDER = {"targeted": 0, "new": 1, "unjudged": 2, "to_fix": 3, "pre-existing": 4, "planned": 5,
                   "new_cosmetic": 6, "fixed": 7}


def check_conformance(live_snapshot, reference_snapshot, ignore=None, before_snapshot=None, plan=None,
                      strict=False, applied=True):
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
                                                                       reference_snapshot), strict, applied)
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
