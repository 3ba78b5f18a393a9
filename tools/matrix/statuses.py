"""The one status vocabulary shared by the runtime, the collector and the report (see DESIGN.md)."""

PASSED = "passed"
FAILED = "failed"
XFAILED = "xfailed"  # listed as an expected failure, and failed
XPASSED = "xpassed"  # listed as an expected failure, but passed: the expectation is stale
SKIPPED = "skipped"
ERROR = "error"  # setup/collection error
CRASHED = "crashed"  # the process died inside this test
TIMEOUT = "timeout"
NOT_RUN = "not_run"  # the matrix has the cell but no result was found

ALL = (PASSED, FAILED, XFAILED, XPASSED, SKIPPED, ERROR, CRASHED, TIMEOUT, NOT_RUN)
# Statuses that fail a target and the report's exit status.
UNEXPECTED = frozenset({FAILED, XPASSED, ERROR, CRASHED, TIMEOUT})
