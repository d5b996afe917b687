# -*- coding: utf-8 -*-
"""Quarantined rows: the one writer of ``pgsafe.quarantine_row``, its restore and its restore SQL.

A row set aside by any engine (the orphans of a type change and the rows depending on them, the source rows
of a merge whose key holds other values in the target) is stored whole: its table, primary key, the reason,
``to_jsonb`` of the row and the sha256 of that jsonb text.  Restoring re-inserts it into its table (parents
first: the reverse order of removal) and checks the restored row hashes exactly like the stored copy.
"""
from __future__ import annotations

import json

from ansible.module_utils.pgsafe_identifiers import qualified

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = None
    sql = None

# {0}.*, never a bare {0}: that is the row's column of the same name when the table has one (a column "m")
ROW_SHA256 = "encode(sha256(convert_to(to_jsonb({0}.*)::text, 'UTF8')), 'hex')"


class QuarantineError(Exception):
    """Quarantined rows cannot be written or put back; the message names the row and the fix."""


def row_sha256(alias):
    """SQL of the sha256 (hex) of a row's jsonb text, the digest stored with every quarantined row."""
    return sql.SQL(ROW_SHA256).format(sql.Identifier(alias))


def pk_object(columns, alias):
    """jsonb_build_object('col', alias.col, ...): a row's primary key as stored (source_pk)."""
    return sql.SQL("jsonb_build_object({0})").format(sql.SQL(", ").join(
        sql.SQL("{0}, {1}.{2}").format(sql.Literal(c), sql.Identifier(alias), sql.Identifier(c)) for c in columns))


def write_rows(cur, run_id, key, pk_columns, where, params, reason, move):
    """Copy the rows of table ``key`` matching ``where`` (rows aliased ``t``) into pgsafe.quarantine_row.

    ``move``: delete them from the table in the same statement (type change); otherwise they stay (a merge's
    source, retired whole afterwards).  Runs in the caller's transaction; returns how many rows were written.
    """
    rows = ("DELETE FROM {0} AS t WHERE {1} RETURNING t AS r, t.tableoid AS part" if move
            else "SELECT t AS r, t.tableoid AS part FROM {0} AS t WHERE {1}")
    # A row of a partitioned table names the partition it lived in (its provenance); it goes back through
    # the parent, which routes it to the partition its key belongs to then.
    cur.execute(sql.SQL("WITH m AS (" + rows + """)
            INSERT INTO pgsafe.quarantine_row (run_id, source_schema, source_table, source_pk, reason, row_data,
                                               row_sha256)
            SELECT %s, %s, %s, {2}, %s || CASE WHEN m.part <> {4}::regclass
                                              THEN ' (in partition ' || m.part::regclass::text || ')' ELSE '' END,
                   to_jsonb(x.*), {3}
              FROM m CROSS JOIN LATERAL (SELECT (m.r).*) x""").format(
        sql.Identifier(*key), where, pk_object(pk_columns, "x"), row_sha256("x"),
        sql.Literal(sql.Identifier(*key).as_string(cur))),
        tuple(params or ()) + (run_id, key[0], key[1], reason))
    return cur.rowcount


def pending_rows(cur, run_id):
    """Rows of a run still in quarantine, per table: {"schema"."table": count}."""
    cur.execute("SELECT source_schema, source_table, count(*) FROM pgsafe.quarantine_row "
                "WHERE run_id = %s AND restored_at IS NULL GROUP BY 1, 2", (run_id,))
    return {qualified(r[0], r[1]): r[2] for r in cur.fetchall()}


def _wanted(tables, schema, table):
    return not tables or qualified(schema, table) in tables or "{0}.{1}".format(schema, table) in tables


def restore_rows(cur, run_id, tables=None):
    """Put a run's quarantined rows back, parents first; verify each restored row hash-identical.

    Runs in the caller's transaction (commit after).  Returns {table: rows restored}.
    """
    cur.execute("SELECT id, source_schema, source_table, row_data, row_sha256 FROM pgsafe.quarantine_row "
                "WHERE run_id = %s AND restored_at IS NULL ORDER BY id DESC", (run_id,))
    restored = {}
    for qid, schema, table, data, digest in cur.fetchall():
        if not _wanted(tables, schema, table):
            continue
        cur.execute("SAVEPOINT pgsafe_restore")
        try:
            cur.execute(sql.SQL("INSERT INTO {0} SELECT (jsonb_populate_record(NULL::{0}, %s::jsonb)).* "
                                "RETURNING {1}").format(sql.Identifier(schema, table), row_sha256(table)),
                        (json.dumps(data),))
            got = cur.fetchone()[0]
            cur.execute("RELEASE SAVEPOINT pgsafe_restore")
        except psycopg2.Error as exc:
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_restore")
            raise QuarantineError("cannot restore quarantined row {0} of {1}: {2}. If a foreign key rejects it, run "
                                  "the change's rollback SQL first (it drops the new FKs) or restore the missing "
                                  "parent".format(qid, qualified(schema, table), str(exc).strip().splitlines()[0])) from None
        if got != digest:
            raise QuarantineError("restored row {0} of {1} differs from the quarantined copy (sha256 {2} != {3}): "
                                  "rolled back".format(qid, qualified(schema, table), got, digest))
        cur.execute("UPDATE pgsafe.quarantine_row SET restored_at = now() WHERE id = %s", (qid,))
        restored[qualified(schema, table)] = restored.get(qualified(schema, table), 0) + 1
    return restored


def restore_sql(run_id):
    """Pure SQL restore of a run's quarantined rows (parents first: reverse order of removal)."""
    rid = "'" + str(run_id).replace("'", "''") + "'"
    return """DO $pgsafe_restore$
DECLARE q record;
BEGIN
  FOR q IN SELECT id, source_schema, source_table, row_data FROM pgsafe.quarantine_row
           WHERE run_id = {0} AND restored_at IS NULL ORDER BY id DESC LOOP
    EXECUTE format('INSERT INTO %I.%I SELECT (jsonb_populate_record(NULL::%I.%I, $1)).*',
                   q.source_schema, q.source_table, q.source_schema, q.source_table) USING q.row_data;
    UPDATE pgsafe.quarantine_row SET restored_at = now() WHERE id = q.id;
  END LOOP;
END
$pgsafe_restore$;
""".format(rid)


def restore_diff(pending, restored):
    """--diff of a restore: rows in quarantine per table before, and after (with how many went back)."""
    before = "".join("{0}: {1} row(s) in quarantine\n".format(t, n) for t, n in sorted(pending.items()))
    after = "".join("{0}: {1} row(s) in quarantine, {2} restored\n".format(t, n - restored.get(t, 0),
                                                                          restored.get(t, 0))
                    for t, n in sorted(pending.items()))
    return before, after
