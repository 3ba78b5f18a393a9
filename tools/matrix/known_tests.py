"""Every test the matrix knows keeps a record: where a cell's test names come from, and which record
each test gets. The collector (collect.py) reads the outputs; this module decides.

Names come from sources no single broken output can take away: this run's records; what each
target collected before its --test_filter and shard split (every shard's outputs list the tests it
has no record of, runtime/outputs.COLLECTED_NOT_RUN, in report.json, the digest and test.xml); the
previous report; the other cells of the suite.

The precedence, decided here only (`CellNames.record_for`):
1. this run's result: the test's record in this run's outputs; or, when its file could not be
   imported in this run, that file's status (none of its tests could run); or, when the run tried the
   test (its target ran and the filter selected it) in a shard that left no usable results,
   `crashed`/`error` with that shard's reason, naming the test's last result;
2. the previous report's record, kept as it was, with the run_id of the run that produced it
   (carried over), unless this run proves the test gone: its cell or its file left matrix.yaml, or its
   target ran with every shard's outputs intact and did not collect it. A carried-over failure still
   fails the report;
3. `not_run`, saying why: deselected by the filter, Bazel skipped the target (a GPU cell without a
   GPU), the target was not run, not part of a rerun.
A target Bazel's command configured and did not test has only an earlier command's testlogs: they are
not read (collect/collector.py); when it did not build, its tests are `error` (a broken build must not
pass for its last results).
A previous `not_run` record is no result: it is never carried over (a fresh one says why today).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tools.matrix import statuses
from tools.matrix.config import Cell, Target, test_file_of
from tools.matrix.records import Record
from tools.matrix.runtime.selection import matches_filter, parse_filter

NO_RESULTS = "(no test results for this suite)"  # the one record of a cell no test of which is known
NOT_RUN = "no result: the target was not run"
NOT_RERUN = "no result: this rerun did not run its target, and the last report has none"
NOT_COLLECTED = "not collected in this cell's run (other cells of the suite have it)"


@dataclass
class BrokenShard:
    """A shard that ran but left no usable results: the tests it would have run get `status` records saying why."""

    target: Target
    shard: int
    status: str  # crashed (it died), error (corrupt outputs, or ran and reported nothing)
    message: str
    log_tail: str = ""
    problem: str = ""  # the line for the report's problems when no record carries it
    spoken: bool = False  # some record carries its reason


@dataclass
class TargetRun:
    """What this run's outputs say about one target, shard by shard (collect.py adds each)."""

    target: Target
    names: set[str] = field(default_factory=set)  # every id it collected, as far as its readable shards say
    filters: set[str | None] = field(default_factory=set)  # per readable shard: its --test_filter ("": none; None: unknown)
    broken: list[BrokenShard] = field(default_factory=list)
    listed: bool = True  # no readable shard failed to list what it did not run (an older runtime's outputs)
    missing: int = 0  # shards of its layout that left nothing (never ran)
    skipped: str = ""  # Bazel's command did not run it, why (its testlogs are an earlier command's, not read)

    def add(self, ids: list[str], test_filter: str | None) -> None:
        """A readable shard: the ids it has records of, and its filter."""
        self.names.update(ids)
        self.filters.add(test_filter)

    def add_names(self, not_run_here: list[str] | None) -> None:
        """What a readable shard says the target collected that it has no record of (None: it does not say)."""
        if not_run_here is None:
            self.listed = False
        else:
            self.names.update(not_run_here)

    @property
    def ran(self) -> bool:
        return bool(self.filters or self.broken)

    @property
    def test_filter(self) -> str | None:
        """The filter it ran with ("": none), None when no readable shard says (or they disagree)."""
        return next(iter(self.filters)) if len(self.filters) == 1 else None

    @property
    def complete(self) -> bool:
        """Every shard's outputs were read, and together they name every test the target collected:
        a test it did not collect is gone from it."""
        return self.ran and not self.broken and not self.missing and (self.listed or self.test_filter == "")

    def tried(self, test: str) -> bool:
        """Whether this run meant to run `test` (its filter selects it; an unknown filter: yes)."""
        patterns = parse_filter(self.test_filter)
        return not patterns or any(matches_filter(test, p) for p in patterns)


class Dropped(Counter[tuple[str, str]]):
    """Previous records a report leaves out because the matrix or the run proves them gone: (why, where) -> count."""

    CELL = "of cells no longer in matrix.yaml"
    FILE = "of test files no longer in their suite"
    GONE = "of tests their target no longer collects"

    def notes(self) -> list[str]:
        out = []
        for why in (self.CELL, self.FILE, self.GONE):
            where = sorted((w, n) for (y, w), n in self.items() if y == why)
            if where:
                shown = ", ".join(f"{w} ({n})" for w, n in where[:10]) + (", ..." if len(where) > 10 else "")
                out.append(f"dropped {sum(n for _w, n in where)} record(s) {why}: {shown}")
        return out


def cell_files(cell: Cell) -> frozenset[str]:
    """The cell's test files: a record of a test whose file is not one of them is gone from the cell."""
    return frozenset(f for target in cell.targets for f in target.test_files)


