# -*- coding: utf-8 -*-
"""Post-migration monitoring: a baseline before the change, then samples compared with it.

A *series* (usually the migration's run id) has one baseline and any number of samples, all in
``pgsafe.monitor_sample`` (``run_id`` = the series).  Each reading collects, for the target
database:

* ``pg_stat_database``: commits, rollbacks, deadlocks, conflicts, temp files/bytes;
* per changed table (``pg_stat_user_tables``): sequential and index scans, rows written;
* invalid indexes (``pg_index.indisvalid = false``);
* with ``pg_stat_statements``: calls and total execution time of statements naming a changed
  table, and the slowest of them;
* where the server log is readable (``pg_read_file`` on ``pg_current_logfile()`` or a given path,
  or a file the module can read): ERROR/FATAL/PANIC lines since the previous reading.

Rates per minute come from the difference with the previous reading (counter resets handled).
The baseline takes two readings ``baseline_seconds`` apart, so it has rates of its own; every
sample's rates are compared with ``max(threshold max, baseline rate x factor)``.

Plain Python; SQL values as parameters, identifiers through psycopg2.sql.
"""
from __future__ import annotations

import html
import json
import os
import re

from ansible.module_utils.pgsafe_fingerprint import parse_table_key
from ansible.module_utils.pgsafe_identifiers import table_key
from ansible.module_utils.pgsafe_meta import PRODUCT_SCHEMAS

LOG_READ_LIMIT = 16 * 1024 * 1024
ERROR_LINE = re.compile(r"\b(ERROR|FATAL|PANIC):  ")

# metric -> (label, unit) in the order the report draws them
METRICS = (
    ("rollbacks_per_minute", "rollbacks / min"),
    ("deadlocks_per_minute", "deadlocks / min"),
    ("conflicts_per_minute", "conflicts / min"),
    ("temp_files_per_minute", "temp files / min"),
    ("errors_per_minute", "log errors / min"),
    ("seq_scans_per_minute", "seq scans on changed tables / min"),
    ("statement_mean_ms", "mean ms of statements on changed tables"),
    ("invalid_indexes", "invalid indexes"),
)

DEFAULT_THRESHOLDS = {
    "rollbacks_per_minute": {"max": 30, "factor": 3},
    "deadlocks_per_minute": {"max": 0, "factor": 2},
    "conflicts_per_minute": {"max": 0, "factor": 2},
    "temp_files_per_minute": {"max": 20, "factor": 3},
    "errors_per_minute": {"max": 5, "factor": 3},
    "seq_scans_per_minute": {"max": 120, "factor": 5},
    "statement_mean_ms": {"max": 250, "factor": 3},
    "invalid_indexes": {"max": 0},
}


class MonitorError(Exception):
    """Monitoring could not run; the message says what to do."""


# --------------------------------------------------------------------------- collection (read only)
def _sql():
    from psycopg2 import sql
    return sql


def statements_status(cur):
    """(available, note): pg_stat_statements installed in this database and loaded by the server."""
    cur.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'")
    row = cur.fetchone()
    cur.execute("SELECT 'pg_stat_statements' = ANY (string_to_array(replace(current_setting("
                "'shared_preload_libraries'), ' ', ''), ','))")
    preloaded = cur.fetchone()[0]
    if row and preloaded:
        return True, "pg_stat_statements {0}".format(row[0])
    if not preloaded:
        return False, "pg_stat_statements is not in shared_preload_libraries: slow statements not watched"
    return False, "pg_stat_statements is preloaded but not installed in this database (CREATE EXTENSION needed)"


def ensure_statements_extension(conn):
    """CREATE EXTENSION pg_stat_statements when the server preloads it; returns (created, note)."""
    saved = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            available, note = statements_status(cur)
            if available or "not in shared_preload_libraries" in note:
                return False, note
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            except Exception as exc:  # noqa: BLE001 - lack of privilege is reported, not fatal
                return False, "cannot CREATE EXTENSION pg_stat_statements ({0}): slow statements not watched".format(
                    " ".join(str(exc).split()))
            return True, "pg_stat_statements installed by this run"
    finally:
        conn.autocommit = saved


