"""The history drill (issue #24's "done when"): three real runs of a matrix through real Bazel and the real
`report`, with a planted regression, a planted flaky test (it fails on its first attempt only) and a
planted fix, appended to an SQLite store and to a real PostgreSQL; the history must name the regression's
first bad run and commit, mark the flaky test `flaky` with its rate, and show the fix, in both.

    bazel run //tools/matrix/drill:history_drill     # after `make setup-remote` (Debian's postgresql)

In a scratch workspace (tools/scratch_workspace.py: its own output base, this build's @pyenv) made a git
repository, one suite of four tests runs as one cell:
- run 1 (commit 1): test_stable, test_regress pass; test_fixed fails; test_flaky fails, then passes on
  Bazel's second attempt (the suite's `flaky_attempts: 2` in matrix.yaml; its marker file is removed before each run);
- run 2 (commit 2): test_regress now fails (the planted regression);
- run 3 (commit 3): test_fixed now passes (the planted fix).
Each `report` appends to reports/history.sqlite; after it, `report --no-run --history postgresql://...`
collects the same testlogs and BEP into the PostgreSQL store. Then `history failing-since`, `flaky` and
`timeline` are read from each store and checked line by line.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import discard, drill_workspace, run_step

STEP_TIMEOUT_S = 900
MARKER_DIR = Path("/tmp/matrix-history-drill")  # where the flaky test leaves its marker (writable in the sandbox)
MATRIX = """\
# The history drill's matrix (written by tools/matrix/drill/history_drill.py).
devices:
  cpu: {}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
suites:
  hist:
    directory: hist
    variants: [base]
    devices: [cpu]
    flaky_attempts: 2
"""
TESTS = """\
import os

MARKER = {marker!r}


def test_stable():
    pass


def test_regress():
    assert {regress_ok}, "planted regression"


def test_fixed():
    assert {fixed_ok}, "not fixed yet"


def test_flaky():
    if not os.path.exists(MARKER):  # the first attempt of each run
        open(MARKER, "w").close()
        raise AssertionError("fails on its first attempt only")
"""


def load(path: Path) -> types.ModuleType:
    """A module of the source tree by its path (this binary's runfiles hold no tests' fixtures)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fail(message: str) -> NoReturn:
    print(f"\nhistory_drill: FAIL: {message}", flush=True)
    sys.exit(1)


def run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    rc, out = run_step(argv, cwd, env, log, STEP_TIMEOUT_S)
    if "Traceback (most recent call last)" in out:
        fail(f"a traceback reached the user:\n{out[-4000:]}")
    return rc, out


def git(ws: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "drill", "GIT_AUTHOR_EMAIL": "drill@localhost", "GIT_COMMITTER_NAME": "drill",
           "GIT_COMMITTER_EMAIL": "drill@localhost"}  # fmt: skip
    return subprocess.run(["git", "-C", str(ws), *args], check=True, capture_output=True, text=True, env=env).stdout.strip()


def lines_with(out: str, text: str) -> list[str]:
    return [line for line in out.splitlines() if text in line]


def check_store(cli: list[str], ws: Path, env: dict[str, str], root: Path, store: list[str], commits: list[str], name: str) -> list[str]:
    """What is wrong with the history in `store` (--history arguments) after the three runs."""
    wrong = []
    rc, out = run([*cli, "history", "failing-since", "--out", "reports", *store], ws, env, root / f"{name}-failing-since.log")
    print(out)
    regress = [line.split() for line in lines_with(out, "test_regress")]
    want = ["hist", "test_one.py::test_regress", "[base/cpu]", "failed", "#2"]
    if rc != 0 or len(regress) != 1 or regress[0][:5] != want or regress[0][6] != commits[1][:12] or regress[0][7] != "#1" or regress[0][9] != commits[0][:12]:
        wrong.append(f"{name}: failing-since should name run #2 (commit {commits[1][:12]}) as the first bad run and #1 ({commits[0][:12]}) "
                     f"as the last good one for test_regress: {regress}")  # fmt: skip
    if lines_with(out, "test_fixed") or lines_with(out, "test_flaky") or out.splitlines()[-1:] != ["1 failing record(s)"]:
        wrong.append(f"{name}: failing-since should list test_regress alone:\n{out}")
    rc, out = run([*cli, "history", "flaky", "--out", "reports", *store], ws, env, root / f"{name}-flaky.log")
    print(out)
    flaky = [line.split() for line in lines_with(out, "test_flaky")]
    if rc != 0 or len(flaky) != 1 or flaky[0][3:9] != ["100%", "of", "3", "#1", "#2", "#3"]:
        wrong.append(f"{name}: flaky should give test_flaky a rate of 100% of 3 (flaky in runs #1, #2, #3): {flaky}")
    rc, out = run([*cli, "history", "timeline", "test_fixed", "--out", "reports", *store], ws, env, root / f"{name}-timeline.log")
    print(out)
    if rc != 0 or out.splitlines()[:1] != ["hist test_one.py::test_fixed [base/cpu]: ✗ ✗ ✓"]:
        wrong.append(f"{name}: the timeline of test_fixed should show the fix (failed, failed, passed):\n{out}")
    return wrong


