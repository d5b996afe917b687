# -*- coding: utf-8 -*-
"""Legacy-table audit: is a table still used?  Evidence, then a verdict (in use / dormant / empty).

For each table: exact row count, size, write activity measured over a sampling window (deltas of
``pg_stat_user_tables`` n_tup_ins/upd/del, the exact row count again, and the newest value of every
timestamp column), inbound/outbound dependencies, and optionally references in an application
checkout (paths and counts for the table name, the name without the ORM prefix and its camelCase
code identifier: ``bazaar-vid_project_memory`` -> ``project_memory``, ``projectMemory``).

Verdict: ``in use`` when anything was written during the window (a table still being written to is
not legacy), ``empty`` when it holds no rows and nothing was written, ``dormant`` otherwise.  Code
references and lifetime counters are evidence in the report, they do not change the verdict.

Reads only: statistics are read in separate transactions (pg_stat_clear_snapshot) so that the
second sample is fresh; the module commits nothing to the audited tables.
"""
from __future__ import annotations

import os
import re
import time

from ansible.module_utils.pgsafe_identifiers import qualified, split_qualified
from ansible.module_utils.pgsafe_retire import dependencies, exact_count, table_oid

SKIP_DIRS = {".git", "node_modules", ".next", "dist", "build", ".venv", "__pycache__", ".turbo", "coverage"}
MAX_FILE_BYTES = 2 * 1024 * 1024
TIMESTAMP_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


def _sql():
    from psycopg2 import sql
    return sql


def code_identifiers(table, prefix=""):
    """Names under which code refers to a table: ``bazaar-vid_project_memory``, ``project_memory``, ``projectMemory``."""
    names = [table]
    short = table[len(prefix):] if prefix and table.startswith(prefix) else table
    if short != table:
        names.append(short)
    parts = [p for p in re.split(r"[_\-\s]+", short) if p]
    if len(parts) > 1:
        names.append(parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:]))
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def scan_code(root, identifiers, max_paths=50):
    """Occurrences of each identifier (whole word) under ``root``: {identifier: {count, paths: [{path, count}]}}."""
    result = {ident: {"count": 0, "paths": []} for ident in identifiers}
    if not root:
        return result
    if not os.path.isdir(root):
        raise ValueError("application checkout {0} is not a directory".format(root))
    patterns = {ident: re.compile(r"(?<![A-Za-z0-9_$-])" + re.escape(ident) + r"(?![A-Za-z0-9_$-])")
                for ident in identifiers}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for filename in sorted(filenames):
            path = os.path.join(dirpath, filename)
            try:
                if os.path.getsize(path) > MAX_FILE_BYTES:
                    continue
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if b"\0" in data[:4096]:
                continue
            text = data.decode("utf-8", "replace")
            for ident, pattern in patterns.items():
                n = len(pattern.findall(text))
                if n:
                    result[ident]["count"] += n
                    if len(result[ident]["paths"]) < max_paths:
                        result[ident]["paths"].append({"path": os.path.relpath(path, root), "count": n})
    return result


def verdict(before, after, code=None):
    """(verdict, reasons) from two samples taken ``sample_seconds`` apart."""
    reasons = []
    writes = {k: after["stats"][k] - before["stats"][k] for k in ("n_tup_ins", "n_tup_upd", "n_tup_del")}
    if any(v > 0 for v in writes.values()):
        reasons.append("writes during the window: {0} inserted, {1} updated, {2} deleted".format(
            writes["n_tup_ins"], writes["n_tup_upd"], writes["n_tup_del"]))
    if after["rows"] != before["rows"]:
        reasons.append("row count changed during the window: {0} -> {1}".format(before["rows"], after["rows"]))
    for col, newest in after["newest"].items():
        old = before["newest"].get(col)
        if newest is not None and (old is None or newest > old):
            reasons.append("newest {0} advanced during the window: {1} -> {2}".format(col, old, newest))
    if reasons:
        return "in use", reasons
    if after["rows"] == 0:
        return "empty", ["0 rows and no writes during the window"]
    newest = [v for v in after["newest"].values() if v is not None]
    why = ["{0} rows, no writes during the window".format(after["rows"])]
    if newest:
        why.append("newest timestamp value {0}".format(max(newest)))
    if code and any(v["count"] for v in code.values()):
        why.append("but referenced in the application code: " + ", ".join(
            "{0} x{1}".format(k, v["count"]) for k, v in code.items() if v["count"]))
    return "dormant", why


