# -*- coding: utf-8 -*-
"""Every dependent of a column a type change retypes, found in the catalogs before the first change, and what
the plan does with each: carried over by the server, re-created by the plan, refused (named, with the reason
and the fix), or reported as a hazard (code the server does not track).

What ``ALTER TABLE ... ALTER COLUMN ... TYPE`` does with each kind was measured on PostgreSQL 15 (and matches
``ATExecAlterColumnType`` / ``RememberAllDependentForRebuilding`` in tablecmds.c): indexes, constraints, extended
statistics and defaults are re-parsed over the new type and rebuilt; views, rules, trigger definitions (WHEN,
UPDATE OF), policies, generated columns, SQL-standard function bodies and publication column lists / row filters
make the server refuse; so do a partition key, an inherited column, a typed table and the table's row type used
by a column elsewhere.  The online strategy drops the old column at its swap, so the server carries nothing
over there: what the swap does not rebuild refuses online (``auto`` then picks rewrite).

``read_dependents`` reads (in the caller's READ ONLY transaction; expressions are checked over the new type with
a PREPARE, which parses without running); ``classify`` and ``plan_dependents`` decide, in plain Python.
"""
from __future__ import annotations

import re

from ansible.module_utils.pgsafe_identifiers import qualified, quote_ident
from ansible.module_utils.pgsafe_typechange_parse import canonical_type_text
from ansible.module_utils.pgsafe_typechange_sql import TRIGGER_NAME  # the online change's own sync trigger

try:  # psycopg2 is needed for the catalog reads only; the decisions are importable without it
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None

CARRIED, RECREATED, REFUSED, HAZARD = "carried over", "re-created", "refused", "hazard"
INTEGER_TYPES = ("smallint", "integer", "bigint")
DROP_AROUND = "drop it before this change and recreate it after (adapted to the new type), then re-run"
REWRITE = "use strategy rewrite (the swap of online drops the old column and does not rebuild it)"

# kind: (rewrite, online, what it is).  Kinds marked "checked" are refused when their definition does not
# parse over the new type.  The README of roles/schema_fix and the module's notes list the same table.
KINDS = {
    "index": (CARRIED, RECREATED, "index on the column (rebuilt by the server; online: built CONCURRENTLY on the "
                                  "shadow column)"),
    "expression index": (CARRIED, REFUSED, "index with an expression or predicate over the column (checked)"),
    "primary key / unique": (CARRIED, RECREATED, "primary key or unique constraint"),
    "exclusion constraint": (CARRIED, REFUSED, "exclusion constraint"),
    "check constraint": (CARRIED, REFUSED, "check constraint (checked)"),
    "foreign key": (RECREATED, RECREATED, "foreign key from or to the column: dropped, added NOT VALID, validated"),
    "statistics": (CARRIED, REFUSED, "extended statistics object (checked)"),
    "default": (CARRIED, RECREATED, "the column's default (checked: it must cast to the new type)"),
    "owned sequence": (CARRIED, REFUSED, "sequence owned by the column (serial)"),
    "identity": (CARRIED, REFUSED, "identity column (the new type must be smallint, integer or bigint)"),
    "collation": (RECREATED, REFUSED, "non-default collation of the column (ALTER TYPE would reset it)"),
    "column grant": (CARRIED, REFUSED, "column-level privilege"),
    "statistics target": (CARRIED, REFUSED, "per-column statistics target"),
    "comment": (CARRIED, RECREATED, "comment on the column"),
    "replica identity / cluster index": (CARRIED, REFUSED, "replica identity or CLUSTER index on the column"),
    "inheritance child": (REFUSED, REFUSED, "the table has inheritance children (ALTER recurses to them; the "
                                            "unit's content check and backfill cover one table)"),
    "view": (RECREATED, RECREATED, "view over the column: dropped and re-created in the same transaction"),
    "materialized view": (REFUSED, REFUSED, "materialized view over the column"),
    "rule": (REFUSED, REFUSED, "rewrite rule using the column"),
    "trigger definition": (REFUSED, REFUSED, "trigger whose WHEN clause or UPDATE OF list names the column"),
    "policy": (REFUSED, REFUSED, "row-level security policy using the column"),
    "generated column": (REFUSED, REFUSED, "generated column computed from the column"),
    "sql function body": (REFUSED, REFUSED, "function with a SQL-standard body (BEGIN ATOMIC / RETURN)"),
    "publication": (REFUSED, REFUSED, "publication column list or row filter (PostgreSQL 15)"),
    "partition key": (REFUSED, REFUSED, "the column is (part of) the table's partition key"),
    "inherited column": (REFUSED, REFUSED, "the column is inherited from a parent table"),
    "typed table": (REFUSED, REFUSED, "the table is a typed table (CREATE TABLE ... OF type)"),
    "row type": (REFUSED, REFUSED, "the table's row type is the type of a column elsewhere"),
    "function body": (HAZARD, HAZARD, "function or trigger function whose body mentions the column (not tracked "
                                      "by the server)"),
    "event trigger": (HAZARD, HAZARD, "enabled event trigger: it runs inside the change's transaction"),
    "other": (REFUSED, REFUSED, "an object of a kind pgsafe does not know depends on the column"),
}
# Kinds decided elsewhere in the plan (views, foreign keys, the online index/check blockers): listed, not re-noted.
NOTED_ELSEWHERE = ("view", "materialized view", "foreign key")
ONLINE_NOTED_ELSEWHERE = ("expression index", "check constraint")

