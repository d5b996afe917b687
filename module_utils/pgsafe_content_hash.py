# -*- coding: utf-8 -*-
"""Hash a table's content: the one place that says how rows are counted and hashed.

Used by the data fingerprint (pgsafe_fingerprint), the backup manifest and its restore test
(pgsafe_backup_exec, pgsafe_backup_restore) and anyone who needs "the same rows, the same values".

Data fingerprints: exact row counts and order-independent content hashes.

A fingerprint says, per table, how many rows it holds and a 64-bit content hash that does not
depend on row order, physical layout, column order, client session settings or (with the
normalisations below) on a planned type change such as ``text -> uuid``.  Taken before and after
every migration; ``reconcile()`` explains each difference as planned (a cast, quarantined rows,
merged rows, a table retired to the quarantine schema, a drop of an empty table) or flags it as
loss.

Canonical form (algorithm ``pgsafe-fp-v4``)
-------------------------------------------
Each value is hashed to 64 bits by the column's *hash kind* (``column_kind()``, from the base type);
``LIVE_HASH`` / ``JSONB_HASH`` hold the SQL:

=========== ======================================================== ================================
kind        live value                                               from ``to_jsonb(row)`` (v)
=========== ======================================================== ================================
text        ``hashtextextended(col COLLATE "C")`` (uuid spellings:    ``v #>> '{}'``, the same way
            see below)
uuid        ``hashtextextended(col::text)``: its canonical spelling  ``(v #>> '{}')::uuid::text``
int         ``hashint8extended(0, col::int8)`` (int2/4/8)            ``::int8``
numeric     ``hashtextextended(trim_scale(col)::text)``              ``::numeric``, the same way
float8/4    ``hashfloat8extended`` / ``hashfloat4extended``          ``::float8`` / ``::float4``
bool        ``hashint8extended(0, col::int)``                        ``::bool::int``
timestamptz ``timestamp_hash_extended(w)``, w its UTC wall time      ``::timestamptz::timestamp``
            (``col AT TIME ZONE INTERVAL '0'``: no zone lookup)
timestamp   ``timestamp_hash_extended(col)``                         ``::timestamp``
jsonb/json  ``hashtextextended(nullif(col::jsonb, 'null')::text)``   ``v``, the same way
interval    ``hashtextextended(col::text)`` (IntervalStyle pinned)    ``::interval::text``
plain       ``hashtextextended(col::text)`` (enum, money, bytea...)  ``v #>> '{}'``
other       ``hashtextextended(to_jsonb(col) #>> '{}')`` (arrays,    ``v #>> '{}'``
            date, inet, composite, ...)
=========== ======================================================== ================================

Equal values hash equal across the type changes a migration makes: int2/int4 -> int8, varchar ->
text, json -> jsonb, timestamp <-> timestamptz at UTC wall time, numeric(p,1) -> numeric(p,2), text
-> uuid.  What is deliberately equal (one value, several spellings): numeric scale (12.5 = 12.50:
a rescaling type change keeps the number, and every later computation gives the same result);
float -0.0 = 0.0 and one NaN (they compare equal in SQL); the spellings of one UUID in a text column
(below); a JSON null and SQL NULL in a jsonb column (to_jsonb(row) cannot tell them apart); jsonb
key order and whitespace of json.  Everything else is exact: the sign of a number, inside jsonb too
(PostgreSQL's hash_numeric ignores it, and gives NaN and +-Infinity one hash, which is why numeric
and jsonb are hashed by their canonical text), int8 values whose halves PostgreSQL's hashint8 folds
alike (0 and 4294967297: the value goes in through the seed, mixed whole), intervals ('1 mon' is
not '30 days'), the letters' case and bytes of text (collation "C", whatever the column's).  One
fold remains, PostgreSQL's own in timestamp_hash: two timestamps exactly 2**32 microseconds (71 min
34.967296 s) +-1 us apart can hash alike; no accident we know of has that shape.

* text columns (string category), when ``uuid_text='auto'`` (the default): a value spelled like
  a UUID (any case, optional hyphens at the 8-4-4-4-12 positions, optional ``{braces}``) is
  hashed as its canonical spelling (``value::uuid::text``), the one a uuid column's values hash
  as, so a text column compares equal to the uuid column it becomes, and an upper-case or braced
  spelling equals the canonical one.  Canonical-shaped values (36 bytes, lower case, no brace)
  skip the pattern match (``_uuid_or_text``): v3 matched every value of 32-38 bytes against a
  regular expression, most of its cost on tables keyed by text uuids;
* explicit ``normalize`` per column: ``uuid`` (cast to uuid), ``jsonb`` (text holding JSON,
  parsed), ``text`` (the value's ``::text``), ``numeric`` (``::text::numeric``), ``timestamp_utc``
  (text parsed as timestamptz, UTC wall time), ``ignore`` (left out).

The row hash chains the value hashes, columns in jsonb key order of their names (byte length,
then bytes: ``column_order()``, so column order in the table does not matter), through
hashint8extended's seed, which mixes all 64 bits: ``h0 = 0``, ``h(i) = hashint8extended(0, h(i-1)
# coalesce(value_hash_i, NULL_HASH))`` (# is xor; a NULL, SQL NULL or JSON null, is ``NULL_HASH``).
The chain is not linear, so two rows exchanging values is a change.  The table hash is the sum of
the row hashes modulo 2**64, as 16 hex digits (empty table: ``0000000000000000``).  Summing (not
xor) keeps duplicate rows visible and makes the hash additive: ``hash(before) = hash(after) +
hash(quarantined rows)`` modulo 2**64, which is how quarantined and merged rows are accounted for,
and how a large table read in pieces by several workers adds up to its single scan
(pgsafe_fingerprint.table_pieces).  Fingerprints of another algorithm (v3 and older) never compare
with these: reconcile() refuses a pair of different algorithms, and one stored without its
algorithm loads as ``unrecorded``.

Session settings are pinned inside the fingerprint transaction (``PINNED_SETTINGS``: TimeZone UTC,
DateStyle ISO, IntervalStyle postgres, extra_float_digits 1, bytea_output hex, lc_monetary C,
search_path pg_catalog, row_security off), so two clients with different settings get identical
fingerprints.  ``row_security = off`` makes a login subject to row-level security fail loudly
instead of silently counting fewer rows.  Every table is read server side inside ONE ``READ ONLY
REPEATABLE READ`` snapshot (workers share it: pg_export_snapshot), large ones in block-range pieces.

Quarantined rows (``pgsafe.quarantine_row.row_data``) must be stored as ``to_jsonb(t.*)`` of the
original row (``t.*``: a bare ``t`` is the table's column of that name when it has one):
``jsonb_row_hash_sql()`` hashes such a jsonb's values by the column kinds of the table (stored
in every fingerprint entry as ``kinds``), folded in the same order with the same
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

from ansible.module_utils.pgsafe_identifiers import canonical_key, table_key

ALGORITHM = "pgsafe-fp-v4"
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


class FingerprintError(Exception):
    """A fingerprint could not be taken or compared; the message names the table and the fix."""



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


# Hash kind of a column, from its base type.  inet and cidr are "other": their ::text adds the netmask their
# output (to_jsonb) leaves out, so a quarantined row would not hash like the live one.
KIND_BY_TYPE = {
    "text": "text", "varchar": "text", "name": "text", "citext": "text",
    "uuid": "uuid", "int2": "int", "int4": "int", "int8": "int", "numeric": "numeric", "float8": "float8",
    "float4": "float4", "bool": "bool", "timestamptz": "timestamptz", "timestamp": "timestamp", "jsonb": "jsonb",
    "json": "json", "interval": "interval",
    "macaddr": "plain", "macaddr8": "plain", "money": "plain", "bytea": "plain",
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
    """A text value as hashed; with ``uuid_text='auto'`` a UUID spelling becomes its canonical spelling.

    The value is ``value::uuid::text`` when it matches UUID_SPELLING_RE, else the value itself.  The pattern costs
    some 50 times the hash, so it sees only what cheap exact tests leave open, tried cheapest first and stopping at
    the first that settles it: not 32-38 bytes long (most text: one ``octet_length`` and one comparison); a first
    character that cannot start a spelling (``{`` or a hex digit) or a second that cannot follow it (a hex digit),
    each one subscript of a table of character codes -- text of that length is mostly not hex (``{"key": ...}``,
    ``sess-...``, e-mail addresses); canonical-shaped (36 bytes, lower case, no brace: a UUID spelling of that shape
    IS the canonical one).  Only upper-case, braced or hyphen-less spellings and hex-like text reach the pattern.
    The tests decide nothing the pattern would decide otherwise: the hash is the same (pgsafe-fp-v4); a test holds
    them to the pattern's answer over spellings and near-spellings.
    """
    c = sql.SQL("({0} COLLATE \"C\")").format(text)
    if uuid_text != "auto":
        return c
    return sql.SQL("(CASE WHEN octet_length({0}) < 32 OR octet_length({0}) > 38 "
                   "OR ({2}::bool[])[ascii({0})] IS NOT TRUE OR ({3}::bool[])[ascii(substr({0}, 2, 1))] IS NOT TRUE "
                   "OR (octet_length({0}) = 36 AND lower({0}) = {0} AND ascii({0}) <> 123) "
                   "OR {0} !~* {1} THEN {0} ELSE (({0})::uuid)::text END) COLLATE \"C\"").format(
        c, sql.Literal(UUID_SPELLING_RE), sql.Literal(_SPELLING_FIRST_CODES), sql.Literal(_HEX_CODES))


def _code_table(characters):
    """A boolean array indexed by character code (ascii()), true at ``characters``: one subscript tests a class."""
    return "[0:127]={" + ",".join("t" if chr(code) in characters else "f" for code in range(128)) + "}"


# The characters a UUID spelling can start with, and hex digits (its second character is one).
_SPELLING_FIRST_CODES = _code_table("{0123456789abcdefABCDEF")
_HEX_CODES = _code_table("0123456789abcdefABCDEF")


# The 64-bit hash (seed 0) of a value of each kind, from the value ``{0}`` of the kind's own type (a live
# column) or, on the jsonb path, from its text ``{1}`` (``v #>> '{}'``) or its jsonb ``{0}`` (``v``).  Equal
# values give equal hashes on both paths; see the module docstring for what is deliberately equal.
# hashint8extended(0, x) takes x as its seed, which it mixes whole: as the value argument it would fold the
# 64 bits to 32 first (0 and 4294967297 hash alike).
_TEXT_HASH = "hashtextextended(({0})::text COLLATE \"C\", 0)"
LIVE_HASH = {
    "uuid": _TEXT_HASH,
    "int": "hashint8extended(0, ({0})::int8)",
    "numeric": "hashtextextended(trim_scale({0})::text COLLATE \"C\", 0)",
    "float8": "hashfloat8extended({0}, 0)",
    "float4": "hashfloat4extended({0}, 0)",
    "bool": "hashint8extended(0, ({0})::int::int8)",
    "timestamptz": "timestamp_hash_extended(({0}) AT TIME ZONE INTERVAL '0', 0)",  # UTC wall time, no zone lookup
    "timestamp": "timestamp_hash_extended({0}, 0)",
    "jsonb": "hashtextextended((nullif({0}, 'null'::jsonb))::text COLLATE \"C\", 0)",
    "json": "hashtextextended((nullif(({0})::jsonb, 'null'::jsonb))::text COLLATE \"C\", 0)",
    "interval": _TEXT_HASH,
    "plain": _TEXT_HASH,
}
JSONB_HASH = {
    "uuid": "hashtextextended((({1})::uuid)::text COLLATE \"C\", 0)",
    "int": "hashint8extended(0, ({1})::int8)",
    "numeric": "hashtextextended(trim_scale(({1})::numeric)::text COLLATE \"C\", 0)",
    "float8": "hashfloat8extended(({1})::float8, 0)",
    "float4": "hashfloat4extended(({1})::float4, 0)",
    "bool": "hashint8extended(0, ({1})::bool::int::int8)",
    "timestamptz": "timestamp_hash_extended((({1})::timestamptz)::timestamp, 0)",
    "timestamp": "timestamp_hash_extended(({1})::timestamp, 0)",
    "jsonb": "hashtextextended((nullif({0}, 'null'::jsonb))::text COLLATE \"C\", 0)",
    "json": "hashtextextended((nullif({0}, 'null'::jsonb))::text COLLATE \"C\", 0)",
    "interval": "hashtextextended((({1})::interval)::text COLLATE \"C\", 0)",
}


def _live_value_hash(column, how, uuid_text):
    """SQL for the 64-bit hash of one column's value in a live row (alias ``t``); NULL for NULL."""
    sql = _sql()
    col = sql.SQL("t.{0}").format(sql.Identifier(column["name"]))
    kind = column_kind(column)
    if how == "uuid":
        return sql.SQL(JSONB_HASH["uuid"]).format(col, sql.SQL("({0})::text").format(col))
    if how == "jsonb":
        value = col if kind == "jsonb" else sql.SQL("(({0})::text)::jsonb").format(col)
        return sql.SQL(LIVE_HASH["jsonb"]).format(value)
    if how == "text":
        return sql.SQL(_TEXT_HASH).format(col)
    if how == "numeric":
        return sql.SQL(JSONB_HASH["numeric"]).format(col, sql.SQL("({0})::text").format(col))
    if how == "timestamp_utc" and kind not in ("timestamptz", "timestamp"):  # timestamps: their instant already
        return sql.SQL(JSONB_HASH["timestamptz"]).format(col, sql.SQL("({0})::text").format(col))
    return typed_value_hash(col, kind, uuid_text if column.get("category") == "S" else "off",
                            column["type_name"] == "text")


def typed_value_hash(value, kind, uuid_text="auto", is_text=False):
    """SQL for the 64-bit hash of ``value`` (a psycopg2.sql expression OF the hash kind's own type: a column of that
    kind, or a cast to such a type); NULL for NULL.  The live path of every column without a normalisation."""
    sql = _sql()
    if kind == "text":
        text = value if is_text else sql.SQL("({0})::text").format(value)
        return sql.SQL("hashtextextended({0}, 0)").format(_uuid_or_text(sql, text, uuid_text))
    return sql.SQL(LIVE_HASH.get(kind, "hashtextextended((to_jsonb({0}) #>> '{{}}') COLLATE \"C\", 0)")).format(value)


def _jsonb_value_hash(v, kind, how, uuid_text):
    """SQL for the same hash from the value ``v`` (jsonb) a column had in ``to_jsonb(row)``."""
    sql = _sql()
    s = sql.SQL("({0} #>> '{{}}')").format(v)
    if how == "jsonb":
        parsed = sql.SQL("CASE WHEN jsonb_typeof({0}) = 'string' THEN ({1})::jsonb ELSE {0} END").format(v, s)
        return sql.SQL(JSONB_HASH["jsonb"]).format(parsed)
    if how == "text":
        return sql.SQL("hashtextextended({0} COLLATE \"C\", 0)").format(s)
    if how in ("uuid", "numeric"):
        kind = how
    elif how == "timestamp_utc" and kind not in ("timestamptz", "timestamp"):
        kind = "timestamptz"
    if kind == "text":
        return sql.SQL("hashtextextended({0}, 0)").format(_uuid_or_text(sql, s, uuid_text))
    return sql.SQL(JSONB_HASH.get(kind, "hashtextextended({1} COLLATE \"C\", 0)")).format(v, s)


def _fold(value_hashes):
    """The row hash: the value hashes chained through hashint8extended's seed, ``h = hashint8extended(0, h #
    coalesce(value_hash, NULL_HASH))`` from ``h = 0`` (# is xor): every step mixes all 64 bits of the state."""
    sql = _sql()
    expr = sql.SQL("0::bigint")
    for value_hash in value_hashes:
        expr = sql.SQL("hashint8extended(0, {0} # coalesce({1}, {2}::bigint))").format(
            expr, value_hash, sql.Literal(NULL_HASH))
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
                          where=None, also=()):
    """``SELECT count(*), sum(row hash)`` over a table (one scan); ``where`` an optional sql.Composable filter;
    ``also``: more aggregates over the same rows (alias ``t``), selected after those two (one read serving
    several proofs: the restore test's manifest hash, ``manifest_sum_sql``)."""
    sql = _sql()
    only = sql.SQL("ONLY ") if relkind == "r" else sql.SQL("")
    extra = sql.SQL("").join(sql.SQL(", {0}").format(item) for item in also)
    query = sql.SQL("SELECT count(*), sum({0}){1} FROM {2}{3}.{4} AS t").format(
        live_row_hash_sql(columns, table_normalize, uuid_text), extra, only, sql.Identifier(schema),
        sql.Identifier(table))
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




