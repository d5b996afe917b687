# -*- coding: utf-8 -*-
"""Data fingerprints: exact row counts and order-independent content hashes, and their reconciliation.

A fingerprint says, per table, how many rows it holds and a 64-bit content hash that does not
depend on row order, physical layout, column order, client session settings or (with the
normalisations below) on a planned type change such as ``text -> uuid``.  Taken before and after
every migration; ``reconcile()`` explains each difference as planned (a cast, quarantined rows,
merged rows, a table retired to the quarantine schema, a drop of an empty table) or flags it as
loss.

Canonical form (algorithm ``pgsafe-fp-v3``)
-------------------------------------------
Each value is hashed with PostgreSQL's own typed 64-bit hash function (seed 0), chosen by the
column's *hash kind* (``column_kind()``, from the base type):

========== ============================================= ==========================================
kind        live value                                     same value from ``to_jsonb(row)`` (v)
========== ============================================= ==========================================
text        ``hashtextextended(col COLLATE "C")``          ``v #>> '{}'`` hashed the same way
uuid        ``uuid_hash_extended(col)``                    ``(v #>> '{}')::uuid``
int         ``hashint8extended(col::int8)`` (int2/4/8)     ``::int8``
numeric     ``hash_numeric_extended(col)``                 ``::numeric``
float8/4    ``hashfloat8extended`` / ``hashfloat4extended`` ``::float8`` / ``::float4``
bool        ``hashint8extended(col::int)``                 ``::bool::int``
timestamptz ``timestamp_hash_extended(col::timestamp)``   ``::timestamptz::timestamp`` (UTC pinned)
timestamp   ``timestamp_hash_extended(col)``               ``::timestamp``
jsonb/json  ``jsonb_hash_extended(nullif(col::jsonb, 'null'))`` ``v`` (key order never matters)
interval    ``interval_hash_extended(col)``                ``::interval``
plain       ``hashtextextended(col::text)`` (enum, inet, money, bytea, ...)  ``v #>> '{}'``
other       ``hashtextextended(to_jsonb(col) #>> '{}')``   ``v #>> '{}'``
========== ============================================= ==========================================

so equal values hash equal across the type changes a migration makes (int4 -> int8, varchar ->
text, json -> jsonb, timestamp <-> timestamptz at UTC wall time, numeric scale 12.5 = 12.50).  Then:

* text columns (string category), when ``uuid_text='auto'`` (the default): a value spelled like
  a UUID (any case, optional hyphens at the 8-4-4-4-12 positions, optional ``{braces}``) is
  hashed as that uuid (``uuid_hash_extended(value::uuid)``), so a text column compares equal to
  the uuid column it becomes, and an upper-case or braced spelling equals the canonical one;
* explicit ``normalize`` per column: ``uuid`` (cast to uuid), ``jsonb`` (text holding JSON,
  parsed), ``text`` (the value's ``::text``), ``numeric`` (``::text::numeric``), ``timestamp_utc``
  (text parsed as timestamptz, UTC wall time), ``ignore`` (left out).

The row hash folds the value hashes, columns in jsonb key order of their names (byte length,
then bytes: ``column_order()``, so column order in the table does not matter):
``h0 = 0``, ``h(i) = hashint8extended(coalesce(value_hash_i, NULL_HASH), h(i-1))`` (a NULL, SQL
NULL or JSON null, folds ``NULL_HASH``).  The table hash is the sum of the row hashes modulo
2**64, as 16 hex digits (empty table: ``0000000000000000``).  Summing (not xor) keeps duplicate
rows visible and makes the hash additive: ``hash(before) = hash(after) + hash(quarantined rows)``
modulo 2**64, which is how quarantined and merged rows are accounted for.  No value is converted
to text unless its kind is text/plain/other, which is why a fingerprint reads a table faster
than ``pg_dump`` writes it.

Session settings are pinned inside the fingerprint transaction (``PINNED_SETTINGS``: TimeZone UTC,
DateStyle ISO, IntervalStyle postgres, extra_float_digits 1, bytea_output hex, lc_monetary C,
search_path pg_catalog, row_security off), so two clients with different settings get identical
fingerprints.  ``row_security = off`` makes a login subject to row-level security fail loudly
instead of silently counting fewer rows.  Every table is read in ONE scan, server side, inside a
``READ ONLY REPEATABLE READ`` transaction (workers share its exported snapshot).

Quarantined rows (``pgsafe.quarantine_row.row_data``) must be stored as ``to_jsonb(t.*)`` of the
original row: ``jsonb_row_hash_sql()`` hashes such a jsonb's values by the column kinds of the
table (stored in every fingerprint entry as ``kinds``), folded in the same order with the same
normalisations, so a quarantined row contributes exactly the hash it had as a live row (parsing
the values back also makes it independent of the quarantining session's settings).  A jsonb
column holding a JSON null and a SQL NULL are the same in ``to_jsonb(row)``, so they hash the
same.  Floats survive ``to_jsonb`` exactly only with extra_float_digits >= 1 (the default) in the
quarantining session.

The hash is a checksum against accidents (lost, duplicated or changed rows), not a cryptographic
proof: hashtextextended is stable across PostgreSQL versions on one byte order.

Plain Python; SQL is built with psycopg2.sql (identifiers quoted, values as parameters).
"""
from __future__ import annotations

import json
from decimal import Decimal

from ansible.module_utils.pgsafe_identifiers import split_qualified
from ansible.module_utils.pgsafe_meta import META_SCHEMA, PRODUCT_SCHEMAS
from ansible.module_utils.pgsafe_parallel import export_snapshot, join_snapshot, run_over_cursors

ALGORITHM = "pgsafe-fp-v3"
MOD = 2 ** 64
EMPTY_HASH = "0" * 16

# Settings pinned (SET LOCAL) in every fingerprint transaction.
PINNED_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
    ("search_path", "pg_catalog, pg_temp"),
    ("row_security", "off"),
    ("standard_conforming_strings", "on"),
)

