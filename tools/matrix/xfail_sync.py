"""`xfail sync`: rewrite matrix.yaml's expectations from the last report, preserving its comments,
order and formatting (matrix_writer: ruamel.yaml round trip, validated before it is written): new
failures become xfails with their real first error line as the reason; stale xfails (xpassed) are
removed. Everything else is left as it is."""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.matrix import config, statuses
from tools.matrix.filters import record_matches
from tools.matrix.matrix_writer import MAX_REASON, add_xfail, add_xfails, clean_reason, diff, edit, prune
from tools.matrix.records import Record
from tools.matrix.runtime.selection import covers

__all__ = ["MAX_REASON", "diff", "plan", "reason_of", "sync"]


def reason_of(record: Record) -> str:
    kind = "variant transform failed: " if record.transform_failed else ""
    first = clean_reason(record.message or "") or clean_reason(record.error_type or "") or record.status
    text = f"{kind}{first}" if record.status in (statuses.FAILED, statuses.ERROR) else f"{record.status}: {first}"
    return clean_reason(text)


def is_test(record: Record) -> bool:
    """A real test's result, not a pseudo-record the collector writes for a cell without results
    (`(no test results for this suite)`, not_run): only node ids of a .py file can be expectations."""
    return record.status != statuses.NOT_RUN and record.test.split("::", 1)[0].endswith(".py")


def unwritable(test: str) -> str:
    """Why `test` cannot be a matrix.yaml key as it is ("" when it can): the loader refuses control
    characters and a node id with nothing after a `::`; a character that is not printable (a bidi
    override, a zero-width space) would make the file show something else than it holds."""
    bad = next((c for c in test if not c.isprintable()), None)
    if bad is not None:
        return f"it holds {ascii(bad)}, which matrix.yaml cannot show as it is"
    if any(not part for part in test.split("::")[1:]):
        return "it has nothing after a '::'"
    return ""


def plan(records: list[Record], args: argparse.Namespace) -> tuple[list[tuple[str, str, str | None, str, str]], list[Record]]:
    """(suite, variant, device-or-None, node id, reason) to add, and the stale records to remove."""
    chosen = [r for r in records if record_matches(r, args)]
    # Where a test ran is judged on every device, even with --device: a test failing on the chosen
    # device but passing on another gets a device-specific entry, never one for the whole variant.
    every_device = argparse.Namespace(**{**vars(args), "device": []})
    ran: dict[tuple[str, str, str], dict[str, Record]] = defaultdict(dict)  # (suite, variant, test) -> device -> record
    for r in records:
        if is_test(r) and record_matches(r, every_device):
            ran[(r.suite, r.variant, r.test)][r.device] = r
    additions = []
    for (suite, variant, test), by_device in sorted(ran.items()):
        failing = {d: r for d, r in sorted(by_device.items()) if r.status in statuses.FAILING and record_matches(r, args)}
        if not failing:
            continue
        if set(failing) == set(by_device):  # fails everywhere it ran: one entry for the variant
            additions.append((suite, variant, None, test, reason_of(next(iter(failing.values())))))
        else:
            additions += [(suite, variant, d, test, reason_of(r)) for d, r in sorted(failing.items())]
    stale = [r for r in chosen if r.status == statuses.XPASSED and r.expectation]
    return additions, stale


def apply(doc: Any, additions: list, stale: list[Record], still_xfailed: dict[tuple[str, str, str], set[str]]) -> None:
    add_xfails(doc, additions)
    expectations = doc["expectations"]
    for record in stale:
        spec = expectations.get(record.suite, {}).get(record.variant)
        if spec is None:
            continue
        device_spec = (spec.get("devices") or {}).get(record.device) or {}
        if record.expectation in (device_spec.get("xfail") or {}):
            del device_spec["xfail"][record.expectation]
            prune(spec)
        elif record.expectation in (spec.get("xfail") or {}):
            reason = spec["xfail"].pop(record.expectation)
            # Still failing on other devices: keep the expectation there.
            for other in sorted(still_xfailed.get((record.suite, record.variant, record.expectation), set()) - {record.device}):
                add_xfail(expectations, record.suite, record.variant, other, record.expectation, reason)
            prune(spec)
    for suite in list(expectations):  # a suite/variant whose last entry went away
        for variant in list(expectations[suite] or {}):
            if not expectations[suite][variant]:
                del expectations[suite][variant]
        if not expectations[suite]:
            del expectations[suite]


def sync(matrix_path: Path, records: list[Record], args: argparse.Namespace, matrix: config.Matrix | None = None,
         warn: Callable[[str], None] = lambda line: None) -> tuple[str, str]:  # fmt: skip
    """(old text, new text) of matrix.yaml. With `matrix` (the file as loaded now), failures of tests
    or cells that matrix.yaml no longer has (the report is older than the last edit) are left out; so
    are tests whose node id cannot be a key as it is (`warn` gets one line for each)."""
    additions, stale = plan(records, args)
    for *_, test, _reason in additions:
        if why := unwritable(test):
            warn(f"warning: not added: {ascii(test)[1:-1]}: {why}; add its entry by hand if you must")
    additions = [a for a in additions if not unwritable(a[3])]
    if matrix is not None:
        additions = [a for a in additions if still_in(matrix, *a[:4])]
    # (suite, variant, entry) -> devices where the entry is still needed: it still covers a failing
    # test there (a file or class entry covers several), or nothing ran there to say otherwise.
    xfailed: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in records:
        if r.status == statuses.XFAILED and r.expectation:
            xfailed[(r.suite, r.variant, r.expectation)].add(r.device)
    stale_entries: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in stale:
        stale_entries[(r.suite, r.variant)].add(r.expectation)
    for r in records:
        if r.status == statuses.NOT_RUN:
            for entry in stale_entries.get((r.suite, r.variant), ()):
                if covers(entry, r.test):
                    xfailed[(r.suite, r.variant, entry)].add(r.device)
    stale = [r for r in stale if r.device not in xfailed.get((r.suite, r.variant, r.expectation), ())]
    return edit(matrix_path, lambda doc: apply(doc, additions, stale, xfailed))


def still_in(matrix: config.Matrix, suite: str, variant: str, device: str | None, test: str) -> bool:
    """The cell(s) and the test file of an addition still exist in matrix.yaml, and no skip entry
    (added since the report) covers the test: an xfail next to it would be a conflict."""
    cells = [c for c in matrix.cells() if (c.suite.name, c.variant.name) == (suite, variant) and device in (None, c.device.name)]
    if not cells or f"{cells[0].suite.directory}/{test.split('::', 1)[0]}" not in cells[0].suite.test_files:
        return False
    return not any(covers(entry, test) for c in cells for entry, _reason in c.expectations.skip)
