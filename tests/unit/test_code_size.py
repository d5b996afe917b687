"""One job per file: no file of module_utils/ or library/ above 700 lines, no function above 80."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("module_utils/*.py"), *ROOT.glob("library/*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=[f"{p.parent.name}/{p.stem}" for p in SOURCES])
def test_file_and_function_sizes(path):
    lines = path.read_text().count("\n")
    assert lines <= 700, f"{path.relative_to(ROOT)} has {lines} lines (at most 700: split it by concern)"
    long = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > 80:
                long.append(f"{node.name} ({length} lines, line {node.lineno})")
    assert not long, f"{path.relative_to(ROOT)}: functions above 80 lines: {', '.join(long)}"
