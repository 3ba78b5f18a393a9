"""`xfail sync`: rewrite matrix.yaml's expectations from the last report, preserving its comments,
order and formatting (ruamel.yaml round trip): new failures become xfails with their real first
error line as the reason; stale xfails (xpassed) are removed. Everything else is left as it is."""

from __future__ import annotations

import argparse
import difflib
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from tools.matrix import statuses
from tools.matrix.filters import record_matches
from tools.matrix.records import Record

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
    first = (record.message or record.error_type or record.status).strip().splitlines()[0] if (record.message or record.error_type) else record.status
    text = f"{kind}{first}" if record.status in (statuses.FAILED, statuses.ERROR) else f"{record.status}: {first}"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def _child(parent: Any, key: str) -> CommentedMap:
    if parent.get(key) is None:
        parent[key] = CommentedMap()
    return parent[key]


def plan(records: list[Record], args: argparse.Namespace) -> tuple[list[tuple[str, str, str | None, str, str]], list[Record]]:
    """(suite, variant, device-or-None, node id, reason) to add, and the stale records to remove."""
    chosen = [r for r in records if record_matches(r, args)]
    ran: dict[tuple[str, str, str], dict[str, Record]] = defaultdict(dict)  # (suite, variant, test) -> device -> record
    for r in chosen:
        if r.status != statuses.NOT_RUN:
            ran[(r.suite, r.variant, r.test)][r.device] = r
    additions = []
    for (suite, variant, test), by_device in sorted(ran.items()):
        failing = {d: r for d, r in by_device.items() if r.status in NEW_FAILURE}
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


def sync(matrix_path: Path, records: list[Record], args: argparse.Namespace) -> tuple[str, str]:
    """(old text, new text) of matrix.yaml."""
    old = matrix_path.read_text()
    y = _yaml()
    doc = y.load(old)
    additions, stale = plan(records, args)
    xfailed = defaultdict(set)
    for r in records:
        if r.status == statuses.XFAILED and r.expectation:
            xfailed[(r.suite, r.variant, r.expectation)].add(r.device)
    stale_devices = {(r.suite, r.variant, r.expectation, r.device) for r in stale}
    xfailed = {k: {d for d in v if (*k, d) not in stale_devices} for k, v in xfailed.items()}
    apply(doc, additions, stale, xfailed)
    if doc.get("expectations") is not None and not doc["expectations"]:
        doc["expectations"] = CommentedMap()
    buffer = io.StringIO()
    y.dump(doc, buffer)
    return old, buffer.getvalue()


def diff(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}"))
