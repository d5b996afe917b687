"""AWX, emulated the way it runs jobs, for tests (no AWX server runs here).

Every job: a fresh private data directory holding a fresh copy of the project (the files git tracks,
as a project sync yields them), the inventory its source path names inside that copy, the
credentials' injectors rendered with their inputs into the job's environment (never extra vars),
extra vars from the template, the survey answers, the workflow node's extra data and the artifacts
(set_stats) of the nodes before it; ansible-runner runs the playbook; then the directory is deleted,
as AWX deletes it. Whatever a later job needs must therefore live outside it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import ansible_runner
import jinja2
import yaml

from tests.pg import ROOT

CONTROLLER = yaml.safe_load((ROOT / "awx/controller.yml").read_text())


def render_controller_value(value: str) -> str:
    """controller.yml is an Ansible vars file: its strings are templated once when configure.yml reads it."""
    return jinja2.Environment(autoescape=False).from_string(value).render()  # noqa: S701 - not HTML


def credential_environment(name: str, inputs: dict) -> dict:
    """The environment a credential's type injects, rendered with the credential's inputs (AWX's injectors)."""
    credential = next(c for c in CONTROLLER["awx_credentials"] if c["name"] == name)
    kind = next(t for t in CONTROLLER["awx_credential_types"] if t["name"] == credential["credential_type"])
    env = {}
    for var, template in kind["injectors"].get("env", {}).items():
        env[var] = jinja2.Environment(autoescape=False).from_string(  # noqa: S701 - not HTML
            render_controller_value(template)).render(**inputs)
    assert not kind["injectors"].get("extra_vars"), "credential types inject env only (extra vars hit every host)"
    return env


def project_files() -> list[str]:
    """What a project sync checks out: the files git tracks (and new ones it does not ignore)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines() if line and (ROOT / line).is_file()]


@dataclass
class Job:
    template: str
    status: str
    stdout: str
    artifacts: dict
    private_data_dir: Path

    def reason(self) -> str:
        """The lines that say why a job failed (the task that failed and its message)."""
        lines = self.stdout.splitlines()
        picked = [line for n, line in enumerate(lines) if "fatal:" in line or "FAILED" in line
                  or (n and "fatal:" in lines[n - 1])]
        return "\n".join(picked)[-4000:] or self.stdout[-4000:]


@dataclass
class Awx:
    """One emulated controller: credentials (name -> inputs), a way to prepare each job's inventory."""
    workdir: Path
    credential_inputs: dict
    prepare_inventory: callable  # (project_dir: Path, source_path: str) -> Path
    jobs: list = field(default_factory=list)

    def template(self, name: str) -> dict:
        return next(t for t in CONTROLLER["awx_job_templates"] if t["name"] == name)

    def launch(self, template_name: str, survey: dict | None = None, extra_data: dict | None = None,
               artifacts: dict | None = None, job_type: str = "run") -> Job:
        template = self.template(template_name)
        number = len(self.jobs) + 1
        pdd = self.workdir / f"job_{number}"
        project = pdd / "project"
        for relative in project_files():
            target = project / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, target)
        inventory_name = template["inventory"]
        source = next(i["source_path"] for i in CONTROLLER["awx_inventories"] if i["name"] == inventory_name)
        inventory = self.prepare_inventory(project, source)
        env = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
        for credential in CONTROLLER["awx_inventory_credentials"][inventory_name]:
            env.update(credential_environment(credential, self.credential_inputs[credential]))
        extravars = dict(template.get("extra_vars") or {})
        # AWX's order: template vars < artifacts of earlier nodes < node extra data < survey answers.
        extravars.update(artifacts or {})
        extravars.update(extra_data or {})
        extravars.update(survey or {})
        extravars.update({"awx_job_id": str(1000 + number), "awx_user_name": "release-manager"})
        result = ansible_runner.run(
            private_data_dir=str(pdd), project_dir=str(project), playbook=template["playbook"],
            inventory=str(inventory), extravars=extravars, envvars=env, quiet=True, timeout=1500,
            cmdline="--check" if job_type == "check" else None)
        stdout = result.stdout.read()
        stats = [e for e in result.events if e.get("event") == "playbook_on_stats"]
        job_artifacts = (stats[-1]["event_data"].get("artifact_data") or {}) if stats else {}
        job = Job(template_name, result.status, stdout, job_artifacts, pdd)
        self.jobs.append(job)
        shutil.rmtree(pdd)  # AWX deletes the job's directory: nothing in it outlives the job
        return job

    def run_workflow(self, survey: dict, approve: bool = True) -> list[Job]:
        """The release workflow, node after node on success; artifacts flow down; the approval is given."""
        workflow = CONTROLLER["awx_workflow"]
        by_id = {n["identifier"]: n for n in workflow["nodes"]}
        node = workflow["nodes"][0]
        artifacts: dict = {}
        jobs = []
        while node:
            if node.get("approval"):
                if not approve:
                    break
            else:
                job = self.launch(node["job_template"], survey=survey, extra_data=node.get("extra_data"),
                                  artifacts=artifacts)
                jobs.append(job)
                if job.status != "successful":
                    break
                artifacts = merge_artifacts(artifacts, job.artifacts)
            following = node["success_nodes"]
            node = by_id[following[0]] if following else None
        return jobs


def merge_artifacts(before: dict, new: dict) -> dict:
    """AWX merges each job's set_stats into what the workflow carries (dicts merged one level down)."""
    merged = json.loads(json.dumps(before))
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged
