# -*- coding: utf-8 -*-
"""The online strategy of a type change: shadow columns kept in sync by a trigger, batched backfill sized to a
time budget (pgsafe_typechange_backfill), one verification pass, shadow indexes built CONCURRENTLY after the
backfill, NOT NULL through one validated CHECK per table, then a short swap under the locks.

Tables are prepared side by side, each on a session of its own (nothing orders them: each has its own shadow
columns and trigger, and the foreign keys between them are only dropped and added in the swap); their DDL
phases (index builds, validations) run one at a time.  A partitioned table gets its shadow columns and trigger
through the parent (PostgreSQL 13+ clones row triggers to the partitions), is backfilled partition by
partition, and gets its shadow indexes per partition (CONCURRENTLY), attached to an index made ON ONLY the
parent; the plan refuses online for a unique index or key on a changed column of a partitioned table (the
swap could not attach it without a build under the lock: use strategy rewrite).
"""
from __future__ import annotations

import queue
import threading
import time

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified
from ansible.module_utils.pgsafe_locks import lock_tables, retry_on_lock, run_with_retries
from ansible.module_utils.pgsafe_progress import Progress, row_estimate
from ansible.module_utils.pgsafe_typechange_copy_run import CopyMethod
from ansible.module_utils.pgsafe_typechange_backfill import (TID_RANGE_SCAN_VERSION, Backfill, clone_connection,
                                                             close_sessions, heap_shape, leaf_relations)
from ansible.module_utils.pgsafe_typechange_copy import copy_table_name
from ansible.module_utils.pgsafe_typechange_orphans import quarantine_set
from ansible.module_utils.pgsafe_typechange_parse import NEW_SUFFIX, TypeChangeError, varchar_limit
from ansible.module_utils.pgsafe_typechange_sql import (TRIGGER_NAME, _ident, _type_sql, add_fks_not_valid, drop_fks,
                                                        drop_views, online_check_name, recreate_views,
                                                        trigger_function_name)

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    from psycopg2 import sql
    from psycopg2.extensions import encodings
except ImportError:  # pragma: no cover
    sql = None
    encodings = {}

MAX_SESSIONS = 2  # tables prepared at once, each on a session of its own (one more than the run's)
PARTITIONED_TRIGGERS_VERSION = 130000


def partition_online_blockers(name, table, column):
    """Why the online strategy cannot change ``column`` of a partitioned table (empty for a plain table)."""
    if table.get("relkind") != "p":
        return []
    return ["{0} index {1} of partitioned table {2} covers {3}: a partitioned index cannot become a key without a "
            "build under the lock; use strategy rewrite".format("unique" if idx["unique"] else "key", idx["name"],
                                                                 name, column)
            for idx in table["indexes"] if column in idx["columns"] and (idx["unique"] or idx["constraint"])]


def table_check_name(cols):
    """The one CHECK (... IS NOT NULL AND ...) of a table's shadow columns that must be NOT NULL."""
    return online_check_name(cols[0]["column"])


def not_null_columns(cols):
    return [c for c in cols if c["notnull"] or c["not_null"]]



# Seconds the swap waits at most for a VACUUM (usually autovacuum) of a table it locks to end.
VACUUM_WAIT_SECONDS = 120
# The relations (the tables, or their partitions) a VACUUM or an ANALYZE (autovacuum runs both, each holding SHARE
# UPDATE EXCLUSIVE until the server cancels it for a waiting lock) is running on, among the qualified names given.
RUNNING_VACUUMS_SQL = ("SELECT DISTINCT v.relid::regclass::text FROM (SELECT relid FROM pg_catalog.pg_stat_progress_vacuum "
                       "UNION ALL SELECT relid FROM pg_catalog.pg_stat_progress_analyze) AS v, "
                       "unnest(%s::text[]) AS q(name) WHERE v.relid = q.name::regclass "
                       "OR v.relid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(q.name::regclass) p)")


class OneRoundTrip:
    """A cursor stand-in that collects statements (Composables or text with parameters) and sends them to the
    server in one execute; the server runs them in order in the caller's transaction, stopping at the first
    error."""

    def __init__(self, cur):
        self.cur, self.parts = cur, []

    def execute(self, statement, params=None):
        text = statement.as_string(self.cur) if hasattr(statement, "as_string") else statement
        if params is not None:
            text = self.cur.mogrify(text, params).decode(encodings.get(self.cur.connection.encoding, "utf-8"))
        self.parts.append(text)

    def flush(self):
        if self.parts:
            self.cur.execute(";\n".join(self.parts))
            self.parts = []


