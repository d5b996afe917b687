"""Gate fault cases at playbook level: prod refuses without confirmation, outside the window, with a
plan or a schema changed since the rehearsal; the rehearsal refuses a wrong inventory; an override
of the window proceeds and is recorded.

One real rehearsal (prod backed up, restored into staging, plan run, attested in prod) serves every
prod case; every refusal must leave prod's data fingerprints and schema exactly as they were.
"""
from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.faults import faultlib as fl

# Whole playbook runs per case: part of `make faults`, not of `make test` (CI time).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rehearsed(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gates")
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        env = fl.Env(tmp, {"prod": (pg_server, prod), "staging": (pg_server, staging)})
        before = fl.fingerprint(pg_server, prod)
        env.rehearse()
        yield {"env": env, "server": pg_server, "db": prod, "before": before}


def refused(world, result, *needles, rows_lost, compare=True):
    """The run failed at the gates, naming every needle, and prod is exactly as before."""
    assert result.returncode != 0
    assert "Refusing to change" in result.flat, result.flat[-3000:]
    for needle in needles:
        assert needle in result.flat, (needle, result.flat[-3000:])
    assert "Start phase backup]" not in result.stdout
    assert "Start phase schema_fix]" not in result.stdout
    server, db = world["server"], world["db"]
    if compare:
        assert fl.fingerprint(server, db) == world["before"]
    assert fl.column_type(server, db, fl.EXPORTS, "id") == "text"
    rows_lost(fl.rows_lost_between(world["before"], server, db))


def window_excluding_now() -> str:
    day = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)).strftime("%a")
    return f"{day} 02:00-03:00"


def test_prod_without_confirmation_refuses(rehearsed, rows_lost):
    env = rehearsed["env"]
    result = env.run("sprint90_prod.yml", {})
    refused(rehearsed, result, "confirm_database is missing", f"-e confirm_database={rehearsed['db']}",
            rows_lost=rows_lost)
    wrong = env.run("sprint90_prod.yml", {"confirm_database": "bazaar_vid"})
    refused(rehearsed, wrong, "confirm_database is 'bazaar_vid' but the target database is", rows_lost=rows_lost)


@pytest.mark.parametrize("window", ["never", "excluding-now"])
def test_prod_outside_the_window_refuses(rehearsed, window, rows_lost):
    spec = window_excluding_now() if window == "excluding-now" else "never"
    result = rehearsed["env"].prod(pgsafe_maintenance_window=spec)
    refused(rehearsed, result, f"is outside the maintenance window '{spec}'", "window_override_reason",
            rows_lost=rows_lost)


def test_prod_refuses_a_plan_changed_since_the_rehearsal(rehearsed, rows_lost):
    plan = fl.plan("prod", "schema_fix")["schema_fix_plan"]
    plan = dict(plan, changes=[c for c in plan["changes"] if c["column"] != "user_id"])  # one change less
    result = rehearsed["env"].prod(schema_fix_plan=plan)
    # prod names what differs from the plan staging ran: the step, the field, both values
    refused(rehearsed, result, "is not the one rehearsed last", "step 01-type_change", "user_id", "rehearse.yml",
            rows_lost=rows_lost)


def test_prod_refuses_a_schema_changed_since_the_rehearsal(rehearsed, rows_lost):
    server, db = rehearsed["server"], rehearsed["db"]
    server.execute(db, 'ALTER TABLE "bazaar-vid_exports" ADD COLUMN "hotfix_note" text')
    try:
        result = rehearsed["env"].prod()
        # the schema the plan is made against is part of its fingerprint: prod names that it moved
        refused(rehearsed, result, "is not the one rehearsed last", "schema_fingerprint: this plan has",
                rows_lost=rows_lost, compare=False)
    finally:
        server.execute(db, 'ALTER TABLE "bazaar-vid_exports" DROP COLUMN "hotfix_note"')
    assert fl.fingerprint(server, db) == rehearsed["before"]  # the added column held no data of ours


def test_window_override_proceeds_records_the_reason_and_rerun_converges(rehearsed, rows_lost):
    """Last in this module: it changes prod (the refusals above need it untouched)."""
    env, server, db = rehearsed["env"], rehearsed["server"], rehearsed["db"]
    reason = "INC-4711 fault-suite: exports broken for users, approved by on-call"
    result = env.prod(pgsafe_maintenance_window="never", window_override_reason=reason)
    assert result.returncode == 0, result.flat[-4000:]
    assert fl.column_type(server, db, fl.EXPORTS, "id") == "uuid"
    report = fl.latest_report(env, "prod", "sprint90_prod")
    assert reason in json.dumps(report)
    md = (env.artifacts / "prod" / "sprint90_prod" / "latest" / "report.md").read_text()
    assert reason in md
    # "recorded with the run": the database's own record of the run carries the reason, not only a file
    run_rows = server.execute(db, "SELECT r.details::text || coalesce((SELECT string_agg(j.details::text, ' ') "
                                  "FROM pgsafe.journal j WHERE j.run_id = r.run_id), '') FROM pgsafe.run r "
                                  "WHERE r.playbook = 'sprint90_prod' ORDER BY r.started_at DESC LIMIT 1")
    assert run_rows and reason in run_rows[0][0], run_rows
    lost = fl.rows_lost_between(rehearsed["before"], server, db)
    rows_lost(lost)
    assert lost == 0
    after = fl.fingerprint(server, db)
    again = env.prod(pgsafe_maintenance_window="never", window_override_reason=reason)
    assert again.returncode == 0, again.flat[-4000:]
    assert fl.plan_section_status(env, "prod", "sprint90_prod") == "converged"
    assert fl.fingerprint(server, db) == after


def test_rehearsal_refuses_a_staging_host_pointing_at_prod(pg_server, prod_db, tmp_path, rows_lost):
    env = fl.Env(tmp_path, {"prod": (pg_server, prod_db), "staging": (pg_server, prod_db)})
    before = fl.fingerprint(pg_server, prod_db)
    result = env.run("sprint90_rehearsal.yml", extra_args=("--limit", "staging"))
    assert result.returncode != 0
    assert f"The rehearsal would overwrite {prod_db} on 127.0.0.1:{pg_server.port}, which is the source itself" \
        in result.flat, result.flat[-3000:]
    assert "Run it with the staging inventory" in result.flat
    assert "Restore it into the staging database" not in result.stdout
    assert fl.fingerprint(pg_server, prod_db) == before
    rows_lost(fl.rows_lost_between(before, pg_server, prod_db))
