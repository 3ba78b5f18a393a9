"""The command line's promise: no tracebacks. Bad input (a filter naming nothing, a corrupt report, a
failing bazel, an unusable path) is one line and exit 2 with nothing written; Ctrl-C is exit 130; an
unexpected exception is one line naming a file that holds the traceback, and exit 70. Every case
runs the real CLI in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.matrix import last_report, statuses
from tools.matrix.errors import ReportError
from tools.matrix.records import Record
from tools.matrix.report import COMPAT_JSON
from tools.matrix.tests.fixtures import toolws

MATRIX = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base: {impl: tools.matrix.variants.base:Base, description: plain}
  retrace: {impl: tools.matrix.variants.export:Retrace, description: again}
suites:
  s:
    variants: [base, retrace]
    devices: [cpu, cuda]
    shard_seconds: 60
  t:
    variants: [base]
    devices: [cpu]
"""
FILES = ("s/test_a.py", "t/test_c.py")


@pytest.fixture
def ws(tmp_path) -> Path:
    return toolws.write_workspace(tmp_path / "ws", MATRIX, FILES, "def test_x():\n    pass\n")


def cli(ws: Path, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(toolws.CLI), "--workspace", str(ws), *argv], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def one_line_error(out: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a refused command (and that it was refused the promised way)."""
    assert (out.returncode, "Traceback" in out.stderr) == (code, False), out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: "), out.stderr
    return out.stderr.rstrip("\n")


def records() -> list[Record]:
    def rec(suite, test, variant, device, status):
        return Record(suite=suite, test=test, variant=variant, device=device, status=status, target=f"//{suite}:{suite}_{variant}_{device}")

    return [rec("s", "test_a.py::test_x", "retrace", "cpu", statuses.FAILED), rec("t", "test_c.py::test_x", "base", "cpu", statuses.PASSED)]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fake_bazel(tmp_path: Path, body: str) -> dict[str, str]:
    """A real `bazel` executable first on PATH (and no BAZEL override) running `body`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bazel").write_text("#!/bin/sh\n" + body)
    (bin_dir / "bazel").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "BAZEL": ""}


# --- filters that name nothing ----------------------------------------------------------------------


FILTER_COMMANDS = [["list"], ["rerun", "--dry-run"], ["xfail", "sync", "--dry-run"]]


@pytest.mark.parametrize(
    ("command", "option", "expected"),
    [  # every command with the typo; the other cases through one command (they share filters.selected_cells)
        *(
            (command, ["--variant", "retrce"], "error: --variant retrce: no variant of matrix.yaml matches; did you mean 'retrace'? valid: base, retrace")
            for command in FILTER_COMMANDS
        ),
        (["xfail", "sync"], ["--device", "cpux"], "error: --device cpux: no device of matrix.yaml matches; did you mean 'cpu'? valid: cpu, cuda"),
        (["rerun", "--failed"], ["--suite", "x*"], "error: --suite x*: no suite of matrix.yaml matches; valid: s, t"),
        (
            ["list"],
            ["--suite", "t", "--variant", "retrace"],
            "error: no cell of matrix.yaml matches --suite t --variant retrace together (no suite runs that variant/device); `list` shows the cells",
        ),
    ],
)
def test_a_filter_naming_nothing_exits_2_with_the_choices(ws, command, option, expected):
    toolws.write_compat(ws / "reports" / COMPAT_JSON, records())
    before = snapshot(ws)
    out = cli(ws, *command, *option)
    assert one_line_error(out) == expected
    assert out.stdout == ""
    assert snapshot(ws) == before


