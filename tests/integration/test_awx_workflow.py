"""The release workflow as AWX runs it: backup -> rehearsal -> approval -> prod -> validate, then a rollback job.

Each job runs under ansible-runner in a fresh private data directory with a fresh copy of the project,
the release inventory its source names (the shipped template, filled in with the local test cluster's
databases as a user fills it), one credential per database injecting only that host's password, the
workflow survey's answers, the node's extra data and the artifacts (set_stats) of the nodes before it;
each directory is deleted when its job ends. A rollback job launched afterwards, in a new directory,
finds everything it needs (the journal in the target's product schema, the backups and reports where
the inventory put them).
"""
from __future__ import annotations

import shutil

from tests.awx_emulation import Awx
from tests.integration.test_readme_commands import EXPORTS, column_type, fill


def test_release_workflow_reaches_prod_and_a_later_rollback_job_finds_everything(pg_server, tmp_path):
    state, backups = tmp_path / "state", tmp_path / "backups"
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging:
        def prepare_inventory(project, source):
            target = project / source
            shutil.rmtree(target)
            fill("prod", target, {"prod": (pg_server, prod), "staging": (pg_server, staging)}, backups)
            group_vars = target / "group_vars" / "all.yml"
            group_vars.write_text(group_vars.read_text().replace("pgsafe_state_dir: /var/lib/pgsafe",
                                                                 f"pgsafe_state_dir: {state}"))
            return target

        password = pg_server.libpq["password"]
        awx = Awx(workdir=tmp_path / "awx", credential_inputs={
            "pgsafe prod database": {"password": password}, "pgsafe staging database": {"password": password},
            "pgsafe dev database": {"password": password}}, prepare_inventory=prepare_inventory)
        jobs = awx.run_workflow(survey={"confirm_database": prod, "window_override_reason": ""})

        assert [job.template for job in jobs] == ["pgsafe backup", "pgsafe sprint90 rehearsal",
                                                  "pgsafe sprint90 prod", "pgsafe validate"]
        for job in jobs:
            assert job.status == "successful", (job.template, job.reason())
            assert not job.private_data_dir.exists()  # deleted, as AWX deletes it
        assert column_type(pg_server, prod, EXPORTS, "id") == "uuid"
        assert column_type(pg_server, staging, EXPORTS, "id") == "uuid"  # rehearsed there first

        # set_stats handed the ids from node to node: the prod job's run, its backup and its report.
        prod_run = jobs[2].artifacts["pgsafe_runs"]["prod"]
        assert prod_run["status"] == "succeeded" and prod_run["backup_id"]
        assert jobs[0].artifacts["pgsafe_runs"]["prod"]["backup_id"]
        report = state / "artifacts" / "prod" / "sprint90_prod" / prod_run["run_id"] / "report.md"
        assert report.is_file() and prod_run["run_id"] in report.read_text()
        assert list((backups / "prod" / "primary").iterdir())
        # The report and the journal also live in the target's own product schema.
        stored = pg_server.execute(prod, "SELECT details->'report_document'->>'status', "
                                         "(SELECT count(*) FROM pgsafe.journal j WHERE j.run_id = r.run_id) "
                                         "FROM pgsafe.run r WHERE run_id = %s", (prod_run["run_id"],))
        assert stored[0][0] == "succeeded" and stored[0][1] > 0

        # Later, a rollback job in a brand-new directory: it needs only the database and the inventory.
        rollback = awx.launch("pgsafe rollback", survey={"confirm_database": prod, "window_override_reason": "",
                                                         "rollback_run_id": prod_run["run_id"]})
        assert rollback.status == "successful", rollback.reason()
        assert column_type(pg_server, prod, EXPORTS, "id") == "text"
        assert pg_server.execute(prod, f"SELECT count(*) FROM {EXPORTS}") == [(134,)]
