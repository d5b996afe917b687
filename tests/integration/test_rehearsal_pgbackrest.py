"""The rehearsal's copy from prod's pgBackRest backup (docs/pitr.md, Rehearsals; roles/rehearsal, pgbackrest.yml).

prod is a Sprint 90 database on a cluster that archives its WAL (tests/pgbackrest_support.py), with
backup_engine=pgbackrest; staging is a separate local cluster of its own (its whole content is replaced).
sprint90_rehearsal.yml backs prod up physically, takes a consistency point on prod, delta-restores staging's
cluster to it, compares every table with prod at that point, rehearses the plan there and attests it in prod.

- The copy is a delta restore (pgbackrest's own log says --delta into staging's data directory), every table
  was compared and equal, recorded as the backup's restore test in prod and as staging's own backup; prod's gate
  then accepts the rehearsed plan: the prod run applies it.
- Writes committed on prod all through the rehearsal (before and after the consistency point) are no false
  mismatch: the copy holds exactly the rows committed before the point (fewer than prod at the end, more than
  at the start), and the comparison at the point passed.
- A staging inventory without its data directory, or naming prod's, is refused before staging is touched.
- The comparison catches a real difference: an unlogged table's rows (in no WAL, no physical backup) are missing
  from the copy, and the rehearsal fails naming the table and the fix, attesting and recording nothing.
"""
from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests import pg
from tests import pgbackrest_support as ps
from tests.faults import faultlib as fl

METRIC = '"bazaar-vid_metric"'  # a table no step of the plan touches


@pytest.fixture(scope="session")
def staging_server():
    """staging: a local cluster of its own, delta-restored as a whole by the rehearsal."""
    return pg.start_server(("pgbr-staging", ps.STAGING_PORT))


@pytest.fixture
def world(pgbr_server, staging_server, tmp_path):
    base = ps.datadir("pgbackrest-tests") / uuid.uuid4().hex[:8]
    with pgbr_server.sprint90_database("prod") as db:
        if not staging_server.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (db,)):
            staging_server.create_database(db)  # staging's preflight connects to it before the copy
        env = fl.Env(tmp_path, {"prod": (pgbr_server, db), "staging": (staging_server, db)})
        env.db = db
        env.staging_dir = ps.datadir("pgbr-staging")
        env.engine = dict(ps.engine_vars(base, "pgbr", ps.RESTORE_TEST_PORT),
                          rehearsal_pgbackrest_data_dir=str(env.staging_dir))
        try:
            yield env
        finally:
            ps.stop_datadir(base / "restore-test" / "pgbr")
            shutil.rmtree(base, ignore_errors=True)
            staging_server.drop_database(db)


def rehearse(env, **extra):
    return env.run("sprint90_rehearsal.yml", {**env.engine, **extra}, timeout=2400)


def restore_log(env) -> str:
    return (Path(env.engine["backup_pgbackrest_dir"]) / "pgbr" / "log" / "pgbr-restore.log").read_text()


def copy_report(env) -> dict:
    return fl.latest_report(env, "staging", "sprint90_rehearsal")["sections"]


@pytest.mark.slow
def test_rehearsal_copies_staging_from_the_pgbackrest_backup_by_delta_restore_and_compares_every_table(
        pgbr_server, staging_server, world):
    run = rehearse(world)
    assert run.returncode == 0, run.stdout[-8000:]
    # staging's own cluster was delta-restored from prod's pgBackRest backup to a consistency point of prod
    log = restore_log(world)
    begin = [line for line in log.splitlines() if "restore command begin" in line][-1]
    assert "--delta" in begin and f"--pg1-path={world.staging_dir}" in begin and "--type=lsn" in begin, begin
    assert staging_server.execute("postgres", "SHOW data_directory")[0][0] == str(world.staging_dir)
    system = "SELECT system_identifier FROM pg_control_system()"
    assert staging_server.execute("postgres", system) == pgbr_server.execute("postgres", system)
    # every table compared and equal, recorded as the physical backup's restore test in prod
    backup_id, tested, test = pgbr_server.execute(
        world.db, "SELECT backup_id, restore_tested, details->'verification'->'restore_test' FROM pgsafe.backup "
                  "WHERE details->>'engine' = 'pgbackrest' ORDER BY taken_at DESC LIMIT 1")[0]
    assert tested and test["status"] == "ok" and test["delta"] is True and test["problems"] == []
    assert test["tables_compared"] >= 20, test
    point = test["point"]["lsn"]
    sections = copy_report(world)
    assert "Delta-restored pgBackRest backup" in sections["rehearsal"]["summary"]
    assert point in sections["rehearsal"]["summary"]
    # the copy's own backup: that backup restored to the point, a restored copy in staging's pgsafe.backup
    own = staging_server.execute(world.db, "SELECT verified, restore_tested, details->'pgbackrest'->'pitr_target'->>'lsn',"
                                           " details ? 'restored_copy' FROM pgsafe.backup WHERE backup_id = %s",
                                 (backup_id,))
    assert own == [(True, True, point, True)], own
    # the plan ran on the copy, and the attestation is in prod's product schema
    assert fl.column_type(staging_server, world.db, fl.EXPORTS, "id") == "uuid"
    assert fl.column_type(pgbr_server, world.db, fl.EXPORTS, "id") == "text"
    assert pgbr_server.execute(world.db, "SELECT result, environment FROM pgsafe.attestation") == [("passed", "staging")]
    # prod's gate accepts the rehearsed plan: the prod run applies it (no override)
    prod = world.run("sprint90_prod.yml", {**world.engine, "confirm_database": world.db}, timeout=2400)
    assert prod.returncode == 0, prod.stdout[-6000:]
    assert fl.column_type(pgbr_server, world.db, fl.EXPORTS, "id") == "uuid"


