"""`report`: run the matrix's cells (//:all_cells: not the tools' own tests) with --keep_going, collect
Bazel's results, write the compatibility report.
The last report in the output directory is merged in: a test whose result this run's outputs lack (a
--test_filter, a rerun of other targets, a broken shard) keeps its record (known_tests.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

from tools.matrix import bazel, generate, last_report, statuses, target_names
from tools.matrix.collect import Collected, collect
from tools.matrix.config import Matrix
from tools.matrix.errors import ReportError
from tools.matrix.history import provenance
from tools.matrix.history.append import EXIT_HISTORY, read_view, store_run
from tools.matrix.records import Record, RunInfo
from tools.matrix.report import COMPAT_JSON, compare, terminal_summary, write_reports
from tools.matrix.report.commands import GPU_DEVICES_KEY
from tools.matrix.report.text import visible

BEP_NAME = "bep.json"


def new_run(command: list[str], testlogs: Path, torch_version: str | None, matrix: Matrix, workspace: Path | None = None) -> RunInfo:
    now = dt.datetime.now(dt.UTC)
    commit, dirty = provenance.git_state(workspace) if workspace is not None else (None, None)
    return RunInfo(
        run_id=now.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
        created=now.isoformat(timespec="seconds"),
        torch_version=torch_version,
        bazel_command=bazel.quote(command),
        testlogs=str(testlogs),
        git_commit=commit,
        git_dirty=dirty,
        host=provenance.host(),
        extra={GPU_DEVICES_KEY: sorted(d.name for d in matrix.devices if d.requires_gpu)},  # for the rerun commands
    )


def disagreements(collected: Collected, run_id: str | None = None) -> list[str]:
    """Targets where Bazel's pass/fail differs from what the records say (with `run_id`, the records
    of that run: a record carried over from an earlier run is not what Bazel just ran)."""
    problems = []
    records = collected.records if run_id is None else [r for r in collected.records if r.run_id == run_id]
    failing_targets = {r.target for r in records if r.status in statuses.UNEXPECTED}
    failing_targets |= {p.split(": ", 1)[0] for p in collected.problems}
    recorded_targets = {r.target for r in records}
    for label, result in sorted(collected.bazel.items()):
        if not result.overall or label not in recorded_targets:
            continue
        bazel_failed = result.overall not in ("PASSED", "FLAKY")
        if bazel_failed != (label in failing_targets):
            problems.append(f"{label}: Bazel says {result.overall}, the records say {'failed' if label in failing_targets else 'passed'}")
    return problems


def finish(records: list[Record], run: RunInfo, out_dir: Path, baseline: Path | None, problems: list[str], history: str | None = None,
           strict_flaky: bool = False) -> int:  # fmt: skip
    """Write the report, print its summary, then append the run to the `history` store (None: none kept)."""
    comparison = compare(last_report.load(baseline)[1], records) if baseline else None
    view = read_view(history, run, records)
    paths = write_reports(records, run, out_dir, baseline=comparison, history=view)
    print(terminal_summary(records, comparison, run.run_id))
    for problem in problems:  # may quote test output (a variant's import error): no raw escapes
        print(f"problem: {visible(problem)}")
    print("report: " + ", ".join(str(p) for p in paths))
    stored = store_run(history, run, records, view)  # after the report: a failing store never costs it
    gate = statuses.UNEXPECTED_STRICT if strict_flaky else statuses.UNEXPECTED
    return 1 if any(r.status in gate for r in records) or problems else 0 if stored else EXIT_HISTORY


def previous_report(out_dir: Path) -> list[Record] | None:
    """The records of the last report in `out_dir` (None: there is none), to carry over what this run lacks."""
    path = out_dir / COMPAT_JSON
    if not path.exists():
        return None
    try:
        return last_report.load(path)[1]
    except ReportError as e:  # its hint to run `report` again would loop: say how to start afresh
        what = str(e).removesuffix(f"; {last_report.MAKE_REPORT} again")
        raise ReportError(f"{what}; `report` merges the last report into the new one: move it away (or give another --out) to start afresh") from None


def report(workspace: Path, matrix: Matrix, out_dir: Path, baseline: Path | None, bazel_args: list[str], run_tests: bool,
           history: str | None = None, strict_flaky: bool = False) -> int:  # fmt: skip
    previous = previous_report(out_dir)  # before the long run: an unreadable one is found now
    if run_tests:
        generate.require_current(matrix, workspace, "report")  # before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    bep = out_dir / BEP_NAME
    command = ["bazel", "test", f"//:{target_names.ALL_CELLS}", "--keep_going", f"--build_event_json_file={bep}", *bazel_args]
    if run_tests:
        # An earlier run's BEP must not pass for this one's (were Bazel to stop before writing its own).
        bep.unlink(missing_ok=True)
        targets = matrix.targets()
        gpu = sum(1 for t in targets if t.cell.device.requires_gpu)
        print(f"report: running the matrix: {len(targets)} targets of {len(matrix.cells())} cells"
              + (f" ({gpu} of them GPU targets, skipped unless --config=gpu)" if gpu else ""), flush=True)  # fmt: skip
        bazel.run(command, workspace)  # non-zero when tests fail: the report says which
    testlogs = bazel.info("bazel-testlogs", workspace)
    # With --no-run the BEP is an earlier `report`'s: collect uses it only for the targets whose
    # testlogs are no newer than it (see collect._fresh_bep).
    run = new_run(command if run_tests else ["(collected from existing testlogs)"], testlogs, None, matrix, workspace)
    collected = collect(matrix, testlogs, bep if bep.exists() else None, run.run_id, previous=previous)
    run.torch_version = collected.torch_version
    for note in collected.notes:
        print(f"note: {visible(note)}")
    return finish(collected.records, run, out_dir, baseline, collected.problems + disagreements(collected, run.run_id), history, strict_flaky)
