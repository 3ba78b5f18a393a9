"""What pytest reports about each running test, gathered into verdict.Facts: the exception only
makereport sees, then each phase's and subtest's report, the matrix.yaml xfail entry that covers it.
The plugin feeds it from its hooks; verdict.py alone turns the facts into a status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tools.matrix.runtime import selection, verdict
from tools.matrix.runtime.cell_config import CellConfig
from tools.matrix.variants import VariantTransformError


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:500]
    return ""


def _transform_failed(excinfo: pytest.ExceptionInfo | None) -> bool:
    error: BaseException | None = excinfo.value if excinfo else None
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, VariantTransformError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


@dataclass(frozen=True)
class Raised:
    """What only makereport sees (the exception itself), kept for the logreport that follows it."""

    error: BaseException | None = None
    error_type: str | None = None
    transform_failed: bool = False
    xpassed: bool = False  # pytest failed the report only because an expected failure passed
    unittest_expected_failure: bool = False  # the test is decorated @unittest.expectedFailure


def raised(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> Raised:
    excinfo = call.excinfo
    error = excinfo.value if excinfo else None
    outcome_only = isinstance(error, (pytest.skip.Exception, pytest.xfail.Exception))  # not a failure of the test
    expecting_failure = bool(getattr(getattr(item, "obj", None), "__unittest_expecting_failure__", False))
    # How pytest reports a @unittest.expectedFailure test that passed:
    unexpected_success = expecting_failure and isinstance(error, pytest.fail.Exception) and str(error).startswith("Unexpected success")
    strict_xpass = report.failed and error is None and str(report.longrepr).startswith("[XPASS(strict)]")
    error_type = excinfo.typename if excinfo and not outcome_only else None
    return Raised(error, error_type, _transform_failed(excinfo), bool(unexpected_success or strict_xpass), expecting_failure)


def report_message(report: pytest.TestReport, exc: Raised) -> str:
    """One report's first failure line, skip reason or expected-failure reason ("" when it passed)."""
    if report.passed and not hasattr(report, "wasxfail"):
        return ""
    if report.skipped and hasattr(report, "wasxfail") and isinstance(exc.error, pytest.xfail.Exception):  # pytest.xfail(reason)
        default = "failed as expected (@unittest.expectedFailure)" if exc.unittest_expected_failure else "pytest.xfail() without a reason"
        return first_line(report.wasxfail) or default
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return first_line(crash.message)
    if isinstance(longrepr, tuple):  # skip: (file, line, reason)
        return first_line(str(longrepr[2]))
    if report.skipped and hasattr(report, "wasxfail"):
        return first_line(report.wasxfail)
    return first_line(str(longrepr or ""))


def expectation(cell: CellConfig, nodeid: str) -> verdict.Expectation | None:
    """The matrix.yaml xfail entry of `cell` that covers `nodeid`, with the message of a stale one."""
    hit = selection.expectation_for(nodeid, cell.xfail)
    if not hit:
        return None
    entry, reason = hit
    stale = (
        f"XPASS(strict): {nodeid} passed under variant {cell.variant!r} on {cell.device!r}, "
        f"but {cell.expectations_source} expects it to fail ({reason}). Remove the xfail entry {entry!r} from "
        f"{cell.entries_at()} (or run `bazel run //tools:matrix -- xfail sync`)."
    )
    return verdict.Expectation(entry, reason, stale)


@dataclass
class TestFacts:
    """One test's reports so far; `judged` once its call has ended (verdict.judge), concluded at teardown."""

    xfail: verdict.Expectation | None
    phases: dict[str, verdict.Phase] = field(default_factory=dict)
    subtests: list[verdict.Subtest] = field(default_factory=list)
    duration_s: float = 0.0
    outputs_destroyed: str = ""
    judged: verdict.Verdict | None = None

    def facts(self) -> verdict.Facts:
        p = self.phases
        return verdict.Facts(p.get("setup"), p.get("call"), p.get("teardown"), tuple(self.subtests), self.xfail, self.outputs_destroyed)

    def decided(self) -> verdict.Verdict:
        """The test's status once its teardown is reported: each of judge and conclude runs once."""
        facts = self.facts()
        return verdict.conclude(facts, self.judged or verdict.judge(facts))


class Gathered:
    """Every running test's facts, by node id, from makereport (`raised`) and logreport (`take`)."""

    def __init__(self, expectation_of: Callable[[str], verdict.Expectation | None]) -> None:
        self._expectation_of = expectation_of
        self._tests: dict[str, TestFacts] = {}
        self._raised: dict[str, Raised] = {}  # makereport -> the logreport that follows

    def raised(self, item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> None:
        self._raised[item.nodeid] = raised(item, call, report)

    def take(self, report: pytest.TestReport) -> TestFacts:
        """Add one report (a phase's or a subtest's) to its test's facts; the call's judges the test."""
        test = self._tests.get(report.nodeid)
        if test is None:
            test = self._tests[report.nodeid] = TestFacts(self._expectation_of(report.nodeid))
        exc = self._raised.pop(report.nodeid, None) or Raised()
        message = report_message(report, exc)
        if isinstance(report, pytest.SubtestReport):
            context = verdict.subtest_context(report.context.msg, dict(report.context.kwargs))
            test.subtests.append(verdict.Subtest(context, report.outcome, message, exc.error_type, exc.transform_failed))
            return test
        test.duration_s += report.duration
        wasxfail = getattr(report, "wasxfail", None)
        test.phases[report.when] = verdict.Phase(report.outcome, message, exc.error_type, exc.transform_failed, wasxfail, exc.xpassed)
        if report.when == "call":
            test.judged = verdict.judge(test.facts())
        return test

    def pop(self, nodeid: str) -> TestFacts:
        """The facts of a test whose teardown has been reported (no more will come)."""
        return self._tests.pop(nodeid)