FIXES = {
    "rule": DROP_AROUND, "trigger definition": "drop the trigger before this change and create it again after "
    "(its WHEN clause adapted to the new type), then re-run", "policy": "drop the policy before this change and "
    "create it again after (its expressions adapted to the new type), then re-run",
    "generated column": "drop the generated column (or its expression: ALTER COLUMN ... DROP EXPRESSION) before "
    "this change and add it again after, then re-run", "sql function body": "drop the function before this change "
    "and create it again after (or give it a string body: AS $$...$$), then re-run",
    "publication": "remove the table from the publication (or its column list / row filter) before this change and "
    "add it back after, then re-run", "partition key": "the partition key cannot change type in place: create a new "
    "partitioned table with the new type and move the rows (or keep the type)",
    "typed table": "detach the table from its type (ALTER TABLE ... NOT OF) or change the type's attribute instead",
    "row type": "change or drop the columns that use the table's row type first, then re-run",
    "inheritance child": "detach each child (ALTER TABLE child NO INHERIT parent), declare the change on the parent "
    "and on each child, then attach them again (ALTER TABLE child INHERIT parent)",
    "materialized view": DROP_AROUND, "other": DROP_AROUND,
}


def classify(dep, strategy):
    """(decision, why, fix) of one dependent under ``strategy`` (rewrite | online); pure."""
    kind = dep["kind"]
    rewrite, online, what = KINDS.get(kind, KINDS["other"])
    decision = online if strategy == "online" else rewrite
    why, fix = what, FIXES.get(kind, DROP_AROUND)
    if dep.get("invalid") and decision != REFUSED:  # the server re-parses it over the new type: it would fail
        decision, why = REFUSED, "its definition does not work with the new type ({0})".format(dep["invalid"])
        fix = ("change the definition so it works with the new type (or drop it before this change and recreate "
               "it after), then re-run")
        if kind == "default":
            fix = "declare a default for the new type (default: ...) or drop_default: true in the change"
    elif kind == "identity" and dep.get("target") not in INTEGER_TYPES:
        decision, why = REFUSED, "an identity column must stay smallint, integer or bigint"
        fix = "drop the identity (ALTER COLUMN ... DROP IDENTITY) before this change, or keep an integer type"
    elif strategy == "online" and decision == REFUSED and rewrite != REFUSED:
        why, fix = what + ": the online swap would lose it", REWRITE
    elif kind == "inherited column":
        fix = "change the column on the parent table {0} instead".format(dep.get("parent", ""))
    return decision, why, fix


def dependent_line(dep, decision, why, fix=None):
    """One line of the plan about a dependent: object, column, decision and, for a refusal, the fix."""
    if dep["object"] == dep["on"]:
        line = "column {0} ({1}): {2} ({3})".format(dep["on"], dep["kind"], decision, why)
    else:
        line = "{0} {1} depends on {2}: {3} ({4})".format(dep["kind"], dep["object"], dep["on"], decision, why)
    if dep.get("lines"):
        line += "; lines: " + " | ".join(dep["lines"][:8])
    return line + ("; fix: " + fix if decision == REFUSED and fix else "")