NORMALIZATIONS = ("uuid", "jsonb", "text", "numeric", "timestamp_utc", "ignore")
UUID_TEXT_MODES = ("auto", "off")
# UUID spellings uuid_in accepts and we normalise: any case, optional hyphens, optional braces.
_UUID_CORE = "[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"
UUID_SPELLING_RE = "^(\\{" + _UUID_CORE + "\\}|" + _UUID_CORE + ")$"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


class FingerprintError(Exception):
    """A fingerprint could not be taken or compared; the message names the table and the fix."""


# --------------------------------------------------------------------------- names
def table_key(schema, table):
    """``schema.table`` as used in fingerprint maps; parts with a dot or a double quote are quoted."""
    def part(name):
        if "." in name or '"' in name:
            return '"' + name.replace('"', '""') + '"'
        return name
    return part(schema) + "." + part(table)


def parse_table_key(key):
    """(schema, table) from a key of a fingerprint map or a user-given ``[schema.]table``."""
    return split_qualified(key)


def canonical_key(key):
    return table_key(*parse_table_key(key))


def normalize_spec(normalize):
    """Validate ``{"schema.table": {"column": "uuid"}}`` and key it by canonical table key."""
    result = {}
    for key, columns in (normalize or {}).items():
        if not isinstance(columns, dict):
            raise FingerprintError("normalize[{0!r}] must map column names to one of {1}".format(
                key, ", ".join(NORMALIZATIONS)))
        for column, how in columns.items():
            if how not in NORMALIZATIONS:
                raise FingerprintError("normalize[{0!r}][{1!r}] = {2!r} is not one of {3}".format(
                    key, column, how, ", ".join(NORMALIZATIONS)))
        result[canonical_key(key)] = dict(columns)
    return result


# --------------------------------------------------------------------------- SQL builders
def _sql():
    from psycopg2 import sql  # imported lazily: unit tests of the pure parts need no driver
    return sql


# Hash kind of a column, from its base type: values are hashed by PostgreSQL's own typed 64-bit hash
# functions (no text output at all for most types), which is what makes a fingerprint cheaper than a dump.
KIND_BY_TYPE = {
    "text": "text", "varchar": "text", "name": "text", "citext": "text",
    "uuid": "uuid", "int2": "int", "int4": "int", "int8": "int", "numeric": "numeric", "float8": "float8",
    "float4": "float4", "bool": "bool", "timestamptz": "timestamptz", "timestamp": "timestamp", "jsonb": "jsonb",
    "json": "json", "interval": "interval",
    "inet": "plain", "cidr": "plain", "macaddr": "plain", "macaddr8": "plain", "money": "plain", "bytea": "plain",
    "oid": "plain",
}
NULL_HASH = -7046029254386353131  # stands for a NULL value in the fold


def column_kind(column):
    """Hash kind of a column dict from table_columns() (enums hash as their label)."""
    if column.get("typtype") == "e":
        return "plain"
    return KIND_BY_TYPE.get(column["type_name"], "other")


def column_order(names):
    """Columns in jsonb key order (byte length, then bytes): the order both hash paths fold them in."""
    return sorted(names, key=lambda n: (len(n.encode("utf-8")), n.encode("utf-8")))


def _uuid_or_text(sql, text, uuid_text):
    hashed = sql.SQL("hashtextextended({0} COLLATE \"C\", 0)").format(text)
    if uuid_text != "auto":
        return hashed
    return sql.SQL("CASE WHEN octet_length({0}) BETWEEN 32 AND 38 AND {0} ~* {1} THEN uuid_hash_extended(({0})::uuid, 0) "
                   "ELSE {2} END").format(text, sql.Literal(UUID_SPELLING_RE), hashed)


def _live_value_hash(column, how, uuid_text):
    """SQL for the 64-bit hash (seed 0) of one column's value in a live row (alias ``t``); NULL for NULL."""
    sql = _sql()
    col = sql.SQL("t.{0}").format(sql.Identifier(column["name"]))
    kind = column_kind(column)
    if how == "uuid":
        return sql.SQL("uuid_hash_extended((({0})::text)::uuid, 0)").format(col)
    if how == "jsonb":
        value = col if kind == "jsonb" else sql.SQL("(({0})::text)::jsonb").format(col)
        return sql.SQL("jsonb_hash_extended(nullif({0}, 'null'::jsonb), 0)").format(value)
    if how == "text":
        return sql.SQL("hashtextextended(({0})::text COLLATE \"C\", 0)").format(col)
    if how == "numeric":
        return sql.SQL("hash_numeric_extended((({0})::text)::numeric, 0)").format(col)
    if how == "timestamp_utc":
        if kind in ("timestamptz", "timestamp"):
            how = None  # timestamps already hash as their UTC wall time
        else:
            return sql.SQL("timestamp_hash_extended(((({0})::text)::timestamptz)::timestamp, 0)").format(col)
    if kind == "text":
        text = col if column["type_name"] == "text" else sql.SQL("({0})::text").format(col)
        return _uuid_or_text(sql, text, uuid_text) if column.get("category") == "S" else \
            sql.SQL("hashtextextended({0} COLLATE \"C\", 0)").format(text)
    template = {
        "uuid": "uuid_hash_extended({0}, 0)",
        "int": "hashint8extended(({0})::int8, 0)",
        "numeric": "hash_numeric_extended({0}, 0)",
        "float8": "hashfloat8extended({0}, 0)",
        "float4": "hashfloat4extended({0}, 0)",
        "bool": "hashint8extended((({0})::int)::int8, 0)",
        "timestamptz": "timestamp_hash_extended(({0})::timestamp, 0)",
        "timestamp": "timestamp_hash_extended({0}, 0)",
        "jsonb": "jsonb_hash_extended(nullif({0}, 'null'::jsonb), 0)",
        "json": "jsonb_hash_extended(nullif(({0})::jsonb, 'null'::jsonb), 0)",
        "interval": "interval_hash_extended({0}, 0)",
        "plain": "hashtextextended(({0})::text COLLATE \"C\", 0)",
    }.get(kind, "hashtextextended((to_jsonb({0}) #>> '{{}}') COLLATE \"C\", 0)")
    return sql.SQL(template).format(col)