# --------------------------------------------------------------------------- session settings and catalog
def pin_settings(cur):
    """SET LOCAL the pinned settings; returns the previous values (for restore_settings)."""
    previous = []
    for name, value in PINNED_SETTINGS:
        cur.execute("SELECT current_setting(%s), set_config(%s, %s, true)", (name, name, value))
        previous.append((name, cur.fetchone()[0]))
    return previous


def restore_settings(cur, previous):
    """Put the settings back (SET LOCAL), unless the transaction failed: then nothing can run in it, the
    rollback resets them anyway, and the error that failed it must be the one raised, not a second one."""
    if cur.connection.get_transaction_status() == 3:  # psycopg2.extensions.TRANSACTION_STATUS_INERROR
        return
    for name, value in previous:
        cur.execute("SELECT set_config(%s, %s, true)", (name, value))



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



def table_kinds(cur, schema, table):
    """``{column: hash kind}`` of a live table (None when it does not exist)."""
    columns, _ = table_columns(cur, schema, table)
    return {c["name"]: column_kind(c) for c in columns} or None


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


# --------------------------------------------------------------------------- one table's content
def table_content_hash(cur, schema, table, columns=None, where=None, params=None, table_normalize=None,
                       uuid_text="auto", relkind="r"):
    """``{"rows", "hash"}`` of a table (or of its rows matching ``where``, a psycopg2.sql filter on alias ``t``
    with ``params``): the fingerprint's canonical form, so equal rows hash equal wherever they are.

    ``columns``: names to hash (default every live column).  Runs in the caller's open transaction (not on an
    autocommit connection): the settings are pinned with SET LOCAL for the query and restored after it.
    """
    live, kind = table_columns(cur, schema, table)
    if not live:
        raise FingerprintError("cannot hash {0}: no such table (or no columns)".format(table_key(schema, table)))
    hashed = [c for c in live if columns is None or c["name"] in columns]
    previous = pin_settings(cur)
    try:
        cur.execute(table_fingerprint_sql(schema, table, hashed, table_normalize, uuid_text, kind or relkind, where),
                    params)
        rows, total = cur.fetchone()
    finally:
        restore_settings(cur, previous)
    return {"rows": int(rows), "hash": fold_hash(total)}


