# -*- coding: utf-8 -*-
"""Safe drop: retire tables into the quarantine schema, restore them, purge them after retention.

A table is retired only when
  * an exact ``count(*)`` says it is empty, or equals the count the plan declared, re-checked under
    ACCESS EXCLUSIVE inside the very transaction that moves it (a row that lands after planning
    makes the table "skipped", reported with its row count, whatever the plan says);
  * nothing that stays depends on it: inbound FKs from tables that stay, views, policies, column
    defaults or triggers of other tables, rows of other tables typed with its row type, functions
    whose dependency is recorded (pg_depend) or whose body merely mentions the name (prosrc search),
    and sequences it owns that other tables use;
  * the backup guard has its backup (the role runs the guard before calling the module).

Retiring is ``ALTER TABLE ... RENAME`` + ``SET SCHEMA pgsafe_quarantine`` under a collision-free derived
name, recorded in ``pgsafe.quarantined_object`` with ``retain_until``, so one step
(:func:`restore_table`) puts it back.  Purging (after retention, after a final per-table dump) is
``DROP TABLE ... RESTRICT``: CASCADE is never used anywhere in this file.

Plain Python over a DB-API cursor; identifiers through psycopg2.sql, values as parameters.
"""
from __future__ import annotations

import json
import re

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified, split_qualified
from ansible.module_utils.pgsafe_locks import lock_statements, lock_tables
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS, QUARANTINE_SCHEMA, journal
from ansible.module_utils.pgsafe_partitions import partition_tree

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
DEFAULT_RETENTION_DAYS = 30


class RetireError(Exception):
    """A retire/restore/purge request cannot be carried out; the message names the object and the fix."""


def _sql():
    from psycopg2 import sql  # imported lazily: unit tests of the pure helpers need no driver
    return sql


# --------------------------------------------------------------------------- pure helpers
def mentions(text, name):
    """True when ``text`` (a function body, a view definition) mentions the identifier ``name``.

    Case-insensitive (unquoted identifiers fold to lower case), and only as a whole identifier:
    ``bazaar-vid_patch`` is not mentioned by ``bazaar-vid_patches``.  Quoted spellings with doubled
    quotes are recognised too.
    """
    if not text or not name:
        return False
    spellings = {name, name.replace('"', '""')}
    for spelling in spellings:
        pattern = r"(?<![A-Za-z0-9_$])" + re.escape(spelling) + r"(?![A-Za-z0-9_$])"
        if re.search(pattern, text, flags=re.IGNORECASE):
            return True
    return False


def like_pattern(name):
    """A LIKE/ILIKE pattern matching any text containing ``name`` literally (wildcards escaped)."""
    return "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def normalize_table_spec(item, default_schema="public"):
    """A plan entry (``"name"``, ``"schema.name"`` or ``{name, schema, expected_rows}``) as a dict."""
    if isinstance(item, str):
        schema, name = split_qualified(item, default_schema)
        return {"schema": schema, "name": name, "expected_rows": 0}
    if not isinstance(item, dict) or not item.get("name"):
        raise RetireError("a table to retire must be a name or a dict with 'name' (and optional 'schema', "
                          "'expected_rows'), got {0!r}".format(item))
    if item.get("schema"):
        schema, name = item["schema"], item["name"]
    else:
        schema, name = split_qualified(item["name"], default_schema)
    expected = item.get("expected_rows", 0)
    if expected is not None:
        expected = int(expected)
        if expected < 0:
            raise RetireError("expected_rows of {0} must be >= 0".format(qualified(schema, name)))
    return {"schema": schema, "name": name, "expected_rows": expected}


def quarantine_name_for(schema, name, taken):
    """A derived name for the quarantined table that fits 63 bytes and collides with nothing in ``taken``."""
    base = derived_name(schema, name)
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = derived_name(schema, name, suffix="q{0}".format(n))
    return candidate


def blocking(dependencies):
    """The dependencies that forbid retiring (informational ones are kept in the report only)."""
    return [d for d in dependencies if d.get("blocking")]