def test_filters_that_match_still_work(ws):
    out = cli(ws, "list", "--variant", "re*", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "1 cell(s)" and "//s:s_retrace_cpu" in out.stdout


# --- a missing or corrupt last report ----------------------------------------------------------------------

CORRUPT = {
    "truncated": ('{"schema_version": 1, "run": {', "invalid JSON at line 1 column 31: Expecting property name enclosed in double quotes"),
    "a list": ("[]", "not a compat.json of schema_version 1 (found 'list')"),
    "records not objects": (
        '{"schema_version": 1, "run": {"run_id": "r", "created": "c"}, "records": [1]}',
        "record 1: 1 is not of type 'object'",
    ),
    "record missing fields": (
        '{"schema_version": 1, "run": {"run_id": "r", "created": "c"}, "records": [{"suite": "s"}]}',
        "record 1: 'test' is a required property",
    ),
    "record of wrong types": (
        '{"schema_version": 1, "run": {"run_id": "r", "created": "c"}, "records": [{"suite": "s", "test": 7, "variant": "base", "device": "cpu", "status": "passed"}]}',
        "record 1: test: 7 is not of type 'string'",
    ),
    "unknown status": (
        '{"schema_version": 1, "run": {"run_id": "r", "created": "c"}, "records": [{"suite": "s", "test": "t.py", "variant": "base", "device": "cpu", "status": "green"}]}',
        "record 1: status: 'green' is not one of ['passed', 'failed', 'xfailed', 'xpassed', 'skipped', 'error', 'crashed', 'timeout', 'not_run', 'flaky']",
    ),
    "not UTF-8": (b'{"x": "\xff"}', "not UTF-8 text: invalid start byte at byte 7"),
}
COMMANDS = {
    "xfail sync": ["xfail", "sync"],
    "rerun --failed": ["rerun", "--failed", "--dry-run"],
    "rerun": ["rerun", "--dry-run"],  # whole targets: merging into an unreadable report would drop it
    "durations": ["durations"],
}


def write_report(ws: Path, content: str | bytes) -> Path:
    report = ws / "reports" / COMPAT_JSON
    report.parent.mkdir(exist_ok=True)
    report.write_bytes(content if isinstance(content, bytes) else content.encode())
    return report


@pytest.mark.parametrize("corruption", CORRUPT)
def test_each_kind_of_corrupt_report_is_one_report_error(ws, corruption):
    """Every kind, through the loader the commands share (in process: fast)..."""
    content, detail = CORRUPT[corruption]
    report = write_report(ws, content)
    with pytest.raises(ReportError) as refused:
        last_report.load(report)
    message = str(refused.value)
    assert message.startswith(f"{report}: not a compat.json (") and message.endswith("; run `make report` (or `bazel run //tools:matrix -- report`) again")
    assert detail in message


@pytest.mark.parametrize(("command", "corruption"), [(command, "truncated") for command in COMMANDS] + [("xfail sync", "record of wrong types")])
def test_a_corrupt_report_exits_2_in_one_line(ws, command, corruption):
    """...and every command that reads the report, as a real CLI process."""
    content, detail = CORRUPT[corruption]
    report = write_report(ws, content)
    before = snapshot(ws)
    line = one_line_error(cli(ws, *COMMANDS[command]))
    assert line.startswith(f"error: {report}: not a compat.json (") and detail in line
    assert snapshot(ws) == before


def test_report_with_a_corrupt_baseline_stops_before_running_bazel(ws, tmp_path):
    baseline = tmp_path / "old.json"
    baseline.write_text("{")
    env = fake_bazel(tmp_path, f"touch {tmp_path}/bazel-was-run\n")
    line = one_line_error(cli(ws, "report", "--baseline", str(baseline), env=env))
    assert line.startswith(f"error: {baseline}: not a compat.json (invalid JSON at line 1 column 2")
    assert not (tmp_path / "bazel-was-run").exists()


@pytest.mark.parametrize("edit", ["never generated", "xfail removed by hand", "test file added"])
@pytest.mark.parametrize("command", [("report",), ("rerun", "--suite", "t", "--variant", "base", "--device", "cpu")])
def test_report_and_rerun_refuse_stale_generated_files_before_running_bazel(ws, tmp_path, edit, command):
    """Bazel runs the cells as the generated BUILD files say: after an edit of matrix.yaml or a suite
    without `generate`, the report would read yesterday's cells as today's (an xfail entry removed by
    hand still xfails). One line naming the stale files and what to run, exit 2, nothing run or written."""
    if edit != "never generated":
        assert cli(ws, "generate").returncode == 0
        if edit == "xfail removed by hand":
            (ws / "matrix.yaml").write_text(MATRIX + "expectations:\n  t:\n    base:\n      xfail:\n        test_c.py::test_x: known\n")
            assert cli(ws, "generate").returncode == 0
            (ws / "matrix.yaml").write_text(MATRIX)
        else:
            (ws / "t" / "test_d.py").write_text("def test_y():\n    pass\n")
    before = snapshot(ws)
    env = fake_bazel(tmp_path, f"touch {tmp_path}/bazel-was-run\n")
    line = one_line_error(cli(ws, *command, env=env))
    stale = "BUILD.bazel, s/BUILD.bazel, t/BUILD.bazel, flaky_attempts.bazelrc" if edit == "never generated" else "t/BUILD.bazel"
    assert line == (f"error: {command[0]}: the generated BUILD files are stale (matrix.yaml or its suites changed since `generate`): {stale}; "
                    f"run `bazel run //tools:matrix -- generate` (make generate) first, then run it again")  # fmt: skip
    assert not (tmp_path / "bazel-was-run").exists()
    assert snapshot(ws) == before


@pytest.mark.parametrize("corruption", ["truncated", "unknown status", "not UTF-8"])
def test_report_over_a_corrupt_last_report_stops_before_running_bazel(ws, tmp_path, corruption):
    """`report` merges the last report in --out (a test its run lacks keeps its record): an unreadable
    one is one line, exit 2, nothing run or written; the hint is not to run `report` again (it would
    stop here again) but how to start afresh."""
    content, detail = CORRUPT[corruption]
    report = write_report(ws, content)
    before = snapshot(ws)
    env = fake_bazel(tmp_path, f"touch {tmp_path}/bazel-was-run\n")
    line = one_line_error(cli(ws, "report", env=env))
    assert line.startswith(f"error: {report}: not a compat.json (") and detail in line
    assert line.endswith("); `report` merges the last report into the new one: move it away (or give another --out) to start afresh")
    assert not (tmp_path / "bazel-was-run").exists()
    assert snapshot(ws) == before


# Hostile reports: what a hand-edited, truncated-and-patched or malicious compat.json can hold. Each
# must be refused up front, in one line naming what and where, by every command that reads one.
_HEAD = '{"schema_version": 1, "run": {"run_id": "r", "created": "c"}, "records": '
_OK = '{"suite": "s", "test": "test_a.py::test_x", "variant": "retrace", "device": "cpu", "status": "failed"'
HOSTILE = {
    "arrays nested 100000 deep": ("[" * 100_000 + "]" * 100_000, "nested deeper than a compat.json ever is"),
    "run.extra nested 5000 deep": (
        '{"schema_version": 1, "run": {"run_id": "r", "created": "c", "extra": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + '}, "records": []}',
        "nested deeper than a compat.json ever is",
    ),
    "NaN duration": (_HEAD + "[" + _OK + ', "duration_s": NaN}]}', "NaN is not a JSON number"),
    "1e999 duration": (_HEAD + "[" + _OK + ', "duration_s": 1e999}]}', "the number 1e999 is out of range"),
    "a 5000-digit attempts": (_HEAD + "[" + _OK + ', "attempts": ' + "9" * 5000 + "}]}", "Exceeds the limit (4300 digits) for integer string conversion"),
    "duration a string": (_HEAD + "[" + _OK + ', "duration_s": "fast"}]}', "record 1: duration_s: 'fast' is not of type 'number'"),
    "attempts a bool": (_HEAD + "[" + _OK + ', "attempts": true}]}', "record 1: attempts: True is not of type 'integer'"),
    "negative shard": (_HEAD + "[" + _OK + ', "shard": -1}]}', "record 1: shard: -1 is less than the minimum of 0"),
    "log_tail null": (_HEAD + "[" + _OK + ', "log_tail": null}]}', "record 1: log_tail: None is not of type 'string'"),
    "evidence calls a number": (
        _HEAD + "[" + _OK + ', "evidence": {"outputs": "o", "dir": "d", "calls": 5, "calls_not_kept": 0}}]}',
        "record 1: evidence",
    ),
    "evidence payload bytes a string": (
        _HEAD + "[" + _OK + ', "evidence": {"outputs": "o", "dir": "d", "calls_not_kept": 0, "calls": [{"entry": "e", "before": "", "before_cut": 0, '
        '"after": null, "after_cut": 0, "error": null, "check": null, "check_s": null, "payloads": [{"file": "f", "what": "w", "bytes": "abc", "kept": 0, "cut": ""}]}]}}]}',
        "record 1: evidence",
    ),
    "records an object": (_HEAD + "{}}", "records: {} is not of type 'array'"),
    "run a list": ('{"schema_version": 1, "run": [], "records": []}', "run: [] is not of type 'object'"),
}  # fmt: skip
READERS = {**COMMANDS, "report --baseline": None}


