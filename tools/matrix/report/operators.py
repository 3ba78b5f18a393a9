"""The per-operator table: a test generated from PyTorch's OpInfo database (opinfo_tests/opinfo_cases.py)
has the id `<file>::test_<operator>[<dtype>-<sample index>-<digest>]`; its records, grouped by
(suite, operator) and by (variant, device), give each cell's samples passed / total and the failure
signature most of its failing samples share. Any suite whose ids have that form gets the table."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tools.matrix import statuses
from tools.matrix.records import Record
from tools.matrix.report.signatures import signature
from tools.matrix.report.summary import variant_order

OPINFO_ID = re.compile(r"::test_(?P<operator>\w+)\[(?P<sample>[a-z0-9]+-\d+-[0-9a-f]{6})\]$")

Column = tuple[str, str]  # (variant, device)
STATES = ("ok", "known", "broken", "skipped")  # OperatorCell.state


@dataclass
class OperatorCell:
    """One operator under one (variant, device): its samples' records."""

    counts: Counter[str] = field(default_factory=Counter)  # status -> samples
    failing: list[Record] = field(default_factory=list)  # statuses.FAILURE_MESSAGE, in test order

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def passed(self) -> int:
        return self.counts[statuses.PASSED]

    @property
    def unexpected(self) -> int:
        return sum(self.counts[s] for s in statuses.UNEXPECTED)

    @property
    def signature(self) -> str:
        """The failure signature most failing samples share ("" when none fails)."""
        common = Counter(signature(r) for r in self.failing).most_common(1)
        return common[0][0] if common else ""

    @property
    def state(self) -> str:
        """For colour and sorting: "broken" (an unexpected result), "known" (only xfailed failures),
        "skipped" (nothing passed or failed), "ok"."""
        if self.unexpected:
            return "broken"
        if self.failing:
            return "known"
        return "ok" if self.passed else "skipped"


@dataclass
class OperatorRow:
    suite: str
    operator: str
    cells: dict[Column, OperatorCell]

    @property
    def broken_under(self) -> list[Column]:
        return [column for column, cell in self.cells.items() if cell.unexpected]


@dataclass
class OperatorTable:
    columns: list[Column]  # base first, then the other variants; devices in name order
    rows: list[OperatorRow]  # by (suite, operator)

    def broken(self) -> dict[Column, list[str]]:
        """(variant, device) -> the operators with an unexpected result there."""
        out: dict[Column, list[str]] = {c: [] for c in self.columns}
        for row in self.rows:
            for column in row.broken_under:
                out[column].append(row.operator)
        return {c: ops for c, ops in out.items() if ops}


def operator_of(record: Record) -> str | None:
    match = OPINFO_ID.search(record.test)
    return match["operator"] if match else None


def operator_table(records: Iterable[Record]) -> OperatorTable:
    """The table of every record whose test id has the OpInfo form (empty when none has)."""
    rows: dict[tuple[str, str], dict[Column, OperatorCell]] = {}
    for record in records:
        operator = operator_of(record)
        if operator is None:
            continue
        cells = rows.setdefault((record.suite, operator), {})
        cell = cells.setdefault((record.variant, record.device), OperatorCell())
        cell.counts[record.status] += 1
        if record.status in statuses.FAILURE_MESSAGE:
            cell.failing.append(record)
    seen = {column for cells in rows.values() for column in cells}
    rank = {v: i for i, v in enumerate(variant_order(v for v, _ in seen))}
    columns = sorted(seen, key=lambda c: (rank[c[0]], c[1]))
    for cells in rows.values():
        for cell in cells.values():
            cell.failing.sort(key=lambda r: r.test)
    return OperatorTable(columns, [OperatorRow(s, o, rows[(s, o)]) for s, o in sorted(rows)])
