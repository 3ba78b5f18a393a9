"""The summary printed at the end of a run: counts per suite × variant × device, then what went wrong."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from tools.matrix import statuses
from tools.matrix.records import Record
from tools.matrix.report.baseline import Comparison
from tools.matrix.report.evidence import failing_with_evidence
from tools.matrix.report.signatures import first_message
from tools.matrix.report.summary import (
    COLUMNS,
    by_severity,
    carried_over,
    format_rate,
    group_counts,
    pass_rate,
    total_counts,
)
from tools.matrix.report.text import visible

T = TypeVar("T")
MAX_LINES = 40  # of unexpected results (and of each change list)
WIDTH = 160
_HEADS = {
    statuses.PASSED: "pass", statuses.XFAILED: "xfail", statuses.FAILED: "fail", statuses.XPASSED: "xpass",
    statuses.SKIPPED: "skip", statuses.ERROR: "error", statuses.CRASHED: "crash", statuses.TIMEOUT: "timeout",
    statuses.NOT_RUN: "not_run", statuses.FLAKY: "flaky",
}
_BREAKS = re.compile(r"[\t\n\r]")  # one line per result


def _clean(text: str) -> str:
    """No terminal escape, bidi override or line break from test output reaches the terminal raw."""
    return _BREAKS.sub(" ", visible(text))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _align(rows: list[list[str]], right_from: int) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i >= right_from else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in rows]


def _counts_table(records: Sequence[Record]) -> list[str]:
    groups = group_counts(records)
    cols = list(COLUMNS)
    rows = [["suite", "variant", "device", *(_HEADS[s] for s in cols), "rate"]]
    for (suite, variant, device), c in groups.items():
        rows.append([_clean(suite), _clean(variant), _clean(device), *(str(c[s]) if c[s] else "." for s in cols), format_rate(pass_rate(c))])
    totals = {s: 0 for s in cols} | total_counts(groups)
    rows.append(["total", "", "", *(str(totals[s]) for s in cols), format_rate(pass_rate(totals))])
    return _align(rows, right_from=3)


def _line(r: Record, label: str) -> str:
    where = f"{r.suite}::{r.test} [{r.variant}/{r.device}]"
    message = first_message(r)
    # pytest's message usually starts with the (dotted) type already: don't say it twice.
    typed = bool(r.error_type) and r.error_type not in message.split(":", 1)[0]
    what = f"{'transform: ' if r.transform_failed else ''}{r.error_type + ': ' if typed else ''}{message}"
    return _clip(_clean(f"  {label:<18} {where}  {what}".rstrip()), WIDTH)


def _listing(title: str, items: Sequence[T], fmt: Callable[[T], str]) -> list[str]:
    """Format only the lines shown: there may be 100k items."""
    shown = [fmt(item) for item in items[:MAX_LINES]]
    more = [f"  ... and {len(items) - len(shown)} more"] if len(items) > len(shown) else []
    return [title, *shown, *more]


def _changes(comparison: Comparison) -> list[str]:
    c = comparison.counts()
    out = ["", (f"Changes since baseline: {c['regressions']} regressions, {c['fixes']} fixes, {c['changed_xfails']} changed xfails, "
               f"{c['other']} other, {c['new']} new cells, {c['removed']} removed cells")]
    for title, changes in (("Regressions", comparison.regressions), ("Changed xfails", comparison.changed_xfails)):
        if changes:
            out += _listing(f"{title}:", changes, lambda ch: _line(ch.new, f"{ch.old.status}->{ch.new.status}"))
    return out


def terminal_summary(records: Sequence[Record], comparison: Comparison | None = None, run_id: str | None = None) -> str:
    """A compact aligned table plus the unexpected results (at most MAX_LINES, then "... and N more");
    with `run_id`, how many records are carried over from earlier runs."""
    if not records:
        return "No test results.\n"
    out = _counts_table(records)
    carried = carried_over(records, run_id) if run_id is not None else ""
    if carried:
        out += ["", _clean(carried)]
    if comparison is not None:
        out += _changes(comparison)
    bad = by_severity(r for r in records if r.status in statuses.UNEXPECTED)
    out.append("")
    if bad:
        out += _listing(f"Unexpected results ({len(bad)}):", bad, lambda r: _line(r, f"{r.status}{' (transform)' if r.transform_failed else ''}"))
    else:
        out.append("No unexpected results.")
    kept, failing = failing_with_evidence(records)
    if kept:
        out.append(f"Evidence: {kept} of {failing} failing cells kept what their variant's transform changed: "
                   "compat.md, \"What the transform changed\", or click the cell in compat.html.")
    return "\n".join(out) + "\n"
