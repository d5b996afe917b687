#!/usr/bin/env python3
"""Benchmark: the safe table merge against a bare INSERT ... SELECT (the anchor).

    .venv/bin/python bench/table_merge.py        (make bench BENCH=table_merge)

Own cluster on port 55458 (stopped at the end).  A template database holds dev's drift at scale
PGSAFE_BENCH_MERGE_SCALE (default 400: 100,000 rows in the old camelCase ``api_usage_metric``).  Each run
copies the template, then either
  * ours: pgsafe_merge.apply - target created from the reference DDL, source locked, precheck (casts,
    NOT NULL, FK parents), collisions, INSERT, proof (EXCEPT both ways + ordered md5 of both sides +
    count again), source retired into pgsafe_quarantine - one transaction; or
  * anchor: the same CREATE TABLE + indexes, ``INSERT INTO target (...) SELECT ... FROM source`` and
    ``ALTER TABLE source SET SCHEMA`` in one transaction, with no check at all.
Medians over PGSAFE_BENCH_RUNS runs (default 3).
"""
from __future__ import annotations

import os
import statistics
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
from psycopg2 import sql  # noqa: E402

from ansible.module_utils import pgsafe_merge, pgsafe_meta, pgsafe_retire  # noqa: E402
from tests import pg  # noqa: E402
from tests.cleanup_helpers import DEV_MAP, REFERENCE_SQL  # noqa: E402

NAME, PORT = "bench_table_merge", 55458
RUNS = int(os.environ.get("PGSAFE_BENCH_RUNS", "3"))
SCALE = float(os.environ.get("PGSAFE_BENCH_MERGE_SCALE", "400"))
# the fixture's content hash in the name: a kept cluster never serves a template of older fixtures
TEMPLATE = "merge_tpl_{0}_{1}".format(str(SCALE).replace(".", "_"), sprint90_fixtures.content_hash("dev", SCALE))
TARGET = "bazaar-vid_api_usage_metric"


def template(server):
    exists = server.execute("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE,))
    if not exists:
        server.create_database(TEMPLATE)
        conn = server.connect(TEMPLATE, autocommit=False)
        try:
            sprint90_fixtures.seed(conn, "dev", SCALE)
            with conn.cursor() as cur:
                cur.execute(pgsafe_meta.META_DDL)
            conn.commit()
        finally:
            conn.close()
    return TEMPLATE


def ours(server, db):
    conn = server.connect(db, autocommit=False)
    try:
        with conn.cursor() as cur:
            pgsafe_retire.ensure_retire_schema(cur)
            conn.commit()
            started = time.monotonic()
            ctx = pgsafe_merge.Context(cur, "api_usage_metric", TARGET, DEV_MAP, target_definition=REFERENCE_SQL)
            result = pgsafe_merge.apply(cur, ctx, "bench")
        conn.commit()
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    assert result["action"] == "merged" and result["proof"]["ok"], result
    return elapsed, result["inserted"]


def anchor(server, db):
    pairs = list(DEV_MAP.items())
    conn = server.connect(db, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS pgsafe_quarantine")
            conn.commit()
            started = time.monotonic()
            for stmt in pgsafe_merge.statements_for_table(REFERENCE_SQL, TARGET):
                cur.execute(stmt)
            cur.execute(sql.SQL("INSERT INTO {0} ({1}) SELECT {2} FROM api_usage_metric").format(
                sql.Identifier(TARGET), sql.SQL(", ").join(sql.Identifier(t) for _s, t in pairs),
                sql.SQL(", ").join(sql.Identifier(s) for s, _t in pairs)))
            rows = cur.rowcount
            cur.execute("ALTER TABLE api_usage_metric SET SCHEMA pgsafe_quarantine")
        conn.commit()
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    return elapsed, rows


def main():
    server = pg.start_server((NAME, PORT))
    try:
        tpl = template(server)
        ours_s, anchor_s, rows = [], [], 0
        for _ in range(RUNS):
            for fn, sink in ((anchor, anchor_s), (ours, ours_s)):
                db = server.create_database(template=tpl)
                try:
                    elapsed, rows = fn(server, db)
                    sink.append(elapsed)
                finally:
                    server.drop_database(db)
        o, a = statistics.median(ours_s), statistics.median(anchor_s)
        print("BENCH table_merge ours_s={0:.3f} anchor=insert_select_set_schema anchor_s={1:.3f} ratio={2:.2f} "
              "rows={3} runs={4}".format(o, a, o / a, rows, RUNS))
    finally:
        pgclusters.stop(NAME, PORT)


if __name__ == "__main__":
    main()
