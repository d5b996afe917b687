#!/usr/bin/env python3
"""Benchmark: schema diff of two databases of 2,000 tables each, pgsafe vs migra, end to end.

Both databases live on a cluster of the benchmark's own (port 55450).  Each table has 10 columns, a
primary key, an index and a foreign key; about 2% of the tables differ between the two databases in a
column type, nullability, a default, an index or a constraint.

Timed end to end, each in a fresh process: ``pgsafe`` = snapshot both databases + diff
(module_utils/pgsafe_snapshot + pgsafe_schema_diff), ``migra`` = the migra CLI on the same pair
(installed in a separate venv, .bench/migra-venv, created here when missing).  Medians of several runs.
Also checks that every object migra's script touches is among pgsafe's differences (``missed``).

    .venv/bin/python bench/diff.py        (make bench BENCH=diff)
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import pgclusters  # noqa: E402

from tests import pg  # noqa: E402

CLUSTER = ("bench_diff", int(os.environ.get("PGSAFE_PORT_BENCH_DIFF", "55450")))
TABLES = int(os.environ.get("BENCH_DIFF_TABLES", "2000"))
EVERY = 50  # one table in 50 differs (2%)
OURS_RUNS = int(os.environ.get("BENCH_DIFF_RUNS", "7"))
MIGRA_RUNS = int(os.environ.get("BENCH_DIFF_MIGRA_RUNS", "3"))
MIGRA_VENV = ROOT / ".bench" / "migra-venv"
LEFT_DB, RIGHT_DB = "bench_diff_left", "bench_diff_right"

# module_utils/pgsafe_* are plain Python: they are loaded here without importing the ansible package
# (whose vendoring machinery alone costs ~50 ms of interpreter start-up).
OURS_SCRIPT = r"""
import sys, types
for name, path in (("ansible", []), ("ansible.module_utils", [{root!r} + "/module_utils"])):
    sys.modules[name] = types.ModuleType(name)
    sys.modules[name].__path__ = path
from ansible.module_utils.pgsafe_snapshot import live_snapshot
from ansible.module_utils.pgsafe_snapshot_pair import read_snapshot_pair
from ansible.module_utils.pgsafe_schema_diff import diff_snapshots
import gc, json, os
base = dict(login_host="127.0.0.1", login_port={port}, login_user="postgres", ssl_mode="disable",
            login_password=os.environ["BENCH_PGPASSWORD"])
gc.disable()  # as the module does: the snapshots live until the process exits
left, right = read_snapshot_pair(lambda: live_snapshot(dict(base, login_db={left!r})),
                               lambda: live_snapshot(dict(base, login_db={right!r})))
gc.freeze()
gc.enable()
for side in (left, right):
    if isinstance(side, Exception):
        raise side
