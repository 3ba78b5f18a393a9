"""Flaky within one run: Bazel ran a shard again after it failed (`--flaky_test_attempts`, or a target's
flaky_test_attempts), the BEP says how many attempts (collect/bep.py), and the last attempt passed. Which
of the shard's tests failed before is in the test.xml Bazel kept of each earlier attempt
(test_attempts/attempt_N.xml, the runtime's own test.xml: one testcase per test, its status a property).

A test that passed in the last attempt and failed (statuses.UNEXPECTED) in an earlier one is `flaky`;
one that passed every time stays `passed`. When Bazel kept no readable earlier test.xml, every test that
passed in a shard that needed a retry is `flaky`, its message saying the failing test is unknown: a
retried shard is never reported plain green."""

from __future__ import annotations

from pathlib import Path

from tools.matrix import statuses
from tools.matrix.collect.files import Unreadable
from tools.matrix.collect.sources import xml_rows
from tools.matrix.records import Record
from tools.matrix.runtime.outputs import DIGEST_FIELDS

ATTEMPTS_DIR = "test_attempts"
_STATUS, _MESSAGE = DIGEST_FIELDS.index("status"), DIGEST_FIELDS.index("message")


def earlier_failures(shard_dir: Path, suite: str) -> dict[str, str] | None:
    """Node id -> the message of its failure in an earlier attempt of the shard (the latest such); None:
    Bazel kept no earlier attempt's test.xml that could be read."""
    paths = sorted((shard_dir / ATTEMPTS_DIR).glob("attempt_*.xml"), key=lambda p: (len(p.name), p.name))
    if not paths:
        return None
    failed: dict[str, str] = {}
    for path in paths:
        try:
            rows = xml_rows(path, suite)
        except (Unreadable, OSError):
            return None
        for row in rows:
            if row[_STATUS] in statuses.UNEXPECTED:
                failed[row[0]] = f"{row[_STATUS]} in an earlier attempt ({path.stem.replace('_', ' ')}): {row[_MESSAGE] or ''}".rstrip(": ")
    return failed


def mark_flaky(records: list[Record], shard_dir: Path | None, suite: str) -> None:
    """Make `flaky` the records of one shard (whose last attempt's results they are) that failed before."""
    retried = [r for r in records if r.attempts > 1 and r.status == statuses.PASSED and not r.cached]
    if not retried:
        return
    failed = earlier_failures(shard_dir, suite) if shard_dir is not None else None
    for record in retried:
        if failed is None:
            record.status = statuses.FLAKY
            record.message = f"its shard failed, then passed on attempt {record.attempts}; which of its tests failed is unknown (no earlier test.xml kept)"
        elif record.test in failed:
            record.status = statuses.FLAKY
            record.message = f"passed on attempt {record.attempts}; {failed[record.test]}"