def cell_label_of(record: Record) -> str:
    """The label of a record's cell (its target's package, the cell's name), for a cell matrix.yaml no longer has."""
    return f"{record.target.split(':', 1)[0]}:{record.suite}_{record.variant}_{record.device}"


@dataclass
class CellNames:
    """The decision for one cell: its records from this run, its targets' runs, its previous records."""

    cell: Cell
    fresh: dict[str, Record]  # this run's records of the cell, by test id
    runs: dict[str, TargetRun]  # by target name; a target absent here was not read (a rerun of other targets)
    previous: dict[str, Record]  # its records in the previous report, by test id
    run_id: str
    unread: str  # why a target that was not read has no result (NOT_RUN, NOT_RERUN)
    dropped: Dropped

    def records(self, suite_fresh: set[str], suite_previous: set[str]) -> list[Record]:
        """A record for every known test of the cell that this run's outputs have none of. `suite_fresh`:
        the ids this run collected in any cell of the suite; `suite_previous`: those the previous report had."""
        files, out = cell_files(self.cell), []
        for test in sorted((self.previous.keys() | suite_fresh | suite_previous | self._names()) - self.fresh.keys()):
            if test == NO_RESULTS:
                continue
            if test_file_of(test) not in files:  # its file left the suite: gone from this cell
                if test in self.previous:
                    self.dropped[Dropped.FILE, f"{self.cell.suite.name} {test_file_of(test)}"] += 1
                continue
            record = self.record_for(test, test in suite_fresh)
            if record is not None:
                out.append(record)
        if not out and not self.fresh:
            out.append(self._placeholder())
        return out

    def _names(self) -> set[str]:
        return set().union(*(run.names for run in self.runs.values()))

    def collected(self) -> set[str]:
        """The ids this run collected in the cell (for the suite's other cells)."""
        return self.fresh.keys() | self._names()

    def surviving_previous(self) -> set[str]:
        """The previous report's ids of the cell that this run does not prove gone (for the suite's other cells)."""
        complete = {name: run for name, run in self.runs.items() if run.complete}
        if not complete:
            return self.previous.keys() - {NO_RESULTS}
        if len(self.cell.targets) == 1:  # one target: set operations, not a lookup per test (100,000 of them)
            return self.previous.keys() & complete[self.cell.targets[0].name].names
        out = set()
        for test in self.previous:
            run = complete.get(self.cell.target_of(test).name)
            if test != NO_RESULTS and (run is None or test in run.names):
                out.add(test)
        return out

    def record_for(self, test: str, collected_elsewhere: bool) -> Record | None:
        """The precedence (module docstring) for one test this run's outputs have no record of; None: it is gone."""
        target = self.cell.target_of(test)
        run = self.runs.get(target.name)
        previous = self.previous.get(test)
        earlier = previous if previous is not None and previous.status != statuses.NOT_RUN else None
        if run is None or not run.ran:  # nothing of the target to read: the last result stands
            return earlier or self._not_run(test, target, self.unread if run is None else run.skipped or NOT_RUN)
        unimportable = self.fresh.get(test_file_of(test))  # the record of its file itself: the import failed
        if unimportable is not None:
            return self._record(test, target, unimportable.status, f"its file could not be imported in run {self.run_id}: {unimportable.message}",
                                unimportable.shard, unimportable.log_tail)  # fmt: skip
        if run.complete and test not in run.names:  # the whole target ran and did not collect it
            if previous is not None:
                self.dropped[Dropped.GONE, f"{self.cell.suite.name} {test}"] += 1
            return self._not_run(test, target, NOT_COLLECTED) if collected_elsewhere else None
        if run.broken and run.tried(test):
            return self._broken(test, run.broken[0], earlier)
        if earlier is not None:
            return earlier
        if not run.tried(test):
            return self._not_run(test, target, f"deselected by --test_filter {run.test_filter!r} in run {self.run_id}")
        return self._not_run(test, target, NOT_RUN)

    def _record(self, test: str, target: Target, status: str, message: str, shard: int | None = None, tail: str = "") -> Record:
        cell = self.cell
        return Record(suite=cell.suite.name, test=test, variant=cell.variant.name, device=cell.device.name, status=status, message=message,
                      error_type=status, target=target.label, shard=shard, run_id=self.run_id, log_tail=tail)  # fmt: skip

    def _not_run(self, test: str, target: Target, why: str) -> Record:
        return self._record(test, target, statuses.NOT_RUN, why)

    def _broken(self, test: str, why: BrokenShard, earlier: Record | None) -> Record:
        why.spoken = True
        message = why.message
        if earlier is not None:
            message += f"; its last result: {earlier.status} in run {earlier.run_id or '(unknown)'}"
        return self._record(test, why.target, why.status, message, why.shard, why.log_tail)

    def _placeholder(self) -> Record:
        """The one record of a cell no test of which is known: its first broken shard's, else why it did not run."""
        broken = next((b for run in self.runs.values() for b in run.broken), None)
        if broken is not None:
            return self._broken(NO_RESULTS, broken, None)
        first = self.cell.targets[0]
        skipped = next((run.skipped for run in self.runs.values() if run.skipped), "")
        return self._not_run(NO_RESULTS, first, skipped or (NOT_RUN if any(t.name in self.runs for t in self.cell.targets) else self.unread))
