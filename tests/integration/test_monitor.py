"""monitor.yml on real Postgres: baseline, a quiet sample passes, induced trouble breaches; timeline stored and drawn."""
from __future__ import annotations

import json
import time

from tests import pg

SERIES = "run-monitor-test"


def _report(artifacts, host="prod"):
    run_dir = artifacts / host / "monitor" / "latest"
    return json.loads((run_dir / "report.json").read_text()), run_dir


def test_baseline_quiet_sample_then_breach(pg_server, prod_db, tmp_path):
    inv = pg.write_inventory(tmp_path / "inv", {"prod": (pg_server, prod_db)})
    artifacts = tmp_path / "artifacts"
    extra = {"pgsafe_artifacts_root": str(artifacts), "pgsafe_migration_run_id": SERIES,
             "monitor_baseline_seconds": 2}

    result = pg.run_playbook("monitor.yml", inventory=str(inv), extra_vars=dict(extra, monitor_mode="baseline"))
    assert result.returncode == 0, result.stdout[-3000:]
    report, run_dir = _report(artifacts)
    section = report["sections"]["monitor"]
    assert section["items"][0]["kind"] == "baseline"
    assert (run_dir / "timeline.svg").read_text().startswith("<svg")
    # pg_stat_statements is preloaded by the throwaway clusters: the role installs it in the database
    assert pg_server.execute(prod_db, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")[0][0] == 1

    # the application works normally: a sample stays within the limits
    pg_server.execute(prod_db, 'SELECT count(*) FROM "bazaar-vid_exports" WHERE id = %s', ("x",))
    result = pg.run_playbook("monitor.yml", inventory=str(inv), extra_vars=extra)
    assert result.returncode == 0, result.stdout[-3000:]
    section = _report(artifacts)[0]["sections"]["monitor"]
    assert section["breaches"] == [] and [i["kind"] for i in section["items"]] == ["baseline", "sample"]

    # trouble: a burst of failing statements (rollbacks + ERROR lines) and an index left INVALID
    conn = pg_server.connect(prod_db)
    with conn.cursor() as cur:
        for _ in range(120):
            try:
                cur.execute("SELECT 1 / 0")
            except Exception:  # noqa: BLE001, S110 - the errors are the point
                pass
        try:
            cur.execute('CREATE UNIQUE INDEX CONCURRENTLY exports_status_uq ON "bazaar-vid_exports" (status)')
        except Exception:  # noqa: BLE001, S110 - duplicates: the index stays INVALID
            pass
    conn.close()
    time.sleep(1.2)  # statistics are flushed when the backend exits
    result = pg.run_playbook("monitor.yml", inventory=str(inv), extra_vars=extra)
    assert result.returncode != 0
    report, run_dir = _report(artifacts)
    assert report["status"] == "failed"
    section = report["sections"]["monitor"]
    metrics = {b["metric"] for b in section["breaches"]}
    assert {"rollbacks_per_minute", "invalid_indexes", "errors_per_minute"} <= metrics, section["summary"]
    assert [i["kind"] for i in section["items"]] == ["baseline", "sample", "sample"]
    html = (run_dir / "report.html").read_text()
    assert "<svg" in html and "#c00" in html
    stored = pg_server.execute(prod_db, "SELECT kind, jsonb_array_length(breaches) FROM pgsafe.monitor_sample "
                                        "WHERE run_id = %s ORDER BY id", (SERIES,))
    assert [k for k, _ in stored] == ["baseline", "sample", "sample"]
    assert stored[0][1] == 0 and stored[1][1] == 0 and stored[2][1] >= 3
