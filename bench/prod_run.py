#!/usr/bin/env python3
"""Benchmark: the whole Sprint 90 prod run under an application-like load, online vs rewrite (the anchor).

    .venv/bin/python bench/prod_run.py        (make bench BENCH=prod_run)

Own clusters: prod on port 55457, the scratch server (the inventory's staging host, where the backup's
restore test goes) on 55459; both stopped at the end.  A template database holds the prod fixture
(tools/sprint90_fixtures.py) with the exports pair at size: ``bazaar-vid_exports`` 1,000,000 rows
(PGSAFE_BENCH_PROD_RUN_EXPORTS), ``bazaar-vid_export_analytics`` 3x that, the fixture's 2 orphans kept
(scaled); every other table at PGSAFE_BENCH_PROD_RUN_SCALE (default 100: 4,000 users, 60,000 messages,
24,000 scenes; the fixture's own scale for 1M exports, 7,463, would make prod about 9 GB).

Each run copies the template, starts the load (6 client connections, one-statement transactions 10 ms
apart, round robin over reads, updates and inserts of exports and analytics, inserts of messages and
api usage metrics, project updates and user reads: only tables the code keeps), measures each
operation's baseline latency for 5 s, then runs playbooks/sprint90_prod.yml end to end (preflight, plan,
gates, fingerprints, backup with restore test, the type change with its 3 FKs, the 5 retirements,
validation, report) with the plan's strategy set to online or rewrite.  The rehearsal gate is passed by
its named override (there is no staging copy here: the rehearsal is bench/rehearsal.py's subject); the
validation is told the application writes to the tables the load writes (``writes`` explanations).

Reported per strategy: the longest writer stall (a write transaction's latency beyond its operation's
baseline) over the run and per phase of the run report's timeline, failed application transactions
(any error), and the wall time.  A sampler records which statements the load's backends waited on
(every 20 ms): ``lock_stall_ms`` is the longest stall of a write seen waiting on a lock, apart from the
stalls of a loaded machine (CPU, I/O) that ``max_stall_ms`` includes.
Target: online max stall <= 50 ms, 0 failed transactions.

Duration: the template takes about 11 min to seed at full size; on the shared 2-core machine at load
average 35 the online type change's backfill adapted its batches to about 100 rows (its 100 ms batch
target) and copied 740,000 exports rows in 11 min, so a full-size online run takes over an hour there.
PGSAFE_BENCH_PROD_RUN_EXPORTS=50000 PGSAFE_BENCH_PROD_RUN_SCALE=5 runs both strategies in about 20 min.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg2
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import load  # noqa: E402
from tests import pg  # noqa: E402

PROD, SCRATCH = ("bench_prod_run", 55457), ("bench_prod_run_scratch", 55459)
EXPORTS_N = int(os.environ.get("PGSAFE_BENCH_PROD_RUN_EXPORTS", "1000000"))
ANALYTICS_N = 3 * EXPORTS_N
SCALE = float(os.environ.get("PGSAFE_BENCH_PROD_RUN_SCALE", "100"))
STRATEGIES = os.environ.get("PGSAFE_BENCH_PROD_RUN_STRATEGIES", "online,rewrite").split(",")
CLIENTS, WARMUP_S = 6, 5.0
APP = "pgsafe_bench_app"
TARGET_MS = 50
EXPORTS, ANALYTICS = '"bazaar-vid_exports"', '"bazaar-vid_export_analytics"'
WRITTEN = ["public.bazaar-vid_exports", "public.bazaar-vid_export_analytics", "public.bazaar-vid_message",
           "public.bazaar-vid_project", "public.bazaar-vid_api_usage_metric"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def exports_at_size():
    """The fixture's counts with the exports pair at EXPORTS_N / ANALYTICS_N (orphans as the scale has them)."""
    fixtures = pg.sprint90_fixtures
    original = fixtures.counts

    def counts(variant, scale=1.0):
        c = original(variant, scale)
        c["exports_ok"] = EXPORTS_N - c["exports_orphan"]
        c["analytics_ok"] = ANALYTICS_N - c["analytics_orphan"]
        return c

    fixtures.counts = counts
    try:
        yield
    finally:
        fixtures.counts = original


def template(server):
    t0 = time.monotonic()
    with exports_at_size():
        name = server.ensure_template("prod", SCALE)
    log(f"template {name} ready in {time.monotonic() - t0:.0f}s")
    return name


def export_id(i: int) -> str:
    return str(uuid.UUID(hashlib.md5(f"export-{i}".encode(), usedforsecurity=False).hexdigest()))  # the fixture's ids


