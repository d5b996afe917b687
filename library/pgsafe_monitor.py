#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module pgsafe_monitor: baseline and samples of database health around a migration."""
from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgsafe_monitor
short_description: Capture a monitoring baseline, or take a sample and compare it with the baseline
description:
  - "I(mode=baseline): two readings I(baseline_seconds) apart (rollbacks, deadlocks, conflicts and temp files from
    pg_stat_database; sequential scans on the changed tables; invalid indexes; statements on the changed tables
    from pg_stat_statements; ERROR/FATAL/PANIC lines of the server log where readable) give the baseline rates."
  - "I(mode=sample): one reading, rates per minute since the previous reading of the series, compared with
    C(max(threshold max, baseline rate x factor)) per metric; a sample above a limit is a breach. Without a
    baseline for the series, a baseline is captured instead."
  - Every baseline and sample is appended to C(pgsafe.monitor_sample) (run_id = I(series)); not in check mode.
  - Installs pg_stat_statements in the database when the server preloads it and I(create_extension) is true
    (not in check mode); otherwise slow statements are not watched and the result says why.
  - Returns the series' timeline and an SVG chart of it.
version_added: "0.1.0"
author: pgsafe maintainers
extends_documentation_fragment:
  - pgsafe_connection
attributes:
  check_mode:
    support: full
    description: Takes the readings and compares them; stores nothing and installs no extension.
  diff_mode:
    support: none
    description: A reading is only ever appended to its series; the result's timeline shows the series.
