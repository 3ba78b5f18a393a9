"""Entry point of every matrix target (py_test main): runs one cell's tests under Bazel's protocol.

pytest runs in a child process with the matrix plugin, which journals each test file before it is
imported and each test as it starts and ends. This process keeps the per-test timeout by its own
clock (_Progress): a test past test_timeout_s is ended from outside (SIGTERM for its stacks, then
SIGKILL), whatever it holds (the GIL, blocked signals). When the child dies inside a test (segfault,
abort, os._exit, a kill of its own process group) or is ended for its timeout, this process records
that test as `crashed` / `timeout`, with the tail of the child's output (faulthandler's stack), and
starts a new child for the tests not yet run; a file whose import kills the child is recorded as
`crashed` and left out of the next child. The journal and the child's session are out of the
tests' reach (see journal.py, _Child). At the end it always writes the JSON report and its digest
(to TEST_UNDECLARED_OUTPUTS_DIR) and JUnit XML (to XML_OUTPUT_FILE), with `problems` saying why
when no test could run, and exits non-zero when anything unexpected happened. The evidence the
plugin keeps for failing tests (runtime/evidence.py) goes to TEST_UNDECLARED_OUTPUTS_DIR too; this
process removes any left for a test whose final status keeps none."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by the py_test launcher
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tools.matrix import statuses  # noqa: E402
from tools.matrix.records import MatrixResult  # noqa: E402
from tools.matrix.runtime import evidence, journal, outputs, selection, verdict  # noqa: E402
from tools.matrix.runtime.cell_config import ENV_KEY, CellConfig, CellSpecError  # noqa: E402

MAX_RESTARTS = 1000  # every restart records one test or file, so this only bounds a runaway loop
TAIL_BYTES = 8192  # of the child's output, kept for the records of a crash or a timeout
TERM_GRACE_S = 2.0  # after SIGTERM (a timeout, or Bazel's own), the child's group gets this long before SIGKILL
POLL_S = 0.05  # how often cell_main reads the journal and checks its clock while a child runs
# The child's own work between tests (recording a result, reaching the next test, ending the process,
# which with torch loaded takes seconds) gets test_timeout_s, and at least this long.
BETWEEN_TESTS_S = 30.0
CONFIG_FILE = "matrix_cell.json"  # the child's CellConfig, in its scratch directory (rewritten for each child)


def _synthetic(cell: CellConfig, nodeid: str, status: str, message: str, log_tail: str = "") -> dict[str, Any]:
    """A record the child could not write itself (its status decided by verdict.died)."""
    hit = selection.expectation_for(nodeid, cell.xfail)
    decided = verdict.died(status, hit[0] if hit else None)
    return {
        "nodeid": nodeid,
        "outcome": "xfailed" if decided.status == statuses.XFAILED else ("failed" if status != statuses.NOT_RUN else status),
        "metadata": {
            "matrix": MatrixResult(
                decided.status, message=message, error_type=decided.error_type, expectation=decided.expectation, log_tail=log_tail
            ).to_metadata()
        },
    }


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name if returncode < 0 else f"exit status {returncode}"
    except ValueError:
        return f"signal {-returncode}"


def _how_it_ended(returncode: int) -> str:
    """'died (SIGSEGV)' or 'exited (status 0)': the child's end, for a crash message."""
    return f"died ({_signal_name(returncode)})" if returncode < 0 else f"exited (status {returncode})"


# pytest's own settings from the environment (e.g. `bazel test --test_env=PYTEST_ADDOPTS=-x`): they
# would change which tests run and how they count, which the cell spec alone decides.
IGNORED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")


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


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class _Child:
    """One pytest child in its own session (a test that kills its process group reaches only its own),
    its stdout and stderr copied to ours as they come, the last TAIL_BYTES kept for the records."""

    def __init__(self, command: list[str], env: dict[str, str], journal_fd: int) -> None:
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(journal_fd,), start_new_session=True
        )
        self._tail = bytearray()
        self._tail_lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None
        self._reader = threading.Thread(target=self._copy, daemon=True)
        self._reader.start()

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        out: Any = sys.stdout.buffer
        while chunk := os.read(self.proc.stdout.fileno(), 1 << 16):
            try:
                out.write(chunk)
                out.flush()
            except (OSError, ValueError):  # our stdout is gone: keep draining, or the child blocks
                out = io.BytesIO()
            self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        with self._tail_lock:
            self._tail += chunk
            del self._tail[:-TAIL_BYTES]

    def note(self, line: str) -> None:
        """A line of ours in the child's output (the log and the tail), e.g. why we stop it."""
        print(line, flush=True)
        self._keep(f"{line}\n".encode())

    def poll(self, timeout: float) -> int | None:
        """The child's exit status once it has ended; None when it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM to its process group (its faulthandler prints where each thread is), SIGKILL
        TERM_GRACE_S later: ending it depends on nothing the test can do."""
        if self._kill_timer is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            self._kill_timer = threading.Timer(TERM_GRACE_S, _kill_group, args=(self.proc.pid, signal.SIGKILL))
            self._kill_timer.daemon = True
            self._kill_timer.start()

    def wait(self) -> int:
        returncode = self.proc.wait()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        _kill_group(self.proc.pid, signal.SIGKILL)  # what the test left running would hold the pipe open
        self._reader.join(timeout=5)  # one that escaped into its own session may still: stop waiting
        return returncode

    @property
    def tail(self) -> str:
        with self._tail_lock:
            return bytes(self._tail).decode(errors="replace")

    def tail_or_why_none(self, returncode: int) -> str:
        """The tail, or (a SIGKILL or os._exit as the child's first act prints nothing) a line saying so."""
        return self.tail or f"(the test process {_how_it_ended(returncode)} without writing any output)"


