#!/usr/bin/env python3
"""Benchmark: the exports fix under load, online strategy vs rewrite (the anchor).

    .venv/bin/python bench/typefix.py        (make bench BENCH=typefix)

Own cluster on port 55455 (stopped at the end).  A template database holds the prod drift of the exports
pair at size: ``bazaar-vid_exports`` 1,000,000 rows (ids as text), ``bazaar-vid_export_analytics``
3,000,000 rows, plus users and projects (PGSAFE_BENCH_TYPEFIX_EXPORTS scales it; analytics = 3x).  Each run
copies the template, starts pgbench (4 clients, -M simple, a script that reads and writes both tables by
export id, spelled as an untyped literal so it works before and after the change) and a probe that writes
to both tables every 10 ms and records its longest write, then runs pgsafe_column_types with the prod plan
(3 columns of exports + analytics.export_id, the 3 FKs) with one strategy.  Reported: the probe's longest
stall and the pgbench transactions that failed (failed + aborted clients), and the wall time of the online
change over the rewrite's (``wall_ratio``, side by side on the same cluster and load), medians over
PGSAFE_BENCH_RUNS runs (default 1: a run takes minutes).  Targets: online max stall <= 50 ms, 0 failed,
wall_ratio <= 2.0.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from tests.module_runs import use_project_module_utils  # noqa: E402

use_project_module_utils()

import pgclusters  # noqa: E402
import sprint90_fixtures  # noqa: E402

from ansible.module_utils.pgsafe_connection import libpq_environment  # noqa: E402
from tests import pg  # noqa: E402
from tests.typefix_support import PROD_CHANGES, PROD_FKS, spawn_module  # noqa: E402

NAME, PORT = "bench_typefix", 55455
RUNS = int(os.environ.get("PGSAFE_BENCH_RUNS", "1"))
# The batch time budget a run uses: the schema_fix role's default.
BATCH_TARGET_MS = int(yaml.safe_load((ROOT / "roles/schema_fix/defaults/main.yml").read_text())["schema_fix_batch_target_ms"])
EXPORTS_N = int(os.environ.get("PGSAFE_BENCH_TYPEFIX_EXPORTS", "1000000"))
ANALYTICS_N = 3 * EXPORTS_N
CLIENTS = 4
TEMPLATE = "typefix_tpl_{0}".format(EXPORTS_N)
LOCK_TIMEOUT = "100ms"

PGBENCH_SCRIPT = """\\set n random(1, {n})
SELECT md5('export' || :n)::uuid::text AS eid \\gset
SELECT id, status, download_count FROM "bazaar-vid_exports" WHERE id = ':eid';
UPDATE "bazaar-vid_exports" SET download_count = download_count + 1, last_downloaded_at = now() WHERE id = ':eid';
INSERT INTO "bazaar-vid_export_analytics" (export_id, event, created_at) VALUES (':eid', 'viewed', now());
SELECT count(*) FROM "bazaar-vid_export_analytics" WHERE export_id = ':eid';
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build_template(server):
    rows = server.execute("postgres", "SELECT datistemplate FROM pg_database WHERE datname = %s", (TEMPLATE,))
    if rows and rows[0][0]:
        return
    if rows:
        server.drop_database(TEMPLATE)
    t0 = time.monotonic()
    server.create_database(TEMPLATE)
    conn = server.connect(TEMPLATE, autocommit=False)
    users, projects = max(10, EXPORTS_N // 1000), max(20, EXPORTS_N // 200)
    with conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '256MB'")
        ddl = "\n".join([sprint90_fixtures.USER, sprint90_fixtures.PROJECT])
        cur.execute(ddl)
        tables = sprint90_fixtures.exports_ddl("text") + "\n" + sprint90_fixtures.analytics_ddl("text")
        creates = [s for s in tables.split(";") if s.strip().startswith("CREATE TABLE")]
        indexes = [s for s in tables.split(";") if s.strip().startswith("CREATE INDEX")]
        for stmt in creates:
            cur.execute(stmt)
        cur.execute("""INSERT INTO "bazaar-vid_user" (id, name, email)
                       SELECT md5('user' || i)::uuid::text, 'user ' || i, 'u' || i || '@example.com'
                         FROM generate_series(1, %s) i""", (users,))
        cur.execute("""INSERT INTO "bazaar-vid_project" (id, "userId", title, props)
                       SELECT md5('project' || i)::uuid, md5('user' || (1 + i %% %s))::uuid::text, 'p' || i, '{}'
                         FROM generate_series(1, %s) i""", (users, projects))
        cur.execute("""INSERT INTO "bazaar-vid_exports" (id, user_id, project_id, render_id, status, metadata,
                                                         created_at)
                       SELECT md5('export' || i)::uuid::text, md5('user' || (1 + (i %% %s) %% %s))::uuid::text,
                              md5('project' || (1 + i %% %s))::uuid::text, 'render-' || i,
                              (ARRAY['pending', 'rendering', 'completed', 'failed'])[1 + i %% 4],
                              jsonb_build_object('fps', 30), now() - i * interval '1 second'
                         FROM generate_series(1, %s) i""", (projects, users, projects, EXPORTS_N))
        cur.execute("""INSERT INTO "bazaar-vid_export_analytics" (export_id, event, event_data, created_at)
                       SELECT md5('export' || (1 + i %% %s))::uuid::text,
                              (ARRAY['started', 'progress', 'completed', 'viewed'])[1 + i %% 4],
                              jsonb_build_object('step', i %% 6), now() - i * interval '1 second'
                         FROM generate_series(1, %s) i""", (EXPORTS_N, ANALYTICS_N))
        for stmt in indexes:
            cur.execute(stmt)
    conn.commit()
    conn.close()
    vac = server.connect(TEMPLATE)
    vac.cursor().execute("VACUUM ANALYZE")
    vac.close()
    server.execute("postgres", 'ALTER DATABASE "{0}" WITH is_template true'.format(TEMPLATE))
    log("template {0}: {1} exports, {2} analytics in {3:.0f}s".format(TEMPLATE, EXPORTS_N, ANALYTICS_N,
                                                                     time.monotonic() - t0))


class Probe(threading.Thread):
    """Writes to both tables every 10 ms; records the longest write."""

    def __init__(self, server, db, export_id):
        super().__init__(daemon=True)
        self.server, self.db, self.export_id = server, db, export_id
        self.stop, self.max_stall, self.errors, self.writes = threading.Event(), 0.0, [], 0
        self.slow = []  # (wall time, seconds) of writes slower than 50 ms

    def run(self):
        conn = self.server.connect(self.db)
        cur = conn.cursor()
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                cur.execute('UPDATE "bazaar-vid_exports" SET progress = (progress + 1) %% 100 WHERE id = %s',
                            (self.export_id,))
                cur.execute("INSERT INTO \"bazaar-vid_export_analytics\" (export_id, event, created_at) "
                            "VALUES (%s, 'progress', now())", (self.export_id,))
            except Exception as exc:  # noqa: BLE001 - a failed probe write is a finding, not a crash
                self.errors.append(str(exc).strip()[:200])
                if conn.closed:
                    conn = self.server.connect(self.db)
                    cur = conn.cursor()
            took = time.monotonic() - t0
            self.max_stall = max(self.max_stall, took)
            if took > 0.05:
                self.slow.append((time.time() - took, took))
            self.writes += 1
            time.sleep(0.01)
        conn.close()


class Load(threading.Thread):
    """Back-to-back pgbench runs (-T 10) until stopped; sums failed transactions and aborted clients."""

    def __init__(self, server, db, script):
        super().__init__(daemon=True)
        self.server, self.db, self.script = server, db, script
        self.stop, self.failed, self.transactions, self.notes = threading.Event(), 0, 0, []

    def run(self):
        params = self.server.module_params(self.db)
        with libpq_environment(params) as env:
            while not self.stop.is_set():
                proc = subprocess.run(["pgbench", "-n", "-M", "simple", "-c", str(CLIENTS), "-j", "2", "-T", "5",
                                       "-f", self.script, self.db], env=env, capture_output=True, text=True,
                                      check=False)
                out = proc.stdout + proc.stderr
                tx = re.search(r"number of transactions actually processed: (\d+)", out)
                failed = re.search(r"number of failed transactions: (\d+)", out)
                aborted = len(re.findall(r"client \d+ aborted", out))
                self.transactions += int(tx.group(1)) if tx else 0
                self.failed += (int(failed.group(1)) if failed else 0) + aborted
                if aborted or proc.returncode not in (0,):
                    self.notes.append(" ".join(out.split())[-300:])


def one_run(server, strategy, script):
    db = server.create_database(template=TEMPLATE)
    try:
        export_id = server.execute(db, 'SELECT id FROM "bazaar-vid_exports" ORDER BY id LIMIT 1')[0][0]
        load, probe = Load(server, db, script), Probe(server, db, export_id)
        load.start()
        probe.start()
        time.sleep(3)
        baseline = probe.max_stall
        args = dict(server.module_params(db), run_id="bench-" + strategy, changes=PROD_CHANGES, foreign_keys=PROD_FKS,
                    orphan_policy="quarantine", strategy=strategy, lock_timeout=LOCK_TIMEOUT, retries=20,
                    backoff_seconds=0.2, backoff_max_seconds=2.0, batch_size=5000, batch_target_ms=BATCH_TARGET_MS,
                    disk_margin_bytes=0, guard_override="benchmark on a throwaway copy")
        t0 = time.monotonic()
        proc = spawn_module("pgsafe_column_types", args)
        out, err = proc.communicate()
        total = time.monotonic() - t0
        time.sleep(2)
        probe.stop.set()
        load.stop.set()
        probe.join()
        load.join()
        try:
            result = json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"failed": True, "msg": (out + err)[-2000:]}
        if result.get("failed"):
            raise SystemExit("{0} run failed: {1}".format(strategy, result.get("msg")))
        types = server.execute(db, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                                   "'\"bazaar-vid_exports\"'::regclass AND attname = 'id'")[0][0]
        assert types == "uuid", types
        retries = sum(1 for a in result.get("attempts", []) if a["outcome"] != "ok")
        steps = {}
        for a in result.get("attempts", []):
            key = a["step"].split(" on ")[0].split(" bazaar")[0]
            steps[key] = steps.get(key, 0) + a["seconds"]
        log("{0} events: {1}".format(strategy, "; ".join(result.get("events", []))))
        log("{0} steps: {1}".format(strategy, ", ".join("{0}={1:.2f}s".format(k, v) for k, v in steps.items())))
        for wall, took in sorted(probe.slow, key=lambda x: -x[1])[:5]:
            during = [a["step"] for a in result.get("attempts", []) if "started_at" in a
                      and a["started_at"] - 0.01 <= wall + took and wall <= a["started_at"] + a["seconds"] + 0.01]
            log("{0}: probe write of {1:.3f}s during: {2}".format(strategy, took, ", ".join(during) or
                                                                 "no locking step (I/O or CPU)"))
        log("{0}: change {1:.1f}s, probe max stall {2:.3f}s (baseline {3:.3f}s), pgbench {4} tx, failed {5}, "
            "probe errors {6}, lock retries {7}{8}".format(
                strategy, total, probe.max_stall, baseline, load.transactions, load.failed, len(probe.errors), retries,
                (" notes: " + " | ".join(load.notes[:2])) if load.notes else ""))
        return {"stall": probe.max_stall, "failed": load.failed + len(probe.errors), "total": total,
                "tx": load.transactions}
    finally:
        server.drop_database(db)