def _jsonb_value_hash(v, kind, how, uuid_text):
    """SQL for the same hash from the value ``v`` (jsonb) a column had in ``to_jsonb(row)``."""
    sql = _sql()
    s = sql.SQL("({0} #>> '{{}}')").format(v)
    if how == "uuid":
        return sql.SQL("uuid_hash_extended(({0})::uuid, 0)").format(s)
    if how == "jsonb":
        return sql.SQL("jsonb_hash_extended(nullif(CASE WHEN jsonb_typeof({0}) = 'string' THEN ({1})::jsonb ELSE {0} "
                       "END, 'null'::jsonb), 0)").format(v, s)
    if how == "text":
        return sql.SQL("hashtextextended({0} COLLATE \"C\", 0)").format(s)
    if how == "numeric":
        return sql.SQL("hash_numeric_extended(({0})::numeric, 0)").format(s)
    if how == "timestamp_utc" and kind not in ("timestamptz", "timestamp"):
        return sql.SQL("timestamp_hash_extended((({0})::timestamptz)::timestamp, 0)").format(s)
    if kind == "text":
        return _uuid_or_text(sql, s, uuid_text)
    template = {
        "uuid": "uuid_hash_extended(({1})::uuid, 0)",
        "int": "hashint8extended(({1})::int8, 0)",
        "numeric": "hash_numeric_extended(({1})::numeric, 0)",
        "float8": "hashfloat8extended(({1})::float8, 0)",
        "float4": "hashfloat4extended(({1})::float4, 0)",
        "bool": "hashint8extended((({1})::bool::int)::int8, 0)",
        "timestamptz": "timestamp_hash_extended((({1})::timestamptz)::timestamp, 0)",
        "timestamp": "timestamp_hash_extended(({1})::timestamp, 0)",
        "jsonb": "jsonb_hash_extended(nullif({0}, 'null'::jsonb), 0)",
        "json": "jsonb_hash_extended(nullif({0}, 'null'::jsonb), 0)",
        "interval": "interval_hash_extended(({1})::interval, 0)",
    }.get(kind, "hashtextextended({1} COLLATE \"C\", 0)")
    return sql.SQL(template).format(v, s)


def _fold(value_hashes):
    """hashint8extended chained through its seed over the value hashes, from seed 0 (NULL -> NULL_HASH)."""
    sql = _sql()
    expr = sql.SQL("0::bigint")
    for value_hash in value_hashes:
        expr = sql.SQL("hashint8extended(coalesce({0}, {1}::bigint), {2})").format(
            value_hash, sql.Literal(NULL_HASH), expr)
    return expr


def live_row_hash_sql(columns, table_normalize=None, uuid_text="auto"):
    """SQL for the signed 64-bit hash of a live row (alias ``t``) of a table with ``columns``."""
    table_normalize = table_normalize or {}
    by_name = {c["name"]: c for c in columns}
    return _fold(_live_value_hash(by_name[name], table_normalize.get(name), uuid_text)
                 for name in column_order(by_name) if table_normalize.get(name) != "ignore")


def jsonb_row_hash_sql(jsonb_expr, kinds, table_normalize=None, uuid_text="auto"):
    """SQL for the signed 64-bit hash of a row given as jsonb (``to_jsonb(t.*)`` of the original row).

    ``kinds``: ``{column: hash kind}`` of the table the row came from (a fingerprint entry's
    ``kinds``, or column_kind() of its live columns).  Equal to the hash the row had as a live row.
    """
    sql = _sql()
    table_normalize = table_normalize or {}
    return _fold(_jsonb_value_hash(sql.SQL("({0} -> {1})").format(jsonb_expr, sql.Literal(name)), kinds[name],
                                   table_normalize.get(name), uuid_text)
                 for name in column_order(kinds) if table_normalize.get(name) != "ignore")


def table_fingerprint_sql(schema, table, columns, table_normalize=None, uuid_text="auto", relkind="r",
                          where=None):
    """``SELECT count(*), sum(row hash)`` over a table (one scan); ``where`` an optional sql.Composable filter."""
    sql = _sql()
    only = sql.SQL("ONLY ") if relkind == "r" else sql.SQL("")
    query = sql.SQL("SELECT count(*), sum({0}) FROM {1}{2}.{3} AS t").format(
        live_row_hash_sql(columns, table_normalize, uuid_text), only, sql.Identifier(schema), sql.Identifier(table))
    if where is not None:
        query = sql.SQL("{0} WHERE {1}").format(query, where)
    return query


def fold_hash(total):
    """A server-side sum of row hashes (numeric, may be NULL) as 16 hex digits modulo 2**64."""
    if total is None:
        return EMPTY_HASH
    return "{0:016x}".format(int(Decimal(total)) % MOD)


def add_hashes(*hashes):
    return "{0:016x}".format(sum(int(h, 16) for h in hashes) % MOD)


def sub_hash(a, b):
    return "{0:016x}".format((int(a, 16) - int(b, 16)) % MOD)


# --------------------------------------------------------------------------- catalog
def pin_settings(cur):
    """SET LOCAL the pinned settings; returns the previous values (for restore_settings)."""
    previous = []
    for name, value in PINNED_SETTINGS:
        cur.execute("SELECT current_setting(%s), set_config(%s, %s, true)", (name, name, value))
        previous.append((name, cur.fetchone()[0]))
    return previous


def restore_settings(cur, previous):
    for name, value in previous:
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))


def list_tables(cur, exclude_schemas=()):
    """User tables (ordinary and partitioned roots) outside system, product and excluded schemas."""
    excluded = list(SYSTEM_SCHEMAS) + list(PRODUCT_SCHEMAS) + list(exclude_schemas or ())
    cur.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname <> ALL (%s::text[]) AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
        "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%' "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass "
        "                AND d.objid = c.oid AND d.deptype = 'e') "
        "ORDER BY n.nspname, c.relname", (excluded,))
    return [(schema, name, kind) for schema, name, kind in cur.fetchall()]


