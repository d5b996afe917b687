"""Shared pytest fixtures: module_utils importable as in Ansible, real Postgres servers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# module_utils/ is importable the way Ansible's modules import it (ansible.module_utils.pgsafe_*),
# so the deciding logic is unit-tested as plain Python, without running Ansible.
from tests.module_runs import use_project_module_utils  # noqa: E402

use_project_module_utils()

from tests import pg  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _stop_the_clusters_the_session_started():
    """Servers a test session started are stopped by the last session using them (PGSAFE_KEEP_CLUSTERS=1 keeps them)."""
    yield
    if os.environ.get("PGSAFE_KEEP_CLUSTERS") != "1":
        pg.leave_clusters()


@pytest.fixture(scope="session")
def pg_server() -> pg.Server:
    """A throwaway cluster of the test suite's own (port 55440), started once per session."""
    return pg.start_server(pg.TEST_CLUSTER)


@pytest.fixture(scope="session")
def scratch_server() -> pg.Server:
    """A second cluster (port 55441): restore tests and cross-server work."""
    return pg.start_server(pg.SCRATCH_CLUSTER)


@pytest.fixture(scope="session")
def pgbr_server() -> pg.Server:
    """A cluster that archives its WAL (archive_mode=on), for the pgBackRest engine's tests (pgbackrest_support)."""
    from tests import pgbackrest_support
    return pgbackrest_support.archiving_server("pgbr", pgbackrest_support.PORT)


@pytest.fixture
def prod_db(pg_server):
    """A fresh Sprint 90 prod-like database at scale 1 (dropped after the test)."""
    with pg_server.sprint90_database("prod") as name:
        yield name


@pytest.fixture
def dev_db(pg_server):
    """A fresh Sprint 90 dev-like database at scale 1 (dropped after the test)."""
    with pg_server.sprint90_database("dev") as name:
        yield name