# --------------------------------------------------------------------------- the backup manifest's methods
# Content hash per table, order-independent (a sum of 64-bit row hashes), as recorded in backup manifests.
# "record" hashes each column with its type's hash function (PostgreSQL 14+, every column type hashable: about
# 3x cheaper); "text" hashes the row's text form (any type; relies on the backup's pinned session settings).
# A type whose hash function hashes an internal id rather than the value (an enum hashes its label's OID, the
# reg* types the object's OID) is "text": a restore assigns new OIDs, so "record" would differ for equal rows.
MANIFEST_SUM = {
    "record": "coalesce(sum(hash_record_extended(ROW({alias}.*), 0)), 0)::text",
    "text": "coalesce(sum(hashtextextended(ROW({alias}.*)::text, 0)), 0)::text",
}
STATS_SQL = {method: "SELECT count(*), " + total + " FROM {table} AS {alias}" for method, total in MANIFEST_SUM.items()}


def manifest_sum_sql(method, alias="t"):
    """The manifest's content hash aggregate (``method``) over rows of alias ``alias``, to select beside others."""
    sql = _sql()
    return sql.SQL(MANIFEST_SUM[method]).format(alias=sql.Identifier(alias))


# Does a column of the table have (at any depth: array, domain, range, multirange, composite) a type whose hash is
# an OID: an enum or a reg* type?
OID_HASHED_COLUMN_SQL = """
WITH RECURSIVE used(oid) AS (
    SELECT a.atttypid FROM pg_catalog.pg_attribute a
      JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
    UNION
    SELECT part.oid FROM used u JOIN pg_catalog.pg_type t ON t.oid = u.oid
      CROSS JOIN LATERAL (
        SELECT NULLIF(t.typelem, 0) UNION ALL SELECT NULLIF(t.typbasetype, 0)
        UNION ALL SELECT r.rngsubtype FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid
        UNION ALL SELECT r.rngtypid FROM pg_catalog.pg_range r WHERE r.rngmultitypid = t.oid
        UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = NULLIF(t.typrelid, 0) AND a.attnum > 0 AND NOT a.attisdropped
      ) AS part(oid)
     WHERE part.oid IS NOT NULL
)
SELECT EXISTS (SELECT 1 FROM used u JOIN pg_catalog.pg_type t ON t.oid = u.oid
                WHERE t.typtype = 'e' OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname LIKE 'reg%%'))
"""