def decide(item, exists, row_count, dependencies, quarantined_record=None):
    """What to do with one table: ``retire``, ``skip`` (rows), ``blocked`` (dependents), ``converged``, ``absent``."""
    if not exists:
        if quarantined_record:
            return "converged", "already in {0} since {1}".format(
                qualified(quarantined_record["quarantine_schema"], quarantined_record["quarantine_name"]),
                quarantined_record["quarantined_at"])
        return "absent", "table does not exist (nothing to retire)"
    expected = item.get("expected_rows")
    if expected is not None and row_count != expected:
        if expected == 0:
            return "skip", "not empty: {0} rows (the plan expected an empty table); left in place".format(row_count)
        return "skip", "holds {0} rows, the plan declared {1}; left in place".format(row_count, expected)
    blockers = blocking(dependencies)
    if blockers:
        return "blocked", "still needed by: " + "; ".join(d["description"] for d in blockers)
    return "retire", "{0} rows, no dependents that stay".format(row_count)


# --------------------------------------------------------------------------- catalog reads
def ensure_retire_schema(cur, schema=QUARANTINE_SCHEMA):
    """The quarantine schema (created only when missing: CREATE needs the database privilege)."""
    cur.execute("SELECT to_regnamespace(%s) IS NULL", (schema,))
    if cur.fetchone()[0]:
        cur.execute(_sql().SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(_sql().Identifier(schema)))