options:
  mode:
    description: Capture a baseline, or take a sample.
    type: str
    choices: [baseline, sample]
    default: sample
  series:
    description: Name of the monitoring series (normally the migration's run id); stored as C(run_id).
    type: str
    required: true
  changed_tables:
    description: Tables the migration changed (C(schema.table)), watched for sequential scans and slow statements.
    type: list
    elements: str
    default: []
  thresholds:
    description:
      - Per metric C({max, factor}) overriding the defaults; metrics rollbacks_per_minute, deadlocks_per_minute,
        conflicts_per_minute, temp_files_per_minute, errors_per_minute, seq_scans_per_minute, statement_mean_ms,
        invalid_indexes.
    type: dict
    default: {}
  baseline_seconds:
    description: Seconds between the two readings of a baseline.
    type: float
    default: 30
  log_path:
    description: Server log file for pg_read_file (absolute, or relative to the data directory); default
      pg_current_logfile(), then server.log.
    type: str
  log_file:
    description: A log file readable where the module runs, instead of reading it through the server.
    type: path
  create_extension:
    description: Install pg_stat_statements in the database when the server preloads it.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Baseline before the migration
  pgsafe_monitor:
    mode: baseline
    series: "{{ run_context_run_id }}"
    changed_tables: [public.bazaar-vid_exports, public.bazaar-vid_export_analytics]

- name: Sample (every 15 minutes for 24 hours from an AWX schedule)
  pgsafe_monitor:
    series: "{{ pgsafe_migration_run_id }}"
    changed_tables: [public.bazaar-vid_exports, public.bazaar-vid_export_analytics]
  register: monitor_result
"""

RETURN = r"""
kind:
  description: What was recorded, C(baseline) or C(sample).
  returned: always
  type: str
ok:
  description: False when the sample breaches a limit.
  returned: always
  type: bool
rates:
  description: The reading's rates per minute (and invalid_indexes count).
  returned: always
  type: dict
baseline_rates:
  description: The baseline's rates.
  returned: always
  type: dict
limits:
  description: Per metric the limit applied.
  returned: always
  type: dict
breaches:
  description: Metrics above their limit, C(metric), C(value), C(limit), C(baseline).
  returned: always
  type: list
  elements: dict
metrics:
  description: The raw reading (counters, per table stats, invalid indexes, statements, log).
  returned: always
  type: dict
notes:
  description: What could not be watched and why (pg_stat_statements, server log).
  returned: always
  type: list
  elements: str
timeline:
  description: Every reading of the series, C(taken_at), C(kind), the rates and breaches, oldest first.
  returned: always
  type: list
  elements: dict
rows:
  description: The timeline flattened for reports, C(taken_at), C(kind), one key per metric, C(breaches).
  returned: always
  type: list
  elements: dict
stored_id:
  description: Id of the row appended to pgsafe.monitor_sample (null in check mode).
  returned: always
  type: int
svg:
  description: The timeline as an SVG chart.
  returned: always
  type: str
queries:
  description: The statements this module ran, in order (statistics and catalog reads, the stored reading).
  returned: always
  type: list
  elements: str
"""

import time

from ansible.module_utils.pgsafe_meta import ensure_meta_schema
from ansible.module_utils.pgsafe_module import PgsafeModule
from ansible.module_utils.pgsafe_monitor import MonitorError, collect, ensure_statements_extension, judge, \
    reading_kind, reading_notes, series_samples, store_sample, timeline_of, timeline_points, timeline_rows, \
    timeline_svg
from ansible.module_utils.pgsafe_reading import read_only_cursor


def _read(module, previous=None):
    """One reading and the series' stored samples (read only; committed, so our own readings count as no rollback)."""
    p = module.params
    with read_only_cursor(module, commit=True, settings={"statement_timeout": "60s", "lock_timeout": "2s"}) as cur:
        reading = collect(cur, p["changed_tables"], p["log_path"], p["log_file"], previous)
        samples = series_samples(cur, p["series"])
    return reading, samples


def _with_connection(module, work, *args):
    """``work(conn, *args)`` on a writable connection to the target, closed after."""
    conn = module.connect()
    try:
        return work(conn, *args)
    finally:
        conn.close()


def _store(conn, series, kind, reading, found):
    with conn.cursor() as cur:
        ensure_meta_schema(cur)
        stored = store_sample(cur, series, kind, reading, found)
    conn.commit()
    return stored


def main():
    module = PgsafeModule(
        argument_spec=dict(
            mode=dict(type="str", default="sample", choices=["baseline", "sample"]),
            series=dict(type="str", required=True),
            changed_tables=dict(type="list", elements="str", default=[]),
            thresholds=dict(type="dict", default={}),
            baseline_seconds=dict(type="float", default=30),
            log_path=dict(type="str"),
            log_file=dict(type="path"),
            create_extension=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    notes = []
    if p["create_extension"] and not module.check_mode:
        created, note = _with_connection(module, ensure_statements_extension)
        notes += [note] if created else []
    first, samples = _read(module)
    kind, note = reading_kind(p["mode"], samples, p["series"])
    notes += [note] if note else []
    if kind == "baseline":
        time.sleep(max(0.0, p["baseline_seconds"]))
    previous = first if kind == "baseline" else samples[-1]["metrics"]
    reading, _ = _read(module, previous=previous)
    try:
        reading_rates, baseline_rates, limit_by_metric, found = judge(kind, previous, reading, samples, p["thresholds"])
    except MonitorError as exc:
        module.fail_json(msg=str(exc))
    notes += reading_notes(reading)
    reading["rates"] = reading_rates
    stored = None if module.check_mode else _with_connection(module, _store, p["series"], kind, reading, found)
    timeline = timeline_of(samples, {"id": stored, "kind": kind, "taken_at": reading["at"], "metrics": reading,
                                     "breaches": found})
    module.exit_json(
        changed=not module.check_mode, rows=timeline_rows(timeline), kind=kind, ok=not found, rates=reading_rates,
        baseline_rates=baseline_rates, limits=limit_by_metric, breaches=found, metrics=reading, notes=notes,
        stored_id=stored, timeline=timeline_points(timeline), svg=timeline_svg(timeline, limit_by_metric))


if __name__ == "__main__":
    main()
