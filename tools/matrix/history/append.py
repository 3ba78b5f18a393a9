"""What `report` and `rerun` do with the history: before the report is written, read what the store says of
this run's records (`read_view`: compat.md's History section, the terminal's new/fixed line); after it,
append the run (`store_run`), or say in one line why the store could not take it. History is additive:
its failure never costs the report."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tools.matrix import statuses
from tools.matrix.history import queries
from tools.matrix.history.store import StoreError, open_store, shown_location
from tools.matrix.records import Record, RunInfo
from tools.matrix.report.history_view import HistoryView, Since
from tools.matrix.report.text import visible

# The exit status of a `report` / `rerun` whose report was written and whose tests were all as expected
# (else 1, as without a history) but whose run the history store did not take.
EXIT_HISTORY = 3
MAX_NAMED = 5  # new unexpected results named in the terminal's line
STRIP_RUNS = 10  # the report's strip of each failing cell's last runs


def _ref(run: queries.RunRef | None) -> str:
    return "" if run is None else f"#{run.seq} {run.created} {run.commit}"


def read_view(location: str | None, run: RunInfo, records: Sequence[Record]) -> HistoryView | None:
    """What the store at `location` says of this run's fresh records; None when there is no store yet, or
    it cannot be read (store_run says why, after the report is written)."""
    if location is None:
        return None
    try:
        with open_store(location, create=False) as store:
            if not store.has_history():
                return None
            before = queries.latest_verdicts(store)
            streaks = {s.key: s for s in queries.failing_since(store)}
            runs = store.query("SELECT COUNT(*) FROM runs")[0][0]
            last = queries.runs_by_seq(store, {seq for _status, seq in before.values()})
            failing = {r.key for r in records if r.run_id == run.run_id and r.status in statuses.UNEXPECTED}
            strips = queries.recent_statuses(store, failing, STRIP_RUNS - 1) if failing else {}
    except StoreError:
        return None
    bad = statuses.UNEXPECTED
    view = HistoryView(shown_location(location), runs)
    for r in records:
        if r.run_id != run.run_id or r.status in statuses.DID_NOT_RUN:
            continue
        status, seq = before.get(r.key, (None, None))
        if r.status in bad:
            view.strip[r.key] = [*strips.get(r.key, []), r.status]
        if r.status in bad and status not in bad:
            view.new.append(r)
            view.since[r.key] = Since("this run", _ref(last.get(seq)) if status is not None else "")
        elif r.status in bad:
            streak = streaks[r.key]
            view.since[r.key] = Since(_ref(streak.first_bad), _ref(streak.last_good))
        elif status in bad:
            view.fixed.append(r)
    return view


def store_run(location: str | None, run: RunInfo, records: Sequence[Record], view: HistoryView | None) -> bool:
    """Append `run` to the store at `location` (None: no history kept); False when the store failed."""
    if location is None:
        return True
    try:
        with open_store(location) as store:
            stored = store.append(run, records)
    except StoreError as e:
        print(f"error: {visible(str(e))}; the report was written, this run is not in the history", file=sys.stderr)
        return False
    carried = len(records) - stored
    print(f"history: {stored} record(s) of run {run.run_id} stored in {shown_location(location)}"
          + (f" ({carried} carried over from earlier runs are not stored again)" if carried else ""))  # fmt: skip
    if view is not None:
        print(since_last_verdict(view))
    return True


def since_last_verdict(view: HistoryView) -> str:
    """How many of this run's unexpected records are new (their last verdict in the history was not, or
    they had none) and how many of the history's unexpected ones this run fixed."""
    shown = ", ".join(f"{visible(r.test)} [{visible(r.variant)}/{visible(r.device)}]" for r in view.new[:MAX_NAMED])
    return (f"history: {len(view.new)} new unexpected result(s) since each test's last verdict, {len(view.fixed)} fixed"
            + (f": {shown}{', ...' if len(view.new) > MAX_NAMED else ''}" if view.new else "")
            + ("; `history failing-since` says since when" if view.new or view.fixed else ""))  # fmt: skip