def _automatic_method(cur, schema, table):
    """"text" when a column's hash would be an OID (enum, reg*), else "record" (which falls back to "text")."""
    cur.execute(OID_HASHED_COLUMN_SQL, (schema, table))
    return "text" if cur.fetchone()[0] else "record"


def table_stats(cur, tables, methods=None):
    """{table_key: {schema, table, rows, hash, method}} of ``tables`` [(schema, table)], with the backup's pinned
    settings already set (``pgsafe_backup_exec.pin_settings``).

    ``methods`` ({table_key: "record"|"text"}) forces the method per table (the restore side uses the
    manifest's); otherwise "text" where a column's hash would be an OID (enum, reg*: new OIDs after a restore),
    else "record" is tried and "text" used where a column type has no hash function.
    """
    import psycopg2
    out = {}
    for schema, table in tables:
        key = table_key(schema, table)
        forced = (methods or {}).get(key)
        method = forced or _automatic_method(cur, schema, table)
        if forced or method == "text":
            rows, digest = _stats(cur, schema, table, method)
        else:
            cur.execute("SAVEPOINT pgsafe_stats")
            try:
                method = "record"
                rows, digest = _stats(cur, schema, table, method)
                cur.execute("RELEASE SAVEPOINT pgsafe_stats")
            except (psycopg2.errors.UndefinedFunction, psycopg2.errors.FeatureNotSupported):
                cur.execute("ROLLBACK TO SAVEPOINT pgsafe_stats")
                method = "text"
                rows, digest = _stats(cur, schema, table, method)
        out[key] = {"schema": schema, "table": table, "rows": rows, "hash": digest, "method": method}
    return out


