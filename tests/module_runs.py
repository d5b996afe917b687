"""Run a pgsafe module the way Ansible does (an args file, module_utils importable as ansible.module_utils),
in a subprocess, outside any playbook; and make module_utils importable in this process (tests, benchmarks).

One implementation for every test and benchmark that drives a module directly."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_UTILS = ROOT / "module_utils"

# Modules that refuse to change data without the backup that covers it (or a named override).
GUARDED_MODULES = ("pgsafe_column_types", "pgsafe_table_merge", "pgsafe_table_retire", "pgsafe_schema_removal")
MODULE_TEST_GUARD_OVERRIDE = "module-level test: the data is a throwaway copy"

_BOOT = """
import sys, runpy
import ansible.module_utils
ansible.module_utils.__path__.append({utils!r})
runpy.run_path({module!r}, run_name='__main__')
"""


def use_project_module_utils() -> None:
    """module_utils/ importable in this process as Ansible's modules import it (ansible.module_utils.pgsafe_*)."""
    import ansible.module_utils

    if str(MODULE_UTILS) not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(MODULE_UTILS))


def _args_file(name: str, params: dict, check: bool, diff: bool) -> str:
    if name in GUARDED_MODULES and not check and "backup_id" not in params and "guard_override" not in params:
        # Module-level cases: the backup guard has its own cases (a missing or wrong backup_id is refused).
        params = dict(params, guard_override=MODULE_TEST_GUARD_OVERRIDE)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": dict(params, _ansible_check_mode=check, _ansible_diff=diff)}, handle)
        return handle.name


def _command(name: str, args_file: str) -> list:
    code = _BOOT.format(utils=str(MODULE_UTILS), module=str(ROOT / "library" / f"{name}.py"))
    return [sys.executable, "-c", code, args_file]


def run_module(name: str, params: dict, check: bool = False, diff: bool = False, timeout: int = 300) -> dict:
    """Run library/<name>.py, return its JSON result with the exit code as ``rc`` (a run that printed no JSON
    comes back failed, with what it printed)."""
    args_file = _args_file(name, params, check, diff)
    try:
        proc = subprocess.run(_command(name, args_file), capture_output=True, text=True, timeout=timeout,
                              check=False)
    finally:
        Path(args_file).unlink()
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (ValueError, IndexError):
        result = {"failed": True, "msg": f"module {name} printed no JSON: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"}
    result["rc"] = proc.returncode
    return result


def start_module(name: str, params: dict) -> subprocess.Popen:
    """Start a module run in the background (interruption and concurrency tests); its args file stays."""
    args_file = _args_file(name, params, check=False, diff=False)
    return subprocess.Popen(_command(name, args_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