def table_oid(cur, schema, name):
    cur.execute("SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    row = cur.fetchone()
    if row is None:
        return None
    if row[1] not in ("r", "p"):
        raise RetireError("{0} is not a table (relkind {1}): only tables are retired".format(
            qualified(schema, name), row[1]))
    return row[0]


def exact_count(cur, schema, name):
    sql = _sql()
    cur.execute(sql.SQL("SELECT count(*) FROM {0}.{1}").format(sql.Identifier(schema), sql.Identifier(name)))
    return cur.fetchone()[0]


def table_size(cur, oid):
    cur.execute("SELECT pg_total_relation_size(%s)", (oid,))
    return cur.fetchone()[0]


_DEPENDENTS_SQL = """
WITH target AS (SELECT %(oid)s::oid AS relid, (SELECT reltype FROM pg_class WHERE oid = %(oid)s) AS reltype),
owned_seq AS (
    SELECT d.objid AS seqid FROM pg_depend d, target t
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
       AND d.refobjid = t.relid AND d.deptype IN ('a', 'i')
       AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
),
deps AS (
    SELECT d.classid, d.objid, d.objsubid, d.deptype, 'table' AS via FROM pg_depend d, target t
     WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid AND d.deptype IN ('n', 'a')
    UNION ALL
    SELECT d.classid, d.objid, d.objsubid, d.deptype, 'row type' FROM pg_depend d, target t
     WHERE d.refclassid = 'pg_type'::regclass AND d.refobjid = t.reltype AND d.deptype = 'n'
    UNION ALL
    SELECT d.classid, d.objid, d.objsubid, d.deptype, 'owned sequence ' || d.refobjid::regclass::text
      FROM pg_depend d JOIN owned_seq s ON d.refobjid = s.seqid
     WHERE d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
)
SELECT deps.classid::regclass::text, deps.via, deps.deptype,
       pg_describe_object(deps.classid, deps.objid, deps.objsubid),
       CASE deps.classid
         WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = deps.objid)
         WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = deps.objid)
         WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = deps.objid)
         WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = deps.objid)
         WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = deps.objid)
         WHEN 'pg_class'::regclass THEN deps.objid
       END AS owner_rel,
       CASE deps.classid WHEN 'pg_constraint'::regclass
            THEN (SELECT contype::text FROM pg_constraint WHERE oid = deps.objid) END AS contype
  FROM deps
"""


def _rel_name(cur, oid):
    if oid is None:
        return None
    cur.execute("SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.oid = %s", (oid,))
    return cur.fetchone()


def dependencies(cur, schema, name, leaving=()):
    """Every object outside the table that depends on it, and what the table itself depends on.

    ``leaving`` is a set of (schema, name) retired in the same batch: dependencies between them do
    not block.  Each entry: {kind, object, description, blocking, direction}.
    """
    oid = table_oid(cur, schema, name)
    if oid is None:
        return []
    leaving = {tuple(x) for x in leaving} | {(schema, name)}
    found = []
    tree = [oid] + [p[0] for p in partition_tree(cur, oid)]  # a partitioned table's partitions go with it
    rows = []
    for rel in tree:
        cur.execute(_DEPENDENTS_SQL, {"oid": rel})
        rows += [r + (rel,) for r in cur.fetchall()]
    for catalog, via, _deptype, description, owner_rel, contype, rel in rows:
        owner = _rel_name(cur, owner_rel) if owner_rel else None
        own = owner is not None and owner_rel in tree
        if catalog == "pg_class" and own and rel != owner_rel:
            continue  # a partition (its columns depend on the parent's)
        if catalog == "pg_class" and owner is not None and owner[2] in ("i", "I", "S", "t") and via == "table":
            continue  # its own index, owned sequence or toast table: they move with it
        if catalog == "pg_type" and via == "table":
            continue  # its own row type
        if own:
            continue  # its own constraints, triggers, policies, defaults (also on its own sequences), rules
        leaves_too = owner is not None and (owner[0], owner[1]) in leaving
        kind = {"pg_rewrite": "view", "pg_constraint": "foreign key" if contype == "f" else "constraint",
                "pg_trigger": "trigger", "pg_policy": "policy", "pg_attrdef": "column default",
                "pg_proc": "function", "pg_class": "column of another table"}.get(catalog, catalog)
        if catalog == "pg_rewrite" and owner is not None and owner[2] == "m":
            kind = "materialized view"
        obj = qualified(owner[0], owner[1]) if owner else description
        found.append({"direction": "inbound", "kind": kind, "object": obj,
                      "description": "{0} {1} ({2}{3})".format(kind, obj, description,
                                                             "" if via == "table" else ", via " + via),
                      "blocking": not leaves_too})
    found += _mentioned_by(cur, oid, name, found, leaving)
    # Outbound: what this table references (informational: detached while it is retired, re-added on restore).
    cur.execute("""
        SELECT c.conname, n.nspname, r.relname FROM pg_constraint c
          JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = r.relnamespace
         WHERE c.contype = 'f' AND c.conrelid = %s AND c.confrelid <> %s
    """, (oid, oid))
    for conname, rschema, rname in cur.fetchall():
        found.append({"direction": "outbound", "kind": "foreign key", "object": qualified(rschema, rname),
                      "description": "references {0} ({1}; detached while retired, re-added on restore)".format(
                          qualified(rschema, rname), conname),
                      "blocking": False})
    cur.execute("""
        SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = %s AND NOT t.tgisinternal
    """, (oid,))
    for (tgname,) in cur.fetchall():
        found.append({"direction": "own", "kind": "trigger", "object": qualified(schema, name),
                      "description": "own trigger {0} (moves with the table)".format(tgname), "blocking": False})
    return found


def _mentioned_by(cur, oid, name, found, leaving):
    """Functions whose body mentions the table without a recorded dependency, and triggers of other tables that
    run a function mentioning it (pg_depend does not record names used inside a function body)."""
    more = []
    # Functions that mention the name in their body without a recorded dependency (plain SQL/PL bodies).
    cur.execute("""
        SELECT p.oid, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prosrc
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname <> ALL(%s) AND p.prosrc ILIKE %s
           AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid
                            AND e.deptype = 'e')
    """, (list(SYSTEM_SCHEMAS + PRODUCT_SCHEMAS), like_pattern(name)))
    recorded = {d["object"] for d in found if d["kind"] == "function"}
    for _poid, fschema, fname, fargs, body in cur.fetchall():
        if not mentions(body, name):
            continue
        label = "{0}({1})".format(qualified(fschema, fname), fargs)
        if label in recorded:
            continue
        more.append({"direction": "inbound", "kind": "function body", "object": label,
                     "description": "function {0} mentions {1} in its body".format(label, name),
                     "blocking": True})
    # Triggers of other tables whose function mentions the table are covered above (the function is
    # listed); list them too so the report names the table that fires them.
    cur.execute("""
        SELECT n.nspname, c.relname, t.tgname, p.prosrc FROM pg_trigger t
          JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE NOT t.tgisinternal AND t.tgrelid <> %s AND p.prosrc ILIKE %s
    """, (oid, like_pattern(name)))
    for tschema, tname, tgname, body in cur.fetchall():
        if mentions(body, name) and (tschema, tname) not in leaving:
            more.append({"direction": "inbound", "kind": "trigger", "object": qualified(tschema, tname),
                         "description": "trigger {0} on {1} runs a function that mentions {2}".format(
                             tgname, qualified(tschema, tname), name), "blocking": True})
    return more


def privilege_problems(cur, oid, qualified_name):
    """Blocking entries when the login cannot move the table (ALTER TABLE needs its owner)."""
    cur.execute("SELECT pg_get_userbyid(c.relowner), pg_has_role(current_user, c.relowner, 'USAGE') "
                "OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) FROM pg_class c WHERE c.oid = %s",
                (oid,))
    owner, can = cur.fetchone()
    if can:
        return []
    return [{"direction": "own", "kind": "privilege", "object": qualified_name, "blocking": True,
             "description": "the login is not the owner of {0} (owner: {1}); run as {1} or a member of it".format(
                 qualified_name, owner)}]


def quarantine_record(cur, schema, name):
    """The live quarantine record of a table (retired, not restored, not purged), or None."""
    cur.execute("SELECT to_regclass('pgsafe.quarantined_object') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    cur.execute("""
        SELECT q.id, q.quarantine_schema, q.quarantine_name, q.quarantined_at, q.retain_until, q.row_count,
               q.run_id, q.reason
          FROM pgsafe.quarantined_object q
         WHERE q.kind = 'table' AND q.original_schema = %s AND q.original_name = %s
           AND q.restored_at IS NULL AND q.purged_at IS NULL
         ORDER BY q.id DESC LIMIT 1
    """, (schema, name))
    row = cur.fetchone()
    if row is None:
        return None
    return {"id": row[0], "quarantine_schema": row[1], "quarantine_name": row[2],
            "quarantined_at": row[3].isoformat(), "retain_until": row[4].isoformat(), "row_count": row[5],
            "run_id": row[6], "reason": row[7]}


def plan(cur, items):
    """Read-only plan for a batch of tables (works inside a READ ONLY transaction)."""
    specs = [normalize_table_spec(i) for i in items]
    existing = [(s["schema"], s["name"]) for s in specs]
    result = []
    for spec in specs:
        oid = table_oid(cur, spec["schema"], spec["name"])
        record = quarantine_record(cur, spec["schema"], spec["name"]) if oid is None else None
        denied = privilege_problems(cur, oid, qualified(spec["schema"], spec["name"])) if oid is not None else []
        if denied:  # nothing more can be read or done as this login
            result.append(dict(spec, table=qualified(spec["schema"], spec["name"]), exists=True,
                               backup_object=qualified(spec["schema"], spec["name"]), row_count=None,
                               size_bytes=None, dependencies=denied, action="blocked",
                               reason=denied[0]["description"], quarantine=None))
            continue
        rows = exact_count(cur, spec["schema"], spec["name"]) if oid is not None else None
        deps = dependencies(cur, spec["schema"], spec["name"], leaving=existing) if oid is not None else []
        action, reason = decide(spec, oid is not None, rows, deps, record)
        result.append(dict(spec, table=qualified(spec["schema"], spec["name"]), exists=oid is not None,
                           backup_object=qualified(spec["schema"], spec["name"]),
                           row_count=rows, size_bytes=table_size(cur, oid) if oid is not None else None,
                           dependencies=deps, action=action, reason=reason, quarantine=record))
    return result


# --------------------------------------------------------------------------- changes
def _taken_names(cur, schema_a, schema_b):
    cur.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname IN (%s, %s)", (schema_a, schema_b))
    return {r[0] for r in cur.fetchall()}


def _lock(cur, schema, name, mode="ACCESS EXCLUSIVE"):
    lock_tables(cur, [((schema, name), mode)])


def outbound_foreign_keys(cur, oid):
    """The table's foreign keys to other tables: name and definition with schema-qualified references."""
    cur.execute("SELECT current_setting('search_path'), set_config('search_path', '', true)")
    previous = cur.fetchone()[0]
    try:
        cur.execute("""
            SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint
             WHERE contype = 'f' AND conrelid = %s AND confrelid <> %s ORDER BY conname
        """, (oid, oid))
        # pg_get_constraintdef ends an unvalidated constraint with NOT VALID: kept apart as a flag.
        return [{"name": name, "definition": re.sub(r"\s+NOT VALID$", "", definition), "validated": validated}
                for name, definition, validated in cur.fetchall()]
    finally:
        cur.execute("SELECT set_config('search_path', %s, true)", (previous,))


def _add_constraint_sql(schema, table, constraint, not_valid):
    """ADD CONSTRAINT from a definition read from the catalog (pg_get_constraintdef), never from input."""
    sql = _sql()
    return sql.SQL("ALTER TABLE {0}.{1} ADD CONSTRAINT {2} {3}{4}").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(constraint["name"]),
        sql.SQL(constraint["definition"]), sql.SQL(" NOT VALID" if not_valid else ""))


def _validate_constraint_sql(schema, table, name):
    sql = _sql()
    return sql.SQL("ALTER TABLE {0}.{1} VALIDATE CONSTRAINT {2}").format(
        sql.Identifier(schema), sql.Identifier(table), sql.Identifier(name))


def reattach_foreign_keys(cur, schema, table, constraints):
    """Re-add detached foreign keys to a restored table; one result per constraint.

    Each is added NOT VALID, then validated; when rows reference rows deleted in the meantime, it stays
    NOT VALID (the rows are kept; the result names the fix).  A constraint whose referenced table is gone
    is not added (the result carries its SQL).
    """
    sql = _sql()
    results = []
    for constraint in constraints or []:
        statement = _add_constraint_sql(schema, table, constraint, not_valid=True)
        cur.execute("SAVEPOINT pgsafe_fk")
        try:
            cur.execute(statement)
        except Exception as exc:  # noqa: BLE001 - referenced table or columns gone: report, keep going
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_fk")
            results.append({"constraint": constraint["name"], "state": "not re-added",
                            "reason": " ".join(str(exc).split()), "sql": statement.as_string(cur) + ";"})
            continue
        cur.execute("RELEASE SAVEPOINT pgsafe_fk")
        if not constraint.get("validated", True):
            results.append({"constraint": constraint["name"], "state": "not valid, as before"})
            continue
        cur.execute("SAVEPOINT pgsafe_fk")
        try:
            cur.execute(_validate_constraint_sql(schema, table, constraint["name"]))
            cur.execute("RELEASE SAVEPOINT pgsafe_fk")
            results.append({"constraint": constraint["name"], "state": "valid"})
        except Exception as exc:  # noqa: BLE001 - orphans appeared while it was retired: keep them, say so
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_fk")
            results.append({"constraint": constraint["name"], "state": "not valid",
                            "reason": " ".join(str(exc).split()),
                            "fix": "rows of {0} reference rows deleted while it was retired: fix or set them "
                                   "aside, then ALTER TABLE {0} VALIDATE CONSTRAINT {1}".format(
                                       qualified(schema, table), sql.Identifier(constraint["name"]).as_string(cur))})
    return results


def retire_statements(cur, schema, name, qname, detached, quarantine_schema=QUARANTINE_SCHEMA):
    """What moving one table into the quarantine schema runs, in order, as text.

    Its foreign keys to live tables go first (kept in the record, re-added on restore): a delete in a live
    table must neither cascade into set-aside rows nor fail because of them, as after a real drop.
    """
    sql = _sql()
    # The quarantine schema itself is the product's (ensure_retire_schema, before): not part of the statements,
    # so a plan made before the product schema was installed is the plan made after.
    stmts = [sql.SQL("ALTER TABLE {0}.{1} DROP CONSTRAINT {2}").format(
        sql.Identifier(schema), sql.Identifier(name), sql.Identifier(c["name"])) for c in detached]
    if qname != name:
        stmts.append(sql.SQL("ALTER TABLE {0}.{1} RENAME TO {2}").format(
            sql.Identifier(schema), sql.Identifier(name), sql.Identifier(qname)))
    stmts.append(sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}").format(
        sql.Identifier(schema), sql.Identifier(qname), sql.Identifier(quarantine_schema)))
    oid = table_oid(cur, schema, name) or table_oid(cur, schema, qname)
    stmts += [sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}").format(  # a partitioned table's partitions follow it
        sql.Identifier(schema), sql.Identifier(part), sql.Identifier(quarantine_schema))
        for _oid, _schema, part in partition_tree(cur, oid, schema)]
    return [s.as_string(cur) for s in stmts]


