"""Every AWX job template's playbook runs under ansible-runner (the engine AWX uses) with its survey defaults.

Check-mode runs (the job type of the templates' check twins, and harmless for the read-only ones)
against fresh Sprint 90 databases: each ends successful; where the survey default would stop a real run
(an empty confirm_database on prod), the check run says so and what to type.
"""
from __future__ import annotations

from pathlib import Path

import ansible_runner
import pytest
import yaml

from tests.pg import ROOT, run_playbook, write_inventory

# Eleven playbook runs: part of `make test-all`, not of `make test` (CI time).
pytestmark = pytest.mark.slow

CONTROLLER = yaml.safe_load((ROOT / "awx/controller.yml").read_text())
SURVEYS = {"confirm_database": CONTROLLER["awx_survey_confirm_database"],
           "window_override_reason": CONTROLLER["awx_survey_window_override_reason"],
           "run_id": CONTROLLER["awx_survey_run_id"]}
# Templates whose survey defaults must stop a real run before it changes anything.
REFUSED_BY_DEFAULT = {"pgsafe sprint90 prod"}


@pytest.fixture(scope="module")
def databases(pg_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("awx")
    with pg_server.sprint90_database("prod") as prod, pg_server.sprint90_database("prod") as staging, \
            pg_server.sprint90_database("dev") as dev:
        inventory = write_inventory(tmp / "inv", {"prod": (pg_server, prod), "staging": (pg_server, staging),
                                                  "dev": (pg_server, dev)},
                                    extra_vars={"backup_destinations": [str(tmp / "b1"), str(tmp / "b2")]},
                                    shipped_plans=True)
        # A real backup of every host first, as AWX's workflow starts with one (restore needs it).
        backup = run_playbook("backup.yml", inventory=str(inventory), extra_vars={"backup_hosts": "all"},
                              env={"PGSAFE_ARTIFACTS_ROOT": str(tmp / "artifacts")})
        assert backup.returncode == 0, backup.stdout[-3000:]
        yield {"inventory": inventory, "tmp": tmp, "prod": prod}


@pytest.mark.parametrize("template", CONTROLLER["awx_job_templates"], ids=lambda t: t["playbook"])
def test_template_runs_under_ansible_runner(template, databases):
    extravars = dict(template.get("extra_vars") or {})
    extravars.update({SURVEYS[key]["variable"]: SURVEYS[key]["default"] for key in template["survey"]})
    extravars["legacy_audit_sample_seconds"] = 2
    data_dir = Path(databases["tmp"]) / ("runner-" + Path(template["playbook"]).stem)
    data_dir.mkdir()
    result = ansible_runner.run(
        private_data_dir=str(data_dir), project_dir=str(ROOT), playbook=template["playbook"],
        inventory=str(databases["inventory"]), extravars=extravars, cmdline="--check", quiet=True,
        envvars={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
                 "PGSAFE_ARTIFACTS_ROOT": str(databases["tmp"] / "artifacts")},
        timeout=900)
    out = " ".join(result.stdout.read().split())
    if template["name"] == "pgsafe validate":
        # On the drifted fixtures the right verdict is a failed validation that names the check.
        assert result.status == "failed" and "Validation FAILED: conformance" in out, out[-3000:]
        return
    assert result.status == "successful", out[-3000:]
    if template["name"] in REFUSED_BY_DEFAULT:
        assert "a real run would stop here" in out and "confirm_database" in out
