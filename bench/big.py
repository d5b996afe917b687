#!/usr/bin/env python3
"""Benchmark: the backup guard of a prod run on a big database, pgBackRest-guarded against dump-guarded.

dump-guarded (backup_engine=pg_dump, today's path)
    whole-database pg_dump with manifest (pgsafe_backup) + verification (checksums, pg_restore --list) + restore
    test into a scratch database with the per-table comparison, then the targeted dumps of the tables the Sprint 90
    plan touches (dumped, verified, restore-tested), as every step takes them.
pgBackRest-guarded (backup_engine=pgbackrest)
    the backup role's runbook (pgsafe_pgbackrest_run.take_physical_backup): incremental backup onto the schedule's
    full one (taken once before, untimed, as a nightly full would be), PITR target + archived WAL, pgbackrest verify
    of the repository, delta restore test into a kept scratch cluster (started, every table read in full, stopped),
    recorded; the same targeted dumps; then the guard (guard_physical: pgbackrest info + verify again).
Both sides run alternately on the same database after the same small churn (1% of the largest table's pages
updated), BENCH_BIG_RUNS (2) times; medians. The plan's own steps are the same SQL in both runs and not timed.

Printed: ``BENCH big scale=<n> ratio=<pgBackRest-guarded / dump-guarded> ...``.
Own clusters: bench_big (55448, archiving its WAL, source), bench_big_scratch (55449, the dump side's restore
tests) and the physical restore-test cluster started on BENCH_BIG_RESTORE_TEST_PORT (56079).
PGSAFE_BENCH_SCALE (default 3000: several GB with the Sprint 90 prod fixtures) sets the size.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from tests.module_runs import use_project_module_utils  # noqa: E402

use_project_module_utils()

from ansible.module_utils import pgsafe_backup_exec as ex  # noqa: E402
from ansible.module_utils import pgsafe_pgbackrest_run as pbr  # noqa: E402
from ansible.module_utils.pgsafe_backup_records import fetch_backup_records, record_backup  # noqa: E402
from ansible.module_utils.pgsafe_connection import connect  # noqa: E402

import pgclusters  # noqa: E402
from tests import pg  # noqa: E402
from tests import pgbackrest_support as ps  # noqa: E402

SOURCE = ("bench_big", 55448)
SCRATCH = ("bench_big_scratch", 55449)  # the dump side's restore tests (off the archiving cluster)
RESTORE_TEST_PORT = int(os.environ.get("BENCH_BIG_RESTORE_TEST_PORT", "56079"))  # the physical restore test
SCALE = float(os.environ.get("PGSAFE_BENCH_SCALE", "3000"))
RUNS = int(os.environ.get("BENCH_BIG_RUNS", "2"))
JOBS = 2
TOUCHED = ["public.bazaar-vid_exports", "public.bazaar-vid_export_analytics"]
DBNAME = "bazaar_vid_big_%s_%s" % (str(SCALE).replace(".", "_"), pg.sprint90_fixtures.content_hash("prod", 1))
BASE = pgclusters.DATA_ROOT / "pgbackrest-bench-big"


def log(msg):
    print("# " + msg, file=sys.stderr, flush=True)


class Runbook:
    """The module's inputs for the pgBackRest runbook, outside Ansible (what the backup role passes)."""

    check_mode = False

    def __init__(self, params):
        self.params = params

    def connect(self, params=None, **kwargs):
        return connect(params or self.params, **kwargs)

    def diff_of(self, before, after):
        return None


def ensure_database(server):
    # The physical side backs up the whole cluster: only this scale's database may be in it.
    for (other,) in server.execute("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'bazaar\\_vid\\_big\\_%%' "
                                               "AND datname NOT IN (%s, %s)", (DBNAME, DBNAME + "_tmp")):
        log("dropping %s (another scale's database)" % other)
        server.drop_database(other)
    if server.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (DBNAME,)):
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


def churn(server):
    """Change 1% of the largest table's pages (a day of writes between two runs, for the incremental backup)."""
    schema, table, column = server.execute(
        DBNAME, "SELECT n.nspname, c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1 WHERE c.relkind = 'r' "
                "AND n.nspname = 'public' ORDER BY pg_relation_size(c.oid) DESC LIMIT 1")[0]
    from psycopg2 import sql
    server.execute(DBNAME, sql.SQL("UPDATE {t} SET {c} = {c} WHERE ctid IN (SELECT ctid FROM {t} TABLESAMPLE SYSTEM (1))")
                   .format(t=sql.Identifier(schema, table), c=sql.Identifier(column)))


