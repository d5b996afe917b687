# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleets: one plan over every database of an inventory group (playbooks/fleet.yml, docs/fleet.md).

Plain Python (no Ansible, no database), used by the filters of plugins/filter/pgsafe_fleet.py:

* ``one_plan``: every database with something left to run must plan exactly the canary's SQL (the same
  rehearsal fingerprint); databases with nothing left are converged; a failing or differing plan stops
  the fleet before any change, naming the databases;
* ``fleet_document``: the fleet report, one row per database (status, seconds, rows changed, rows set
  aside, its own report), from each database's report.json.
"""
from __future__ import annotations

import datetime as _dt

# A database's place in the fleet report, in the order the report lists the counts.
# planned: a --check run of that database (nothing changed; its report says what a real run would do).
MEMBER_STATUSES = ("succeeded", "planned", "converged", "failed", "not run")


def _pending(planned):
    value = (planned or {}).get("pending")
    return None if value in (None, "", "None") else int(value)


def one_plan(planned, hosts, canary):
    """Decide whether the fleet shares one plan.

    ``planned``: one dict per host of ``hosts`` (same order): database, pending (steps left; None when the
    plan failed), rehearsal_fingerprint, failed (the reason, or empty), report. Returns {fingerprint (the
    fleet's plan, None when nothing is left anywhere), pending, converged, failed, differing (host lists),
    stop (why the fleet must stop before any change, or ''), summary}.
    """
    rows = dict(zip(hosts, planned, strict=True))
    if canary not in rows:
        raise ValueError("fleet_canary {0!r} is not a database of the fleet ({1}): set fleet_canary to one of "
                         "them".format(canary, ", ".join(hosts)))
    failed = [h for h in hosts if rows[h].get("failed") or _pending(rows[h]) is None]
    pending = [h for h in hosts if h not in failed and _pending(rows[h]) > 0]
    converged = [h for h in hosts if h not in failed and _pending(rows[h]) == 0]
    reference = canary if canary in pending else (pending[0] if pending else None)
    fingerprint = rows[reference]["rehearsal_fingerprint"] if reference else None
    differing = [h for h in pending if rows[h]["rehearsal_fingerprint"] != fingerprint]
    stop = ""
    if failed:
        stop = "the plan of {0} would fail ({1}); nothing changed on any database: fix it, then re-run".format(
            ", ".join("{0} ({1})".format(h, rows[h].get("database")) for h in failed),
            "; ".join("{0}: {1}".format(h, rows[h].get("failed") or "see " + str(rows[h].get("report")))
                      for h in failed))
    elif differing:
        stop = ("one plan per fleet: {0} plan(s) differently from {1} (plan {2}...): {3}; nothing changed on any "
                "database. Make their plan files and schemas the same, or run them as a fleet of their own; "
                "each one's plan.json names its steps").format(
                    len(differing), reference, (fingerprint or "?")[:12],
                    ", ".join("{0} ({1}, plan {2}...)".format(h, rows[h].get("database"),
                                                              (rows[h]["rehearsal_fingerprint"] or "?")[:12])
                              for h in differing))
    summary = "Fleet of {0}: canary {1}; {2} to run (plan {3}), {4} converged (skipped){5}".format(
        len(hosts), canary, len(pending), (fingerprint or "-")[:12], len(converged),
        "; STOP: " + stop if stop else ".")
    return {"fingerprint": fingerprint, "pending": pending, "converged": converged, "failed": failed,
            "differing": differing, "stop": stop, "summary": summary}


def _seconds(report):
    try:
        start = _dt.datetime.fromisoformat(report["started_at"])
        end = _dt.datetime.fromisoformat(report["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return round((end - start).total_seconds(), 1)


def _int(value):
    return int(value) if str(value).lstrip("-").isdigit() else 0


def rows_changed(report):
    """Rows a run changed, from its report's sections: every row of the tables a type change rewrote
    (before the change, quarantined ones included), the rows a merge inserted and the rows of retired tables
    (moved to quarantine whole); 0 for a run that changed nothing."""
    sections = (report or {}).get("sections") or {}
    counts = (sections.get("schema_fix") or {}).get("counts") or {}
    total = sum(_int((c or {}).get("before")) for c in counts.values()) if isinstance(counts, dict) else 0
    for item in (sections.get("table_cleanup") or {}).get("items") or []:
        if isinstance(item, dict) and item.get("action") == "retired":
            total += _int(item.get("row_count"))
    for item in (sections.get("table_merge") or {}).get("items") or []:
        if isinstance(item, dict):
            total += _int(item.get("inserted"))
    return total


def rows_quarantined(report):
    """Rows the run set aside in pgsafe.quarantine_row (restorable), summed over its tables."""
    section = ((report or {}).get("sections") or {}).get("schema_fix") or {}
    quarantined = section.get("quarantined") or {}
    return sum(_int(v) for v in quarantined.values()) if isinstance(quarantined, dict) else 0


def member_row(host, member, report):
    """One database's row of the fleet report. ``member``: {database, status, report (path), reason}."""
    status = member.get("status") or "not run"
    if status not in MEMBER_STATUSES:
        raise ValueError("fleet member {0}: unknown status {1!r}".format(host, status))
    ran = status in ("succeeded", "failed") and report is not None  # a planned run changed nothing
    return {"host": host, "database": member.get("database"), "status": status,
            "seconds": _seconds(report) if report and status != "not run" else None,
            "rows_changed": rows_changed(report) if ran else 0,
            "rows_quarantined": rows_quarantined(report) if ran else 0,
            "failed_phase": (report or {}).get("failed_phase") if status == "failed" else None,
            "reason": member.get("reason") or "", "report": member.get("report") or ""}


def fleet_document(fleet, members, reports, databases):
    """The fleet report: ``fleet`` {group, run_id, canary, started_at, finished_at, plan_fingerprint, stop},
    ``members`` {host: {status, report, reason}} in the fleet's order ({} for a database the fleet never
    reached), ``reports`` {host: the report.json document of its run, or None}, ``databases`` {host: name}."""
    rows = [member_row(host, dict(member or {}, database=databases.get(host)), reports.get(host))
            for host, member in members.items()]
    counts = {status: sum(1 for r in rows if r["status"] == status) for status in MEMBER_STATUSES}
    status = ("failed" if counts["failed"] or counts["not run"] or fleet.get("stop") else
              "planned" if counts["planned"] else "succeeded")
    first_failure = next((r for r in rows if r["status"] == "failed"), None)
    document = dict(fleet, product="pgsafe", kind="fleet", status=status, databases=len(rows), counts=counts,
                    rows_changed=sum(r["rows_changed"] for r in rows),
                    rows_quarantined=sum(r["rows_quarantined"] for r in rows),
                    seconds=_seconds(fleet), members=rows)
    if first_failure:
        document["stopped_at"] = first_failure["host"]
    document["summary"] = summary_line(document)
    return document


def summary_line(document):
    """One line for the console and the report's head."""
    counts = document["counts"]
    parts = ["{0} {1}".format(counts[s], s) for s in MEMBER_STATUSES if counts[s]]
    text = "Fleet {0} ({1} databases): {2}; {3}; rows changed {4}, set aside {5}.".format(
        document.get("group"), document["databases"], document["status"].upper(), ", ".join(parts),
        document["rows_changed"], document["rows_quarantined"])
    if document.get("stopped_at"):
        text += " Stopped at {0}: fix it, then re-run (converged databases are skipped).".format(
            document["stopped_at"])
    elif document.get("stop"):
        text += " Stopped before any change: " + document["stop"]
    return text
