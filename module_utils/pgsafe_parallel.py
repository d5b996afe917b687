# -*- coding: utf-8 -*-
"""Work spread over connections that share one exported snapshot.

The data fingerprint and the comparison of a restored backup both read many tables under one
consistent view: the first connection exports its snapshot (``export_snapshot``), the others join
it (``join_snapshot``), and ``run_over_cursors`` hands the tables, in the caller's order (largest
first), to whichever connection is free.

Plain Python: no Ansible import, no psycopg2 import (cursors come from the caller).
"""
from __future__ import annotations

import threading


def export_snapshot(cur):
    """Export the snapshot of ``cur``'s open REPEATABLE READ transaction; its name for join_snapshot."""
    cur.execute("SELECT pg_export_snapshot()")
    return cur.fetchone()[0]


def join_snapshot(conn, snapshot):
    """A cursor of ``conn`` (switched to autocommit) in a READ ONLY REPEATABLE READ transaction that sees
    exactly ``snapshot``.  The caller rolls it back (or closes the connection) when done."""
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
    return cur


def run_over_cursors(cursors, items, work):
    """``work(cursor, item)`` for every item; the results, in the items' order.

    Items are taken in their order by whichever cursor is free: one thread per cursor after the
    first, which works in the caller's thread.  A cursor is never used by two threads at once.
    After the first error no cursor takes a new item; every thread is joined, then that error is
    raised here.
    """
    items = list(items)
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    position = [0]

    def take():
        with lock:
            if errors or position[0] >= len(items):
                return None
            position[0] += 1
            return position[0] - 1

    def drain(cur):
        while True:
            index = take()
            if index is None:
                return
            try:
                results[index] = work(cur, items[index])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                with lock:
                    errors.append(exc)
                return

    threads = [threading.Thread(target=drain, args=(cur,), daemon=True) for cur in list(cursors)[1:]]
    for thread in threads:
        thread.start()
    try:
        drain(cursors[0])
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results