def guarded_backup(params, scratch_params, dest, covers):
    """One logical backup as the role takes it: dump + manifest, verification, restore test, recorded."""
    taken = ex.take_backup(params, str(dest), covers, jobs=JOBS, reason="bench big", compression=1)
    manifest, doc = ex.verify_backup(taken["path"], checks=("checksums", "toc", "restore"), scratch_params=scratch_params,
                                     jobs=JOBS, write=True)
    assert doc["verified"] and doc["restore_tested"], doc["problems"]
    record_backup(params, manifest, doc["manifest_sha256"], [taken["path"]], doc)
    return taken


def dump_guarded(params, scratch_params, work):
    shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    whole = guarded_backup(params, scratch_params, work, ["database"])
    full_s = time.monotonic() - started
    guarded_backup(params, scratch_params, work, TOUCHED)
    seconds = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)
    return seconds, full_s, whole["total_size"]


def pgbackrest_params(params, kind):
    return dict(params, stanza="bench_big", base_dir=str(BASE), run_as=ps.OS_USER, pg_path=None, socket_path=None,
                backup_type=kind, full_max_age_days=7, process_max=JOBS, set_archive_command=True,
                restore_test_path=str(BASE / "restore-test"), restore_test_port=RESTORE_TEST_PORT, pg_bin_dir=None,
                reason="bench big", operator="bench", run_id=None)


def pgbackrest_guarded(params, scratch_params, work):
    shutil.rmtree(work, ignore_errors=True)
    started = time.monotonic()
    physical = pbr.take_physical_backup(Runbook(pgbackrest_params(params, "auto")))
    physical_s = time.monotonic() - started
    guarded_backup(params, scratch_params, work, TOUCHED)
    conn = connect(params)
    try:
        with conn.cursor() as cur:
            records, now = fetch_backup_records(cur)
            cur.execute("SELECT current_database()")
            database = cur.fetchone()[0]
    finally:
        conn.close()
    record, refusal = pbr.guard_physical(records, now, database, 180, {"stanza": "bench_big", "base_dir": str(BASE),
                                                                       "run_as": ps.OS_USER}, "bench", "bench")
    assert record is not None, refusal
    seconds = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)
    return seconds, physical_s, physical


def main():
    source = ps.archiving_server(*SOURCE)
    scratch = pg.start_server(SCRATCH)
    work = ROOT / ".pgdata" / "bench-big-work"
    try:
        ensure_database(source)
        params = source.module_params(DBNAME)
        scratch_params = scratch.module_params("postgres")
        db_bytes = source.execute("postgres", "SELECT pg_database_size(%s)", (DBNAME,))[0][0]
        log("database %s: %.0f MB; loadavg %.1f" % (DBNAME, db_bytes / 1e6, os.getloadavg()[0]))
        shutil.rmtree(BASE, ignore_errors=True)  # a repository of this run's backups only (verify reads it all)
        started = time.monotonic()
        full = pbr.take_physical_backup(Runbook(pgbackrest_params(params, "full")))
        log("the schedule's full pgBackRest backup (untimed in the ratio): %.1fs (%s)" % (
            time.monotonic() - started, full["label"]))
        ours, dumps, ratios = [], [], []
        for i in range(RUNS):
            churn(source)
            if i % 2 == 0:
                d = dump_guarded(params, scratch_params, work)
                o = pgbackrest_guarded(params, scratch_params, work)
            else:
                o = pgbackrest_guarded(params, scratch_params, work)
                d = dump_guarded(params, scratch_params, work)
            ours.append(o)
            dumps.append(d)
            ratios.append(o[0] / d[0])
            log("run %d: pgBackRest-guarded %.1fs (%s backup, verify, restore test: %.1fs); dump-guarded %.1fs "
                "(whole dump, verify, restore test: %.1fs); loadavg %.1f" % (
                    i + 1, o[0], o[2]["type"], o[1], d[0], d[1], os.getloadavg()[0]))
        o_s = statistics.median(x[0] for x in ours)
        d_s = statistics.median(x[0] for x in dumps)
        print("BENCH big scale=%g ratio=%.3f pair_ratio_median=%.3f pgbackrest_guarded_s=%.1f dump_guarded_s=%.1f "
              "physical_s=%.1f whole_dump_s=%.1f full_pgbackrest_s=%.1f db_mb=%.0f dump_mb=%.0f runs=%d loadavg=%.1f" % (
                  SCALE, o_s / d_s, statistics.median(ratios), o_s, d_s, statistics.median(x[1] for x in ours),
                  statistics.median(x[1] for x in dumps), full["seconds"], db_bytes / 1e6,
                  statistics.median(x[2] for x in dumps) / 1e6, RUNS, os.getloadavg()[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ps.stop_datadir(BASE / "restore-test")
        if os.environ.get("BENCH_BIG_KEEP_CLUSTERS") != "1":
            pgclusters.stop(*SOURCE)
            pgclusters.stop(*SCRATCH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
