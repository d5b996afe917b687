"""Two roles (fingerprint, validate) used from a playbook outside playbooks/, with only their documented
inputs: no playbooks/group_vars, no run_context, the connection from plugins/filter/pgsafe_connection.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import pg

PLAYBOOK = "tests/playbooks/two_roles_elsewhere.yml"


def run_elsewhere(inventory: Path, extra_vars: dict) -> subprocess.CompletedProcess:
    """ansible-playbook from the project root with the project's ansible.cfg, like pg.run_playbook."""
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), PLAYBOOK,
           "-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_CONFIG=str(pg.ROOT / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run(cmd, cwd=pg.ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_fingerprint_and_validate_elsewhere(pg_server, prod_db, tmp_path):
    inventory = pg.write_inventory(tmp_path / "inventory", {"prod": (pg_server, prod_db)})
    run_dir = tmp_path / "artifacts"
    result = run_elsewhere(inventory, {"elsewhere_run_id": "elsewhere-1", "elsewhere_run_dir": str(run_dir)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

    # The fingerprint role stored its fingerprint under the run id it was given, and wrote the snapshot
    # into the directory it was given.
    rows = pg_server.execute(prod_db, "SELECT tables FROM pgsafe.fingerprint WHERE run_id = %s AND label = 'before'",
                             ("elsewhere-1",))
    assert len(rows) == 1
    stored = rows[0][0]
    tables = len(stored)
    assert tables > 0 and sum(t["rows"] for t in stored.values()) > 0
    assert (run_dir / "schema_before.json").is_file()
    assert pg_server.execute(prod_db, "SELECT count(*) FROM pgsafe.fingerprint WHERE run_id IN ('adhoc', '')")[0][0] == 0

    sections = json.loads((run_dir / "sections.json").read_text())
    assert sections["fingerprint"]["summary"].startswith(f"{tables} tables")
    validation = sections["validate"]
    checks = {c["check"]: c for c in validation["checks"]}
    assert set(checks) == {"invalid_indexes", "conformance", "integrity"}
    # Nothing changed between the fingerprint and the validation: the data reconciles exactly, and
    # conformance is judged against the snapshot the fingerprint role wrote (no new drift).
    assert checks["integrity"]["status"] == "ok", checks["integrity"]
    assert checks["conformance"]["status"] == "ok", checks["conformance"]
    assert validation["status"] == "ok", validation["summary"]
