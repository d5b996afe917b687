"""Long work shows progress on the console while it runs (dump, restore test, fingerprints).

PGSAFE_PROGRESS_SECONDS=1 instead of 30, and a table large enough that the dump and the restore
test each take a few seconds: the progress lines must appear while they run, name the work, and say
how much is done.
"""
from __future__ import annotations

import re

from tests.pg import run_playbook, write_inventory


def test_a_long_backup_prints_progress_while_it_runs(pg_server, scratch_server, prod_db, tmp_path):
    pg_server.execute(prod_db, "CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
                               "FROM generate_series(1, 1500000) AS g")
    inv = write_inventory(tmp_path / "inv", {"prod": (pg_server, prod_db), "staging": (scratch_server, "postgres")})
    dests = [str(tmp_path / "primary"), str(tmp_path / "mirror")]
    result = run_playbook("backup.yml", inventory=str(inv),
                          extra_vars={"backup_hosts": "prod", "backup_destinations": dests, "backup_compression": 6},
                          env={"PGSAFE_ARTIFACTS_ROOT": str(tmp_path / "artifacts"), "PGSAFE_PROGRESS_SECONDS": "1"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    dump = re.findall(r"pgsafe progress: pg_dump of \S+: ([\d.]+ [kMG]?B) written", out)
    assert dump, out[-3000:]
    restore = re.findall(r"pgsafe progress: pg_restore of \S+ into \S+: [\d.]+ [kMG]?B of ~[\d.]+ [kMG]?B \(\d+%\)", out)
    assert restore, out[-3000:]
