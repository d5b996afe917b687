#!/usr/bin/env python3
"""Role documentation from the roles' argument specs, and the checks that keep specs, defaults and READMEs true.

    python tools/role_docs.py            rewrite the marked section of every roles/*/README.md
    python tools/role_docs.py --check    exit 1, naming each problem, when a README or a spec is out of date

The section between ``<!-- BEGIN variables -->`` and ``<!-- END variables -->`` of each role's README is
generated from ``meta/argument_specs.yml`` (name, type, default, required, description of every option of
every entry point), followed by the shared inputs the role reads (inventory ``pg_*``, ``pgsafe_*``) and
the modules that need the connection through ``module_defaults``.

The checks (``problems()``; tests/unit/test_role_specs.py runs them):

* every variable of ``defaults/main.yml`` is an option of an entry point, whose ``default`` equals it
  and which says ``required: false``; an option with a ``default`` has it in ``defaults/main.yml``;
* every option has a ``type``, a ``description`` and an explicit ``required``;
* the README section is what this tool generates;
* a role's tasks and templates read only its own variables (``<role>_*``), inventory ``pg_*``, shared
  ``pgsafe_*`` (documented in SHARED below), Ansible's own, and the facts of roles it runs itself
  (``include_role``); the few exceptions are listed, with the reason, in READS_OTHER_ROLES;
* no role depends on ``playbook_dir`` (a playbook outside playbooks/ uses them too).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml
from jinja2 import Environment, meta

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "roles"
BEGIN, END = "<!-- BEGIN variables -->", "<!-- END variables -->"

# Shared inputs: the inventory's connection variables and the product's shared variables
# (playbooks/group_vars/all.yml, the inventory, -e). A role reading one documents it from here.
SHARED = {
    "pg_host": "Inventory: the target's server host.",
    "pg_port": "Inventory: the target's server port (default 5432).",
    "pg_user": "Inventory: the login.",
    "pg_password": "Inventory: the login's password.",
    "pg_database": "Inventory: the target database.",
    "pg_sslmode": "Inventory: libpq sslmode (default prefer).",
    "pgsafe_environment": "Inventory: the environment's name (prod, staging, dev); default the inventory host's name.",
    "pgsafe_playbook": "Play: the playbook's name (artifacts path, run record); default adhoc.",
    "pgsafe_run_id": "Extra var: a run id to use instead of a generated one.",
    "pgsafe_artifacts_root": "group_vars: root of the artifacts tree (PGSAFE_ARTIFACTS_ROOT, else the project's artifacts/).",
    "pgsafe_product_version": "group_vars: the product's version (the VERSION file).",
    "pgsafe_plan": "group_vars: the run's intent, one section per step kind, from the inventory's plan files.",
    "pgsafe_plan_tables": "group_vars: tables the plan changes.",
    "pgsafe_overrides": "Inventory or extra var: named overrides {rehearsal|confirmation|window|backup_guard: reason}.",
    "pgsafe_scratch_host": "Inventory: the host whose server receives throwaway databases (restore tests, reference DDL).",
    "pgsafe_rehearsal_source": "Inventory: the host whose plan a rehearsal runs (default prod).",
    "pgsafe_migration_run_id": "Extra var: the migration run whose fingerprints are reconciled or watched.",
    "pgsafe_maintenance_window": "Inventory: the environment's maintenance window (UTC); default always.",
    "pgsafe_maintenance_enter": "Inventory: the hook that puts the application into maintenance mode.",
    "pgsafe_maintenance_exit": "Inventory: the hook that takes the application out of maintenance mode.",
    "pgsafe_maintenance_timeout_seconds": "Inventory: time limit of a maintenance hook (default 120).",
    "pgsafe_connection": "group_vars: the target's connection options (hostvars[inventory_hostname] | pgsafe_connection).",
}

# Variables of other roles a role reads although it does not run them, and why. Everything else a
# role needs is one of its own declared inputs (defaults/main.yml), defaulting to the fact that the
# pipeline provides.
READS_OTHER_ROLES = {
    # Its job: collect every role's report section (<role>_report_section), whatever ran in the play.
    "run_report": {"vars"},
    # The pipeline runs legacy_audit itself (mode propose) and hands its tables to the proposal.
    "pipeline": {"legacy_audit_tables"},
}

# Ansible's own variables (magic variables, loop variables, lookups).
MAGIC = {
    "item", "omit", "inventory_hostname", "inventory_hostname_short", "hostvars", "groups", "group_names",
    "ansible_check_mode", "ansible_diff_mode", "role_path", "playbook_dir", "inventory_dir", "ansible_play_hosts",
    "ansible_play_hosts_all", "ansible_play_batch", "ansible_play_name", "ansible_loop", "ansible_failed_task",
    "ansible_failed_result", "ansible_playbook_python", "ansible_run_tags", "ansible_skip_tags", "ansible_verbosity",
    "ansible_version", "ansible_limit", "ansible_config_file", "ansible_facts", "lookup", "query", "q", "now",
    "range", "dict", "lipsum", "cycler", "joiner", "namespace", "undef", "loop", "true", "false", "none", "True",
    "False", "None",
}
EXPRESSION_KEYS = {"when", "that", "changed_when", "failed_when", "until"}
INCLUDE_ROLE = {"ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role"}
SET_FACT = {"ansible.builtin.set_fact", "set_fact"}


class _AnyName(dict):
    """Filters and tests of Ansible and its collections: any name parses."""

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return lambda *args, **kwargs: None

    def get(self, key, default=None):
        return self[key]


_ENV = Environment(extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"])  # noqa: S701 - parsed, never rendered
_ENV.filters = _AnyName(_ENV.filters)
_ENV.tests = _AnyName(_ENV.tests)


def _strings(node, key=None):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v, key)
    elif isinstance(node, str):
        yield key, node


def template_names(text: str, bare: bool = False) -> set:
    """Variables a Jinja string (or a bare expression: when, that, ...) reads."""
    if bare and "{{" not in text and "{%" not in text:
        text = "{{ " + text + " }}"
    return set(meta.find_undeclared_variables(_ENV.parse(text)))


def _set_here(node, out: set, included: set) -> None:
    """Variables a tasks file sets (set_fact, register, vars, loop_var) and the roles it runs."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SET_FACT and isinstance(value, dict):
                out.update(k for k in value if k != "cacheable")
            elif key == "register":
                out.add(value)
            elif key == "vars" and isinstance(value, dict):
                out.update(value)
            elif key == "loop_control" and isinstance(value, dict) and "loop_var" in value:
                out.add(value["loop_var"])
            elif key in INCLUDE_ROLE and isinstance(value, dict) and isinstance(value.get("name"), str):
                included.add(value["name"])
            elif key == "run_phase_role" and isinstance(value, str):  # a phase runs that role (roles/run_phase)
                included.update(re.findall(r"[a-z_]+", value))
            _set_here(value, out, included)
    elif isinstance(node, list):
        for value in node:
            _set_here(value, out, included)


