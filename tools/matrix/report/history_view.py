"""What the history store says about this run's records, for the report (compat.md's "History" section):
filled by tools/matrix/history/append.history_view before the report is written; None when no history is
kept or the store could not be read (the report is written all the same)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.matrix.records import Record


@dataclass(frozen=True)
class Since:
    """Where an unexpected record's streak began (this run, for a new one) and the last run on track."""

    first_bad: str  # "#12 2026-12-07T00:00:00+00:00 abc123def456"; "this run" for a new one
    last_good: str  # the same form; "" when the history has none


@dataclass
class HistoryView:
    store: str  # as shown (a URL's password hidden)
    runs: int  # stored before this run
    new: list[Record] = field(default_factory=list)  # unexpected now, not in the test's last verdict
    fixed: list[Record] = field(default_factory=list)  # unexpected in the last verdict, not now
    since: dict[tuple[str, str, str, str], Since] = field(default_factory=dict)  # per unexpected record of this run
    strip: dict[tuple[str, str, str, str], list[str]] = field(default_factory=dict)  # its last runs' statuses, this one last