def timestamp_columns(cur, oid):
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped "
                "AND format_type(atttypid, NULL) = ANY(%s) ORDER BY attnum", (oid, list(TIMESTAMP_TYPES)))
    return [r[0] for r in cur.fetchall()]


def sample(conn, schema, name, oid, ts_columns):
    """One sample, in a transaction of its own (fresh statistics snapshot)."""
    sql = _sql()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT coalesce(n_tup_ins, 0), coalesce(n_tup_upd, 0), coalesce(n_tup_del, 0), "
                    "coalesce(n_live_tup, 0), last_autovacuum, last_autoanalyze "
                    "FROM pg_stat_user_tables WHERE relid = %s", (oid,))
        row = cur.fetchone() or (0, 0, 0, 0, None, None)
        stats = {"n_tup_ins": row[0], "n_tup_upd": row[1], "n_tup_del": row[2], "n_live_tup": row[3]}
        rows = exact_count(cur, schema, name)
        newest = {}
        for col in ts_columns:
            cur.execute(sql.SQL("SELECT max({0}) FROM {1}.{2}").format(sql.Identifier(col), sql.Identifier(schema),
                                                                      sql.Identifier(name)))
            value = cur.fetchone()[0]
            newest[col] = value.isoformat() if value is not None else None
    conn.rollback()
    return {"stats": stats, "rows": rows, "newest": newest, "at": time.time()}


def audit(conn, tables, sample_seconds=30, app_path=None, code_prefix="", sleep=time.sleep):
    """Audit every table over one shared sampling window; returns a list of per-table results."""
    targets = []
    with conn.cursor() as cur:
        for item in tables:
            schema, name = split_qualified(item) if isinstance(item, str) else (item.get("schema", "public"),
                                                                                 item["name"])
            oid = table_oid(cur, schema, name)
            entry = {"table": qualified(schema, name), "schema": schema, "name": name, "exists": oid is not None}
            if oid is not None:
                cur.execute("SELECT pg_total_relation_size(%s)", (oid,))
                entry["size_bytes"] = cur.fetchone()[0]
                entry["dependencies"] = dependencies(cur, schema, name)
                entry["ts_columns"] = timestamp_columns(cur, oid)
                entry["oid"] = oid
            targets.append(entry)
    conn.rollback()
    before = {t["table"]: sample(conn, t["schema"], t["name"], t["oid"], t["ts_columns"])
              for t in targets if t["exists"]}
    sleep(max(0, sample_seconds))
    after = {t["table"]: sample(conn, t["schema"], t["name"], t["oid"], t["ts_columns"])
             for t in targets if t["exists"]}
    results = []
    for t in targets:
        if not t["exists"]:
            results.append({"table": t["table"], "schema": t["schema"], "name": t["name"], "verdict": "absent",
                            "evidence": ["table does not exist"]})
            continue
        idents = code_identifiers(t["name"], code_prefix)
        code = scan_code(app_path, idents) if app_path else None
        v, why = verdict(before[t["table"]], after[t["table"]], code)
        b, a = before[t["table"]], after[t["table"]]
        results.append({
            "table": t["table"], "schema": t["schema"], "name": t["name"], "verdict": v, "evidence": why,
            "rows": a["rows"], "rows_before": b["rows"],
            "size_bytes": t["size_bytes"], "sample_seconds": round(a["at"] - b["at"], 1),
            "writes": {k: a["stats"][k] - b["stats"][k] for k in ("n_tup_ins", "n_tup_upd", "n_tup_del")},
            "lifetime_writes": {k: a["stats"][k] for k in ("n_tup_ins", "n_tup_upd", "n_tup_del")},
            "newest": a["newest"], "code_identifiers": idents, "code_references": code,
            "inbound": [d["description"] for d in t["dependencies"] if d["direction"] == "inbound"],
            "outbound": [d["description"] for d in t["dependencies"] if d["direction"] == "outbound"],
        })
    return results
