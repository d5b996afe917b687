# -*- coding: utf-8 -*-
"""Schema removal: list what is inside, find everything outside that depends on it, drop RESTRICT.

For each schema of the plan (dev: ``auth``, ``pgrst``, ``neon_auth``):

* every object inside is listed (tables with their row counts, views, sequences, functions, types, ...);
* every dependency from outside is found: recorded ones (pg_depend: views, column defaults, RLS
  policies, constraints, functions with SQL-standard bodies, columns typed with its types ...), and
  textual ones Postgres does not record: function bodies, view definitions, column defaults and
  policy expressions in other schemas that mention ``schema.``, and roles or databases whose
  ``search_path`` names it.  Grants on the schema and default privileges are listed (they go with it);
* a schema with outside dependents is refused (unless the plan lists it in ``allow_dependents``: only
  textual references can be accepted that way, recorded ones still make the RESTRICT drop fail);
  a schema the login may not drop (owned by another role) is refused the same way.  Schemas being
  removed together may depend on each other; a blocked schema blocks those that depend on it;
* the drop is ``DROP <object> ... RESTRICT`` of the schema's own objects in dependency order, then
  ``DROP SCHEMA ... RESTRICT``; CASCADE is never used.  A blocked schema blocks that schema only:
  the others proceed only if the plan says so (``independent``), otherwise nothing is dropped.

The backup of the schemas (restore-tested) is taken by the role before; its id is recorded in the
journal with every drop so that ``playbooks/restore.yml`` can bring a schema back.
"""
from __future__ import annotations

import re

from ansible.module_utils.pgsafe_identifiers import qualified, quote_ident
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS, journal

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


class SchemaRemovalError(Exception):
    """The removal cannot go ahead; the message names the schema, the dependents and the fix."""


def _sql():
    from psycopg2 import sql
    return sql


def mentions_schema(text, schema):
    """True when ``text`` refers to an object of ``schema`` (``auth.user_id()``, ``"auth".x``, ``AUTH . x``)."""
    if not text:
        return False
    quoted = re.escape('"' + schema.replace('"', '""') + '"')
    patterns = [r'(?<![A-Za-z0-9_$"])' + quoted + r'\s*\.']
    if re.match(r"^[a-z_][a-z0-9_$]*$", schema):
        patterns.append(r'(?<![A-Za-z0-9_$".])' + re.escape(schema) + r'\s*\.\s*["A-Za-z_]')
    return any(re.search(p, text, flags=re.IGNORECASE if i else 0) for i, p in enumerate(patterns))


def search_path_mentions(setting, schema):
    """Whether a ``search_path`` value (``"$user", auth, public``) names ``schema``."""
    for raw in (setting or "").split(","):
        part = raw.strip()
        if part.startswith('"') and part.endswith('"'):
            if part[1:-1].replace('""', '"') == schema:
                return True
        elif part.lower() == schema.lower() and part == part.lower():
            return True
        elif part == schema:
            return True
    return False


# --------------------------------------------------------------------------- catalog
_INSIDE_SQL = """
SELECT 'pg_class'::regclass::oid, c.oid, CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table'
            WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
            WHEN 'f' THEN 'foreign table' WHEN 'c' THEN 'type' ELSE c.relkind::text END,
       c.relname, pg_get_userbyid(c.relowner), c.relkind::text
  FROM pg_class c WHERE c.relnamespace = %(ns)s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.deptype IN ('a', 'i', 'e') AND d.refclassid = 'pg_class'::regclass
                    AND c.relkind = 'S')
   AND NOT (c.relispartition)
UNION ALL
SELECT 'pg_proc'::regclass::oid, p.oid, CASE p.prokind WHEN 'a' THEN 'aggregate' WHEN 'p' THEN 'procedure'
            ELSE 'function' END,
       p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', pg_get_userbyid(p.proowner),
       p.prokind::text
  FROM pg_proc p WHERE p.pronamespace = %(ns)s
UNION ALL
SELECT 'pg_type'::regclass::oid, t.oid, CASE t.typtype WHEN 'd' THEN 'domain' ELSE 'type' END, t.typname,
       pg_get_userbyid(t.typowner), t.typtype::text
  FROM pg_type t WHERE t.typnamespace = %(ns)s AND t.typtype IN ('d', 'e', 'r', 'b', 'm')
   AND t.typelem = 0 AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                                      AND d.objid = t.oid AND d.deptype IN ('i', 'e'))
UNION ALL
SELECT 'pg_operator'::regclass::oid, o.oid, 'operator', o.oprname, pg_get_userbyid(o.oprowner), ''
  FROM pg_operator o WHERE o.oprnamespace = %(ns)s
UNION ALL
SELECT 'pg_collation'::regclass::oid, o.oid, 'collation', o.collname, pg_get_userbyid(o.collowner), ''
  FROM pg_collation o WHERE o.collnamespace = %(ns)s
UNION ALL
SELECT 'pg_extension'::regclass::oid, e.oid, 'extension', e.extname, pg_get_userbyid(e.extowner), ''
  FROM pg_extension e WHERE e.extnamespace = %(ns)s
"""