class _Termination:
    """Bazel ends a target that overruns its own timeout with SIGTERM (then SIGKILL after a grace
    period): stop the child (_Child.stop), keep every result recorded so far, write the outputs."""

    def __init__(self) -> None:
        self.requested = False
        self.child: _Child | None = None
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.child is not None:
            self.child.stop()


@dataclass(frozen=True)
class _Span:
    """What a child is busy with, on cell_main's clock."""

    kind: str  # "test" (start..stop), "ending" (stop..result), "importing" (a file), "after" (anything else)
    nodeid: str  # the test or file; for "after", the last one
    since: float  # time.monotonic() when cell_main saw it begin
    after: str = ""  # for "after": what ended last, in words


class _Progress:
    """One child's journal events, as they come: the results, what it is busy with, and the clock.

    The per-test timeout is kept here, by cell_main's own monotonic clock, out of the test's reach:
    a test runs on it from its `start` event to its `stop` event (setup, call and teardown; recording
    the result is off its clock); a file's import from `collecting` to `collecting_done`; and every
    other moment after the first import (recording a result, reaching the next test, ending the
    process) gets test_timeout_s too (at least BETWEEN_TESTS_S), so nothing the test leaves running
    can stall the cell."""

    def __init__(self, cell: CellConfig, tests: dict[str, dict[str, Any]], selected: dict[str, None],
                 session: dict[str, Any], problems: list[str]) -> None:  # fmt: skip
        self.cell, self.tests, self.selected, self.session, self.problems = cell, tests, selected, session, problems
        # every test of the target, before the filter and the shard split (what the outputs name as not run here)
        self.collected: dict[str, None] = session.setdefault("collected", {})
        self.pending: str | None = None  # the test running when the child ended
        self.importing: str | None = None  # the test file being imported when the child ended
        self.started = self.fatal = False
        self.checks: list[str] = []
        self.span: _Span | None = None  # None until the first file's import
        self.overran: _Span | None = None  # the span cell_main stopped the child in

    def _busy(self, kind: str, nodeid: str, after: str = "") -> None:
        self.span = _Span(kind, nodeid, time.monotonic(), after)

    def take(self, event: dict[str, Any]) -> None:
        kind, cell = event["event"], self.cell
        if kind == "session":
            self.session.update(torch_version=event["torch_version"], python=event["python"])
        elif kind == "collecting":
            self.importing = event["nodeid"]
            self._busy("importing", event["nodeid"])
        elif kind in ("collecting_done", "collect_error"):
            self.importing = None
            self._busy("after", event["nodeid"], f"{event['nodeid']} was imported")
            if kind == "collect_error":
                self.tests[event["nodeid"]] = _synthetic(cell, event["nodeid"], statuses.ERROR, event["message"], event["longrepr"])
        elif kind == "nothing_collected":
            for file in event["files"]:
                if file not in self.tests:
                    self.tests[file] = _synthetic(cell, file, statuses.ERROR, f"no tests collected from this file: {event['why']}")
        elif kind == "collected":
            self.started, self.importing = True, None
            self.selected.update(dict.fromkeys(event["nodeids"]))
            self.collected.update(dict.fromkeys(event.get("every_nodeid", ())))
            self._busy("after", "", "the test files were collected")
        elif kind == "start":
            self.pending = event["nodeid"]
            self._busy("test", event["nodeid"])
        elif kind == "stop":
            self._busy("ending", event["nodeid"])
        elif kind == "result":
            self.tests[event["test"]["nodeid"]] = event["test"]
            self.pending = None
            self._busy("after", event["test"]["nodeid"], f"{event['test']['nodeid']} ended")
        elif kind == "fatal":
            self.problems.append(event["message"])
            self.fatal = True
        elif kind == "unmatched" and not any(selection.covers(event["entry"], n) for n in self.tests):
            # (an entry for a file whose import failed matches that file's record)
            self.checks.append(
                f"{cell.expectations_source} {event['kind']} entry {event['entry']!r} matches no test of {cell.suite}; "
                f"remove or fix it ({cell.entries_key()})"
            )
        elif kind == "filter_unmatched" and not selection.select(list(self.tests), selection.parse_filter(event["filter"])):
            near = f"; did you mean: {', '.join(event['near'])}?" if event["near"] else ""
            self.checks.append(f"--test_filter {event['filter']!r} matches no test of {cell.target or cell.suite} (in any shard){near}")

    def limit(self, span: _Span) -> float:
        """How long `span` may take."""
        return self.cell.test_timeout_s if span.kind in ("test", "importing") else max(self.cell.test_timeout_s, BETWEEN_TESTS_S)

    def overdue(self) -> _Span | None:
        """The span that has run past its limit by cell_main's clock, if any."""
        span = self.span
        return span if span is not None and time.monotonic() - span.since > self.limit(span) else None

    def record_overrun(self, tail: str) -> str | None:
        """The record (or problem) for the span cell_main stopped the child in (`tail`: the child's
        last output); the culprit's node id, None when no test or file is to blame."""
        span = self.overran
        assert span is not None
        limit, per_test = self.limit(span), f"timed out after {self.cell.test_timeout_s:g}s (per-test timeout)"
        if span.kind == "after":
            self.problems.append(
                f"the test process stopped responding for {limit:g}s after {span.after} "
                "(a thread, signal handler or atexit handler left running?); it was killed"
            )
            return None
        message = {
            "test": per_test,
            "importing": f"{per_test} while this file was being imported",
            "ending": f"timed out after the test ended: its result was not recorded within {limit:g}s (a thread or handler it left running?)",
        }[span.kind]
        self.tests[span.nodeid] = _synthetic(self.cell, span.nodeid, statuses.TIMEOUT, message, tail)
        return span.nodeid