def main():
    server = pg.start_server((NAME, PORT))
    script = ROOT / ".bench" / "typefix_pgbench.sql"
    script.parent.mkdir(exist_ok=True)
    script.write_text(PGBENCH_SCRIPT.format(n=EXPORTS_N))
    try:
        build_template(server)
        results = {"online": [], "rewrite": []}
        for _ in range(RUNS):
            for strategy in ("online", "rewrite"):
                results[strategy].append(one_run(server, strategy, str(script)))
        med = {s: {k: statistics.median(r[k] for r in rs) for k in ("stall", "failed", "total", "tx")}
               for s, rs in results.items()}
        ours, anchor = med["online"]["stall"], med["rewrite"]["stall"]
        wall_ratio = med["online"]["total"] / med["rewrite"]["total"] if med["rewrite"]["total"] else float("nan")
        print("BENCH typefix max_stall_ms={0:.0f} failed_online={1} wall_ratio={2:.2f} online_wall_s={3:.1f} "
              "rewrite_wall_s={4:.1f} rewrite_stall_ms={5:.0f} failed_rewrite={6} exports={7} analytics={8} runs={9} "
              "target_max_stall_ms=50 target_wall_ratio=2.0".format(
                  ours * 1000, int(med["online"]["failed"]), wall_ratio, med["online"]["total"],
                  med["rewrite"]["total"], anchor * 1000, int(med["rewrite"]["failed"]), EXPORTS_N, ANALYTICS_N,
                  RUNS), flush=True)
    finally:
        pgclusters.stop(NAME, PORT)


if __name__ == "__main__":
    main()