class OnlineStrategy(CopyMethod):
    """Runner's online strategy (needs the Runner's plumbing: txn, journal, quarantine, validate); each table by the
    method the plan chose for it: copy and swap (pgsafe_typechange_copy_run) or shadow columns (here)."""

    def online(self):
        conv = [c for c in self.plan["changes"] if c["needs_type"]]
        other = [c for c in self.plan["changes"] if not c["needs_type"] and (c["needs_default"] or c["needs_not_null"])]
        if other:
            raise TypeChangeError("online strategy: default/NOT NULL-only changes ({0}) must use strategy rewrite"
                                  .format(", ".join(c["column"] for c in other)))
        by_table = {}
        for c in conv:
            by_table.setdefault((c["schema"], c["table"]), []).append(c)
        self._online_preflight(by_table)
        self.journal("typechange:online", "started", ",".join(self.plan["touched_tables"]), {"steps": self.plan["steps"]})
        copies, swapped = [k for k in by_table if self._is_copy(k)], False
        try:
            for key, cols in by_table.items():
                if key in copies:
                    self.txn("create the change log, its trigger and the new table of " + qualified(*key),
                             lambda cur, key=key, cols=cols: self._copy_setup(cur, key, cols))
                    self.journal("online:copy:setup", "completed", qualified(*key))
                    continue
                self.txn("add shadow columns and sync trigger on " + qualified(*key),
                         lambda cur, key=key, cols=cols: self._shadow(cur, key, cols))
                self.journal("online:shadow", "completed", qualified(*key))
            self._copy_start_drainer(copies, by_table)
            # the orphan scan on the first session done with its tables, while the others still prepare theirs;
            # orphans written after it are found by the VALIDATE after the swap (rescan_and_quarantine)
            self._orphans_seen = False
            self._prepare_tables(by_table, then=self._scan_orphans)
            self.journal("online:backfill", "completed", ",".join(qualified(*k) for k in by_table))
            if self._orphans_seen:  # moved only now: a change failing while the tables were prepared moved nothing
                self.txn("quarantine orphans", self.quarantine)
            for key in copies:  # while the drainer keeps replaying
                self._copy_vacuum_again(key, by_table[key])
            self._wait_for_vacuums([(key[0], copy_table_name(key[1])) for key in copies])
            swap_facts = {k: self.txn("read indexes and sequences of " + qualified(*k),
                                      lambda cur, k=k: self._copy_read_swap_facts(cur, k)) for k in copies}
            self._copy_stop_drainer(copies)
            self._copy_catch_up(copies, by_table)  # the swap's own replay then has a small backlog
            started = time.monotonic()
            try:
                self.txn("swap", lambda cur: self._swap(cur, by_table, swap_facts))
            except Exception as exc:
                raise self._copy_value_error(exc, copies, "the swap's last replay") from None
            swapped = True
            self._took("swap", started)
            with self.conn.cursor() as cur:  # counted after the swap, outside its lock (writes may have added rows)
                for key in by_table:
                    cur.execute(sql.SQL("SELECT count(*) FROM {0}").format(_ident(*key)))
                    entry = self.counts.setdefault(qualified(*key), {})
                    entry["after"] = cur.fetchone()[0]
                    entry["quarantined"] = self.moved.get(qualified(*key), {}).get("rows", 0)
            self.conn.commit()
        except Exception as exc:
            self._copy_stop_drainer(copies, raise_error=False)
            self._journal_failure("typechange:online", exc)
            for key in [] if swapped else copies:
                self._copy_abandon(key)
            raise
        validated = self.validate()
        for key in copies:
            self._copy_drop_old(key)
        return validated

    def _wait_for_vacuums(self, more_keys=(), most_seconds=VACUUM_WAIT_SECONDS):
        """Wait (bounded) until no VACUUM or ANALYZE runs on a table the swap locks.  The backfill rewrote every row, so
        autovacuum starts on the changed tables; the swap's LOCK would queue behind it until the server cancels
        it (deadlock_timeout, 1 s by default), and every application write queues behind the LOCK for as long."""
        keys = [key for key, _mode in self.lock_plan()] + list(more_keys)
        started = time.monotonic()
        while True:
            # one transaction per look: the server's activity views are read once per transaction
            running = self.txn("look for running vacuums", lambda cur: self._running_vacuums(cur, keys))
            if not running or time.monotonic() - started >= most_seconds:
                break
            time.sleep(0.2)
        waited = time.monotonic() - started
        if running:
            self.events.append("vacuum still running on {0} after {1:.0f}s: the swap's lock waits for it (or for "
                               "the server to cancel an autovacuum)".format(", ".join(running), waited))
        elif waited >= 0.2:
            self.events.append("waited {0:.1f}s for vacuum to end before the swap".format(waited))

    @staticmethod
    def _running_vacuums(cur, keys):
        cur.execute(RUNNING_VACUUMS_SQL, ([qualified(*k) for k in keys],))
        return [row[0] for row in cur.fetchall()]

    def _took(self, what, started):
        self.events.append("{0}: {1:.1f}s".format(what, time.monotonic() - started))

    def _online_preflight(self, by_table):
        """What only the live server says, checked before the first change: a partitioned table needs
        PostgreSQL 13+ (row triggers on partitioned tables) and partitions that are plain tables."""
        version = self.plan["_facts"]["server_version_num"]
        self.leaves, self.index_renames = {}, {}
        with self.conn.cursor() as cur:
            for key in by_table:
                relkind = self.facts[key].get("relkind", "r")
                if relkind == "p" and version < PARTITIONED_TRIGGERS_VERSION:
                    raise TypeChangeError("{0} is partitioned and the server is older than PostgreSQL 13 (no row "
                                          "triggers on partitioned tables): use strategy rewrite; nothing changed"
                                          .format(qualified(*key)))
                try:
                    self.leaves[key] = leaf_relations(cur, key, relkind)
                except ValueError as exc:
                    raise TypeChangeError("{0}: {1}; the online strategy backfills plain tables only: use strategy "
                                          "rewrite; nothing changed".format(qualified(*key), exc)) from None
        self.conn.commit()

    def _new_expr(self, c, row_alias):
        ref = sql.SQL("{0}.{1}").format(sql.SQL(row_alias), sql.Identifier(c["column"]))
        if c["using"]:
            return sql.SQL("(SELECT ({0}) FROM (SELECT {1}.*) AS s)").format(sql.SQL(c["using"]), sql.SQL(row_alias))
        if varchar_limit(c["type"]) is not None or c["type"] == "text":
            return ref
        return sql.SQL("CAST({0} AS {1})").format(ref, _type_sql(c["type"]))

    def _differs(self, cols, row_alias):
        return sql.SQL(" OR ").join(sql.SQL("{0}.{1} IS DISTINCT FROM {2}").format(
            sql.SQL(row_alias), sql.Identifier(c["new_column"]), self._new_expr(c, row_alias)) for c in cols)

    def _shadow(self, cur, key, cols):
        """Shadow columns and the trigger that keeps them in sync.  Without ``using`` expressions (no subqueries
        in a trigger's WHEN) the trigger fires only for rows whose shadow would change: not for the backfill's
        own updates, which set the shadows themselves."""
        tbl = _ident(*key)
        for c in cols:
            cur.execute(sql.SQL("ALTER TABLE {0} ADD COLUMN IF NOT EXISTS {1} {2}").format(
                tbl, sql.Identifier(c["new_column"]), _type_sql(c["type"])))
        fname = _ident("pgsafe", trigger_function_name(self.facts[key]["oid"]))
        body = sql.SQL("BEGIN\n{0}\nRETURN NEW;\nEND").format(sql.SQL("\n").join(
            sql.SQL("NEW.{0} := {1};").format(sql.Identifier(c["new_column"]), self._new_expr(c, "NEW")) for c in cols))
        cur.execute(sql.SQL("CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS {1}").format(
            fname, sql.Literal(body.as_string(cur))))
        when = sql.SQL("") if any(c["using"] for c in cols) else \
            sql.SQL(" WHEN ({0})").format(self._differs(cols, "NEW"))
        cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(TRIGGER_NAME), tbl))
        cur.execute(sql.SQL("CREATE TRIGGER {0} BEFORE INSERT OR UPDATE ON {1} FOR EACH ROW{2} EXECUTE FUNCTION {3}()")
                    .format(sql.Identifier(TRIGGER_NAME), tbl, when, fname))

    def _scan_orphans(self, conn):
        """The orphan scan, on a session done with its tables: with orphan_policy fail, orphans fail the change as
        before (nothing moved); orphans to quarantine are only noted, and moved by a scan of their own once every
        table is prepared."""
        started = time.monotonic()
        if self.orphan_policy != "quarantine":
            self.txn("look for orphans", self.quarantine, conn=conn)
        else:
            self._orphans_seen = bool(self.txn("look for orphans", lambda cur: quarantine_set(cur, self.plan),
                                               conn=conn))
        self._took("orphan scan", started)

    def _prepare_tables(self, by_table, then=None):
        """Backfill, verification, shadow indexes and NOT NULL check of every table: side by side, each table on a
        session of its own (at most MAX_SESSIONS), the DDL phases one at a time; the first failure stops all.
        ``then(conn)``: one more job after the tables (the orphan scan), taken by the first free session."""
        todo = queue.Queue()
        for item in by_table.items():
            todo.put(item)
        if then is not None:
            todo.put((None, then))
        sessions = [self.conn]
        for _ in range(min(len(by_table) + (then is not None), MAX_SESSIONS) - 1):
            try:
                sessions.append(clone_connection(self.conn))
            except Exception as exc:  # noqa: BLE001 - slower, not less safe: the tables one after the other
                self.events.append("tables prepared one after the other: no further session ({0})".format(
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
                break
        stop, ddl, errors = threading.Event(), threading.Lock(), []

        def run_one(conn):
            """One queued job on ``conn`` (a table, the orphan scan, a verification); False when none is left."""
            if stop.is_set():
                return False
            try:
                key, cols = todo.get_nowait()
            except queue.Empty:
                return False
            if key is None:
                cols(conn)
            else:
                self._prepare_table(conn, key, cols, stop, ddl)
            return True

        def worker(conn):
            try:
                while run_one(conn):
                    pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors.append(exc)
                stop.set()
        threads = [threading.Thread(target=worker, args=(conn,), name="pgsafe-online-{0}".format(n), daemon=True)
                   for n, conn in enumerate(sessions)]
        # a table's session hands its verification to a free one, and runs queued jobs while it waits for it
        # (CopyMethod._copy_prepare)
        self._side_jobs = (todo.put, run_one)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._side_jobs = None
        close_sessions(sessions[1:])
        if errors:
            raise errors[0]

    def _prepare_table(self, conn, key, cols, stop, ddl):
        if self._is_copy(key):
            self._copy_prepare(conn, key, cols, stop)
            return
        name = qualified(*key)
        started = time.monotonic()
        self._backfill(conn, key, cols, stop)
        if stop.is_set():
            return
        self._took("backfill " + name, started)
        started = time.monotonic()
        self._verify_backfill(conn, key, cols, stop)
        self._took("verify " + name, started)
        with ddl:
            if stop.is_set():
                return
            started = time.monotonic()
            self._shadow_indexes(conn, key, cols)
            self._took("shadow indexes " + name, started)
            started = time.monotonic()
            self._not_null_checks(conn, key, cols)
            self._took("NOT NULL check " + name, started)

    def _batch_runner(self, conn):
        """run_batch(what, statement, params) for Backfill: one batch, its settings (the step's lock_timeout,
        synchronous_commit off: see pgsafe_typechange_backfill) and the statement in one message, which the server
        runs as one transaction (the session is in autocommit during the walk): one round trip a batch."""
        settings = [("lock_timeout", str(self.lock_timeout)), ("synchronous_commit", "off")]
        if self.statement_timeout:
            settings.append(("statement_timeout", str(self.statement_timeout)))
        prefix = sql.SQL("SELECT {0}; ").format(sql.SQL(", ").join(
            sql.SQL("set_config({0}, {1}, true)").format(sql.Literal(k), sql.Literal(v)) for k, v in settings))

        def run_batch(what, statement, params=None):
            def work(cur):
                if params is None:
                    cur.execute(prefix + statement)
                else:
                    cur.execute(prefix.as_string(cur).replace("%", "%%") + statement.as_string(cur), params)
                return cur.rowcount, (cur.fetchone() if cur.description else None)
            return run_with_retries(conn, work, self.retries, self.backoff, self.backoff_max, self.attempts, what)
        return run_batch

    def _backfill(self, conn, key, cols, stop):
        name = qualified(*key)
        sets = sql.SQL(", ").join(sql.SQL("{0} = {1}").format(sql.Identifier(c["new_column"]), self._new_expr(c, "t"))
                                  for c in cols)
        differs = self._differs(cols, "t")
        progress = Progress("backfill of {0}".format(name), unit="rows", estimated=True,
                            total=self.txn("estimate " + name, lambda cur: row_estimate(cur, name), conn=conn))
        started = time.monotonic()

        def report(done, batches, rows, size):
            progress.update(job.scanned)
            if batches % 20 == 0 or done:
                self.progress("{0}: {1} rows backfilled in {2} batches ({3:.1f}s)".format(
                    name, rows, batches, time.monotonic() - started))
                self.journal("online:backfill:progress", "completed", name,
                             {"rows": rows, "batches": batches, "batch_size": size}, conn=conn)
        job = Backfill(self._batch_runner(conn), self.batch_target_ms, self.batch_size, self.throttle_ms, stop, report)
        conn.commit()
        conn.autocommit = True
        try:
            if self.plan["_facts"]["server_version_num"] >= TID_RANGE_SCAN_VERSION:
                for leaf in self.leaves[key]:
                    blocks, per_block = self.txn("size of " + qualified(*leaf),
                                                 lambda cur, leaf=leaf: heap_shape(cur, leaf), conn=conn)
                    job.by_blocks(leaf, blocks, per_block, sets, differs)
            else:
                job.by_key(_ident(*key), name, self.facts[key]["pk"], sets, differs)
        finally:
            progress.close()
            if not conn.closed:
                conn.autocommit = False
        self.events.append("backfilled {0} rows of {1} in {2} batches".format(job.rows, name, job.batches))

    def _verify_backfill(self, conn, key, cols, stop):
        """One pass: every row's shadow equals its column cast.  Rows that differ (a table rewritten under the
        backfill moves rows behind it) get one more backfill pass; then a difference fails the change."""
        query = sql.SQL("SELECT count(*) FILTER (WHERE {0}), count(*) FROM {1} t").format(
            self._differs(cols, "t"), _ident(*key))
        for attempt in (1, 2):
            with conn.cursor() as cur:
                cur.execute(query)
                bad, n = cur.fetchone()
            conn.commit()
            if not bad or attempt == 2:
                break
            self.events.append("{0}: {1} row(s) differed from their shadow after the backfill: one more pass"
                               .format(qualified(*key), bad))
            self._backfill(conn, key, cols, stop)
        if bad:
            raise TypeChangeError("{0}: {1} of {2} rows differ between the column and its shadow after the backfill; "
                                  "re-run to resume (the backfill re-syncs differing rows); if it fails again, writes "
                                  "bypass the sync trigger (session_replication_role = replica) or the using expression "
                                  "is not deterministic: fix that first".format(qualified(*key), bad, n))
        self.counts.setdefault(qualified(*key), {})["before"] = n

    def _index_tree(self, cur, key, idx):
        """(schema, table, index, parent index or None, is leaf) of an index and, on a partitioned table, of its
        partitions' indexes, parents first."""
        if self.facts[key].get("relkind") != "p":
            return [(key[0], key[1], idx["name"], None, True)]
        cur.execute("SELECT n.nspname, tc.relname, ic.relname, pic.relname, pt.isleaf "
                    "FROM pg_partition_tree(%s::regclass) pt JOIN pg_class ic ON ic.oid = pt.relid "
                    "JOIN pg_namespace n ON n.oid = ic.relnamespace JOIN pg_index i ON i.indexrelid = pt.relid "
                    "JOIN pg_class tc ON tc.oid = i.indrelid LEFT JOIN pg_class pic ON pic.oid = pt.parentrelid "
                    "ORDER BY pt.level, ic.relname", (sql.Identifier(key[0], idx["name"]).as_string(cur),))
        return [tuple(r) for r in cur.fetchall()]

    def _shadow_indexes(self, conn, key, cols):
        """Each index on a changed column again on the shadows: CONCURRENTLY (writes go on), after the backfill
        (no index maintenance during it); on a partitioned table per partition, attached to an index ON ONLY each
        partitioned level."""
        subst = {c["column"]: c["new_column"] for c in cols}
        renames = self.index_renames.setdefault(key, {})
        old_autocommit = conn.autocommit
        conn.commit()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false)", (str(self.lock_timeout),))
                for idx in self.facts[key]["indexes"]:
                    if not any(c in subst for c in idx["columns"]):
                        continue
                    columns = sql.SQL(", ").join(sql.Identifier(subst.get(c, c)) for c in idx["columns"])
                    tree = self._index_tree(cur, key, idx)
                    shadow = {node[2]: derived_name(node[2], suffix=NEW_SUFFIX) for node in tree}
                    for schema, table, name, _parent, leaf in tree:
                        if not leaf:  # no rows of its own: instant, but under a SHARE lock (bounded, retried)
                            only = sql.SQL("CREATE INDEX IF NOT EXISTS {0} ON ONLY {1} ({2})").format(
                                sql.Identifier(shadow[name]), _ident(schema, table), columns)
                            retry_on_lock(lambda only=only: cur.execute(only), self.retries, self.backoff,
                                          self.backoff_max, self.attempts, "create index " + shadow[name])
                    for schema, table, name, _parent, leaf in tree:
                        if leaf:
                            self._build_concurrently(cur, schema, table, shadow[name], idx["unique"], columns)
                    for schema, _table, name, parent, _leaf in reversed(tree):
                        if parent is not None:
                            self._attach_index(cur, schema, shadow[parent], shadow[name])
                    renames[idx["name"]] = [(node[0], shadow[node[2]], node[2]) for node in tree]
                    self.journal("online:index", "completed", qualified(key[0], shadow[idx["name"]]), conn=conn)
        finally:
            conn.autocommit = old_autocommit

    def _attach_index(self, cur, schema, parent_shadow, shadow):
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = %s::regclass)",
                    (sql.Identifier(schema, shadow).as_string(cur),))
        if not cur.fetchone()[0]:
            cur.execute(sql.SQL("ALTER INDEX {0} ATTACH PARTITION {1}").format(
                _ident(schema, parent_shadow), _ident(schema, shadow)))

    def _build_concurrently(self, cur, schema, table, shadow, unique, columns):
        cur.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "WHERE c.relnamespace = %s::regnamespace AND c.relname = %s",
                    (sql.Identifier(schema).as_string(cur), shadow))
        row = cur.fetchone()
        if row is not None and row[0]:
            return
        drop = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(_ident(schema, shadow))
        if row is not None:  # an invalid index left by an interrupted CONCURRENTLY build
            self.events.append("dropped invalid index {0} and rebuilt it".format(shadow))
            cur.execute(drop)
        create = sql.SQL("CREATE {0}INDEX CONCURRENTLY {1} ON {2} ({3})").format(
            sql.SQL("UNIQUE " if unique else ""), sql.Identifier(shadow), _ident(schema, table), columns)
        # CONCURRENTLY waits for older transactions under SHARE UPDATE EXCLUSIVE, which does not block
        # writers: a longer lock_timeout is harmless here; a failed build is dropped and retried.
        cur.execute("SELECT set_config('lock_timeout', '60s', false)")
        retry_on_lock(lambda: cur.execute(create), self.retries, self.backoff, self.backoff_max, self.attempts,
                      "create index " + shadow, undo=lambda: cur.execute(drop))
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (str(self.lock_timeout),))

    def _not_null_checks(self, conn, key, cols):
        """One CHECK (a IS NOT NULL AND b IS NOT NULL ...) per table, added NOT VALID and validated in one scan:
        the swap's SET NOT NULL then needs no scan of its own under the lock."""
        nn = not_null_columns(cols)
        if not nn:
            return
        tbl, name = _ident(*key), table_check_name(nn)
        wanted = sorted(c["new_column"] for c in nn)

        def add(cur):
            cur.execute("SELECT ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = con.conrelid AND "
                        "a.attnum = ANY(con.conkey) ORDER BY a.attname)::text[] FROM pg_constraint con "
                        "WHERE con.conrelid = %s AND con.conname = %s", (self.facts[key]["oid"], name))
            row = cur.fetchone()
            if row is not None and sorted(row[0]) == wanted:
                return
            if row is not None:  # left by an earlier run over other columns
                cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(tbl, sql.Identifier(name)))
            cur.execute(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} CHECK ({2}) NOT VALID").format(
                tbl, sql.Identifier(name), sql.SQL(" AND ").join(
                    sql.SQL("{0} IS NOT NULL").format(sql.Identifier(c["new_column"])) for c in nn)))
        self.txn("add NOT NULL check on " + qualified(*key), add, conn=conn)
        self.txn("validate NOT NULL check on " + qualified(*key), lambda cur: cur.execute(
            sql.SQL("ALTER TABLE {0} VALIDATE CONSTRAINT {1}").format(tbl, sql.Identifier(name))), conn=conn)

    def _swap(self, cur, by_table, swap_facts=None):
        """The swap under the locks: every statement (locks first) sent in one round trip, so writers queue for
        the server's time of the catalog changes only, not for ~40 round trips."""
        batch = OneRoundTrip(cur)
        lock_tables(batch, self.lock_plan())
        drop_fks(batch, self.plan)
        drop_views(batch, self.plan)
        for key, cols in by_table.items():
            if self._is_copy(key):
                self._copy_swap_table(batch, key, cols, swap_facts[key])
            else:
                self._swap_table(batch, key, cols)
        recreate_views(batch, self.plan)
        added = add_fks_not_valid(batch, self.plan)
        self.journal("typechange:online", "completed", ",".join(self.plan["touched_tables"]),
                     {"fks_added_not_valid": added, "quarantined": {k: v["rows"] for k, v in self.moved.items()}},
                     self.rollback, cur=batch)
        batch.flush()
        return added

    def _swap_table(self, cur, key, cols):
        tbl = _ident(*key)
        t = self.facts[key]
        cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(TRIGGER_NAME), tbl))
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {0}()").format(_ident("pgsafe", trigger_function_name(t["oid"]))))
        names = {c["column"] for c in cols}
        affected = [i for i in t["indexes"] if any(c in names for c in i["columns"])]
        for idx in affected:
            if idx["constraint"]:
                cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(tbl, sql.Identifier(idx["constraint"])))
        nn = not_null_columns(cols)
        for c in nn:  # implied by the validated CHECK: no scan
            cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET NOT NULL").format(
                tbl, sql.Identifier(c["new_column"])))
        for check in dict.fromkeys(([table_check_name(nn)] if nn else []) + [online_check_name(c["column"]) for c in cols]):
            cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT IF EXISTS {1}").format(tbl, sql.Identifier(check)))
        for c in cols:
            cur.execute(sql.SQL("ALTER TABLE {0} DROP COLUMN {1}").format(tbl, sql.Identifier(c["column"])))
            cur.execute(sql.SQL("ALTER TABLE {0} RENAME COLUMN {1} TO {2}").format(
                tbl, sql.Identifier(c["new_column"]), sql.Identifier(c["column"])))
            default = c["default"] if c["set_default"] else c["default_before"]
            if default:
                cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2}").format(
                    tbl, sql.Identifier(c["column"]), sql.SQL(default)))
            if c["comment"] is not None:
                cur.execute(sql.SQL("COMMENT ON COLUMN {0}.{1} IS {2}").format(
                    tbl, sql.Identifier(c["column"]), sql.Literal(c["comment"])))
        for idx in affected:
            shadow = derived_name(idx["name"], suffix=NEW_SUFFIX)
            if idx["constraint"]:
                kind = "PRIMARY KEY" if idx["contype"] == "p" else "UNIQUE"
                cur.execute(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} " + kind + " USING INDEX {2}").format(
                    tbl, sql.Identifier(idx["constraint"]), sql.Identifier(shadow)))
                if idx["constraint"] != idx["name"]:
                    cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(
                        _ident(key[0], idx["constraint"]), sql.Identifier(idx["name"])))
                continue
            for schema, shadow_name, old_name in self.index_renames.get(key, {}).get(
                    idx["name"], [(key[0], shadow, idx["name"])]):
                cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(_ident(schema, shadow_name),
                                                                           sql.Identifier(old_name)))