def table_columns(cur, schema, table):
    """Live columns of a table: name, type (format_type), type_name (base type), category."""
    cur.execute(
        "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), bt.typname, bt.typcategory, c.relkind, "
        "bt.typtype "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid "
        "JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN ty.typtype = 'd' THEN ty.typbasetype ELSE ty.oid END "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table))
    rows = cur.fetchall()
    return [{"name": r[0], "type": r[1], "type_name": r[2], "category": r[3], "typtype": r[5]} for r in rows], \
        (rows[0][4] if rows else None)


def _relkind(cur, schema, table):
    cur.execute("SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, table))
    row = cur.fetchone()
    return row[0] if row else None


def resolve_tables(cur, tables=None, exclude_schemas=()):
    """[(schema, table, relkind)] for explicit names (must exist) or every user table."""
    if not tables:
        return list_tables(cur, exclude_schemas)
    resolved = []
    for name in tables:
        schema, table = parse_table_key(name)
        kind = _relkind(cur, schema, table)
        if kind not in ("r", "p"):
            raise FingerprintError("table {0} does not exist (or is not a table): check the name; write "
                                   "schema.table, quoting parts that contain dots".format(table_key(schema, table)))
        resolved.append((schema, table, kind))
    return resolved


def _fingerprint_one(cur, schema, table, kind, normalize, uuid_text, hashed_columns=None):
    """One table's fingerprint; ``hashed_columns`` ({key: names}) limits the row hash to those columns (an
    after-fingerprint compared with a before one: a column added since holds new data, nothing to lose)."""
    key = table_key(schema, table)
    all_columns, _ = table_columns(cur, schema, table)
    wanted = (hashed_columns or {}).get(key)
    columns = [c for c in all_columns if c["name"] in wanted] if wanted is not None else all_columns
    table_normalize = normalize.get(key, {})
    unknown = sorted(set(table_normalize) - {c["name"] for c in columns})
    if unknown:
        raise FingerprintError("normalize for {0} names columns it does not have: {1}".format(key, ", ".join(unknown)))
    try:
        cur.execute(table_fingerprint_sql(schema, table, columns, table_normalize, uuid_text, kind))
    except Exception as exc:  # psycopg2.Error: say which table and why
        raise FingerprintError("cannot fingerprint {0}: {1}".format(key, " ".join(str(exc).split()))) from None
    rows, total = cur.fetchone()
    entry = {"rows": int(rows), "hash": fold_hash(total),
             "columns": {c["name"]: c["type"] for c in all_columns},
             "kinds": {c["name"]: column_kind(c) for c in columns}}
    if len(columns) != len(all_columns):
        entry["unhashed_columns"] = sorted(c["name"] for c in all_columns if c not in columns)
    if table_normalize:
        entry["normalize"] = dict(table_normalize)
    return key, entry


def fingerprint_in_transaction(cur, tables=None, normalize=None, uuid_text="auto", exclude_schemas=()):
    """Fingerprint inside the caller's open transaction (e.g. under the caller's locks).

    The settings are pinned with SET LOCAL for the duration and restored afterwards.  The caller
    chooses the isolation level (use REPEATABLE READ for a consistent multi-table view).
    """
    if uuid_text not in UUID_TEXT_MODES:
        raise FingerprintError("uuid_text must be one of {0}".format(", ".join(UUID_TEXT_MODES)))
    normalize = normalize_spec(normalize)
    previous = pin_settings(cur)
    try:
        result = {}
        for schema, table, kind in resolve_tables(cur, tables, exclude_schemas):
            key, entry = _fingerprint_one(cur, schema, table, kind, normalize, uuid_text)
            result[key] = entry
        return result
    finally:
        restore_settings(cur, previous)


def _begin_snapshot_transaction(conn, snapshot=None):
    """Autocommit connection -> explicit READ ONLY REPEATABLE READ transaction with pinned settings."""
    if snapshot:
        cur = join_snapshot(conn, snapshot)
    else:
        cur = conn.cursor()
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    pin_settings(cur)
    return cur


def fingerprint(conn, tables=None, normalize=None, uuid_text="auto", exclude_schemas=(), connect=None, workers=1,
                hashed_columns=None):
    """Fingerprint tables in one READ ONLY REPEATABLE READ transaction of ``conn`` (which must be idle).

    ``tables``: names (``schema.table``; default every user table outside the product schemas and
    ``exclude_schemas``).  ``normalize``: ``{"schema.table": {"column": "uuid"|...}}``.
    ``connect``: a callable returning a new connection to the same database; with ``workers`` > 1
    the tables are spread over that many connections sharing the first one's snapshot.

    Returns ``{"algorithm", "taken_at", "snapshot_xmin", "settings", "uuid_text", "tables":
    {"schema.table": {"rows", "hash", "columns", ["normalize"]}}}``.
    """
    if uuid_text not in UUID_TEXT_MODES:
        raise FingerprintError("uuid_text must be one of {0}".format(", ".join(UUID_TEXT_MODES)))
    normalize = normalize_spec(normalize)
    if conn.get_transaction_status() != 0:  # psycopg2.extensions.TRANSACTION_STATUS_IDLE
        raise FingerprintError("fingerprint() needs an idle connection (commit or roll back first), or use "
                               "fingerprint_in_transaction() inside your own transaction")
    saved_autocommit = conn.autocommit
    conn.autocommit = True
    extra = []
    try:
        cur = _begin_snapshot_transaction(conn)
        cur.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                    "txid_snapshot_xmin(txid_current_snapshot())")
        taken_at, xmin = cur.fetchone()
        targets = resolve_tables(cur, tables, exclude_schemas)
        workers = max(1, min(int(workers or 1), len(targets)))
        cursors = [cur]
        if workers > 1 and connect is not None:
            snapshot = export_snapshot(cur)
            for _ in range(workers - 1):
                other = connect()
                extra.append(other)
                cursors.append(_begin_snapshot_transaction(other, snapshot))
        result = dict(run_over_cursors(
            cursors, sorted(targets, key=lambda t: t[2] != "p"),  # partitioned tables (the biggest reads) first
            lambda worker_cur, target: _fingerprint_one(worker_cur, target[0], target[1], target[2], normalize,
                                                        uuid_text, hashed_columns)))
        return {"algorithm": ALGORITHM, "taken_at": taken_at, "snapshot_xmin": int(xmin),
                "settings": dict(PINNED_SETTINGS), "uuid_text": uuid_text,
                "tables": {key: result[key] for key in sorted(result)}}
    finally:
        for other in extra:
            try:
                other.rollback()
            finally:
                other.close()
        try:
            conn.cursor().execute("ROLLBACK")
        finally:
            conn.autocommit = saved_autocommit


