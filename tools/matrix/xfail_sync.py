"""`xfail sync`: rewrite matrix.yaml's expectations from the last report, preserving its comments,
order and formatting (ruamel.yaml round trip): new failures become xfails with their real first
error line as the reason; stale xfails (xpassed) are removed. Everything else is left as it is."""

from __future__ import annotations

import argparse
import bisect
import difflib
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from tools.matrix import statuses
from tools.matrix.filters import record_matches
from tools.matrix.records import Record
from tools.matrix.runtime.selection import covers

NEW_FAILURE = frozenset({statuses.FAILED, statuses.ERROR, statuses.CRASHED, statuses.TIMEOUT})
MAX_REASON = 240


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long reasons
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def reason_of(record: Record) -> str:
    kind = "variant transform failed: " if record.transform_failed else ""
    first = ((record.message or "").strip() or (record.error_type or "").strip() or record.status).splitlines()[0].strip()
    text = f"{kind}{first}" if record.status in (statuses.FAILED, statuses.ERROR) else f"{record.status}: {first}"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _child(parent: Any, key: str) -> CommentedMap:
    if parent.get(key) is None:
        parent[key] = CommentedMap()
    return parent[key]


def plan(records: list[Record], args: argparse.Namespace) -> tuple[list[tuple[str, str, str | None, str, str]], list[Record]]:
    """(suite, variant, device-or-None, node id, reason) to add, and the stale records to remove."""
    chosen = [r for r in records if record_matches(r, args)]
    # Where a test ran is judged on every device, even with --device: a test failing on the chosen
    # device but passing on another gets a device-specific entry, never one for the whole variant.
    every_device = argparse.Namespace(**{**vars(args), "device": []})
    ran: dict[tuple[str, str, str], dict[str, Record]] = defaultdict(dict)  # (suite, variant, test) -> device -> record
    for r in records:
        if r.status != statuses.NOT_RUN and record_matches(r, every_device):
            ran[(r.suite, r.variant, r.test)][r.device] = r
    additions = []
    for (suite, variant, test), by_device in sorted(ran.items()):
        failing = {d: r for d, r in sorted(by_device.items()) if r.status in NEW_FAILURE and record_matches(r, args)}
        if not failing:
            continue
        if set(failing) == set(by_device):  # fails everywhere it ran: one entry for the variant
            additions.append((suite, variant, None, test, reason_of(next(iter(failing.values())))))
        else:
            additions += [(suite, variant, d, test, reason_of(r)) for d, r in sorted(failing.items())]
    stale = [r for r in chosen if r.status == statuses.XPASSED and r.expectation]
    return additions, stale


def apply(doc: Any, additions: list, stale: list[Record], still_xfailed: dict[tuple[str, str, str], set[str]]) -> None:
    expectations = _child(doc, "expectations")
    if hasattr(expectations, "fa"):
        expectations.fa.set_block_style()  # `expectations: {}` grows into a block mapping
    for suite, variant, device, test, reason in additions:
        spec = _child(_child(expectations, suite), variant)
        target = _child(_child(_child(spec, "devices"), device), "xfail") if device else _child(spec, "xfail")
        target[test] = reason
    for record in stale:
        spec = expectations.get(record.suite, {}).get(record.variant)
        if spec is None:
            continue
        device_spec = (spec.get("devices") or {}).get(record.device) or {}
        if record.expectation in (device_spec.get("xfail") or {}):
            del device_spec["xfail"][record.expectation]
            _prune(spec)
        elif record.expectation in (spec.get("xfail") or {}):
            reason = spec["xfail"].pop(record.expectation)
            # Still failing on other devices: keep the expectation there.
            for other in sorted(still_xfailed.get((record.suite, record.variant, record.expectation), set()) - {record.device}):
                _child(_child(_child(spec, "devices"), other), "xfail")[record.expectation] = reason
            _prune(spec)
    for suite in list(expectations):  # a suite/variant whose last entry went away
        for variant in list(expectations[suite] or {}):
            if not expectations[suite][variant]:
                del expectations[suite][variant]
        if not expectations[suite]:
            del expectations[suite]


def _prune(node: Any) -> None:
    """Drop mappings the removals left empty (so no `xfail: {}` litter remains)."""
    if not isinstance(node, dict):
        return
    for key in list(node):
        _prune(node[key])
        if isinstance(node[key], dict) and not node[key]:
            del node[key]


def _items(node: Any, out: list[tuple[Any, Any, bool]]) -> list[tuple[Any, Any, bool]]:
    """Every (mapping, key, is_leaf) in document order."""
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            leaf = not (isinstance(value, CommentedMap) and value)
            out.append((node, key, leaf))
            if not leaf:
                _items(value, out)
    return out


def _detach_comment_lines(doc: Any) -> tuple[list[tuple[Any, Any, bool]], list[tuple[str, int]]]:
    """Take the whole comment lines (and blank lines) that follow each leaf entry, noting which entry
    they followed. ruamel glues such lines to the last entry before them, so entries added or removed
    there would carry them off; _reattach_comment_lines puts them back before what followed them."""
    items = _items(doc, [])
    moved = []
    for i, (mapping, key, leaf) in enumerate(items):
        comment = mapping.ca.items.get(key) if leaf else None
        token = comment[2] if comment and len(comment) > 2 else None
        if not isinstance(token, CommentToken):
            continue
        first, _, lines = token.value.partition("\n")
        if not lines:
            continue
        if first:
            token.value = first + "\n"  # the end-of-line comment stays on its entry
        else:
            comment[2] = None
        moved.append((lines, i))
    return items, moved


def _reattach_comment_lines(doc: Any, detached: tuple[list[tuple[Any, Any, bool]], list[tuple[str, int]]]) -> None:
    old_items, moved = detached
    items = _items(doc, [])
    position = {(id(m), k): i for i, (m, k, _leaf) in enumerate(items)}
    leaves = [i for i, (_m, _k, leaf) in enumerate(items) if leaf]
    for lines, i in moved:
        # Before the first entry that followed them and is still there (else at the end).
        before = next((position[id(m), k] for m, k, _leaf in old_items[i + 1 :] if (id(m), k) in position), len(items))
        at = bisect.bisect_left(leaves, before)
        if not leaves:
            continue
        mapping, key, _leaf = items[leaves[at - 1] if at else leaves[-1]]
        comment = mapping.ca.items.setdefault(key, [None, None, None, None])
        if isinstance(comment[2], CommentToken):
            comment[2].value += lines
        else:
            comment[2] = CommentToken("\n" + lines, CommentMark(0), None)


def sync(matrix_path: Path, records: list[Record], args: argparse.Namespace) -> tuple[str, str]:
    """(old text, new text) of matrix.yaml."""
    old = matrix_path.read_text()
    y = _yaml()
    doc = y.load(old)
    additions, stale = plan(records, args)
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
    detached = _detach_comment_lines(doc)
    apply(doc, additions, stale, xfailed)
    if doc.get("expectations") is not None and not doc["expectations"]:
        doc["expectations"] = CommentedMap()
    _reattach_comment_lines(doc, detached)
    buffer = io.StringIO()
    y.dump(doc, buffer)
    return old, buffer.getvalue()


def diff(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}"))
