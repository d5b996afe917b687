#!/usr/bin/env python3
"""Summarise the demo's runs into artifacts/demo/<stamp>/report.{md,json} and print its path.

    python tools/demo_report.py staging/sprint90_rehearsal dev/sprint90_dev ...

Each argument names artifacts/<env>/<playbook>/latest; the summary links every run's own report.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("PGSAFE_ARTIFACTS_ROOT") or ROOT / "artifacts")


def main(runs: list[str]) -> int:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ARTIFACTS / "demo" / "sprint90" / stamp
    out.mkdir(parents=True, exist_ok=True)
    summary, lines = [], [f"# pgsafe demo: Sprint 90 on throwaway clusters ({stamp})", "",
                          "| run | environment | status | phases | report |", "|---|---|---|---|---|"]
    failed = False
    for ref in runs:
        latest = ARTIFACTS / ref / "latest"
        report = json.loads((latest / "report.json").read_text())
        run_dir = latest.resolve()
        phases = ", ".join(f"{p['phase']} {p['seconds']}s" for p in report.get("timeline", []))
        summary.append({"run": ref, "run_id": report["run_id"], "status": report["status"], "report": str(run_dir)})
        lines.append(f"| {report['playbook']} | {report['environment']} | {report['status']} | {phases} | "
                     f"[{run_dir.name}]({run_dir / 'report.md'}) |")
        failed |= report["status"] != "succeeded"
    lines += ["", "Each run's directory also holds report.html (with the phase timeline), rollback.md,",
              "database_changes.md and progress.md, generated from the run's own data."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({"stamp": stamp, "runs": summary}, indent=2) + "\n")
    link = out.parent / "latest"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(stamp)
    print(out / "report.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
