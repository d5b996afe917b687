# -*- coding: utf-8 -*-
"""Which rows a type change sets aside: the orphans of each declared FK (after the cast) and every row
depending on them, in removal order; and their move to quarantine with a content hash (pgsafe_quarantine
writes them).
"""
from __future__ import annotations

import json

from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_quarantine import pk_object as pk_json
from ansible.module_utils.pgsafe_quarantine import write_rows
from ansible.module_utils.pgsafe_typechange_parse import TypeChangeError
from ansible.module_utils.pgsafe_typechange_precheck import SAMPLE_LIMIT, find_orphans
from ansible.module_utils.pgsafe_typechange_sql import _ident, after_value, table_hash

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None


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
    """Move rows into pgsafe.quarantine_row and delete them (pgsafe_quarantine.write_rows), in the caller's transaction.

    Returns per-table {rows, hash (the canonical content hash, planned casts applied)} of what was moved.
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
        written = write_rows(cur, run_id, key, t["pk"], match, (json.dumps(pks),), reason, move=True)
        if written != h["rows"]:
            raise TypeChangeError("quarantine of {0}: {1} rows copied but {2} expected: rolled back".format(
                qualified(*key), written, h["rows"]))
        moved[qualified(*key)] = dict(h, reason=reason, pks=pks[:SAMPLE_LIMIT])
    return moved
