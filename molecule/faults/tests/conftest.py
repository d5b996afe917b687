"""Verifier fixtures: the shared helpers in molecule/shared (verify_lib, pgstate)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

import verify_lib  # noqa: E402

SCENARIO_DIR = str(Path(__file__).resolve().parents[1])


@pytest.fixture(scope="session")
def lib():
    return verify_lib


@pytest.fixture(scope="session")
def scenario_dir():
    return SCENARIO_DIR


@pytest.fixture(scope="session")
def after():
    """Each host's state now (taken once per session)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = verify_lib.current(name)
        return cache[name]
    return get


@pytest.fixture(scope="session", autouse=True)
def reference_databases():
    yield
    for name in verify_lib.instances():
        verify_lib.drop_reference(name)
