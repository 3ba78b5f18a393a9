"""What `report` and `rerun` do with the history after the report is written: append the run, or say in one
line why the store could not take it. History is additive: its failure never costs the report."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tools.matrix import statuses
from tools.matrix.history import queries
from tools.matrix.history.store import StoreError, open_store, shown_location
from tools.matrix.records import Record, RunInfo
from tools.matrix.report.text import visible

# The exit status of a `report` / `rerun` whose report was written and whose tests were all as expected
# (else 1, as without a history) but whose run the history store did not take.
EXIT_HISTORY = 3
MAX_NAMED = 5  # new unexpected results named in the line


def store_run(location: str | None, run: RunInfo, records: Sequence[Record]) -> bool:
    """Append `run` to the store at `location` (None: no history kept); False when the store failed."""
    if location is None:
        return True
    try:
        with open_store(location) as store:
            before = queries.latest_verdicts(store) if store.has_history() else {}
            stored = store.append(run, records)
    except StoreError as e:
        print(f"error: {visible(str(e))}; the report was written, this run is not in the history", file=sys.stderr)
        return False
    carried = len(records) - stored
    print(f"history: {stored} record(s) of run {run.run_id} stored in {shown_location(location)}"
          + (f" ({carried} carried over from earlier runs are not stored again)" if carried else ""))  # fmt: skip
    if before:
        print(since_last_verdict(before, [r for r in records if r.run_id == run.run_id]))
    return True


def since_last_verdict(before: dict[tuple[str, ...], str], fresh: Sequence[Record]) -> str:
    """How many of this run's unexpected records are new (their last verdict in the history was not, or
    they had none) and how many of the history's unexpected ones this run fixed."""
    bad = statuses.UNEXPECTED
    new = [r for r in fresh if r.status in bad and before.get(r.key) not in bad]
    fixed = [r for r in fresh if r.status not in bad and r.status not in statuses.DID_NOT_RUN and before.get(r.key) in bad]
    shown = ", ".join(f"{visible(r.test)} [{visible(r.variant)}/{visible(r.device)}]" for r in new[:MAX_NAMED])
    return (f"history: {len(new)} new unexpected result(s) since each test's last verdict, {len(fixed)} fixed"
            + (f": {shown}{', ...' if len(new) > MAX_NAMED else ''}" if new else "")
            + ("; `history failing-since` says since when" if new or fixed else ""))  # fmt: skip
