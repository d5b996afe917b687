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
