#!/usr/bin/env python3
"""Break a playbook run mid-way, deterministically, and record what happened (Molecule faults scenario).

    faults.py round --strike terminate|stop|lock --port P --dbname D --table T --container C
                    --summary FILE -- ansible-playbook ...

A session opens a transaction and reads the table (ACCESS SHARE), then starts the playbook.  As soon
as one of the playbook's backends WAITS for a lock on that table (the schema change needs ACCESS
EXCLUSIVE) the fault strikes, inside the run's own transaction:

* ``terminate``: pg_terminate_backend() on the waiting backend (fault case 9), then the lock goes;
* ``stop``:      the server's container is stopped (fast shutdown) and started again (the server dies
                 mid-run; everything uncommitted rolls back);
* ``lock``:      nothing but the lock: it is held until the playbook ends (fault case 8: the change must
                 give up after lock_timeout and its retries, failing closed).

Afterwards the summary (JSON, appended to --summary) records whether the fault struck, the playbook's
exit code and duration, and the differences of the user schemas (catalog and data, product schemas
ignored) from the snapshot given by --baseline.  Exit 1 when the fault never struck: a fault test
that did not inject its fault proves nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgstate  # noqa: E402
import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

PRODUCT_SCHEMAS = ("pgsafe", "pgsafe_quarantine")


def connect(args, autocommit=True):
    conn = psycopg2.connect(host=args.host, port=args.port, user=args.user, dbname=args.dbname, connect_timeout=5,
                            application_name="pgsafe-molecule-fault")
    conn.autocommit = autocommit
    return conn


def wait_ready(args, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connect(args).close()
            return
        except psycopg2.OperationalError:
            time.sleep(0.5)
    raise SystemExit(f"server on port {args.port} did not come back within {timeout:.0f}s")


def waiting_backend(cur, table_oid):
    """A backend of someone else waiting for a lock on the table, or None."""
    cur.execute("""SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                    WHERE l.relation = %s AND NOT l.granted AND l.pid <> pg_backend_pid()
                      AND a.application_name <> 'pgsafe-molecule-fault' LIMIT 1""", (table_oid,))
    row = cur.fetchone()
    return row[0] if row else None


def user_state_differences(args, baseline_file):
    if not baseline_file:
        return []
    with open(baseline_file, encoding="utf-8") as handle:
        baseline = json.load(handle)
    conn = connect(args, autocommit=False)
    try:
        now = json.loads(json.dumps(pgstate.snapshot(conn), default=str))
    finally:
        conn.close()

    def user_only(snap):
        out = dict(snap)
        out["catalog"] = {k: [r for r in v if not (isinstance(r, list) and r and r[0] in PRODUCT_SCHEMAS)]
                          if isinstance(v, list) else v for k, v in snap["catalog"].items()}
        out["catalog"]["schemas"] = [s for s in snap["catalog"]["schemas"] if s not in PRODUCT_SCHEMAS]
        out["data"] = {t: v for t, v in snap["data"].items() if t.split(".", 1)[0] not in PRODUCT_SCHEMAS}
        out["write_counters"] = {}
        out["databases"] = []
        return out
    return pgstate.differences(user_only(baseline), user_only(now))


def run_round(args, playbook_cmd):
    holder = connect(args, autocommit=False)
    cur = holder.cursor()
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(args.schema, args.table)))
    cur.execute("SELECT %s::regclass::oid", (sql.Identifier(args.schema, args.table).as_string(cur),))
    table_oid = cur.fetchone()[0]
    watcher = connect(args)
    wcur = watcher.cursor()
    started = time.monotonic()
    log = open(args.log, "w", encoding="utf-8") if args.log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(playbook_cmd, stdout=log, stderr=subprocess.STDOUT)
    struck, victim, strike_at = False, None, None
    try:
        while proc.poll() is None and time.monotonic() - started < args.timeout:
            if not struck:
                victim = waiting_backend(wcur, table_oid)
                if victim is not None:
                    strike_at = round(time.monotonic() - started, 2)
                    struck = True
                    if args.strike == "terminate":
                        # The victim must be gone before the lock is released: it may not commit.
                        wcur.execute("SELECT pg_terminate_backend(%s, 10000)", (victim,))
                        holder.rollback()
                    elif args.strike == "stop":
                        # Stopped while the lock is still held: the run cannot have got further.
                        subprocess.run([args.engine, "stop", "--time=5", args.container], check=True,
                                       capture_output=True)
                        for conn in (watcher, holder):
                            conn.close()
                        subprocess.run([args.engine, "start", args.container], check=True, capture_output=True)
                        wait_ready(args)
                        watcher = connect(args)
                        wcur = watcher.cursor()
                    # "lock": keep holding until the playbook gives up
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
    finally:
        for conn in (holder, watcher):
            if not conn.closed:
                conn.close()
        if log is not subprocess.DEVNULL:
            log.close()
    return {"strike": args.strike, "struck": struck, "victim_pid": victim, "strike_at_s": strike_at,
            "playbook_rc": rc, "playbook_s": round(time.monotonic() - started, 2),
            "user_schema_differences": user_state_differences(args, args.baseline)}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = []
    if "--" in argv:
        cut = argv.index("--")
        argv, cmd = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("round")
    p.add_argument("--strike", choices=["terminate", "stop", "lock"], required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="postgres")
    p.add_argument("--dbname", required=True)
    p.add_argument("--schema", default="public")
    p.add_argument("--table", required=True)
    p.add_argument("--container", default="")
    p.add_argument("--engine", default=os.environ.get("PGSAFE_ENGINE", "podman"))
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--baseline")
    p.add_argument("--summary", required=True)
    p.add_argument("--log")
    args = parser.parse_args(argv)
    if not cmd:
        parser.error("give the playbook command after --")
    result = run_round(args, cmd)
    with open(args.summary, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(result, sort_keys=True) + "\n")
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0 if result["struck"] else 1


if __name__ == "__main__":
    sys.exit(main())