def plan_dependents(deps, changed_cols, notes):
    """Decide every dependent of a changed column; adds blockers, online blockers and hazards to ``notes``.

    Returns the list [{kind, object, on, rewrite, online, why}] the plan shows.
    """
    out = []
    for dep in deps:
        if (dep["schema"], dep["table"], dep["column"]) not in changed_cols:
            continue
        rw, rw_why, rw_fix = classify(dep, "rewrite")
        on, on_why, on_fix = classify(dep, "online")
        out.append({"kind": dep["kind"], "object": dep["object"], "on": dep["on"], "rewrite": rw, "online": on,
                    "why": rw_why if rw == REFUSED or on != REFUSED else on_why})
        if dep["kind"] in NOTED_ELSEWHERE and not (dep.get("invalid") and rw == REFUSED):
            continue
        if rw == REFUSED:
            notes["blockers"].append(dependent_line(dep, rw, rw_why, rw_fix))
        elif rw == HAZARD:
            notes["hazards"].append(dependent_line(dep, rw, rw_why))
        elif on == REFUSED and dep["kind"] not in ONLINE_NOTED_ELSEWHERE:
            notes["online_blockers"].append(dependent_line(dep, on, on_why, on_fix))
    return out


def collations_to_keep(deps, changed_cols):
    """{(schema, table, column): collation} the rewrite re-applies (ALTER ... TYPE ... COLLATE)."""
    return {(d["schema"], d["table"], d["column"]): d["collation"] for d in deps
            if d["kind"] == "collation" and (d["schema"], d["table"], d["column"]) in changed_cols}


# --------------------------------------------------------------------------- catalog reads
def read_dependents(cur, tables, changes):
    """Every dependent of each declared change's column whose type differs from the target (see KINDS)."""
    deps = []
    events = _event_triggers(cur)
    for ch in changes:
        t = tables.get((ch["schema"], ch["table"]))
        col = t and t["columns"].get(ch["column"])
        if not col or canonical_type_text(col["type"]) == ch["type"]:
            continue
        target = {"schema": ch["schema"], "table": ch["table"], "column": ch["column"], "oid": t["oid"],
                  "attnum": col["attnum"], "type": ch["type"],
                  "on": "{0}.{1}".format(qualified(ch["schema"], ch["table"]), quote_ident(ch["column"]))}
        found = _depend_rows(cur, target) + _column_properties(cur, target) + _table_properties(cur, target)
        found += _row_type_users(cur, target) + _function_bodies(cur, target)
        found += [{"kind": "event trigger", "object": "{0} (on {1})".format(quote_ident(name), event)}
                  for name, event in events]
        if ch.get("set_default"):  # the change drops the old default before the type changes
            found = [d for d in found if d["kind"] != "default"]
        _check_expressions(cur, target, tables, changes, found)
        _check_operator_classes(cur, target, found)
        for dep in found:
            dep.update({k: target[k] for k in ("schema", "table", "column", "on")}, target=target["type"])
        deps += found
    _check_views(cur, tables, changes, deps)
    return deps


