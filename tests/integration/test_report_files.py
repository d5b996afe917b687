"""pgsafe_report_files: on the controller its action plugin writes the files in the worker process (no module
start-up), with the module's own code; the module, run as a module, writes the same."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests import pg
from tests.module_runs import run_module


def test_the_action_writes_on_the_controller_as_the_module_would(tmp_path):
    out = tmp_path / "files"
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "tests/playbooks/report_files.yml",
           "-e", json.dumps({"report_files_dir": str(out), "ansible_connection": "local",
                             "ansible_python_interpreter": sys.executable})]
    env = dict(os.environ, ANSIBLE_CONFIG=str(pg.ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(cmd, cwd=pg.ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())

    written = results["written"]
    run_dir = out / "run-1"
    assert written["changed"] and sorted(written["written"]) == [str(run_dir / "report.json"), str(run_dir / "report.md")]
    assert written["on_controller"] is True  # written by the action plugin on the controller, not by a module run
    assert (run_dir / "report.md").read_text() == "# done\n" and (run_dir / "report.json").read_text() == "{}\n"
    assert stat.S_IMODE((run_dir / "report.md").stat().st_mode) == 0o640
    assert os.readlink(out / "latest") == "run-1"
    assert results["again"]["changed"] is False and len(results["again"]["unchanged"]) == 2
    assert results["checked"]["changed"] is False and results["checked"]["written"] == []
    assert not (out / "run-2").exists()  # check mode: nothing written, not even the directory
    refused = results["refused"]
    assert "plain names without a directory part" in refused["msg"]  # (registered under failed_when: false)
    assert not (out / "escape.md").exists() and not (out / "run-3").exists()

    # The module itself (a module run) writes the same, through the same code.
    module_dir = tmp_path / "module" / "run-1"
    module = run_module("pgsafe_report_files", {"directory": str(module_dir), "files": {"report.md": "# done"},
                                                "latest_link": "latest"})
    assert module["rc"] == 0 and module["written"] == [str(module_dir / "report.md")], module
    assert "on_controller" not in module
    assert (module_dir / "report.md").read_text() == "# done\n"
    assert os.readlink(tmp_path / "module" / "latest") == "run-1"