def _warn(message: str) -> None:
    print(f"\n[matrix] WARNING: {message}", flush=True)


def _note(message: str) -> None:
    print(f"[matrix] note: {message}", flush=True)


def _stop_overdue(child: _Child, progress: _Progress) -> None:
    span = progress.overdue()
    if span is None:
        return
    progress.overran = span
    limit = progress.limit(span)
    if span.kind == "after":
        child.note(f"\n[matrix] the test process stopped responding for {limit:g}s after {span.after}; stacks follow")
    else:
        child.note(f"\nTIMEOUT: {span.nodeid} ran longer than {limit:g}s; stacks follow")
    child.stop()


def run_cell(cell: CellConfig, scratch: str, journal_dir: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Run every selected test, resuming after crashes and timeouts. Returns (tests, session info, problems)."""
    events_of = journal.Journal(journal_dir)
    cell = replace(cell, journal=str(events_of.fd))
    tests: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    session: dict[str, Any] = {"restarts": 0}
    checked = False  # the expectation and filter checks come from the first child that collected
    selected: dict[str, None] = {}  # every test a child collected to run, in order
    unrun = "the test process ended before this test ran"  # for selected tests left without a record
    termination = _Termination()
    for _attempt in range(MAX_RESTARTS):
        child_cell = replace(cell, done=tuple(tests))
        if not _files_to_collect(child_cell):
            break  # every file failed to import
        os.makedirs(scratch, exist_ok=True)  # a test may have wiped its temporary directory
        recorded_before = len(tests)
        child = _Child(pytest_command(child_cell), child_env(child_cell, scratch), events_of.fd)
        termination.child = child
        if termination.requested:  # the signal came between two children
            child.stop()
        progress = _Progress(cell, tests, selected, session, problems)
        while (returncode := child.poll(POLL_S)) is None:
            for event in events_of.read_new(_warn):
                progress.take(event)
            if progress.overran is None and not termination.requested:
                _stop_overdue(child, progress)
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
                tests[nodeid] = _synthetic(
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
            tests[importing] = _synthetic(
                cell,
                importing,
                statuses.CRASHED,
                f"the test process {_how_it_ended(returncode)} while importing this file",
                child.tail_or_why_none(returncode),
            )
            culprit = importing
        elif pending is None:
            if not progress.started and not progress.fatal:
                problems.append(f"pytest exited with {_signal_name(returncode)} before running any test; its last output:\n{child.tail}")
            elif returncode not in (0, 1, 5) and not progress.fatal:
                problems.append(f"pytest exited with {_signal_name(returncode)} outside any test; its last output:\n{child.tail}")
            unrun = f"the test process {_how_it_ended(returncode)} before this test ran"
            break
        else:
            tests[pending] = _synthetic(
                cell,
                pending,
                statuses.CRASHED,
                f"the test process {_how_it_ended(returncode)} inside this test",
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
            tests[nodeid] = _synthetic(cell, nodeid, statuses.NOT_RUN, unrun)
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
        tests, session, problems = run_cell(cell, scratch, environ.get("TEST_TMPDIR"))
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
