"""The online type change by copy and swap on real Postgres: every write made during the copy arrives (the content
equals what the rewrite gives), a value that stops converting fails before the swap and leaves the original
unchanged, an interrupted run converges on a re-run, views, an inbound foreign key, a serial column, grants and
comments are carried over, and a table with a user trigger keeps the shadow-column method (the plan says why).
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid

import pytest

from tests.typefix_support import column_types, run_module, spawn_module

PARENT, CHILD, THIRD = "cs_exports", "cs-Analytics", "cs_notes"
DDL = f'''
CREATE ROLE cs_reader;
CREATE TABLE "{PARENT}" (id text PRIMARY KEY, seq serial NOT NULL, "userRef" text NOT NULL, status text DEFAULT 'new',
                         pad text, UNIQUE (seq));
CREATE INDEX cs_user_idx ON "{PARENT}" ("userRef");
CREATE INDEX cs_status_part_idx ON "{PARENT}" (status) WHERE status <> 'done';
COMMENT ON TABLE "{PARENT}" IS 'exports of the app';
COMMENT ON COLUMN "{PARENT}".status IS 'lifecycle';
GRANT SELECT, UPDATE ON "{PARENT}" TO cs_reader;
CREATE TABLE "{CHILD}" (id bigserial PRIMARY KEY, export_id text NOT NULL REFERENCES "{PARENT}" (id) ON DELETE CASCADE,
                        event text NOT NULL);
CREATE INDEX cs_child_export_idx ON "{CHILD}" (export_id);
CREATE TABLE "{THIRD}" (id serial PRIMARY KEY, export_id text REFERENCES "{PARENT}" (id), note text);
CREATE VIEW cs_open AS SELECT id, status FROM "{PARENT}" WHERE status <> 'done';
INSERT INTO "{PARENT}" (id, "userRef", status, pad) SELECT md5(i::text)::uuid::text, 'u' || (i % 40),
       (ARRAY['new', 'done', 'rendering'])[1 + i % 3], repeat('p', 100) FROM generate_series(1, 20000) i;
INSERT INTO "{CHILD}" (export_id, event) SELECT md5((1 + i % 20000)::text)::uuid::text, 'e' || (i % 5)
  FROM generate_series(1, 40000) i;
INSERT INTO "{THIRD}" (export_id, note) SELECT md5(i::text)::uuid::text, 'n' FROM generate_series(1, 500) i;
ANALYZE;
'''
CHANGES = [{"table": PARENT, "column": "id", "type": "uuid", "not_null": True},
           {"table": PARENT, "column": "userRef", "type": "varchar(64)"},
           {"table": CHILD, "column": "export_id", "type": "uuid", "not_null": True},
           {"table": THIRD, "column": "export_id", "type": "uuid"}]
FKS = [{"name": "cs_child_fk", "table": CHILD, "columns": ["export_id"], "ref_table": PARENT, "ref_columns": ["id"],
        "on_delete": "cascade"}]


@pytest.fixture
def copy_db(pg_server):
    pg_server.execute("postgres", "DROP ROLE IF EXISTS cs_reader")
    name = pg_server.create_database()
    pg_server.execute(name, DDL)
    try:
        yield name
    finally:
        pg_server.drop_database(name)
        pg_server.execute("postgres", "DROP ROLE IF EXISTS cs_reader")


def _args(server, db, **extra):
    return dict(server.module_params(db), run_id=extra.pop("run_id", "copyswap"), changes=CHANGES, foreign_keys=FKS,
                orphan_policy=extra.pop("orphan_policy", "fail"), strategy=extra.pop("strategy", "online"), retries=5,
                backoff_seconds=0.05, lock_timeout="2s", guard_override="test on a throwaway database", **extra)


def _content(server, db):
    """Every table's rows as text, ordered: what the comparison with the rewrite's result uses."""
    return {t: server.execute(db, f'SELECT t::text FROM "{t}" t ORDER BY 1') for t in (PARENT, CHILD, THIRD)}


class Writer(threading.Thread):
    """The application: inserts, updates (also of the key) and deletes on the parent and the child all along."""

    def __init__(self, server, db, bad=None):
        super().__init__(daemon=True)
        self.server, self.db, self.bad = server, db, bad
        self.stop, self.errors, self.writes = threading.Event(), [], 0

    def run(self, most=None):
        conn, rng, n = self.server.connect(self.db), random.Random(11), 0
        with conn.cursor() as cur:
            while not self.stop.is_set() and (most is None or n < most):
                try:
                    self._one(cur, rng, n)
                    self.writes += 1
                except Exception as exc:  # noqa: BLE001 - a failed application write is a finding
                    self.errors.append(str(exc).strip()[:200])
                n += 1
                if most is None:
                    time.sleep(0.002)
        conn.close()

    def _one(self, cur, rng, n):
        if self.bad and n == 30:
            cur.execute(f'INSERT INTO "{PARENT}" (id, "userRef") VALUES (%s, %s)', (self.bad, "bad"))
            return
        new = str(uuid.UUID(int=rng.getrandbits(128)))
        target = md5_id(rng.randint(1, 20000))
        kind = n % 4
        if kind == 0:
            cur.execute(f'INSERT INTO "{PARENT}" (id, "userRef") VALUES (%s, %s)', (new, "w"))
            cur.execute(f'INSERT INTO "{CHILD}" (export_id, event) VALUES (%s, %s)', (new, "w"))
        elif kind == 1:
            cur.execute(f'UPDATE "{PARENT}" SET status = %s, "userRef" = %s WHERE id = %s', ("x" + str(n), "v", target))
        elif kind == 2:
            cur.execute(f'UPDATE "{PARENT}" SET id = %s WHERE id = %s AND NOT EXISTS (SELECT 1 FROM "{CHILD}" WHERE '
                        f'export_id = %s) AND NOT EXISTS (SELECT 1 FROM "{THIRD}" WHERE export_id = %s)',
                        (new, target, target, target))
        else:
            cur.execute(f'DELETE FROM "{PARENT}" WHERE id = %s AND NOT EXISTS (SELECT 1 FROM "{THIRD}" WHERE '
                        f'export_id = %s)', (target, target))


def md5_id(i):
    import hashlib
    return str(uuid.UUID(hashlib.md5(str(i).encode(), usedforsecurity=False).hexdigest()))


def _run_with_writer(server, db, bad=None, **extra):
    writer = Writer(server, db, bad)
    writer.start()
    time.sleep(0.3)
    proc = spawn_module("pgsafe_column_types", _args(server, db, batch_size=500, **extra))
    out, err = proc.communicate(timeout=600)
    time.sleep(0.3)
    writer.stop.set()
    writer.join()
    result = json.loads(out.strip().splitlines()[-1])
    return result, writer, err


def test_copy_and_swap_keeps_every_write_made_during_the_copy_and_equals_the_rewrite(pg_server, copy_db):
    db = copy_db
    twin = pg_server.create_database(template=db)
    result, writer, err = _run_with_writer(pg_server, db)
    assert not result.get("failed"), (result.get("msg"), err[-2000:])
    assert writer.errors == [] and writer.writes > 50
    methods = result["plan"]["methods"]
    assert methods[f'"public"."{PARENT}"']["method"] == "copy and swap", methods
    assert methods[f'"public"."{CHILD}"']["method"] == "copy and swap", methods
    assert column_types(pg_server, db, PARENT)["id"] == "uuid"
    assert column_types(pg_server, db, PARENT)["userRef"] == "character varying(64)"
    assert column_types(pg_server, db, CHILD)["export_id"] == "uuid"
    assert column_types(pg_server, db, THIRD)["export_id"] == "uuid"
    # the same writes, then the rewrite, on a twin made before the run: the same content
    try:
        Writer(pg_server, twin).run(most=writer.writes)
        rewrite = run_module("pgsafe_column_types", _args(pg_server, twin, strategy="rewrite", run_id="twin"))
        assert not rewrite.get("failed"), rewrite.get("msg")
        assert _content(pg_server, db) == _content(pg_server, twin)
    finally:
        pg_server.drop_database(twin)
    # carried over: indexes by name, view, grants, comments, sequence ownership, FK validated, no leftovers
    idx = {r[0]: r[1] for r in pg_server.execute(db, "SELECT c.relname, pg_get_indexdef(c.oid) FROM pg_index i JOIN "
                                                     "pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
                                                 (f'"{PARENT}"',))}
    assert set(idx) == {f"{PARENT}_pkey", f"{PARENT}_seq_key", "cs_user_idx", "cs_status_part_idx"}, idx
    assert "WHERE (status <> 'done'::text)" in idx["cs_status_part_idx"]
    assert pg_server.execute(db, "SELECT count(*) FROM cs_open")[0][0] > 0
    assert pg_server.execute(db, f"SELECT has_table_privilege('cs_reader', '\"{PARENT}\"', 'UPDATE')")[0][0] is True
    assert pg_server.execute(db, f"SELECT obj_description('\"{PARENT}\"'::regclass, 'pg_class')")[0][0] == \
        "exports of the app"
    assert pg_server.execute(db, f"SELECT pg_get_serial_sequence('\"{PARENT}\"', 'seq')")[0][0] is not None
    assert pg_server.execute(db, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated")[0][0] == 0
    assert pg_server.execute(db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%pgsafe_old%' OR relname LIKE "
                                 "'%pgsafe_copy%' OR relname LIKE 'copy_log_%'")[0][0] == 0
    assert pg_server.execute(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")[0][0] == 0
    assert any("copied" in e for e in result["events"]), result["events"]
    # VACUUM (ANALYZE) of each copy before the swap: the swapped table has the planner's statistics
    assert any(e.startswith(f'vacuum "public"."{PARENT}"') for e in result["events"]), result["events"]
    assert pg_server.execute(db, "SELECT count(*) FROM pg_stats WHERE tablename = %s AND attname = 'id'",
                             (PARENT,))[0][0] == 1


def _leftovers(server, db):
    return server.execute(db, "SELECT relname FROM pg_class WHERE relname LIKE '%pgsafe_copy%' OR relname LIKE "
                              "'copy_log_%' OR relname LIKE '%pgsafe_old%' UNION ALL SELECT tgname FROM pg_trigger "
                              "WHERE NOT tgisinternal ORDER BY 1")


class BadWriter(Writer):
    """Writes a case variant of an existing id as soon as the copy has started (the log table exists)."""

    def _one(self, cur, rng, n):
        if not self.bad:
            return super()._one(cur, rng, n)
        cur.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'copy_log_%'")
        if cur.fetchone()[0]:
            cur.execute(f'INSERT INTO "{PARENT}" (id, "userRef") VALUES (%s, %s)', (self.bad, "bad"))
            self.bad = None
            self.stop.set()
        return None


def test_a_case_variant_uuid_written_during_the_copy_fails_before_the_swap_and_the_original_is_unchanged(
        pg_server, copy_db):
    db = copy_db
    bad = md5_id(7).upper()
    writer = BadWriter(pg_server, db, bad)
    writer.start()
    result = run_module("pgsafe_column_types", _args(pg_server, db, batch_size=500))
    writer.join()
    assert writer.errors == [] and writer.bad is None  # the variant was written while the change ran
    assert result.get("failed"), result
    msg = result["msg"]
    assert PARENT in msg and md5_id(7) in msg and "fix:" in msg and "unchanged" in msg, msg
    assert column_types(pg_server, db, PARENT)["id"] == "text"  # the original table, untouched
    assert pg_server.execute(db, f'SELECT count(*) FROM "{PARENT}" WHERE id = %s', (bad,))[0][0] == 1
    assert _leftovers(pg_server, db) == []  # the copy, its log and trigger dropped


def test_an_interrupted_copy_leaves_the_original_unchanged_and_a_rerun_converges(pg_server, copy_db):
    db = copy_db
    before = _content(pg_server, db)
    proc = spawn_module("pgsafe_column_types", _args(pg_server, db, batch_size=50, run_id="killed"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not pg_server.execute(
            db, "SELECT count(*) FROM pg_class WHERE relname LIKE '%pgsafe_copy'")[0][0]:
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    pg_server.execute("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                  "AND pid <> pg_backend_pid()", (db,))
    assert column_types(pg_server, db, PARENT)["id"] == "text"
    assert _content(pg_server, db) == before  # nothing lost, nothing changed
    again = run_module("pgsafe_column_types", _args(pg_server, db, run_id="rerun"))
    assert not again.get("failed"), again.get("msg")
    assert column_types(pg_server, db, PARENT)["id"] == "uuid"
    assert _leftovers(pg_server, db) == []
    ids = pg_server.execute(db, f'SELECT count(*), count(DISTINCT id) FROM "{PARENT}"')[0]
    assert ids == (len(before[PARENT]), len(before[PARENT]))


def test_a_table_with_a_user_trigger_keeps_the_shadow_column_method_and_the_plan_says_why(pg_server, copy_db):
    db = copy_db
    pg_server.execute(db, f'''CREATE FUNCTION cs_touch() RETURNS trigger LANGUAGE plpgsql AS $$
                              BEGIN NEW.note := coalesce(NEW.note, '') || '.'; RETURN NEW; END $$;
                              CREATE TRIGGER cs_touch BEFORE UPDATE ON "{THIRD}" FOR EACH ROW EXECUTE FUNCTION cs_touch()''')
    plan = run_module("pgsafe_column_types", _args(pg_server, db), check=True)
    assert not plan.get("failed"), plan.get("msg")
    methods = plan["plan"]["methods"]
    assert methods[f'"public"."{THIRD}"']["method"] == "shadow columns"
    assert "user trigger cs_touch" in methods[f'"public"."{THIRD}"']["reason"]
    assert methods[f'"public"."{PARENT}"']["method"] == "copy and swap"
    assert any("shadow columns (copy and swap would not carry over: user trigger cs_touch" in s
               for s in plan["plan"]["steps"]), plan["plan"]["steps"]
    done = run_module("pgsafe_column_types", _args(pg_server, db, run_id="mixed"))
    assert not done.get("failed"), done.get("msg")
    assert column_types(pg_server, db, THIRD)["export_id"] == "uuid"
    assert pg_server.execute(db, "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == [("cs_touch",)]


class TruncateWriter(Writer):
    """Truncates the child table as soon as the copy has started (the log table exists)."""

    def _one(self, cur, rng, n):
        cur.execute(f"SELECT count(*) FROM pg_class WHERE relname = 'copy_log_' || '\"{CHILD}\"'::regclass::oid")
        if cur.fetchone()[0]:
            cur.execute(f'TRUNCATE "{CHILD}"')
            self.stop.set()


def test_a_truncate_during_the_copy_fails_before_the_swap_and_a_rerun_converges(pg_server, copy_db):
    db = copy_db
    writer = TruncateWriter(pg_server, db)
    writer.start()
    result = run_module("pgsafe_column_types", _args(pg_server, db, batch_size=500))
    writer.join()
    assert writer.errors == [] and writer.stop.is_set()
    assert result.get("failed") and f'"{CHILD}" was truncated during the copy' in result["msg"], result.get("msg")
    assert column_types(pg_server, db, CHILD)["export_id"] == "text"  # no swap: the copy never replaced the table
    assert _leftovers(pg_server, db) == []
    again = run_module("pgsafe_column_types", _args(pg_server, db, run_id="after-truncate"))
    assert not again.get("failed"), again.get("msg")
    assert pg_server.execute(db, f'SELECT count(*) FROM "{CHILD}"')[0][0] == 0
    assert column_types(pg_server, db, CHILD)["export_id"] == "uuid"


class BypassWriter(Writer):
    """Once the parent's rows are copied, changes one row with the triggers off (session_replication_role =
    replica): the log never hears of it."""

    def _one(self, cur, rng, n):
        cur.execute("SELECT to_regclass('pgsafe.journal') IS NOT NULL")
        if not cur.fetchone()[0]:
            return
        cur.execute("SELECT count(*) FROM pgsafe.journal WHERE step = 'online:copy:copy' AND object LIKE %s",
                    (f"%{PARENT}%",))
        if cur.fetchone()[0]:
            cur.execute("SET session_replication_role = replica")
            cur.execute(f'UPDATE "{PARENT}" SET status = %s WHERE id = %s', ("sneaked", md5_id(11)))
            cur.execute("RESET session_replication_role")
            self.stop.set()


def test_a_write_that_bypasses_the_log_fails_the_verification_before_the_swap(pg_server, copy_db):
    db = copy_db
    writer = BypassWriter(pg_server, db)
    writer.start()
    result = run_module("pgsafe_column_types", _args(pg_server, db, batch_size=500))
    writer.join()
    assert writer.errors == [] and writer.stop.is_set()
    assert result.get("failed") and f'"public"."{PARENT}": the copy differs from the original' in result["msg"], \
        result.get("msg")
    assert "session_replication_role" in result["msg"]
    assert column_types(pg_server, db, PARENT)["id"] == "text"
    assert pg_server.execute(db, f'SELECT status FROM "{PARENT}" WHERE id = %s', (md5_id(11),))[0][0] == "sneaked"
    assert _leftovers(pg_server, db) == []


def _drop_child_fk(server, db):
    """The child's FK dropped: the declared one is new, so orphan rows can exist."""
    server.execute(db, f'''DO $$ DECLARE c text; BEGIN SELECT conname INTO c FROM pg_constraint
                           WHERE conrelid = '"{CHILD}"'::regclass AND contype = 'f';
                           EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', '{CHILD}', c); END $$''')