def schema_info(cur, schema):
    cur.execute("SELECT n.oid, pg_get_userbyid(n.nspowner), n.nspacl::text[], "
                "pg_has_role(current_user, n.nspowner, 'USAGE') OR "
                "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
                "FROM pg_namespace n WHERE n.nspname = %s", (schema,))
    row = cur.fetchone()
    if row is None:
        return None
    return {"oid": row[0], "owner": row[1], "acl": list(row[2] or []), "can_drop": bool(row[3])}


def objects_inside(cur, schema_oid):
    """Objects of the schema that are dropped explicitly (parts such as indexes go with their table)."""
    cur.execute(_INSIDE_SQL, {"ns": schema_oid})
    rows = cur.fetchall()
    # Extension members go with their extension.
    cur.execute("SELECT classid, objid FROM pg_depend WHERE deptype = 'e'")
    members = {(r[0], r[1]) for r in cur.fetchall()}
    out = []
    for classid, objid, kind, name, owner, sub in rows:
        if (classid, objid) in members:
            continue
        out.append({"classid": classid, "objid": objid, "kind": kind, "name": name, "owner": owner, "sub": sub})
    return out


_OWNER_OF = """
SELECT CASE
    WHEN %(classid)s = 'pg_class'::regclass THEN %(objid)s::oid
    WHEN %(classid)s = 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = %(objid)s)
    WHEN %(classid)s = 'pg_constraint'::regclass THEN
         coalesce(nullif((SELECT conrelid FROM pg_constraint WHERE oid = %(objid)s), 0),
                  (SELECT contypid FROM pg_constraint WHERE oid = %(objid)s))
    WHEN %(classid)s = 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = %(objid)s)
    WHEN %(classid)s = 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = %(objid)s)
    WHEN %(classid)s = 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = %(objid)s)
    ELSE %(objid)s::oid END
"""


def _identify(cur, classid, objid, objsubid=0):
    cur.execute("SELECT type, schema, identity FROM pg_identify_object(%s, %s, %s)", (classid, objid, objsubid))
    row = cur.fetchone()
    return {"type": row[0], "schema": row[1], "identity": row[2]}


def _object_schema(cur, classid, objid):
    """Schema of an object, via its owning relation/type for sub-objects (defaults, constraints, policies...)."""
    cur.execute(_OWNER_OF, {"classid": classid, "objid": objid})
    owner = cur.fetchone()[0]
    cur.execute("SELECT (CASE WHEN %(classid)s IN ('pg_attrdef'::regclass, 'pg_trigger'::regclass, "
                "'pg_policy'::regclass, 'pg_rewrite'::regclass) OR (%(classid)s = 'pg_constraint'::regclass "
                "AND (SELECT conrelid FROM pg_constraint WHERE oid = %(objid)s) <> 0) "
                "THEN 'pg_class'::regclass::oid WHEN %(classid)s = 'pg_constraint'::regclass THEN 'pg_type'::regclass::oid "
                "ELSE %(classid)s::oid END)::oid", {"classid": classid, "objid": objid})
    owner_class = cur.fetchone()[0]
    ident = _identify(cur, owner_class, owner)
    return ident["schema"], owner_class, owner