def planned_statements(cur, spec, quarantine_schema=QUARANTINE_SCHEMA):
    """retire_statements of a table as it is now (read-only): LOCK first, as retire_table takes it."""
    oid = table_oid(cur, spec["schema"], spec["name"])
    qname = quarantine_name_for(spec["schema"], spec["name"], _taken_names(cur, spec["schema"], quarantine_schema))
    lock = lock_statements([((spec["schema"], spec["name"]), "ACCESS EXCLUSIVE")])[0].as_string(cur)
    return [lock] + retire_statements(cur, spec["schema"], spec["name"], qname, outbound_foreign_keys(cur, oid),
                                      quarantine_schema)


def retire_table(cur, run_id, item, retention_days=DEFAULT_RETENTION_DAYS, reason="unused table",
                 leaving=(), details=None, quarantine_schema=QUARANTINE_SCHEMA):
    """Move one table into the quarantine schema, inside the caller's transaction.

    Takes ACCESS EXCLUSIVE on the table, re-counts and re-scans dependents under that lock; returns
    a result dict with ``action`` = ``retired``, ``skip`` or ``blocked`` (nothing moved for the last two)
    or ``converged``/``absent``.  The caller commits (or rolls back) the transaction.
    """
    sql = _sql()
    spec = normalize_table_spec(item)
    schema, name = spec["schema"], spec["name"]
    oid = table_oid(cur, schema, name)
    if oid is None:
        record = quarantine_record(cur, schema, name)
        action, why = decide(spec, False, None, [], record)
        return dict(spec, table=qualified(schema, name), action=action, reason=why, row_count=None)
    denied = privilege_problems(cur, oid, qualified(schema, name))
    if denied:
        return dict(spec, table=qualified(schema, name), row_count=None, dependencies=denied, action="blocked",
                    reason=denied[0]["description"])
    _lock(cur, schema, name)
    rows = exact_count(cur, schema, name)
    deps = dependencies(cur, schema, name, leaving=leaving)
    action, why = decide(spec, True, rows, deps, None)
    result = dict(spec, table=qualified(schema, name), row_count=rows, dependencies=deps, reason=why)
    if action != "retire":
        journal(cur, run_id, "table_retire", "skipped", qualified(schema, name),
                {"action": action, "reason": why, "row_count": rows})
        result["action"] = action
        return result
    qname = quarantine_name_for(schema, name, _taken_names(cur, schema, quarantine_schema))
    detached = outbound_foreign_keys(cur, oid)
    moved_partitions = [part for _oid, _schema, part in partition_tree(cur, oid, schema)]
    ensure_retire_schema(cur, quarantine_schema)
    for stmt in retire_statements(cur, schema, name, qname, detached, quarantine_schema):
        cur.execute(stmt)
    cur.execute("""
        INSERT INTO pgsafe.quarantined_object (run_id, kind, original_schema, original_name, quarantine_schema,
               quarantine_name, reason, row_count, retain_until, detached_constraints)
        VALUES (%s, 'table', %s, %s, %s, %s, %s, %s, now() + make_interval(days => %s), %s::jsonb)
        RETURNING id, retain_until
    """, (run_id, schema, name, quarantine_schema, qname, reason, rows, int(retention_days), json.dumps(detached)))
    record_id, retain_until = cur.fetchone()
    rollback_sql = sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}; ALTER TABLE {2}.{1} RENAME TO {3};").format(
        sql.Identifier(quarantine_schema), sql.Identifier(qname), sql.Identifier(schema), sql.Identifier(name))
    rollback_sql = rollback_sql.as_string(cur) + "".join(" " + sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2};").format(
        sql.Identifier(quarantine_schema), sql.Identifier(part), sql.Identifier(schema)).as_string(cur)
        for part in moved_partitions) + "".join(
        " " + _add_constraint_sql(schema, name, constraint, not_valid=True).as_string(cur) + ";" + (
            " " + _validate_constraint_sql(schema, name, constraint["name"]).as_string(cur) + ";"
            if constraint["validated"] else "")
        for constraint in detached)
    journal(cur, run_id, "table_retire", "completed", qualified(schema, name),
            dict(details or {}, quarantine=qualified(quarantine_schema, qname), row_count=rows, record_id=record_id,
                 retain_until=retain_until.isoformat(), reason=reason, dependencies=deps,
                 detached_foreign_keys=detached),
            rollback_sql=rollback_sql)
    result.update(action="retired", quarantine_schema=quarantine_schema, quarantine_name=qname,
                  quarantine_table=qualified(quarantine_schema, qname), retain_until=retain_until.isoformat(),
                  record_id=record_id)
    return result


