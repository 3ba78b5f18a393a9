"""Entry point of every matrix target (py_test main): runs one cell's tests under Bazel's protocol.

pytest runs in a child process with the matrix plugin, which journals every test as it ends. When the
child dies inside a test (segfault, abort) or its watchdog ends a hung test, this process records
that test as `crashed` / `timeout` and starts a new child for the tests not yet run, so one bad test
never loses the others' results. At the end it writes the JSON report (to
TEST_UNDECLARED_OUTPUTS_DIR) and JUnit XML (to XML_OUTPUT_FILE) and exits non-zero when anything
unexpected happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by the py_test launcher
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tools.matrix import statuses  # noqa: E402
from tools.matrix.runtime import journal, outputs  # noqa: E402
from tools.matrix.runtime.cell_config import ENV_KEY, CellConfig, parse_args  # noqa: E402

MAX_RESTARTS = 1000  # every restart records one test, so this only bounds a runaway loop


def _synthetic(nodeid: str, status: str, message: str, log_tail: str = "") -> dict[str, Any]:
    return {
        "nodeid": nodeid,
        "outcome": "failed",
        "metadata": {
            "matrix": {
                "status": status,
                "duration_s": 0.0,
                "message": message,
                "error_type": status,
                "transform_failed": False,
                "transform_s": 0.0,
                "transform_calls": 0,
                "expectation": None,
                "log_tail": log_tail,
            }
        },
    }


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name if returncode < 0 else f"exit status {returncode}"
    except ValueError:
        return f"signal {-returncode}"


def _child_env(cell: CellConfig, scratch: str, environ: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, str]:
    """The pytest child's environment, from this process's (or `environ`, run from `cwd`)."""
    env = dict(os.environ if environ is None else environ)
    env[ENV_KEY] = cell.to_env()
    # Temporary and cache files only under TEST_TMPDIR; no bytecode written into runfiles.
    for key in ("TMPDIR", "TEMP", "TMP", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        env[key] = scratch
    env.setdefault("HOME", scratch)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in [cwd or os.getcwd(), env.get("PYTHONPATH", "")] if p)
    return env


def _pytest_command(cell: CellConfig) -> list[str]:
    return [
        sys.executable, "-m", "pytest",
        "-p", "tools.matrix.runtime.plugin",
        "-p", "no:cacheprovider",
        "--json-report", "--json-report-file=none", "--json-report-omit", "collectors", "keywords", "warnings",
        f"--rootdir={cell.suite_dir}",
        "-o", "console_output_style=classic",
        "-q", "-rfEX",
        "--continue-on-collection-errors",  # a test file that fails to import must not lose the other files' tests
        *cell.pytest_args,  # the suite's own options (matrix.yaml pytest_args), checked by the generator
        *[os.path.join(cell.suite_dir, f) for f in cell.test_files],
    ]  # fmt: skip


class _Termination:
    """Bazel ends a target that overruns its own timeout with SIGTERM (then SIGKILL after a grace
    period): stop the child, keep every result recorded so far, and write the outputs in time."""

    def __init__(self) -> None:
        self.requested = False
        self.child: subprocess.Popen[bytes] | None = None
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.child and self.child.poll() is None:
            self.child.kill()


def run_cell(cell: CellConfig, scratch: str) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """Run every selected test, resuming after crashes and timeouts. Returns (tests, session info, problems)."""
    journal_path = os.path.join(scratch, "journal.jsonl")
    cell = replace(cell, journal=journal_path)
    tests: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    session: dict[str, Any] = {"restarts": 0}
    termination = _Termination()
    for attempt in range(MAX_RESTARTS):
        offset = len(journal.read(journal_path))
        child_cell = replace(cell, done=tuple(tests))
        termination.child = child = subprocess.Popen(_pytest_command(child_cell), env=_child_env(child_cell, scratch))
        if termination.requested:  # the signal came between two children
            child.kill()
        child.wait()
        events = journal.read(journal_path)[offset:]
        pending: str | None = None
        started = False
        timed_out: dict[str, Any] | None = None
        for event in events:
            kind = event["event"]
            if kind == "session":
                session.update(torch_version=event["torch_version"], python=event["python"])
            elif kind == "collected":
                started = True
            elif kind == "start":
                pending = event["nodeid"]
            elif kind == "result":
                tests[event["test"]["nodeid"]] = event["test"]
                pending = None
            elif kind == "timeout":
                timed_out = event
            elif kind == "fatal":
                problems.append(event["message"])
            elif kind == "collect_error":
                tests[event["nodeid"]] = _synthetic(event["nodeid"], statuses.ERROR, event["message"], event["longrepr"])
            elif kind == "unmatched" and attempt == 0:
                problems.append(
                    f"matrix.yaml {event['kind']} entry {event['entry']!r} matches no test of {cell.suite}; "
                    f"remove or fix it (expectations.{cell.suite}.{cell.variant})"
                )
        if termination.requested:
            if pending is not None:
                tests[pending] = _synthetic(pending, statuses.TIMEOUT, "Bazel ended the target during this test (the target's timeout, see `size`/--test_timeout)")
            problems.append("Bazel ended the target (SIGTERM) before all its tests ran: the target's timeout is too short, or shard it; tests not yet run are missing")
            return list(tests.values()), session, problems
        if pending is None:
            if not started and not problems:
                problems.append(f"pytest exited with {_signal_name(child.returncode)} before running any test; see the log above")
            elif child.returncode not in (0, 1, 5) and not problems:
                problems.append(f"pytest exited with {_signal_name(child.returncode)} outside any test; see the log above")
            return list(tests.values()), session, problems
        session["restarts"] += 1
        if timed_out and timed_out["nodeid"] == pending and child.returncode == journal.TIMEOUT_EXIT_CODE:
            record = _synthetic(pending, statuses.TIMEOUT, f"timed out after {timed_out['timeout_s']:g}s (per-test timeout)")
        else:
            record = _synthetic(pending, statuses.CRASHED, f"the test process died ({_signal_name(child.returncode)}) inside this test")
        tests[pending] = record
        print(f"\n[matrix] {pending}: {record['metadata']['matrix']['message']}; resuming with the remaining tests", flush=True)
    problems.append(f"gave up after {MAX_RESTARTS} restarts")
    return list(tests.values()), session, problems


def _touch(path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    environ = dict(os.environ)
    cell = parse_args(sys.argv[1:] if argv is None else argv, environ)
    _touch(environ.get("TEST_SHARD_STATUS_FILE"))  # we implement sharding ourselves
    premature = environ.get("TEST_PREMATURE_EXIT_FILE")
    _touch(premature)
    scratch = tempfile.mkdtemp(prefix="cell-", dir=environ.get("TEST_TMPDIR"))
    tests, session, problems = run_cell(cell, scratch)
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
    }
    out_dir = environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or scratch
    os.makedirs(out_dir, exist_ok=True)
    outputs.write_outputs(out_dir, tests, metadata, started, exitcode, cell.suite_dir)
    if environ.get("XML_OUTPUT_FILE"):
        Path(environ["XML_OUTPUT_FILE"]).write_bytes(outputs.junit_xml(tests, metadata))
    counts: dict[str, int] = {}
    for t in tests:
        counts[outputs.status_of(t)] = counts.get(outputs.status_of(t), 0) + 1
    print(f"\n[matrix] {cell.target or cell.suite} ({cell.variant}, {cell.device}, shard {cell.shard_index + 1}/{cell.total_shards}): "
          + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tests"))  # fmt: skip
    for t in unexpected:
        m = t["metadata"]["matrix"]
        print(f"[matrix] {m['status'].upper()}: {t['nodeid']}: {m['message']}")
    for problem in problems:
        print(f"[matrix] ERROR: {problem}")
    if premature and os.path.exists(premature):
        os.remove(premature)
    return exitcode


if __name__ == "__main__":
    sys.exit(main())
