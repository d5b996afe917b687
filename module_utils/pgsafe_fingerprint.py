# -*- coding: utf-8 -*-
"""Data fingerprints: per table, the exact row count and the content hash, taken, stored and compared.

A fingerprint is taken before and after every migration; ``compare()`` loads or takes them and
hands them to ``pgsafe_fingerprint_reconcile.reconcile()``, which explains each difference as planned
or flags it as loss.  How a table's content is hashed (the canonical form, algorithm
``pgsafe-fp-v4``) is pgsafe_content_hash's job; this file chooses the tables, reads them in ONE
``READ ONLY REPEATABLE READ`` snapshot (workers share it; a large table is split in block ranges
read by several workers, ``table_pieces``, whose hashes add up to the whole), accounts for
quarantined rows and retired tables, and stores fingerprints in the product schema.

Plain Python; SQL is built with psycopg2.sql (identifiers quoted, values as parameters).
"""
from __future__ import annotations

import contextlib
import json
import threading

from ansible.module_utils.pgsafe_connection import connect as open_connection
from ansible.module_utils.pgsafe_content_hash import (ALGORITHM, PINNED_SETTINGS, UUID_TEXT_MODES, FingerprintError,
                                                      _sql, add_hashes, column_kind, fold_hash, jsonb_row_hash_sql,
                                                      normalize_spec, pin_settings, restore_settings,
                                                      table_columns, table_fingerprint_sql, table_kinds)
from ansible.module_utils.pgsafe_fingerprint_reconcile import reconcile, tables_of, validate_explanation
from ansible.module_utils.pgsafe_identifiers import canonical_key, split_qualified, table_key
from ansible.module_utils.pgsafe_meta import META_SCHEMA, PRODUCT_SCHEMAS
from ansible.module_utils.pgsafe_parallel import export_snapshot, join_snapshot, run_over_cursors
from ansible.module_utils.pgsafe_progress import Progress

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


def parse_table_key(key):
    """(schema, table) from a key of a fingerprint map or a user-given ``[schema.]table``."""
    return split_qualified(key)


# --------------------------------------------------------------------------- catalog

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


def _fingerprint_one(cur, schema, table, kind, normalize, uuid_text, hashed_columns=None, where=None):
    """One table's fingerprint; ``hashed_columns`` ({key: names}) limits the row hash to those columns (an
    after-fingerprint compared with a before one: a column added since holds new data, nothing to lose);
    ``where`` (a psycopg2.sql filter on alias ``t``) limits it to a piece of the table (see table_pieces)."""
    key, entry, _ = _fingerprint_with(cur, schema, table, kind, normalize, uuid_text, hashed_columns, where)
    return key, entry


def fingerprint_table(cur, schema, table, kind, normalize=None, uuid_text="auto", also=(), where=None):
    """``(key, entry, values of also)``: one table's fingerprint entry, exactly as fingerprint() takes it, in the
    caller's open transaction (its snapshot), the settings pinned for it (SET LOCAL, then put back), and in the
    SAME scan the aggregates ``also`` over its rows (alias ``t``): one read serving two proofs (the rehearsal's
    restore test, pgsafe_backup_restore, takes the manifest's hash with it); ``where``: a piece (piece_filters)."""
    previous = pin_settings(cur)
    try:
        return _fingerprint_with(cur, schema, table, kind, normalize_spec(normalize), uuid_text, where=where,
                                 also=also)
    finally:
        restore_settings(cur, previous)


def fingerprint_document(taken_at, snapshot_xmin, tables, uuid_text="auto"):
    """The fingerprint as fingerprint() returns it, of entries ``tables`` ({key: entry}) read in one snapshot."""
    return {"algorithm": ALGORITHM, "taken_at": taken_at, "snapshot_xmin": int(snapshot_xmin),
            "settings": dict(PINNED_SETTINGS), "uuid_text": uuid_text,
            "tables": {key: tables[key] for key in sorted(tables)}}


SNAPSHOT_FACTS_SQL = ("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
                      "txid_snapshot_xmin(txid_current_snapshot())")