def restorable(cur, item=None, run_id=None):
    """Live quarantine records matching a table (original name) or every table quarantined by a run."""
    cur.execute("SELECT to_regclass('pgsafe.quarantined_object') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    if item is not None:
        spec = normalize_table_spec(item)
        cur.execute("""SELECT id, original_schema, original_name, quarantine_schema, quarantine_name, row_count,
                              run_id, restored_at, detached_constraints FROM pgsafe.quarantined_object
                        WHERE kind = 'table' AND original_schema = %s AND original_name = %s AND purged_at IS NULL
                        ORDER BY id DESC LIMIT 1""", (spec["schema"], spec["name"]))
    else:
        cur.execute("""SELECT id, original_schema, original_name, quarantine_schema, quarantine_name, row_count,
                              run_id, restored_at, detached_constraints FROM pgsafe.quarantined_object
                        WHERE kind = 'table' AND run_id = %s AND purged_at IS NULL ORDER BY id""", (run_id,))
    return [{"id": r[0], "schema": r[1], "name": r[2], "quarantine_schema": r[3], "quarantine_name": r[4],
             "row_count": r[5], "run_id": r[6], "restored": r[7] is not None, "detached_constraints": r[8] or []}
            for r in cur.fetchall()]


def restore_table(cur, run_id, record, apply=True):
    """Move a quarantined table back under its original name (one step); idempotent."""
    sql = _sql()
    original = qualified(record["schema"], record["name"])
    q_exists = table_oid(cur, record["quarantine_schema"], record["quarantine_name"]) is not None
    o_exists = table_oid(cur, record["schema"], record["name"]) is not None
    if record["restored"] or not q_exists:
        if o_exists:
            return {"table": original, "action": "converged", "reason": "already in place"}
        raise RetireError("{0} is neither in place nor in quarantine as {1}: restore it from its backup "
                          "(playbooks/restore.yml)".format(original, qualified(record["quarantine_schema"],
                                                                               record["quarantine_name"])))
    if o_exists:
        raise RetireError("cannot restore {0}: a table of that name exists again; rename or retire it first, "
                          "then re-run".format(original))
    if not apply:
        return {"table": original, "action": "restore", "reason": "would move back from " + qualified(
            record["quarantine_schema"], record["quarantine_name"])}
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (record["schema"],))
    if cur.fetchone() is None:
        raise RetireError("cannot restore {0}: schema {1} no longer exists; create it, then re-run".format(
            original, record["schema"]))
    _lock(cur, record["quarantine_schema"], record["quarantine_name"])
    taken = _taken_names(cur, record["schema"], record["quarantine_schema"]) - {record["quarantine_name"]}
    if record["name"] in taken:
        raise RetireError("cannot restore {0}: the name is taken in {1}".format(
            original, record["quarantine_schema"]))
    if record["quarantine_name"] != record["name"]:
        cur.execute(sql.SQL("ALTER TABLE {0}.{1} RENAME TO {2}").format(
            sql.Identifier(record["quarantine_schema"]), sql.Identifier(record["quarantine_name"]),
            sql.Identifier(record["name"])))
    cur.execute(sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}").format(
        sql.Identifier(record["quarantine_schema"]), sql.Identifier(record["name"]),
        sql.Identifier(record["schema"])))
    for _oid, _schema, part in partition_tree(cur, table_oid(cur, record["schema"], record["name"]),
                                          record["quarantine_schema"]):  # its partitions come back with it
        cur.execute(sql.SQL("ALTER TABLE {0}.{1} SET SCHEMA {2}").format(
            sql.Identifier(record["quarantine_schema"]), sql.Identifier(part), sql.Identifier(record["schema"])))
    foreign_keys = reattach_foreign_keys(cur, record["schema"], record["name"], record.get("detached_constraints"))
    cur.execute("UPDATE pgsafe.quarantined_object SET restored_at = now() WHERE id = %s", (record["id"],))
    rows = exact_count(cur, record["schema"], record["name"])
    journal(cur, run_id, "table_restore", "completed", original,
            {"from": qualified(record["quarantine_schema"], record["quarantine_name"]), "row_count": rows,
             "record_id": record["id"], "foreign_keys": foreign_keys})
    reason = "moved back from " + qualified(record["quarantine_schema"], record["quarantine_name"])
    pending = [fk for fk in foreign_keys if fk["state"] not in ("valid", "not valid, as before")]
    if pending:
        reason += "; foreign keys needing attention: " + "; ".join(
            "{0} {1}: {2}".format(fk["constraint"], fk["state"], fk.get("fix") or fk.get("sql")) for fk in pending)
    return {"table": original, "action": "restored", "row_count": rows, "reason": reason,
            "foreign_keys": foreign_keys}


