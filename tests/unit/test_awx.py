"""AWX configuration as code: every template points at a real playbook whose survey variables
are used, the workflow renders, the execution environment carries no test-only packages."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER = yaml.safe_load((ROOT / "awx/controller.yml").read_text())


def playbook_text(playbook: str) -> str:
    """The playbook, the playbooks it imports and every role they include, transitively."""
    text, seen_roles = (ROOT / playbook).read_text(), set()
    for imported in re.findall(r"import_playbook: ([\w.]+)", text):
        text += playbook_text(str(Path(playbook).parent / imported))
    todo = set(re.findall(r"name: ([a-z_]+)\n", text))
    while todo:
        role = todo.pop()
        seen_roles.add(role)
        for path in (ROOT / "roles" / role).rglob("*.yml") if (ROOT / "roles" / role).exists() else []:
            part = path.read_text()
            text += part
            todo |= set(re.findall(r"name: ([a-z_]+)\n", part)) - seen_roles
    return text


def test_every_template_playbook_exists():
    missing = [t["playbook"] for t in CONTROLLER["awx_job_templates"] if not (ROOT / t["playbook"]).exists()]
    assert missing == []


def test_every_interface_playbook_has_a_template():
    playbooks = {"plan", "rehearse", "apply", "drift_report", "legacy_audit", "backup", "restore",
                 "sprint90_rehearsal", "sprint90_prod",
                 "sprint90_dev", "validate", "monitor", "rollback", "purge_quarantine"}
    templated = {Path(t["playbook"]).stem for t in CONTROLLER["awx_job_templates"]}
    assert playbooks <= templated


def test_survey_variables_are_used_by_their_playbooks():
    surveys = {"confirm_database": CONTROLLER["awx_survey_confirm_database"],
               "window_override_reason": CONTROLLER["awx_survey_window_override_reason"],
               "run_id": CONTROLLER["awx_survey_run_id"]}
    for template in CONTROLLER["awx_job_templates"]:
        text = playbook_text(template["playbook"])
        for key in template["survey"]:
            variable = surveys[key]["variable"]
            assert variable in text, (template["name"], variable)
            assert surveys[key]["type"] != "password" or not surveys[key].get("default")


def test_changing_playbooks_have_check_templates():
    changing = {"backup", "restore", "sprint90_rehearsal", "sprint90_prod", "sprint90_dev", "rollback",
                "purge_quarantine"}
    with_check = {Path(t["playbook"]).stem for t in CONTROLLER["awx_job_templates"] if t["check_template"]}
    assert changing <= with_check


def test_workflow_renders_backup_rehearsal_approval_prod_validate():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - renders YAML
    env.filters["to_json"] = json.dumps
    rendered = env.from_string((ROOT / "awx/workflow_nodes.j2").read_text()).render(**CONTROLLER)
    nodes = yaml.safe_load(rendered)
    order, node = [], "backup"
    by_id = {n["identifier"]: n for n in nodes}
    while node:
        order.append(node)
        following = by_id[node]["related"]["success_nodes"]
        node = following[0]["identifier"] if following else None
    assert order == ["backup", "rehearsal", "approval", "prod", "validate"]
    assert by_id["approval"]["unified_job_template"]["type"] == "workflow_approval"


def test_monitor_schedule_every_15_minutes_for_24_hours():
    rrule = CONTROLLER["awx_monitor_schedule"]["rrule"]
    assert "FREQ=MINUTELY;INTERVAL=15;COUNT=96" in rrule


def test_one_credential_per_database_injects_only_that_hosts_password():
    """AWX takes one credential of a type per job: a type per database, each injecting its host's env var."""
    types = {t["name"]: t for t in CONTROLLER["awx_credential_types"]}
    for credential in CONTROLLER["awx_credentials"]:
        kind = types[credential["credential_type"]]
        fields = {f["id"]: f for f in kind["inputs"]["fields"]}
        assert fields["password"]["secret"] is True
        assert "extra_vars" not in kind["injectors"], "extra vars would override every host of the job"
        assert set(kind["injectors"]["env"]) == {"PGSAFE_PG_PASSWORD_" + credential["slot"].upper()}
    for inventory, credentials in CONTROLLER["awx_inventory_credentials"].items():
        assert len({c for c in credentials}) == len(credentials)
        kinds = [next(c["credential_type"] for c in CONTROLLER["awx_credentials"] if c["name"] == name)
                 for name in credentials]
        assert len(set(kinds)) == len(kinds), f"{inventory}: two credentials of one type cannot go on one job"
    for env in ("dev", "prod"):  # the inventories read the per-host variable
        assert "PGSAFE_PG_PASSWORD_' ~ (inventory_hostname" in (ROOT / f"inventories/{env}/group_vars/all.yml").read_text()


def test_workflow_asks_confirm_database_and_names_credentials_on_nodes_and_schedule():
    workflow = CONTROLLER["awx_workflow"]
    assert "confirm_database" in workflow["survey"]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)  # noqa: S701 - renders YAML
    env.filters["to_json"] = json.dumps
    nodes = yaml.safe_load(env.from_string((ROOT / "awx/workflow_nodes.j2").read_text()).render(**CONTROLLER))
    for node in nodes:
        if node["unified_job_template"]["type"] == "job_template":
            assert [c["name"] for c in node["related"]["credentials"]] == \
                CONTROLLER["awx_inventory_credentials"][workflow["inventory"]]
    assert CONTROLLER["awx_monitor_schedule"]["credentials"]


def test_execution_environment_runtime_only():
    ee = yaml.safe_load((ROOT / "awx/execution-environment.yml").read_text())
    assert ee["version"] == 3
    text = (ROOT / "awx/execution-environment.yml").read_text()
    assert "psycopg2" in text and "postgresql17" in text
    python_deps = " ".join(ee["dependencies"]["python"])
    for test_only in ("pytest", "molecule", "testinfra", "ansible-lint", "yamllint", "ruff"):
        assert test_only not in python_deps
