"""Report status decided in Python (module_utils/pgsafe_report_status.py), and its filters."""
import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils.pgsafe_report_status import STATUSES, as_bool, run_status, section_status

from plugins.filter.pgsafe_report import FilterModule


def test_precedence_is_fixed():
    everything = dict.fromkeys(STATUSES, True)
    assert [section_status(dict(everything, **dict.fromkeys(STATUSES[:i], False))) for i in range(len(STATUSES))] \
        == list(STATUSES)


@pytest.mark.parametrize(("conditions", "otherwise", "expected"), [
    ({}, "ok", "ok"),
    ({"failed": False, "changed": False}, "converged", "converged"),
    # monitor: breaches fail, a baseline is a change
    ({"failed": True, "changed": True}, "ok", "failed"),
    ({"failed": False, "changed": True}, "ok", "changed"),
    # schema_fix: nothing to do wins over check mode
    ({"converged": True, "planned": True}, "changed", "converged"),
    ({"converged": False, "planned": True}, "changed", "planned"),
    ({"converged": False, "planned": False}, "changed", "changed"),
    # maintenance_mode: not configured, a warning, check mode, transitions, else skipped
    ({"skipped": True, "failed": True}, "skipped", "skipped"),
    ({"skipped": False, "failed": False, "planned": False, "ok": True}, "skipped", "ok"),
    ({"skipped": False, "failed": False, "planned": False, "ok": False}, "skipped", "skipped"),
    ({"partial": True}, "ok", "partial"),
])
def test_section_status(conditions, otherwise, expected):
    assert section_status(conditions, otherwise) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (None, False), ("True", True), ("false", False), ("", False), (0, False),
    (2, True), ([], False), (["x"], True), ("yes", True)])
def test_as_bool(value, expected):
    assert as_bool(value) is expected


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="unknown status condition"):
        section_status({"broken": True})
    with pytest.raises(ValueError, match="otherwise"):
        section_status({}, "weird")
    with pytest.raises(ValueError, match="not a boolean"):
        section_status({"failed": "maybe"})


def test_run_status():
    assert run_status("succeeded", False) == "succeeded"
    assert run_status("succeeded", True) == "planned"
    assert run_status("succeeded", "True") == "planned"
    assert run_status("failed", True) == "failed"
    with pytest.raises(ValueError, match="run status"):
        run_status("weird")


def test_filters():
    filters = FilterModule().filters()
    assert filters["pgsafe_report_status"]({"planned": True}, "changed") == "planned"
    assert filters["pgsafe_run_status"]("succeeded", True) == "planned"
    with pytest.raises(AnsibleFilterError, match="dict of conditions"):
        filters["pgsafe_report_status"](["failed"])
    with pytest.raises(AnsibleFilterError, match="pgsafe_report_status: unknown"):
        filters["pgsafe_report_status"]({"nope": 1})
    with pytest.raises(AnsibleFilterError, match="pgsafe_run_status"):
        filters["pgsafe_run_status"]("weird")
