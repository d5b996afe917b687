# -*- coding: utf-8 -*-
"""The copy-and-swap method of the online type change, as run (the plan chose it per table:
pgsafe_typechange_copy).

1. One transaction, committed before the copy reads a row: a log table (the keys of changed rows, old and new
   key when a key changes) and the trigger that fills it, and the new table (same columns, new types, no
   indexes; owner, grants, defaults, checks, comments, storage, reloptions carried over).  Leftovers of an
   interrupted run are dropped first: the new table only when the old log names it as ours.
2. The rows copied by ``INSERT ... SELECT <casts>`` in block ranges (TID range scans), each range a short
   transaction that locks no row of the original: writes go on, and the log holds every key they touch.
3. The log replayed by key (delete the key's rows in the new table, insert its current rows; in REPEATABLE
   READ, so the log rows removed are exactly those replayed), the keys and indexes built once (plain builds:
   only the replay writes to the new table), VACUUM ANALYZE, the log replayed again; once the keys are there, one
   verification in one snapshot, on a session free meanwhile: every row whose key is not in the log equals its
   cast (count and hash of both sides).
4. The swap, in the online strategy's one short transaction under the locks: the last replay, renames of the
   tables and their indexes, sequences OWNED BY moved, replica identity; the plan's foreign keys and views are
   dropped and re-created around it as for the shadow-column method.  The old table is dropped once the
   foreign keys validated (the verified backup taken before the change is the way back).

A value that does not cast, or two values that become one key (case variants of one uuid), fail the change
before the swap, naming table, column, key and the fix; the log trigger and the new table are dropped then
(an interrupted run leaves them; the next run drops them and starts again).  The original table is untouched
until the swap.
"""
from __future__ import annotations

import re
import threading
import time

from ansible.module_utils.pgsafe_identifiers import derived_name, qualified
from ansible.module_utils.pgsafe_locks import run_with_retries
from ansible.module_utils.pgsafe_typechange_backfill import BatchSizer, clone_connection, close_sessions, heap_shape
from ansible.module_utils.pgsafe_typechange_copy import (COPY, LOG_TRIGGER, ORIGINAL_COMMENT, TRUNCATE_TRIGGER,
                                                         copy_table_name, log_function_name, log_table_name, old_name)
from ansible.module_utils.pgsafe_typechange_parse import NEW_SUFFIX, TypeChangeError
from ansible.module_utils.pgsafe_typechange_sql import _ident, _type_sql

try:  # psycopg2 is needed for the SQL parts only
    from psycopg2 import errors as pg_errors
    from psycopg2 import sql
except ImportError:  # pragma: no cover
    pg_errors = sql = None

# Once the new table has its key, a replay reaches the rows of the log's keys through the keys' indexes of both
# tables (the planner, with no statistics on the log, would otherwise scan both tables whole for a few keys).
BY_KEY_SQL = ("SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), "
              "set_config('enable_seqscan', 'off', true)")
COPY_TARGET_MS = 1000  # a copy range locks no row of the original: longer ranges, fewer round trips
COPY_START_ROWS = 20000
REPLAY_ROWS = 20000  # keys replayed per transaction before the swap
CATCH_UP_ROWS = 500  # backlog small enough for the swap's last replay (all copied tables together)
CATCH_UP_SECONDS = 60  # replays before the swap at most (writes may outpace them on a saturated server)
# The verification's digest of a set of rows ``r``: by the columns' own hash functions, or by the rows' text form.
VERIFY_DIGEST = {"record": "count(*), coalesce(sum(hash_record_extended(r, 0)), 0)",
                 "text": "count(*), coalesce(sum(hashtextextended(r::text, 0)), 0)"}
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
INDEXES_SQL = """
SELECT x.relname, pg_get_indexdef(ix.indexrelid), con.contype::text, ix.indisunique, ix.indisreplident,
       quote_ident(x.relname), quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_index ix JOIN pg_class x ON x.oid = ix.indexrelid JOIN pg_class c ON c.oid = ix.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_constraint con ON con.conindid = ix.indexrelid AND con.conrelid = ix.indrelid AND con.contype IN ('p', 'u')
 WHERE ix.indrelid = %s ORDER BY con.contype NULLS LAST, x.relname
"""
SEQUENCES_SQL = """
SELECT n.nspname, s.relname, a.attname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace n ON n.oid = s.relnamespace
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid = %s AND d.deptype = 'a'
"""
GRANTS_SQL = """
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, a.is_grantable
  FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %s AND a.grantee <> c.relowner ORDER BY 1, 2
"""


