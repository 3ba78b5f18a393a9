"""Entry point of every matrix target (py_test main): runs one cell's tests under Bazel's protocol.

pytest runs in a child process with the matrix plugin, which journals each test file before it is
imported and each test as it starts and ends. This process keeps the per-test timeout by its own
clock (progress.py): a test past test_timeout_s is ended from outside (SIGTERM for its stacks, then
SIGKILL), whatever it holds (the GIL, blocked signals). When the child dies inside a test (segfault,
abort, os._exit, a kill of its own process group) or is ended for its timeout, this process records
that test as `crashed` / `timeout`, with the tail of the child's output (faulthandler's stack), and
starts a new child for the tests not yet run; a file whose import kills the child is recorded as
`crashed` and left out of the next child. The journal and the child's session are out of the
tests' reach (see journal.py, child.py). At the end it always writes the JSON report and its digest
(to TEST_UNDECLARED_OUTPUTS_DIR) and JUnit XML (to XML_OUTPUT_FILE), with `problems` saying why
when no test could run, and exits non-zero when anything unexpected happened. The evidence the
plugin keeps for failing tests (runtime/evidence.py) goes to TEST_UNDECLARED_OUTPUTS_DIR too; this
process removes any left for a test whose final status keeps none."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by the py_test launcher
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tools.matrix import statuses  # noqa: E402
from tools.matrix.runtime import evidence, journal, outputs, warm_start  # noqa: E402
from tools.matrix.runtime.cell_config import ENV_KEY, CellConfig, CellSpecError  # noqa: E402
from tools.matrix.runtime.child import Child, Termination, how_it_ended, signal_name  # noqa: E402
from tools.matrix.runtime.progress import Progress, stop_overdue, synthetic  # noqa: E402

MAX_RESTARTS = 1000  # every restart records one test or file, so this only bounds a runaway loop
POLL_S = 0.05  # how often cell_main reads the journal and checks its clock while a child runs


# pytest's own settings from the environment (e.g. `bazel test --test_env=PYTEST_ADDOPTS=-x`): they
# would change which tests run and how they count, which the cell spec alone decides.
IGNORED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
CONFIG_FILE = "matrix_cell.json"  # the child's CellConfig, in its scratch directory (rewritten for each child)


def child_env(cell: CellConfig, scratch: str, environ: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, str]:
    """The pytest child's environment, from this process's (or `environ`, run from `cwd`); writes the
    child's config into `scratch` (CONFIG_FILE), which the environment names."""
    env = {k: v for k, v in (os.environ if environ is None else environ).items() if k not in IGNORED_ENV}
    env[ENV_KEY] = cell.save(os.path.join(scratch, CONFIG_FILE))  # a file: the config grows with the tests
    # Temporary and cache files only under TEST_TMPDIR; no bytecode written into runfiles.
    for key in ("TMPDIR", "TEMP", "TMP", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        env[key] = scratch
    env.setdefault("HOME", scratch)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash before pytest enables its own faulthandler still prints a stack
    env["PYTHONPATH"] = os.pathsep.join(p for p in [cwd or os.getcwd(), env.get("PYTHONPATH", "")] if p)
    return env


def pytest_command(cell: CellConfig) -> list[str]:
    return [
        sys.executable, "-m", "pytest",
        "-p", "tools.matrix.runtime.plugin",
        "-p", "no:cacheprovider",
        "--json-report", "--json-report-file=none", "--json-report-omit", "collectors", "keywords", "warnings", "log",  # log: every record, unbounded; unused
        f"--rootdir={cell.suite_dir}",
        "-o", "console_output_style=classic",
        "-o", "addopts=",  # a pytest.ini's addopts would select tests or change statuses; the plugin says what it ignored
        "-q", "-rfEX",
        "--continue-on-collection-errors",  # a test file that fails to import must not lose the other files' tests
        *cell.pytest_args,  # the suite's own options (matrix.yaml pytest_args), checked by the generator
        *[os.path.join(cell.suite_dir, f) for f in _files_to_collect(cell)],
    ]  # fmt: skip


def _files_to_collect(cell: CellConfig) -> list[str]:
    """The test files, less those already recorded as a whole (their import crashed or failed)."""
    return [f for f in cell.test_files if Path(f).as_posix() not in cell.done]


def _warn(message: str) -> None:
    print(f"\n[matrix] WARNING: {message}", flush=True)


def _note(message: str) -> None:
    print(f"[matrix] note: {message}", flush=True)


def run_cell(cell: CellConfig, scratch: str, journal_dir: str | None = None, warm: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Run every selected test, resuming after crashes and timeouts. Returns (tests, session info, problems)."""
    events_of = journal.Journal(journal_dir)
    cell = replace(cell, journal=str(events_of.fd), runner_pid=os.getpid())
    tests: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    session: dict[str, Any] = {"restarts": 0, "starts": []}
    checked = False  # the expectation and filter checks come from the first child that collected
    selected: dict[str, None] = {}  # every test a child collected to run, in order
    unrun = "the test process ended before this test ran"  # for selected tests left without a record
    termination = Termination()
    for _attempt in range(MAX_RESTARTS):
        child_cell = replace(cell, done=tuple(tests))
        if not _files_to_collect(child_cell):
            break  # every file failed to import
        os.makedirs(scratch, exist_ok=True)  # a test may have wiped its temporary directory
        recorded_before = len(tests)
        child = Child(pytest_command(child_cell), child_env(child_cell, scratch), events_of.fd, warm)
        session["starts"].append(child.start)
        termination.child = child
        if termination.requested:  # the signal came between two children
            child.stop()
        progress = Progress(cell, tests, selected, session, problems)
        while (returncode := child.poll(POLL_S)) is None:
            for event in events_of.read_new(_warn):
                progress.take(event)
            if progress.overran is None and not termination.requested:
                stop_overdue(child, progress)
        returncode = child.wait()
        for event in events_of.read_new(_warn):
            progress.take(event)
        pending, importing = progress.pending, progress.importing
        if progress.started and not checked:
            problems += progress.checks
            checked = True
        if termination.requested:
            if pending is not None or importing is not None:
                where = "during this test" if pending is not None else "while this file was being imported"
                nodeid = pending or importing
                assert nodeid is not None
                tests[nodeid] = synthetic(
                    cell,
                    nodeid,
                    statuses.TIMEOUT,
                    f"Bazel ended the target {where} (the target's timeout, see `size`/--test_timeout)",
                    child.tail_or_why_none(returncode),
                )
            problems.append(
                "Bazel ended the target (SIGTERM) before all its tests ran: the target's timeout is too short, or shard it; tests not yet run are not_run"
            )
            unrun = "Bazel ended the target (SIGTERM) before this test ran"
            break
        if progress.overran is not None:
            culprit = progress.record_overrun(child.tail_or_why_none(returncode))
            if culprit is None:  # stalled between tests: go on only if tests remain and this child got somewhere
                unrun = f"the test process stopped responding for {progress.limit(progress.overran):g}s before this test ran"
                if (selected and all(n in tests for n in selected)) or len(tests) == recorded_before:
                    break
                culprit = "the stalled test process"
        elif pending is None and importing is not None:  # died importing a test file: run the others
            tests[importing] = synthetic(
                cell,
                importing,
                statuses.CRASHED,
                f"the test process {how_it_ended(returncode)} while importing this file",
                child.tail_or_why_none(returncode),
            )
            culprit = importing
        elif pending is None:
            if not progress.started and not progress.fatal:
                problems.append(f"pytest exited with {signal_name(returncode)} before running any test; its last output:\n{child.tail}")
            elif returncode not in (0, 1, 5) and not progress.fatal:
                problems.append(f"pytest exited with {signal_name(returncode)} outside any test; its last output:\n{child.tail}")
            unrun = f"the test process {how_it_ended(returncode)} before this test ran"
            break
        else:
            tests[pending] = synthetic(
                cell,
                pending,
                statuses.CRASHED,
                f"the test process {how_it_ended(returncode)} inside this test",
                child.tail_or_why_none(returncode),
            )
            culprit = pending
        if culprit in child_cell.done:  # it was excluded, yet ran again: restarting would loop
            problems.append(f"{culprit} ran again after it was recorded; stopped restarting (a runtime bug)")
            unrun = "the runtime stopped restarting before this test ran"
            break
        session["restarts"] += 1
        said = tests[culprit]["metadata"]["matrix"]["message"] if culprit in tests else problems[-1]
        print(f"\n[matrix] {culprit}: {said}; resuming with the remaining tests", flush=True)
    else:
        problems.append(f"gave up after {MAX_RESTARTS} restarts")
        unrun = f"the runtime gave up after {MAX_RESTARTS} restarts before this test ran"
    # Nothing selected goes missing: a test no child got to (pytest stopped early, Bazel ended the
    # target) is `not_run`, saying why.
    for nodeid in selected:
        if nodeid not in tests:
            tests[nodeid] = synthetic(cell, nodeid, statuses.NOT_RUN, unrun)
    return list(tests.values()), session, problems


def _touch(path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()


def main() -> int:
    started = time.time()
    environ = dict(os.environ)
    try:
        cell = CellConfig.from_bazel(environ)
    except CellSpecError as e:
        print(f"[matrix] ERROR: this target's cell spec is unusable: {e}", flush=True)
        return 2
    _touch(environ.get("TEST_SHARD_STATUS_FILE"))  # we implement sharding ourselves
    for key in IGNORED_ENV:
        if key in environ:
            _note(f"${key}={environ[key]!r} is ignored: the cell's spec (matrix.yaml pytest_args, expectations, --test_filter) decides which tests run and how they count")
    premature = environ.get("TEST_PREMATURE_EXIT_FILE")
    _touch(premature)
    scratch = tempfile.mkdtemp(prefix="cell-", dir=environ.get("TEST_TMPDIR"))
    out_dir = environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or scratch
    os.makedirs(out_dir, exist_ok=True)
    cell = replace(cell, evidence_dir=os.path.join(out_dir, evidence.EVIDENCE_DIR))
    try:
        tests, session, problems = run_cell(cell, scratch, environ.get("TEST_TMPDIR"), warm=not warm_start.disabled(environ))
    except Exception:  # a bug here must still leave outputs that say what happened
        tests, session, problems = [], {"restarts": 0}, [f"cell_main failed:\n{traceback.format_exc()}"]
    # The plugin makes it again after a test that destroys it (that test is `error`); something the
    # tests left running may have done it since.
    what, repair = outputs.reclaim_dir(out_dir)
    if what:
        problems.append(f"after the tests, something had {what.format(outputs.OUTPUTS_DIR)}; the runtime {repair}")
    # Only a test that went wrong keeps evidence (one that passed in a process that died before it
    # could remove its own still has some).
    evidence.prune(cell.evidence_dir, {evidence.test_key(t["nodeid"]) for t in tests if outputs.status_of(t) in statuses.KEEPS_EVIDENCE})
    if cell.shard_index > 0:  # every shard imports every file: a file's own record is shard 0's to report
        tests = [t for t in tests if "::" in t["nodeid"]]
    tests.sort(key=lambda t: t["nodeid"])
    unexpected = [t for t in tests if outputs.status_of(t) in statuses.UNEXPECTED]
    exitcode = 1 if unexpected or problems else 0
    metadata = {
        "suite": cell.suite,
        "variant": cell.variant,
        "device": cell.device,
        "target": cell.target,
        "shard_index": cell.shard_index,
        "total_shards": cell.total_shards,
        "test_filter": cell.test_filter,
        "torch_version": session.get("torch_version"),
        "python": session.get("python"),
        "restarts": session["restarts"],
        "starts": session.get("starts", []),  # per test process: "warm", "cold", or "cold: <why not warm>"
        "transform_s": round(sum(t["metadata"]["matrix"]["transform_s"] for t in tests), 6),
        "problems": problems,
        outputs.COLLECTED_NOT_RUN: outputs.not_run_here(session.get("collected", {}), tests),
    }
    outputs.write_outputs(out_dir, tests, metadata, started, exitcode, cell.suite_dir)
    if environ.get("XML_OUTPUT_FILE"):
        xml = Path(environ["XML_OUTPUT_FILE"])
        xml.parent.mkdir(parents=True, exist_ok=True)  # a test may have removed it
        xml.write_bytes(outputs.junit_xml(tests, metadata))
    counts: dict[str, int] = {}
    for t in tests:
        counts[outputs.status_of(t)] = counts.get(outputs.status_of(t), 0) + 1
    print(f"\n[matrix] {cell.target or cell.suite} ({cell.variant}, {cell.device}, shard {cell.shard_index + 1}/{cell.total_shards}): "
          + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tests"))  # fmt: skip
    for t in unexpected:
        m = t["metadata"]["matrix"]
        print(f"[matrix] {m['status'].upper()}: {t['nodeid']}: {m['message']}")
        if os.path.isdir(os.path.join(cell.evidence_dir, evidence.test_key(t["nodeid"]))):
            print(f"[matrix]   what the variant's transform changed: {evidence.index_member(t['nodeid'])} in this target's "
                  "test.outputs (`bazel run //tools:matrix -- report --no-run` shows it)")  # fmt: skip
    for problem in problems:
        print(f"[matrix] ERROR: {problem}")
    if premature and os.path.exists(premature):
        os.remove(premature)
    return exitcode


if __name__ == "__main__":
    sys.exit(main())