class OrphanWriter(Writer):
    """Writes one orphan child row as soon as the change logs exist (after the precheck, before the orphan scan)."""

    def _one(self, cur, rng, n):
        cur.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'copy_log_%'")
        if cur.fetchone()[0]:
            cur.execute(f'INSERT INTO "{CHILD}" (export_id, event) VALUES (%s, %s)', (str(uuid.uuid4()), "orphan"))
            self.stop.set()


def test_an_orphan_written_during_the_copy_fails_with_policy_fail_before_the_swap(pg_server, copy_db):
    db = copy_db
    _drop_child_fk(pg_server, db)
    writer = OrphanWriter(pg_server, db)
    writer.start()
    result = run_module("pgsafe_column_types", _args(pg_server, db))
    writer.join()
    assert writer.errors == [] and writer.stop.is_set()
    assert result.get("failed") and "orphan_policy is fail" in result["msg"], result.get("msg")
    assert column_types(pg_server, db, CHILD)["export_id"] == "text"
    assert column_types(pg_server, db, PARENT)["id"] == "text"
    assert _leftovers(pg_server, db) == []
    assert pg_server.execute(db, f"SELECT count(*) FROM \"{CHILD}\" WHERE event = 'orphan'")[0][0] == 1


def test_orphans_are_quarantined_after_the_tables_are_prepared_and_one_written_after_the_scan_by_the_validation(
        pg_server, copy_db):
    """The orphan scan runs while tables are still prepared; the rows are moved once all are; an orphan written
    after that move (here by a trigger on the quarantine itself, once) is found by the VALIDATE after the swap."""
    from ansible.module_utils.pgsafe_connection import connect
    from ansible.module_utils.pgsafe_meta import ensure_meta_schema
    db = copy_db
    _drop_child_fk(pg_server, db)
    early, late = str(uuid.uuid4()), str(uuid.uuid4())
    pg_server.execute(db, f'INSERT INTO "{CHILD}" (export_id, event) VALUES (%s, %s)', (early, "orphan"))
    conn = connect(pg_server.module_params(db))
    try:
        with conn.cursor() as cur:
            ensure_meta_schema(cur)
        conn.commit()
    finally:
        conn.close()
    pg_server.execute(db, f'''CREATE TABLE cs_late (done bool);
        CREATE FUNCTION cs_late_orphan() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM cs_late) THEN INSERT INTO cs_late VALUES (true);
            INSERT INTO "{CHILD}" (export_id, event) VALUES ('{late}', 'late orphan'); END IF; RETURN NULL; END $$;
        CREATE TRIGGER cs_late AFTER INSERT ON pgsafe.quarantine_row FOR EACH STATEMENT EXECUTE FUNCTION cs_late_orphan()''')
    result = run_module("pgsafe_column_types", _args(pg_server, db, orphan_policy="quarantine"))
    assert not result.get("failed"), result.get("msg")
    assert result["plan"]["methods"][f'"public"."{CHILD}"']["method"] == "copy and swap"
    assert pg_server.execute(db, "SELECT count(*) FROM cs_late")[0][0] == 1  # the late orphan was written
    assert any(e.startswith("orphan scan") for e in result["events"]), result["events"]
    assert any("found rows inserted after the scan" in e for e in result["events"]), result["events"]
    moved = pg_server.execute(db, "SELECT row_data->>'export_id' FROM pgsafe.quarantine_row WHERE source_table = %s "
                                  "ORDER BY 1", (CHILD,))
    assert sorted(r[0] for r in moved) == sorted([early, late])
    assert pg_server.execute(db, f'SELECT count(*) FROM "{CHILD}" WHERE export_id IN (%s, %s)', (early, late))[0][0] == 0
    assert column_types(pg_server, db, CHILD)["export_id"] == "uuid"
    assert pg_server.execute(db, "SELECT count(*) FROM pg_constraint WHERE NOT convalidated")[0][0] == 0


