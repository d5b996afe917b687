"""An application-like load for benchmarks, and the writer-stall arithmetic over it.

``AppLoad`` runs client threads, each on its own connection, doing short transactions (one operation
each: a read, an update, an insert) in a round robin over the operations it is given, with a short
pause between them; every transaction is recorded (wall-clock start, seconds, operation, write or
read, error).  ``LockWaits`` samples ``pg_stat_activity`` for the load's backends waiting on a lock and
what blocks them (the evidence of which step stalled them).

The arithmetic is plain Python over the records: each operation's baseline is its median latency
while nothing else ran (the warm-up), a transaction's stall is its latency beyond that baseline, and
``window_stats`` gives the longest writer stall and the failures of the transactions overlapping a
time window (a run's step).
"""
from __future__ import annotations

import bisect
import random
import statistics
import threading
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Txn:
    start: float  # wall clock (time.time())
    seconds: float
    op: str
    write: bool
    error: str | None = None
    pid: int = 0  # the backend that ran it (matched with LockWaits' samples)

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass
class Op:
    """One kind of application transaction: ``run(cur, rng)`` executes its statements."""
    name: str
    write: bool
    run: object


class AppLoad:
    """``clients`` threads doing one-operation transactions back to back until ``stop()``."""

    def __init__(self, connect, ops, clients: int = 4, pause: float = 0.01, seed: int = 1):
        self.connect, self.ops, self.clients, self.pause = connect, list(ops), clients, pause
        self.records: list[Txn] = []
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(seed + n,), daemon=True)
                         for n in range(clients)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._halt.set()
        for t in self._threads:
            t.join()

    def _client(self, seed):
        rng = random.Random(seed)
        conn, n, pid = None, seed, 0
        while not self._halt.is_set():
            op = self.ops[n % len(self.ops)]
            n += 1
            t0, wall, error = time.monotonic(), time.time(), None
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                    pid = conn.get_backend_pid()
                with conn.cursor() as cur:
                    op.run(cur, rng)
                conn.commit()
            except Exception as exc:  # noqa: BLE001 - a failed application transaction is the finding
                error = " ".join(str(exc).split())[:300]
                try:
                    conn.rollback()
                except Exception:  # noqa: BLE001 - the connection is gone: reconnect next time
                    conn = None
            self.records.append(Txn(wall, time.monotonic() - t0, op.name, op.write, error, pid))
            time.sleep(self.pause)
        if conn is not None and not conn.closed:
            conn.close()


class LockWaits(threading.Thread):
    """Every ``interval`` s: which of the load's backends wait on a lock held or asked for by another
    session than the load's own (two clients writing one row are the application's business), and the
    queries blocking them."""

    QUERY = """SELECT w.pid, w.query, b.query, b.application_name
                 FROM pg_stat_activity w, unnest(pg_blocking_pids(w.pid)) AS bp(pid)
                 JOIN pg_stat_activity b ON b.pid = bp.pid
                WHERE w.application_name = %s AND w.wait_event_type = 'Lock' AND b.application_name <> %s"""

    def __init__(self, connect, application_name: str, interval: float = 0.02):
        super().__init__(daemon=True)
        self.connect, self.app, self.interval = connect, application_name, interval
        self.samples: list[tuple] = []  # (wall, waiting pid, waiting query, blocking query, blocker's application)
        self._halt = threading.Event()

    def run(self):
        conn = self.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            while not self._halt.is_set():
                cur.execute(self.QUERY, (self.app, self.app))
                now = time.time()
                self.samples.extend((now, *row) for row in cur.fetchall())
                time.sleep(self.interval)
        conn.close()

    def stop(self):
        self._halt.set()
        self.join()

    def blockers(self, start: float, end: float, limit: int = 3) -> list[str]:
        """The most frequent blocking statements seen between start and end."""
        seen: dict[str, int] = {}
        for wall, _pid, _waiting, blocking, _app in self.samples:
            if start <= wall <= end:
                key = " ".join((blocking or "").split())[:160]
                seen[key] = seen.get(key, 0) + 1
        return [q for q, _ in sorted(seen.items(), key=lambda kv: -kv[1])[:limit]]

    def waited(self, records):
        """The transactions seen waiting on a lock (a sample of their backend inside their time)."""
        by_pid: dict[int, list[float]] = {}
        for wall, pid, *_ in self.samples:
            by_pid.setdefault(pid, []).append(wall)
        for walls in by_pid.values():
            walls.sort()

        def seen(r):
            walls = by_pid.get(r.pid, ())
            i = bisect.bisect_left(walls, r.start)
            return i < len(walls) and walls[i] <= r.end
        return [r for r in records if seen(r)]


def baselines(records, until: float) -> dict[str, float]:
    """Each operation's median latency among its successful transactions that ended before ``until``."""
    by_op: dict[str, list[float]] = {}
    for r in records:
        if r.error is None and r.end <= until:
            by_op.setdefault(r.op, []).append(r.seconds)
    return {op: statistics.median(values) for op, values in by_op.items()}


def stall(record: Txn, base: dict[str, float]) -> float:
    """How much longer than its baseline a transaction took (never negative)."""
    return max(0.0, record.seconds - base.get(record.op, 0.0))


def window_stats(records, base: dict[str, float], start: float, end: float) -> dict:
    """Over the transactions overlapping [start, end]: the longest writer stall (and that transaction),
    the longest reader stall, transactions and failures."""
    inside = [r for r in records if r.start <= end and r.end >= start]
    writes = [r for r in inside if r.write]
    worst = max(writes, key=lambda r: stall(r, base), default=None)
    return {"max_stall": stall(worst, base) if worst else 0.0, "worst": worst,
            "max_read_stall": max((stall(r, base) for r in inside if not r.write), default=0.0),
            "txns": len(inside), "failed": sum(1 for r in inside if r.error is not None),
            "errors": sorted({r.error for r in inside if r.error is not None})[:3]}