def main() -> int:
    started = time.monotonic()
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or fail("run me with `bazel run //tools/matrix/drill:history_drill`"))
    postgres = load(source / "tools" / "matrix" / "tests" / "fixtures" / "postgres.py")  # the PostgreSQL the tests start

    if postgres.initdb() is None:
        fail(f"no PostgreSQL installed; {postgres.SETUP_HINT}")
    MARKER_DIR.mkdir(exist_ok=True)
    marker = MARKER_DIR / "flaky-marker"
    suite_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"hist-drill-{os.getpid()}" / "hist"
    suite_dir.mkdir(parents=True)
    (suite_dir / "test_one.py").write_text("")
    root, ws, env, cli = drill_workspace(source, "matrix-history-drill-", MATRIX, [suite_dir])
    with open(ws / ".bazelrc", "a") as rc_file:  # the flaky test's marker lives outside the sandbox
        rc_file.write(f"test --sandbox_writable_path={MARKER_DIR}\n")
    (ws / ".gitignore").write_text("/reports/\n/bazel-*\n__pycache__/\n")  # as the project ignores them: a clean tree
    try:
        with postgres.postgres() as url:
            git(ws, "init", "-q")
            rc, out = run([*cli, "generate"], ws, env, root / "generate.log")
            if rc != 0:
                fail(f"generate failed:\n{out[-3000:]}")
            commits, wrong = [], []
            for i, (regress_ok, fixed_ok) in enumerate([(True, False), (False, False), (False, True)], 1):
                (ws / "hist" / "test_one.py").write_text(TESTS.format(marker=str(marker), regress_ok=regress_ok, fixed_ok=fixed_ok))
                git(ws, "add", "-A")
                git(ws, "commit", "-q", "-m", f"run {i}")
                commits.append(git(ws, "rev-parse", "HEAD"))
                marker.unlink(missing_ok=True)
                rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / f"report{i}.log")
                if rc != 1 or not lines_with(out, "history: 4 record(s) of run"):
                    fail(f"run {i}: report should exit 1 (a failing test) and store 4 records, got {rc}:\n{out[-3000:]}")
                if i == 2 and not lines_with(out, "history: 1 new unexpected result(s) since each test's last verdict, 0 fixed: test_one.py::test_regress"):
                    wrong.append(f"run 2 should say test_regress is new:\n{out[-2000:]}")
                if i == 3 and not lines_with(out, "history: 0 new unexpected result(s) since each test's last verdict, 1 fixed"):
                    wrong.append(f"run 3 should say one test was fixed:\n{out[-2000:]}")
                rc, out = run([*cli, "report", "--no-run", "--out", "reports", "--history", url], ws, env, root / f"report{i}-pg.log")
                if rc != 1 or not lines_with(out, "history: 4 record(s) of run"):
                    fail(f"run {i}: report --no-run into PostgreSQL should store the same 4 records, got {rc}:\n{out[-3000:]}")
            wrong += check_store(cli, ws, env, root, [], commits, "sqlite")
            wrong += check_store(cli, ws, env, root, ["--history", url], commits, "postgresql")
        if wrong:
            fail("\n".join(wrong))
        print(f"\nhistory_drill: PASS in {time.monotonic() - started:.0f}s: 3 real runs; in SQLite and in PostgreSQL the regression's "
              "first bad run and commit, the flaky test's rate and the fix")  # fmt: skip
        return 0
    finally:
        marker.unlink(missing_ok=True)
        discard(root, ws, env)


if __name__ == "__main__":
    sys.exit(main())
