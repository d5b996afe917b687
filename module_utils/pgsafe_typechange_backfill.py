# -*- coding: utf-8 -*-
"""The backfill of the online type change: each table's shadow columns filled in short batches.

A batch keeps the rows it updates locked until it commits, so an application write to one of them waits up to
one batch: :class:`BatchSizer` steers the size of the next batch from the measured time of the last one so that
a batch takes about ``batch_target_ms``.  On PostgreSQL 14+ the batches walk the heap of each leaf relation (the
table, or each leaf partition of a partitioned table) in block ranges (TID range scans: sequential reads, no
index lookups); older servers walk the primary key in order.  Rows written by the application during the
backfill are kept in sync by the trigger, so the backfill only has to cover the blocks that existed when it
started (any tuple beyond them was written after the trigger).  A batch commits with
``synchronous_commit = off``: a batch lost in a crash is simply done again (the backfill is idempotent and the
verification counts every row), and the swap's own synchronous commit makes every earlier batch durable.
"""
from __future__ import annotations

import json
import time

from ansible.module_utils.pgsafe_identifiers import qualified
from ansible.module_utils.pgsafe_partitions import partition_tree, partitioned_table_oid

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    psycopg2 = None
    sql = None

TID_RANGE_SCAN_VERSION = 140000
START_ROWS = 500  # the first batch of a table when a time budget is set: small, then it adapts


class BatchSizer:
    """The size of the next batch (rows or heap blocks) from the measured time of the last one.

    It aims at 80% of ``target_ms`` (headroom for noise), grows at most 2x per batch (one fast batch of a range
    whose rows were already synced says little), shrinks at once in proportion when a batch overran, and stays
    within [least, most].  ``target_ms`` 0 keeps the size fixed at ``most``.
    """

    def __init__(self, target_ms, most, start=None, least=1):
        self.target_ms, self.most, self.least = target_ms, max(least, most), least
        first = most if not target_ms else (start or most)
        self.size = max(least, min(first, self.most))

    def observe(self, took_ms):
        """Record the time of a batch of the current size; returns the next size."""
        if not self.target_ms:
            return self.size
        if took_ms <= 0:
            ideal = self.size * 2
        else:
            ideal = self.size * 0.8 * self.target_ms / took_ms
        self.size = int(max(self.least, min(self.most, ideal, self.size * 2)))
        return self.size


def leaf_relations(cur, key, relkind):
    """(schema, table) of the relations whose heap holds the rows: the table, or its leaf partitions
    (pgsafe_partitions, the one reading of a partition tree)."""
    if relkind != "p":
        return [key]
    rows = partition_tree(cur, partitioned_table_oid(cur, *key), leaves_only=True, with_relkind=True)
    foreign = [r for r in rows if r[3] != "r"]
    if foreign:
        raise ValueError("partition {0}.{1} is not a plain table (relkind {2})".format(*foreign[0][1:]))
    return [(r[1], r[2]) for r in rows]


def heap_shape(cur, leaf):
    """(blocks now, rows per block estimate) of one leaf relation."""
    cur.execute("SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, c.reltuples, c.relpages "
                "FROM pg_class c WHERE c.oid = %s::regclass", (sql.Identifier(*leaf).as_string(cur),))
    blocks, tuples, pages = cur.fetchone()
    per_block = tuples / pages if pages and tuples and tuples > 0 else 50.0
    return int(blocks), max(1.0, per_block)


def block_range_statement(leaf, sets, differs, start, end):
    """One batch: the rows of blocks [start, end) whose shadows differ, updated (alias ``t``; no parameters)."""
    return sql.SQL("UPDATE ONLY {0} t SET {1} WHERE t.ctid >= {2}::tid AND t.ctid < {3}::tid AND ({4})").format(
        sql.Identifier(*leaf), sets, sql.Literal("({0},0)".format(start)), sql.Literal("({0},0)".format(end)), differs)