def sample(server, db, n=2000):
    """Existing exports of existing projects: (id, user_id, project_id, project uuid)."""
    ok = EXPORTS_N - pg.sprint90_fixtures.counts("prod", SCALE)["exports_orphan"]
    ids = [export_id(i) for i in random.Random(7).sample(range(1, ok + 1), min(n, ok))]
    rows = server.execute(db, f"""SELECT e.id::text, e.user_id::text, e.project_id::text FROM {EXPORTS} e
                                   JOIN "bazaar-vid_project" p ON p.id::text = e.project_id::text
                                  WHERE e.id::text = ANY(%s)""", (ids,))
    assert rows, "no exports sampled"
    return rows


def operations(rows):
    """The application's transactions: literals untyped (they work before and after the type change)."""
    def pick(rng):
        return rows[rng.randrange(len(rows))]

    def q(sql_text, args_of):
        return lambda cur, rng: cur.execute(sql_text, args_of(rng))

    return [
        load.Op("exports_read", False, q(f"SELECT id, status, download_count FROM {EXPORTS} WHERE id = %s",
                                         lambda r: (pick(r)[0],))),
        load.Op("exports_update", True, q(f"UPDATE {EXPORTS} SET download_count = download_count + 1, "
                                          "last_downloaded_at = now() WHERE id = %s", lambda r: (pick(r)[0],))),
        load.Op("analytics_insert", True, q(f"INSERT INTO {ANALYTICS} (export_id, event, created_at) "
                                            "VALUES (%s, 'viewed', now())", lambda r: (pick(r)[0],))),
        load.Op("exports_insert", True, q(f"INSERT INTO {EXPORTS} (id, user_id, project_id, render_id, status) "
                                          "VALUES (%s, %s, %s, %s, 'pending')",
                                          lambda r: (str(uuid.UUID(int=r.getrandbits(128), version=4)),
                                                     pick(r)[1], pick(r)[2], "bench-" + uuid.uuid4().hex))),
        load.Op("analytics_read", False, q(f"SELECT count(*) FROM {ANALYTICS} WHERE export_id = %s",
                                           lambda r: (pick(r)[0],))),
        load.Op("message_insert", True, q('INSERT INTO "bazaar-vid_message" ("projectId", content, role) '
                                          "VALUES (%s, 'make it blue', 'user')", lambda r: (pick(r)[2],))),
        load.Op("project_update", True, q('UPDATE "bazaar-vid_project" SET "updatedAt" = now() WHERE id = %s',
                                          lambda r: (pick(r)[2],))),
        load.Op("metric_insert", True, q('INSERT INTO "bazaar-vid_api_usage_metric" (provider, model, "userId", '
                                         '"projectId", success, "responseTime") '
                                         "VALUES ('openai', 'gpt-4o', %s, %s, true, 120)",
                                         lambda r: pick(r)[1:3])),
        load.Op("user_read", False, q('SELECT id, email FROM "bazaar-vid_user" WHERE id = %s',
                                      lambda r: (pick(r)[1],))),
    ]


def timeline(artifacts: Path) -> list[tuple[str, float, float]]:
    report = json.loads(next(artifacts.glob("prod/sprint90_prod/*/report.json")).read_text())
    stamp = lambda s: datetime.datetime.fromisoformat(s).timestamp()  # noqa: E731
    return [(p["phase"], stamp(p["started_at"]), stamp(p["finished_at"])) for p in report.get("timeline", [])]


def one_run(prod, scratch, tpl, strategy, work: Path) -> dict:
    db = prod.create_database(template=tpl)
    staging = scratch.create_database()
    connect = lambda: psycopg2.connect(**dict(prod.libpq, dbname=db, application_name=APP))  # noqa: E731
    try:
        plan = yaml.safe_load((ROOT / "inventories/local/host_vars/prod/schema_fix.yml").read_text())
        plan["schema_fix_plan"]["strategy"] = strategy
        inventory = pg.write_inventory(work / f"inv-{strategy}", {"prod": (prod, db), "staging": (scratch, staging)},
                                       extra_vars={"backup_destinations": [str(work / f"b1-{strategy}"),
                                                                           str(work / f"b2-{strategy}")]},
                                       shipped_plans=True)
        extra = {"confirm_database": db, "schema_fix_plan": plan["schema_fix_plan"],
                 "pgsafe_overrides": {"rehearsal": "benchmark: prod run on a throwaway copy, no staging copy"},
                 "validate_explanations": [{"kind": "writes", "table": t} for t in WRITTEN]}
        app = load.AppLoad(connect, operations(sample(prod, db)), clients=CLIENTS).start()
        waits = load.LockWaits(lambda: prod.connect(db), APP)
        waits.start()
        time.sleep(WARMUP_S)
        started = time.time()
        artifacts = work / f"artifacts-{strategy}"
        result = pg.run_playbook("sprint90_prod.yml", inventory=str(inventory), extra_vars=extra, timeout=7200,
                                 env={"PGSAFE_ARTIFACTS_ROOT": str(artifacts)})
        wall = time.time() - started
        time.sleep(1.0)
        app.stop()
        waits.stop()
        if result.returncode != 0:
            log(result.stdout[-6000:])
            raise SystemExit(f"{strategy}: the prod run failed (see above)")
        return summarize(strategy, app.records, waits, started, started + wall, timeline(artifacts))
    finally:
        prod.drop_database(db)
        scratch.drop_database(staging)


