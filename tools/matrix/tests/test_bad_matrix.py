"""A corpus of hostile matrix.yaml files (fixtures/bad_matrix/NAME.yaml, the exact expected
problems in NAME.expected), each run through the real CLI's `generate`: exit 2, one
`matrix.yaml:LINE:COL: ...` line per problem, no traceback, nothing written anywhere, within a few
seconds and bounded memory. Cases that need more than a matrix.yaml (odd file names, symlinks, a
variant module) get it from SETUP."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.matrix.tests.fixtures.toolws import CLI

CORPUS = Path(__file__).absolute().parent / "fixtures" / "bad_matrix"
CASES = sorted(p.stem for p in CORPUS.glob("*.yaml"))
MEMORY_LIMIT = 1536 << 20  # address space; the CLI imports no torch
MAX_RSS_MB = 500
MAX_CPU_SECONDS = 5.0  # CPU time: the machine is shared, wall time depends on the load
KILL_AFTER_S = 60  # a hang is killed (and fails the case) rather than hanging the test
TEST_FILE = "def test_x():\n    pass\n"
PKG_MOD = "from tools.matrix.variants import Variant\n\n\nclass Other(Variant):\n    entry_points = ()\n\n\nclass NotAVariant(dict):\n    pass\n"


def _symlink(link: Path, to: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(to)


def _suite_dir(name: str) -> Callable[[Path, Path], None]:
    def setup(ws: Path, outside: Path) -> None:
        (ws / name).mkdir(parents=True)
        (ws / name / "test_a.py").write_text(TEST_FILE)

    return setup


def _extra_test_file(name: str) -> Callable[[Path, Path], None]:
    return lambda ws, outside: (ws / "s" / name).write_text(TEST_FILE)


def _expectations_file(text: str) -> Callable[[Path, Path], None]:
    return lambda ws, outside: (ws / "s" / "expectations.yaml").write_text(text)


def _outside_suite(ws: Path, outside: Path) -> None:
    (outside / "test_a.py").write_text(TEST_FILE)


SETUP: dict[str, Callable[[Path, Path], None]] = {
    "directory_with_colon": _suite_dir("a:b"),
    "directory_with_space": _suite_dir("my suite"),
    "directory_with_dollar": _suite_dir("s$x"),
    "bool_key_yes_suite": _suite_dir("yes"),
    "file_name_with_colon": _extra_test_file("test_a:b.py"),
    "file_name_with_space": _extra_test_file("test_a b.py"),
    "file_name_with_newline": _extra_test_file("test_a\nb.py"),
    "directory_symlink_out": lambda ws, outside: (_outside_suite(ws, outside), _symlink(ws / "out", outside)),
    "directory_through_symlink": lambda ws, outside: (_outside_suite(ws, outside), _symlink(ws / "link" / "s", outside)),
    "build_file_symlink_out": lambda ws, outside: ((outside / "BUILD.bazel").write_text("# not ours\n"), _symlink(ws / "s" / "BUILD.bazel", outside / "BUILD.bazel")),
    "glob_symlink_loop": lambda ws, outside: _symlink(ws / "s" / "sub" / "loop", ws / "s"),
    "glob_two_symlink_loops": lambda ws, outside: (_symlink(ws / "s" / "a", ws / "s"), _symlink(ws / "s" / "b", ws / "s")),
    "impl_syntax_error": lambda ws, outside: (ws / "pkg" / "broken.py").write_text("class Thing(Variant:\n"),
    "file_in_a_subpackage": lambda ws, outside: (_suite_dir("s/sub")(ws, outside), (ws / "s" / "sub" / "BUILD.bazel").write_text("")),
    "nested_suite_directories": _suite_dir("s/t"),
    # Any path the suite's package glob reaches, not only tests (bazel_names.py): each would stop Bazel.
    "stray_file_with_space": lambda ws, outside: (ws / "s" / "notes draft.txt").write_text("x"),
    "stray_file_with_backslash": lambda ws, outside: (ws / "s" / "data\\x.bin").write_text("x"),
    "stray_directory_with_space": lambda ws, outside: (_suite_dir("s/my fixtures")(ws, outside)),
    "symlink_loop_without_double_star": lambda ws, outside: _symlink(ws / "s" / "fixtures" / "up", ws / "s"),
    "stray_file_with_bidi_control": lambda ws, outside: (ws / "s" / "readme\u202e.txt").write_text("x"),
    "stray_file_with_tab_in_subdirectory": lambda ws, outside: (_suite_dir("s/sub")(ws, outside), (ws / "s" / "sub" / "a\tb.json").write_text("{}")),
    # Test files also name targets (granularity: file) and are selected by --test_filter.
    "test_file_with_quote": _extra_test_file("test_it's.py"),
    "test_file_with_comma": _extra_test_file("test_a,b.py"),
    "test_file_with_bracket": _extra_test_file("test_[1].py"),
    "test_file_non_ascii": _extra_test_file("test_caf\u00e9.py"),
    "test_file_name_too_long": _extra_test_file("test_" + "x" * 240 + ".py"),
    # A suite's expectations file: its problems at its own line and column (config/expectations_file.py).
    "expectations_file_bad_yaml": _expectations_file("base:\n  xfail:\n\ttest_a.py::test_x: broken\n"),
    "expectations_file_unknown_variant": _expectations_file("base:\n  xfail:\n    test_a.py::test_x: broken\nretrace:\n  xfail:\n    test_a.py::test_y: broken\n"),
    "expectations_file_unknown_test_file": _expectations_file("base:\n  xfail:\n    test_a.py::test_x: broken\n    test_b.py::test_y: broken\n"),
    "expectations_file_empty_reason": _expectations_file("base:\n  skip:\n    test_a.py::test_x: ''\n  xfail:\n    test_a.py::test_x: broken\n"),
    "expectations_file_alias": _expectations_file("base:\n  xfail: &x\n    test_a.py::test_x: broken\n  skip: *x\n"),
    "expectations_file_in_subpackage": lambda ws, outside: (_suite_dir("s/sub")(ws, outside), (ws / "s" / "sub" / "BUILD.bazel").write_text(""),
                                                            (ws / "s" / "sub" / "expectations.yaml").write_text("")),  # fmt: skip
    "expectations_file_and_matrix_yaml": _expectations_file("base:\n  xfail:\n    test_a.py::test_y: broken\n"),
    "expectations_file_not_yaml": lambda ws, outside: (ws / "s" / "expectations.json").write_text("{}"),
    # Thousands of entries in matrix.yaml: one target's spec over the 128 KiB of one environment string.
    "spec_over_the_environment_limit": lambda ws, outside: (ws / "matrix.yaml").write_text(
        (ws / "matrix.yaml").read_text() + "expectations:\n  s:\n    base:\n      xfail:\n"
        + "".join(f"        test_a.py::test_x[sample-{i:04d}]: 'AssertionError: the exported program computes something else ({i})'\n" for i in range(1500))
    ),
}


@dataclass
class Outcome:
    returncode: int
    stderr: str
    stdout: str
    seconds: float
    cpu_seconds: float
    max_rss_mb: float
    changed: list[str]
    outside: str


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (links not followed) -> (size, mtime_ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_case(name: str, root: Path) -> Outcome:
    """Build the case's workspace under `root`, run `generate` on it, see what changed."""
    ws, outside = root / "ws", root / "outside"
    for d in (ws / "s", ws / "pkg", outside):
        d.mkdir(parents=True)
    (ws / "s" / "test_a.py").write_text(TEST_FILE)
    (ws / "pkg" / "__init__.py").write_text("")
    (ws / "pkg" / "mod.py").write_text(PKG_MOD)
    (ws / "matrix.yaml").write_bytes((CORPUS / f"{name}.yaml").read_bytes())
    SETUP.get(name, lambda ws, outside: None)(ws, outside)  # may extend matrix.yaml
    before = _snapshot(root)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        child = subprocess.Popen([sys.executable, str(CLI), "--workspace", str(ws), "generate"], stdout=out, stderr=err, preexec_fn=_limit_memory)
        killer = threading.Timer(KILL_AFTER_S, child.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)  # unlike Popen.wait, it reports the child's peak memory
        finally:
            killer.cancel()
            child.returncode = -1  # reaped by wait4: keep Popen from waiting again
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    after = _snapshot(root)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    cpu = usage.ru_utime + usage.ru_stime
    return Outcome(os.waitstatus_to_exitcode(status), stderr, stdout, seconds, cpu, usage.ru_maxrss / 1024, changed, str(outside.resolve()))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """Every case at once, a few in parallel (each is a fresh interpreter)."""
    root = tmp_path_factory.mktemp("bad_matrix")
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(CASES, pool.map(lambda name: run_case(name, root / name), CASES)))


