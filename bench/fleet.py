#!/usr/bin/env python3
"""BENCH fleet: one plan over 20 databases with playbooks/fleet.yml vs 20 sequential single runs (apply.yml).

Forty fresh Sprint 90 prod databases on the benchmark's own two clusters (ports 55446 and 55447, half on
each), in two groups of twenty: fleet_a and fleet_b. One fleet rehearsal (playbooks/fleet_rehearsal.yml over
both, not timed: it is the same for both ways) attests the plan in all forty; then, timed, in one run:

* fleet: `fleet.yml -e fleet_group=fleet_a` (plan all twenty, the canary, then batches of fleet_batch_size);
* sequential: `apply.yml -e apply_hosts=<host>` on each database of fleet_b, one after the other.

    .venv/bin/python bench/fleet.py                  # PGSAFE_BENCH_DATABASES (20), PGSAFE_BENCH_BATCH (5)
    .venv/bin/python bench/fleet.py seed --port 55432 --count 20   # bazaar_vid_01..20 for inventories/fleet_local

ratio = fleet wall time / the sequential runs' total. The fleet's gain comes from running a batch's
databases side by side (Ansible forks; ansible.cfg forks=5) and from planning them together; its extra
cost is the read-only plan pass over every database before the first change.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import pg  # noqa: E402

DATABASES = int(os.environ.get("PGSAFE_BENCH_DATABASES", "20"))
BATCH = int(os.environ.get("PGSAFE_BENCH_BATCH", "5"))
CLUSTERS = (("bench_fleet", 55446), ("bench_fleet_b", 55447))


def write_inventory(directory: Path, members: dict, staging: tuple) -> Path:
    """Groups fleet_a and fleet_b (hosts a_01.., b_01..: (server, database)) under `bench`, and staging; the
    Sprint 90 prod plan files in group_vars/plan (the fleets and the rehearsal copy)."""
    lines = pg.fleet_inventory_head(directory) + [
        "  children:", "    plan:", "      children:", "        bench:", "          children:"]
    for group, hosts in members.items():
        lines += [f"            {group}:", "              hosts:"]
        for name, (server, dbname) in hosts.items():
            lines += [f"                {name}:", f"                  pg_port: {server.port}",
                      f"                  pg_database: {dbname}"]
    lines += ["        rehearsal:", "          hosts:", "            staging:",
              f"              pg_port: {staging[0].port}", f"              pg_database: {staging[1]}"]
    (directory / "hosts.yml").write_text("\n".join(lines) + "\n")
    pg.link_prod_plan_files(directory)
    return directory / "hosts.yml"


def play(inventory: Path, artifacts: Path, playbook: str, **extra) -> float:
    start = time.monotonic()
    result = pg.run_playbook(playbook, inventory=str(inventory), extra_vars=extra, timeout=14400,
                             env={"PGSAFE_ARTIFACTS_ROOT": str(artifacts)})
    elapsed = time.monotonic() - start
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:])
        raise SystemExit(f"{playbook} {extra} failed: see above")
    return elapsed


def bench() -> int:
    servers = [pg.start_server(c) for c in CLUSTERS]
    templates = [s.ensure_template("prod", 1.0) for s in servers]
    created = []

    def database(i: int):
        server, template = servers[i % 2], templates[i % 2]
        created.append((server, server.create_database(template=template)))
        return created[-1]

    try:
        members = {"fleet_a": {f"a_{i + 1:02d}": database(i) for i in range(DATABASES)},
                   "fleet_b": {f"b_{i + 1:02d}": database(i) for i in range(DATABASES)}}
        staging = database(0)
        with tempfile.TemporaryDirectory(prefix="pgsafe-bench-fleet-") as tmp:
            work = Path(tmp)
            inventory, artifacts = write_inventory(work / "inv", members, staging), work / "artifacts"
            rehearsal = play(inventory, artifacts, "fleet_rehearsal.yml", fleet_group="bench")
            sys.stderr.write(f"fleet rehearsal of {2 * DATABASES} databases: {rehearsal:.1f} s\n")
            fleet = play(inventory, artifacts, "fleet.yml", fleet_group="fleet_a", confirm_fleet="fleet_a",
                         fleet_batch_size=BATCH)
            sys.stderr.write(f"fleet of {DATABASES}: {fleet:.1f} s\n")
            sequential = []
            for name, (_, dbname) in members["fleet_b"].items():
                sequential.append(play(inventory, artifacts, "apply.yml", apply_hosts=name, confirm_database=dbname))
                sys.stderr.write(f"single run {len(sequential)}/{DATABASES}: {sequential[-1]:.1f} s\n")
    finally:
        for server, dbname in created:
            server.drop_database(dbname)
        for cluster in CLUSTERS:
            pg.pgclusters.stop(*cluster)
    total = sum(sequential)
    print(f"BENCH fleet databases={DATABASES} ratio={fleet / total:.3f} fleet_s={fleet:.1f} sequential_s={total:.1f} "
          f"single_median_s={sorted(sequential)[len(sequential) // 2]:.1f} batch={BATCH} forks=5 "
          f"rehearsal_s={rehearsal:.1f} loadavg={os.getloadavg()[0]:.1f} cores={os.cpu_count()}")
    return 0


def seed(port: int, count: int, prefix: str) -> int:
    """bazaar_vid_01..NN (Sprint 90 prod copies) on the cluster at ``port``, for inventories/fleet_local."""
    server = pg.Server(pg.pgclusters.start("prod", port)) if port == pg.pgclusters.CLUSTERS["prod"] else \
        pg.start_server(("fleet", port))
    template = server.ensure_template("prod", 1.0)
    for i in range(1, count + 1):
        name = f"{prefix}{i:02d}"
        server.drop_database(name)
        server.create_database(name, template=template)
        print(f"seeded {name} on port {port}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command")
    seed_parser = sub.add_parser("seed", help="create bazaar_vid_01..NN for inventories/fleet_local")
    seed_parser.add_argument("--port", type=int, default=pg.pgclusters.CLUSTERS["prod"])
    seed_parser.add_argument("--count", type=int, default=20)
    seed_parser.add_argument("--prefix", default="bazaar_vid_")
    args = parser.parse_args(argv)
    if args.command == "seed":
        return seed(args.port, args.count, args.prefix)
    return bench()


if __name__ == "__main__":
    sys.exit(main())