def summarize(strategy, records, waits, started, ended, phases) -> dict:
    base = load.baselines(records, started)
    locked = {id(r) for r in waits.waited([r for r in records if r.write])}  # writes seen waiting on a lock

    def stats(recs, p0, p1):
        s = load.window_stats(recs, base, p0, p1)
        s["lock_stall"] = load.window_stats([r for r in recs if id(r) in locked], base, p0, p1)["max_stall"]
        return s

    whole = stats(records, started, ended)
    steps = []
    for phase, p0, p1 in phases:
        s = stats(records, p0, p1)
        steps.append((phase, p1 - p0, s))
        log(f"{strategy} {phase}: {p1 - p0:.1f}s, max writer stall {s['max_stall'] * 1000:.0f} ms "
            f"(behind a lock {s['lock_stall'] * 1000:.0f} ms), {s['txns']} txns, {s['failed']} failed "
            f"{s['errors'] or ''}; waited on: {waits.blockers(p0, p1)}")
    outside = [r for r in records if started <= r.end and r.start <= ended
               and not any(r.start <= p1 and r.end >= p0 for _, p0, p1 in phases)]
    steps.append(("between_phases", 0.0, stats(outside, started, ended)))
    slow = sorted((r for r in records if r.write and started <= r.end), key=lambda r: -load.stall(r, base))[:5]
    for r in slow:
        during = [p for p, p0, p1 in phases if r.start <= p1 and r.end >= p0]
        log(f"{strategy}: {r.op} took {r.seconds * 1000:.0f} ms (baseline {base.get(r.op, 0) * 1000:.1f}) "
            f"in {during}; waited on: {waits.blockers(r.start, r.end)}")
    log(f"{strategy}: baselines " + ", ".join(f"{k}={v * 1000:.1f}ms" for k, v in sorted(base.items())))
    return {"strategy": strategy, "max_stall_ms": whole["max_stall"] * 1000, "failed": whole["failed"],
            "lock_stall_ms": whole["lock_stall"] * 1000, "wall_s": ended - started, "txns": whole["txns"],
            "steps": steps, "errors": whole["errors"], "loadavg": os.getloadavg()[1]}


def main():
    prod, scratch = pg.start_server(PROD), pg.start_server(SCRATCH)
    results = {}
    try:
        tpl = template(prod)
        with tempfile.TemporaryDirectory(prefix="pgsafe-bench-prod-run-", dir=ROOT / ".bench") as tmp:
            for strategy in STRATEGIES:
                r = results[strategy] = one_run(prod, scratch, tpl, strategy, Path(tmp))
                for phase, seconds, s in r["steps"]:
                    print(f"BENCH prod_run_step strategy={strategy} step={phase} "
                          f"max_stall_ms={s['max_stall'] * 1000:.0f} lock_stall_ms={s['lock_stall'] * 1000:.0f} "
                          f"failed_txns={s['failed']} seconds={seconds:.1f}", flush=True)
    finally:
        pg.pgclusters.stop(*PROD)
        pg.pgclusters.stop(*SCRATCH)
    ours, anchor = results.get("online"), results.get("rewrite")
    if ours:
        line = (f"BENCH prod_run max_stall_ms={ours['max_stall_ms']:.0f} failed_txns={ours['failed']} "
                f"wall_s={ours['wall_s']:.1f} lock_stall_ms={ours['lock_stall_ms']:.0f} txns={ours['txns']}")
        if anchor:
            line += (f" anchor=rewrite anchor_max_stall_ms={anchor['max_stall_ms']:.0f} "
                     f"anchor_failed_txns={anchor['failed']} anchor_wall_s={anchor['wall_s']:.1f} "
                     f"anchor_lock_stall_ms={anchor['lock_stall_ms']:.0f}")
        print(line + f" exports={EXPORTS_N} analytics={ANALYTICS_N} scale={SCALE:g} clients={CLIENTS} "
                     f"target_max_stall_ms={TARGET_MS} loadavg_5m=" +
              "/".join(f"{r['loadavg']:.1f}" for r in results.values()), flush=True)


if __name__ == "__main__":
    (ROOT / ".bench").mkdir(exist_ok=True)
    main()