diffs = diff_snapshots(left, right)
json.dump([[d["kind"], d["object"], d["attribute"]] for d in diffs], sys.stdout)
"""


def table_ddl(i: int, variant: str) -> str:
    name = f"t_{i:04d}"
    differs = i % EVERY == 7 and variant == "right"
    change = (i // EVERY) % 5 if differs else None
    qty_type = "bigint" if change == 0 else "integer"
    email_null = " NOT NULL" if change == 1 else ""
    qty_default = " DEFAULT 0" if change == 2 else ""
    check = f",\n    CONSTRAINT {name}_qty_check CHECK (qty >= 0)" if change == 4 else ""
    index_col = "name" if change == 3 else "parent_id"
    return f"""CREATE TABLE {name} (
    id bigint NOT NULL,
    parent_id bigint,
    name text NOT NULL,
    email varchar(100){email_null},
    qty {qty_type}{qty_default},
    price numeric(10,2),
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    note text,
    payload jsonb,
    CONSTRAINT {name}_pkey PRIMARY KEY (id){check}
);
CREATE INDEX {name}_{index_col}_idx ON {name} ({index_col});
"""


def fk_ddl(i: int) -> str:
    name, parent = f"t_{i:04d}", f"t_{max(i - 1, 0):04d}"
    return f"ALTER TABLE {name} ADD CONSTRAINT {name}_parent_fk FOREIGN KEY (parent_id) REFERENCES {parent} (id);\n"


def build(server: pg.Server) -> None:
    for db, variant in ((LEFT_DB, "left"), (RIGHT_DB, "right")):
        server.drop_database(db)
        server.create_database(db)
        ddl = "".join(table_ddl(i, variant) for i in range(TABLES)) + "".join(fk_ddl(i) for i in range(TABLES))
        server.execute(db, ddl)
        server.execute(db, "ANALYZE")


def ensure_migra() -> Path:
    exe = MIGRA_VENV / "bin" / "migra"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MIGRA_VENV)], check=True)
        subprocess.run([str(MIGRA_VENV / "bin" / "pip"), "install", "--quiet", "migra", "sqlalchemy<2",
                        "psycopg2-binary"], check=True)
    return exe


def run_ours(password: str) -> tuple[float, list]:
    import json  # noqa: PLC0415

    script = OURS_SCRIPT.format(root=str(ROOT), port=CLUSTER[1], left=LEFT_DB, right=RIGHT_DB)
    # Bytecode is cached for our modules as pip caches it for migra's (PYTHONDONTWRITEBYTECODE, when the
    # shell sets it, would have ours compiled from source on every run: about 15 ms).
    env = dict(os.environ, BENCH_PGPASSWORD=password, PYTHONPYCACHEPREFIX=str(ROOT / ".bench" / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    elapsed = time.perf_counter() - start
    return elapsed, json.loads(proc.stdout)


def run_migra(exe: Path, passfile: Path) -> tuple[float, str]:
    url = "postgresql://postgres@127.0.0.1:{0}/{1}?sslmode=disable"
    env = dict(os.environ, PGPASSFILE=str(passfile))
    start = time.perf_counter()
    proc = subprocess.run([str(exe), "--unsafe", url.format(CLUSTER[1], LEFT_DB), url.format(CLUSTER[1], RIGHT_DB)],
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 2):  # 2: differences found
        raise SystemExit("migra failed: " + proc.stderr[-2000:])
    return elapsed, proc.stdout


_QUAL = r'"?(?P<schema>[^".\s]+)"?\."?(?P<name>[^".\s(]+)"?'


def migra_objects(script: str) -> tuple[set, list]:
    """Objects migra's statements touch, as pgsafe object names; statements not understood apart."""
    objects, unknown = set(), []
    for stmt in (s.strip() for s in script.split(";")):
        if not stmt:
            continue
        low = stmt.lower()
        m = re.match(r"alter table " + _QUAL + r' alter column "(?P<col>[^"]+)"', low)
        if m:
            objects.add('"{0}"."{1}"."{2}"'.format(m["schema"], m["name"], m["col"]))
            continue
        m = re.match(r"alter table " + _QUAL + r' (?:add|drop|validate) constraint (?:if exists )?"(?P<con>[^"]+)"', low)
        if m:
            objects.add('"{0}"."{1}"."{2}"'.format(m["schema"], m["name"], m["con"]))
            continue
        m = re.match(r"drop index (?:concurrently )?(?:if exists )?" + _QUAL, low)
        if m:
            objects.add('"{0}"."{1}"'.format(m["schema"], m["name"]))
            continue
        m = re.match(r"create (?:unique )?index (?:concurrently )?(?:if not exists )?(?P<idx>\S+) on (?P<schema>[^.\s]+)\.", low)
        if m:
            objects.add('"{0}"."{1}"'.format(m["schema"].strip('"'), m["idx"].strip('"')))
            continue
        unknown.append(stmt)
    return objects, unknown


def main() -> int:
    server = pg.start_server(CLUSTER)
    password = pgclusters.password()
    passfile = ROOT / ".bench" / "bench_diff.pgpass"
    passfile.parent.mkdir(exist_ok=True)
    passfile.write_text("*:*:*:*:{0}\n".format(password.replace("\\", "\\\\").replace(":", "\\:")))
    passfile.chmod(0o600)
    try:
        exe = ensure_migra()
        build(server)
        run_ours(password)  # warm the catalog caches for both sides alike
        run_migra(exe, passfile)
        ours_times, migra_times = [], []
        ours_diffs, migra_script = [], ""
        for i in range(max(OURS_RUNS, MIGRA_RUNS)):
            if i < OURS_RUNS:
                elapsed, ours_diffs = run_ours(password)
                ours_times.append(elapsed)
            if i < MIGRA_RUNS:
                elapsed, migra_script = run_migra(exe, passfile)
                migra_times.append(elapsed)
        ours_s, migra_s = statistics.median(ours_times), statistics.median(migra_times)
        ours_objects = {obj for _, obj, _ in ours_diffs}
        migra_objs, unknown = migra_objects(migra_script)
        missed = sorted(migra_objs - ours_objects)
        for obj in missed:
            print("missed by pgsafe: " + obj, file=sys.stderr)
        for stmt in unknown:
            print("migra statement not mapped: " + stmt[:200], file=sys.stderr)
        differing = sum(1 for i in range(TABLES) if i % EVERY == 7)
        print("BENCH diff ours_s={0:.3f} anchor=migra anchor_s={1:.3f} ratio={2:.3f} tables={3} differing_tables={4} "
              "ours_differences={5} migra_statements={6} missed={7} unmapped={8} runs={9}/{10} load1={11:.1f}".format(
                  ours_s, migra_s, ours_s / migra_s, TABLES, differing, len(ours_diffs), len(migra_objs),
                  len(missed), len(unknown), OURS_RUNS, MIGRA_RUNS, os.getloadavg()[0]))
    finally:
        passfile.unlink(missing_ok=True)
        for db in (LEFT_DB, RIGHT_DB):
            server.drop_database(db)
        pgclusters.stop(*CLUSTER)
    return 0


if __name__ == "__main__":
    sys.exit(main())
