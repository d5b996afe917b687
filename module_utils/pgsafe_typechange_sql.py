# -*- coding: utf-8 -*-
"""SQL pieces of a type change unit: values after the cast, row hashes, FK and view DDL, names, lock order.

Identifiers go through ``psycopg2.sql.Identifier``; the only raw SQL taken from a plan is a validated
``using`` / ``default`` expression, a type text accepted by ``canonical_type_text``'s strict grammar and
definitions read from the catalog (``pg_get_constraintdef`` / ``pg_get_viewdef``).
"""
from __future__ import annotations

from ansible.module_utils.pgsafe_content_hash import column_kind, mapped_rows_hash, table_content_hash, table_kinds
from ansible.module_utils.pgsafe_identifiers import derived_name
from ansible.module_utils.pgsafe_partitions import partitions_by_table
from ansible.module_utils.pgsafe_typechange_parse import canonical_type_text, fk_action

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None

TRIGGER_NAME = "pgsafe_typechange_sync"


def _ident(*parts):
    return sql.Identifier(*parts)


def online_check_name(column):
    return derived_name(column, suffix="pgsafe_nn")


def trigger_function_name(table_oid):
    return "typechange_sync_{0}".format(table_oid)


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


def planned_kinds(cur, schema, table, plan_changes):
    """``{column: hash kind}`` of a table as the planned change leaves it (the target types' kinds)."""
    kinds = dict(table_kinds(cur, schema, table) or {})
    for c in plan_changes:
        if (c["schema"], c["table"]) == (schema, table) and c["needs_type"]:
            cur.execute("SELECT t.typname, t.typtype FROM pg_catalog.pg_type t WHERE t.oid = %s::regtype",
                        (canonical_type_text(c["type"]),))
            name, kind = cur.fetchone()
            kinds[c["column"]] = column_kind({"type_name": name, "typtype": kind})
    return kinds


def table_hash(cur, schema, table, columns, plan_changes, where=None, params=None, after=False):
    """``{rows, hash}`` of a table (or of its rows matching ``where``, alias ``t``) in the one canonical
    content hash (pgsafe_content_hash).  ``after=False`` hashes each row as the planned change will leave it
    (casts applied, typed as the targets), so it equals ``after=True`` of the same rows once changed."""
    if after:
        return table_content_hash(cur, schema, table, columns=columns, where=where, params=params)
    values = {c: after_value(plan_changes, schema, table, c, "t") for c in columns}
    return mapped_rows_hash(cur, sql.SQL("{0} AS t").format(_ident(schema, table)), values,
                            planned_kinds(cur, schema, table, plan_changes), where=where, params=params, typed=True)


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


def partition_facts(cur, tables):
    """``{(schema, table): [(schema, leaf, [FK names]), ...]}`` for each partitioned table among ``tables`` (keys):
    its leaf partitions at any depth, by name, with the FKs each holds of its own (not attached to a parent's:
    left NOT VALID by a run that stopped before the parent's FK was added).  Read-only; the plan keeps it in
    ``_facts["partitions"]``."""
    trees = partitions_by_table(cur, tables, leaves_only=True)
    leaves = [oid for tree in trees.values() for oid, _schema, _name in tree]
    own_fks = {}
    if leaves:
        cur.execute("SELECT conrelid, array_agg(conname::text ORDER BY conname) FROM pg_catalog.pg_constraint "
                    "WHERE conrelid = ANY(%s::oid[]) AND contype = 'f' AND conparentid = 0 GROUP BY conrelid",
                    (leaves,))
        own_fks = {row[0]: list(row[1]) for row in cur.fetchall()}
    return {key: [(schema, name, own_fks.get(oid, [])) for oid, schema, name in tree] for key, tree in trees.items()}


def _leaves(plan, schema, table, with_fks=False):
    """The leaf partitions (schema, table) of a partitioned table of the plan, or None for a plain table;
    ``with_fks``: (schema, table, names of the FKs it holds of its own)."""
    leaves = ((plan.get("_facts") or {}).get("partitions") or {}).get((schema, table))
    if leaves is None or with_fks:
        return leaves
    return [(s, t) for s, t, *_ in leaves]


def _fks_to_add(plan):
    out = [f for f in plan["drop_fks"] if f["recreate"]]
    return out + [dict(f, recreate=False) for f in plan["foreign_keys"]
                  if f["state"] in ("missing", "different", "recreate")]