class Writer(threading.Thread):
    """Commits one row into prod's metric table every 20 ms until stopped (each INSERT its own transaction)."""

    def __init__(self, server, db):
        super().__init__(daemon=True)
        self.server, self.db, self.stop, self.committed, self.error = server, db, threading.Event(), 0, None

    def run(self):
        conn = self.server.connect(self.db)
        try:
            with conn.cursor() as cur:
                while not self.stop.is_set():
                    cur.execute(f"INSERT INTO {METRIC} (name, value) VALUES ('pgsafe-test-write', %s)",
                                (self.committed,))
                    self.committed += 1
                    time.sleep(0.02)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            conn.close()


def writes(server, db):
    return server.execute(db, f"SELECT count(*) FROM {METRIC} WHERE name = 'pgsafe-test-write'")[0][0]


@pytest.mark.slow
def test_rehearsal_pgbackrest_copy_under_live_writes_equals_prod_exactly_at_the_consistency_point(
        pgbr_server, staging_server, world):
    writer = Writer(pgbr_server, world.db)
    writer.start()
    try:
        run = rehearse(world)
        time.sleep(1)
    finally:
        writer.stop.set()
        writer.join()
    assert writer.error is None, writer.error
    assert run.returncode == 0, run.stdout[-8000:]
    test = pgbr_server.execute(world.db, "SELECT details->'verification'->'restore_test' FROM pgsafe.backup WHERE "
                                         "details->>'engine' = 'pgbackrest' ORDER BY taken_at DESC LIMIT 1")[0][0]
    assert test["status"] == "ok" and test["problems"] == [] and test["point"]["lock_seconds"] < 5, test
    # the copy stopped in the middle of the write stream: rows committed before the point, none after
    copied, final = writes(staging_server, world.db), writes(pgbr_server, world.db)
    assert 0 < copied < final == writer.committed, (copied, final, writer.committed)
    # ... a prefix of the stream (one connection commits them in order): the first `copied` rows, no gap
    assert staging_server.execute(world.db, f"SELECT max(value)::int FROM {METRIC} WHERE name = 'pgsafe-test-write'"
                                  )[0][0] == copied - 1


@pytest.mark.slow
def test_rehearsal_pgbackrest_refuses_a_staging_data_dir_unnamed_or_the_sources_and_changes_nothing(
        pgbr_server, staging_server, world):
    marker = uuid.uuid4().hex
    staging_server.execute(world.db, "CREATE TABLE IF NOT EXISTS pgsafe_test_marker (v text)")
    staging_server.execute(world.db, "INSERT INTO pgsafe_test_marker VALUES (%s)", (marker,))
    unnamed = rehearse(world, rehearsal_pgbackrest_data_dir="")
    assert unnamed.returncode != 0 and "does not name that cluster's data directory" in unnamed.flat, \
        unnamed.stdout[-4000:]
    source_dir = pgbr_server.execute("postgres", "SHOW data_directory")[0][0]
    theirs = rehearse(world, rehearsal_pgbackrest_data_dir=source_dir)
    assert theirs.returncode != 0 and "is the data directory of the SOURCE" in theirs.flat, theirs.stdout[-4000:]
    assert staging_server.execute(world.db, "SELECT v FROM pgsafe_test_marker") == [(marker,)]
    assert fl.column_type(pgbr_server, world.db, fl.EXPORTS, "id") == "text"
    assert json.dumps(pgbr_server.execute(world.db, "SELECT count(*) FROM pgsafe.attestation")) == "[[0]]"


@pytest.mark.slow
def test_rehearsal_pgbackrest_comparison_catches_a_real_difference_an_unlogged_tables_rows_and_attests_nothing(
        pgbr_server, staging_server, world):
    # An unlogged table's rows are in no WAL and no physical backup: the delta-restored copy has it empty.
    pgbr_server.execute(world.db, 'CREATE UNLOGGED TABLE "pgsafe-test_unloggedCache" ("cacheKey" text PRIMARY KEY)')
    pgbr_server.execute(world.db, 'INSERT INTO "pgsafe-test_unloggedCache" SELECT g::text FROM generate_series(1, 7) g')
    run = rehearse(world)
    assert run.returncode != 0, run.stdout[-4000:]
    assert "REHEARSAL COPY DIFFERS" in run.flat and "pgsafe-test_unloggedCache: 0 rows restored, 7 at backup time" \
        in run.flat, run.stdout[-6000:]
    assert "is UNLOGGED" in run.flat and "SET LOGGED" in run.flat
    # the copy really was made and really differs (the comparison did not pass it), and nothing was recorded
    assert staging_server.execute(world.db, 'SELECT count(*) FROM "pgsafe-test_unloggedCache"') == [(0,)]
    if pgbr_server.execute(world.db, "SELECT to_regclass('pgsafe.attestation')")[0][0]:
        assert pgbr_server.execute(world.db, "SELECT count(*) FROM pgsafe.attestation WHERE result = 'passed'") \
            == [(0,)]
    tested = pgbr_server.execute(world.db, "SELECT details->'verification'->'restore_test' FROM pgsafe.backup "
                                           "WHERE details->>'engine' = 'pgbackrest'")
    assert tested and not any((t[0] or {}).get("status") for t in tested), tested  # no restore test recorded
    assert fl.column_type(pgbr_server, world.db, fl.EXPORTS, "id") == "text"