class Role:
    """One role: its defaults, its argument specs, the variables its tasks and templates read."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        self.defaults = self._yaml("defaults/main.yml") or {}
        self.vars = self._yaml("vars/main.yml") or {}
        self.specs = (self._yaml("meta/argument_specs.yml") or {}).get("argument_specs") or {}
        self.read, self.set, self.included, self.modules = set(), set(self.vars), set(), set()
        for tasks in sorted(path.glob("tasks/*.yml")) + sorted(path.glob("handlers/*.yml")):
            data = yaml.safe_load(tasks.read_text()) or []
            _set_here(data, self.set, self.included)
            self._modules(data)
            for key, text in _strings(data):
                self.read |= template_names(text, key in EXPRESSION_KEYS)
        for _key, text in _strings(self.vars):
            self.read |= template_names(text)
        for template in sorted(path.glob("templates/*")):
            self.read |= template_names(template.read_text())
        self.defaults_read = set()
        for _key, text in _strings(self.defaults):
            self.defaults_read |= template_names(text)

    def _yaml(self, relative: str):
        file = self.path / relative
        return yaml.safe_load(file.read_text()) if file.exists() else None

    def _modules(self, node) -> None:
        if isinstance(node, dict):
            for key in node:
                if isinstance(key, str) and (key.startswith("pgsafe_") or key.startswith("community.postgresql.")) \
                        and key not in self.defaults and isinstance(node[key], (dict, type(None))):
                    self.modules.add(key)
            for value in node.values():
                self._modules(value)
        elif isinstance(node, list):
            for value in node:
                self._modules(value)

    @property
    def options(self) -> dict:
        """Every option of every entry point (the first entry point's description of it)."""
        found = {}
        for entry in self.specs.values():
            for name, option in (entry.get("options") or {}).items():
                found.setdefault(name, option)
        return found

    def shared(self) -> list:
        """The shared inputs (pg_*, pgsafe_*) the role reads, in its tasks, templates or defaults."""
        names = (self.read | self.defaults_read) - self.set - set(self.defaults)
        return sorted(n for n in names if n.startswith(("pg_", "pgsafe_")))

    def foreign(self) -> list:
        """Variables of other roles the tasks and templates read (neither declared here nor shared)."""
        allowed = READS_OTHER_ROLES.get(self.name, set())
        names = self.read - self.set - set(self.defaults) - MAGIC - allowed
        return sorted(n for n in names
                      if not n.startswith((self.name + "_", "pg_", "pgsafe_"))
                      and not any(n.startswith(r + "_") for r in self.included)
                      and not self._template_var(n))

    def _template_var(self, name: str) -> bool:
        """A template_vars key of a role template lookup (hook_problem.j2 gets name, hook, ...), or a template's own."""
        for template in self.path.glob("templates/*"):
            if re.search(r"\{%-?\s*set\s+" + re.escape(name) + r"\b", template.read_text()):
                return True
        for tasks in self.path.glob("tasks/*.yml"):
            text = tasks.read_text()
            if "template_vars=" in text and re.search(r"'" + re.escape(name) + r"'\s*:", text):
                return True
        return False


def roles() -> list:
    return [Role(p) for p in sorted(ROLES.iterdir()) if (p / "meta" / "argument_specs.yml").exists()]


def _md(value) -> str:
    """A value as Markdown inside a table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flow(value) -> str:
    if isinstance(value, str):
        return value if value and "\n" not in value else repr(value).replace("'", '"')
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()


def _code(value) -> str:
    text = _md(_flow(value))
    return "`` " + text + " ``" if "`" in text else "`" + text + "`"


def _text(description) -> str:
    if isinstance(description, list):
        description = " ".join(description)
    text = re.sub(r"[CIV]\(([^)]*)\)", r"`\1`", str(description))
    return _md(text.replace("<", "&lt;").replace(">", "&gt;"))


def _type(option: dict) -> str:
    kind = option.get("type", "str")
    return f"{kind} of {option['elements']}" if option.get("elements") else kind


def section(role: Role) -> str:
    """The generated README section of a role."""
    lines = [BEGIN, "## Variables", "",
             "Generated from `meta/argument_specs.yml` by `python tools/role_docs.py` (do not edit by hand); "
             f"`ansible-doc -t role -r roles {role.name}` shows the same.", ""]
    for entry, spec in role.specs.items():
        lines += [f"### Entry point `{entry}`: {_md(spec.get('short_description', ''))}", ""]
        options = spec.get("options") or {}
        if not options:
            lines += ["No options.", ""]
            continue
        lines += ["| Variable | Type | Default | Required | Description |", "|---|---|---|---|---|"]
        for name, option in options.items():
            default = _code(option["default"]) if "default" in option else "-"
            description = _text(option.get("description", ""))
            if option.get("choices"):
                description += " Choices: " + ", ".join(f"`{_md(c)}`" for c in option["choices"]) + "."
            lines.append(f"| `{name}` | {_type(option)} | {default} | {'yes' if option.get('required') else 'no'} "
                         f"| {description} |")
        lines.append("")
    shared = role.shared()
    if shared:
        lines += ["### Shared inputs", "",
                  "Read by the role as well; the inventory or `playbooks/group_vars/all.yml` sets them "
                  "(a playbook elsewhere sets what it needs).", ""]
        lines += [f"* `{name}`: {SHARED.get(name, '(undocumented)')}" for name in shared] + [""]
    if role.modules:
        lines += ["### Connection", "",
                  "The role's modules take the target's connection from the play's `module_defaults`, e.g. "
                  "`\"{{ hostvars[inventory_hostname] | pgsafe_connection }}\"` (plugins/filter/pgsafe_connection.py): "
                  + ", ".join(f"`{m}`" for m in sorted(role.modules)) + ".", ""]
    lines.append(END)
    return "\n".join(lines)


def render_readme(role: Role) -> str:
    readme = role.path / "README.md"
    text = readme.read_text() if readme.exists() else f"# {role.name}\n"
    generated = section(role)
    if BEGIN in text and END in text:
        start, rest = text.split(BEGIN, 1)
        return start + generated + rest.split(END, 1)[1]
    return text.rstrip("\n") + "\n\n" + generated + "\n"


def spec_problems(role: Role) -> list:
    problems = []
    options = role.options
    for name in role.defaults:
        if name not in options:
            problems.append(f"{role.name}: {name} (defaults/main.yml) is in no entry point of meta/argument_specs.yml")
    for entry, spec in role.specs.items():
        for name, option in (spec.get("options") or {}).items():
            where = f"{role.name}: {entry}.{name}"
            for key in ("type", "description", "required"):
                if key not in option:
                    problems.append(f"{where} has no {key}")
            if name in role.defaults:
                if "default" not in option:
                    problems.append(f"{where} has no default (defaults/main.yml: {role.defaults[name]!r})")
                elif option["default"] != role.defaults[name]:
                    problems.append(f"{where}: default {option['default']!r} in the spec, "
                                    f"{role.defaults[name]!r} in defaults/main.yml")
                if option.get("required"):
                    problems.append(f"{where} is required but has a default in defaults/main.yml")
            elif "default" in option:
                problems.append(f"{where}: the spec declares a default that defaults/main.yml does not set")
    return problems


def problems() -> list:
    found = []
    for role in roles():
        found += spec_problems(role)
        readme = role.path / "README.md"
        if not readme.exists() or render_readme(role) != readme.read_text():
            found.append(f"{role.name}: README.md is out of date (run python tools/role_docs.py)")
        found += [f"{role.name}: reads {name}, another role's variable: declare an input of its own "
                  f"({role.name}_...) defaulting to it" for name in role.foreign()]
        found += [f"{role.name}: reads the shared {name}, undocumented in tools/role_docs.py SHARED"
                  for name in role.shared() if name not in SHARED]
        if "playbook_dir" in role.read | role.defaults_read:
            found.append(f"{role.name}: depends on playbook_dir (use role_path, or a declared input)")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="report what is out of date, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        found = problems()
        for problem in found:
            print(problem)
        return 1 if found else 0
    for role in roles():
        (role.path / "README.md").write_text(render_readme(role))
    return 0


if __name__ == "__main__":
    sys.exit(main())