def _log_source(cur, log_path):
    """Server-side log file readable with pg_read_file: given path, pg_current_logfile(), or server.log."""
    candidates = [log_path] if log_path else []
    if not log_path:
        cur.execute("SELECT pg_current_logfile()")
        current = cur.fetchone()[0]
        candidates += [current] if current else []
        candidates.append("server.log")
    for path in candidates:
        try:
            cur.execute("SAVEPOINT pgsafe_log")
            cur.execute("SELECT (pg_stat_file(%s, true)).size", (path,))
            size = cur.fetchone()[0]
            cur.execute("RELEASE SAVEPOINT pgsafe_log")
        except Exception as exc:  # noqa: BLE001 - permission denied: not readable
            cur.execute("ROLLBACK TO SAVEPOINT pgsafe_log")
            return None, None, "server log not readable ({0}): errors per minute not watched; grant "\
                "pg_read_server_files or give log_file".format(" ".join(str(exc).split())[:160])
        if size is not None:
            return path, size, ""
    return None, None, "no server log found (logging_collector off and no log_path): errors per minute not watched"


def _count_errors(text, database=None):
    """ERROR/FATAL/PANIC lines; only those naming ``database`` when the log line prefix carries it."""
    return sum(1 for line in text.splitlines() if ERROR_LINE.search(line) and (not database or database in line))


def _log_database(cur):
    """The database name to filter log lines on, when log_line_prefix has %d (else None: whole server)."""
    cur.execute("SELECT current_setting('log_line_prefix'), current_database()")
    prefix, database = cur.fetchone()
    return database if "%d" in (prefix or "") else None


def read_log(cur, log_path=None, log_file=None, offset=None):
    """{available, source, size, errors (lines since offset, None on a first reading), scope, note}."""
    database = _log_database(cur)
    scope = "database {0}".format(database) if database else "whole server (log_line_prefix has no %d)"
    if log_file:
        try:
            size = os.path.getsize(log_file)
        except OSError as exc:
            return {"available": False, "source": log_file, "size": None, "errors": None,
                    "note": "cannot read log_file {0}: {1}".format(log_file, exc.strerror)}
        errors = None
        if offset is not None:
            start = offset if offset <= size else 0
            start = max(start, size - LOG_READ_LIMIT)
            with open(log_file, "rb") as handle:
                handle.seek(start)
                errors = _count_errors(handle.read(size - start).decode("utf-8", "replace"), database)
        return {"available": True, "source": log_file, "size": size, "errors": errors, "scope": scope, "note": ""}
    path, size, note = _log_source(cur, log_path)
    if path is None:
        return {"available": False, "source": log_path, "size": None, "errors": None, "note": note}
    errors = None
    if offset is not None:
        start = offset if offset <= size else 0  # rotated or truncated: read from the start
        start = max(start, size - LOG_READ_LIMIT)
        cur.execute("SELECT pg_read_binary_file(%s, %s, %s, true)", (path, start, size - start))
        data = cur.fetchone()[0]
        errors = _count_errors(bytes(data or b"").decode("utf-8", "replace"), database)
    return {"available": True, "source": path, "size": size, "errors": errors, "scope": scope, "note": ""}


