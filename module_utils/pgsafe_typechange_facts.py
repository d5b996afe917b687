# -*- coding: utf-8 -*-
"""Catalog facts of a type change unit: the tables named by the changes and FKs, their FKs, dependent views and
every other dependent of a column whose type changes (pgsafe_typechange_dependents).

Read-only; works inside the caller's READ ONLY transaction.  The shape is what ``build_plan`` reads.
"""
from __future__ import annotations

import re

from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_typechange_dependents import read_dependents
from ansible.module_utils.pgsafe_typechange_parse import FK_ACTIONS, TypeChangeError

def gather_facts(cur, changes, fks):
    """Catalog facts of every table named by the changes and FKs (and FKs pointing at them)."""
    keys = []
    for c in changes:
        keys.append((c["schema"], c["table"]))
    for f in fks:
        keys += [(f["schema"], f["table"]), (f["ref_schema"], f["ref_table"])]
    keys = list(dict.fromkeys(keys))
    cur.execute("SELECT current_setting('server_version_num')::int")
    facts = {"server_version_num": cur.fetchone()[0], "tables": {}, "fks": [], "views": [], "dependents": []}
    oids = {}
    for schema, table in keys:
        cur.execute("SELECT c.oid, pg_total_relation_size(c.oid), c.relkind FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        row = cur.fetchone()
        if row is None or row[2] not in ("r", "p"):
            continue
        oid = row[0]
        oids[oid] = (schema, table)
        t = _table_facts(cur, oid)
        facts["tables"][(schema, table)] = {"oid": oid, "columns": t["columns"], "pk": t["pk"], "size_bytes": row[1],
                                            "indexes": t["indexes"], "checks": t["checks"], "triggers": t["triggers"],
                                            "relkind": row[2]}
    if oids:
        facts["fks"] = _fk_facts(cur, oids)
        facts["views"] = _view_facts(cur, facts, oids)
        facts["dependents"] = read_dependents(cur, facts["tables"], changes)
    return facts


def _table_facts(cur, oid):
    """Columns, primary key, indexes, check constraints and triggers of one table."""
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
    return {"columns": cols, "pk": pk, "indexes": indexes, "checks": checks, "triggers": triggers}


def _fk_facts(cur, oids):
    """Foreign keys from or to the tables (oid -> key)."""
    fks = []
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
        fks.append({"name": r[0], "schema": r[1], "table": r[2], "ref_schema": r[3], "ref_table": r[4],
                             "columns": list(r[5]), "ref_columns": list(r[6]), "on_delete": FK_ACTIONS[r[7]],
                             "on_update": FK_ACTIONS[r[8]], "validated": r[9],
                             "definition": r[10].replace(" NOT VALID", "")})
    return fks


def _view_facts(cur, facts, oids):
    """Views on the tables' columns, with their definition, owner, options, comment and grants."""
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
                      AND d.refobjid = ANY(%s) AND v.oid <> d.refobjid
                      AND r.rulename = '_RETURN' AND v.relkind IN ('v', 'm')""", (list(oids),))
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
    return list(views.values())


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