def _fingerprint_with(cur, schema, table, kind, normalize, uuid_text, hashed_columns=None, where=None, also=()):
    key = table_key(schema, table)
    all_columns, _ = table_columns(cur, schema, table)
    wanted = (hashed_columns or {}).get(key)
    columns = [c for c in all_columns if c["name"] in wanted] if wanted is not None else all_columns
    table_normalize = normalize.get(key, {})
    unknown = sorted(set(table_normalize) - {c["name"] for c in columns})
    if unknown:
        raise FingerprintError("normalize for {0} names columns it does not have: {1}".format(key, ", ".join(unknown)))
    try:
        cur.execute(table_fingerprint_sql(schema, table, columns, table_normalize, uuid_text, kind, where, also))
    except Exception as exc:  # psycopg2.Error: say which table and why
        raise FingerprintError("cannot fingerprint {0}: {1}".format(key, " ".join(str(exc).split()))) from None
    rows, total, *more = cur.fetchone()
    entry = {"rows": int(rows), "hash": fold_hash(total),
             "columns": {c["name"]: c["type"] for c in all_columns},
             "kinds": {c["name"]: column_kind(c) for c in columns}}
    if len(columns) != len(all_columns):
        entry["unhashed_columns"] = sorted(c["name"] for c in all_columns if c not in columns)
    if table_normalize:
        entry["normalize"] = dict(table_normalize)
    return key, entry, more


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


# A table of at least SPLIT_BYTES is read by several workers at once, in pieces of about that size (at most
# two per worker): block ranges scanned with TID range scans (PostgreSQL 14+), whose sums add up to the whole
# table's because every row is in exactly one piece (the first and last are open-ended, so rows in pages the
# size did not count are still read).  All pieces are read in the one shared snapshot.
SPLIT_BYTES = 32 * 1024 * 1024