def collect(cur, changed_tables=(), log_path=None, log_file=None, previous=None, slowest=5):
    """One reading of the target database (read only)."""
    cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8, to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), xact_commit, xact_rollback, deadlocks, conflicts, temp_files, "
                "temp_bytes, coalesce(stats_reset::text, '') FROM pg_catalog.pg_stat_database "
                "WHERE datname = current_database()")
    row = cur.fetchone()
    metrics = {"epoch": row[0], "at": row[1],
               "db": dict(zip(("xact_commit", "xact_rollback", "deadlocks", "conflicts", "temp_files", "temp_bytes",
                               "stats_reset"), row[2:], strict=True))}
    keys = [table_key(*parse_table_key(t)) for t in changed_tables or ()]
    metrics["tables"] = {}
    for key in keys:
        schema, table = parse_table_key(key)
        cur.execute("SELECT seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del "
                    "FROM pg_catalog.pg_stat_user_tables WHERE schemaname = %s AND relname = %s", (schema, table))
        r = cur.fetchone()
        metrics["tables"][key] = None if r is None else dict(zip(
            ("seq_scan", "seq_tup_read", "idx_scan", "n_tup_ins", "n_tup_upd", "n_tup_del"), r, strict=True))
    cur.execute("SELECT n.nspname || '.' || i.relname FROM pg_catalog.pg_index x "
                "JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace "
                "WHERE NOT x.indisvalid AND n.nspname <> ALL (%s::text[]) ORDER BY 1",
                (list(PRODUCT_SCHEMAS) + ["pg_catalog", "pg_toast"],))
    metrics["invalid_indexes"] = [r[0] for r in cur.fetchall()]
    available, note = statements_status(cur)
    statements = {"available": available, "note": note, "tables": {}, "slowest": []}
    if available:
        for key in keys:
            _, table = parse_table_key(key)
            cur.execute("SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_exec_time), 0)::float8 "
                        "FROM pg_stat_statements s WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE "
                        "datname = current_database()) AND position(%s in s.query) > 0 "
                        "AND s.query NOT LIKE '%%pg_stat_statements%%'", (table,))
            calls, total = cur.fetchone()
            statements["tables"][key] = {"calls": int(calls), "total_ms": float(total)}
        if keys:
            cur.execute("SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 200), s.calls, s.mean_exec_time "
                        "FROM pg_stat_statements s WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE "
                        "datname = current_database()) AND s.query NOT LIKE '%%pg_stat_statements%%' "
                        "AND s.query ~ %s ORDER BY s.mean_exec_time DESC LIMIT %s",
                        ("|".join(re.escape(parse_table_key(k)[1]) for k in keys), slowest))
            statements["slowest"] = [{"query": q, "calls": int(c), "mean_ms": round(float(m), 3)}
                                     for q, c, m in cur.fetchall()]
    metrics["statements"] = statements
    offset = ((previous or {}).get("log") or {}).get("size")
    metrics["log"] = read_log(cur, log_path, log_file, offset)
    return metrics


# --------------------------------------------------------------------------- rates and thresholds (pure)
def _delta(cur, prev):
    if cur is None or prev is None:
        return None
    return cur - prev if cur >= prev else cur  # a counter reset starts from zero


def rates(previous, current):
    """Per-minute rates between two readings (None where a side is missing)."""
    minutes = max((current["epoch"] - previous["epoch"]) / 60.0, 1.0 / 60.0)
    reset = previous["db"].get("stats_reset") != current["db"].get("stats_reset")

    def per_minute(a, b):
        d = b if reset else _delta(b, a)
        return None if d is None else round(d / minutes, 4)

    out = {"minutes": round(minutes, 4)}
    for name, counter in (("rollbacks_per_minute", "xact_rollback"), ("deadlocks_per_minute", "deadlocks"),
                          ("conflicts_per_minute", "conflicts"), ("temp_files_per_minute", "temp_files"),
                          ("commits_per_minute", "xact_commit")):
        out[name] = per_minute(previous["db"].get(counter), current["db"].get(counter))
    seq = 0
    for key, stats in (current.get("tables") or {}).items():
        before = (previous.get("tables") or {}).get(key)
        if stats and before:
            seq += _delta(stats["seq_scan"], before["seq_scan"]) or 0
        elif stats:
            seq += 0
    out["seq_scans_per_minute"] = round(seq / minutes, 4)
    errors = (current.get("log") or {}).get("errors")
    out["errors_per_minute"] = None if errors is None else round(errors / minutes, 4)
    st_cur, st_prev = current.get("statements") or {}, previous.get("statements") or {}
    mean = None
    if st_cur.get("available") and st_prev.get("available"):
        calls = total = 0
        for key, now in st_cur["tables"].items():
            was = st_prev["tables"].get(key) or {"calls": 0, "total_ms": 0.0}
            if now["calls"] >= was["calls"]:
                calls += now["calls"] - was["calls"]
                total += now["total_ms"] - was["total_ms"]
        mean = round(total / calls, 3) if calls else None
    out["statement_mean_ms"] = mean
    out["invalid_indexes"] = len(current.get("invalid_indexes") or [])
    return out