def purgeable(cur, include_unexpired=False):
    """Quarantined tables whose retention has expired (and that are still there)."""
    cur.execute("SELECT to_regclass('pgsafe.quarantined_object') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    cur.execute("""
        SELECT q.id, q.original_schema, q.original_name, q.quarantine_schema, q.quarantine_name, q.retain_until,
               q.row_count, (q.retain_until <= now()) AS expired,
               to_regclass(format('%I.%I', q.quarantine_schema, q.quarantine_name)) IS NOT NULL AS present
          FROM pgsafe.quarantined_object q
         WHERE q.kind = 'table' AND q.restored_at IS NULL AND q.purged_at IS NULL
         ORDER BY q.id
    """)
    out = []
    for r in cur.fetchall():
        if not r[8] or not (r[7] or include_unexpired):
            continue
        out.append({"id": r[0], "schema": r[1], "name": r[2], "quarantine_schema": r[3], "quarantine_name": r[4],
                    "retain_until": r[5].isoformat(), "row_count_at_retire": r[6], "expired": r[7],
                    "table": qualified(r[3], r[4]), "original": qualified(r[1], r[2]),
                    "backup_object": qualified(r[3], r[4])})
    return out


def purge_table(cur, run_id, record, backup_id):
    """DROP TABLE ... RESTRICT of one expired quarantined table, after its final dump (``backup_id``)."""
    sql = _sql()
    if not backup_id:
        raise RetireError("refusing to purge {0}: no final backup id given (take one with the backup role, "
                          "backup_scope=objects)".format(record["table"]))
    _lock(cur, record["quarantine_schema"], record["quarantine_name"])
    rows = exact_count(cur, record["quarantine_schema"], record["quarantine_name"])
    deps = [d for d in dependencies(cur, record["quarantine_schema"], record["quarantine_name"]) if d["blocking"]]
    if deps:
        return dict(record, action="blocked", row_count=rows,
                    reason="still needed by: " + "; ".join(d["description"] for d in deps))
    cur.execute(sql.SQL("DROP TABLE {0}.{1} RESTRICT").format(
        sql.Identifier(record["quarantine_schema"]), sql.Identifier(record["quarantine_name"])))
    cur.execute("UPDATE pgsafe.quarantined_object SET purged_at = now(), purge_backup_id = %s WHERE id = %s",
                (backup_id, record["id"]))
    journal(cur, run_id, "table_purge", "completed", record["original"],
            {"table": record["table"], "row_count": rows, "backup_id": backup_id, "record_id": record["id"]})
    return dict(record, action="purged", row_count=rows, backup_id=backup_id,
                reason="dropped (RESTRICT) after final backup {0}".format(backup_id))
