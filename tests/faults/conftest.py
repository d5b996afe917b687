"""The fault suite reports `N passed, N failed` and the rows lost (see summary.py)."""
from tests.faults.summary import pytest_terminal_summary, rows_lost  # noqa: F401
