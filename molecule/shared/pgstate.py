#!/usr/bin/env python3
"""State of a Postgres database, for the Molecule scenarios: what must not change, and what was there.

    pgstate.py snapshot --port P [--host H] [--user U] --dbname D --out FILE [--rows]
    pgstate.py compare --before FILE --port P ... [--out FILE]     exit 1 and print the differences

The snapshot holds the server's database list, the target database's catalog (schemas, relations,
columns, constraints with their validity, indexes with their validity, functions, triggers,
policies, comments, sequences' positions), per-table row counts and content hashes, and the write
counters of pg_stat_user_tables (n_tup_ins/upd/del/hot_upd).  ``--rows`` adds every row's hash
(md5 of ``to_jsonb(row)``: independent of column order, and unchanged by a text -> uuid conversion
of uuid-shaped values), which the verifiers use to prove that no row was lost.

The password comes from PGPASSFILE (or the usual libpq environment): never from the command line.
Plain psycopg2; identifiers through psycopg2.sql.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys

import psycopg2
from psycopg2 import sql

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def connect(host: str, port: int, user: str, dbname: str):
    conn = psycopg2.connect(host=host, port=port, user=user, dbname=dbname, connect_timeout=10,
                            application_name="pgsafe-molecule-pgstate")
    conn.set_session(readonly=True, autocommit=False)
    return conn


def _rows(cur, query: str, params=None) -> list[list]:
    cur.execute(query, params)
    return [list(r) for r in cur.fetchall()]


def catalog(cur) -> dict:
    """Everything a check-mode run must leave untouched, keyed for readable differences."""
    excl = list(SYSTEM_SCHEMAS)
    out: dict[str, object] = {}
    out["schemas"] = [r[0] for r in _rows(cur, "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) "
                                               "AND nspname NOT LIKE 'pg_temp%%' AND nspname NOT LIKE 'pg_toast_temp%%' "
                                               "ORDER BY 1", (excl,))]
    out["relations"] = _rows(cur, """
        SELECT n.nspname, c.relname, c.relkind::text, c.relpersistence::text, c.relispartition
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast_temp%%'
         ORDER BY 1, 2""", (excl,))
    out["columns"] = _rows(cur, """
        SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
               col_description(c.oid, a.attnum)
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%'
         ORDER BY 1, 2, 3""", (excl,))
    out["constraints"] = _rows(cur, """
        SELECT n.nspname, c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid), k.convalidated
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname <> ALL(%s) ORDER BY 1, 2, 3""", (excl,))
    out["indexes"] = _rows(cur, """
        SELECT n.nspname, c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname <> ALL(%s) ORDER BY 1, 2""", (excl,))
    out["functions"] = _rows(cur, """
        SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), md5(p.prosrc)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname <> ALL(%s) ORDER BY 1, 2, 3""", (excl,))
    out["triggers"] = _rows(cur, """
        SELECT n.nspname, c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND n.nspname <> ALL(%s) ORDER BY 1, 2, 3""", (excl,))
    out["policies"] = _rows(cur, """
        SELECT schemaname, tablename, policyname, cmd, qual, with_check FROM pg_policies
         ORDER BY 1, 2, 3""")
    out["table_comments"] = _rows(cur, """
        SELECT n.nspname, c.relname, obj_description(c.oid, 'pg_class')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE obj_description(c.oid, 'pg_class') IS NOT NULL AND n.nspname <> ALL(%s) ORDER BY 1, 2""", (excl,))
    sequences = _rows(cur, """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'S' AND n.nspname <> ALL(%s) ORDER BY 1, 2""", (excl,))
    positions = []
    for schema, name in sequences:
        cur.execute(sql.SQL("SELECT last_value, is_called FROM {}.{}").format(sql.Identifier(schema),
                                                                             sql.Identifier(name)))
        positions.append([schema, name, *cur.fetchone()])
    out["sequences"] = positions
    return out


def tables(cur) -> list[tuple[str, str]]:
    return [tuple(r) for r in _rows(cur, """
        SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition  -- a partitioned table's rows: once, through it
           AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg_temp%%'
         ORDER BY 1, 2""", (list(SYSTEM_SCHEMAS),))]


def row_hashes(cur, schema: str, table: str) -> list[str]:
    cur.execute(sql.SQL("SELECT md5(to_jsonb(t)::text) AS h FROM {}.{} t ORDER BY h").format(
        sql.Identifier(schema), sql.Identifier(table)))
    return [r[0] for r in cur.fetchall()]


def snapshot(conn, with_rows: bool = False) -> dict:
    with conn.cursor() as cur:
        # Pinned settings: the same rows print the same way whoever asks.
        cur.execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL extra_float_digits = 3;"
                    "SET LOCAL IntervalStyle = 'postgres'")
        cur.execute("SELECT current_setting('server_version_num')::int, current_database()")
        version, dbname = cur.fetchone()
        cur.execute("SELECT datname FROM pg_database ORDER BY 1")
        databases = [r[0] for r in cur.fetchall()]
        cat = catalog(cur)
        data = {}
        rows = {}
        for schema, table in tables(cur):
            hashes = row_hashes(cur, schema, table)
            key = f"{schema}.{table}"
            data[key] = {"rows": len(hashes), "sha256": hashlib.sha256("".join(hashes).encode()).hexdigest()}
            if with_rows:
                rows[key] = hashes
        counters = {f"{r[0]}.{r[1]}": r[2:] for r in _rows(cur, """
            SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd
              FROM pg_stat_user_tables ORDER BY 1, 2""")}
    conn.rollback()
    snap = {"server_version_num": version, "database": dbname, "databases": databases, "catalog": cat,
            "catalog_sha256": hashlib.sha256(json.dumps(cat, sort_keys=True, default=str).encode()).hexdigest(),
            "data": data, "write_counters": counters}
    if with_rows:
        snap["rows"] = rows
    return snap


def differences(before: dict, after: dict) -> list[str]:
    """Human-readable differences between two snapshots (catalog, data, counters, databases)."""
    out = []
    if before["databases"] != after["databases"]:
        out.append(f"databases: {before['databases']} -> {after['databases']}")
    for key in sorted(set(before["catalog"]) | set(after["catalog"])):
        b = {json.dumps(x, default=str) for x in before["catalog"].get(key, [])}
        a = {json.dumps(x, default=str) for x in after["catalog"].get(key, [])}
        out += [f"catalog {key}: gone: {x}" for x in sorted(b - a)]
        out += [f"catalog {key}: new:  {x}" for x in sorted(a - b)]
    for table in sorted(set(before["data"]) | set(after["data"])):
        b, a = before["data"].get(table), after["data"].get(table)
        if b != a:
            out.append(f"data {table}: {b} -> {a}")
    for table in sorted(set(before["write_counters"]) | set(after["write_counters"])):
        b, a = before["write_counters"].get(table), after["write_counters"].get(table)
        if b != a:
            out.append(f"pg_stat_user_tables {table} (ins, upd, del, hot_upd): {b} -> {a}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("snapshot", "compare"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--user", default="postgres")
        p.add_argument("--dbname", required=True)
        p.add_argument("--out")
        p.add_argument("--rows", action="store_true")
        if name == "compare":
            p.add_argument("--before", required=True)
    args = parser.parse_args(argv)
    conn = connect(args.host, args.port, args.user, args.dbname)
    try:
        snap = snapshot(conn, with_rows=args.rows)
    finally:
        conn.close()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(snap, handle, indent=1, sort_keys=True, default=str)
    if args.command == "snapshot":
        print(f"{args.dbname}: {len(snap['data'])} tables, catalog {snap['catalog_sha256'][:12]}")
        return 0
    with open(args.before, encoding="utf-8") as handle:
        before = json.load(handle)
    # Round-trip through JSON so both sides have the same types.
    diff = differences(before, json.loads(json.dumps(snap, default=str)))
    if diff:
        print(f"{args.dbname}: {len(diff)} difference(s) since {args.before}:")
        print("\n".join(diff))
        return 1
    print(f"{args.dbname}: unchanged (databases, catalog, {len(snap['data'])} tables' data, write counters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
