"""Every role's argument specs tell the truth about its defaults, and every README lists every variable.

The checks live in tools/role_docs.py (``python tools/role_docs.py --check``); this test fails, naming
the role and the variable, when a spec or a README is out of date with defaults/main.yml, or when a
role reads another role's variable instead of an input of its own.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import role_docs  # noqa: E402

ROLES = role_docs.roles()
IDS = [role.name for role in ROLES]


def test_every_role_has_a_spec():
    assert sorted(IDS) == sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_spec_matches_defaults(role):
    assert role_docs.spec_problems(role) == []


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_literal_defaults_have_their_declared_types(role):
    """A default that is not a template passes the type the spec declares for it (as role validation checks)."""
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    for entry, spec in role.specs.items():
        options = {name: {k: v for k, v in option.items() if k != "default"}
                   for name, option in (spec.get("options") or {}).items()}
        literal = {name: value for name, value in role.defaults.items()
                   if name in options and not (isinstance(value, str) and "{{" in value)}
        errors = ArgumentSpecValidator(options).validate(literal).error_messages
        assert errors == [], f"{role.name} entry point {entry}: {errors}"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_readme_lists_every_variable(role):
    readme = (role.path / "README.md").read_text()
    assert role_docs.BEGIN in readme and role_docs.END in readme, f"{role.name}/README.md has no generated section"
    generated = readme.split(role_docs.BEGIN, 1)[1].split(role_docs.END, 1)[0]
    for name in role.defaults:
        assert f"`{name}`" in generated, f"{role.name}/README.md does not list {name}"
    assert readme == role_docs.render_readme(role), f"{role.name}/README.md is out of date: run python tools/role_docs.py"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_reads_only_declared_inputs(role):
    assert role.foreign() == [], f"{role.name} reads other roles' variables: declare inputs of its own"
    undocumented = [name for name in role.shared() if name not in role_docs.SHARED]
    assert undocumented == [], f"{role.name} reads shared variables undocumented in tools/role_docs.py SHARED"


@pytest.mark.parametrize("role", ROLES, ids=IDS)
def test_no_playbook_dir(role):
    assert "playbook_dir" not in role.read | role.defaults_read, f"{role.name} depends on playbook_dir"


def test_run_context_facts_only_through_declared_inputs():
    """No role but run_context reads run_context_* in its tasks (F's rehearsal attest block aside)."""
    readers = {role.name for role in ROLES if any(n.startswith("run_context_") for n in role.read)}
    assert readers <= {"run_context", "rehearsal"}, readers


def test_check_mode_of_the_tool():
    assert role_docs.main(["--check"]) == 0


def test_the_tool_finds_a_stale_default(tmp_path, monkeypatch):
    """A default changed in defaults/main.yml but not in the spec is named."""
    role_dir = tmp_path / "roles" / "demo"
    (role_dir / "defaults").mkdir(parents=True)
    (role_dir / "meta").mkdir()
    (role_dir / "tasks").mkdir()
    (role_dir / "defaults" / "main.yml").write_text("---\ndemo_size: 2\ndemo_new: x\n")
    (role_dir / "tasks" / "main.yml").write_text("---\n- ansible.builtin.debug:\n    msg: '{{ demo_size }} {{ other_fact }}'\n")
    spec = {"argument_specs": {"main": {"short_description": "Demo", "options": {
        "demo_size": {"description": "Size.", "type": "int", "required": False, "default": 1}}}}}
    (role_dir / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(role_docs, "ROLES", tmp_path / "roles")
    found = role_docs.problems()
    assert any("demo: main.demo_size: default 1 in the spec, 2 in defaults/main.yml" in p for p in found)
    assert any("demo_new (defaults/main.yml) is in no entry point" in p for p in found)
    assert any("README.md is out of date" in p for p in found)
    assert any("reads other_fact" in p for p in found)
    role_docs.main([])
    assert "`demo_size`" in (role_dir / "README.md").read_text()