def limits(thresholds, baseline_rates):
    """Per metric the value above which a sample breaches: max(max, baseline x factor)."""
    merged = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    for name, spec in (thresholds or {}).items():
        if name not in merged:
            raise MonitorError("unknown threshold {0!r}: use one of {1}".format(name, ", ".join(merged)))
        merged[name].update(spec if isinstance(spec, dict) else {"max": spec})
    out = {}
    for name, spec in merged.items():
        base = (baseline_rates or {}).get(name)
        limit = float(spec.get("max", 0))
        if base is not None and spec.get("factor"):
            limit = max(limit, float(base) * float(spec["factor"]))
        out[name] = round(limit, 4)
    return out


def breaches(sample_rates, limit_by_metric, baseline_rates=None):
    out = []
    for name, limit in limit_by_metric.items():
        value = sample_rates.get(name)
        if value is not None and value > limit:
            out.append({"metric": name, "value": value, "limit": limit,
                        "baseline": (baseline_rates or {}).get(name)})
    return out


def reading_kind(mode, samples, series):
    """(what this reading records, a note or None): a sample of a series without a baseline captures one."""
    if mode == "sample" and not any(s["kind"] == "baseline" for s in samples):
        return "baseline", ("no baseline for series {0}: captured one now; samples compare with it from the next "
                            "run".format(series))
    return mode, None


def judge(kind, previous, reading, samples, thresholds):
    """(rates, baseline rates, limits, breaches) of ``reading`` against the ``previous`` one.

    A baseline's own rates are the baseline (it breaches nothing); a sample is compared with the
    newest baseline of its series.
    """
    reading_rates = rates(previous, reading)
    if kind == "baseline":
        return reading_rates, reading_rates, limits(thresholds, reading_rates), []
    baselines = [s for s in samples if s["kind"] == "baseline"]
    baseline_rates = (baselines[-1]["metrics"] or {}).get("rates") or {}
    limit_by_metric = limits(thresholds, baseline_rates)
    return reading_rates, baseline_rates, limit_by_metric, breaches(reading_rates, limit_by_metric, baseline_rates)


def timeline_of(samples, row):
    """The series' readings from its newest baseline on, ending with ``row`` (this reading)."""
    if row["kind"] == "baseline":
        samples = [s for s in samples if s["kind"] != "baseline"]  # the newest baseline starts the timeline
    timeline = samples + [row]
    starts = [i for i, s in enumerate(timeline) if s["kind"] == "baseline"]
    return timeline[starts[-1]:] if starts else timeline


def timeline_rows(timeline):
    """The timeline flattened for reports: taken_at, kind, one key per metric, breaches as text."""
    rows = []
    for s in timeline:
        r = {"taken_at": s["taken_at"], "kind": s["kind"]}
        rr = (s["metrics"] or {}).get("rates") or {}
        r.update({name: rr.get(name) for name, _ in METRICS})
        r["breaches"] = ", ".join("{0}={1:g}>{2:g}".format(b["metric"], b["value"], b["limit"])
                                  for b in s["breaches"] or [])
        rows.append(r)
    return rows


def timeline_points(timeline):
    """The timeline as returned: taken_at, kind, rates, breaches per reading."""
    return [{"taken_at": s["taken_at"], "kind": s["kind"], "rates": (s["metrics"] or {}).get("rates") or {},
             "breaches": s["breaches"]} for s in timeline]


def reading_notes(reading):
    """What this reading could not watch (pg_stat_statements, the server log) and why."""
    return [reading[part]["note"] for part in ("statements", "log") if not reading[part]["available"]]


# --------------------------------------------------------------------------- storage
def series_samples(cur, series):
    """Every baseline/sample of a series, oldest first (empty when the product schema is missing)."""
    cur.execute("SELECT to_regclass('pgsafe.monitor_sample') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    cur.execute("SELECT id, kind, to_char(taken_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), metrics, "
                "breaches FROM pgsafe.monitor_sample WHERE run_id = %s ORDER BY taken_at, id", (series,))
    return [{"id": r[0], "kind": r[1], "taken_at": r[2], "metrics": r[3], "breaches": r[4]} for r in cur.fetchall()]