_DEPEND_SQL = """
SELECT d.classid::regclass::text, d.objid, pg_describe_object(d.classid, d.objid, d.objsubid),
       CASE d.classid
         WHEN 'pg_class'::regclass THEN (SELECT c.relkind::text FROM pg_class c WHERE c.oid = d.objid)
         WHEN 'pg_constraint'::regclass THEN (SELECT c.contype::text FROM pg_constraint c WHERE c.oid = d.objid)
         WHEN 'pg_rewrite'::regclass THEN (SELECT CASE WHEN r.rulename = '_RETURN' THEN c.relkind::text ELSE 'rule' END
                                             FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
         WHEN 'pg_trigger'::regclass THEN (SELECT CASE WHEN t.tgisinternal OR (t.tgname = %s
                                                       AND p.pronamespace::regnamespace::text = 'pgsafe')
                                                  THEN 'internal' END
                                             FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                                            WHERE t.oid = d.objid)
         WHEN 'pg_attrdef'::regclass THEN (SELECT CASE WHEN a.adnum = d.refobjsubid THEN 'own' END
                                             FROM pg_attrdef a WHERE a.oid = d.objid)
       END,
       CASE d.classid
         WHEN 'pg_class'::regclass THEN (SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c
                                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = d.objid)
         WHEN 'pg_constraint'::regclass THEN (SELECT quote_ident(c.conname) || ' on ' || c.conrelid::regclass::text
                                                FROM pg_constraint c WHERE c.oid = d.objid)
         WHEN 'pg_statistic_ext'::regclass THEN (SELECT format('%%I.%%I', s.stxnamespace::regnamespace, s.stxname)
                                                   FROM pg_statistic_ext s WHERE s.oid = d.objid)
         WHEN 'pg_proc'::regclass THEN d.objid::regprocedure::text
         WHEN 'pg_rewrite'::regclass THEN (SELECT CASE WHEN r.rulename = '_RETURN'
                                                       THEN format('%%I.%%I', c.relnamespace::regnamespace, c.relname)
                                                       ELSE quote_ident(r.rulename) || ' on ' || c.oid::regclass::text
                                                  END
                                             FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
                                            WHERE r.oid = d.objid)
       END
  FROM pg_depend d
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %s AND d.refobjsubid = %s AND d.deptype <> 'i'
   AND NOT (d.classid = 'pg_class'::regclass AND d.objid = d.refobjid)
 ORDER BY 1, 2"""
_CLASS_KINDS = {("pg_class", "i"): "index", ("pg_class", "I"): "index", ("pg_class", "S"): "owned sequence",
                ("pg_constraint", "c"): "check constraint", ("pg_constraint", "f"): "foreign key",
                ("pg_constraint", "p"): "primary key / unique", ("pg_constraint", "u"): "primary key / unique",
                ("pg_constraint", "x"): "exclusion constraint", ("pg_rewrite", "v"): "view",
                ("pg_rewrite", "m"): "materialized view", ("pg_rewrite", "rule"): "rule",
                ("pg_trigger", None): "trigger definition", ("pg_policy", None): "policy",
                ("pg_attrdef", "own"): "default", ("pg_attrdef", None): "generated column",
                ("pg_proc", None): "sql function body", ("pg_statistic_ext", None): "statistics",
                ("pg_publication_rel", None): "publication"}


def _depend_rows(cur, target):
    """Objects pg_depend records on the column (each once, by kind)."""
    cur.execute(_DEPEND_SQL, (TRIGGER_NAME, target["oid"], target["attnum"]))
    out, seen = [], set()
    for classid, objid, described, sub, name in cur.fetchall():
        if sub == "internal" or (classid, objid) in seen:
            continue
        seen.add((classid, objid))
        kind = _CLASS_KINDS.get((classid, sub), "other")
        out.append({"kind": kind, "object": name or described, "described": described, "objid": objid})
    return out


def _column_properties(cur, target):
    """Identity, collation, grants, statistics target and inheritance of the column itself."""
    cur.execute("""SELECT a.attidentity, CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
                                              THEN a.attcollation::regcollation::text END,
                          a.attacl IS NOT NULL, a.attstattarget >= 0, a.attinhcount > 0,
                          (SELECT string_agg(i.inhparent::regclass::text, ', ') FROM pg_inherits i
                            WHERE i.inhrelid = a.attrelid),
                          (SELECT t2.typcollation <> 0 FROM pg_type t2 WHERE t2.oid = to_regtype(%s))
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                    WHERE a.attrelid = %s AND a.attnum = %s""", (target["type"], target["oid"], target["attnum"]))
    identity, collation, granted, stattarget, inherited, parent, collatable = cur.fetchone()
    found = []
    if identity:
        found.append({"kind": "identity", "object": target["on"]})
    if collation and collatable:
        found.append({"kind": "collation", "object": collation, "collation": collation})
    if granted:
        found.append({"kind": "column grant", "object": "privileges on " + target["on"]})
    if stattarget:
        found.append({"kind": "statistics target", "object": target["on"]})
    if inherited:
        found.append({"kind": "inherited column", "object": target["on"], "parent": parent})
    return found


