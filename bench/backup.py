#!/usr/bin/env python3
"""Benchmark: the whole backup guard against bare pg_dump + pg_restore, like with like, on a ~1 GB database.

ours   = pgsafe_backup (same-snapshot row counts + content hashes, manifest with sha256 of every file,
         roles/tablespaces) + verification (checksums against the manifest, ``pg_restore --list``), then
         the restore test (restore into a scratch database on a second cluster + per-table comparison)
anchor = ``pg_dump -Fd -j2 -Z<level>`` then ``pg_restore -j2`` into a fresh database on the same scratch
         cluster: the same compression level and jobs as ours (BENCH_BACKUP_COMPRESSION, default 1, the
         backup role's default)
Both run alternately on the same database in the same run; medians of BENCH_BACKUP_RUNS (3) runs.
Printed: ``dump_ratio`` (our backup + verification / bare pg_dump) and ``guard_ratio`` (our whole guard:
backup, verification, restore test and comparison / bare pg_dump + bare pg_restore).

Own clusters: bench_backup (55452, source) and bench_backup_scratch (55453), stopped at the end.
BENCH_BACKUP_SCALE (default 800: about 1 GB with the Sprint 90 prod fixtures) sets the size.
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
sys.path.insert(0, str(ROOT / "tools"))

from tests.module_runs import use_project_module_utils  # noqa: E402

use_project_module_utils()

from ansible.module_utils import pgsafe_backup_exec as ex  # noqa: E402
from ansible.module_utils.pgsafe_connection import libpq_environment  # noqa: E402

import pgclusters  # noqa: E402
from tests import pg  # noqa: E402

SOURCE = ("bench_backup", 55452)
SCRATCH = ("bench_backup_scratch", 55453)
SCALE = float(os.environ.get("BENCH_BACKUP_SCALE", "800"))
RUNS = int(os.environ.get("BENCH_BACKUP_RUNS", "3"))
COMPRESSION = int(os.environ.get("BENCH_BACKUP_COMPRESSION", "1"))
JOBS = 2
# Named by the fixture's content too: a database kept from an older fixture is never reused.
DBNAME = "bazaar_vid_bench_%s_%s" % (str(SCALE).replace(".", "_"), pg.sprint90_fixtures.content_hash("prod", 1))


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def ensure_database(server):
    rows = server.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,))
    if rows:
        return
    log("seeding %s at scale %s (once; kept in the bench cluster)" % (DBNAME, SCALE))
    server.drop_database(DBNAME + "_tmp")
    server.create_database(DBNAME + "_tmp")
    conn = server.connect(DBNAME + "_tmp", autocommit=False)
    try:
        pg.sprint90_fixtures.seed(conn, "prod", SCALE)
    finally:
        conn.close()
    conn = server.connect(DBNAME + "_tmp")
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()
    server.execute("postgres", 'ALTER DATABASE "%s" RENAME TO "%s"' % (DBNAME + "_tmp", DBNAME))


def bare_dump_and_restore(params, scratch, work):
    """(pg_dump seconds, pg_restore seconds) of the bare tools at our compression level and jobs."""
    target = work / "anchor"
    shutil.rmtree(target, ignore_errors=True)
    started = time.monotonic()
    with libpq_environment(params, DBNAME) as env:
        subprocess.run([ex.find_binary("pg_dump"), "--no-password", "-Fd", "-j%d" % JOBS, "-Z%d" % COMPRESSION,
                        "-f", str(target), "-d", DBNAME], env=env, check=True, stdin=subprocess.DEVNULL)
    dump_seconds = time.monotonic() - started
    restored = "bench_anchor_restore"
    scratch.drop_database(restored)
    scratch.create_database(restored, template="template0")
    started = time.monotonic()
    with libpq_environment(scratch.module_params(restored), restored) as env:
        subprocess.run([ex.find_binary("pg_restore"), "--no-password", "--no-owner", "--no-acl", "-j%d" % JOBS,
                        "-d", restored, str(target)], env=env, check=True, stdin=subprocess.DEVNULL)
    restore_seconds = time.monotonic() - started
    scratch.drop_database(restored)
    shutil.rmtree(target)
    return dump_seconds, restore_seconds


def ours(params, scratch_params, work):
    dest = work / "ours"
    shutil.rmtree(dest, ignore_errors=True)
    started = time.monotonic()
    taken = ex.take_backup(params, str(dest), ["database"], jobs=JOBS, reason="bench", compression=COMPRESSION)
    _, doc = ex.verify_backup(taken["path"], checks=("checksums", "toc"))
    seconds = time.monotonic() - started
    assert doc["verified"], doc["problems"]
    started = time.monotonic()
    restore = ex.restore_test(taken["path"], taken["manifest"], scratch_params, jobs=JOBS)
    restore_seconds = time.monotonic() - started
    assert restore["status"] == "ok", restore["problems"]
    size = taken["total_size"]
    shutil.rmtree(dest)
    return seconds, restore_seconds, size


def main():
    source = pg.start_server(SOURCE)
    scratch = pg.start_server(SCRATCH)
    work = Path(tempfile.mkdtemp(prefix="pgsafe-bench-backup-", dir=str(ROOT / ".bench")
                                 if (ROOT / ".bench").is_dir() else None))
    try:
        ensure_database(source)
        params = source.module_params(DBNAME)
        scratch_params = scratch.module_params("postgres")
        db_bytes = source.execute("postgres", "SELECT pg_database_size(%s)", (DBNAME,))[0][0]
        log("database %s: %.0f MB" % (DBNAME, db_bytes / 1e6))
        dump_s, bare_restore_s, ours_s, restore_s, sizes = [], [], [], [], []
        for i in range(RUNS):
            if i % 2 == 0:
                bare = bare_dump_and_restore(params, scratch, work)
                o, r, size = ours(params, scratch_params, work)
            else:
                o, r, size = ours(params, scratch_params, work)
                bare = bare_dump_and_restore(params, scratch, work)
            dump_s.append(bare[0])
            bare_restore_s.append(bare[1])
            ours_s.append(o)
            restore_s.append(r)
            sizes.append(size)
            log("run %d: ours %.2fs + restore test %.2fs; pg_dump -Z%d -j%d %.2fs + pg_restore -j%d %.2fs" % (
                i + 1, o, r, COMPRESSION, JOBS, bare[0], JOBS, bare[1]))
        o, r = statistics.median(ours_s), statistics.median(restore_s)
        d, b = statistics.median(dump_s), statistics.median(bare_restore_s)
        # each run's two sides ran back to back: the median of the per-run ratios is less sensitive to
        # load changing between runs on a shared machine
        guard_pairs = statistics.median((x + y) / (u + v) for x, y, u, v in zip(
            ours_s, restore_s, dump_s, bare_restore_s, strict=True))
        print("BENCH backup ours_s=%.3f restore_test_s=%.3f anchor=pg_dump_Fd_j%d_Z%d+pg_restore_j%d "
              "anchor_dump_s=%.3f anchor_restore_s=%.3f dump_ratio=%.3f guard_ratio=%.3f guard_pair_ratio_median=%.3f "
              "db_mb=%.0f dump_mb=%.0f scale=%s runs=%d loadavg=%.1f" % (
                  o, r, JOBS, COMPRESSION, JOBS, d, b, o / d, (o + r) / (d + b), guard_pairs, db_bytes / 1e6,
                  statistics.median(sizes) / 1e6, SCALE, RUNS, os.getloadavg()[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if os.environ.get("BENCH_BACKUP_KEEP_CLUSTERS") != "1":
            pgclusters.stop(*SOURCE)
            pgclusters.stop(*SCRATCH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
