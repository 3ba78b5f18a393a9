"""compat.md: the GitHub-flavoured Markdown report."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import attrgetter

from tools.matrix import statuses
from tools.matrix.records import Record, RunInfo
from tools.matrix.report.baseline import Change, Comparison
from tools.matrix.report.evidence import CallView, evidence_view, with_evidence
from tools.matrix.report.history_view import HistoryView
from tools.matrix.report.operators import OperatorTable, operator_table
from tools.matrix.report.signatures import failure_causes, first_message
from tools.matrix.report.summary import (
    COLUMNS,
    Prepared,
    by_severity,
    carried_over,
    failure_kind,
    format_rate,
    pass_rate,
    prepare,
    variant_order,
)
from tools.matrix.report.text import visible

# Plain glyphs every font has (the page shows them too); the legend explains them.
SYMBOLS = {
    statuses.PASSED: "✓",
    statuses.FAILED: "✗",
    statuses.XFAILED: "x",
    statuses.XPASSED: "X!",
    statuses.SKIPPED: "s",
    statuses.ERROR: "E",
    statuses.CRASHED: "C!",
    statuses.TIMEOUT: "TO",
    statuses.NOT_RUN: "–",
    statuses.FLAKY: "~",
}
TRANSFORM_MARK = "⚙"  # appended when the variant's transform raised, as opposed to the test's assertion
MAX_MESSAGE = 240
MAX_ROWS = 200  # per list-like section; compat.json and compat.html always have everything
# "What the transform changed": cells shown, calls shown per cell, diff lines shown per call.
MAX_EVIDENCE_CELLS, MAX_EVIDENCE_CALLS, MAX_DIFF_LINES = 20, 3, 40
MAX_CHECK = 500

_NEWLINES = re.compile(r"\r\n|\r|\n")
_BACKTICKS = re.compile(r"`+")


def escape(text: str) -> str:
    """Plain table-cell text: no pipes, newlines, HTML or emphasis can leak out of the cell, and no
    control or bidi character reaches the reader raw (shown as `\\u202e`, ...)."""
    text = _NEWLINES.sub(" ↵ ", visible(text)).replace("\\", "\\\\").replace("|", "\\|")
    for ch in "*[]<>&~`":
        text = text.replace(ch, "\\" + ch)
    return text


def code(text: str, limit: int | None = None, in_table: bool = True) -> str:
    """A code span safe inside a table cell (GFM unescapes `\\|` there even inside code); outside a table
    (`in_table=False`) a pipe stays as it is, so a command copied from it runs as written."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _NEWLINES.sub(" ↵ ", visible(text))
    if in_table:
        text = text.replace("|", "\\|")
    if not text.strip():
        return ""
    fence = "`" * (max((len(m) for m in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> list[str]:
    """`align`: one letter per column, l or r (default l)."""
    marks = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def _more(total: int, shown: int, what: str = "") -> list[str]:
    return ["", f"… and {total - shown} more{what} (see compat.json / compat.html)."] if total > shown else []


def _summary(prep: Prepared) -> list[str]:
    groups = prep.groups
    header = ["suite", "variant", "device", *COLUMNS, "pass rate"]
    rows = [[escape(s), escape(v), escape(d), *(str(c[k]) for k in COLUMNS), format_rate(pass_rate(c))] for (s, v, d), c in groups.items()]
    totals = prep.totals
    rows.append(["**all**", "", "", *(f"**{totals[k]}**" for k in COLUMNS), f"**{format_rate(pass_rate(totals))}**"])
    return ["## Summary", "", *table(header, rows, "lll" + "r" * (len(COLUMNS) + 1)),
            "", "Pass rate = passed / (total − skipped − not_run)."]


_HAS_KIND = statuses.UNEXPECTED | {statuses.XFAILED}


def _change_rows(changes: Sequence[Change]) -> list[str]:
    rows = [
        [escape(c.new.suite), code(c.new.test), escape(c.new.variant), escape(c.new.device), c.old.status, c.new.status,
         failure_kind(c.new) if c.new.status in _HAS_KIND else "", code(first_message(c.new), MAX_MESSAGE)]
        for c in changes[:MAX_ROWS]
    ]
    header = ["suite", "test", "variant", "device", "before", "after", "kind", "message"]
    return [*table(header, rows), *_more(len(changes), len(rows))]


def _cells_by_test(records: Sequence[Record]) -> list[str]:
    """New / removed cells, one line per test with the variant/device cells it gained or lost."""
    tests = [(key, list(group)) for key, group in groupby(records, key=attrgetter("suite", "test"))]
    lines = [
        f"- {escape(suite)} {code(test)}: " + ", ".join(f"{escape(r.variant)}/{escape(r.device)} ({r.status})" for r in group)
        for (suite, test), group in tests[:MAX_ROWS]
    ]
    return [*lines, *_more(len(tests), len(lines), " tests")]


def _changes(comparison: Comparison) -> list[str]:
    c = comparison.counts()
    since = ", ".join(comparison.baseline_run_ids) or "the baseline"
    lines = ["## Changes since baseline", "",
             (f"Compared with {escape(since)}: **{c['regressions']} regressions**, {c['fixes']} fixes, "
             f"{c['changed_xfails']} changed xfails, {c['other']} other status changes, "
             f"{c['new']} new cells, {c['removed']} removed cells.")]
    sections = [("Regressions", "passed/xfailed → failed/error/crashed/timeout.", comparison.regressions),
                ("Fixes", "failed/error/crashed/timeout → passed.", comparison.fixes),
                ("Changed xfails", "xfailed ↔ anything else: an xfail entry was added, removed or went stale.", comparison.changed_xfails),
                ("Other status changes", "", comparison.other)]
    for title, what, changes in sections:
        if changes:
            lines += ["", f"### {title} ({len(changes)})", "", *([what, ""] if what else []), *_change_rows(changes)]
    for title, cells in (("New tests", comparison.new), ("Removed tests", comparison.removed)):
        if cells:
            lines += ["", f"### {title} ({len(cells)} cells)", "", *_cells_by_test(cells)]
    return lines


def _unexpected(records: Sequence[Record]) -> list[str]:
    bad = by_severity(r for r in records if r.status in statuses.UNEXPECTED)
    if not bad:
        return ["## Unexpected results", "", "None: every cell passed, was skipped, or failed as expected."]
    rows = [[r.status, failure_kind(r), escape(r.suite), code(r.test), escape(r.variant), escape(r.device),
             code(r.error_type or ""), code(first_message(r), MAX_MESSAGE)] for r in bad[:MAX_ROWS]]
    header = ["status", "kind", "suite", "test", "variant", "device", "error", "message"]
    return [f"## Unexpected results ({len(bad)})", "", *table(header, rows), *_more(len(bad), len(rows))]


def _stale_xfails(records: Sequence[Record]) -> list[str]:
    stale = [r for r in records if r.status == statuses.XPASSED]
    lines = ["## Stale xfails", ""]
    if not stale:
        return lines + ["None: every xfail entry still fails."]
    rows = [[escape(r.suite), code(r.test), escape(r.variant), escape(r.device), code(r.expectation or r.test)] for r in stale[:MAX_ROWS * 5]]
    lines += [f"{len(stale)} cells passed although matrix.yaml expects them to fail: remove the entry.", ""]
    return lines + [*table(["suite", "test", "variant", "device", "xfail entry to remove"], rows), *_more(len(stale), len(rows))]


def _causes(records: Sequence[Record]) -> list[str]:
    causes = failure_causes(records, limit=20)
    lines = ["## Top failure causes", ""]
    if not causes:
        return lines + ["No failures."]
    lines += [("Failures (including xfailed) grouped by error type and message, with numbers, addresses, shapes, "
              "quoted names and temp paths blanked. *transform failure*: the variant's transform raised; "
              "*test failure*: the test itself failed."), ""]
    rows = []
    for i, c in enumerate(causes, 1):
        ex = c.example
        where = f"{escape(ex.suite)} {code(ex.test)} [{escape(ex.variant)}/{escape(ex.device)}]" if ex else ""
        rows.append([str(i), str(c.count), str(c.xfailed), f"**{c.kind}**", code(c.signature),
                     ", ".join(f"{escape(v)} ({n})" for v, n in c.variants.most_common()),
                     ", ".join(f"{escape(s)} ({n})" for s, n in c.suites.most_common()), where])
    return lines + table(["#", "count", "of which xfailed", "kind", "signature", "variants", "suites", "example"], rows, "rrr")


def _fenced(lines: Sequence[str], info: str = "") -> list[str]:
    """A fenced code block no line of `lines` can close (its fence is longer than any backtick run)."""
    longest = max((len(m) for line in lines for m in _BACKTICKS.findall(line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, *lines, fence]


def _evidence_call(call: CallView, of: int) -> list[str]:
    check = call.check if len(call.check) <= MAX_CHECK else call.check[: MAX_CHECK - 1] + "…"
    lines = [f"Call {call.number} of {of}: {code(call.entry, in_table=False)} · {code(check, in_table=False)}", ""]
    for note in [call.note, *call.cuts]:
        if note:
            lines += [f"*{escape(note)}*", ""]
    if call.error:
        lines += [*_fenced(call.error.split("\n"), "text"), ""]
    if call.diff:
        shown = call.diff[:MAX_DIFF_LINES]
        lines += [*_fenced(shown, "diff"), ""]
        if len(call.diff) > len(shown):
            lines += [f"… {len(call.diff) - len(shown)} more diff lines: compat.html has the whole diff and both texts.", ""]
    for p in call.payloads:
        get = f" · {code(p.command, in_table=False)}" if p.command else ""
        lines.append(f"- payload {code(p.file, in_table=False)}: {escape(p.about)}{get}")
    return lines + [""] if call.payloads else lines


def _evidence(records: Sequence[Record]) -> list[str]:
    """Per cell with evidence (unexpected first, then xfailed): what its variant's transform changed."""
    cells = with_evidence(records)
    if not cells:
        return []
    lines = [f"## What the transform changed ({len(cells)})", "",
             ("Cells that failed, crashed or xfailed under a transforming variant keep, per call it transformed, the program "
              "before and after the transform (a unified diff), the differential check's outcome and what the transform "
              f"serialized (the payload, with the command that gets it). Unexpected results first; here at most "
              f"{MAX_EVIDENCE_CALLS} calls a cell and {MAX_DIFF_LINES} diff lines a call: compat.html has everything "
              "(click the cell).")]
    for r in cells[:MAX_EVIDENCE_CELLS]:
        view = evidence_view(r)
        assert view is not None
        lines += ["", f"### {r.status} · {escape(r.variant)}/{escape(r.device)} · {escape(r.suite)} {code(r.test)}", ""]
        if view.problem:
            lines += [f"**The evidence could not be read whole:** {escape(view.problem)}", ""]
        for call in view.calls[:MAX_EVIDENCE_CALLS]:
            lines += _evidence_call(call, len(view.calls))
        hidden = len(view.calls) - min(len(view.calls), MAX_EVIDENCE_CALLS)
        for note in [f"{hidden} more calls in compat.html." if hidden else "", view.not_kept]:
            if note:
                lines += [escape(note), ""]
        if lines[-1] == "":
            lines.pop()
    return lines + _more(len(cells), min(len(cells), MAX_EVIDENCE_CELLS), " cells with evidence")


def _legend() -> str:
    names = " · ".join(f"{sym} {status}" for status, sym in SYMBOLS.items())
    return f"Legend: {names} · {TRANSFORM_MARK} after a symbol: the variant's transform raised (not the test's assertion) · empty: no such cell."


def _columns(pairs: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """(variant, device) columns: variants base first, then devices alphabetically."""
    rank = {v: i for i, v in enumerate(variant_order(v for v, _ in pairs))}
    return sorted(pairs, key=lambda vd: (rank[vd[0]], vd[1]))


def _grids(records: Sequence[Record]) -> list[str]:
    lines = ["## Tests not green everywhere", "",
             "Per suite, every test with a cell other than passed or skipped, by variant/device.", "", _legend()]
    # Columns of each suite: the (variant, device) pairs it has, base first.
    pairs: dict[str, set[tuple[str, str]]] = {}
    for suite, variant, device in set(map(attrgetter("suite", "variant", "device"), records)):
        pairs.setdefault(suite, set()).add((variant, device))
    cols = {suite: _columns(pairs[suite]) for suite in sorted(pairs)}
    symbols = {(st, tf): SYMBOLS[st] + (TRANSFORM_MARK if tf and st != statuses.PASSED else "") for st in statuses.ALL for tf in (False, True)}
    green = statuses.GREEN
    rows: dict[str, list[str]] = {s: [] for s in cols}
    tests: dict[str, int] = dict.fromkeys(cols, 0)
    index = {s: {vd: i for i, vd in enumerate(c)} for s, c in cols.items()}
    for (suite, test), cells in groupby(records, key=attrgetter("suite", "test")):  # one pass, records are sorted
        tests[suite] += 1
        idx = index[suite]
        row = [""] * len(idx)
        bad = False
        for r in cells:
            st = r.status
            if st not in green:
                bad = True
            row[idx[r.variant, r.device]] = symbols.get((st, r.transform_failed), st)
        if bad:
            rows[suite].append("| " + code(test) + " | " + " | ".join(row) + " |")
    for suite, suite_rows in rows.items():
        lines += ["", f"### {escape(suite)}", ""]
        if not suite_rows:
            lines.append("All green.")
            continue
        header = ["test", *(f"{escape(v)}<br>{escape(d)}" for v, d in cols[suite])]
        lines += [f"{len(suite_rows)} of {tests[suite]} tests.", "", *table(header, []), *suite_rows]
    return lines


def _history(view: HistoryView, records: Sequence[Record]) -> list[str]:
    """New and fixed since each test's last verdict in the history, failing since when, the flaky tests."""
    lines = ["## History", "", (f"Against {view.runs} earlier run(s) in {code(view.store)}: **{len(view.new)} new unexpected** since each "
                                f"test's last verdict, {len(view.fixed)} fixed. `history failing-since` and `history timeline TEST` say more.")]  # fmt: skip

    def cell(r: Record) -> list[str]:
        return [escape(r.suite), code(r.test), f"{escape(r.variant)}/{escape(r.device)}", r.status]

    for title, rows in (("New since the previous verdict", view.new), ("Fixed since the previous verdict", view.fixed)):
        if rows:
            lines += ["", f"### {title} ({len(rows)})", "", *table(["suite", "test", "cell", "status"], [cell(r) for r in rows[:MAX_ROWS]]),
                      *_more(len(rows), min(len(rows), MAX_ROWS))]  # fmt: skip
    failing = [r for r in records if r.key in view.since]
    if failing:
        rows = [[*cell(r), escape(view.since[r.key].first_bad), escape(view.since[r.key].last_good or "never (in the history kept)"),
                 " ".join(SYMBOLS.get(s, "?") for s in view.strip.get(r.key, []))] for r in failing[:MAX_ROWS]]  # fmt: skip
        lines += ["", f"### Failing since ({len(failing)})", "",
                  *table(["suite", "test", "cell", "status", "failing since", "last on track", "last runs (oldest first)"], rows),
                  *_more(len(failing), len(rows))]  # fmt: skip
    flaky = [r for r in records if r.status == statuses.FLAKY]
    if flaky:
        rows = [[*cell(r), escape(first_message(r))] for r in flaky[:MAX_ROWS]]
        lines += ["", f"### Flaky in this run ({len(flaky)})", "", "Failed, then passed when Bazel ran the target again: not a failure "
                  "(`report --strict-flaky` makes it one); `history flaky` gives each one's rate across runs.", "",
                  *table(["suite", "test", "cell", "status", "first attempt"], rows), *_more(len(flaky), len(rows))]  # fmt: skip
    return lines



def _operator_cell(cell, anchor: str) -> str:
    if cell is None:
        return ""
    text = f"{cell.passed}/{cell.total}"
    if cell.state == "broken":
        return f"**[✗ {text}](#{anchor})**"
    return f"[x {text}](#{anchor})" if cell.state == "known" else text


def _operators(ops: OperatorTable) -> list[str]:
    """Operators × variants (tests generated from OpInfo): samples passed / total; the operators with a
    failing sample somewhere first, each failing cell linked to its samples and failure signature."""
    if not ops.rows:
        return []
    failing = [row for row in ops.rows if any(cell.failing or cell.unexpected for cell in row.cells.values())]
    broken = ops.broken()
    lines = [f"## Operators ({len(ops.rows)})", "",
             ("Tests generated from PyTorch's OpInfo database, per operator: samples passed / total under each "
              "variant/device. **✗**: a sample's result is unexpected (failed, crashed, xpassed, ...); x: its samples "
              "fail as expected (xfailed). Click a cell for its failing samples and their failure signature."), ""]
    for (variant, device), names in broken.items():
        lines.append(f"- broken under {escape(variant)}/{escape(device)} ({len(names)}): {', '.join(code(op) for op in names[:MAX_ROWS])}")
    if not broken:
        lines.append("No operator has an unexpected result.")
    lines += ["", f"{len(failing)} of {len(ops.rows)} operators have a failing sample somewhere; "
              f"{len(ops.rows) - len(failing)} pass or skip every sample everywhere (compat.json / compat.html list them)."]
    if not failing:
        return lines
    header = ["suite", "operator", *(f"{escape(v)}<br>{escape(d)}" for v, d in ops.columns)]
    rows, details = [], []
    for row in failing[:MAX_ROWS]:
        cells = []
        for column in ops.columns:
            cell = row.cells.get(column)
            anchor = f"op-{row.suite}-{row.operator}-{column[0]}-{column[1]}".lower()
            cells.append(_operator_cell(cell, anchor))
            if cell is not None and cell.failing:
                samples = ", ".join(code(r.test.rsplit("::", 1)[-1]) for r in cell.failing[:5])
                more = f" and {len(cell.failing) - 5} more" if len(cell.failing) > 5 else ""
                details.append(f'- <a id="{anchor}"></a>{code(row.operator)} under {escape(column[0])}/{escape(column[1])}: '
                               f"{len(cell.failing)} of {cell.total} samples fail: {code(cell.signature, MAX_MESSAGE)} ({samples}{more})")
        rows.append([escape(row.suite), code(row.operator), *cells])
    lines += ["", *table(header, rows), *_more(len(failing), len(rows), " operators"), "", "### Failing samples", "", *details]
    return lines


def render_markdown(records: Sequence[Record] | Prepared, run: RunInfo, baseline: Comparison | None = None, history: HistoryView | None = None) -> str:
    prep = prepare(records)
    ordered, totals, n_bad = prep.records, prep.totals, prep.unexpected_count
    head = [
        "# Compatibility report", "",
        (f"Run {code(run.run_id)} · created {escape(run.created)} · torch {escape(run.torch_version or 'unknown')} · "
        f"{len(ordered)} cells · pass rate {format_rate(pass_rate(totals))} · **{n_bad} unexpected**"),
    ]
    if run.bazel_command:
        head += ["", f"Command: {code(run.bazel_command)}"]
    carried = carried_over(ordered, run.run_id)
    if carried:  # each record's run_id is in compat.json and compat.html
        head += ["", f"**{escape(carried)}**"]
    parts = [head, _summary(prep)]
    if baseline is not None:
        parts.append(_changes(baseline))
    if history is not None:
        parts.append(_history(history, ordered))
    parts += [_unexpected(ordered), _stale_xfails(ordered), _causes(ordered)]
    operators = _operators(operator_table(ordered))
    if operators:
        parts.append(operators)
    parts.append(_grids(ordered))
    evidence = _evidence(ordered)
    if evidence:
        parts.append(evidence)
    return "\n\n".join("\n".join(p) for p in parts) + "\n"
