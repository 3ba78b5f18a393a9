"""`xfail sync`: rewrite matrix.yaml's expectations from the last report, preserving its comments,
order and formatting (matrix_writer: ruamel.yaml round trip, validated before it is written): new
failures become xfails with their real first error line as the reason; stale xfails (xpassed) are
removed. Everything else is left as it is."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tools.matrix import config, statuses
from tools.matrix.filters import record_matches
from tools.matrix.matrix_writer import MAX_REASON, Edit, add_xfail, clean_reason, diff, edit_expectations, prune
from tools.matrix.records import Record
from tools.matrix.report.signatures import normalise
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


def apply(expectations: Any, additions: list, stale: list[Record], still_xfailed: dict[tuple[str, str, str], set[str]]) -> None:
    """Edit `expectations` (suite -> variant -> ...: matrix_writer.edit_expectations' mapping)."""
    for addition in additions:
        add_xfail(expectations, *addition)
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
         warn: Callable[[str], None] = lambda line: None, workspace: Path | None = None) -> list[Edit]:  # fmt: skip
    """The edits of matrix.yaml and (with `matrix`) of the suites' expectations files. With `matrix`
    (the file as loaded now), failures of tests or cells that matrix.yaml no longer has (the report is
    older than the last edit) are left out; so are tests whose node id cannot be a key as it is
    (`warn` gets one line for each). In an expectations file, a parametrized test every one of whose
    parameter sets fails in a cell gets one entry (an operator, for an OpInfo suite), not one each."""
    additions, stale = plan(records, args)
    in_files = {s.name for s in matrix.suites if s.expectations_file} if matrix else set()
    additions = compact(additions, records, in_files)
    for *_, test, _reason in additions:
        if why := unwritable(test):
            warn(f"warning: not added: {ascii(test)[1:-1]}: {why}; add its entry by hand if you must")
    additions = [a for a in additions if not unwritable(a[3])]
    if matrix is not None:
        additions = [a for a in additions if still_in(matrix, *a[:4])]
    # (suite, variant, entry) -> devices where the entry is still needed: it still covers a failing
    # test there (a file or class entry covers several), or nothing ran there to say otherwise.
    # (An entry under which one test passes and another fails on a device is stale there all the same:
    # the failing ones get entries of their own, still_failing_under.)
    xpassed_on = {(r.suite, r.variant, r.expectation, r.device) for r in stale}
    xfailed: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for r in records:
        if r.status == statuses.XFAILED and r.expectation and (r.suite, r.variant, r.expectation, r.device) not in xpassed_on:
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
    additions += still_failing_under(stale, records, additions)
    return edit_expectations(workspace or matrix_path.parent, matrix_path, matrix, lambda expectations: apply(expectations, additions, stale, xfailed))


def base_of(test: str) -> str:
    """A parametrized test's id without its parameters (`f.py::test_op[3-ab12]` -> `f.py::test_op`)."""
    return test.split("[", 1)[0]


def compact(additions: list, records: list[Record], suites: set[str]) -> list:
    """For `suites` (those with an expectations file): the additions of a parametrized test that fails
    under every parameter set it ran with in its cell become one entry for the test, its reason the
    most common one by signature (shapes and numbers aside), and how many of its samples fail otherwise."""
    ran: dict[tuple[str, str, str | None, str], set[str]] = defaultdict(set)  # (suite, variant, device, base) -> tests that ran
    for r in records:
        if r.suite in suites and is_test(r) and "[" in r.test and r.status not in statuses.DID_NOT_RUN:
            for device in (r.device, None):
                ran[(r.suite, r.variant, device, base_of(r.test))].add(r.test)
    grouped: dict[tuple[str, str, str | None, str], list] = defaultdict(list)
    out = []
    for addition in additions:
        suite, variant, device, test, _reason = addition
        if suite in suites and "[" in test:
            grouped[(suite, variant, device, base_of(test))].append(addition)
        else:
            out.append(addition)
    for (suite, variant, device, base), group in grouped.items():
        if {a[3] for a in group} != ran[(suite, variant, device, base)] or len(group) < 2:
            out += group
            continue
        by_signature = Counter(normalise(a[4]) for a in group)
        signature, count = by_signature.most_common(1)[0]
        reason = next(a[4] for a in group if normalise(a[4]) == signature)
        other = f" ({len(group) - count} of its {len(group)} samples fail otherwise)" if count < len(group) else ""
        out.append((suite, variant, device, base, clean_reason(reason[: MAX_REASON - len(other)] + other)))
    return out


def still_failing_under(stale: list[Record], records: list[Record], additions: list) -> list:
    """When an entry covering several tests goes stale (one of them passes now), an entry for each of
    the others that still fails under it, so that removing it uncovers no known failure."""
    going = {(r.suite, r.variant, r.expectation) for r in stale}
    added = {(a[0], a[1], a[3]) for a in additions}
    out = []
    for r in records:
        if r.status == statuses.XFAILED and (r.suite, r.variant, r.expectation) in going and r.test != r.expectation and (r.suite, r.variant, r.test) not in added:
            out.append((r.suite, r.variant, None, r.test, reason_of(replace(r, status=statuses.FAILED))))
            added.add((r.suite, r.variant, r.test))
    return out


def still_in(matrix: config.Matrix, suite: str, variant: str, device: str | None, test: str) -> bool:
    """The cell(s) and the test file of an addition still exist in matrix.yaml, and no skip entry
    (added since the report) covers the test: an xfail next to it would be a conflict."""
    cells = [c for c in matrix.cells() if (c.suite.name, c.variant.name) == (suite, variant) and device in (None, c.device.name)]
    if not cells or f"{cells[0].suite.directory}/{test.split('::', 1)[0]}" not in cells[0].suite.test_files:
        return False
    return not any(covers(entry, test) for c in cells for entry, _reason in c.expectations.skip)
