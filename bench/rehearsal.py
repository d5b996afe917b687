#!/usr/bin/env python3
"""BENCH rehearsal: the full Sprint 90 rehearsal vs a bare pg_dump + pg_restore of the same prod database.

The rehearsal backs prod up (dump, same-snapshot counts and hashes, checksums, table of contents),
restores that backup into staging (its restore test: compared table by table with the manifest), runs
prod's plan there, validates and attests: the physical floor of any safe rehearsal is one dump and one
restore, which is the anchor, taken at OUR compression and jobs (the backup role's backup_compression
and backup_jobs, the rehearsal role's rehearsal_restore_jobs):

    anchor = pg_dump -Fd -j<backup_jobs> -Z<backup_compression> + pg_restore -j<rehearsal_restore_jobs>

Both are measured in the same run, on the same data, alternately (medians), at two scales of the
Sprint 90 prod fixture, one line per scale:

    make bench BENCH=rehearsal
    BENCH rehearsal scale=300 db_bytes=... ours_s=... anchor_s=... ratio=... runs=3 loadavg=...
    BENCH rehearsal scale=1000 db_bytes=... ours_s=... anchor_s=... ratio=... runs=2 loadavg=...

PGSAFE_BENCH_SCALES (default "300,1000": about 470 MB and 1.2 GB) and PGSAFE_BENCH_RUNS (default "3,2",
one count per scale: fewer repeats at the large one) change that. PGSAFE_BENCH_GZIP6=1 also times
pg_dump/pg_restore as they come (gzip level 6) and prints ratio_vs_gzip6.

Own cluster: bench_rehearsal (55456); templates of each scale are kept in it between runs (built once),
the cluster is stopped at the end. The rehearsal's per-phase timeline is printed as ``# phases`` on stderr.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import pg  # noqa: E402

SCALES = [float(s) for s in os.environ.get("PGSAFE_BENCH_SCALES", "300,1000").split(",") if s.strip()]
RUNS = [int(r) for r in os.environ.get("PGSAFE_BENCH_RUNS", "3,2").split(",") if r.strip()]
GZIP6 = os.environ.get("PGSAFE_BENCH_GZIP6", "") not in ("", "0")
SOURCE = ("bench_rehearsal", 55456)


def _defaults(role: str) -> dict:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


BACKUP = _defaults("backup")
DUMP_JOBS, COMPRESSION = int(BACKUP["backup_jobs"]), int(BACKUP["backup_compression"])
RESTORE_JOBS = int(_defaults("rehearsal")["rehearsal_restore_jobs"])


def log(msg: str) -> None:
    print("# " + msg, file=sys.stderr, flush=True)


def bare_dump_restore(server: pg.Server, source_db: str, work: Path, compress: tuple) -> float:
    target = server.create_database()
    dump_dir = work / "bare"
    passfile = work / "pgpass"
    passfile.write_text(f"*:*:*:*:{server.libpq['password']}\n")
    passfile.chmod(0o600)
    env = dict(os.environ, PGPASSFILE=str(passfile))
    common = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres"]
    bindir = pg.pgclusters._native_bindir()
    start = time.monotonic()
    subprocess.run([str(bindir / "pg_dump"), *common, "-Fd", f"-j{DUMP_JOBS}", *compress, "-f", str(dump_dir),
                    source_db], env=env, check=True)
    subprocess.run([str(bindir / "pg_restore"), *common, f"-j{RESTORE_JOBS}", "-d", target, str(dump_dir)],
                   env=env, check=True)
    elapsed = time.monotonic() - start
    shutil.rmtree(dump_dir)
    server.drop_database(target)
    return elapsed


def rehearsal(server: pg.Server, source_db: str, work: Path, n: str) -> float:
    staging = server.create_database()
    inv_dir = work / f"inv{n}"
    inventory = pg.write_inventory(inv_dir, {"prod": (server, source_db), "staging": (server, staging)},
                                   extra_vars={"backup_destinations": [str(work / f"b1-{n}"), str(work / f"b2-{n}")]},
                                   shipped_plans=True)
    artifacts = work / f"artifacts{n}"
    start = time.monotonic()
    result = pg.run_playbook("sprint90_rehearsal.yml", inventory=str(inventory), timeout=7200,
                             env={"PGSAFE_ARTIFACTS_ROOT": str(artifacts)})
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:])
        raise SystemExit("rehearsal failed: see above")
    for report in sorted(glob.glob(str(artifacts / "*/sprint90_rehearsal/latest/report.json"))):
        phases = json.loads(Path(report).read_text()).get("timeline") or []
        log(f"phases {Path(report).parts[-4]}: " + " ".join(f"{p['phase']}={p['seconds']}" for p in phases))
    for backups in (work / f"b1-{n}", work / f"b2-{n}"):
        shutil.rmtree(backups, ignore_errors=True)
    server.drop_database(staging)
    return elapsed


def measure(server: pg.Server, scale: float, runs: int, work: Path) -> str:
    template = server.ensure_template("prod", scale)
    size = server.execute("postgres", "SELECT pg_database_size(%s)", (template,))[0][0]
    ours, anchor, gzip6 = [], [], []
    for n in range(runs):
        with server.sprint90_database("prod", scale) as source:
            anchor.append(bare_dump_restore(server, source, work, ("-Z", str(COMPRESSION))))
            if GZIP6:
                gzip6.append(bare_dump_restore(server, source, work, ()))
            ours.append(rehearsal(server, source, work, f"{scale:g}-{n}"))
        log(f"scale {scale:g} run {n + 1}/{runs}: ours {ours[-1]:.1f} s, anchor {anchor[-1]:.1f} s")
    o, a = statistics.median(ours), statistics.median(anchor)
    line = (f"BENCH rehearsal scale={scale:g} db_bytes={size} ours_s={o:.3f} "
            f"anchor=pg_dump_Fd_j{DUMP_JOBS}_Z{COMPRESSION}+pg_restore_j{RESTORE_JOBS} anchor_s={a:.3f} "
            f"ratio={o / a:.3f}")
    if gzip6:
        line += f" anchor_gzip6_s={statistics.median(gzip6):.3f} ratio_vs_gzip6={o / statistics.median(gzip6):.3f}"
    return line + f" runs={runs} loadavg={os.getloadavg()[0]:.1f}"


def main() -> int:
    server = pg.start_server(SOURCE)
    try:
        with tempfile.TemporaryDirectory(prefix="pgsafe-bench-") as tmp:
            for i, scale in enumerate(SCALES):
                print(measure(server, scale, RUNS[min(i, len(RUNS) - 1)], Path(tmp)), flush=True)
    finally:
        pg.pgclusters.stop(*SOURCE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