def _table_properties(cur, target):
    """Partition key, typed table, inheritance children, replica identity / cluster index on the column."""
    cur.execute("""SELECT c.reloftype <> 0,
                          EXISTS (SELECT 1 FROM pg_partitioned_table p WHERE p.partrelid = c.oid
                                   AND (%s = ANY (p.partattrs::int2[]) OR EXISTS (
                                        SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                           AND d.objid = c.oid AND d.refobjid = c.oid AND d.refobjsubid = %s))),
                          c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid),
                          (SELECT string_agg(x.indexrelid::regclass::text, ', ') FROM pg_index x
                            WHERE x.indrelid = c.oid AND (x.indisreplident OR x.indisclustered)
                              AND %s = ANY (x.indkey::int2[]))
                     FROM pg_class c WHERE c.oid = %s""",
                (target["attnum"], target["attnum"], target["attnum"], target["oid"]))
    typed, partition_key, children, flagged = cur.fetchone()
    table = qualified(target["schema"], target["table"])
    found = [{"kind": "typed table", "object": table}] if typed else []
    found += [{"kind": "partition key", "object": table}] if partition_key else []
    found += [{"kind": "inheritance child", "object": "children of " + table}] if children else []
    found += [{"kind": "replica identity / cluster index", "object": flagged}] if flagged else []
    return found


def _row_type_users(cur, target):
    """Columns elsewhere whose type is the table's row type (directly, as an array, a domain or a composite)."""
    cur.execute("""WITH RECURSIVE ty(oid) AS (
                       SELECT c.reltype FROM pg_class c WHERE c.oid = %s
                       UNION SELECT x.oid FROM ty CROSS JOIN LATERAL (
                               SELECT t.oid FROM pg_type t WHERE t.typelem = ty.oid OR t.typbasetype = ty.oid
                               UNION ALL SELECT c.reltype FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                                AND c.relkind = 'c' WHERE a.atttypid = ty.oid) x)
                   SELECT a.attrelid::regclass::text || '.' || quote_ident(a.attname)
                     FROM pg_attribute a JOIN ty ON a.atttypid = ty.oid JOIN pg_class c ON c.oid = a.attrelid
                    WHERE c.relkind IN ('r', 'p', 'm', 'f') AND NOT a.attisdropped ORDER BY 1""", (target["oid"],))
    return [{"kind": "row type", "object": r[0]} for r in cur.fetchall()]


def _event_triggers(cur):
    cur.execute("SELECT evtname, evtevent FROM pg_event_trigger WHERE evtenabled <> 'D' ORDER BY 1")
    return cur.fetchall()


def identifier_pattern(column):
    """Regex of the column as an identifier in code: quoted exactly, or bare (any case) when it is lower case."""
    quoted = re.escape('"' + column.replace('"', '""') + '"')
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", column):
        return re.compile(r'{0}|(?i:(?<![\w$"]){1}(?![\w$"]))'.format(quoted, re.escape(column)))
    return re.compile(quoted)


def mentioning_lines(source, column, table=None):
    """Lines of a function body naming the column ("n: text"); none unless the body also names the table
    (trigger functions of the table are passed ``table=None``)."""
    if table is not None and table.lower() not in source.lower():
        return []
    pattern = identifier_pattern(column)
    return ["{0}: {1}".format(n, line.strip()) for n, line in enumerate(source.splitlines(), 1)
            if pattern.search(line)]