def test_a_table_with_a_column_type_without_a_hash_function_is_verified_by_its_text_form(pg_server, copy_db):
    """The verification hashes rows by their columns' hash functions; json has none: that table's verification falls
    back to the rows' text form (and still converges), the others keep the cheaper hash."""
    db = copy_db
    pg_server.execute(db, f'ALTER TABLE "{PARENT}" ADD COLUMN meta json DEFAULT \'{{"k": 1}}\'')
    result = run_module("pgsafe_column_types", _args(pg_server, db, batch_size=500))
    assert not result.get("failed"), result.get("msg")
    verified = [a["step"] for a in result["attempts"] if a["step"].startswith("verify the copy of")]
    assert f'verify the copy of "public"."{PARENT}" (text form)' in verified, verified
    assert f'verify the copy of "public"."{CHILD}"' in verified, verified
    assert column_types(pg_server, db, PARENT)["id"] == "uuid"
    assert pg_server.execute(db, f'SELECT count(*), count(meta) FROM "{PARENT}"')[0] == (20000, 20000)


def test_an_original_left_by_a_run_stopped_after_its_swap_is_named_in_the_next_plan_with_how_to_drop_it(
        pg_server, copy_db):
    """The swap comments the original table (renamed) until it is dropped after the FKs validate: a completed run
    leaves none; one a run left (stopped after the swap) is named in the next plan's hazards with the DROP."""
    db = copy_db
    done = run_module("pgsafe_column_types", _args(pg_server, db, run_id="swapped"))
    assert not done.get("failed"), done.get("msg")
    assert pg_server.execute(db, "SELECT count(*) FROM pg_description WHERE description LIKE 'pgsafe: the original%'") \
        == [(0,)]
    assert pg_server.execute(db, f"""SELECT obj_description('"{PARENT}"'::regclass, 'pg_class')""") == \
        [("exports of the app",)]
    # what a run stopped between its swap and the drop leaves (its comment written by the same code path)
    from ansible.module_utils.pgsafe_typechange_copy import ORIGINAL_COMMENT
    pg_server.execute(db, 'CREATE TABLE "cs_exports_pgsafe_old1" (id text)')
    pg_server.execute(db, 'COMMENT ON TABLE "cs_exports_pgsafe_old1" IS %s',
                      (ORIGINAL_COMMENT.format(f'"public"."{PARENT}"', "stopped-run"),))
    plan = run_module("pgsafe_column_types", _args(pg_server, db, run_id="next"), check=True)
    assert not plan.get("failed"), plan.get("msg")
    hazards = [h for h in plan["hazards"] if "cs_exports_pgsafe_old1" in h]
    assert hazards and "copy and swap of run stopped-run" in hazards[0], plan["hazards"]
    assert 'DROP TABLE "public"."cs_exports_pgsafe_old1";' in hazards[0]
    assert pg_server.execute(db, "SELECT count(*) FROM cs_exports_pgsafe_old1") == [(0,)]  # reported, never dropped
