#!/usr/bin/env python3
"""BENCH rehearsal: the full Sprint 90 rehearsal vs a bare pg_dump + pg_restore of the same prod database.

The rehearsal backs prod up (dump, checksums, restore test), restores that backup into staging, runs
prod's plan there, validates and attests: the physical floor of any safe rehearsal is one dump and
one restore, which is the anchor. Both are measured in the same run, on the same data, several times
(medians).

    .venv/bin/python bench/rehearsal.py            # PGSAFE_BENCH_SCALE (default 1000), PGSAFE_BENCH_RUNS (3)

The default scale is the large fixture (1000: prod is about 1.2 GB). The rehearsal also has a fixed
cost that does not grow with the data: two plays of about 170 tasks, 32 of them module runs at about
0.2 s of interpreter and import each (about 18 s at scale 1); at smaller scales that fixed cost is a
larger share of the ratio (PGSAFE_BENCH_SCALE=300 shows it).

The anchor is pg_dump and pg_restore as they come (gzip level 6). pgsafe dumps at level 1 by default
(backup_compression), so a second anchor at -Z1 is measured too and its ratio printed beside: the
first is the target's, the second shows what is left once both use the same compression.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import pg  # noqa: E402

SCALE = float(os.environ.get("PGSAFE_BENCH_SCALE", "1000"))
RUNS = int(os.environ.get("PGSAFE_BENCH_RUNS", "3"))
SOURCE = ("bench_rehearsal", 55456)


def bare_dump_restore(server: pg.Server, source_db: str, work: Path, compress: tuple = ()) -> float:
    target = server.create_database()
    dump_dir = work / "bare"
    passfile = work / "pgpass"
    passfile.write_text(f"*:*:*:*:{server.libpq['password']}\n")
    passfile.chmod(0o600)
    env = dict(os.environ, PGPASSFILE=str(passfile))
    common = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    bindir = pg.pgclusters._native_bindir()
    start = time.monotonic()
    subprocess.run([str(bindir / "pg_dump"), *common, "-Fd", "-j2", *compress, "-f", str(dump_dir), source_db],
                   env=env, check=True)
    subprocess.run([str(bindir / "pg_restore"), *common, "-j2", "-d", target, str(dump_dir)], env=env, check=True)
    elapsed = time.monotonic() - start
    shutil.rmtree(dump_dir)
    server.drop_database(target)
    return elapsed


def rehearsal(server: pg.Server, source_db: str, work: Path, n: int) -> float:
    staging = server.create_database()
    inv_dir = work / f"inv{n}"
    inventory = pg.write_inventory(inv_dir, {"prod": (server, source_db), "staging": (server, staging)},
                                   extra_vars={"backup_destinations": [str(work / f"b1-{n}"), str(work / f"b2-{n}")]},
                                   shipped_plans=True)
    start = time.monotonic()
    result = pg.run_playbook("sprint90_rehearsal.yml", inventory=str(inventory), timeout=7200,
                             env={"PGSAFE_ARTIFACTS_ROOT": str(work / "artifacts")})
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:])
        raise SystemExit("rehearsal failed: see above")
    server.drop_database(staging)
    return elapsed


def main() -> int:
    server = pg.start_server(SOURCE)
    template = server.ensure_template("prod", SCALE)
    size = server.execute("postgres", "SELECT pg_database_size(%s)", (template,))[0][0]
    ours, anchor, anchor_z1 = [], [], []
    with tempfile.TemporaryDirectory(prefix="pgsafe-bench-") as tmp:
        work = Path(tmp)
        for n in range(RUNS):
            with server.sprint90_database("prod", SCALE) as source:
                anchor.append(bare_dump_restore(server, source, work))
                anchor_z1.append(bare_dump_restore(server, source, work, ("-Z", "1")))
                ours.append(rehearsal(server, source, work, n))
    o, a, a1 = statistics.median(ours), statistics.median(anchor), statistics.median(anchor_z1)
    print(f"BENCH rehearsal ours_s={o:.3f} anchor=pg_dump_Fd_j2+pg_restore_j2 anchor_s={a:.3f} ratio={o / a:.3f} "
          f"anchor_z1_s={a1:.3f} ratio_vs_z1={o / a1:.3f} "
          f"scale={SCALE:g} db_bytes={size} runs={RUNS} loadavg={os.getloadavg()[0]:.1f}")
    pg.pgclusters.stop(*SOURCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