@pytest.mark.parametrize("command", READERS)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_a_hostile_report_is_refused_in_one_line_by_every_command(ws, tmp_path, command, hostile):
    """Exit 2, one line naming the file and what is wrong in it, nothing written, bazel never run
    (exit 70, "a bug", for the nesting and ill-typed cases before)."""
    content, detail = HOSTILE[hostile]
    report = write_report(ws, content)
    toolws.write_compat(tmp_path / "fine.json", records())
    env = fake_bazel(tmp_path, f"touch {tmp_path}/bazel-was-run\nexit 1\n")
    argv = READERS[command] or []
    if command == "report --baseline":  # the last report is fine; the baseline is hostile
        report = tmp_path / "old.json"
        report.write_text(content)
        write_report(ws, (tmp_path / "fine.json").read_text())
        argv = ["report", "--no-run", "--baseline", str(report)]
    before = snapshot(ws)
    line = one_line_error(cli(ws, *argv, env=env))
    assert line.startswith(f"error: {report}: not a compat.json (") and detail in line, line
    assert line.endswith("; run `make report` (or `bazel run //tools:matrix -- report`) again") and len(line) < 600, line
    assert snapshot(ws) == before and not (tmp_path / "bazel-was-run").exists()


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("[" * 100_000 + "]" * 100_000, "s/test_durations.json: nested deeper than a durations file ever is"),
        ('{"cells": {"base/cpu": {"test_a.py::test_x": ' + "9" * 5000 + "}}}",
         "s/test_durations.json: Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"),
    ],
    ids=["nested", "5000_digits"],
)  # fmt: skip
@pytest.mark.parametrize("command", [["generate"], ["list"], ["rerun", "--dry-run"]])
def test_a_hostile_durations_file_is_one_matrix_problem(ws, content, detail, command):
    """The shard plan's test_durations.json, read by every command that loads the matrix: exit 70 before."""
    (ws / "s" / "test_durations.json").write_text(content)
    before = snapshot(ws)
    out = cli(ws, *command)
    assert (out.returncode, "Traceback" in out.stderr) == (2, False), out.stderr
    first, summary = out.stderr.splitlines()
    assert first.startswith(f"matrix.yaml:12:5: {detail}") and first.endswith("; regenerate it with `bazel run //tools:matrix -- durations`"), first
    assert summary == "error: 1 problem(s) in matrix.yaml; fix them and run the command again"
    assert snapshot(ws) == before


