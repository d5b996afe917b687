"""A run that fails in a step says why in its report: the phase, the reason and the offending rows."""
from __future__ import annotations

import json

from tests import pg

BAD = "not-a-uuid-0042"


def test_failed_precheck_puts_reason_and_offending_rows_in_the_report(pg_server, scratch_server, tmp_path):
    with pg_server.sprint90_database("dev") as dev:
        pg_server.execute(dev, 'UPDATE "bazaar-vid_export_analytics" SET export_id = %s '
                               'WHERE id = (SELECT id FROM "bazaar-vid_export_analytics" ORDER BY id LIMIT 1)', (BAD,))
        inventory = pg.write_inventory(tmp_path / "inv", {"dev": (pg_server, dev),
                                                          "staging": (scratch_server, "postgres")},
                                       extra_vars={"backup_destinations": [str(tmp_path / "b1")]}, shipped_plans=True)
        artifacts = tmp_path / "artifacts"
        result = pg.run_playbook("sprint90_dev.yml", inventory=str(inventory),
                                 env={"PGSAFE_ARTIFACTS_ROOT": str(artifacts)})
        assert result.returncode != 0
        run_dir = artifacts / "dev" / "sprint90_dev" / "latest"
        report = json.loads((run_dir / "report.json").read_text())
        failure = report["failure"]
        # every step is prechecked in the plan step, before anything changes
        assert report["status"] == "failed" and failure["phase"] == "plan", failure
        assert "the plan cannot run, nothing was changed" in failure["reason"] and "01-type_change" in failure["reason"]
        assert BAD in json.dumps(failure["details"])  # the offending value itself, not only a count
        assert "invocation" not in failure["details"] and pg_server.libpq["password"] not in json.dumps(report)
        markdown = (run_dir / "report.md").read_text()
        assert "## Why it failed" in markdown and "the plan cannot run, nothing was changed" in markdown
        assert BAD in markdown
        assert BAD in (run_dir / "report.html").read_text()
        assert pg_server.execute(dev, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                                      "'\"bazaar-vid_export_analytics\"'::regclass AND attname = 'export_id'") == [
            ("text",)]