def piece_bounds(blocks, pieces):
    """[(first block or None, end block or None)]: ``pieces`` ranges covering every block of a table."""
    pieces = max(1, min(int(pieces), int(blocks) or 1))
    cuts = [blocks * i // pieces for i in range(1, pieces)]
    return list(zip([None] + cuts, cuts + [None], strict=True))


def _piece_filter(first, end):
    sql = _sql()
    parts = []
    if first is not None:
        parts.append(sql.SQL("t.ctid >= {0}::tid").format(sql.Literal("({0},0)".format(first))))
    if end is not None:
        parts.append(sql.SQL("t.ctid < {0}::tid").format(sql.Literal("({0},0)".format(end))))
    return sql.SQL(" AND ").join(parts) if parts else None


def piece_filters(size, block_size, workers):
    """The filters (alias ``t``; None: the whole table) an ordinary table of ``size`` bytes is read in by ``workers``
    sharing one snapshot: pieces of about SPLIT_BYTES, at most two per worker (block ranges: PostgreSQL 14+)."""
    pieces = min(2 * workers, size // SPLIT_BYTES) if workers > 1 else 1
    return [_piece_filter(first, end) for first, end in piece_bounds(size // block_size, pieces)]


def table_pieces(cur, targets, workers):
    """Work items ``(target, where)``, largest first: tables of SPLIT_BYTES or more split in block ranges
    when ``workers`` > 1 on PostgreSQL 14+, partitioned tables (sizes unknown, the biggest reads) first."""
    cur.execute("SELECT current_setting('server_version_num')::int >= 140000, current_setting('block_size')::int")
    tid_ranges, block_size = cur.fetchone()
    cur.execute("SELECT x.s, x.t, pg_catalog.pg_relation_size(c.oid) FROM unnest(%s::text[], %s::text[]) AS x(s, t) "
                "JOIN pg_catalog.pg_namespace n ON n.nspname = x.s "
                "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = x.t",
                ([t[0] for t in targets], [t[1] for t in targets]))
    sizes = {(schema, table): size for schema, table, size in cur.fetchall()}
    items = []
    for target in targets:
        size = sizes.get((target[0], target[1]), 0)
        rank = (target[2] != "p", -size)
        items += [(rank, target, where)
                  for where in piece_filters(size, block_size, workers if tid_ranges and target[2] == "r" else 1)]
    items.sort(key=lambda item: item[0])
    return [(target, where) for _, target, where in items]


def add_piece(result, key, entry):
    """Add a piece's rows and hash to the table's entry so far (hashes are additive)."""
    if key in result:
        entry = dict(entry, rows=result[key]["rows"] + entry["rows"], hash=add_hashes(result[key]["hash"],
                                                                                     entry["hash"]))
    result[key] = entry


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
    lock = threading.Lock()
    try:
        cur = _begin_snapshot_transaction(conn)
        cur.execute(SNAPSHOT_FACTS_SQL)
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
        items = table_pieces(cur, targets, len(cursors))
        left = {}
        for target, _ in items:
            left[target] = left.get(target, 0) + 1
        with Progress("fingerprint", total=len(targets), unit="tables") as progress:
            def one(worker_cur, item):
                (schema, table, kind), where = item
                entry = _fingerprint_one(worker_cur, schema, table, kind, normalize, uuid_text, hashed_columns, where)
                with lock:
                    left[item[0]] -= 1
                    if not left[item[0]]:
                        progress.advance(1)
                return entry

            result = {}
            for key, entry in run_over_cursors(cursors, items, one):
                add_piece(result, key, entry)
        return fingerprint_document(taken_at, xmin, result, uuid_text)
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
               # never assumed current: a fingerprint of unknown algorithm must not compare as equal or unequal
               "algorithm": (row[5] if extras else None) or fp.get("algorithm") or "unrecorded"})
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



def _normalize_of(fp):
    """Per-table normalisations recorded in a fingerprint (re-applied to the other side)."""
    return {key: entry["normalize"] for key, entry in tables_of(fp).items() if entry.get("normalize")}


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
        kinds_by_table = {key: entry.get("kinds") for key, entry in tables_of(before).items() if entry.get("kinds")}
        recorded = recorded_explanations(cur, run_id, merged_normalize, mode, kinds_by_table) \
            if (use_recorded and run_id) else []
        cur.execute("ROLLBACK")
    finally:
        conn.autocommit = saved
    if after is None:
        # Hashed over the columns the before fingerprint had: a column a planned step added holds only new data.
        after = fingerprint(conn, tables=tables, normalize=merged_normalize_for(merged_normalize, conn),
                            uuid_text=mode, connect=connect, workers=workers,
                            hashed_columns={k: set(v.get("columns") or {}) for k, v in tables_of(before).items()})
    # quarantined rows and retired tables the run recorded are authoritative: a given explanation of the same
    # kind for the same table would count them twice
    covered = {(e["kind"], canonical_key(e["table"])) for e in recorded if e["kind"] in ("quarantine", "retire")}
    given = [validate_explanation(dict(e)) for e in (explanations or ())]
    used = list(recorded) + [e for e in given if (e["kind"], canonical_key(e["table"])) not in covered]
    result = reconcile(before, after, used)

    def meta(fp):
        return {"id": fp.get("id"), "label": fp.get("label"), "taken_at": fp.get("taken_at"),
                "tables": len(tables_of(fp)), "total_rows": sum(t["rows"] for t in tables_of(fp).values())}

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


# --------------------------------------------------------------------------- for the modules
@contextlib.contextmanager
def read_only_connections(params):
    """``(conn, more)``: a READ ONLY connection to the database of ``params`` and a callable opening another
    (fingerprint workers); every one closed afterwards.  Raises pgsafe_connection.ConnectionFailure."""
    opened = [open_connection(params, read_only=True)]

    def more():
        opened.append(open_connection(params, read_only=True))
        return opened[-1]
    try:
        yield opened[0], more
    finally:
        for conn in opened:
            conn.close()


def store_once(params, fp, label, run_id=None):
    """Store ``fp`` unless the run's newest fingerprint with that label has the same tables: (id, changed).

    Raises FingerprintError naming what the login needs when it cannot write to the product schema.
    """
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    conn = open_connection(params)
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
            ensure_fingerprint_schema(cur)
            latest = load_fingerprint(cur, run_id, label)
            if latest is not None and latest["tables"] == fp["tables"]:
                stored = (latest["id"], False)  # already stored: idempotent
            else:
                stored = (store_fingerprint(cur, fp, label, run_id), True)
        conn.commit()
        return stored
    except Exception as exc:  # noqa: BLE001 - any database error, with the object named
        conn.rollback()
        raise FingerprintError("cannot store the fingerprint in pgsafe.fingerprint: {0}. The login needs INSERT on "
                               "the product schema (or run without store)".format(" ".join(str(exc).split()))) from None
    finally:
        conn.close()
