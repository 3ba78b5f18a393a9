"""The one place a test's matrix status is decided: pure functions over what pytest reported.

The plugin gathers facts (each phase's outcome, the subtests, the matrix.yaml xfail entry) and calls
`decide`; nothing else chooses a status. The rules follow plain pytest/unittest, with two
deliberate differences: a failed subtest fails its test (pytest 9.2 only prints SUBFAILED for a
unittest subTest and still passes the test), and every expected failure that passes is `xpassed`
(pytest calls a non-strict xpass a success and a unittest unexpected success a failure; here both
mean a stale expectation, which fails the target).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tools.matrix import statuses


@dataclass(frozen=True)
class Phase:
    """What pytest reported for one phase (setup, call or teardown), before the plugin rewrote it."""

    outcome: str  # pytest's: "passed", "failed" or "skipped"
    message: str = ""  # first line of the failure, or the skip reason
    error_type: str | None = None  # the exception's type name, for failures
    transform_failed: bool = False  # the failure is a VariantTransformError (or caused by one)
    xfail_reason: str | None = None  # pytest's own expected failure (xfail mark, pytest.xfail(), @unittest.expectedFailure)
    xpassed: bool = False  # pytest failed it only because an expected failure passed (unittest, strict xfail)


@dataclass(frozen=True)
class Subtest:
    """One `self.subTest(...)` / `subtests.test(...)` block of a test."""

    context: str  # "[i=1]", "[case, i=1]"
    outcome: str  # pytest's: "passed", "failed" or "skipped"
    message: str = ""
    error_type: str | None = None
    transform_failed: bool = False


@dataclass(frozen=True)
class Expectation:
    """The matrix.yaml xfail entry that covers a test (strict: a pass is a stale expectation)."""

    entry: str
    reason: str
    stale_message: str  # the record's message when the test passes: which entry to remove


@dataclass(frozen=True)
class Facts:
    setup: Phase | None = None
    call: Phase | None = None
    teardown: Phase | None = None
    subtests: tuple[Subtest, ...] = ()
    xfail: Expectation | None = None
    outputs_destroyed: str = ""  # what the test did to the outputs directory its result is written to


@dataclass(frozen=True)
class Verdict:
    status: str
    message: str = ""
    error_type: str | None = None
    transform_failed: bool = False
    expectation: str | None = None  # the matrix.yaml entry that applied
    subtests_run: int = 0
    subtests_failed: int = 0


def subtest_context(msg: str | None, params: dict[str, object]) -> str:
    """How a subtest is named in messages: `[msg, k=v, ...]`, or "" for a bare `subTest()`."""
    parts = ([msg] if msg is not None else []) + [f"{k}={v}" for k, v in params.items()]
    return f"[{', '.join(parts)}]" if parts else ""


def decide(facts: Facts) -> Verdict:
    """The status of one test from all its phases: conclude(facts, judge(facts))."""
    return conclude(facts, judge(facts))


def judge(facts: Facts) -> Verdict:
    """The status of one test as its setup, call and subtests say, with its matrix.yaml xfail entry:
    what it is once its call has ended (the plugin shows pytest this, then concludes at teardown)."""
    failed_subtests = [s for s in facts.subtests if s.outcome == "failed"]
    counts = {"subtests_run": len(facts.subtests), "subtests_failed": len(failed_subtests)}
    setup = facts.setup
    if setup is None or setup.outcome == "failed":  # no setup report at all: pytest broke before the test
        failure = setup or Phase("failed", "the test has no setup result")
        return _failure(statuses.ERROR, failure, **counts)
    if setup.outcome == "skipped":
        return Verdict(statuses.SKIPPED, setup.message, **counts)
    call = facts.call
    if call is None:
        return _failure(statuses.ERROR, Phase("failed", "the test has no call result"), **counts)
    return replace(_with_expectation(_call_verdict(call, failed_subtests), facts.xfail), **counts)


def conclude(facts: Facts, judged: Verdict) -> Verdict:
    """The test's final status: `judged` (judge(facts), worked out once when its call ended) as its
    teardown and what it did to the outputs directory leave it."""
    counts = {"subtests_run": judged.subtests_run, "subtests_failed": judged.subtests_failed}
    if facts.outputs_destroyed:  # whatever it asserted, it destroyed what results need: not a pass
        return Verdict(statuses.ERROR, facts.outputs_destroyed, statuses.ERROR, **counts)
    teardown = facts.teardown
    # A teardown failure is an error unless the test already failed: after a pass, a skip or an
    # expected failure it would otherwise be lost (pytest prints it as a second, ERROR line).
    if teardown and teardown.outcome == "failed" and judged.status in (statuses.PASSED, statuses.SKIPPED, statuses.XFAILED):
        return _failure(statuses.ERROR, teardown, expectation=judged.expectation, **counts)
    return judged


def _call_verdict(call: Phase, failed_subtests: list[Subtest]) -> Verdict:
    """The call phase alone, before any matrix.yaml entry: what plain pytest says, subtests included."""
    if failed_subtests:  # the first failing subtest explains the test (it ran before the call ended)
        first = failed_subtests[0]
        return Verdict(statuses.FAILED, f"{first.context} {first.message}".strip(), first.error_type, first.transform_failed)
    if call.xpassed or (call.outcome == "passed" and call.xfail_reason is not None):
        reason = call.message or f"XPASS: expected to fail ({call.xfail_reason or 'no reason given'}), but passed"
        return Verdict(statuses.XPASSED, reason)
    if call.outcome == "skipped" and call.xfail_reason is not None:
        return _failure(statuses.XFAILED, call)
    if call.outcome == "failed":
        return _failure(statuses.FAILED, call)
    if call.outcome == "skipped":
        return Verdict(statuses.SKIPPED, call.message)
    return Verdict(statuses.PASSED)


def _with_expectation(verdict: Verdict, xfail: Expectation | None) -> Verdict:
    """A matrix.yaml xfail entry turns a failure into `xfailed` and a pass into a stale `xpassed`."""
    if xfail is None:
        return verdict
    if verdict.status in (statuses.FAILED, statuses.XFAILED):
        return Verdict(statuses.XFAILED, verdict.message, verdict.error_type, verdict.transform_failed, xfail.entry)
    if verdict.status in (statuses.PASSED, statuses.XPASSED):
        return Verdict(statuses.XPASSED, xfail.stale_message, expectation=xfail.entry)
    return Verdict(verdict.status, verdict.message, expectation=xfail.entry)


def died(status: str, xfail_entry: str | None) -> Verdict:
    """A test the child could not judge itself: it crashed, timed out, could not be imported or was
    never reached. A crash or timeout covered by a matrix.yaml xfail entry is that entry's expected
    failure (`xfailed`; error_type still says what happened); nothing else changes the status."""
    if xfail_entry is not None and status in (statuses.CRASHED, statuses.TIMEOUT):
        return Verdict(statuses.XFAILED, error_type=status, expectation=xfail_entry)
    return Verdict(status, error_type=status)


def _failure(status: str, phase: Phase, expectation: str | None = None, **counts: int) -> Verdict:
    return Verdict(status, phase.message, phase.error_type, phase.transform_failed, expectation, **counts)