# --------------------------------------------------------------------------- quarantined rows
def table_kinds(cur, schema, table):
    """``{column: hash kind}`` of a live table (None when it does not exist)."""
    columns, _ = table_columns(cur, schema, table)
    return {c["name"]: column_kind(c) for c in columns} or None


def quarantine_contribution(cur, schema, table, normalize=None, uuid_text="auto", run_id=None,
                            include_restored=False, kinds=None):
    """Rows and hash of the rows of ``schema.table`` held in pgsafe.quarantine_row.

    Computed from ``row_data`` (the original row as ``to_jsonb(t.*)``) with the same canonical
    form as live rows, so ``before = after + quarantined`` holds for counts and hashes.
    ``kinds``: the table's ``{column: hash kind}`` when the rows were quarantined (the before
    fingerprint's entry ``kinds``); default, the live table's.
    """
    sql = _sql()
    table_normalize = normalize_spec(normalize).get(table_key(schema, table), {})
    kinds = kinds or table_kinds(cur, schema, table)
    if not kinds:
        raise FingerprintError("cannot hash the quarantined rows of {0}: the table no longer exists; pass the "
                               "column kinds of its before fingerprint".format(table_key(schema, table)))
    conditions = [sql.SQL("q.source_schema = {0}").format(sql.Literal(schema)),
                  sql.SQL("q.source_table = {0}").format(sql.Literal(table))]
    if run_id is not None:
        conditions.append(sql.SQL("q.run_id = {0}").format(sql.Literal(run_id)))
    if not include_restored:
        conditions.append(sql.SQL("q.restored_at IS NULL"))
    previous = pin_settings(cur)
    try:
        cur.execute(sql.SQL("SELECT count(*), sum({0}) FROM {1}.quarantine_row q WHERE {2}").format(
            jsonb_row_hash_sql(sql.SQL("q.row_data"), kinds, table_normalize, uuid_text), sql.Identifier(META_SCHEMA),
            sql.SQL(" AND ").join(conditions)))
        rows, total = cur.fetchone()
    finally:
        restore_settings(cur, previous)
    return {"rows": int(rows), "hash": fold_hash(total)}


def jsonb_rows_hash(cur, rows_as_jsonb, kinds, table_normalize=None, uuid_text="auto"):
    """Count and hash of rows given as JSON texts (each ``to_jsonb(t)::text`` of a row) or dicts,
    of a table with ``kinds`` (``{column: hash kind}``).

    Prefer texts: numbers in a dict went through Python floats and may no longer hash as stored.
    """
    sql = _sql()
    # JSON texts are passed through untouched (a Python round trip would turn 12.5000 into 12.5)
    payload = "[" + ",".join(r if isinstance(r, str) else json.dumps(r) for r in rows_as_jsonb) + "]"
    previous = pin_settings(cur)
    try:
        cur.execute(sql.SQL("SELECT count(*), sum({0}) FROM jsonb_array_elements({1}::jsonb) AS r(j)").format(
            jsonb_row_hash_sql(sql.SQL("r.j"), kinds, table_normalize, uuid_text), sql.Literal(payload)))
        rows, total = cur.fetchone()
    finally:
        restore_settings(cur, previous)
    return {"rows": int(rows), "hash": fold_hash(total)}


# --------------------------------------------------------------------------- storage
FINGERPRINT_DDL = """
ALTER TABLE pgsafe.fingerprint ADD COLUMN IF NOT EXISTS algorithm text;
ALTER TABLE pgsafe.fingerprint ADD COLUMN IF NOT EXISTS details jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX IF NOT EXISTS fingerprint_run_label_idx ON pgsafe.fingerprint (run_id, label, id);
CREATE TABLE IF NOT EXISTS pgsafe.fingerprint_explanation (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    explanation jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS fingerprint_explanation_run_idx ON pgsafe.fingerprint_explanation (run_id, id);
"""


def fingerprint_schema_ready(cur):
    cur.execute("SELECT to_regclass('pgsafe.fingerprint_explanation') IS NOT NULL AND EXISTS ("
                "SELECT 1 FROM information_schema.columns WHERE table_schema = 'pgsafe' "
                "AND table_name = 'fingerprint' AND column_name = 'details')")
    return bool(cur.fetchone()[0])


def ensure_fingerprint_schema(cur):
    """Add the fingerprint extras to the product schema (needs ensure_meta_schema first); True when changed."""
    if fingerprint_schema_ready(cur):
        return False
    cur.execute(FINGERPRINT_DDL)
    return True


def store_fingerprint(cur, fp, label, run_id=None, schema_fingerprint=None):
    """Insert a fingerprint into pgsafe.fingerprint; returns its id."""
    ensure_fingerprint_schema(cur)
    details = {k: v for k, v in fp.items() if k != "tables"}
    cur.execute("INSERT INTO pgsafe.fingerprint (run_id, label, schema_fingerprint, tables, algorithm, details) "
                "VALUES (%s, %s, %s, %s::jsonb, %s, %s::jsonb) RETURNING id",
                (run_id, label, schema_fingerprint, json.dumps(fp["tables"], sort_keys=True), fp.get("algorithm"),
                 json.dumps(details, sort_keys=True, default=str)))
    return cur.fetchone()[0]