def outside_dependents(cur, schema, inside, removing=()):
    """Objects outside ``schema`` (and outside the other schemas being removed) that depend on it."""
    inside_keys = {(o["classid"], o["objid"]) for o in inside}
    removing = set(removing) | {schema}
    found = _recorded_dependents(cur, schema, inside_keys, removing) if inside_keys else []
    found += _code_references(cur, schema, removing, found)
    found += _setting_references(cur, schema, removing, found)
    return found


def _recorded_dependents(cur, schema, inside_keys, removing):
    """Dependencies pg_depend records on the schema's objects, from objects outside the schemas being removed."""
    found = []
    cur.execute("""
        SELECT DISTINCT d.classid, d.objid, d.objsubid, d.refclassid, d.refobjid,
               pg_describe_object(d.classid, d.objid, d.objsubid),
               pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
          FROM pg_depend d
         WHERE d.deptype IN ('n', 'a')
           AND (d.refclassid, d.refobjid) IN (SELECT * FROM unnest(%s::oid[], %s::oid[]))
    """, ([k[0] for k in inside_keys], [k[1] for k in inside_keys]))
    rows = cur.fetchall()
    # Parts of inside objects (a table's rowtype, an owned sequence ...) reference inside objects too.
    cur.execute("""
        SELECT d.classid, d.objid, d.objsubid, d.refclassid, d.refobjid,
               pg_describe_object(d.classid, d.objid, d.objsubid),
               pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
          FROM pg_depend d JOIN pg_type t ON d.refclassid = 'pg_type'::regclass AND d.refobjid = t.oid
         WHERE d.deptype IN ('n', 'a') AND t.typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = %s)
    """, (schema,))
    rows += cur.fetchall()
    seen = set()
    for classid, objid, _sub, _rc, _ro, desc, refdesc in rows:
        if (classid, objid, desc) in seen:
            continue
        seen.add((classid, objid, desc))
        dep_schema, _oc, _oo = _object_schema(cur, classid, objid)
        if dep_schema in removing or dep_schema is None and (classid, objid) in inside_keys:
            continue
        if dep_schema is None:
            ident = _identify(cur, classid, objid)
            if ident["type"] in ("extension",) or ident["schema"] in removing:
                continue
        found.append({"kind": "recorded dependency", "object": desc, "schema": dep_schema,
                      "description": "{0} depends on {1}".format(desc, refdesc), "blocking": True,
                      "recorded": True})
    return found


def _code_references(cur, schema, removing, recorded):
    """Function bodies and view definitions that name the schema (textual references Postgres does not record)."""
    found = list(recorded)
    cur.execute("""
        SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.prosrc
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname <> ALL(%s) AND p.prosrc ILIKE %s
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                            AND e.deptype = 'e')
    """, (list(SYSTEM_SCHEMAS) + list(removing), "%" + schema.replace("\\", "\\\\").replace("%", "\\%")
          .replace("_", "\\_") + "%"))
    for fschema, fsig, body in cur.fetchall():
        if mentions_schema(body, schema):
            obj = "{0}.{1}".format(quote_ident(fschema), fsig)
            if not any(d["object"].endswith(fsig) and d.get("recorded") for d in found):
                found.append({"kind": "function body", "object": obj, "schema": fschema, "blocking": True,
                              "description": "function {0} calls into {1} in its body".format(obj, schema),
                              "recorded": False})
    cur.execute("""
        SELECT n.nspname, c.relname, pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('v', 'm') AND n.nspname <> ALL(%s)
    """, (list(SYSTEM_SCHEMAS) + list(removing),))
    for vschema, vname, definition in cur.fetchall():
        if mentions_schema(definition, schema) and not any(d.get("recorded") and vname in d["object"] for d in found):
            found.append({"kind": "view", "object": qualified(vschema, vname), "schema": vschema, "blocking": True,
                          "description": "view {0} refers to {1}".format(qualified(vschema, vname), schema),
                          "recorded": False})
    return found[len(recorded):]