def index_statement(definition, quoted_name, quoted_table, new_name, new_table):
    """CREATE INDEX of the new table from the original's pg_get_indexdef (the server's own text): only the
    index and table names change; None when the definition has another shape."""
    for head in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
        prefix = "{0}{1} ON {2} USING ".format(head, quoted_name, quoted_table)
        if definition.startswith(prefix):
            return sql.SQL(head + "{0} ON {1} USING " + definition[len(prefix):].replace("%", "%%")).format(
                sql.Identifier(new_name), new_table)
    return None


def value_problem(exc, name, columns):
    """(what, fix) of a cast failure or a key collision raised while filling the new table, or None."""
    text = (getattr(exc, "pgerror", None) or str(exc)).strip()
    diag = getattr(exc, "diag", None)
    detail = (diag.message_detail if diag is not None else None) or ""
    if pg_errors is not None and isinstance(exc, pg_errors.UniqueViolation):
        return ("{0}: two rows get the same key after the change ({1}): e.g. case variants of one uuid "
                "written during the copy".format(name, detail or text.splitlines()[0]),
                "change or delete one of the rows (see the key), then re-run")
    if pg_errors is not None and isinstance(exc, pg_errors.DataError):
        found = re.search(r'"(.*)"', text.splitlines()[0])
        return ("{0}: a value of column(s) {1} does not convert ({2}){3}".format(
            name, ", ".join(columns), text.splitlines()[0], "" if not found else " : value {0!r}".format(found.group(1))),
            "fix or delete the row holding it (written during the copy), then re-run")
    return None


class LogDrainer(threading.Thread):
    """Replays the logs of the copied tables that are ready (copied, indexed) in turn, on a session of its own, until
    stopped: their backlogs stay small while they are verified, other tables are prepared and the orphans scanned."""

    def __init__(self, runner, by_table, conn):
        super().__init__(daemon=True, name="pgsafe-copy-drain")
        self.runner, self.by_table, self.conn = runner, by_table, conn
        self.ready, self.halt, self.error = [], threading.Event(), None

    def run(self):
        try:
            while not self.halt.is_set():
                found = sum(self.runner._copy_replay_once(self.conn, key, self.by_table[key], REPLAY_ROWS, True)
                            for key in list(self.ready))
                if found < CATCH_UP_ROWS:
                    self.halt.wait(0.2)
        except Exception as exc:  # noqa: BLE001 - handed to the runner when it stops the drainer
            self.error = exc

    def finish(self):
        self.halt.set()
        self.join()
        close_sessions([self.conn])
        return self.error


class SideJob:
    """A job a table's session hands to whichever session is free (``run``), or runs itself when none took it
    (``finish``, which waits for it otherwise and raises its error)."""

    def __init__(self, work):
        self.work, self.claim, self.done, self.error, self.result = work, threading.Lock(), threading.Event(), None, None

    def run(self, conn):
        if not self.claim.acquire(blocking=False):
            return
        try:
            self.result = self.work(conn)
        except BaseException as exc:  # noqa: BLE001 - raised here and by finish() in the table's session
            self.error = exc
            raise
        finally:
            self.done.set()

    def finish(self, conn, run_other=None):
        """Runs queued jobs on ``conn`` (``run_other(conn)``, False when none is left) while this one waits for a
        session, then this one here if no session took it, else waits for it."""
        while not self.done.is_set() and run_other is not None and run_other(conn):
            pass
        if self.claim.acquire(blocking=False):
            self.claim.release()
            self.run(conn)
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result


