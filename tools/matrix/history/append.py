"""What `report` and `rerun` do with the history after the report is written: append the run, or say in one
line why the store could not take it. History is additive: its failure never costs the report."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tools.matrix.history.store import StoreError, open_store, shown_location
from tools.matrix.records import Record, RunInfo
from tools.matrix.report.text import visible

# The exit status of a `report` / `rerun` whose report was written and whose tests were all as expected
# (else 1, as without a history) but whose run the history store did not take.
EXIT_HISTORY = 3


def store_run(location: str | None, run: RunInfo, records: Sequence[Record]) -> bool:
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
    return True
