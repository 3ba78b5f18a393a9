"""The collection run: every cell's targets and shards read (collect/sources.py), what the BEP file says
(collect/bep.py), every known test's record decided (known_tests.py), the evidence of the records that
keep some attached (collect/evidence.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tools.matrix import statuses
from tools.matrix.collect.bep import BazelResult, read_beps
from tools.matrix.collect.evidence import attach_evidence, bound_evidence
from tools.matrix.collect.files import Unreadable, shown
from tools.matrix.collect.flaky import mark_flaky
from tools.matrix.collect.sources import Shard, newest_mtime, read_shard, shard_dirs
from tools.matrix.config import Cell, Matrix
from tools.matrix.known_tests import NOT_RERUN, NOT_RUN, BrokenShard, CellNames, Dropped, TargetRun, cell_label_of
from tools.matrix.records import Record, sort_records


@dataclass
class Collected:
    records: list[Record]
    torch_version: str | None = None
    bazel: dict[str, BazelResult] = field(default_factory=dict)  # label -> result (when a BEP was read)
    problems: list[str] = field(default_factory=list)  # cell-level problems (unmatched expectations, ...)
    # Worth saying, not a failure: a BEP older than the testlogs, previous records dropped as gone.
    notes: list[str] = field(default_factory=list)


def collect(
    matrix: Matrix,
    testlogs: str | os.PathLike[str],
    bep: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
    run_id: str = "",
    cells: list[Cell] | None = None,
    fill_missing: bool = True,
    labels: set[str] | None = None,
    previous: list[Record] | None = None,
) -> Collected:
    """Records for `cells` (default: the whole matrix), stamped `run_id`. With fill_missing, every test
    the matrix knows keeps a record (known_tests.py decides which: this run's, the `previous` report's,
    or one saying why there is none), and the previous records of the matrix's other cells are kept.
    With `labels`, only the targets named there are read (a cell's label names all its targets): a
    rerun of one file's target must not re-stamp the other targets' old testlogs as fresh results.
    `bep`: the Build Event Protocol file(s) of the Bazel command(s) that ran."""
    testlogs = Path(testlogs)
    cells = matrix.cells() if cells is None else cells
    collected = Collected(records=[])
    found: dict[tuple[str, str, str], list[Record]] = {}
    runs: dict[tuple[str, str, str], dict[str, TargetRun]] = {}  # per cell, its targets read, by name
    readable: dict[tuple[str, int], Path] = {}  # (label, shard) -> the shard's directory, when its outputs could be read
    dirs: dict[tuple[str, int], Path] = {}  # (label, shard) -> the directory of each shard with results
    layout = {target.label: shard_dirs(testlogs, target) for cell in cells for target in cell.targets
              if labels is None or target.label in labels or cell.label in labels}  # fmt: skip
    if bep:  # first: it says which testlogs are this run's
        newest = {label: newest_mtime([d for _s, d in shards]) for label, shards in layout.items()}
        collected.bazel, collected.notes = read_beps(bep, newest, collected.problems)
    for cell in cells:
        key = (cell.suite.name, cell.variant.name, cell.device.name)
        found[key], runs[key] = [], {}
        filters: set[str] = set()  # the --test_filter of each shard read
        for target in cell.targets:
            if target.label not in layout:
                continue
            run = runs[key][target.name] = TargetRun(target)
            bazel_said = collected.bazel.get(target.label)
            if bazel_said is not None and bazel_said.untested:  # its testlogs are an earlier command's: not read
                _untested(run, bazel_said, run_id)
                if bazel_said.not_built:
                    collected.problems.append(f"{target.label}: Bazel could not build it: {bazel_said.not_built}")
                continue
            read: list[tuple[int, Shard]] = []  # its shards with results
            for shard, shard_dir in layout[target.label]:
                result = read_shard(testlogs, shard_dir, target, shard)
                if result is None:
                    run.missing += 1
                    continue
                dirs[target.label, shard] = shard_dir
                if result.outputs_usable:
                    readable[target.label, shard] = shard_dir
                found[key] += result.records
                collected.torch_version = collected.torch_version or result.meta.get("torch_version")
                collected.problems += [f"{target.label}: {p}" for p in [*result.meta.get("problems", []), result.problem] if p]
                filters.add(str(result.meta.get("test_filter") or ""))
                if result.broken:
                    run.broken.append(result.broken)
                else:
                    run.add([r.test for r in result.records], result.test_filter)
                    read.append((shard, result))
            if run.test_filter != "" or run.broken or run.missing:  # its records alone may not name all its tests
                for shard, result in read:
                    try:
                        run.add_names(result.not_run_here())
                    except Unreadable as e:
                        collected.problems.append(f"{target.label}: shard {shard + 1}: {shown(testlogs, e.path)}: {e.what}; "
                                                  "its list of the tests it did not run is not used")  # fmt: skip
                        run.add_names(None)
        # A file's target cannot tell a bare test name that is another file's from a typo, so it
        # passes with no test (runtime/selection.decidable_here); the cell as a whole can tell.
        if len(cell.targets) > 1 and len(filters) == 1 and "" not in filters and not found[key] and not any(r.broken for r in runs[key].values()):
            collected.problems.append(f"{cell.label}: --test_filter {next(iter(filters))!r} matches no test of any of its "
                                      f"{len(cell.targets)} file targets; check its spelling")  # fmt: skip
    if fill_missing:
        _complete(matrix, cells, found, runs, previous or [], run_id, NOT_RUN if labels is None else NOT_RERUN, collected)
    carried = {id(r) for r in previous or []}  # kept as the previous report has them
    bazel = collected.bazel
    keeping: dict[tuple[str, int], list[Record]] = {}  # per shard, its records whose status keeps evidence
    retried: dict[tuple[str, int], list[Record]] = {}  # per shard Bazel ran more than once, its records
    keeps = statuses.KEEPS_EVIDENCE
    for records in found.values():
        for record in records:
            if id(record) in carried:
                continue
            record.run_id = run_id
            result = bazel.get(record.target)
            if result and record.shard is not None:
                record.cached = result.cached.get(record.shard, False)
                record.attempts = result.attempts.get(record.shard, 1)
                if record.attempts > 1:
                    retried.setdefault((record.target, record.shard), []).append(record)
            if record.status in keeps and record.shard is not None:
                keeping.setdefault((record.target, record.shard), []).append(record)
    for (label, shard), records in retried.items():
        mark_flaky(records, dirs.get((label, shard)), records[0].suite)
    for shard_key, records in keeping.items():
        if shard_key in readable:
            attach_evidence(testlogs, readable[shard_key], records)
    # A broken shard no record speaks for (tests unknown, or another shard spoke for the target): never silent.
    collected.problems += [f"{b.target.label}: {b.problem}" for cell_runs in runs.values() for run in cell_runs.values()
                           for b in run.broken if not b.spoken]  # fmt: skip
    for records in found.values():
        collected.records += records
    bound_evidence([r for r in collected.records if r.evidence])
    collected.records = sort_records(collected.records)
    return collected


def _untested(run: TargetRun, bazel: BazelResult, run_id: str) -> None:
    """A target Bazel's command configured and did not test: it did not build (its tests are `error`: a
    broken build must not pass for its last results) or was skipped (its tests keep their last records,
    else `not_run` saying why)."""
    target = run.target
    if bazel.not_built:
        # spoken: the collector's problem line says it whatever the records
        run.broken.append(BrokenShard(target, 0, statuses.ERROR, f"its target did not build in run {run_id}: {bazel.not_built}", spoken=True))
    elif bazel.aborted == "SKIPPED" and target.cell.device.requires_gpu:  # incompatible: its target_compatible_with is the GPU
        run.skipped = f"Bazel skipped the target in run {run_id}: it needs a GPU (`--config=gpu` on a machine with one)"
    else:
        why = f"{bazel.aborted}: {bazel.aborted_why}" if bazel.aborted else "the command ended before it"
        run.skipped = f"Bazel did not run the target in run {run_id} ({why})"


def _complete(matrix: Matrix, cells: list[Cell], found: dict[tuple[str, str, str], list[Record]], runs: dict[tuple[str, str, str], dict[str, TargetRun]],
              previous: list[Record], run_id: str, unread: str, collected: Collected) -> None:  # fmt: skip
    """Add to `found` a record for every known test of `cells` it lacks (known_tests.py), and the
    previous records of the matrix's cells not among `cells`; note the previous records dropped."""
    before: dict[tuple[str, str, str], dict[str, Record]] = {}
    for record in previous:
        before.setdefault((record.suite, record.variant, record.device), {})[record.test] = record
    dropped = Dropped()
    decisions = [CellNames(cell, {r.test: r for r in found[key]}, runs[key], before.pop(key, {}), run_id, unread, dropped)
                 for cell in cells for key in [(cell.suite.name, cell.variant.name, cell.device.name)]]  # fmt: skip
    in_matrix = {(c.suite.name, c.variant.name, c.device.name) for c in matrix.cells()}
    for key, records in before.items():  # cells outside `cells`: kept as they were, or dropped with their cell
        if key in in_matrix:
            found.setdefault(key, []).extend(records.values())
        else:
            for record in records.values():
                dropped[Dropped.CELL, cell_label_of(record)] += 1
    suite_fresh: dict[str, set[str]] = {}  # per suite, the ids this run collected in any of its cells
    suite_previous: dict[str, set[str]] = {}  # per suite, the previous report's ids this run does not prove gone
    for decision in decisions:
        suite_fresh.setdefault(decision.cell.suite.name, set()).update(decision.collected())
        suite_previous.setdefault(decision.cell.suite.name, set()).update(decision.surviving_previous())
    for decision in decisions:
        cell = decision.cell
        found[(cell.suite.name, cell.variant.name, cell.device.name)] += decision.records(suite_fresh[cell.suite.name], suite_previous[cell.suite.name])
    collected.notes += dropped.notes()