def add_fk_statements(plan):
    """(name, statement) of every FK added NOT VALID: the existing ones put back, then the declared ones.

    On a partitioned table (PostgreSQL refuses ADD FOREIGN KEY ... NOT VALID there) the FK is added NOT
    VALID on each leaf partition instead; ``validate_fk_steps`` validates them and then adds it on the parent.
    """
    out = []
    for f in _fks_to_add(plan):
        leaves = _leaves(plan, f["schema"], f["table"])
        if leaves is None:
            out.append((f["name"], _fk_sql(f)))
        else:
            out += [(f["name"], _fk_sql(dict(f, schema=s, table=t))) for s, t, *held in
                    _leaves(plan, f["schema"], f["table"], with_fks=True)
                    if f["name"] not in (held[0] if held else ())]  # already there from a stopped run: validated
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


VALIDATE_LOCK = "SHARE UPDATE EXCLUSIVE"
# ADD FOREIGN KEY on a partitioned parent whose leaves hold the same FK, validated: the leaves' constraints are
# attached without a scan (measured: 1.3 ms where the leaves' VALIDATE of 2M rows took 865 ms, PG 15; the same
# on PG 17); SHARE ROW EXCLUSIVE on the parent and its partitions, and a brief ACCESS EXCLUSIVE on the
# referenced table (the leaves' own action triggers there are dropped), both under the lock timeout.
ATTACH_LOCK = "SHARE ROW EXCLUSIVE (ACCESS EXCLUSIVE on the referenced table, brief: no scan)"


def validate_fk_steps(plan):
    """(name, statement, lock level) of every FK validation, in order: VALIDATE CONSTRAINT (writes continue);
    for a partitioned table, VALIDATE on each leaf, then the FK added on the parent (attaches them)."""
    return [(name, stmt, lock) for _table, name, stmt, lock in _validate_fk_steps(plan)]


def _validate_fk_steps(plan):
    """validate_fk_steps with each step's referencing table ``(schema, table)`` first."""
    todo = [(f["schema"], f["table"], f["name"], f) for f in plan["drop_fks"] if f["recreate"]]
    todo += [(f["schema"], f["table"], f["name"], dict(f, recreate=False)) for f in plan["foreign_keys"]
             if f["state"] != "valid"]
    out = []
    for schema, table, name, fk in todo:
        leaves = _leaves(plan, schema, table)
        for s, t in leaves if leaves is not None else [(schema, table)]:
            out.append(((schema, table), name, sql.SQL("ALTER TABLE {0} VALIDATE CONSTRAINT {1}").format(
                _ident(s, t), sql.Identifier(name)), VALIDATE_LOCK))
        if leaves is not None:
            out.append(((schema, table), name, _fk_sql(fk, not_valid=False), ATTACH_LOCK))
    return out


def validate_fk_groups(plan):
    """The validation steps as groups that can run side by side, each on a session of its own: one group per
    referencing table (VALIDATE takes SHARE UPDATE EXCLUSIVE on it, which conflicts with itself; on the referenced
    table only ROW SHARE, which nothing here conflicts with), steps in plan order within a group.  One group when
    a step attaches an FK to a partitioned parent (its lock conflicts with the others' validations)."""
    steps = _validate_fk_steps(plan)
    if any(lock == ATTACH_LOCK for _table, _name, _stmt, lock in steps):
        return [[(name, stmt) for _table, name, stmt, _lock in steps]] if steps else []
    groups = {}
    for table, name, stmt, _lock in steps:
        groups.setdefault(table, []).append((name, stmt))
    return list(groups.values())


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


def unit_lock_plan(plan):
    """(table, mode) in a fixed order.  Tables whose rows or columns change: ACCESS EXCLUSIVE; tables only
    referenced by an FK being added: SHARE ROW EXCLUSIVE (what ADD FOREIGN KEY takes; reads continue).
    A partitioned table is locked through its parent (LOCK TABLE takes the same mode on every partition)."""
    strong = {(c["schema"], c["table"]) for c in plan["changes"]
              if c["needs_type"] or c["needs_default"] or c["needs_not_null"]}
    strong |= {(f["schema"], f["table"]) for f in plan["foreign_keys"] if f["state"] != "valid"}
    strong |= {(f["schema"], f["table"]) for f in plan["drop_fks"]}
    keys = sorted(plan["touched_keys"])
    return [(k, "ACCESS EXCLUSIVE" if k in strong else "SHARE ROW EXCLUSIVE") for k in keys]
