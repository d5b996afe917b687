"""The run's records through the modules: pgsafe_run opens and closes a run, pgsafe_rollback undoes it (--check
--diff first), pgsafe_attestation records a result; each returns the statements it ran (queries)."""
from __future__ import annotations

from tests.typefix_support import run_module


def test_a_run_recorded_then_undone_shows_its_undo_first_and_is_marked_rolled_back(pg_server):
    db = pg_server.create_database()
    params = pg_server.module_params(db)
    try:
        nothing = run_module("pgsafe_rollback", dict(params, rollback_run_id="rb-0"))
        assert nothing["changed"] is False and nothing["msg"] == "no pgsafe run recorded: nothing to undo"
        started = run_module("pgsafe_run", dict(params, run_id="r1", playbook="cleanup", environment="dev"))
        assert started["changed"] and started["meta_schema_created"]
        assert any("INSERT INTO pgsafe.run" in q for q in started["queries"])
        pg_server.execute(db, 'CREATE TABLE public."old-t" (id int); ALTER TABLE public."old-t" RENAME TO "new-t"')
        pg_server.execute(db, "INSERT INTO pgsafe.journal (run_id, step, object, status, rollback_sql) VALUES "
                              "('r1', 'table_retire', 'public.old-t', 'completed', "
                              "'ALTER TABLE public.\"new-t\" RENAME TO \"old-t\"')")
        finished = run_module("pgsafe_run", dict(params, run_id="r1", state="succeeded", details={"ok": 1}))
        assert finished["changed"] and not finished["meta_schema_created"]

        planned = run_module("pgsafe_rollback", dict(params, rollback_run_id="rb-1"), check=True, diff=True)
        assert planned["changed"] and planned["run_id"] == "r1"
        assert [a["action"] for a in planned["actions"]] == ["sql"]
        assert planned["diff"]["before"] == "public.old-t (table_retire, journal 1): as run r1 left it\n"
        assert 'RENAME TO "old-t"' in planned["diff"]["after"]
        assert pg_server.execute(db, "SELECT to_regclass('public.\"new-t\"') IS NOT NULL") == [(True,)]

        undone = run_module("pgsafe_rollback", dict(params, rollback_run_id="rb-1"))
        assert undone["changed"] and "diff" not in undone and undone["actions"][0]["outcome"] == "rollback SQL executed"
        assert pg_server.execute(db, "SELECT to_regclass('public.\"old-t\"') IS NOT NULL") == [(True,)]
        assert pg_server.execute(db, "SELECT status, details ->> 'ok' FROM pgsafe.run WHERE run_id = 'r1'") == \
            [("rolled_back", "1")]
        assert pg_server.execute(db, "SELECT run_id, step FROM pgsafe.journal WHERE step LIKE 'rollback:%' "
                                     "ORDER BY run_id") == [("r1", "rollback:1"), ("rb-1", "rollback:1")]
        again = run_module("pgsafe_rollback", dict(params, rollback_run_id="rb-2"))
        assert again["changed"] is False and again["msg"] == "no run to undo: already converged"
    finally:
        pg_server.drop_database(db)


def test_an_attestation_shows_its_row_in_diff_mode_and_writes_it_outside_check_mode(pg_server):
    db = pg_server.create_database()
    params = dict(pg_server.module_params(db), plan_fingerprint="f" * 64, product_version="0.2.0",
                  environment="staging", run_id="r1", schema_fingerprint_before="s" * 64, result="passed",
                  details={"phases": []})
    try:
        checked = run_module("pgsafe_attestation", params, check=True, diff=True)
        assert checked["changed"] and checked["diff"]["before"] == {} and checked["queries"] == []
        assert checked["diff"]["after"]["plan_fingerprint"] == "f" * 64
        written = run_module("pgsafe_attestation", params)
        assert written["attestation_id"] and "diff" not in written
        assert pg_server.execute(db, "SELECT environment, result FROM pgsafe.attestation") == [("staging", "passed")]
    finally:
        pg_server.drop_database(db)
