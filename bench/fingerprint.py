#!/usr/bin/env python3
"""Benchmark: fingerprint every table of a ~1 GB Sprint 90 database vs pg_dump --data-only to /dev/null.

    .venv/bin/python bench/fingerprint.py        (make bench BENCH=fingerprint)

Own cluster on port 55454 (stopped at the end).  The scale giving ~1 GB is measured first (seed at
scale 10, extrapolate; PGSAFE_BENCH_FP_MB sets the target size, PGSAFE_BENCH_FP_SCALE forces a
scale); the seeded database is kept between runs of the benchmark in that cluster's data directory.
Both sides read the same tables in the same run, alternating, several times; medians are reported.
Every run's fingerprint must equal the first (1 worker, every table in one scan): at 2 workers the large
tables are read in block-range pieces, so this also checks the pieces add up to the single scan.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from tests.module_runs import use_project_module_utils  # noqa: E402

use_project_module_utils()

import pgclusters  # noqa: E402
import sprint90_fixtures  # noqa: E402

from ansible.module_utils.pgsafe_connection import libpq_environment  # noqa: E402
from ansible.module_utils.pgsafe_fingerprint import fingerprint, parse_table_key  # noqa: E402
from tests import pg  # noqa: E402

NAME, PORT = "bench_fingerprint", 55454
RUNS = int(os.environ.get("PGSAFE_BENCH_RUNS", "3"))
TARGET_MB = float(os.environ.get("PGSAFE_BENCH_FP_MB", "1024"))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def calibrate(server):
    """Scale at which a prod seed is about TARGET_MB (measured at scale 10, extrapolated)."""
    forced = os.environ.get("PGSAFE_BENCH_FP_SCALE")
    if forced:
        return int(forced)
    db = server.create_database("fp_calibrate")
    try:
        empty = server.execute(db, "SELECT pg_database_size(current_database())")[0][0]
        conn = server.connect(db, autocommit=False)
        sprint90_fixtures.seed(conn, "prod", 10)
        conn.close()
        size = server.execute(db, "SELECT pg_database_size(current_database())")[0][0]
    finally:
        server.drop_database(db)
    per_scale = (size - empty) / 10.0
    return max(10, int(round((TARGET_MB * 1024 * 1024 - empty) / per_scale)))


def finish(server, name):
    """Set hint bits (both sides then read the same clean pages) and mark the database as complete."""
    conn = server.connect(name)
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM (FREEZE, ANALYZE)")
            cur.execute("CREATE SCHEMA bench_meta")
            cur.execute("CREATE TABLE bench_meta.seeded (scale integer)")
    finally:
        conn.close()


def ensure_database(server, scale):
    """A seeded database at about ``scale``: an existing complete one within 10 % is reused."""
    prefix = "fp_{0}_prod_".format(sprint90_fixtures.content_hash("prod", 1))  # never an older fixture's data
    for (existing,) in server.execute("postgres", "SELECT datname FROM pg_database WHERE starts_with(datname, %s) "
                                                  "ORDER BY datname", (prefix,)):
        old = int(existing.rsplit("_", 1)[1])
        if abs(old - scale) <= scale * 0.1 and server.execute(
                existing, "SELECT to_regclass('bench_meta.seeded') IS NOT NULL")[0][0]:
            return existing, old
    name = prefix + str(scale)
    exists = server.execute("postgres", "SELECT count(*) FROM pg_database WHERE datname = %s", (name,))[0][0]
    if exists:
        ok = server.execute(name, "SELECT to_regclass('bench_meta.seeded') IS NOT NULL")[0][0]
        if ok:
            return name, scale
        server.drop_database(name)
    server.create_database(name)
    log("seeding {0} at scale {1} ...".format(name, scale))
    started = time.time()
    conn = server.connect(name, autocommit=False)
    sprint90_fixtures.seed(conn, "prod", scale)
    conn.close()
    finish(server, name)
    log("seeded in {0:.0f}s".format(time.time() - started))
    return name, scale


def run_fingerprint(server, db, workers):
    conn = server.connect(db)
    extra = []

    def more():
        extra.append(server.connect(db))
        return extra[-1]
    try:
        started = time.perf_counter()
        fp = fingerprint(conn, exclude_schemas=("bench_meta",), connect=more, workers=workers)
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
        for c in extra:
            c.close()
    return elapsed, fp


def run_pg_dump(server, db, tables):
    pg_dump = Path(pgclusters._native_bindir() or "/usr/lib/postgresql/15/bin") / "pg_dump"
    args = [str(pg_dump), "--data-only", "--no-sync", "-f", "/dev/null"]
    for key in tables:
        schema, table = parse_table_key(key)
        args += ["-t", '"{0}"."{1}"'.format(schema.replace('"', '""'), table.replace('"', '""'))]
    params = server.module_params(db)
    with libpq_environment(params, db) as env:
        started = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started


def main():
    server = pg.start_server((NAME, PORT))
    try:
        scale = calibrate(server)
        db, scale = ensure_database(server, scale)
        size = server.execute(db, "SELECT pg_database_size(current_database())")[0][0]
        _, reference = run_fingerprint(server, db, 1)  # warm the cache; the table list both sides read
        tables = sorted(reference["tables"])
        rows = sum(t["rows"] for t in reference["tables"].values())
        times = {1: [], 2: [], "dump": []}
        for _ in range(RUNS):
            times["dump"].append(run_pg_dump(server, db, tables))
            for workers in (1, 2):
                elapsed, fp = run_fingerprint(server, db, workers)
                assert fp["tables"] == reference["tables"], "fingerprints differ between runs"
                times[workers].append(elapsed)
        anchor = statistics.median(times["dump"])
        for workers in (1, 2):
            ours = statistics.median(times[workers])
            print("BENCH fingerprint ours_s={0:.3f} anchor=pg_dump_data_only_devnull anchor_s={1:.3f} ratio={2:.3f} "
                  "workers={3} tables={4} rows={5} db_bytes={6} scale={7} runs={8}".format(
                      ours, anchor, ours / anchor, workers, len(tables), rows, size, scale, RUNS), flush=True)
    finally:
        pgclusters.stop(NAME, PORT)


if __name__ == "__main__":
    main()