def _special(kind: str, tmp_path: Path) -> str:
    """A path that is not a regular file: reading a FIFO waits for a writer forever, /dev/zero never ends."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        return str(tmp_path / "fifo")
    if kind == "directory":
        return str(tmp_path)
    return {"dev_zero": "/dev/zero", "empty": "", "missing": str(tmp_path / "old.json")}[kind]


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "empty", "missing"])
def test_a_baseline_that_is_not_a_file_is_one_line(ws, tmp_path, kind):
    """`--baseline ""` was silently no baseline; a FIFO, /dev/zero or a directory "no such file"."""
    path = _special(kind, tmp_path)
    env = fake_bazel(tmp_path, f"touch {tmp_path}/bazel-was-run\n")
    line = one_line_error(cli(ws, "report", "--no-run", "--baseline", path, env=env), 2)
    what = "no such file" if kind == "missing" else "not a regular file"
    assert line == f"error: --baseline {path!r}: {what}; give a compat.json"
    assert not (tmp_path / "bazel-was-run").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
@pytest.mark.parametrize("command", [["generate"], ["list"], ["xfail", "sync"], ["durations"]])
def test_a_matrix_file_that_is_not_a_file_is_refused_not_read(ws, tmp_path, kind, command):
    """Read whole before its size was checked: /dev/zero ran out of memory (exit 70), a FIFO hung."""
    path = _special(kind, tmp_path)
    toolws.write_compat(ws / "reports" / COMPAT_JSON, records())
    out = subprocess.run([sys.executable, str(toolws.CLI), "--workspace", str(ws), "--matrix", path, *command], capture_output=True, text=True, timeout=60)
    shown = os.path.relpath(path, ws)
    assert (out.returncode, out.stderr.splitlines()) == (2, [f"{shown}: cannot read: not a regular file", f"error: 1 problem(s) in {path}; fix them and run the command again"])


@pytest.mark.parametrize("flag", ["--failed", "--xpassed"])
def test_rerun_failed_without_a_report_exits_2(ws, flag):
    assert one_line_error(cli(ws, "rerun", flag)) == "error: --failed/--xpassed need a previous report; run `make report` first"


# --- bazel failing -------------------------------------------------------------------------------------


def test_bazel_info_failing_is_one_line(ws, tmp_path):
    env = fake_bazel(tmp_path, 'echo "ERROR: The \'info\' command is only supported from within a workspace" >&2\nexit 1\n')
    line = one_line_error(cli(ws, "report", "--no-run", env=env))
    assert line == (
        f"error: `bazel info bazel-testlogs` failed in {ws} (exit status 1): ERROR: The 'info' command is only supported from within a workspace"
    )


def test_rerun_whose_bazel_test_fails_to_build_merges_nothing(ws, tmp_path):
    toolws.write_compat(ws / "reports" / COMPAT_JSON, records())
    assert cli(ws, "generate").returncode == 0
    before = snapshot(ws)
    env = fake_bazel(tmp_path, 'echo "ERROR: build failed" >&2\nexit 1\n')
    out = cli(ws, "rerun", "--failed", env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        "ERROR: build failed",
        f"error: `bazel test` failed with exit status 1 (see its output above); nothing was merged into {ws}/reports/{COMPAT_JSON}",
    ]
    assert snapshot(ws) == before


def test_bazel_missing_is_one_line(ws):
    line = one_line_error(cli(ws, "report", "--no-run", env={"PATH": "/nonexistent", "BAZEL": ""}))
    assert line == "error: bazel is not on PATH; run `make setup` (installs Debian's bazel-bootstrap) or set BAZEL"


# --- interrupts, unusable paths, bugs ---------------------------------------------------------------


def test_ctrl_c_exits_130_in_one_line(ws, tmp_path):
    started = tmp_path / "started"
    assert cli(ws, "generate").returncode == 0
    env = fake_bazel(tmp_path, f"touch {started}\nexec sleep 30\n")  # exec: killed with the CLI's child, no stray pipe holder
    proc = subprocess.Popen(
        [sys.executable, str(toolws.CLI), "--workspace", str(ws), "rerun", "--suite", "t"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.communicate(timeout=30)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, "interrupted\n")


def test_an_unusable_path_names_the_path(ws):
    (ws / "afile").write_text("")
    line = one_line_error(cli(ws, "rerun", "--dry-run", "--out", "afile"))
    assert line == f"error: {ws}/afile: File exists"


def test_an_unexpected_exception_writes_the_traceback_to_a_file_and_exits_70(ws, tmp_path):
    """A bug (here: a real TypeError from a broken function in a real CLI process) is one line naming
    a file that holds the full traceback, never a traceback on the terminal."""
    crash_dir = tmp_path / "tmp"
    crash_dir.mkdir()
    code = "import sys; from tools.matrix import cli, listing; listing.table = None; sys.exit(cli.main(sys.argv[1:]))"
    root = str(toolws.CLI.parents[2])
    out = subprocess.run(
        [sys.executable, "-c", code, "--workspace", str(ws), "list"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(crash_dir), "PYTHONPATH": root},
    )  # fmt: skip
    assert (out.returncode, out.stdout) == (70, "")
    (crash,) = crash_dir.glob("torch-matrix-crash-*.txt")
    assert out.stderr == (
        f"error: internal error (TypeError: 'NoneType' object is not callable); this is a bug in the matrix tool; the traceback is in {crash}\n"
    )
    text = crash.read_text()
    assert "argv: " in text and "'list'" in text
    assert text.rstrip().endswith("TypeError: 'NoneType' object is not callable") and 'cli.py", line' in text


# --- granularity: file through the commands that speak of targets -------------------------------------


def test_durations_and_list_per_file_target(tmp_path):
    """`durations` re-plans and prints each file's target (shards per file), `list` counts them."""
    ws = toolws.write_workspace(tmp_path / "by_file", MATRIX.replace("    shard_seconds: 60\n", "    shard_seconds: 60\n    granularity: file\n"),
                                ("s/test_a.py", "s/test_b.py", "t/test_c.py"), "def test_x():\n    pass\n")  # fmt: skip
    assert cli(ws, "generate").returncode == 0

    def rec(test: str, seconds: float) -> Record:
        return Record(suite="s", test=test, variant="base", device="cpu", status=statuses.PASSED, duration_s=seconds, target=f"//s:s_base_cpu/{test[:6]}")

    toolws.write_compat(ws / "reports" / COMPAT_JSON, [rec("test_a.py::test_x", 80.0), rec("test_a.py::test_y", 20.0), rec("test_b.py::test_x", 30.0)])
    out = cli(ws, "durations")
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout.splitlines() == [
        "//s:s_base_cpu/test_a: 100 s recorded, 1 -> 2 shard(s)",
        "//s:s_base_cpu/test_b: 30 s recorded, 1 shard(s)",
        "//s:s_base_cuda/test_a: 100 s recorded, 1 -> 2 shard(s)",  # never ran on a GPU: planned from cpu
        "//s:s_base_cuda/test_b: 30 s recorded, 1 shard(s)",
        "//s:s_retrace_cpu/test_a: 0 s recorded, 1 shard(s)",
        "//s:s_retrace_cpu/test_b: 0 s recorded, 1 shard(s)",
        "//s:s_retrace_cuda/test_a: 0 s recorded, 1 shard(s)",
        "//s:s_retrace_cuda/test_b: 0 s recorded, 1 shard(s)",
        "wrote 1 file(s): s/BUILD.bazel",
    ]
    build = (ws / "s" / "BUILD.bazel").read_text()
    assert build.count('    shard_counts = {\n        "s_base_cpu/test_a": 2,\n    },\n') == 1
    assert build.count('    shard_counts = {\n        "s_base_cuda/test_a": 2,\n    },\n') == 1
    assert cli(ws, "generate", "--check").returncode == 0

    listed = cli(ws, "list", "--suite", "s", "--variant", "base")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert [line.split()[:4] for line in listed.stdout.splitlines()] == [
        ["cell", "targets", "shards", "xfail"],
        ["//s:s_base_cpu", "2", "3", "0"],
        ["//s:s_base_cuda", "2", "3", "0"],
        ["2", "cell(s)"],
    ]
