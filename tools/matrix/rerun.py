"""`rerun`: run only the matching targets (and, with --failed/--xpassed/--tests, only the matching
tests via --test_filter), then merge the results into the last report without losing other records
(the collector keeps every known test's record: known_tests.py)."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from tools.matrix import bazel, generate, last_report, statuses, warm
from tools.matrix.collect import collect
from tools.matrix.config import Cell, Matrix, test_file_of
from tools.matrix.errors import ReportError
from tools.matrix.filters import RERUN_FAILED, record_matches, selected_cells
from tools.matrix.known_tests import NO_RESULTS, cell_files
from tools.matrix.records import Record
from tools.matrix.report import COMPAT_JSON
from tools.matrix.report.text import visible
from tools.matrix.run_report import BEP_NAME, finish, new_run


class NoReport(ReportError):
    pass


def filter_pattern(test: str) -> str:
    """The --test_filter pattern selecting `test`. Bazel's filter is comma-separated, so a
    parametrized id with a comma (`t[1,2]`) becomes its base (`t`, all its parametrizations)."""
    return test.split("[", 1)[0] if "," in test else test


def plan(matrix: Matrix, args: argparse.Namespace, previous: list[Record] | None) -> dict[tuple[str, ...], dict[str, Cell]]:
    """test_filter patterns (empty: the whole target) -> the labels to run with them, each with its cell.
    With --failed/--xpassed, the targets that ran the tests (one file's target under `granularity:
    file`); else whole cells."""
    cells = selected_cells(matrix, args)
    wanted = (RERUN_FAILED if args.failed else frozenset()) | ({statuses.XPASSED} if args.xpassed else frozenset())
    groups: dict[tuple[str, ...], dict[str, Cell]] = defaultdict(dict)
    if wanted:
        if previous is None:
            raise NoReport("--failed/--xpassed need a previous report; run `make report` first")
        by_key = {(c.suite.name, c.variant.name, c.device.name): c for c in cells}
        tests: dict[str, set[str] | None] = {}  # label -> test filters; None: the whole target
        cell_of: dict[str, Cell] = {}
        for record in previous:
            cell = by_key.get((record.suite, record.variant, record.device))
            if cell is None or record.status not in wanted or not record_matches(record, args):
                continue  # (the records of a cell matrix.yaml no longer has are dropped from the merged report)
            if record.test != NO_RESULTS and test_file_of(record.test) not in cell_files(cell):
                continue  # its file left the suite: dropped from the merged report, which says so
            if record.test == NO_RESULTS:  # no test known: the target it names (or the cell), unfiltered
                label = record.target if record.target in {t.label for t in cell.targets} else cell.label
                tests[label] = None
            else:  # the target that runs the test today, whatever the report's granularity was
                label = cell.target_of(record.test).label
                if tests.get(label, set()) is not None:
                    tests.setdefault(label, set()).add(filter_pattern(record.test))  # type: ignore[union-attr]
            cell_of[label] = cell
        for label, filters in tests.items():
            groups[tuple(sorted(filters or ()))][label] = cell_of[label]
    else:
        # Whole targets: GPU cells only when --device names them (like `bazel test //...`, which
        # leaves them out); with --failed/--xpassed the last report decides.
        for cell in cells:
            if args.device or not cell.device.requires_gpu:
                groups[tuple(args.tests)][cell.label] = cell
    return dict(groups)


def commands(groups: dict[tuple[str, ...], dict[str, Cell]], bep: Path, extra: list[str]) -> list[list[str]]:
    out = []
    for i, (filters, labels) in enumerate(sorted(groups.items())):
        command = ["bazel", "test", *sorted(labels)]
        if any(c.device.requires_gpu for c in labels.values()):
            command.append("--config=gpu")
        if filters:
            command.append("--test_filter=" + ",".join(filters))
        command.append(f"--build_event_json_file={bep.with_name(f'{bep.stem}.{i}.json')}")
        out.append(command + extra)
    return out


def new_cells(matrix: Matrix, args: argparse.Namespace, previous: list[Record] | None) -> list[Cell]:
    """The selected cells the last report has no record of (matrix.yaml changed since), which
    --failed/--xpassed cannot rerun: they have no failure to rerun yet."""
    if previous is None or not (args.failed or args.xpassed):
        return []
    known = {(r.suite, r.variant, r.device) for r in previous}
    return [c for c in selected_cells(matrix, args) if (c.suite.name, c.variant.name, c.device.name) not in known]


def rerun(workspace: Path, matrix: Matrix, out_dir: Path, args: argparse.Namespace, history: str | None = None) -> int:
    report_path = out_dir / COMPAT_JSON
    # A report that is there but unreadable is an error even for a whole-target rerun: merging
    # into it would silently drop every record it held.
    previous = last_report.load(report_path)[1] if report_path.exists() else None
    groups = plan(matrix, args, previous)
    skipped = new_cells(matrix, args, previous)
    if skipped:
        print(f"rerun: skipped {len(skipped)} cell(s) new since the last report: {', '.join(c.label for c in skipped)} "
              "(--failed/--xpassed rerun what that report names; `rerun --suite S --variant V --device D` runs a whole cell)")  # fmt: skip
    if not groups:
        print("nothing to rerun: no target or test matches " + " ".join(f"--{k}" for k in ("failed", "xpassed") if getattr(args, k)) + " with the given filters")
        return 0
    if not args.dry_run:
        generate.require_current(matrix, workspace, "rerun")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not args.dry_run:  # the warm launcher only once the rerun is sure to run Bazel
        args.bazel_args = warm.prepare(args.bazel_args, getattr(args, "cold", False))
    planned = commands(groups, out_dir / BEP_NAME, args.bazel_args)
    if args.dry_run:
        for command in planned:
            print(bazel.quote(command))
        return 0
    for command in planned:
        status = bazel.run(command, workspace)
        if status not in bazel.TEST_RESULTS_EXIT:  # a build or command-line failure: no results to merge
            raise bazel.BazelFailed(f"`bazel test` failed with exit status {status} (see its output above); nothing was merged into {report_path}")
    testlogs = bazel.info("bazel-testlogs", workspace)
    run = new_run(planned[0] if len(planned) == 1 else ["(several)", *[bazel.quote(c) for c in planned]], testlogs, None, matrix, workspace)
    beps = [bep for command in planned if (bep := Path(command[-1 - len(args.bazel_args)].split("=", 1)[1])).exists()]
    labels = {label for targets in groups.values() for label in targets}
    collected = collect(matrix, testlogs, beps or None, run.run_id, labels=labels, previous=previous)
    run.torch_version = collected.torch_version
    for note in collected.notes:
        print(f"note: {visible(note)}")
    fresh = sum(1 for r in collected.records if r.run_id == run.run_id and r.status != statuses.NOT_RUN)
    print(f"rerun: {fresh} test result(s) from {len(labels)} target(s), merged into {len(collected.records)} records")
    return finish(collected.records, run, out_dir, None, collected.problems, history, args.strict_flaky)
