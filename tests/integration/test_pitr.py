"""The way back from a run guarded by pgBackRest: point-in-time recovery to just before it (docs/pitr.md).

A prod run (sprint90_prod.yml, backup_engine=pgbackrest) on a cluster that archives its WAL changes the exports'
id to uuid, guarded by the verified physical backup plus targeted dumps (no full dump). playbooks/restore_pitr.yml
then recovers the run's backup to its recorded PITR target into a local cluster: every table there equals its
pre-run fingerprint (the playbook's comparison, and this test's own hashes taken before the run).
"""
from __future__ import annotations

import shutil
import uuid

import pytest

from tests import pgbackrest_support as ps
from tests.cleanup_helpers import all_table_hashes
from tests.faults import faultlib as fl
from tests.pg import Server



@pytest.mark.slow
def test_pitr_to_before_a_pgbackrest_guarded_prod_run_leaves_every_table_equal_to_its_pre_run_fingerprint(
        pgbr_server, scratch_server, tmp_path):
    server = pgbr_server
    base = ps.datadir("pgbackrest-tests") / uuid.uuid4().hex[:8]
    recovered = ps.datadir("pgbr-pitr-" + uuid.uuid4().hex[:8])
    engine = ps.engine_vars(base, "pgbr", ps.RESTORE_TEST_PORT)
    with server.sprint90_database("prod") as db:
        env = fl.Env(tmp_path, {"prod": (server, db), "staging": (scratch_server, "postgres")})
        try:
            before = all_table_hashes(server, db)
            run = env.run("sprint90_prod.yml", {**engine, **fl.NO_REHEARSAL, "confirm_database": db}, timeout=1800)
            assert run.returncode == 0, run.stdout[-6000:]
            assert fl.column_type(server, db, fl.EXPORTS, "id") == "uuid"  # the run changed prod
            assert all_table_hashes(server, db) != before
            # guarded without a full dump: one physical backup, logical dumps only of the touched tables
            kinds = server.execute(db, "SELECT coalesce(details ->> 'engine', 'pg_dump'), kind FROM pgsafe.backup")
            assert ("pgbackrest", "database") in kinds and ("pg_dump", "database") not in kinds
            assert ("pg_dump", "objects") in kinds
            run_id = server.execute(db, "SELECT run_id FROM pgsafe.run WHERE playbook = 'sprint90_prod' "
                                        "ORDER BY started_at DESC LIMIT 1")[0][0]
            back = env.run("restore_pitr.yml", {**engine, "pitr_host": "prod", "pitr_run_id": run_id,
                                                "pitr_data_dir": str(recovered), "pitr_port": ps.PITR_PORT}, timeout=1200)
            assert back.returncode == 0, back.stdout[-6000:]
            assert "PITR OK" in back.flat and "equal to their pre-run fingerprint" in back.flat
            copy = Server(dict(server.libpq, port=ps.PITR_PORT))
            assert all_table_hashes(copy, db) == before
            assert fl.column_type(copy, db, fl.EXPORTS, "id") == "text"
        finally:
            ps.stop_datadir(recovered)
            ps.stop_datadir(base / "restore-test" / "pgbr")
            shutil.rmtree(recovered, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
