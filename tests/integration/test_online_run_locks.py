"""A run under application load: the preflight lets ordinary short transactions through (it names only
lock holders whose transaction is older than a second), and the benchmark's stall measurement
(bench/load.py) sees a writer blocked behind a strong lock, names the blocking statement, and not a stall
where there was none."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psycopg2

from ansible.module_utils.pgsafe_preflight import LOCK_HOLDER_GRACE_SECONDS, inspect_tables

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import load  # noqa: E402

EXPORTS = ("public", "bazaar-vid_exports")
APP = "pgsafe_test_app"


def app_ops():
    return [load.Op("update", True, lambda cur, rng: cur.execute(
                'UPDATE "bazaar-vid_exports" SET download_count = download_count + 1 '
                'WHERE id = (SELECT min(id) FROM "bazaar-vid_exports")')),
            load.Op("read", False, lambda cur, rng: cur.execute('SELECT count(*) FROM "bazaar-vid_user"'))]


def connector(pg_server, db):
    return lambda: psycopg2.connect(**dict(pg_server.libpq, dbname=db, application_name=APP))


def lock_problems(pg_server, db):
    conn = pg_server.connect(db)
    try:
        with conn.cursor() as cur:
            return [p for p in inspect_tables(cur, [EXPORTS], [], {"require_owner": False}, "postgres") if " holds " in p]
    finally:
        conn.close()


def test_preflight_lets_short_application_transactions_through(pg_server, prod_db):
    app = load.AppLoad(connector(pg_server, prod_db), app_ops(), clients=4, pause=0.0).start()
    try:
        time.sleep(0.3)
        seen = [lock_problems(pg_server, prod_db) for _ in range(30)]
    finally:
        app.stop()
    assert sum(1 for r in app.records if r.op == "update" and r.error is None) > 30, "the load did not write"
    assert not any(seen), seen[:3]


def test_preflight_names_a_holder_older_than_the_grace(pg_server, prod_db):
    holder = pg_server.connect(prod_db, autocommit=False)
    pid = holder.get_backend_pid()
    try:
        with holder.cursor() as cur:
            cur.execute('UPDATE "bazaar-vid_exports" SET progress = progress WHERE false')  # ROW EXCLUSIVE, kept
        assert lock_problems(pg_server, prod_db) == []  # just opened: ordinary traffic
        time.sleep(LOCK_HOLDER_GRACE_SECONDS + 0.3)
        problems = lock_problems(pg_server, prod_db)
    finally:
        holder.rollback()
        holder.close()
    assert problems == [f'session {pid} holds RowExclusiveLock on "public"."bazaar-vid_exports": wait for it to '
                        'finish or stop it before the run'], problems


def test_stall_measurement_sees_a_writer_blocked_behind_a_strong_lock(pg_server, prod_db):
    app = load.AppLoad(connector(pg_server, prod_db), app_ops(), clients=3, pause=0.005).start()
    waits = load.LockWaits(lambda: pg_server.connect(prod_db), APP, interval=0.01)
    waits.start()
    try:
        time.sleep(1.0)
        quiet_end = time.time()
        time.sleep(0.5)
        blocker = pg_server.connect(prod_db, autocommit=False)
        with blocker.cursor() as cur:
            asked = time.time()  # writers queue behind the request while it waits for theirs to end
            cur.execute('LOCK TABLE "bazaar-vid_exports" IN ACCESS EXCLUSIVE MODE')
            held_from = time.time()
            time.sleep(0.4)
        blocker.commit()
        held_to = time.time()
        blocker.close()
        time.sleep(0.3)
    finally:
        app.stop()
        waits.stop()
    base = load.baselines(app.records, quiet_end)
    assert set(base) == {"update", "read"}
    quiet = load.window_stats(app.records, base, quiet_end - 0.8, quiet_end)
    blocked = load.window_stats(app.records, base, held_from, held_to)
    assert quiet["max_stall"] < 0.3, quiet
    assert blocked["max_stall"] >= 0.3, blocked
    assert blocked["worst"].op == "update" and blocked["failed"] == 0
    assert any("LOCK TABLE" in q for q in waits.blockers(held_from, held_to)), waits.samples[:5]
    waited = waits.waited(app.records)
    assert any(r is blocked["worst"] for r in waited)  # the stall is known to be a lock wait
    assert all(r.end >= asked for r in waited), "a transaction before the lock counted as waiting"


def test_stall_arithmetic():
    recs = [load.Txn(100.0, 0.004, "w", True), load.Txn(100.0, 0.006, "w", True), load.Txn(100.0, 0.5, "r", False),
            load.Txn(110.0, 0.254, "w", True), load.Txn(111.0, 0.001, "w", True, error="boom")]
    base = load.baselines(recs, 101.0)
    assert base == {"w": 0.005, "r": 0.5}
    s = load.window_stats(recs, base, 110.1, 120.0)
    assert abs(s["max_stall"] - 0.249) < 1e-9 and s["failed"] == 1 and s["errors"] == ["boom"]
    assert load.window_stats(recs, base, 200.0, 201.0)["max_stall"] == 0.0
    assert load.stall(load.Txn(0, 0.001, "w", True), base) == 0.0


def test_appload_counts_an_error_as_a_failed_transaction(pg_server, prod_db):
    ops = [load.Op("bad", True, lambda cur, rng: cur.execute('INSERT INTO "no such table" VALUES (1)'))]
    app = load.AppLoad(connector(pg_server, prod_db), ops, clients=1, pause=0.01).start()
    threading.Event().wait(0.2)
    app.stop()
    assert app.records and all(r.error and "no such table" in r.error for r in app.records)
