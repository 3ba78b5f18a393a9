"""The status policy (statuses.py): every status is classified by every policy, none falls through."""

from __future__ import annotations

from tools.matrix import statuses
from tools.matrix.statuses import (
    ALL,
    CRASHED,
    DID_NOT_RUN,
    ERROR,
    FAILED,
    FAILING,
    FAILURE_MESSAGE,
    FLAKY,
    GREEN,
    JUNIT_ERROR,
    JUNIT_FAILURE,
    JUNIT_SKIPPED,
    NOT_RUN,
    ON_TRACK,
    PASSED,
    SKIPPED,
    TIMEOUT,
    UNEXPECTED,
    UNEXPECTED_STRICT,
    XFAILED,
    XPASSED,
)  # fmt: skip

# Per status, written out: (unexpected, failing, failure message, did not run, on track, green,
# JUnit element or None for a pass).
POLICY = {
    PASSED: (False, False, False, False, True, True, None),
    FAILED: (True, True, True, False, False, False, "failure"),
    XFAILED: (False, False, True, False, True, False, "skipped"),
    XPASSED: (True, False, False, False, False, False, "failure"),
    SKIPPED: (False, False, False, True, False, True, "skipped"),
    ERROR: (True, True, True, False, False, False, "error"),
    CRASHED: (True, True, True, False, False, False, "error"),
    TIMEOUT: (True, True, True, False, False, False, "error"),
    NOT_RUN: (False, False, False, True, False, False, "skipped"),
    # Passed in the end: reported, not a failure (unless --strict-flaky), worth a look, a pass in JUnit.
    FLAKY: (False, False, False, False, True, False, None),
}
JUNIT = {"skipped": JUNIT_SKIPPED, "error": JUNIT_ERROR, "failure": JUNIT_FAILURE}


def test_every_status_has_a_written_out_policy() -> None:
    assert tuple(POLICY) == ALL


def test_each_policy_set_is_as_written_out() -> None:
    for status, (unexpected, failing, message, did_not_run, on_track, green, junit) in POLICY.items():
        got = (status in UNEXPECTED, status in FAILING, status in FAILURE_MESSAGE, status in DID_NOT_RUN, status in ON_TRACK, status in GREEN)
        assert got == (unexpected, failing, message, did_not_run, on_track, green), status
        assert [name for name, members in JUNIT.items() if status in members] == ([junit] if junit else []), status


def test_policy_sets_hold_only_known_statuses() -> None:
    sets = {name: value for name, value in vars(statuses).items() if isinstance(value, frozenset)}
    assert set(sets) == {"UNEXPECTED", "FAILING", "FAILURE_MESSAGE", "KEEPS_EVIDENCE", "DID_NOT_RUN", "ON_TRACK", "GREEN", "JUNIT_SKIPPED", "JUNIT_ERROR", "JUNIT_FAILURE",
                         "UNEXPECTED_STRICT"}  # fmt: skip
    for name, members in sets.items():
        assert members <= set(ALL), name


def test_strict_flaky_adds_only_flaky_to_the_gate() -> None:
    assert UNEXPECTED_STRICT - UNEXPECTED == {FLAKY} and UNEXPECTED <= UNEXPECTED_STRICT


def test_the_commands_use_the_policy() -> None:
    from tools.matrix import filters
    from tools.matrix.report import summary

    assert filters.RERUN_FAILED is FAILING
    assert summary.BAD is FAILING
