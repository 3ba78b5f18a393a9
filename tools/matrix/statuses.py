"""The one status vocabulary shared by the runtime, the collector and the report (docs/architecture.md)."""

PASSED = "passed"
FAILED = "failed"
XFAILED = "xfailed"  # listed as an expected failure, and failed
XPASSED = "xpassed"  # listed as an expected failure, but passed: the expectation is stale
SKIPPED = "skipped"
ERROR = "error"  # setup/collection error
CRASHED = "crashed"  # the process died inside this test
TIMEOUT = "timeout"
NOT_RUN = "not_run"  # the matrix has the cell but no result was found
# Failed, then passed when Bazel ran its target again in the same run (flaky_test_attempts): the
# collector decides it (collect/flaky.py), never the runtime. Reported, not a failure unless asked.
FLAKY = "flaky"

ALL = (PASSED, FAILED, XFAILED, XPASSED, SKIPPED, ERROR, CRASHED, TIMEOUT, NOT_RUN, FLAKY)
# Statuses that fail a target and the report's exit status.
UNEXPECTED = frozenset({FAILED, XPASSED, ERROR, CRASHED, TIMEOUT})
# What fails the report's exit status under `--strict-flaky`.
UNEXPECTED_STRICT = UNEXPECTED | {FLAKY}

# The status policy: every set a command or report decides by lives here, named for what it means.
# Went wrong and was not expected to: what `rerun --failed` reruns, what `xfail sync` turns into an
# xfail entry, what counts as broken in a baseline comparison.
FAILING = frozenset({FAILED, ERROR, CRASHED, TIMEOUT})
# A failure message worth grouping by signature (xfailed: the known breakages, counted apart).
FAILURE_MESSAGE = FAILING | {XFAILED}
# Worth a maintainer's look: a test ending in one of these keeps its evidence (the program before and
# after the variant's transform, runtime/evidence.py) and its traceback's tail (log_tail).
KEEPS_EVIDENCE = FAILURE_MESSAGE
# As expected: a change from one of these to FAILING is a regression in a baseline comparison. A
# flaky test passed in the end: failing outright after it is a regression too.
ON_TRACK = frozenset({PASSED, XFAILED, FLAKY})
# Nothing to look at: a test whose every cell is one of these stays out of compat.md's grids (a flaky
# one is worth a look).
GREEN = frozenset({PASSED, SKIPPED})
# Never ran to a verdict: left out of the pass rate's denominator and of recorded durations.
DID_NOT_RUN = frozenset({SKIPPED, NOT_RUN})
# JUnit XML has three ways to say "not passed"; each non-passing status maps to exactly one (flaky:
# it passed in the end, as Bazel's own test.xml of the last attempt says).
JUNIT_SKIPPED = frozenset({SKIPPED, XFAILED, NOT_RUN})
JUNIT_ERROR = frozenset({ERROR, CRASHED, TIMEOUT})
JUNIT_FAILURE = frozenset({FAILED, XPASSED})