def load_fingerprint(cur, run_id=None, label="before", fingerprint_id=None):
    """The newest stored fingerprint of a run with a label (or by id), as fingerprint() returns it; None if none."""
    cur.execute("SELECT to_regclass('pgsafe.fingerprint') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    extras = fingerprint_schema_ready(cur)
    cols = "id, run_id, label, taken_at, tables" + (", algorithm, details" if extras else "")
    if fingerprint_id is not None:
        cur.execute("SELECT " + cols + " FROM pgsafe.fingerprint WHERE id = %s", (fingerprint_id,))
    else:
        cur.execute("SELECT " + cols + " FROM pgsafe.fingerprint WHERE run_id IS NOT DISTINCT FROM %s AND label = %s "
                    "ORDER BY id DESC LIMIT 1", (run_id, label))
    row = cur.fetchone()
    if row is None:
        return None
    fp = dict(row[6]) if extras and row[6] else {}
    fp.update({"id": row[0], "run_id": row[1], "label": row[2], "tables": row[4],
               "algorithm": (row[5] if extras else None) or fp.get("algorithm") or ALGORITHM})
    fp.setdefault("taken_at", row[3].isoformat())
    return fp


def record_explanation(cur, run_id, explanation):
    """Record a planned change of a run (see reconcile()) for later comparisons."""
    validate_explanation(explanation)
    ensure_fingerprint_schema(cur)
    cur.execute("INSERT INTO pgsafe.fingerprint_explanation (run_id, explanation) VALUES (%s, %s::jsonb)",
                (run_id, json.dumps(explanation, sort_keys=True, default=str)))


def recorded_explanations(cur, run_id, normalize=None, uuid_text="auto", kinds_by_table=None):
    """Explanations a run left in the product schema (read only).

    * rows in pgsafe.quarantine_row (not restored) -> ``quarantine`` per source table, with hashes;
    * tables in pgsafe.quarantined_object (kind table, not restored/purged) -> ``retire`` with the
      live rows and hash of the set-aside copy;
    * explicit ones recorded with record_explanation().
    """
    explanations = []
    cur.execute("SELECT to_regclass('pgsafe.quarantine_row') IS NOT NULL")
    if not cur.fetchone()[0]:
        return explanations
    cur.execute("SELECT DISTINCT source_schema, source_table FROM pgsafe.quarantine_row "
                "WHERE run_id = %s AND restored_at IS NULL ORDER BY 1, 2", (run_id,))
    for schema, table in cur.fetchall():
        contribution = quarantine_contribution(cur, schema, table, normalize, uuid_text, run_id=run_id,
                                               kinds=(kinds_by_table or {}).get(table_key(schema, table)))
        explanations.append({"kind": "quarantine", "table": table_key(schema, table), "source": "pgsafe.quarantine_row",
                             **contribution})
    cur.execute("SELECT original_schema, original_name, quarantine_schema, quarantine_name FROM pgsafe.quarantined_object "
                "WHERE run_id = %s AND kind = 'table' AND restored_at IS NULL AND purged_at IS NULL ORDER BY id",
                (run_id,))
    for o_schema, o_name, q_schema, q_name in cur.fetchall():
        entry = {"kind": "retire", "table": table_key(o_schema, o_name), "to": table_key(q_schema, q_name),
                 "source": "pgsafe.quarantined_object"}
        if _relkind(cur, q_schema, q_name) in ("r", "p"):
            key, fp = fingerprint_in_transaction(cur, [table_key(q_schema, q_name)],
                                                 {table_key(q_schema, q_name): normalize_spec(normalize).get(
                                                     table_key(o_schema, o_name), {})}, uuid_text).popitem()
            entry.update(rows=fp["rows"], hash=fp["hash"])
        explanations.append(entry)
    if fingerprint_schema_ready(cur):
        cur.execute("SELECT explanation FROM pgsafe.fingerprint_explanation WHERE run_id = %s ORDER BY id", (run_id,))
        explanations.extend(dict(row[0], source="pgsafe.fingerprint_explanation") for row in cur.fetchall())
    return explanations


# --------------------------------------------------------------------------- reconciliation
EXPLANATION_KINDS = {
    "cast": "a planned type change of a column; content must still compare equal after normalisation "
            "(value_changing: true accepts a different hash with the same row count)",
    "quarantine": "rows moved to pgsafe.quarantine_row: rows and hash are subtracted from before",
    "merge": "rows merged into this table from another (rows, optional hash) are added to before",
    "delete": "rows deliberately deleted (rows, optional hash) are subtracted from before",
    "retire": "the table was moved to another name/schema (to); its copy there must equal before",
    "rename": "the table was renamed (to); the renamed table must equal before",
    "drop": "the table was dropped; allowed when it was empty before, or with backup_id, rows and hash "
            "(taken right before the drop) equal to before",
    "writes": "the application may write to this table during the window: growth is accepted, "
              "the content hash is not verifiable",
}


def validate_explanation(explanation):
    if not isinstance(explanation, dict) or explanation.get("kind") not in EXPLANATION_KINDS:
        raise FingerprintError("an explanation must be a dict with kind one of {0}: got {1!r}".format(
            ", ".join(sorted(EXPLANATION_KINDS)), explanation))
    if not explanation.get("table"):
        raise FingerprintError("explanation {0!r} needs a table (schema.table)".format(explanation))
    kind = explanation["kind"]
    if kind in ("quarantine", "merge", "delete") and not isinstance(explanation.get("rows"), int):
        raise FingerprintError("explanation {0!r} needs rows (an integer count)".format(explanation))
    if kind in ("retire", "rename") and not explanation.get("to"):
        raise FingerprintError("explanation {0!r} needs to (the new schema.table)".format(explanation))
    return explanation


def _tables_of(fp):
    tables = fp.get("tables", fp) if isinstance(fp, dict) else {}
    return {canonical_key(k): v for k, v in tables.items()}


def _type_changes(b, a):
    bc, ac = (b or {}).get("columns") or {}, (a or {}).get("columns") or {}
    changes = ["{0}: {1} -> {2}".format(c, bc[c], ac[c]) for c in sorted(set(bc) & set(ac)) if bc[c] != ac[c]]
    changes += ["{0}: dropped".format(c) for c in sorted(set(bc) - set(ac))]
    changes += ["{0}: added".format(c) for c in sorted(set(ac) - set(bc))]
    return changes


def reconcile(before, after, explanations=()):
    """Explain every difference between two fingerprints, or flag it.

    ``before``/``after``: fingerprint() results (or their ``tables`` maps).  ``explanations``: list
    of dicts ``{"kind": <EXPLANATION_KINDS>, "table": "schema.table", ...}``.

    Returns ``{"ok", "tables": [{table, status, before_rows, after_rows, expected_rows, explained_by,
    type_changes, detail}], "losses": [{table, kind, rows, detail}], "summary"}``; ``status`` is one
    of identical, explained, explained_unverified, added, loss.  Every unexplained difference is in
    ``losses`` (kinds: rows_missing, values_changed, rows_added, table_missing, hash_mismatch).
    """
    if isinstance(before, dict) and isinstance(after, dict) and before.get("algorithm") and after.get("algorithm") \
            and before["algorithm"] != after["algorithm"]:
        raise FingerprintError("cannot compare fingerprints of different algorithms ({0} vs {1}): take both "
                               "with the same pgsafe version".format(before["algorithm"], after["algorithm"]))
    b_tables, a_tables = _tables_of(before), _tables_of(after)
    by_table = {}
    for explanation in explanations or ():
        validate_explanation(explanation)
        by_table.setdefault(canonical_key(explanation["table"]), []).append(explanation)
    moved_to = {}
    for key, items in by_table.items():
        for e in items:
            if e["kind"] in ("retire", "rename"):
                moved_to[canonical_key(e["to"])] = key
    rows_out, losses = [], []

    def loss(key, kind, rows, detail):
        losses.append({"table": key, "kind": kind, "rows": rows, "detail": detail})

    for key in sorted(set(b_tables) | set(a_tables)):
        b, a = b_tables.get(key), a_tables.get(key)
        items = by_table.get(key, [])
        kinds = [e["kind"] for e in items]
        entry = {"table": key, "before_rows": b["rows"] if b else None, "after_rows": a["rows"] if a else None,
                 "expected_rows": None, "explained_by": kinds, "type_changes": _type_changes(b, a), "detail": ""}
        rows_out.append(entry)
        if b is None:
            if key in moved_to:
                entry.update(status="explained", detail="new name of {0}".format(moved_to[key]))
            else:
                entry.update(status="added", detail="table not in the before fingerprint")
            continue
        expected_rows, expected_hash, hash_known = b["rows"], b["hash"], True
        notes = []
        for e in items:
            if e["kind"] in ("quarantine", "delete"):
                expected_rows -= e["rows"]
                if e.get("hash"):
                    expected_hash = sub_hash(expected_hash, e["hash"])
                else:
                    hash_known = False
                notes.append("{0} {1} rows".format("quarantined" if e["kind"] == "quarantine" else "deleted",
                                                   e["rows"]))
            elif e["kind"] == "merge":
                expected_rows += e["rows"]
                if e.get("hash"):
                    expected_hash = add_hashes(expected_hash, e["hash"])
                else:
                    hash_known = False
                notes.append("merged {0} rows{1}".format(e["rows"], " from " + e["from"] if e.get("from") else ""))
        moves = [e for e in items if e["kind"] in ("retire", "rename")]
        if moves:
            e = moves[0]
            target = a_tables.get(canonical_key(e["to"]))
            rows, digest = (e.get("rows"), e.get("hash")) if e.get("rows") is not None else \
                ((target or {}).get("rows"), (target or {}).get("hash"))
            entry["expected_rows"] = expected_rows
            where = "{0} to {1}".format(e["kind"], e["to"])
            if rows is None:
                entry.update(status="loss", detail="{0}, but that table was not fingerprinted".format(where))
                loss(key, "table_missing", expected_rows, entry["detail"])
            elif rows < expected_rows:
                entry.update(status="loss", detail=", ".join(notes + ["{0} holds {1} rows, expected {2}".format(
                    where, rows, expected_rows)]))
                loss(key, "rows_missing", expected_rows - rows, entry["detail"])
            elif rows > expected_rows:
                entry.update(status="loss", detail=", ".join(notes + ["{0} holds {1} rows, expected {2}".format(
                    where, rows, expected_rows)]))
                loss(key, "rows_added", rows - expected_rows, entry["detail"])
            elif digest is not None and hash_known and digest != expected_hash:
                entry.update(status="loss", detail=", ".join(notes + ["{0}: same row count, content hash differs".format(
                    where)]))
                loss(key, "values_changed", 0, entry["detail"])
            else:
                entry.update(status="explained" if digest is not None and hash_known else "explained_unverified",
                             detail=", ".join(notes + ["{0}, {1} rows{2}".format(
                                 where, rows, ", hash equal" if digest is not None and hash_known else "")]))
            continue
        if a is None:
            # A table with rows may be dropped only after a verified backup, by a step that
            # fingerprinted it right before the drop: same rows and content hash as before.
            backed_up = [e for e in items if e["kind"] == "drop" and e.get("backup_id")
                         and e.get("rows") == b["rows"] and e.get("hash") in (None, b["hash"])]
            if "drop" in kinds and expected_rows == 0:
                entry.update(status="explained", expected_rows=0, detail=", ".join(
                    notes + ["empty table dropped as planned"]))
            elif backed_up:
                e = backed_up[-1]
                entry.update(status="explained" if e.get("hash") else "explained_unverified", expected_rows=0,
                             detail=", ".join(notes + ["dropped after verified backup {0} holding its {1} rows{2}".format(
                                 e["backup_id"], b["rows"], ", content hash equal" if e.get("hash") else "")]))
            else:
                entry.update(status="loss", expected_rows=expected_rows,
                             detail="table missing after ({0} rows before){1}".format(
                                 b["rows"], "; a drop is only explained for an empty table" if "drop" in kinds
                                 else ""))
                loss(key, "table_missing", expected_rows, entry["detail"])
            continue
        entry["expected_rows"] = expected_rows
        writes = "writes" in kinds
        value_changing_cast = any(e["kind"] == "cast" and e.get("value_changing") for e in items)
        if entry["type_changes"]:
            notes.append("types: " + "; ".join(entry["type_changes"]))
        if a["rows"] == expected_rows and a["hash"] == expected_hash and hash_known:
            entry.update(status="identical" if not items and not entry["type_changes"] else "explained",
                         detail=", ".join(notes + ["rows and content hash match"]))
        elif a["rows"] == expected_rows and not hash_known:
            entry.update(status="explained_unverified",
                         detail=", ".join(notes + ["row count matches; no hash given for the planned rows"]))
        elif writes and a["rows"] >= expected_rows:
            entry.update(status="explained_unverified",
                         detail=", ".join(notes + ["{0} rows written during the window (allowed)".format(
                             a["rows"] - expected_rows)]))
        elif a["rows"] < expected_rows:
            entry.update(status="loss", detail=", ".join(notes + ["{0} rows missing".format(expected_rows - a["rows"])]))
            loss(key, "rows_missing", expected_rows - a["rows"], entry["detail"])
        elif a["rows"] > expected_rows:
            entry.update(status="loss", detail=", ".join(notes + ["{0} unexplained extra rows".format(
                a["rows"] - expected_rows)]))
            loss(key, "rows_added", a["rows"] - expected_rows, entry["detail"])
        elif value_changing_cast:
            entry.update(status="explained_unverified",
                         detail=", ".join(notes + ["row count matches; a value-changing cast was planned"]))
        else:
            entry.update(status="loss", detail=", ".join(notes + ["same row count, content hash differs: "
                                                                   "values changed"]))
            loss(key, "values_changed", 0, entry["detail"])
    counts = {}
    for entry in rows_out:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    summary = ", ".join("{0} {1}".format(n, status) for status, n in sorted(counts.items()))
    if losses:
        summary += "; UNEXPLAINED: " + "; ".join("{0} {1} ({2} rows)".format(x["table"], x["kind"], x["rows"])
                                                 for x in losses)
    return {"ok": not losses, "tables": rows_out, "losses": losses, "summary": summary}


def _normalize_of(fp):
    """Per-table normalisations recorded in a fingerprint (re-applied to the other side)."""
    return {key: entry["normalize"] for key, entry in _tables_of(fp).items() if entry.get("normalize")}


def compare(conn, run_id=None, before=None, before_label="before", after=None, after_label=None,
            explanations=(), use_recorded=True, normalize=None, uuid_text=None, tables=None, connect=None,
            workers=1):
    """Reconcile a before fingerprint with an after one (stored, given, or taken now). Never writes.

    ``before``/``after``: fingerprint dicts; when None they are loaded from pgsafe.fingerprint
    (``run_id`` + label); ``after`` None and ``after_label`` None takes a live fingerprint now,
    with the normalisations the before fingerprint used.  ``use_recorded`` adds the explanations
    the run left in the product schema (recorded_explanations()).

    Returns reconcile()'s dict plus ``before`` / ``after`` (id, label, taken_at, total rows) and
    ``explanations`` (the list used).
    """
    if conn.get_transaction_status() != 0:
        raise FingerprintError("compare() needs an idle connection")
    saved = conn.autocommit
    conn.autocommit = True
    try:
        cur = _begin_snapshot_transaction(conn)
        if before is None:
            before = load_fingerprint(cur, run_id, before_label)
            if before is None:
                raise FingerprintError("no fingerprint labelled {0!r} is stored for run {1!r} in pgsafe.fingerprint: "
                                       "take one with pgsafe_fingerprint (store: true) before the change, or pass "
                                       "before".format(before_label, run_id))
        if after is None and after_label is not None:
            after = load_fingerprint(cur, run_id, after_label)
            if after is None:
                raise FingerprintError("no fingerprint labelled {0!r} is stored for run {1!r}".format(after_label,
                                                                                                     run_id))
        merged_normalize = _normalize_of(before)
        merged_normalize.update(normalize_spec(normalize))
        mode = uuid_text or before.get("uuid_text") or "auto"
        kinds_by_table = {key: entry.get("kinds") for key, entry in _tables_of(before).items() if entry.get("kinds")}
        recorded = recorded_explanations(cur, run_id, merged_normalize, mode, kinds_by_table) \
            if (use_recorded and run_id) else []
        cur.execute("ROLLBACK")
    finally:
        conn.autocommit = saved
    if after is None:
        # Hashed over the columns the before fingerprint had: a column a planned step added holds only new data.
        after = fingerprint(conn, tables=tables, normalize=merged_normalize_for(merged_normalize, conn),
                            uuid_text=mode, connect=connect, workers=workers,
                            hashed_columns={k: set(v.get("columns") or {}) for k, v in _tables_of(before).items()})
    # quarantined rows and retired tables the run recorded are authoritative: a given explanation of the same
    # kind for the same table would count them twice
    covered = {(e["kind"], canonical_key(e["table"])) for e in recorded if e["kind"] in ("quarantine", "retire")}
    given = [validate_explanation(dict(e)) for e in (explanations or ())]
    used = list(recorded) + [e for e in given if (e["kind"], canonical_key(e["table"])) not in covered]
    result = reconcile(before, after, used)

    def meta(fp):
        return {"id": fp.get("id"), "label": fp.get("label"), "taken_at": fp.get("taken_at"),
                "tables": len(_tables_of(fp)), "total_rows": sum(t["rows"] for t in _tables_of(fp).values())}

    result.update(before=meta(before), after=meta(after), explanations=used, after_fingerprint=after)
    return result


def merged_normalize_for(normalize, conn):
    """Keep only the normalisations whose table and columns still exist (a retired table has none)."""
    if not normalize:
        return {}
    saved = conn.autocommit
    conn.autocommit = True
    kept = {}
    try:
        with conn.cursor() as cur:
            for key, columns in normalize.items():
                schema, table = parse_table_key(key)
                live, _ = table_columns(cur, schema, table)
                names = {c["name"] for c in live}
                cols = {c: how for c, how in columns.items() if c in names}
                if cols:
                    kept[key] = cols
    finally:
        conn.autocommit = saved
    return kept
