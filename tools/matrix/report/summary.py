"""Counting: records per status, per (suite, variant, device), pass rates, sort orders."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from tools.matrix import statuses
from tools.matrix.records import KEY_FIELDS, Record, sort_records

Group = tuple[str, str, str]  # (suite, variant, device)

SORT_KEY = attrgetter(*KEY_FIELDS)
_GROUP_STATUS = attrgetter("suite", "variant", "device", "status")
# Failure-like statuses, most severe first (the order unexpected results are listed in).
SEVERITY = (statuses.CRASHED, statuses.TIMEOUT, statuses.ERROR, statuses.FAILED, statuses.XPASSED)
# Column order of every counts table: good, known-bad, bad, stale, then the ones that did not run.
COLUMNS = (
    statuses.PASSED, statuses.FLAKY, statuses.XFAILED, statuses.FAILED, statuses.XPASSED, statuses.SKIPPED,
    statuses.ERROR, statuses.CRASHED, statuses.TIMEOUT, statuses.NOT_RUN,
)
assert set(COLUMNS) == set(statuses.ALL)
BAD = statuses.FAILING  # (baseline.py imports it by this name)


@dataclass
class Prepared:
    """What every renderer needs, computed once: the sorted records and their counts."""

    records: list[Record]  # in (suite, test, variant, device) order
    groups: dict[Group, dict[str, int]]  # status counts per (suite, variant, device)
    totals: dict[str, int]  # status counts over all records, every status present

    @property
    def unexpected_count(self) -> int:
        return sum(self.totals[s] for s in statuses.UNEXPECTED)


def prepare(records: Iterable[Record] | Prepared) -> Prepared:
    if isinstance(records, Prepared):
        return records
    ordered = sort_records(records)
    groups = group_counts(ordered)
    return Prepared(ordered, groups, dict.fromkeys(statuses.ALL, 0) | total_counts(groups))


def variant_order(names: Iterable[str]) -> list[str]:
    """Alphabetical, with the untouched `base` variant first: the reference column."""
    return sorted(set(names), key=lambda v: (v != "base", v))


def group_counts(records: Sequence[Record]) -> dict[Group, dict[str, int]]:
    """Status counts per (suite, variant, device), groups in report order."""
    counter = Counter(map(_GROUP_STATUS, records))
    groups: dict[Group, dict[str, int]] = {}
    for (suite, variant, device, status), n in counter.items():
        counts = groups.get((suite, variant, device))
        if counts is None:
            counts = groups[(suite, variant, device)] = dict.fromkeys(statuses.ALL, 0)
        counts[status] = counts.get(status, 0) + n
    rank = {v: i for i, v in enumerate(variant_order(g[1] for g in groups))}
    return {g: groups[g] for g in sorted(groups, key=lambda g: (g[0], rank[g[1]], g[2]))}


def total_counts(groups: dict[Group, dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counts in groups.values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    return totals


def pass_rate(counts: dict[str, int]) -> float | None:
    """passed / (total - skipped - not_run); None when nothing ran."""
    ran = sum(counts.values()) - sum(counts.get(s, 0) for s in statuses.DID_NOT_RUN)
    return counts.get(statuses.PASSED, 0) / ran if ran > 0 else None


def format_rate(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def unexpected(records: Iterable[Record]) -> list[Record]:
    """Records whose status fails the run (statuses.UNEXPECTED), in input order."""
    bad = statuses.UNEXPECTED
    return [r for r in records if r.status in bad]


def carried_over(records: Iterable[Record], run_id: str) -> str:
    """The sentence saying which records are carried over from runs before `run_id` ("" when none):
    kept from the last report because this run's outputs have no result for their test (known_tests.py)."""
    earlier = Counter(r.run_id for r in records if r.run_id != run_id)
    if not earlier:
        return ""
    failing = sum(1 for r in records if r.run_id != run_id and r.status in statuses.UNEXPECTED)
    runs = ", ".join(f"run {rid or '(unknown)'}: {n}" for rid, n in sorted(earlier.items())[-5:])
    return (f"Carried over: {sum(earlier.values())} record(s) from earlier runs ({'..., ' if len(earlier) > 5 else ''}{runs}), "
            "kept because this run's outputs have no result for their tests (a --test_filter, a rerun of other targets); "
            f"{failing or 'none'} of them failing{', which still count' if failing else ''}.")


def by_severity(records: Iterable[Record]) -> list[Record]:
    """Most severe status first, then (suite, test, variant, device)."""
    rank = {s: i for i, s in enumerate(SEVERITY)}
    return sorted(records, key=lambda r: (rank.get(r.status, len(rank)), SORT_KEY(r)))


def failure_kind(record: Record) -> str:
    """What broke: the variant's transform, or the test itself (assertion / setup / crash / timeout)."""
    if record.transform_failed:
        return "transform failure"
    return _KINDS.get(record.status, record.status)


_KINDS = {
    statuses.FAILED: "test failure",
    statuses.XFAILED: "test failure",
    statuses.ERROR: "setup error",
    statuses.CRASHED: "crash",
    statuses.TIMEOUT: "timeout",
    statuses.XPASSED: "stale xfail",
}
