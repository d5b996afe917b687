"""Every module's DOCUMENTATION, EXAMPLES and RETURN are YAML that ansible-doc can read.

A description with ": " in a plain scalar silently breaks `ansible-doc` for the whole module; this
reads the three blocks the way ansible-doc does (without importing the module) and checks their shape.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

LIBRARY = Path(__file__).resolve().parents[2] / "library"
MODULES = sorted(LIBRARY.glob("*.py"))


def blocks(path: Path) -> dict:
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN"):
            found[node.targets[0].id] = node.value.value
    return found


def test_there_are_modules():
    assert len(MODULES) >= 20


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_documentation_parses_and_names_the_module(path):
    docs = blocks(path)
    assert set(docs) == {"DOCUMENTATION", "EXAMPLES", "RETURN"}, f"{path.name}: missing blocks"
    doc = yaml.safe_load(docs["DOCUMENTATION"])
    assert doc["module"] == path.stem
    assert doc["short_description"] and doc["description"]
    for name, option in (doc.get("options") or {}).items():
        assert option.get("description"), f"{path.name}: option {name} has no description"
        assert option.get("type"), f"{path.name}: option {name} has no type"
    examples = yaml.safe_load(docs["EXAMPLES"])
    assert isinstance(examples, list) and examples, f"{path.name}: EXAMPLES is not a list of tasks"
    returned = yaml.safe_load(docs["RETURN"]) or {}
    for name, value in returned.items():
        assert value.get("description") and value.get("returned"), f"{path.name}: return value {name}"


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_every_module_declares_attributes_and_returns_its_queries(path):
    """community.postgresql's shape: `attributes` (check_mode, diff_mode) and `queries` in the result."""
    docs = blocks(path)
    doc = yaml.safe_load(docs["DOCUMENTATION"])
    attributes = doc.get("attributes") or {}
    assert {"check_mode", "diff_mode"} <= set(attributes), f"{path.name}: attributes check_mode/diff_mode"
    for name, attribute in attributes.items():
        assert attribute.get("support") in ("full", "partial", "none"), f"{path.name}: attribute {name}"
    returned = yaml.safe_load(docs["RETURN"]) or {}
    source = path.read_text()
    if "PgsafeModule" in source:
        assert "queries" in returned, f"{path.name}: returns queries (PgsafeModule adds them) but RETURN omits it"
    if never_connects(source):
        # A module that opens no database connection (it writes files on the controller) has no connection
        # options to share and no queries to return: a plain AnsibleModule, its documentation without them.
        assert "pgsafe_connection" not in doc.get("extends_documentation_fragment", []), path.name
        return
    assert "AnsibleModule(" not in source, f"{path.name}: build the module with PgsafeModule (queries, connect)"


# module_utils that only write files on the controller (no connection): a module importing only these never connects.
FILE_ONLY_UTILS = ("ansible.module_utils.pgsafe_report_files",)


def never_connects(source: str) -> bool:
    """Imports nothing that reaches a database: no psycopg2, no pgsafe module_utils (connection, runner, engines)
    other than the file-only ones."""
    for name in FILE_ONLY_UTILS:
        source = source.replace(name + " ", "")
    return "psycopg2" not in source and "ansible.module_utils.pgsafe_" not in source


@pytest.mark.parametrize("path", MODULES, ids=[p.stem for p in MODULES])
def test_module_main_is_short(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            length = node.end_lineno - node.lineno + 1
            assert length <= 60, f"{path.name}: main() is {length} lines (at most 60: move decisions to module_utils)"
