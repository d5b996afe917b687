# -*- coding: utf-8 -*-
"""The copy-and-swap method of the online type change (the pg_repack / pg-osc design), as planned: which
tables it is safe for, and the names and SQL pieces both the plan and the runner (pgsafe_typechange_copy_run)
use.

For a table it can carry over whole, the online strategy copies the rows into a new table of the new types
(no indexes during the copy), captures the changes made meanwhile by keys in a log table, builds the indexes
once, replays the log and swaps the tables by renames in one short transaction.  Any dependent it does not
carry over (a user trigger, an RLS policy, a rule, a publication, extended statistics, a function depending on
the table, a view or a foreign key the plan does not re-create, inheritance or partitions, identity or
generated columns, column privileges or options, anything unknown in pg_depend) makes the plan keep the
shadow-column method for that table, naming the object.

``read_copy_facts`` reads the catalog (in the plan's READ ONLY transaction); ``copy_blockers`` and
``choose_methods`` decide in plain Python.
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified
from ansible.module_utils.pgsafe_typechange_sql import TRIGGER_NAME as SHADOW_COLUMN_TRIGGER

try:  # psycopg2 is needed for the catalog reads only; the decisions are importable without it
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None

COPY, COLUMNS = "copy and swap", "shadow columns"
COPY_SUFFIX = "pgsafe_copy"  # the new table while it is filled
LOG_TRIGGER = "pgsafe_copy_log"  # the trigger that logs the keys of changed rows
TRUNCATE_TRIGGER = "pgsafe_copy_log_truncate"  # the trigger that logs a TRUNCATE (a row with no key)


def copy_table_name(table):
    return derived_name(table, suffix=COPY_SUFFIX)


def old_name(name, oid):
    """The name the original table (or one of its indexes) takes at the swap, kept until the change is verified:
    unique per table (its oid)."""
    return derived_name(name, suffix="pgsafe_old{0}".format(oid))


# The comment the swap puts on the original table (renamed old_name) until it is dropped: a table that still has it
# was left by a run that stopped after its swap, before its foreign keys validated.
ORIGINAL_COMMENT = "pgsafe: the original of {0} before the copy and swap of run {1}"
LEFT_ORIGINALS_SQL = """
SELECT n.nspname, c.relname, d.description FROM pg_catalog.pg_description d
  JOIN pg_catalog.pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND d.description LIKE 'pgsafe: the original of %%' ORDER BY 1, 2