def _function_bodies(cur, target):
    """Functions (string bodies, any language but C) that are triggers of the table or name it, whose body names
    the column: the server does not track them, so they are a hazard with the lines that mention it."""
    cur.execute("""SELECT p.oid::regprocedure::text, p.prosrc,
                          EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgfoid = p.oid AND tg.tgrelid = %s
                                     AND NOT tg.tgisinternal)
                     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     JOIN pg_language l ON l.oid = p.prolang
                    WHERE l.lanname NOT IN ('c', 'internal') AND p.prosqlbody IS NULL
                      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgsafe')
                      AND n.nspname NOT LIKE 'pg\\_%%'
                      AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass
                                         AND e.objid = p.oid AND e.deptype = 'e')
                      AND (p.prosrc ILIKE '%%' || %s || '%%' OR EXISTS (
                           SELECT 1 FROM pg_trigger tg WHERE tg.tgfoid = p.oid AND tg.tgrelid = %s))
                    ORDER BY 1""", (target["oid"], target["table"], target["oid"]))
    found = []
    for name, source, is_trigger in cur.fetchall():
        lines = mentioning_lines(source or "", target["column"], None if is_trigger else target["table"])
        if lines:
            found.append({"kind": "function body", "object": name + (" (trigger function)" if is_trigger else ""),
                          "lines": lines})
    return found


# --------------------------------------------------------------------------- definitions over the new type
def _definitions(cur, dep):
    """Expressions the server re-parses over the new type, as SQL text over the table's columns."""
    kind, oid = dep["kind"], dep.get("objid")
    if kind in ("index", "expression index"):
        cur.execute("""SELECT ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
                                      FROM generate_series(1, x.indnatts) k WHERE x.indkey[k - 1] = 0)::text[],
                              pg_get_expr(x.indpred, x.indrelid) FROM pg_index x WHERE x.indexrelid = %s""", (oid,))
        exprs, pred = cur.fetchone()
        if exprs or pred:
            dep["kind"] = "expression index"
        return list(exprs) + ([pred] if pred else [])
    if kind == "check constraint":
        cur.execute("SELECT pg_get_expr(conbin, conrelid) FROM pg_constraint WHERE oid = %s", (oid,))
        return [cur.fetchone()[0]]
    if kind == "statistics":
        cur.execute("SELECT pg_get_statisticsobjdef_expressions(%s)::text[]", (oid,))
        return list(cur.fetchone()[0] or [])
    if kind == "default":
        cur.execute("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE oid = %s", (oid,))
        return ["CAST(({0}) AS {1})".format(cur.fetchone()[0], canonical_type_text(dep["target"]))]
    return []


def _changed_source(t, schema, table, changes):
    """A SELECT of the table as the changes leave it: its columns, the retyped ones as typed NULLs."""
    new_types = {c["column"]: c["type"] for c in changes if (c["schema"], c["table"]) == (schema, table)}
    cols = sql.SQL(", ").join(
        sql.SQL("NULL::{0} AS {1}").format(sql.SQL(canonical_type_text(new_types[c])), sql.Identifier(c))
        if c in new_types else sql.SQL("x.{0}").format(sql.Identifier(c)) for c in t["columns"])
    return sql.SQL("SELECT {0} FROM ONLY {1} x").format(cols, sql.Identifier(schema, table))


def _check_views(cur, tables, changes, deps):
    """A view re-created over the new types must still parse: its definition (printed with the changed tables'
    schemas on the search path, so they are named bare) is prepared under CTEs of the same names that give
    the changed columns their new types."""
    views = [d for d in deps if d["kind"] == "view"]
    keys = list(dict.fromkeys((c["schema"], c["table"]) for c in changes if (c["schema"], c["table"]) in tables))
    names = [k[1] for k in keys]
    if not views or len(set(names)) != len(names):  # one name in two schemas: a CTE cannot stand for both
        return
    ctes = sql.SQL(", ").join(sql.SQL("{0} AS ({1})").format(sql.Identifier(table), _changed_source(
        tables[(schema, table)], schema, table, changes)) for schema, table in keys)
    path = ", ".join(quote_ident(schema) for schema in dict.fromkeys(k[0] for k in keys)) + ", pg_catalog"
    for dep in views:
        cur.execute("SAVEPOINT pgsafe_dependent")
        try:
            cur.execute("SELECT set_config('search_path', %s, true)", (path,))
            cur.execute("SELECT pg_get_viewdef(r.ev_class) FROM pg_rewrite r WHERE r.oid = %s", (dep["objid"],))
            definition = cur.fetchone()[0].rstrip().rstrip(";")
            cur.execute(sql.SQL("PREPARE pgsafe_dependent_probe AS WITH {0} SELECT * FROM ({1}) AS pgsafe_view").format(
                ctes, sql.SQL(definition)))  # catalog text (pg_get_viewdef), parsed, not run
            cur.execute("DEALLOCATE pgsafe_dependent_probe")
        except Exception as exc:  # noqa: BLE001 - the server's own parse error is the finding
            dep["invalid"] = str(exc).strip().splitlines()[0]
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_dependent")  # also ends the search_path and the statement
        cur.execute("RELEASE SAVEPOINT pgsafe_dependent")


