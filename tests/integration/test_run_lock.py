"""One writing run at a time per database: the run lock, its holder, and what a refused run is told."""
from __future__ import annotations

import subprocess
import time

from ansible.module_utils.pgsafe_run_lock import acquire, describe_holder, refusal_message, release


def wait_until(predicate, seconds=15.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def holder(pg_server, db):
    conn = pg_server.connect(db)
    try:
        with conn.cursor() as cur:
            return describe_holder(cur)
    finally:
        conn.close()


def test_second_run_is_refused_naming_the_first_and_the_lock_goes_with_its_controller(pg_server):
    db = pg_server.create_database()
    dsn = dict(pg_server.libpq, dbname=db)
    controller = subprocess.Popen(["sleep", "600"])  # stands for the first run's ansible-playbook
    try:
        first = acquire(dsn, "run-one", controller=controller.pid, poll_seconds=0.2)
        assert first["taken"] and first["pid"] > 0
        found = holder(pg_server, db)
        assert found["run_id"] == "run-one" and found["pid"] == first["backend_pid"]
        second = acquire(dsn, "run-two", poll_seconds=0.2)
        assert second["taken"] is False
        message = refusal_message(db, found)
        assert "being changed by run run-one" in message and "Nothing was changed" in message
        # another database on the same server is free: the lock is per database
        other = pg_server.create_database()
        try:
            third = acquire(dict(pg_server.libpq, dbname=other), "run-three", poll_seconds=0.2)
            assert third["taken"]
            release(third["pid"])
        finally:
            assert wait_until(lambda: holder(pg_server, other) is None)
            pg_server.drop_database(other)
        controller.kill()  # the first run's controller dies: its holder's session, and the lock, go
        controller.wait()
        again = acquire(dsn, "run-two")  # at once, as a re-run would: it waits out the holder's last poll
        assert again["taken"]
        assert release(again["pid"])
        assert wait_until(lambda: holder(pg_server, db) is None)
    finally:
        controller.kill()
        pg_server.drop_database(db)


def test_overlapping_writing_run_is_refused_at_preflight_and_changes_nothing(pg_server, tmp_path):
    from tests import pg

    with pg_server.sprint90_database("dev") as dev:
        inventory = pg.write_inventory(tmp_path / "inv", {"dev": (pg_server, dev)}, shipped_plans=True)
        controller = subprocess.Popen(["sleep", "600"])
        first = acquire(dict(pg_server.libpq, dbname=dev), "20261205T000000Z-first", controller=controller.pid)
        try:
            assert first["taken"]
            result = pg.run_playbook("sprint90_dev.yml", inventory=str(inventory),
                                     env={"PGSAFE_ARTIFACTS_ROOT": str(tmp_path / "artifacts")})
            out = " ".join((result.stdout + result.stderr).split())
            assert result.returncode != 0
            assert "is being changed by run 20261205T000000Z-first" in out, out[-3000:]
            assert "failed in phase preflight" in out, out[-3000:]
            assert pg_server.execute(dev, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid "
                                          "= '\"bazaar-vid_export_analytics\"'::regclass AND attname = 'export_id'"
                                     ) == [("text",)]
            # not even a backup or a journal entry (the refused run's own run record aside)
            assert pg_server.execute(dev, "SELECT (SELECT count(*) FROM pgsafe.backup) + "
                                          "(SELECT count(*) FROM pgsafe.journal)") == [(0,)]
        finally:
            controller.kill()
            controller.wait()
            assert wait_until(lambda: holder(pg_server, dev) is None)


def test_preflight_takes_the_lock_and_records_the_run_only_once_its_checks_pass(pg_server):
    from tests.module_runs import run_module

    db = pg_server.create_database()
    params = dict(pg_server.module_params(db), run_id="pf-run-1", run_lock=True,
                  record_run={"playbook": "cleanup", "environment": "dev", "operator": "alice", "awx_job_id": "42"})
    taken = None
    try:
        planned = run_module("pgsafe_preflight", params, check=True)  # check mode: neither lock nor record
        assert planned["rc"] == 0 and planned["run_lock"] == {} and planned["run_recorded"] is False, planned
        assert holder(pg_server, db) is None
        assert pg_server.execute(db, "SELECT to_regclass('pgsafe.run') IS NULL") == [(True,)]

        refused = run_module("pgsafe_preflight", dict(params, tables=["public.nope"]))  # a problem: nothing taken
        assert refused["failed"] and "does not exist" in refused["msg"]
        assert holder(pg_server, db) is None
        assert pg_server.execute(db, "SELECT to_regclass('pgsafe.run') IS NULL") == [(True,)]

        taken = run_module("pgsafe_preflight", params)
        assert taken["rc"] == 0 and taken["run_recorded"] and taken["meta_schema_created"], taken
        found = holder(pg_server, db)
        assert found["run_id"] == "pf-run-1" and found["pid"] == taken["run_lock"]["backend_pid"]
        assert found["playbook"] == "cleanup" and found["operator"] == "alice"  # from the run record just made
        assert pg_server.execute(db, "SELECT playbook, environment, operator, awx_job_id, status FROM pgsafe.run "
                                     "WHERE run_id = 'pf-run-1'") == [("cleanup", "dev", "alice", "42", "running")]

        second = run_module("pgsafe_preflight", dict(params, run_id="pf-run-2"))  # the lock is held: refused
        assert second["failed"] and "being changed by run pf-run-1" in second["msg"], second
        assert pg_server.execute(db, "SELECT count(*) FROM pgsafe.run WHERE run_id = 'pf-run-2'") == [(0,)]
    finally:
        if taken and taken.get("run_lock"):
            release(taken["run_lock"]["holder_pid"])
        assert wait_until(lambda: holder(pg_server, db) is None)
        pg_server.drop_database(db)


def test_preflight_lets_go_of_the_lock_when_the_run_cannot_be_recorded(pg_server):
    from tests.module_runs import run_module

    db = pg_server.create_database()
    pg_server.execute(db, "DROP ROLE IF EXISTS pgsafe_t_nocreate; CREATE ROLE pgsafe_t_nocreate LOGIN PASSWORD %s",
                      (pg_server.libpq["password"],))
    try:
        pg_server.execute(db, f'REVOKE CREATE ON DATABASE "{db}" FROM PUBLIC')
        params = dict(pg_server.module_params(db), login_user="pgsafe_t_nocreate", run_id="pf-norecord",
                      run_lock=True, record_run={"playbook": "cleanup", "environment": "dev"})
        failed = run_module("pgsafe_preflight", params)
        assert failed["failed"] and "cannot install the product schema pgsafe" in failed["msg"], failed
        assert wait_until(lambda: holder(pg_server, db) is None, seconds=5)  # the lock went with the failure
        unlocked = run_module("pgsafe_preflight", dict(params, record_run=None))  # the next run is not refused
        assert unlocked["rc"] == 0 and unlocked["run_lock"]["holder_pid"] > 0, unlocked
        release(unlocked["run_lock"]["holder_pid"])
        assert wait_until(lambda: holder(pg_server, db) is None)
    finally:
        pg_server.drop_database(db)
        pg_server.execute("postgres", "DROP ROLE pgsafe_t_nocreate")


def test_the_runs_end_reads_its_journal_records_the_report_with_it_and_lets_go_of_the_lock(pg_server):
    from tests.module_runs import run_module

    db = pg_server.create_database()
    params = pg_server.module_params(db)
    lock = None
    try:
        started = run_module("pgsafe_preflight", dict(params, run_id="end-1", run_lock=True,
                                                      record_run={"playbook": "cleanup", "environment": "dev"}))
        lock = started["run_lock"]
        assert lock["holder_pid"] > 0 and holder(pg_server, db)["run_id"] == "end-1"
        pg_server.execute(db, "INSERT INTO pgsafe.journal (run_id, step, object, status, details, rollback_sql) "
                              "VALUES ('end-1', 'table_retire', 'public.a', 'completed', '{\"rows\": 0}', 'SELECT 1'), "
                              "('other', 'table_retire', 'public.x', 'completed', '{}', NULL), "
                              "('end-1', 'schema_removal', 'auth', 'completed', '{}', NULL)")
        end = dict(params, run_id="end-1", state="succeeded", journal=True, release_run_lock=lock["holder_pid"],
                   details={"report_document": {"run_id": "end-1", "status": "succeeded"}, "plan_fingerprint": "f"})
        planned = run_module("pgsafe_run", end, check=True)  # check mode: the journal, nothing written or released
        assert [r["object"] for r in planned["journal"]] == ["public.a", "auth"], planned
        assert holder(pg_server, db)["run_id"] == "end-1"
        assert pg_server.execute(db, "SELECT status FROM pgsafe.run WHERE run_id = 'end-1'") == [("running",)]

        closed = run_module("pgsafe_run", end)
        assert closed["rc"] == 0 and closed["run_lock_released"] is True, closed
        journal = closed["journal"]
        assert [(r["step"], r["object"], r["details"], r["rollback_sql"]) for r in journal] == [
            ("table_retire", "public.a", {"rows": 0}, "SELECT 1"), ("schema_removal", "auth", {}, None)]
        assert all(isinstance(r["at"], str) for r in journal)
        assert wait_until(lambda: holder(pg_server, db) is None, seconds=5)
        lock = None
        recorded = pg_server.execute(db, "SELECT status, details -> 'report_document', details ->> 'plan_fingerprint' "
                                         "FROM pgsafe.run WHERE run_id = 'end-1'")
        assert recorded == [("succeeded", {"run_id": "end-1", "status": "succeeded", "journal": journal}, "f")]

        wrong = run_module("pgsafe_run", dict(params, run_id="end-2", playbook="p", environment="e", journal=True))
        assert wrong["failed"] and "with state succeeded or failed" in wrong["msg"]
    finally:
        if lock:
            release(lock["holder_pid"])
        assert wait_until(lambda: holder(pg_server, db) is None)
        pg_server.drop_database(db)
