"""The runtime drill: tests that attack the runner's clock, channel and memory from inside their own
process, under real Bazel and the real `report` command; it fails unless every record is exactly
what tools/matrix/tests/fixtures/reach/expected.py says.

    bazel run //tools/matrix/drill:runtime_drill      # ~3 min on 2 cores; `make test` runs it

In a scratch workspace (a copy of WORKSPACE, requirements.txt and tools/, plus the hostile suites of
tools/matrix/tests/fixtures/reach) with its own output base, reusing this build's @pyenv so nothing
is installed, `matrix report` runs `bazel test //:all_cells --keep_going` over one cell per suite:
- hangs: 6 tests that hold the GIL (a C sleep with signals blocked, a catastrophic regex, a busy loop
  at a 1e6 s switch interval, another thread hogging the GIL, a teardown) or ignore SIGTERM, each
  ended at test_timeout_s (3 s) by cell_main's clock; a file whose import hangs; a process that
  cannot exit after its last test (a non-daemon thread);
- channel: 8 tests that close descriptors (3..1023, all), put /dev/null over every descriptor, patch
  json/os/time/threading/signal for good, clear the environment, set the standard streams to None:
  each keeps its true status (passed), and so does every other;
- outputs: 4 tests that remove the outputs directory, replace it with a file or a symlink, make it
  read-only: each alone is `error` saying so, and the outputs are written;
- memory: 2 x 300 MiB printed (stdout, the stderr descriptor), 300 MiB logged, a 16 MiB failure
  message, output at import: each record exact, each cell's report.json small;
- empty, empty_patterns: a cell that collects no test fails, saying why.
Every test process runs on the warm path (report starts the drill's own warm launcher): each cell's
report.json must say so (scratch_workspace.check_warm).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import check_warm, discard, drill_workspace, run_step

REACH = Path("tools") / "matrix" / "tests" / "fixtures" / "reach"  # the hostile suites, in the source tree
STEP_TIMEOUT_S = 900
REPORT_JSON_LIMIT = 2_000_000  # bytes of one cell's report.json, whatever its tests printed


def fail(message: str) -> NoReturn:
    print(f"\nruntime_drill: FAIL: {message}", flush=True)
    sys.exit(1)


def load_expected(source: Path):
    spec = importlib.util.spec_from_file_location("reach_expected", source / REACH / "expected.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def matrix_yaml(expected) -> str:
    lines = [
        "# The runtime drill's matrix (written by tools/matrix/drill/runtime_drill.py).",
        "devices:",
        "  cpu: {}",
        "variants:",
        "  base:",
        "    impl: tools.matrix.variants.base:Base",
        "    description: The API untouched.",
        "suites:",
    ]
    for suite in expected.RECORDS:
        timeout = expected.MEMORY_TIMEOUT_S if suite == "memory" else expected.TIMEOUT_S
        lines += [f"  {suite}:", f"    directory: reach/{suite}", "    variants: [base]", "    devices: [cpu]", "    size: medium",
                  f"    test_timeout_s: {timeout}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    rc, out = run_step(argv, cwd, env, log, STEP_TIMEOUT_S)
    if "Traceback (most recent call last)" in out:
        fail(f"a traceback reached the user:\n{out[-4000:]}")
    return rc, out


def check_records(report: dict, output: str, expected) -> tuple[int, list[str]]:
    """(records checked, what is wrong): each expected record has its status and message start, and
    no suite has a record or a problem (a `problem:` line of `report`'s output) more than expected."""
    wrong = []
    records = {(r["suite"], r["test"]): r for r in report["records"]}
    checked = 0
    for suite, tests in expected.RECORDS.items():
        got = {test for s, test in records if s == suite}
        if got != set(tests):
            wrong.append(f"{suite}: records {sorted(got)}, expected {sorted(tests)}")
        for test, (status, message) in tests.items():
            r = records.get((suite, test))
            checked += 1
            if r is None or r["status"] != status or not r["message"].startswith(message):
                found = f"{r['status']}: {r['message'][:200]}" if r else "no record"
                wrong.append(f"{suite} {test}: expected {status}: {message[:120]}, got {found}")
    for suite in expected.RECORDS:
        problems = sorted(
            line.split(": ", 2)[2]
            for line in output.splitlines()
            if line.startswith(f"problem: //reach/{suite}:") and line.count(": ") >= 2
        )
        if problems != sorted(expected.PROBLEMS.get(suite, [])):
            wrong.append(f"{suite}: problems {problems}, expected {expected.PROBLEMS.get(suite, [])}")
    return checked, wrong


def check_report_sizes(ws: Path, expected) -> list[str]:
    """Each cell's report.json (in its outputs.zip) stays small, whatever its tests printed."""
    wrong = []
    for suite in expected.RECORDS:
        zip_path = next((ws / "bazel-testlogs").glob(f"reach/{suite}/{suite}_base_cpu/**/outputs.zip"), None)
        if zip_path is None:
            wrong.append(f"{suite}: no outputs.zip")
            continue
        with zipfile.ZipFile(zip_path) as z:
            size = sum(i.file_size for i in z.infolist() if i.filename == "report.json")
        if not 0 < size < REPORT_JSON_LIMIT:
            wrong.append(f"{suite}: report.json is {size} bytes")
    return wrong


def main() -> int:
    started = time.monotonic()
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or fail("run me with `bazel run //tools/matrix/drill:runtime_drill`"))
    expected = load_expected(source)
    root, ws, env, cli = drill_workspace(source, "matrix-runtime-drill-", matrix_yaml(expected), [source / REACH])
    try:
        rc, out = run([*cli, "generate"], ws, env, root / "generate.log")
        if rc != 0:
            fail(f"generate failed:\n{out[-3000:]}")
        rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / "report.log")
        if rc != 1:
            fail(f"report should exit 1 (the hostile tests' timeouts and errors are unexpected), got {rc}:\n{out[-3000:]}")
        report = json.loads((ws / "reports" / "compat.json").read_text())
        checked, wrong = check_records(report, out, expected)
        wrong += check_report_sizes(ws, expected)
        wrong += check_warm(ws)
        print(f"\nreport: {len(report['records'])} records, {checked} expected, {len(wrong)} wrong")
        for r in sorted(report["records"], key=lambda r: (r["suite"], r["test"])):
            print(f"   {r['status']:<8} {r['suite']:<15} {r['test']}: {r['message'][:100]}")
        if wrong:
            fail("\n".join(wrong))
        print(f"\nruntime_drill: PASS in {time.monotonic() - started:.0f}s: {checked} records exact "
              f"({len(expected.RECORDS)} suites: hangs, channel, outputs, memory, no tests)")  # fmt: skip
        return 0
    finally:
        discard(root, ws, env)


if __name__ == "__main__":
    sys.exit(main())