def _setting_references(cur, schema, removing, recorded):
    """Column defaults, RLS policies and role search_path settings that name the schema."""
    found = list(recorded)
    cur.execute("""
        SELECT n.nspname, c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
         WHERE n.nspname <> ALL(%s)
    """, (list(SYSTEM_SCHEMAS) + list(removing),))
    for tschema, tname, col, expr in cur.fetchall():
        if mentions_schema(expr, schema) and not any(d.get("recorded") and "default" in d["object"]
                                                     and tname in d["object"] for d in found):
            found.append({"kind": "column default", "object": "{0}.{1}".format(qualified(tschema, tname),
                                                                               quote_ident(col)),
                          "schema": tschema, "blocking": True, "recorded": False,
                          "description": "default of {0}.{1} is {2}".format(qualified(tschema, tname), col, expr)})
    cur.execute("""
        SELECT schemaname, tablename, policyname, coalesce(qual, '') || ' ' || coalesce(with_check, '')
          FROM pg_policies WHERE schemaname <> ALL(%s)
    """, (list(SYSTEM_SCHEMAS) + list(removing),))
    for pschema, ptable, pname, expr in cur.fetchall():
        if mentions_schema(expr, schema) and not any(d.get("recorded") and pname in d["object"] for d in found):
            found.append({"kind": "policy", "object": "policy {0} on {1}".format(pname, qualified(pschema, ptable)),
                          "schema": pschema, "blocking": True, "recorded": False,
                          "description": "RLS policy {0} on {1} uses {2}".format(pname, qualified(pschema, ptable),
                                                                                expr.strip())})
    cur.execute("""
        SELECT coalesce(r.rolname, '(every role)'), coalesce(db.datname, '(every database)'), cfg
          FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
          LEFT JOIN pg_database db ON db.oid = s.setdatabase, unnest(s.setconfig) cfg
         WHERE cfg ILIKE 'search_path=%%'
    """)
    for role, dbname, cfg in cur.fetchall():
        if search_path_mentions(cfg.split("=", 1)[1], schema):
            found.append({"kind": "search_path", "object": "role {0} in database {1}".format(role, dbname),
                          "schema": None, "blocking": True, "recorded": False,
                          "description": "role {0} (database {1}) has {2}".format(role, dbname, cfg)})
    return found[len(recorded):]


def informational(cur, schema, info):
    """Grants on the schema and default privileges in it: listed, they go with the schema."""
    notes = ["grant on schema: " + acl for acl in info["acl"]]
    cur.execute("SELECT pg_get_userbyid(defaclrole), defaclobjtype::text, defaclacl::text FROM pg_default_acl "
                "WHERE defaclnamespace = %s", (info["oid"],))
    notes += ["default privileges of {0} for objtype {1}: {2}".format(*r) for r in cur.fetchall()]
    return notes


def _count_rows(cur, schema, table):
    """Exact row count, or a note when the login may not read the table (the plan goes on)."""
    sql = _sql()
    cur.execute("SAVEPOINT pgsafe_count")
    try:
        cur.execute(sql.SQL("SELECT count(*) FROM {0}.{1}").format(sql.Identifier(schema), sql.Identifier(table)))
        rows = cur.fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - e.g. permission denied: reported, not fatal to the plan
        cur.execute("ROLLBACK TO SAVEPOINT pgsafe_count")
        rows = "unknown ({0})".format(str(exc).splitlines()[0])
    cur.execute("RELEASE SAVEPOINT pgsafe_count")
    return rows