def store_sample(cur, series, kind, metrics, breach_list):
    cur.execute("INSERT INTO pgsafe.monitor_sample (run_id, kind, metrics, breaches) VALUES (%s, %s, %s::jsonb, "
                "%s::jsonb) RETURNING id", (series, kind, json.dumps(metrics, sort_keys=True, default=str),
                                            json.dumps(breach_list, sort_keys=True, default=str)))
    return cur.fetchone()[0]


# --------------------------------------------------------------------------- the timeline chart
def timeline_svg(samples, limit_by_metric=None, width=760, panel_height=70):
    """An SVG line chart per metric over the series' samples (baseline first), limits dashed red,
    breaching points red.  ``samples``: [{taken_at, kind, metrics: {rates: {...}}}]."""
    limit_by_metric = limit_by_metric or {}
    points = [(s["taken_at"], s["kind"], (s.get("metrics") or {}).get("rates") or {}) for s in samples]
    left, right, top, gap = 210, 20, 28, 18
    plot_w = width - left - right
    height = top + len(METRICS) * (panel_height + gap) + 30
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" '
           'font-family="sans-serif" font-size="11" role="img" aria-label="monitoring timeline">'.format(width, height),
           '<title>pgsafe monitoring timeline</title>',
           '<text x="{0}" y="16" font-size="13" font-weight="bold">Monitoring timeline: {1} readings{2}</text>'.format(
               left, len(points), (", " + html.escape(points[0][0]) + " to " + html.escape(points[-1][0]))
               if points else "")]
    n = len(points)

    def x_of(i):
        return left + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    for row, (metric, label) in enumerate(METRICS):
        y0 = top + row * (panel_height + gap)
        values = [p[2].get(metric) for p in points]
        known = [v for v in values if v is not None]
        limit = limit_by_metric.get(metric)
        top_value = max(known + ([limit] if limit is not None else []) + [1e-9])
        top_value = top_value * 1.15 if top_value > 0 else 1

        def y_of(v, y0=y0, top_value=top_value):
            return y0 + panel_height - (panel_height * (v / top_value))

        out.append('<text x="{0}" y="{1}" text-anchor="end">{2}</text>'.format(left - 8, y0 + panel_height / 2,
                                                                            html.escape(label)))
        out.append('<text x="{0}" y="{1}" text-anchor="end" fill="#666">{2}</text>'.format(
            left - 8, y0 + panel_height / 2 + 13, "max {0:g}".format(max(known)) if known else "no data"))
        out.append('<rect x="{0}" y="{1}" width="{2}" height="{3}" fill="#fafafa" stroke="#ddd"/>'.format(
            left, y0, plot_w, panel_height))
        if limit is not None:
            ly = y_of(limit)
            out.append('<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#c00" stroke-dasharray="4 3"/>'
                       '<text x="{1}" y="{3:.1f}" text-anchor="end" fill="#c00" font-size="9">limit {4:g}</text>'.format(
                           left, left + plot_w, ly, ly - 2, limit))
        path = " ".join("{0}{1:.1f},{2:.1f}".format("M" if i == 0 or values[i - 1] is None else "L", x_of(i),
                                                     y_of(v)) for i, v in enumerate(values) if v is not None)
        if path:
            out.append('<path d="{0}" fill="none" stroke="#2563eb" stroke-width="1.5"/>'.format(path))
        for i, v in enumerate(values):
            if v is None:
                continue
            bad = limit is not None and v > limit
            colour = "#c00" if bad else ("#555" if points[i][1] == "baseline" else "#2563eb")
            out.append('<circle cx="{0:.1f}" cy="{1:.1f}" r="{2}" fill="{3}"><title>{4} {5}: {6:g}</title>'
                       '</circle>'.format(x_of(i), y_of(v), 4 if bad else 2.5, colour, html.escape(points[i][0]),
                                          points[i][1], v))
    if points:
        y = height - 10
        out.append('<text x="{0}" y="{1}">{2}</text>'.format(left, y, html.escape(points[0][0])))
        out.append('<text x="{0}" y="{1}" text-anchor="end">{2}</text>'.format(left + plot_w, y,
                                                                            html.escape(points[-1][0])))
    out.append("</svg>")
    return "\n".join(out) + "\n"
