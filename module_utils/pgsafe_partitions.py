# -*- coding: utf-8 -*-
"""Partitioned tables, read one way: which of some tables are partitioned, and their partitions at any depth.

Used wherever a partitioned table must be handled with its partitions: the targeted backups (pg_dump -t of a
partitioned table dumps none of its partitions before PG 16), the type change (its leaf partitions), the
retirement (the partitions move with their table).  Read-only catalog queries, schema-qualified to pg_catalog.
"""
from __future__ import annotations

_TREE_SQL = ("SELECT t.relid::oid, n.nspname, c.relname, c.relkind::text FROM pg_catalog.pg_partition_tree(%s::oid::regclass) t "
             "JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
             "WHERE t.relid <> %s::oid AND (NOT %s OR t.isleaf) AND (%s::text IS NULL OR n.nspname = %s) "
             "ORDER BY 2, 3")


def partitioned_table_oid(cur, schema, table):
    """The oid of ``schema.table`` when it is a partitioned table, else None (a plain table, or none at all)."""
    cur.execute("SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'p'", (schema, table))
    row = cur.fetchone()
    return row[0] if row else None


def partition_tree(cur, oid, schema=None, leaves_only=False, with_relkind=False):
    """``[(oid, schema, name)]`` of every partition of the partitioned table ``oid`` at any depth (not the table
    itself), by schema and name; ``leaves_only``: the partitions that hold rows; ``schema``: only those in it;
    ``with_relkind``: ``(oid, schema, name, relkind)`` (a foreign table's partition is ``f``)."""
    cur.execute(_TREE_SQL, (oid, oid, bool(leaves_only), schema, schema))
    return [tuple(row) if with_relkind else tuple(row[:3]) for row in cur.fetchall()]


def partitions_by_table(cur, tables, leaves_only=False):
    """``{(schema, table): [(oid, schema, name), ...]}`` for the partitioned tables among ``tables`` (plain tables
    have no key)."""
    out = {}
    for schema, table in tables:
        oid = partitioned_table_oid(cur, schema, table)
        if oid is not None:
            out[(schema, table)] = partition_tree(cur, oid, leaves_only=leaves_only)
    return out