def plan(cur, schemas, allow_dependents=(), independent=False):
    """Per schema: objects, outside dependents, verdict (remove / blocked / converged)."""
    allow = set(allow_dependents or [])
    entries = {}
    for schema in schemas:
        if schema in PRODUCT_SCHEMAS or schema in SYSTEM_SCHEMAS or schema == "public":
            raise SchemaRemovalError("refusing to remove schema {0}: it is a system, product or the public "
                                     "schema".format(quote_ident(schema)))
        info = schema_info(cur, schema)
        if info is None:
            entries[schema] = {"schema": schema, "action": "converged", "reason": "schema does not exist",
                               "objects": [], "dependents": [], "notes": []}
            continue
        inside = objects_inside(cur, info["oid"])
        objects = []
        for o in inside:
            entry = {"kind": o["kind"], "name": "{0}.{1}".format(quote_ident(schema), o["name"])
                     if o["kind"] in ("function", "procedure", "aggregate") else qualified(schema, o["name"]),
                     "owner": o["owner"]}
            if o["kind"] == "table":
                entry["rows"] = _count_rows(cur, schema, o["name"])
            objects.append(entry)
        entries[schema] = {"schema": schema, "owner": info["owner"], "can_drop": info["can_drop"],
                           "objects": objects, "inside": inside, "info": info,
                           "notes": informational(cur, schema, info)}
    present = [s for s in schemas if entries[s].get("inside") is not None]
    removing = set(present)
    # Fixpoint: a blocked schema is no longer "removed together" for the others.
    while True:
        changed = False
        for schema in present:
            entry = entries[schema]
            deps = outside_dependents(cur, schema, entry["inside"], removing=removing - {schema})
            entry["dependents"] = deps
            reasons = []
            if not entry["can_drop"]:
                reasons.append("the login may not drop it: schema owned by {0} (connect as {0} or a member of it, "
                               "or a superuser)".format(entry["owner"]))
            blockers = [d for d in deps if d["blocking"] and (schema not in allow or d["recorded"])]
            if blockers:
                reasons.append("outside dependents: " + "; ".join(d["description"] for d in blockers))
            action = "blocked" if reasons else "remove"
            if action == "blocked" and schema in removing:
                removing.discard(schema)
                changed = True
            entry["action"] = action
            entry["reason"] = " | ".join(reasons) if reasons else "{0} objects, no outside dependents{1}".format(
                len(entry["objects"]), " (textual references accepted by allow_dependents)"
                if schema in allow and deps else "")
        if not changed:
            break
    blocked = [s for s in schemas if entries[s]["action"] == "blocked"]
    if blocked and not independent:
        for schema in schemas:
            if entries[schema]["action"] == "remove":
                entries[schema]["action"] = "held"
                entries[schema]["reason"] = ("independent of {0}, but held back: the plan does not allow "
                                             "independent schemas to proceed".format(", ".join(blocked)))
    return [entries[s] for s in schemas]


# --------------------------------------------------------------------------- drop
def drop_order(cur, inside):
    """Inside objects ordered so that dependents come first (Kahn over pg_depend, parts mapped to owners)."""
    keys = {(o["classid"], o["objid"]): o for o in inside}
    edges = {k: set() for k in keys}  # k -> objects that must be dropped before k
    if keys:
        cur.execute("""
            SELECT d.classid, d.objid, d.refclassid, d.refobjid FROM pg_depend d
             WHERE d.deptype = 'n' AND (d.refclassid, d.refobjid) IN (SELECT * FROM unnest(%s::oid[], %s::oid[]))
        """, ([k[0] for k in keys], [k[1] for k in keys]))
        for classid, objid, refclassid, refobjid in cur.fetchall():
            cur.execute(_OWNER_OF, {"classid": classid, "objid": objid})
            owner = cur.fetchone()[0]
            dep_class = classid
            if classid in _sub_classes(cur):
                cur.execute("SELECT 'pg_class'::regclass::oid")
                dep_class = cur.fetchone()[0]
            dep = (dep_class, owner)
            ref = (refclassid, refobjid)
            if dep in keys and dep != ref:
                edges[ref].add(dep)
    order, done = [], set()
    pending = list(keys)
    while pending:
        progress = False
        for k in list(pending):
            if edges[k] - done - {k}:
                continue
            order.append(keys[k])
            done.add(k)
            pending.remove(k)
            progress = True
        if not progress:  # a cycle: drop the rest in catalog order; RESTRICT still guards
            order.extend(keys[k] for k in pending)
            break
    return order


_SUB_CACHE = {}