"""


def left_originals(cur):
    """[{schema, table, comment}] of original tables a copy-and-swap run left behind (stopped after its swap)."""
    cur.execute(LEFT_ORIGINALS_SQL)
    return [{"schema": r[0], "table": r[1], "comment": r[2]} for r in cur.fetchall()]


def left_original_hazards(originals):
    """One hazard line per original left behind, with what to do (never dropped by pgsafe on its own: it holds the
    rows as they were before that run's change)."""
    return ["table {0} is {1}, left because that run stopped after the swap: check the change (validation), then "
            "drop it: DROP TABLE {0};".format(qualified(o["schema"], o["table"]), o["comment"][len("pgsafe: "):])
            for o in originals]


def log_table_name(oid):
    return "copy_log_{0}".format(oid)


def log_function_name(oid):
    return "copy_log_fn_{0}".format(oid)


TABLE_FACTS_SQL = """
SELECT c.relkind::text, c.relpersistence::text, c.reltablespace <> 0, c.relrowsecurity OR c.relforcerowsecurity,
       c.relispartition, c.reloftype <> 0, c.relhassubclass OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid),
       c.relreplident::text, pg_has_role(c.relowner, 'MEMBER'), pg_get_userbyid(c.relowner),
       ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             AND (a.attacl IS NOT NULL OR coalesce(a.attstattarget::int, -1) >= 0 OR a.attoptions IS NOT NULL
                  OR a.attidentity <> '' OR a.attgenerated <> '' OR a.attfdwoptions IS NOT NULL) ORDER BY a.attnum),
       c.reloptions, obj_description(c.oid, 'pg_class'),
       ARRAY(SELECT x.relname::text FROM pg_index ix JOIN pg_class x ON x.oid = ix.indexrelid WHERE ix.indrelid = c.oid
             AND (x.reltablespace <> 0 OR obj_description(x.oid, 'pg_class') IS NOT NULL OR NOT ix.indisvalid
                  OR ix.indisclustered))
  FROM pg_class c WHERE c.oid = %s
"""
# Everything that depends on the table, with what is needed to decide on it.
DEPENDS_SQL = """
SELECT d.classid::regclass::text, d.deptype::text, pg_describe_object(d.classid, d.objid, d.objsubid),
       CASE d.classid
         WHEN 'pg_class'::regclass THEN (SELECT x.relkind::text FROM pg_class x WHERE x.oid = d.objid)
         WHEN 'pg_constraint'::regclass THEN (SELECT x.contype::text || CASE WHEN x.condeferrable THEN 'd' ELSE '' END
                                               FROM pg_constraint x WHERE x.oid = d.objid)
         WHEN 'pg_trigger'::regclass THEN (SELECT CASE WHEN x.tgisinternal THEN '' ELSE x.tgname END
                                            FROM pg_trigger x WHERE x.oid = d.objid)
         WHEN 'pg_rewrite'::regclass THEN (SELECT CASE WHEN r.ev_class = d.refobjid THEN '' ELSE n.nspname || '.' ||
                                                  v.relname END FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class
                                            JOIN pg_namespace n ON n.oid = v.relnamespace WHERE r.oid = d.objid)
       END,
       (SELECT jsonb_build_array(n.nspname, t.relname, x.conname) FROM pg_constraint x JOIN pg_class t ON t.oid = x.conrelid
          JOIN pg_namespace n ON n.oid = t.relnamespace WHERE d.classid = 'pg_constraint'::regclass AND x.oid = d.objid)
  FROM pg_depend d
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %s
 ORDER BY 3
"""


def read_copy_facts(cur, tables):
    """{(schema, table): facts} of every table given (``tables``: the plan's facts, with oid), read only."""
    out = {}
    for key, t in tables.items():
        cur.execute(TABLE_FACTS_SQL, (t["oid"],))
        row = cur.fetchone()
        if row is None:
            continue
        cur.execute(DEPENDS_SQL, (t["oid"],))
        deps = [{"class": r[0], "deptype": r[1], "object": r[2], "detail": r[3],
                 "constraint": tuple(r[4]) if r[4] else None} for r in cur.fetchall()]
        out[key] = {"relkind": row[0], "persistence": row[1], "tablespace": row[2], "rls": row[3],
                    "partition": row[4], "typed": row[5], "inheritance": row[6], "replident": row[7],
                    "owner_member": row[8], "owner": row[9], "special_columns": list(row[10]),
                    "reloptions": list(row[11] or []), "comment": row[12], "odd_indexes": list(row[13]),
                    "depends": deps}
    return out


def _table_blockers(f):
    why = []
    if f["relkind"] != "r":
        why.append("it is not a plain table (relkind {0})".format(f["relkind"]))
    if f["partition"] or f["inheritance"]:
        why.append("it has a parent or children (partitions or inheritance)")
    if f["typed"]:
        why.append("it is a typed table")
    if f["persistence"] != "p":
        why.append("it is unlogged or temporary")
    if f["tablespace"]:
        why.append("it is in a tablespace of its own")
    if f["rls"]:
        why.append("row-level security is enabled on it")
    if not f["owner_member"]:
        why.append("the login is not a member of its owner {0} (the new table could not be given to it)".format(
            f["owner"]))
    if f["special_columns"]:
        why.append("column(s) {0} have privileges, options, a statistics target, identity or a generation "
                   "expression".format(", ".join(f["special_columns"])))
    if f["odd_indexes"]:
        why.append("index(es) {0} have a comment, a tablespace, are invalid or are the CLUSTER index".format(
            ", ".join(f["odd_indexes"])))
    return why


def _dependent_blocker(dep, recreated_fks, views):
    """Why the copy cannot carry ``dep`` over (None when it can)."""
    cls, detail = dep["class"], dep["detail"]
    if cls == "pg_type" or (cls == "pg_class" and detail in ("t", "i", "S")) or cls == "pg_attrdef":
        return None  # row type, TOAST table, indexes (rebuilt), owned sequences (moved), defaults (copied)
    if cls == "pg_constraint":
        if detail in ("p", "u", "c"):
            return None  # keys rebuilt from their indexes, checks copied
        if detail == "f" and dep["constraint"] in recreated_fks:
            return None  # dropped and re-created around the swap by the plan
        what = {"f": "foreign key", "x": "exclusion constraint", "t": "constraint trigger"}.get(detail[:1], "constraint")
        if detail.endswith("d"):
            what = "deferrable " + what
        return "{0} {1} (not re-created by this plan)".format(what, dep["object"])
    if cls == "pg_trigger":
        if detail in ("", LOG_TRIGGER, TRUNCATE_TRIGGER, SHADOW_COLUMN_TRIGGER):
            return None
        return "user trigger {0}".format(detail)
    if cls == "pg_rewrite":
        if detail and detail in views:
            return None  # dropped and re-created in the swap by the plan
        return "rule {0}".format(dep["object"]) if not detail else "view {0} (not re-created by this plan)".format(detail)
    kinds = {"pg_policy": "row-level security policy", "pg_publication_rel": "publication membership",
             "pg_statistic_ext": "extended statistics", "pg_proc": "function", "pg_class": "relation"}
    return "{0} {1}".format(kinds.get(cls, "dependent of a kind pgsafe does not know"), dep["object"])


def copy_blockers(key, copy_facts, plan):
    """Why the copy-and-swap method cannot carry table ``key`` over, each naming the object (empty: it can)."""
    f = copy_facts.get(key)
    if f is None:
        return ["its catalog facts were not read"]
    recreated = {(d["schema"], d["table"], d["name"]) for d in plan["drop_fks"]}
    views = {"{0}.{1}".format(v["schema"], v["name"]) for v in plan["views"]}
    why = _table_blockers(f)
    for dep in f["depends"]:
        line = _dependent_blocker(dep, recreated, views)
        if line and line not in why:
            why.append(line)
    return why


COPY_VERSION = 140000  # TID range scans: each block range of the copy read without a scan of the whole table


def choose_methods(plan, tables, copy_facts, server_version=COPY_VERSION, requested="auto"):
    """{qualified table: {method, reason}} for each table the online strategy converts: copy and swap when it is
    safe, else the shadow-column method, with the reason (the objects the copy would not carry over)."""
    out = {}
    for c in plan["changes"]:
        if not c["needs_type"]:
            continue
        key = (c["schema"], c["table"])
        name = qualified(*key)
        if name in out:
            continue
        if any(x["leftover_new_column"] for x in plan["changes"] if (x["schema"], x["table"]) == key):
            out[name] = {"method": COLUMNS, "reason": "resuming an interrupted shadow-column run"}
            continue
        if requested == "shadow_columns":
            out[name] = {"method": COLUMNS, "reason": "online_method shadow_columns"}
            continue
        if not tables[key]["pk"]:
            out[name] = {"method": COLUMNS, "reason": "no primary key"}
            continue
        if server_version < COPY_VERSION:
            out[name] = {"method": COLUMNS, "reason": "the server is older than PostgreSQL 14 (no TID range scans)"}
            continue
        if any(x["using"] and x["column"] in tables[key]["pk"] for x in plan["changes"]
               if (x["schema"], x["table"]) == key and x["needs_type"]):
            out[name] = {"method": COLUMNS, "reason": "a using expression on a primary key column"}
            continue
        why = copy_blockers(key, copy_facts, plan)
        out[name] = ({"method": COLUMNS, "reason": "copy and swap would not carry over: " + "; ".join(why)} if why
                     else {"method": COPY, "reason": "every dependent is carried over by the copy"})
    return out


def method_steps(methods):
    """The plan's step lines, one per table."""
    out = []
    for name, m in methods.items():
        if m["method"] == COPY:
            out.append("online {0}: copy and swap (change log by trigger, rows copied in block ranges to a new "
                       "table, its indexes built once, log replayed, verified, tables swapped by renames; the old "
                       "table dropped after validation)".format(name))
        else:
            out.append("online {0}: shadow columns ({1})".format(name, m["reason"]))
    return out


def method_statements(methods):
    """The statements' lines naming each table's method (part of the plan's statements fingerprint)."""
    return ["-- online {0}: {1}".format(name, m["method"]) for name, m in methods.items()]