class CopyMethod:
    """Runner's copy-and-swap method (needs the Runner's and OnlineStrategy's plumbing)."""

    _drainer = None
    _side_jobs = None  # the queue of the sessions preparing the tables (OnlineStrategy._prepare_tables)

    def _copy_start_drainer(self, copies, by_table):
        """The LogDrainer of this run (none without copied tables or without a further session)."""
        if not copies:
            return
        try:
            conn = clone_connection(self.conn)
        except Exception as exc:  # noqa: BLE001 - slower, not less safe: the replays before the swap catch up
            self.events.append("no session to replay the change logs meanwhile ({0})".format(str(exc).strip()[:200]))
            return
        self._drainer = LogDrainer(self, by_table, conn)
        self._drainer.start()

    def _copy_stop_drainer(self, copies, raise_error=True):
        drainer, self._drainer = self._drainer, None
        error = drainer.finish() if drainer is not None else None
        if error is not None and raise_error:
            raise self._copy_value_error(error, copies, "a replay") from None

    def _is_copy(self, key):
        return self.plan.get("methods", {}).get(qualified(*key), {}).get("method") == COPY

    def _copy_names(self, key):
        oid = self.facts[key]["oid"]
        return {"table": _ident(*key), "new": _ident(key[0], copy_table_name(key[1])),
                "log": _ident("pgsafe", log_table_name(oid)), "fn": _ident("pgsafe", log_function_name(oid)),
                "old": old_name(key[1], oid), "oid": oid}

    def _copy_columns(self, key, cols):
        """(column names in order, their expressions over the original's row ``t``)."""
        changed = {c["column"]: c for c in cols}
        names = [n for n, _c in sorted(self.facts[key]["columns"].items(), key=lambda kv: kv[1]["attnum"])]
        exprs = [self._new_expr(changed[n], "t") if n in changed else sql.SQL("t.{0}").format(sql.Identifier(n))
                 for n in names]
        return names, exprs

    def _key_cast(self, key, cols, alias):
        """The primary key of the new table as computed from the log's (original) key columns."""
        changed = {c["column"]: c for c in cols}
        return [self._new_expr(changed[p], alias) if p in changed else sql.SQL("{0}.{1}").format(
            sql.SQL(alias), sql.Identifier(p)) for p in self.facts[key]["pk"]]

    # ------------------------------------------------------------------ 1. log, trigger, new table
    def _copy_setup(self, cur, key, cols):
        n, t = self._copy_names(key), self.facts[key]
        self._copy_drop_leftovers(cur, key, n)
        pk = t["pk"]
        cur.execute(sql.SQL("CREATE TABLE {0} (n bigserial PRIMARY KEY, {1})").format(n["log"], sql.SQL(", ").join(
            sql.SQL("{0} {1}").format(sql.Identifier(p), sql.SQL(t["columns"][p]["type"])) for p in pk)))
        self._copy_create_table(cur, key, cols, n)
        cur.execute(sql.SQL("COMMENT ON TABLE {0} IS {1}").format(n["log"], sql.Literal(
            "pgsafe copy log of {0}; new table oid {1}".format(qualified(*key), self._oid_of(cur, n["new"])))))
        pkl = sql.SQL(", ").join(sql.Identifier(p) for p in pk)

        def row(alias):
            return sql.SQL(", ").join(sql.SQL("{0}.{1}").format(sql.SQL(alias), sql.Identifier(p)) for p in pk)
        body = sql.SQL("BEGIN\nIF TG_OP = 'TRUNCATE' THEN INSERT INTO {0} DEFAULT VALUES; RETURN NULL; END IF;\n"
                       "IF TG_OP <> 'INSERT' THEN INSERT INTO {0} ({1}) VALUES ({2}); END IF;\n"
                       "IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND ({3}) IS DISTINCT FROM ({2})) THEN "
                       "INSERT INTO {0} ({1}) VALUES ({3}); END IF;\nRETURN NULL;\nEND").format(
            n["log"], pkl, row("OLD"), row("NEW"))
        cur.execute(sql.SQL("CREATE FUNCTION {0}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                            "SET search_path = pg_catalog, pg_temp AS {1}").format(n["fn"], sql.Literal(body.as_string(cur))))
        cur.execute(sql.SQL("CREATE TRIGGER {0} AFTER INSERT OR UPDATE OR DELETE ON {1} FOR EACH ROW EXECUTE FUNCTION "
                            "{2}()").format(sql.Identifier(LOG_TRIGGER), n["table"], n["fn"]))
        cur.execute(sql.SQL("CREATE TRIGGER {0} AFTER TRUNCATE ON {1} FOR EACH STATEMENT EXECUTE FUNCTION {2}()")
                    .format(sql.Identifier(TRUNCATE_TRIGGER), n["table"], n["fn"]))

    @staticmethod
    def _oid_of(cur, ident):
        cur.execute("SELECT %s::regclass::oid", (ident.as_string(cur),))
        return cur.fetchone()[0]

    def _copy_drop_leftovers(self, cur, key, n):
        """What an interrupted run left: the trigger, the log, and the new table when the log names it."""
        for trigger in (LOG_TRIGGER, TRUNCATE_TRIGGER):
            cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {0} ON {1}").format(sql.Identifier(trigger), n["table"]))
        cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (n["log"].as_string(cur),))
        note = (cur.fetchone() or [None])[0] or ""
        found = re.search(r"new table oid (\d+)$", note)
        cur.execute("SELECT to_regclass(%s)::oid", (n["new"].as_string(cur),))
        existing = cur.fetchone()[0]
        if existing is not None:
            if not found or int(found.group(1)) != existing:
                raise TypeChangeError("{0} exists and was not made by pgsafe: rename or drop it (the copy-and-swap "
                                      "method fills a table of that name), then re-run; nothing changed".format(
                                          qualified(key[0], copy_table_name(key[1]))))
            cur.execute(sql.SQL("DROP TABLE {0}").format(n["new"]))
            self.events.append("dropped {0} left by an interrupted run".format(copy_table_name(key[1])))
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {0}").format(n["log"]))
        cur.execute(sql.SQL("DROP FUNCTION IF EXISTS {0}()").format(n["fn"]))

    def _copy_create_table(self, cur, key, cols, n):
        f = self.plan["_facts"]["copy"][key]
        like = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS"
        if self.plan["_facts"]["server_version_num"] >= 140000:
            like += " INCLUDING COMPRESSION"
        options = sql.SQL("")
        if f["reloptions"]:
            options = sql.SQL(" WITH ({0})").format(sql.SQL(", ").join(sql.SQL("{0} = {1}").format(
                sql.Identifier(o.split("=", 1)[0]), sql.Literal(o.split("=", 1)[1])) for o in f["reloptions"]))
        cur.execute(sql.SQL("CREATE TABLE {0} (LIKE {1} " + like + "){2}").format(n["new"], n["table"], options))
        for c in cols:
            col = sql.Identifier(c["column"])
            cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} DROP DEFAULT, ALTER COLUMN {1} TYPE {2} USING NULL")
                        .format(n["new"], col, _type_sql(c["type"])))
            default = c["default"] if c["set_default"] else c["default_before"]
            if default:
                cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET DEFAULT {2}").format(
                    n["new"], col, sql.SQL(default)))
            if c["not_null"] and not c["notnull"]:
                cur.execute(sql.SQL("ALTER TABLE {0} ALTER COLUMN {1} SET NOT NULL").format(n["new"], col))
        if f["replident"] in ("f", "n"):
            cur.execute(sql.SQL("ALTER TABLE {0} REPLICA IDENTITY " + ("FULL" if f["replident"] == "f" else "NOTHING"))
                        .format(n["new"]))
        if f["comment"] is not None:
            cur.execute(sql.SQL("COMMENT ON TABLE {0} IS {1}").format(n["new"], sql.Literal(f["comment"])))
        cur.execute(sql.SQL("ALTER TABLE {0} OWNER TO {1}").format(n["new"], sql.Identifier(f["owner"])))
        cur.execute(GRANTS_SQL, (n["oid"],))
        for grantee, privilege, grantable in cur.fetchall():
            if privilege not in PRIVILEGES:
                raise TypeChangeError("{0}: privilege {1} of {2} is not one pgsafe knows; nothing changed".format(
                    qualified(*key), privilege, grantee))
            cur.execute(sql.SQL("GRANT " + privilege + " ON {0} TO {1}{2}").format(
                n["new"], sql.SQL("PUBLIC") if grantee is None else sql.Identifier(grantee),
                sql.SQL(" WITH GRANT OPTION" if grantable else "")))

    # ------------------------------------------------------------------ 2.-3. copy, replay, indexes, verify
    def _copy_prepare(self, conn, key, cols, stop):
        """Copy, replays, indexes, VACUUM ANALYZE and the verification.  The verification needs only the copy done (from
        then on every row not in the log equals its cast, and each replay keeps it so in one transaction): it runs
        on a session free meanwhile (SideJob) while this one replays and builds the indexes; else here after them."""
        for what, step in (("copy", self._copy_rows), ("replay", self._copy_drain),
                           ("keys", lambda c, k, cl: self._copy_indexes(c, k, cl, keys=True))):
            if not self._copy_step(conn, key, cols, stop, what, step):
                return
        # queued once the keys are attached (ADD CONSTRAINT ... USING INDEX would wait for the verification's lock)
        verify = SideJob(lambda other: self._copy_step(other, key, cols, stop, "verify", self._copy_verify))
        put, run_other = self._side_jobs or (None, None)
        if put is not None:
            put((None, verify.run))
        try:
            for what, step in (("indexes", lambda c, k, cl: self._copy_indexes(c, k, cl, keys=False)),
                               ("vacuum", self._copy_vacuum)):
                if not self._copy_step(conn, key, cols, stop, what, step):
                    break
            else:
                if self._drainer is not None:
                    # From here on the drainer replays this table's log, also while the verification reads: it reads
                    # one snapshot, in which every row not in the log equals its cast whatever replays commit after
                    # it. (Handed over only now: a CREATE INDEX on the new table would hold the replays' inserts.)
                    self._drainer.ready.append(key)
                else:
                    self._copy_step(conn, key, cols, stop, "replay again", self._copy_drain)
        except BaseException:
            verify.claim.acquire(blocking=False)  # not started now: the run fails
            raise
        verify.finish(conn, run_other)

    def _copy_step(self, conn, key, cols, stop, what, step):
        """One step of _copy_prepare, timed and journaled; False when the run stops meanwhile."""
        if stop.is_set():
            return False
        name, started = qualified(*key), time.monotonic()
        try:
            step(conn, key, cols)
        except (pg_errors.DataError, pg_errors.IntegrityError) as exc:
            problem = value_problem(exc, name, [c["column"] for c in cols])
            if problem is None:
                raise
            conn.rollback()
            raise TypeChangeError("{0} before the swap: {1}; fix: {2}. The original table is unchanged; the "
                                  "copy is dropped".format(what, *problem)) from None
        self._took("{0} {1}".format(what, name), started)
        self.journal("online:copy:" + what, "completed", name, conn=conn)
        return True

    def _copy_rows(self, conn, key, cols):
        n = self._copy_names(key)
        names, exprs = self._copy_columns(key, cols)
        head = sql.SQL("INSERT INTO {0} ({1}) SELECT {2} FROM ONLY {3} t WHERE ").format(
            n["new"], sql.SQL(", ").join(sql.Identifier(x) for x in names), sql.SQL(", ").join(exprs), n["table"])
        blocks, per_block = self.txn("size of " + qualified(*key), lambda cur: heap_shape(cur, key), conn=conn)
        sizer = BatchSizer(COPY_TARGET_MS, max(1, int(self.batch_size * 20 / per_block)),
                           start=max(1, int(COPY_START_ROWS / per_block)))
        start, rows = 0, 0
        while start < blocks:
            end = min(blocks, start + sizer.size)
            stmt = head + sql.SQL("t.ctid >= {0}::tid AND t.ctid < {1}::tid").format(
                sql.Literal("({0},0)".format(start)), sql.Literal("({0},0)".format(end)))
            t0 = time.monotonic()
            rows += self.txn("copy " + qualified(*key), lambda cur, stmt=stmt: self._run_count(cur, stmt), conn=conn)
            sizer.observe((time.monotonic() - t0) * 1000)
            start = end
        self.events.append("copied {0} rows of {1} ({2} blocks)".format(rows, qualified(*key), blocks))

    @staticmethod
    def _run_count(cur, stmt):
        cur.execute("SELECT set_config('synchronous_commit', 'off', true)")
        cur.execute(stmt)
        return cur.rowcount

    def _replay_statements(self, key, cols, limit=None):
        """Replay of the log's first ``limit`` rows (all when None): delete their keys' rows in the new table,
        insert the keys' current rows, remove the log rows.  Run in one snapshot (REPEATABLE READ, or under the
        swap's lock) so the log rows removed are those replayed."""
        n, pk = self._copy_names(key), self.facts[key]["pk"]
        names, exprs = self._copy_columns(key, cols)
        upto = sql.SQL("l.n <= (SELECT max(m.n) FROM (SELECT n FROM {0} ORDER BY n{1}) m)").format(
            n["log"], sql.SQL("") if limit is None else sql.SQL(" LIMIT {0}").format(sql.Literal(int(limit))))
        new_key = sql.SQL(", ").join(sql.SQL("s.{0}").format(sql.Identifier(p)) for p in pk)
        old_key = sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk)
        log_key = sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk)
        return self._respelled_key_check(key, cols, upto) + [
            sql.SQL("DELETE FROM {0} s WHERE ({1}) IN (SELECT {2} FROM {3} l WHERE {4})").format(
                n["new"], new_key, sql.SQL(", ").join(self._key_cast(key, cols, "l")), n["log"], upto),
            sql.SQL("INSERT INTO {0} ({1}) SELECT {2} FROM ONLY {3} t WHERE ({4}) IN (SELECT {5} FROM {6} l WHERE {7})")
            .format(n["new"], sql.SQL(", ").join(sql.Identifier(x) for x in names), sql.SQL(", ").join(exprs),
                    n["table"], old_key, log_key, n["log"], upto),
            sql.SQL("DELETE FROM {0} l WHERE {1}").format(n["log"], upto)]

    def _respelled_key_check(self, key, cols, upto):
        """When a key column changes type: a key written during the copy whose converted value is spelled
        otherwise (an upper-case uuid) could be another row's key under the new type, which the replay by key cannot
        tell: the change fails before the swap (SQLSTATE 23505), naming the key."""
        n, pk = self._copy_names(key), self.facts[key]["pk"]
        truncated = sql.SQL("IF EXISTS (SELECT 1 FROM {0} l WHERE {1} AND l.{2} IS NULL) THEN RAISE EXCEPTION USING "
                            "ERRCODE = '55000', MESSAGE = {3}; END IF;").format(
            n["log"], upto, sql.Identifier(pk[0]), sql.Literal(
                "{0} was truncated during the copy: re-run (the copy starts again from what the table holds now)"
                .format(qualified(*key))))
        if not any(c["column"] in pk for c in cols):
            return [sql.SQL("DO {0}").format(sql.Literal(sql.SQL("BEGIN {0} END").format(truncated).as_string(
                self.conn)))]
        old = sql.SQL("ROW({0})::text").format(sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk))
        new = sql.SQL("ROW({0})::text").format(sql.SQL(", ").join(self._key_cast(key, cols, "l")))
        body = sql.SQL("DECLARE k text; v text; BEGIN {8} SELECT {0}, {1} INTO k, v FROM {2} l WHERE {3} AND {0} <> {1} "
                       "AND EXISTS (SELECT 1 FROM ONLY {4} t WHERE ({5}) = ({6})) LIMIT 1; IF k IS NOT NULL THEN RAISE "
                       "EXCEPTION USING ERRCODE = '23505', MESSAGE = 'a key written during the copy changes its "
                       "spelling', DETAIL = format('Key ({7})=%s becomes %s after the change: it may be the key of "
                       "another row', k, v); END IF; END").format(
            old, new, n["log"], upto, n["table"],
            sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk),
            sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk),
            sql.SQL(", ".join(p.replace("'", "''") for p in pk)), truncated)
        return [sql.SQL("DO {0}").format(sql.Literal(body.as_string(self.conn)))]

    def _copy_replay_once(self, conn, key, cols, limit, indexed):
        stmts = self._replay_statements(key, cols, limit)

        def work(cur):
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            self.settings(cur)
            cur.execute("SELECT set_config('synchronous_commit', 'off', true)")
            if indexed:
                cur.execute(BY_KEY_SQL)
            for stmt in stmts:
                cur.execute(stmt)
            return cur.rowcount
        return run_with_retries(conn, work, self.retries, self.backoff, self.backoff_max, self.attempts,
                                "replay the log of " + qualified(*key))

    def _copy_drain(self, conn, key, cols, most=REPLAY_ROWS):
        """Replay until a replay finds fewer than ``most`` log rows (before the indexes: one pass over the new table
        per replay; after: by key)."""
        indexed = self.txn("look for the key of the copy of " + qualified(*key), lambda cur: self._has_key(cur, key),
                           conn=conn)
        while self._copy_replay_once(conn, key, cols, REPLAY_ROWS, indexed) >= most:
            pass

    def _copy_catch_up(self, copies, by_table, most_seconds=CATCH_UP_SECONDS):
        """Right before the swap: replays of every copied table in turn until one round finds fewer than
        CATCH_UP_ROWS keys in all (the swap's own replay is then short), or for ``most_seconds`` at most (then the
        swap replays the backlog under its lock: an event says how many keys)."""
        started = time.monotonic()
        while copies:
            found = sum(self._copy_replay_once(self.conn, key, by_table[key], REPLAY_ROWS, True) for key in copies)
            if found < CATCH_UP_ROWS:
                break
            if time.monotonic() - started > most_seconds:
                self.events.append("the change logs stayed {0} keys behind after {1:.0f}s of replays: the swap "
                                   "replays them under its lock".format(found, time.monotonic() - started))
                break

    def _has_key(self, cur, key):
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = %s::regclass AND indisprimary)",
                    (self._copy_names(key)["new"].as_string(cur),))
        return cur.fetchone()[0]

    def _copy_indexes(self, conn, key, cols, keys):
        """The indexes of the primary key and unique constraints (``keys``), or the others."""
        n = self._copy_names(key)
        with conn.cursor() as cur:
            cur.execute(INDEXES_SQL, (n["oid"],))
            indexes = [r for r in cur.fetchall() if bool(r[2]) == keys]
        conn.commit()
        for name, definition, contype, _unique, _replident, quoted, qtable in indexes:
            new_name = derived_name(name, suffix=NEW_SUFFIX)
            stmt = index_statement(definition, quoted, qtable, new_name, n["new"])
            if stmt is None:
                raise TypeChangeError("{0}: index {1} has a definition pgsafe cannot re-target ({2}); use strategy "
                                      "rewrite; the original table is unchanged".format(qualified(*key), name,
                                                                                         definition))

            def build(cur, stmt=stmt, contype=contype, new_name=new_name):
                cur.execute("SELECT set_config('statement_timeout', '0', true)")
                cur.execute(stmt)
                if contype:
                    cur.execute(sql.SQL("ALTER TABLE {0} ADD CONSTRAINT {1} " + (
                        "PRIMARY KEY" if contype == "p" else "UNIQUE") + " USING INDEX {1}").format(
                        n["new"], sql.Identifier(new_name)))
            self.txn("create index {0} on the copy of {1}".format(new_name, qualified(*key)), build, conn=conn)

    def _copy_vacuum(self, conn, key, cols, analyze=True):
        """VACUUM (ANALYZE), not ANALYZE alone: without it autovacuum comes for the millions of rows inserted (the
        bench waited 9.8 s for it before the swap) and the visibility map stays empty."""
        n = self._copy_names(key)
        conn.commit()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("VACUUM (ANALYZE) {0}" if analyze else "VACUUM {0}").format(n["new"]))
        finally:
            conn.autocommit = False

    def _copy_vacuum_again(self, key, cols):
        """VACUUM of the new table right before the swap: the replays since the first one cleared the visibility map of
        the pages they wrote (under the bench's load most of them), while the statistics still count those pages as
        all-visible, so the FK validations after the swap planned index-only scans that fetched every row from the
        heap at random (5-7 s for an FK of a 1M-row table instead of 0.1-0.6 s)."""
        started = time.monotonic()
        self._copy_vacuum(self.conn, key, cols, analyze=False)
        self._took("vacuum again " + qualified(*key), started)

    def _copy_verify(self, conn, key, cols):
        """In one snapshot: the rows whose key is not in the log, cast, equal the new table's (count and hash).
        Rows are hashed by their columns' own hash functions (``hash_record_extended``: no text conversion, about
        3x cheaper); a table with a column type that has none (json, point, ...) by their text form."""
        n, pk = self._copy_names(key), self.facts[key]["pk"]
        names, exprs = self._copy_columns(key, cols)
        old_key = sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk)
        log_key = sql.SQL(", ").join(sql.SQL("l.{0}").format(sql.Identifier(p)) for p in pk)
        new_key = sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(p)) for p in pk)
        # NOT EXISTS, not NOT IN: an anti-join whatever the size of the log (NOT IN hashes it in work_mem or
        # scans it once per row)
        old = ("SELECT {digest} FROM (SELECT ROW({0}) AS r FROM ONLY {1} t WHERE NOT EXISTS "
               "(SELECT 1 FROM {4} l WHERE ({3}) = ({2}))) q", [sql.SQL(", ").join(exprs), n["table"], old_key, log_key,
                                                             n["log"]])
        new = ("SELECT {digest} FROM (SELECT ROW({0}) AS r FROM {1} t WHERE NOT EXISTS "
               "(SELECT 1 FROM {4} l WHERE ({3}) = ({2}))) q",
               [sql.SQL(", ").join(sql.SQL("t.{0}").format(sql.Identifier(x)) for x in names), n["new"], new_key,
                sql.SQL(", ").join(self._key_cast(key, cols, "l")), n["log"]])

        def work(cur, digest):
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("SELECT set_config('statement_timeout', '0', true)")
            out = []
            for text, parts in (old, new):
                cur.execute(sql.SQL(text).format(*parts, digest=sql.SQL(digest)))
                out.append(cur.fetchone())
            return out
        what = "verify the copy of " + qualified(*key)
        try:
            before, after = run_with_retries(conn, lambda cur: work(cur, VERIFY_DIGEST["record"]), self.retries,
                                             self.backoff, self.backoff_max, self.attempts, what)
        except (pg_errors.UndefinedFunction, pg_errors.FeatureNotSupported):  # a column type without a hash function
            conn.rollback()
            before, after = run_with_retries(conn, lambda cur: work(cur, VERIFY_DIGEST["text"]), self.retries,
                                             self.backoff, self.backoff_max, self.attempts, what + " (text form)")
        if tuple(before) != tuple(after):
            raise TypeChangeError("{0}: the copy differs from the original (rows/hash {1} vs {2}) outside the keys "
                                  "still to replay: writes bypass the log trigger (session_replication_role = "
                                  "replica?) or a using expression is not deterministic; fix that and re-run (the "
                                  "copy starts again); the original table is unchanged".format(
                                      qualified(*key), list(before), list(after)))
        self.counts.setdefault(qualified(*key), {})["before"] = before[0]

    # ------------------------------------------------------------------ 4. swap, clean up
    def _copy_read_swap_facts(self, cur, key):
        cur.execute(INDEXES_SQL, (self.facts[key]["oid"],))
        indexes = [(r[0], r[4]) for r in cur.fetchall()]
        cur.execute(SEQUENCES_SQL, (self.facts[key]["oid"],))
        return {"indexes": indexes, "sequences": cur.fetchall()}

    def _copy_swap_table(self, cur, key, cols, swap_facts):
        """The table's part of the swap (``cur`` collects the statements of the swap's one round trip)."""
        n = self._copy_names(key)
        cur.execute(BY_KEY_SQL)
        for stmt in self._replay_statements(key, cols):
            cur.execute(stmt)
        for trigger in (LOG_TRIGGER, TRUNCATE_TRIGGER):
            cur.execute(sql.SQL("DROP TRIGGER {0} ON {1}").format(sql.Identifier(trigger), n["table"]))
        cur.execute(sql.SQL("ALTER TABLE {0} RENAME TO {1}").format(n["table"], sql.Identifier(n["old"])))
        cur.execute(sql.SQL("COMMENT ON TABLE {0} IS {1}").format(_ident(key[0], n["old"]), sql.Literal(
            ORIGINAL_COMMENT.format(qualified(*key), self.run_id))))
        for name, _replident in swap_facts["indexes"]:
            cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(
                _ident(key[0], name), sql.Identifier(old_name(name, n["oid"]))))
        cur.execute(sql.SQL("ALTER TABLE {0} RENAME TO {1}").format(n["new"], sql.Identifier(key[1])))
        for name, replident in swap_facts["indexes"]:
            cur.execute(sql.SQL("ALTER INDEX {0} RENAME TO {1}").format(
                _ident(key[0], derived_name(name, suffix=NEW_SUFFIX)), sql.Identifier(name)))
            if replident:
                cur.execute(sql.SQL("ALTER TABLE {0} REPLICA IDENTITY USING INDEX {1}").format(
                    n["table"], sql.Identifier(name)))
        for schema, seq, column in swap_facts["sequences"]:
            cur.execute(sql.SQL("ALTER SEQUENCE {0} OWNED BY {1}.{2}").format(
                _ident(schema, seq), n["table"], sql.Identifier(column)))
        cur.execute(sql.SQL("DROP TABLE {0}").format(n["log"]))
        cur.execute(sql.SQL("DROP FUNCTION {0}()").format(n["fn"]))

    def _copy_value_error(self, exc, keys, what):
        """A cast failure or key collision met in ``what`` (the swap's last replay), as a TypeChangeError naming the
        table(s), the key and the fix; any other error as it is."""
        cols = [c["column"] for c in self.plan["changes"] if (c["schema"], c["table"]) in keys and c["needs_type"]]
        problem = value_problem(exc, ", ".join(qualified(*k) for k in keys), cols) if keys else None
        if problem is None:
            return exc
        return TypeChangeError("{0}: {1}; fix: {2}. The swap was rolled back: the original tables are unchanged; "
                               "the copies are dropped".format(what, *problem))

    def _copy_drop_old(self, key):
        """After the foreign keys validated: the original table (now named old_name) is dropped."""
        n = self._copy_names(key)
        self.txn("drop the old table of " + qualified(*key), lambda cur: cur.execute(
            sql.SQL("DROP TABLE {0}").format(_ident(key[0], n["old"]))))
        self.events.append("dropped the original table of {0} (was {1})".format(qualified(*key), n["old"]))

    def _copy_abandon(self, key):
        """A failure before the swap: the log trigger, the log and the new table dropped (best effort: an
        interrupted run leaves them, and the next run drops them)."""
        n = self._copy_names(key)

        def work(cur):
            self._copy_drop_leftovers(cur, key, n)
        try:
            self.conn.rollback()
            self.txn("drop the copy of " + qualified(*key), work)
        except Exception as exc:  # noqa: BLE001 - the session may be gone; the next run drops them
            self.events.append("could not drop the copy of {0}: {1}".format(qualified(*key), str(exc).strip()[:200]))