def _sub_classes(cur):
    if "v" not in _SUB_CACHE:
        cur.execute("SELECT array['pg_attrdef'::regclass::oid, 'pg_trigger'::regclass::oid, "
                    "'pg_policy'::regclass::oid, 'pg_rewrite'::regclass::oid, 'pg_constraint'::regclass::oid]")
        _SUB_CACHE["v"] = set(cur.fetchone()[0])
    return _SUB_CACHE["v"]


def drop_statement(cur, schema, obj):
    sql = _sql()
    kind = obj["kind"]
    if kind in ("function", "procedure", "aggregate"):
        cur.execute("SELECT format('%%s %%I.%%I(%%s) RESTRICT', %s, n.nspname, p.proname, "
                    "pg_get_function_identity_arguments(p.oid)) FROM pg_proc p JOIN pg_namespace n "
                    "ON n.oid = p.pronamespace WHERE p.oid = %s", (
                        {"function": "DROP FUNCTION", "procedure": "DROP PROCEDURE",
                         "aggregate": "DROP AGGREGATE"}[kind], obj["objid"]))
        return sql.SQL(cur.fetchone()[0])
    if kind == "operator":
        cur.execute("SELECT format('DROP OPERATOR %%s RESTRICT', %s::regoperator)", (obj["objid"],))
        return sql.SQL(cur.fetchone()[0])
    word = {"table": "TABLE", "view": "VIEW", "materialized view": "MATERIALIZED VIEW", "sequence": "SEQUENCE",
            "foreign table": "FOREIGN TABLE", "type": "TYPE", "domain": "DOMAIN", "collation": "COLLATION",
            "extension": "EXTENSION"}.get(kind)
    if word is None:
        raise SchemaRemovalError("do not know how to drop {0} {1} in schema {2}: drop it by hand, then re-run".format(
            kind, obj["name"], schema))
    if kind == "extension":
        return sql.SQL("DROP EXTENSION {0} RESTRICT").format(sql.Identifier(obj["name"]))
    return sql.SQL("DROP " + word + " {0}.{1} RESTRICT").format(sql.Identifier(schema), sql.Identifier(obj["name"]))


def record_dropped_tables(cur, run_id, entry, backup_id):
    """Fingerprint each table of the schema right before the drop and record it as a planned drop.

    The run's integrity check (pgsafe_fingerprint_compare) then accepts the table's absence only
    because its rows and content hash equal the pre-run fingerprint and a verified backup holds them.
    """
    from ansible.module_utils.pgsafe_fingerprint import fingerprint_in_transaction, record_explanation
    from ansible.module_utils.pgsafe_identifiers import table_key
    from ansible.module_utils.pgsafe_identifiers import split_qualified
    keys = [table_key(*split_qualified(o["name"])) for o in entry["objects"] if o.get("kind") == "table"]
    if not keys or not backup_id:
        return
    for key, fp in fingerprint_in_transaction(cur, tables=keys).items():
        record_explanation(cur, run_id, {"kind": "drop", "table": key, "rows": fp["rows"], "hash": fp["hash"],
                                         "backup_id": backup_id})


def removal_statements(cur, entry):
    """The statements that remove one planned schema, in order, as text (what remove_schema runs)."""
    sql = _sql()
    statements = [drop_statement(cur, entry["schema"], obj).as_string(cur) for obj in drop_order(cur, entry["inside"])]
    statements.append(sql.SQL("DROP SCHEMA {0} RESTRICT").format(sql.Identifier(entry["schema"])).as_string(cur))
    return statements


def remove_schema(cur, run_id, entry, backup_id=None):
    """Drop one planned schema inside the caller's transaction (objects RESTRICT, then the schema RESTRICT)."""
    schema = entry["schema"]
    record_dropped_tables(cur, run_id, entry, backup_id)
    statements = removal_statements(cur, entry)
    for stmt in statements:
        cur.execute(stmt)
    journal(cur, run_id, "schema_removal", "completed", quote_ident(schema),
            {"backup_id": backup_id, "objects": entry["objects"], "statements": statements,
             "restore": "playbooks/restore.yml with the backup {0} (object schema:{1})".format(backup_id, schema)})
    return statements