def _check_expressions(cur, target, tables, changes, found):
    """Parse each re-parsed definition over the table as the change leaves it (PREPARE in a savepoint: parsed
    and analysed, never run); a failure marks the dependent ``invalid`` with the server's message."""
    source = sql.SQL("({0}) AS {1}").format(_changed_source(tables[(target["schema"], target["table"])],
                                                            target["schema"], target["table"], changes),
                                            sql.Identifier(target["table"]))
    for dep in found:
        dep["target"] = target["type"]
        for expr in _definitions(cur, dep):  # catalog text (pg_get_expr / pg_get_indexdef), parsed, not run
            cur.execute("SAVEPOINT pgsafe_dependent")
            try:
                cur.execute(sql.SQL("PREPARE pgsafe_dependent_probe AS SELECT ({0}) FROM {1}").format(
                    sql.SQL(expr), source))
                cur.execute("DEALLOCATE pgsafe_dependent_probe")
                cur.execute("RELEASE SAVEPOINT pgsafe_dependent")
            except Exception as exc:  # noqa: BLE001 - the server's own parse error is the finding
                cur.execute("ROLLBACK TO SAVEPOINT pgsafe_dependent")
                dep["invalid"] = str(exc).strip().splitlines()[0]
                break


_OPCLASS_SQL = """
WITH new AS (SELECT oid, typtype, typelem, typlen FROM pg_type WHERE oid = to_regtype(%s)),
     key AS (SELECT k.opc FROM pg_index x, unnest(x.indkey::int2[], x.indclass::oid[]) k(attnum, opc)
              WHERE x.indexrelid = %s AND k.attnum = %s)
SELECT format('operator class %%s of access method %%s does not accept type %%s%%s', oc.opcname, am.amname,
              format_type(new.oid, NULL), CASE WHEN oc.opcdefault THEN ' (and the type has no default operator '
                                                                 'class for it)' ELSE '' END)
  FROM key JOIN pg_opclass oc ON oc.oid = key.opc JOIN pg_am am ON am.oid = oc.opcmethod CROSS JOIN new
 WHERE NOT EXISTS (SELECT 1 FROM pg_opclass c JOIN pg_type it ON it.oid = c.opcintype
                    WHERE c.opcmethod = oc.opcmethod AND (CASE WHEN oc.opcdefault THEN c.opcdefault ELSE c.oid = oc.oid END)
                      AND (c.opcintype = new.oid
                           OR EXISTS (SELECT 1 FROM pg_cast pc WHERE pc.castsource = new.oid
                                         AND pc.casttarget = c.opcintype AND pc.castmethod = 'b')
                           OR (it.typname = 'anyarray' AND new.typelem <> 0 AND new.typlen = -1)
                           OR (it.typname = 'anyenum' AND new.typtype = 'e')
                           OR (it.typname = 'anyrange' AND new.typtype = 'r')
                           OR (it.typname = 'anymultirange' AND new.typtype = 'm')))"""


def _check_operator_classes(cur, target, found):
    """An index rebuilt over the new type keeps a non-default operator class, or takes the new type's default one
    for its access method: a dependent index (or constraint index) without one is ``invalid``."""
    for dep in found:
        if dep.get("invalid") or dep["kind"] not in ("index", "primary key / unique", "exclusion constraint"):
            continue
        index = dep["objid"]
        if dep["kind"] != "index":
            cur.execute("SELECT conindid FROM pg_constraint WHERE oid = %s", (index,))
            index = cur.fetchone()[0]
        cur.execute(_OPCLASS_SQL, (canonical_type_text(target["type"]), index, target["attnum"]))
        row = cur.fetchone()
        if row:
            dep["invalid"] = row[0]
