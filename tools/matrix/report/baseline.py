"""Comparison with a baseline run: regressions, fixes, new/removed tests, changed xfails."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tools.matrix import statuses
from tools.matrix.records import CHANGE_FIELDS, KEY_FIELDS, Record
from tools.matrix.report.summary import BAD


@dataclass
class Change:
    old: Record
    new: Record

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.new.key

    def to_json(self) -> dict[str, Any]:
        """The cell, its old and new status, and the new record's fields a change carries (records.CHANGE_FIELDS)."""
        n = self.new
        return {**cell_json(n, KEY_FIELDS), "old": self.old.status, "new": n.status, **cell_json(n, CHANGE_FIELDS)}


def cell_json(record: Record, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(record, name) for name in names}


@dataclass
class Comparison:
    """Each changed cell lands in exactly one list, checked in this order."""

    regressions: list[Change] = field(default_factory=list)  # passed/xfailed -> failed/error/crashed/timeout
    fixes: list[Change] = field(default_factory=list)  # failed/error/crashed/timeout -> passed
    changed_xfails: list[Change] = field(default_factory=list)  # xfailed <-> anything else
    other: list[Change] = field(default_factory=list)  # any other status change (e.g. passed -> skipped)
    new: list[Record] = field(default_factory=list)  # cells only in the new run
    removed: list[Record] = field(default_factory=list)  # cells only in the baseline
    baseline_run_ids: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "regressions": len(self.regressions), "fixes": len(self.fixes),
            "changed_xfails": len(self.changed_xfails), "other": len(self.other),
            "new": len(self.new), "removed": len(self.removed),
        }

    def to_json(self) -> dict[str, Any]:
        def cell(r: Record) -> dict[str, Any]:
            return cell_json(r, (*KEY_FIELDS, "status"))

        return {
            "baseline_run_ids": self.baseline_run_ids,
            "counts": self.counts(),
            "regressions": [c.to_json() for c in self.regressions],
            "fixes": [c.to_json() for c in self.fixes],
            "changed_xfails": [c.to_json() for c in self.changed_xfails],
            "other": [c.to_json() for c in self.other],
            "new": [cell(r) for r in self.new],
            "removed": [cell(r) for r in self.removed],
        }


def compare(old_records: Iterable[Record], new_records: Iterable[Record]) -> Comparison:
    """Cell-by-cell (suite, test, variant, device) comparison; every list in key order."""
    old = {r.key: r for r in old_records}
    new = {r.key: r for r in new_records}
    out = Comparison(baseline_run_ids=sorted({r.run_id for r in old.values() if r.run_id}))
    for key in sorted(new.keys() | old.keys()):
        o, n = old.get(key), new.get(key)
        if o is None:
            out.new.append(n)  # type: ignore[arg-type]
        elif n is None:
            out.removed.append(o)
        elif o.status != n.status:
            change = Change(o, n)
            if o.status in statuses.ON_TRACK and n.status in BAD:
                out.regressions.append(change)
            elif o.status in BAD and n.status == statuses.PASSED:
                out.fixes.append(change)
            elif statuses.XFAILED in (o.status, n.status):
                out.changed_xfails.append(change)
            else:
                out.other.append(change)
    return out