def test_the_corpus_is_large_and_every_case_has_its_expected_problems():
    assert len(CASES) >= 40
    assert sorted(p.stem for p in CORPUS.glob("*.expected")) == CASES
    assert set(SETUP) <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_generate_refuses_with_one_located_line_per_problem(outcomes, name):
    outcome = outcomes[name]
    # {outside}: the directory outside the workspace that a symlink of the case leads to.
    expected = (CORPUS / f"{name}.expected").read_text().replace("{outside}", outcome.outside).splitlines()
    assert "Traceback" not in outcome.stderr
    assert outcome.returncode == 2, outcome.stderr
    assert outcome.stderr.splitlines() == [*expected, f"error: {len(expected)} problem(s) in matrix.yaml; fix them and run the command again"]
    assert outcome.stdout == ""
    assert outcome.changed == []  # nothing written, in the workspace or outside it
    assert outcome.cpu_seconds < MAX_CPU_SECONDS
    assert outcome.max_rss_mb < MAX_RSS_MB


def test_the_valid_matrix_the_cases_start_from_generates(tmp_path):
    """The base every case departs from is valid: each case fails for its own reason."""
    text = (CORPUS / "file_name_with_colon.yaml").read_text()  # the plain valid matrix, its setup aside
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "test_a.py").write_text(TEST_FILE)
    (tmp_path / "matrix.yaml").write_text(text)
    out = subprocess.run([sys.executable, str(CLI), "--workspace", str(tmp_path), "generate"], capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, "")
    assert (tmp_path / "s" / "BUILD.bazel").is_file()
