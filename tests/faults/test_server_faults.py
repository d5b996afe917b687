"""The database server stops in the middle of the prod playbook's schema fix (pg_ctl stop -m fast on a
dedicated cluster), then comes back: the run failed with a clear error, the server rolled the open
transaction back, nothing is lost, and the re-run converges."""
from __future__ import annotations

import contextlib
import os

import pytest

from tests import pg
from tests.faults import faultlib as fl
from tests.faults.test_playbook_faults import LockHolder, last_started_phase, pgsafe_waiting_on_lock

# Whole playbook runs per case: part of `make faults`, not of `make test` (CI time).
pytestmark = pytest.mark.slow

# Its own cluster (stopped and started by the cases); 55445 is outside Molecule's 55460-55479.
STOP_CLUSTER = ("faults_stop", int(os.environ.get("PGSAFE_PORT_FAULTS_STOP", "55445")))


@pytest.fixture(scope="module")
def stop_server():
    server = pg.start_server(STOP_CLUSTER)
    yield server
    pg.pgclusters.stop(*STOP_CLUSTER)


def test_server_stopped_mid_schema_fix_then_started_and_rerun_converges(stop_server, pg_server, tmp_path, rows_lost):
    with stop_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        env = fl.Env(tmp_path, {"prod": (stop_server, prod), "staging": (pg_server, staging)})
        before = fl.fingerprint(stop_server, prod)
        extra = {**fl.NO_REHEARSAL, "confirm_database": prod}
        proc = env.start("sprint90_prod.yml", extra)
        holder = None
        try:
            fl.wait_for(lambda: "Start phase schema_fix]" in proc.out_path.read_text(), timeout=400, proc=proc)
            holder = LockHolder(stop_server, prod, fl.ANALYTICS).__enter__()  # keeps the ALTER in flight
            fl.wait_for(lambda: pgsafe_waiting_on_lock(stop_server, prod), timeout=120, proc=proc)
            pg.pgclusters.stop(*STOP_CLUSTER)  # pg_ctl stop -m fast: every session is cut
            proc.wait(timeout=300)
        finally:
            if holder is not None:
                with contextlib.suppress(Exception):  # its connection died with the server
                    holder.__exit__()
            if proc.poll() is None:
                fl.kill_group(proc)
            pg.start_server(STOP_CLUSTER)
        out = fl.flat(proc.out_path.read_text())
        assert proc.returncode != 0
        assert last_started_phase(proc.out_path.read_text()) == "schema_fix"
        assert "failed in phase schema_fix" in out, out[-3000:]
        assert ("terminat" in out or "connection" in out or "shut" in out), out[-3000:]
        assert fl.column_type(stop_server, prod, fl.EXPORTS, "id") == "text"  # rolled back by the server
        assert fl.column_type(stop_server, prod, fl.ANALYTICS, "export_id") == "text"
        assert fl.fingerprint(stop_server, prod) == before
        rerun = env.run("sprint90_prod.yml", extra)
        assert rerun.returncode == 0, rerun.flat[-4000:]
        assert fl.column_type(stop_server, prod, fl.EXPORTS, "id") == "uuid"
        lost = fl.rows_lost_between(before, stop_server, prod)
        rows_lost(lost)
        assert lost == 0
