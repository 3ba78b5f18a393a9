"""`rerun`: run only the matching targets (and, with --failed/--xpassed/--tests, only the matching
tests via --test_filter), then merge the results into the last report without losing other records."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from tools.matrix import bazel, last_report, statuses
from tools.matrix.collect import NO_RESULTS, collect
from tools.matrix.config import Cell, Matrix
from tools.matrix.errors import ReportError
from tools.matrix.filters import RERUN_FAILED, record_matches, selected_cells
from tools.matrix.records import Record
from tools.matrix.report import COMPAT_JSON
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
                continue
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


def merge(previous: list[Record], fresh: list[Record]) -> list[Record]:
    """Fresh records replace the previous record of the same (suite, test, variant, device)."""
    merged = {r.key: r for r in previous}
    merged.update({r.key: r for r in fresh})
    return sorted(merged.values(), key=lambda r: r.key)


def rerun(workspace: Path, matrix: Matrix, out_dir: Path, args: argparse.Namespace) -> int:
    report_path = out_dir / COMPAT_JSON
    # A report that is there but unreadable is an error even for a whole-target rerun: merging
    # into it would silently drop every record it held.
    previous = last_report.load(report_path)[1] if report_path.exists() else None
    groups = plan(matrix, args, previous)
    if not groups:
        print("nothing to rerun: no target or test matches " + " ".join(f"--{k}" for k in ("failed", "xpassed") if getattr(args, k)) + " with the given filters")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
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
    run = new_run(planned[0] if len(planned) == 1 else ["(several)", *[bazel.quote(c) for c in planned]], testlogs, None, matrix)
    fresh: list[Record] = []
    problems: list[str] = []
    for command, labels in zip(planned, (groups[k] for k in sorted(groups))):
        cells = list({id(c): c for c in labels.values()}.values())
        bep = Path(command[-1 - len(args.bazel_args)].split("=", 1)[1])
        collected = collect(matrix, testlogs, bep if bep.exists() else None, run.run_id, cells=cells, fill_missing=previous is None, labels=set(labels))
        fresh += collected.records
        problems += collected.problems
        run.torch_version = run.torch_version or collected.torch_version
    merged = merge(previous or [], fresh)
    print(f"rerun: {len(fresh)} test result(s) from {sum(len(c) for c in groups.values())} target(s), merged into {len(merged)} records")
    return finish(merged, run, out_dir, None, problems)
