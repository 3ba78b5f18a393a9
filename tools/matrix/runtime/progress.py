"""A child's journal events as they come (cell_main reads them while it runs): the tests' results,
what it is busy with, and the per-test clock, kept here by cell_main's own monotonic clock, out of the
test's reach; and the records cell_main writes for a test the child could not report itself."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tools.matrix import statuses
from tools.matrix.records import RuntimeDetail, runtime_result
from tools.matrix.runtime import selection, verdict
from tools.matrix.runtime.cell_config import CellConfig
from tools.matrix.runtime.child import Child

# The child's own work between tests (recording a result, reaching the next test, ending the process,
# which with torch loaded takes seconds) gets test_timeout_s, and at least this long.
BETWEEN_TESTS_S = 30.0


def synthetic(cell: CellConfig, nodeid: str, status: str, message: str, log_tail: str = "") -> dict[str, Any]:
    """A record the child could not write itself (its status decided by verdict.died)."""
    hit = selection.expectation_for(nodeid, cell.xfail)
    decided = verdict.died(status, hit[0] if hit else None)
    return {
        "nodeid": nodeid,
        "outcome": "xfailed" if decided.status == statuses.XFAILED else ("failed" if status != statuses.NOT_RUN else status),
        "metadata": {
            "matrix": runtime_result(
                decided.status, RuntimeDetail(), message=message, error_type=decided.error_type, expectation=decided.expectation, log_tail=log_tail
            )
        },
    }


@dataclass(frozen=True)
class Span:
    """What a child is busy with, on cell_main's clock."""

    kind: str  # "test" (start..stop), "ending" (stop..result), "importing" (a file), "after" (anything else)
    nodeid: str  # the test or file; for "after", the last one
    since: float  # time.monotonic() when cell_main saw it begin
    after: str = ""  # for "after": what ended last, in words


class Progress:
    """One child's journal events, as they come: the results, what it is busy with, and the clock.

    The per-test timeout is kept here, by cell_main's own monotonic clock, out of the test's reach:
    a test runs on it from its `start` event to its `stop` event (setup, call and teardown; recording
    the result is off its clock); a file's import from `collecting` to `collecting_done`; and every
    other moment after the first import (recording a result, reaching the next test, ending the
    process) gets test_timeout_s too (at least BETWEEN_TESTS_S), so nothing the test leaves running
    can stall the cell."""

    def __init__(self, cell: CellConfig, tests: dict[str, dict[str, Any]], selected: dict[str, None],
                 session: dict[str, Any], problems: list[str]) -> None:  # fmt: skip
        self.cell, self.tests, self.selected, self.session, self.problems = cell, tests, selected, session, problems
        # every test of the target, before the filter and the shard split (what the outputs name as not run here)
        self.collected: dict[str, None] = session.setdefault("collected", {})
        self.pending: str | None = None  # the test running when the child ended
        self.importing: str | None = None  # the test file being imported when the child ended
        self.started = self.fatal = False
        self.checks: list[str] = []
        self.span: Span | None = None  # None until the first file's import
        self.overran: Span | None = None  # the span cell_main stopped the child in

    def _busy(self, kind: str, nodeid: str, after: str = "") -> None:
        self.span = Span(kind, nodeid, time.monotonic(), after)

    def take(self, event: dict[str, Any]) -> None:
        kind, cell = event["event"], self.cell
        if kind == "session":
            self.session.update(torch_version=event["torch_version"], python=event["python"])
        elif kind == "collecting":
            self.importing = event["nodeid"]
            self._busy("importing", event["nodeid"])
        elif kind in ("collecting_done", "collect_error"):
            self.importing = None
            self._busy("after", event["nodeid"], f"{event['nodeid']} was imported")
            if kind == "collect_error":
                self.tests[event["nodeid"]] = synthetic(cell, event["nodeid"], statuses.ERROR, event["message"], event["longrepr"])
        elif kind == "nothing_collected":
            for file in event["files"]:
                if file not in self.tests:
                    self.tests[file] = synthetic(cell, file, statuses.ERROR, f"no tests collected from this file: {event['why']}")
        elif kind == "collected":
            self.started, self.importing = True, None
            self.selected.update(dict.fromkeys(event["nodeids"]))
            self.collected.update(dict.fromkeys(event.get("every_nodeid", ())))
            self._busy("after", "", "the test files were collected")
        elif kind == "start":
            self.pending = event["nodeid"]
            self._busy("test", event["nodeid"])
        elif kind == "stop":
            self._busy("ending", event["nodeid"])
        elif kind == "result":
            self.tests[event["test"]["nodeid"]] = event["test"]
            self.pending = None
            self._busy("after", event["test"]["nodeid"], f"{event['test']['nodeid']} ended")
        elif kind == "fatal":
            self.problems.append(event["message"])
            self.fatal = True
        elif kind == "unmatched" and not any(selection.covers(event["entry"], n) for n in self.tests):
            # (an entry for a file whose import failed matches that file's record)
            self.checks.append(
                f"{cell.expectations_source} {event['kind']} entry {event['entry']!r} matches no test of {cell.suite}; "
                f"remove or fix it ({cell.entries_key()})"
            )
        elif kind == "filter_unmatched" and not selection.select(list(self.tests), selection.parse_filter(event["filter"])):
            near = f"; did you mean: {', '.join(event['near'])}?" if event["near"] else ""
            self.checks.append(f"--test_filter {event['filter']!r} matches no test of {cell.target or cell.suite} (in any shard){near}")

    def limit(self, span: Span) -> float:
        """How long `span` may take."""
        return self.cell.test_timeout_s if span.kind in ("test", "importing") else max(self.cell.test_timeout_s, BETWEEN_TESTS_S)

    def overdue(self) -> Span | None:
        """The span that has run past its limit by cell_main's clock, if any."""
        span = self.span
        return span if span is not None and time.monotonic() - span.since > self.limit(span) else None

    def record_overrun(self, tail: str) -> str | None:
        """The record (or problem) for the span cell_main stopped the child in (`tail`: the child's
        last output); the culprit's node id, None when no test or file is to blame."""
        span = self.overran
        assert span is not None
        limit, per_test = self.limit(span), f"timed out after {self.cell.test_timeout_s:g}s (per-test timeout)"
        if span.kind == "after":
            self.problems.append(
                f"the test process stopped responding for {limit:g}s after {span.after} "
                "(a thread, signal handler or atexit handler left running?); it was killed"
            )
            return None
        message = {
            "test": per_test,
            "importing": f"{per_test} while this file was being imported",
            "ending": f"timed out after the test ended: its result was not recorded within {limit:g}s (a thread or handler it left running?)",
        }[span.kind]
        self.tests[span.nodeid] = synthetic(self.cell, span.nodeid, statuses.TIMEOUT, message, tail)
        return span.nodeid


def stop_overdue(child: Child, progress: Progress) -> None:
    span = progress.overdue()
    if span is None:
        return
    progress.overran = span
    limit = progress.limit(span)
    if span.kind == "after":
        child.note(f"\n[matrix] the test process stopped responding for {limit:g}s after {span.after}; stacks follow")
    else:
        child.note(f"\nTIMEOUT: {span.nodeid} ran longer than {limit:g}s; stacks follow")
    child.stop()
