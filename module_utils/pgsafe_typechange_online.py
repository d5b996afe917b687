# -*- coding: utf-8 -*-
"""The online strategy of a type change: shadow columns kept in sync by a trigger, batched throttled backfill,
shadow indexes built CONCURRENTLY, NOT NULL through a validated CHECK, then a short swap under the locks.
"""
from __future__ import annotations

import json
import time

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified
from ansible.module_utils.pgsafe_locks import lock_tables, retry_on_lock
from ansible.module_utils.pgsafe_progress import Progress, row_estimate
from ansible.module_utils.pgsafe_typechange_parse import NEW_SUFFIX, TypeChangeError, varchar_limit
from ansible.module_utils.pgsafe_typechange_sql import (TRIGGER_NAME, _ident, _type_sql, add_fks_not_valid, drop_fks,
                                                        drop_views, online_check_name, recreate_views,
                                                        trigger_function_name)

try:  # psycopg2 is needed for the SQL parts only; the pure parts are importable without it
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    sql = None


class OnlineStrategy:
    """Runner's online strategy (needs the Runner's plumbing: txn, journal, quarantine, validate)."""

    def online(self):
        conv = [c for c in self.plan["changes"] if c["needs_type"]]
        other = [c for c in self.plan["changes"] if not c["needs_type"] and (c["needs_default"] or c["needs_not_null"])]
        if other:
            raise TypeChangeError("online strategy: default/NOT NULL-only changes ({0}) must use strategy rewrite"
                                  .format(", ".join(c["column"] for c in other)))
        by_table = {}
        for c in conv:
            by_table.setdefault((c["schema"], c["table"]), []).append(c)
        self.journal("typechange:online", "started", ",".join(self.plan["touched_tables"]), {"steps": self.plan["steps"]})
        try:
            for key, cols in by_table.items():
                self.txn("add shadow columns and sync trigger on " + qualified(*key),
                         lambda cur, key=key, cols=cols: self._shadow(cur, key, cols))
                self.journal("online:shadow", "completed", qualified(*key))
            for key, cols in by_table.items():
                self._backfill(key, cols)
            for key, cols in by_table.items():
                self._shadow_indexes(key, cols)
                self._not_null_checks(key, cols)
            for key, cols in by_table.items():
                self._verify_backfill(key, cols)
            self.journal("online:backfill", "completed", ",".join(qualified(*k) for k in by_table))
            self.txn("quarantine orphans", self.quarantine)
            self.txn("swap", lambda cur: self._swap(cur, by_table))
            with self.conn.cursor() as cur:  # counted after the swap, outside its lock (writes may have added rows)
                for key in by_table:
                    cur.execute(sql.SQL("SELECT count(*) FROM {0}").format(_ident(*key)))
                    entry = self.counts.setdefault(qualified(*key), {})
                    entry["after"] = cur.fetchone()[0]
                    entry["quarantined"] = self.moved.get(qualified(*key), {}).get("rows", 0)
            self.conn.commit()
        except Exception as exc:
            self._journal_failure("typechange:online", exc)
            raise
        return self.validate()

    def _new_expr(self, c, row_alias):
        ref = sql.SQL("{0}.{1}").format(sql.SQL(row_alias), sql.Identifier(c["column"]))
        if c["using"]:
            return sql.SQL("(SELECT ({0}) FROM (SELECT {1}.*) AS s)").format(sql.SQL(c["using"]), sql.SQL(row_alias))
        if varchar_limit(c["type"]) is not None or c["type"] == "text":
            return ref
        return sql.SQL("CAST({0} AS {1})").format(ref, _type_sql(c["type"]))

    def _shadow(self, cur, key, cols):
        tbl = _ident(*key)
        for c in cols:
            cur.execute(sql.SQL("ALTER TABLE {0} ADD COLUMN IF NOT EXISTS {1} {2}").format(
                tbl, sql.Identifier(c["new_column"]), _type_sql(c["type"])))
        fname = _ident("pgsafe", trigger_function_name(self.facts[key]["oid"]))
        body = sql.SQL("BEGIN\n{0}\nRETURN NEW;\nEND").format(sql.SQL("\n").join(
            sql.SQL("NEW.{0} := {1};").format(sql.Identifier(c["new_column"]), self._new_expr(c, "NEW")) for c in cols))
        cur.execute(sql.SQL("CREATE OR REPLACE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql AS {1}").format(
            fname, sql.Literal(body.as_string(cur))))
        cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(TRIGGER_NAME), tbl))
        cur.execute(sql.SQL("CREATE TRIGGER {0} BEFORE INSERT OR UPDATE ON {1} FOR EACH ROW EXECUTE FUNCTION {2}()")
                    .format(sql.Identifier(TRIGGER_NAME), tbl, fname))

    def _backfill(self, key, cols):
        tbl = _ident(*key)
        pk = self.facts[key]["pk"]
        pkl = sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk)
        sets = sql.SQL(", ").join(sql.SQL("{0} = {1}").format(sql.Identifier(c["new_column"]), self._new_expr(c, "t"))
                                  for c in cols)
        differs = sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM {1}").format(
            sql.Identifier(c["new_column"]), self._new_expr(c, "t")) for c in cols)
        join = sql.SQL(" AND ").join(sql.SQL("t.{0} = b.{0}").format(sql.Identifier(p)) for p in pk)
        size = min(self.batch_size, 500) if self.batch_target_ms else self.batch_size
        name = qualified(*key)
        progress = Progress("backfill of {0}".format(name), unit="rows", estimated=True,
                            total=self.txn("estimate " + name, lambda cur: row_estimate(cur, name)))
        try:
            self._backfill_batches(key, tbl, pk, pkl, sets, differs, join, size, progress)
        finally:
            progress.close()

    def _backfill_batches(self, key, tbl, pk, pkl, sets, differs, join, size, progress):
        """The batches of one table's backfill, each in its own short transaction, sized to the stall budget."""
        last, total, batches, scanned, started = None, 0, 0, 0, time.monotonic()
        while True:
            if last is None:
                where = sql.SQL("true")
                params = ()
            else:
                where = sql.SQL("({0}) > (SELECT {1} FROM jsonb_populate_record(NULL::{2}, %s::jsonb) l)").format(
                    pkl, sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk), tbl)
                params = (json.dumps(last),)
            q = sql.SQL("""WITH b AS (SELECT {0} FROM {1} t WHERE {2} ORDER BY {0} LIMIT %s),
                              u AS (UPDATE {1} t SET {3} FROM b WHERE {4} AND ({5}) RETURNING 1)
                           SELECT (SELECT to_jsonb(z) FROM (SELECT * FROM b ORDER BY {6} DESC LIMIT 1) z),
                                  (SELECT count(*) FROM b), (SELECT count(*) FROM u)""").format(
                pkl, tbl, where, sets, join, differs,
                sql.SQL(", ").join(sql.Identifier(p) for p in pk))

            def work(cur, q=q, params=params, size=size):
                cur.execute(q, params + (size,))
                return cur.fetchone()
            t0 = time.monotonic()
            last_row, seen, updated = self.txn("backfill " + qualified(*key), work)
            took_ms = (time.monotonic() - t0) * 1000
            full = seen >= size
            if self.batch_target_ms:  # a batch holds its rows' locks until it commits: keep it under the budget
                if took_ms > self.batch_target_ms:
                    size = max(50, size // 2)
                elif took_ms < self.batch_target_ms / 2:
                    size = min(self.batch_size, int(size * 1.5) + 1)
            batches += 1
            total += updated
            scanned += seen
            progress.update(scanned)
            if last_row is not None:
                last = last_row
            if batches % 20 == 0 or not full:
                msg = "{0}: {1} rows backfilled in {2} batches ({3:.1f}s)".format(qualified(*key), total, batches,
                                                                               time.monotonic() - started)
                self.progress(msg)
                self.journal("online:backfill:progress", "completed", qualified(*key),
                             {"rows": total, "batches": batches, "last_key": last, "batch_size": size})
            if not full:
                break
            if self.throttle_ms:
                time.sleep(self.throttle_ms / 1000.0)
        self.events.append("backfilled {0} rows of {1} in {2} batches".format(total, qualified(*key), batches))

    def _shadow_indexes(self, key, cols):
        tbl = _ident(*key)
        subst = {c["column"]: c["new_column"] for c in cols}
        old_autocommit = self.conn.autocommit
        self.conn.commit()
        self.conn.autocommit = True
        try:
            with self.conn.cursor() as cur:
                for idx in self.facts[key]["indexes"]:
                    if not any(c in subst for c in idx["columns"]):
                        continue
                    shadow = derived_name(idx["name"], suffix=NEW_SUFFIX)
                    cur.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                "WHERE c.relnamespace = %s::regnamespace AND c.relname = %s",
                                (sql.Identifier(key[0]).as_string(cur), shadow))
                    row = cur.fetchone()
                    if row is not None and row[0]:
                        continue
                    if row is not None:  # an invalid index left by an interrupted CONCURRENTLY build
                        self.events.append("dropped invalid index {0} and rebuilt it".format(shadow))
                        cur.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(_ident(key[0], shadow)))
                    create = sql.SQL("CREATE {0}INDEX CONCURRENTLY {1} ON {2} ({3})").format(
                        sql.SQL("UNIQUE " if idx["unique"] else ""), sql.Identifier(shadow), tbl,
                        sql.SQL(", ").join(sql.Identifier(subst.get(c, c)) for c in idx["columns"]))
                    # CONCURRENTLY waits for older transactions under SHARE UPDATE EXCLUSIVE, which does not block
                    # writers: a longer lock_timeout is harmless here; a failed build is dropped and retried.
                    cur.execute("SELECT set_config('lock_timeout', '60s', false)")
                    retry_on_lock(lambda cur=cur, create=create: cur.execute(create), self.retries, self.backoff,
                                  self.backoff_max, self.attempts, "create index " + shadow,
                                  undo=lambda cur=cur, key=key, shadow=shadow: cur.execute(
                                      sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {0}").format(_ident(key[0], shadow))))
                    cur.execute("SELECT set_config('lock_timeout', %s, false)", (str(self.lock_timeout),))
                    self.journal("online:index", "completed", shadow)
        finally:
            self.conn.autocommit = old_autocommit

    def _not_null_checks(self, key, cols):
        tbl = _ident(*key)
        for c in cols:
            if not (c["notnull"] or c["not_null"]):
                continue
            name = online_check_name(c["column"])

            def add(cur, c=c, name=name):
                cur.execute("SELECT 1 FROM pg_constraint WHERE conrelid = %s AND conname = %s",
                            (self.facts[key]["oid"], name))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} CHECK ({2} IS NOT NULL) NOT VALID").format(
                        tbl, sql.Identifier(name), sql.Identifier(c["new_column"])))
            self.txn("add NOT NULL check on " + c["new_column"], add)
            self.txn("validate NOT NULL check on " + c["new_column"], lambda cur, name=name: cur.execute(
                sql.SQL("ALTER TABLE {0} VALIDATE CONSTRAINT {1}").format(tbl, sql.Identifier(name))))

    def _verify_backfill(self, key, cols):
        tbl = _ident(*key)
        cond = sql.SQL(" OR ").join(sql.SQL("t.{0} IS DISTINCT FROM {1}").format(
            sql.Identifier(c["new_column"]), self._new_expr(c, "t")) for c in cols)
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT count(*) FILTER (WHERE {0}), count(*) FROM {1} t").format(cond, tbl))
            bad, n = cur.fetchone()
        self.conn.commit()
        if bad:
            raise TypeChangeError("{0}: {1} of {2} rows differ between the column and its shadow after the backfill; "
                                  "re-run to resume (the backfill re-syncs differing rows); if it fails again, writes "
                                  "bypass the sync trigger (session_replication_role = replica) or the using expression "
                                  "is not deterministic: fix that first".format(qualified(*key), bad, n))
        self.counts.setdefault(qualified(*key), {})["before"] = n

    def _swap(self, cur, by_table):
        lock_tables(cur, self.lock_plan())
        drop_fks(cur, self.plan)
        drop_views(cur, self.plan)
        for key, cols in by_table.items():
            tbl = _ident(*key)
            t = self.facts[key]
            cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(TRIGGER_NAME), tbl))
            cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {0}()").format(
                _ident("pgsafe", trigger_function_name(t["oid"]))))
            names = {c["column"] for c in cols}
            affected = [i for i in t["indexes"] if any(c in names for c in i["columns"])]
            for idx in affected:
                if idx["constraint"]:
                    cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(tbl, sql.Identifier(idx["constraint"])))
            for c in cols:
                if c["notnull"] or c["not_null"]:
                    cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET NOT NULL").format(
                        tbl, sql.Identifier(c["new_column"])))
                    cur.execute(sql.SQL("ALTER TABLE {0} DROP CONSTRAINT {1}").format(
                        tbl, sql.Identifier(online_check_name(c["column"]))))
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
                else:
                    cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(_ident(key[0], shadow),
                                                                               sql.Identifier(idx["name"])))
        recreate_views(cur, self.plan)
        added = add_fks_not_valid(cur, self.plan)
        self.journal("typechange:online", "completed", ",".join(self.plan["touched_tables"]),
                     {"fks_added_not_valid": added, "quarantined": {k: v["rows"] for k, v in self.moved.items()}},
                     self.rollback, cur=cur)
        return added