def key_range_statement(tbl, pk, sets, differs, resume):
    """One batch of the primary key walk (servers without TID range scans): the next rows after the last key."""
    pkl = sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk)
    join = sql.SQL(" AND ").join(sql.SQL("t.{0} = b.{0}").format(sql.Identifier(p)) for p in pk)
    where = sql.SQL("true")
    if resume:
        where = sql.SQL("({0}) > (SELECT {1} FROM jsonb_populate_record(NULL::{2}, %s::jsonb) l)").format(
            pkl, sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk), tbl)
    return sql.SQL("""WITH b AS (SELECT {0} FROM {1} t WHERE {2} ORDER BY {0} LIMIT %s),
                          u AS (UPDATE {1} t SET {3} FROM b WHERE {4} AND ({5}) RETURNING 1)
                       SELECT (SELECT to_jsonb(z.*) FROM (SELECT * FROM b ORDER BY {6} DESC LIMIT 1) z),
                              (SELECT count(*) FROM b), (SELECT count(*) FROM u)""").format(
        pkl, tbl, where, sets, join, differs, sql.SQL(", ").join(sql.Identifier(p) for p in pk))


def clone_connection(conn):
    """A second session like ``conn`` (same server, login, database, role, lock_timeout, recording of
    statements)."""
    params = dict(conn.info.dsn_parameters)
    if conn.info.password:
        params["password"] = conn.info.password
    other = psycopg2.connect(connection_factory=type(conn), **params)
    with conn.cursor() as cur:
        cur.execute("SELECT current_user <> session_user, current_user, current_setting('lock_timeout')")
        switched, role, lock_timeout = cur.fetchone()
    conn.rollback()
    with other.cursor() as cur:
        if switched:
            cur.execute(sql.SQL("SET ROLE {0}").format(sql.Identifier(role)))
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (lock_timeout,))
    other.commit()
    return other


def close_sessions(sessions):
    """Close the extra sessions of a run; one that died already is not a failure of its own."""
    for session in sessions:
        try:
            session.close()
        except Exception:  # noqa: BLE001,S110 - closing a session that died is not a failure of its own
            pass


class Backfill:
    """One table's backfill on one connection: batches, each in its own short transaction, sized to the budget.

    ``run_batch(what, statement, params=None)`` runs one batch in a transaction of its own (lock timeout, bounded
    retries) and returns (row count, first row of the result); ``report(done, batches, rows, size)`` is told
    after each batch.  ``stop`` (an Event or None) ends the walk early when another table's backfill failed.
    """

    def __init__(self, run_batch, target_ms, batch_size, throttle_ms=0, stop=None, report=None):
        self.run_batch, self.target_ms, self.batch_size = run_batch, target_ms, batch_size
        self.throttle_ms, self.stop = throttle_ms, stop
        self.report = report or (lambda *a: None)
        self.rows, self.batches, self.scanned = 0, 0, 0

    def _timed(self, what, statement, params=None):
        t0 = time.monotonic()
        rowcount, row = self.run_batch(what, statement, params)
        took = (time.monotonic() - t0) * 1000
        self.batches += 1
        if self.throttle_ms:
            time.sleep(self.throttle_ms / 1000.0)
        return took, rowcount, row

    def _stopped(self):
        return self.stop is not None and self.stop.is_set()

    def by_blocks(self, leaf, blocks, per_block, sets, differs):
        """Walk blocks [0, blocks) of one leaf relation in ranges."""
        most = max(1, int(self.batch_size / per_block))
        sizer = BatchSizer(self.target_ms, most, start=max(1, int(START_ROWS / per_block)))
        what = "backfill " + qualified(*leaf)
        start = 0
        while start < blocks and not self._stopped():
            end = min(blocks, start + sizer.size)
            took, updated, _row = self._timed(what, block_range_statement(leaf, sets, differs, start, end))
            self.rows += updated
            self.scanned += int((end - start) * per_block)
            start = end
            self.report(start >= blocks, self.batches, self.rows, sizer.size)
            sizer.observe(took)

    def by_key(self, tbl, name, pk, sets, differs):
        """Walk the primary key in order (servers without TID range scans)."""
        sizer = BatchSizer(self.target_ms, self.batch_size, start=START_ROWS, least=50)
        last = None
        while not self._stopped():
            stmt = key_range_statement(tbl, pk, sets, differs, last is not None)
            size = sizer.size
            params = ((json.dumps(last),) if last is not None else ()) + (size,)
            took, _count, row = self._timed("backfill " + name, stmt, params)
            last_row, seen = row[0], row[1]
            self.rows += row[2]
            self.scanned += seen
            if last_row is not None:
                last = last_row
            full = seen >= size
            self.report(not full, self.batches, self.rows, size)
            if not full:
                break
            sizer.observe(took)
