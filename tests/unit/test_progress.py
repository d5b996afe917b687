"""Progress records of long work: written while it runs, described in one line, gone when it ends."""
from __future__ import annotations

import time

from ansible.module_utils import pgsafe_progress as pp


def test_describe_says_done_of_total_percent_and_time_left():
    record = {"what": "pg_dump of app", "done": 1 << 30, "total": 3 << 30, "unit": "bytes", "estimated": True,
              "started": 100.0}
    line = pp.describe(record, now=130.0)
    assert line == "pg_dump of app: 1.0 GB of ~3.0 GB (33%), about 60 s left, 30 s so far"
    rows = pp.describe({"what": "backfill", "done": 5000, "total": None, "unit": "rows", "started": 0}, now=200)
    assert rows == "backfill: 5,000 rows, 3 min so far"


def test_a_record_is_written_while_work_runs_and_removed_after(tmp_path):
    with pp.Progress("backfill of t", total=10, root=str(tmp_path), controller=4242) as progress:
        progress.update(4, force=True)
        records = pp.read_records(str(tmp_path / "4242"))
        assert [(r["what"], r["done"], r["total"]) for r in records] == [("backfill of t", 4, 10)]
    assert pp.read_records(str(tmp_path / "4242")) == []


def test_without_a_controller_nothing_is_written(tmp_path):
    with pp.Progress("x", root=str(tmp_path), controller=0) as progress:
        progress.update(1, force=True)
    assert not any(tmp_path.iterdir())


def test_watching_measures_while_the_block_runs():
    seen = []

    class Recorder:
        def update(self, done):
            seen.append(done)

    with pp.watching(Recorder(), measure=lambda: len(seen) + 1, interval=0.1):
        time.sleep(0.5)
    count = len(seen)
    assert count >= 3
    time.sleep(0.3)
    assert len(seen) == count  # stopped with the block
