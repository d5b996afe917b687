"""pytest plugin for `make faults`: ends the run with `N passed, N failed` and the rows lost.

A fault case reports rows it lost through the `rows_lost` fixture: rows_lost(count).
"""
from __future__ import annotations

import pytest

_ROWS_LOST: dict[str, int] = {}


@pytest.fixture
def rows_lost(request):
    def record(count: int) -> None:
        _ROWS_LOST[request.node.nodeid] = _ROWS_LOST.get(request.node.nodeid, 0) + int(count)
    return record


def pytest_terminal_summary(terminalreporter):
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    terminalreporter.write_line("")
    terminalreporter.write_line("fault cases:")
    for report in stats.get("passed", []) + stats.get("failed", []) + stats.get("error", []):
        if report.when != "call" and report.outcome == "passed":
            continue
        lost = _ROWS_LOST.get(report.nodeid, 0)
        terminalreporter.write_line(f"  {report.outcome:7} rows_lost={lost:<4} {report.nodeid}")
    terminalreporter.write_line(f"rows lost in total: {sum(_ROWS_LOST.values())}")
    terminalreporter.write_line(f"{passed} passed, {failed} failed")
