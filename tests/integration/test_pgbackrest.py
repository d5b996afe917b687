"""pgBackRest as the backup engine, on a real cluster that archives its WAL (tests/pgbackrest_support.py).

- The backup role with backup_engine=pgbackrest writes pgbackrest.conf and archive_command itself, creates the
  stanza, takes a full then an incremental backup, verifies the repository, restore-tests the backup in a scratch
  cluster and records both in pgsafe.backup with their PITR target.
- The guard accepts the verified physical backup plus targeted logical dumps of the touched tables (no full dump),
  and refuses the tables without their targeted dump.
- A repository with a truncated file is refused by the guard, naming the file and the fix, and a prod run on it
  stops before its first change (every table as before).
"""
from __future__ import annotations

import json
import re
import shutil
import uuid

import pytest

from tests import pgbackrest_support as ps
from tests.cleanup_helpers import all_table_hashes
from tests.faults import faultlib as fl

TABLES = [fl.EXPORTS, fl.ANALYTICS]


@pytest.fixture
def world(pgbr_server, scratch_server, tmp_path):
    """A Sprint 90 prod database on the archiving cluster, and a stanza + repository of this test's own."""
    base = ps.datadir("pgbackrest-tests") / uuid.uuid4().hex[:8]
    with pgbr_server.sprint90_database("prod") as db:
        env = fl.Env(tmp_path, {"prod": (pgbr_server, db), "staging": (scratch_server, "postgres")})
        env.engine = ps.engine_vars(base, "pgbr", ps.RESTORE_TEST_PORT)
        env.db = db
        try:
            yield env
        finally:
            ps.stop_datadir(base / "restore-test" / "pgbr")
            shutil.rmtree(base, ignore_errors=True)


def physical_records(server, db):
    return server.execute(db, "SELECT backup_id, verified, restore_tested, details FROM pgsafe.backup "
                              "WHERE details ->> 'engine' = 'pgbackrest' ORDER BY taken_at")


def backup(env, **extra):
    result = env.run("backup.yml", dict(env.engine, backup_hosts="prod", **extra), timeout=1200)
    assert result.returncode == 0, result.stdout[-5000:]
    return result


def guard(env, covers, **extra):
    return env.run("../tests/playbooks/backup_guard.yml",
                   dict(env.engine, backup_guard_covers=covers, backup_guard_max_age_minutes=60, **extra), timeout=1200)


@pytest.mark.slow
def test_pgbackrest_full_then_incremental_backups_are_verified_restore_tested_and_recorded(pgbr_server, world):
    backup(world)
    backup(world)
    rows = physical_records(pgbr_server, world.db)
    assert [r[3]["pgbackrest"]["type"] for r in rows] == ["full", "incr"]
    for backup_id, verified, restore_tested, details in rows:
        info = details["pgbackrest"]
        assert verified and restore_tested, backup_id
        assert info["verify"]["status"] == "ok" and info["restore_test"]["tables"] >= 20
        assert ps.lsn_at_or_after(info["pitr_target"]["lsn"], info["lsn_stop"])
    assert rows[1][3]["pgbackrest"]["prior"] == rows[0][3]["pgbackrest"]["label"]
    config = world.engine["backup_pgbackrest_dir"] + "/pgbr/pgbackrest.conf"
    assert "Written by pgsafe" in open(config).read()
    assert pgbr_server.execute("postgres", "SHOW archive_command")[0][0].startswith(f"pgbackrest --config={config} ")


@pytest.mark.slow
def test_pgbackrest_guard_accepts_the_physical_backup_plus_targeted_dumps_and_nothing_less(pgbr_server, world):
    backup(world)
    without = guard(world, TABLES)  # no targeted dump of the tables yet: refused
    assert without.returncode != 0 and "NO VERIFIED BACKUP" in without.flat, without.stdout[-3000:]
    backup(world, backup_scope="objects", backup_objects=TABLES)
    accepted = guard(world, TABLES)
    assert accepted.returncode == 0, accepted.stdout[-4000:]
    guarded_by, pitr = re.search(r"GUARD backup_id=(\S*) pitr=(\{[^}]*\})", accepted.flat).groups()
    pitr = json.loads(pitr)
    assert pitr["backup_id"].startswith("pgbackrest-pgbr-") and pitr["verified_now"] == "ok" and pitr["lsn"]
    assert guarded_by and not guarded_by.startswith("pgbackrest-")  # the targeted dump guards the tables
    assert not pgbr_server.execute(world.db, "SELECT 1 FROM pgsafe.backup WHERE kind = 'database' "
                                             "AND coalesce(details ->> 'engine', 'pg_dump') = 'pg_dump'")


@pytest.mark.slow
def test_pgbackrest_damaged_repository_is_refused_by_the_guard_naming_the_file(pgbr_server, world):
    backup(world)
    backup(world, backup_scope="objects", backup_objects=TABLES)
    damaged = ps.truncate_a_backup_file(world.engine["backup_pgbackrest_dir"] + "/pgbr/repo")
    refused = guard(world, TABLES)
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert "PGBACKREST REPOSITORY DAMAGED" in refused.flat and damaged in refused.flat
    assert "take a new full backup" in refused.flat and "backup_pgbackrest_type=full" in refused.flat
    # a whole prod run on the damaged repository stops before its first change, naming the file
    before = all_table_hashes(pgbr_server, world.db)
    run = world.run("sprint90_prod.yml", {**world.engine, **fl.NO_REHEARSAL, "confirm_database": world.db}, timeout=1800)
    assert run.returncode != 0 and "PGBACKREST REPOSITORY DAMAGED" in run.flat and damaged in run.flat
    assert fl.column_type(pgbr_server, world.db, fl.EXPORTS, "id") == "text"
    assert all_table_hashes(pgbr_server, world.db) == before