def _stats(cur, schema, table, method):
    sql = _sql()
    cur.execute(sql.SQL(STATS_SQL[method]).format(table=sql.Identifier(schema, table), alias=sql.Identifier("r")))
    return cur.fetchone()


def mapped_rows_hash(cur, source, values, kinds, where=None, params=None, table_normalize=None, uuid_text="auto",
                     typed=False):
    """``{"rows", "hash"}`` of rows as they WILL be: ``values`` ({target column: psycopg2.sql expression over
    ``source``, e.g. a cast or a renamed column}) hashed as a row of a table with ``kinds`` ({column: hash kind},
    ``table_kinds`` of the target); equal to ``table_content_hash`` of the target once the rows are there.

    ``source``: a psycopg2.sql FROM item with its alias (``sql.SQL('{0} AS s').format(sql.Identifier(...))``);
    ``where`` an optional filter with ``params``.  For merge proofs and type-change checks: one canonical form.

    ``typed=True`` (no ``table_normalize``): every expression is already of its kind's own type (a column of the
    target's type, or a cast to it, as a type change's planned values are), so each is hashed as a live value of
    that kind (``typed_value_hash``): the same hash as the live column, some ten times cheaper than the default
    path, which hashes any value as it would come back from ``to_jsonb`` (a merge's renamed columns may be of
    another type than their target).
    """
    sql = _sql()
    names = list(values)
    alias = {name: sql.Identifier("v{0}".format(i)) for i, name in enumerate(names)}
    if typed and not table_normalize:
        columns = sql.SQL(", ").join(sql.SQL("{0} AS {1}").format(values[n], alias[n]) for n in names)
        row_hash = _fold(typed_value_hash(sql.SQL("r.{0}").format(alias[n]), kinds[n], uuid_text)
                         for n in column_order(names))
    else:
        columns = sql.SQL("jsonb_build_object({0}) AS j").format(sql.SQL(", ").join(
            sql.SQL("{0}, {1}").format(sql.Literal(name), values[name]) for name in names))
        row_hash = jsonb_row_hash_sql(sql.SQL("r.j"), {name: kinds[name] for name in names}, table_normalize,
                                      uuid_text)
    rows = sql.SQL("SELECT {0} FROM {1}").format(columns, source)
    if where is not None:
        rows = sql.SQL("{0} WHERE {1}").format(rows, where)
    # OFFSET 0 keeps the subquery: each row's values (a cast, a USING expression) are computed once, not again
    # for every reference the row hash makes to them
    query = sql.SQL("SELECT count(*), sum({0}) FROM ({1} OFFSET 0) AS r").format(row_hash, rows)
    previous = pin_settings(cur)
    try:
        cur.execute(query, params)
        rows, total = cur.fetchone()
    finally:
        restore_settings(cur, previous)
    return {"rows": int(rows), "hash": fold_hash(total)}
