"""The warm start (runtime/warm_launcher.py, zygote.py, warm_start.py) against the cold path, with real
processes: a real launcher in a private state directory, real zygotes, cell_main as Bazel runs it.

- Same answers: a real slice of the CPU matrix (one export_tests file under every variant, a
  dynamo_tests and a package_tests file under each of theirs) gives the same records warm as cold.
- Nothing leaks: a warm child that changes every process-wide setting it can reach is followed by
  another child of the same zygote that sees none of it; random draws are each child's own.
- Never stale: an edit to the runtime gives a new zygote (a launcher of the old runtime refuses the
  new key: the cell starts cold, saying why), never the old one.
- Falls back: no launcher, a killed zygote, a dead launcher: the same records, cold or from a new zygote.
- The opt-out (MATRIX_WARM=off) starts cold with a launcher running; `report --cold` passes it to Bazel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from tools.matrix import config, warm
from tools.matrix.runtime import evidence, warm_start
from tools.matrix.tests.fixtures.cellrun import FIXTURES, REPO, Cell, CellRun, run_cell

LAUNCHER_START_S = 60.0


@pytest.fixture
def warm_dir():
    """A launcher's state directory (not made yet), in /tmp: a socket's path must be short (108
    bytes), which a path under Bazel's TEST_TMPDIR is not."""
    parent = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    yield parent / "w"
    shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def launcher(directory: Path, repo: Path = REPO):
    """A warm launcher serving `directory`, started from the runtime in `repo`; stopped (with its zygotes) at the end."""
    directory.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "MATRIX_", "PYTHONPATH"))}
    env.update(MATRIX_WARM_DIR=str(directory), PYTHONDONTWRITEBYTECODE="1")
    with open(directory.parent / f"{directory.name}-launcher.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.matrix.runtime.warm_launcher"], cwd=repo, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + LAUNCHER_START_S
        while warm.launcher_status(directory) is None:
            assert proc.poll() is None and time.monotonic() < deadline, f"the launcher did not start: {log.name}"
            time.sleep(0.1)
        yield proc
    finally:
        zygotes = [z["pid"] for z in (warm.launcher_status(directory) or {}).get("zygotes", [])]
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        assert all(gone(pid) for pid in zygotes)  # the launcher stops its zygotes as it ends


def gone(pid: int) -> bool:
    """Whether `pid` ended (a zombie has: its parent may not reap it here)."""
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def zygote_pids(directory: Path) -> dict[str, int]:
    return {z["key"]: z["pid"] for z in warm.launcher_status(directory)["zygotes"]}


def records(run: CellRun) -> dict[str, tuple]:
    """What must be equal warm and cold: per test, its status, message, check, and whether evidence was kept."""
    kept = {p.name for p in (run.tmp / "out" / evidence.EVIDENCE_DIR).glob("*")}
    result = {}
    for nodeid, test in run.tests.items():
        m = test["metadata"]["matrix"]
        result[nodeid] = (m["status"], m["message"], m.get("transform_check"), evidence.test_key(nodeid) in kept)
    return result


def starts(run: CellRun) -> list[str]:
    assert run.report is not None, run.explain()
    return run.report["matrix"]["starts"]


# -- same answers: a real slice of the CPU matrix ---------------------------------------------------


def real_slice() -> list:
    """One export_tests file under each of its variants, and one file of each other suite under each of theirs."""
    matrix = config.load(REPO / "matrix.yaml", REPO)
    wanted = {"export_tests": "test_dtypes.py", "dynamo_tests": "test_mutation.py", "package_tests": "test_loading.py"}
    chosen = [t for t in matrix.targets() if t.cell.device.name == "cpu" and wanted.get(t.cell.suite.name) in t.spec().test_files]
    assert {t.cell.suite.name for t in chosen} == set(wanted), [t.label for t in chosen]
    return chosen


def real_cell(target, warm_dir: Path | None) -> Cell:
    spec = json.loads(target.spec().to_json())
    spec["test_files"] = [f for f in spec["test_files"] if f.endswith(("test_dtypes.py", "test_mutation.py", "test_loading.py"))]
    return Cell(suite_dir="", test_files=(), spec=json.dumps(spec), env=dict(target.cell.device.env), warm_dir=str(warm_dir or ""))


def test_a_real_slice_of_the_cpu_matrix_has_the_same_records_warm_as_cold(tmp_path, warm_dir):
    targets = real_slice()
    cold = {t.label: run_cell(real_cell(t, None), REPO, tmp_path / "cold" / t.name) for t in targets}
    with launcher(warm_dir):
        warm_runs = {t.label: run_cell(real_cell(t, warm_dir), REPO, tmp_path / "warm" / t.name) for t in targets}
    for label in cold:
        assert starts(cold[label]) == ["cold"], cold[label].explain()
        assert starts(warm_runs[label]) == ["warm"], warm_runs[label].explain()
        assert records(warm_runs[label]) == records(cold[label]), f"{label}\n{warm_runs[label].explain()}"
        assert records(cold[label]), label  # the slice ran tests
        assert warm_runs[label].returncode == cold[label].returncode


# -- nothing leaks from one warm child (or the zygote) into the next --------------------------------


def cold_threads() -> int:
    """torch's intra-op threads in a fresh process (what a warm child must have too)."""
    return int(subprocess.check_output([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], text=True))


def leak_cell(name: str, warm_dir: Path | None, draws: Path, threads: int) -> Cell:
    draws.mkdir(exist_ok=True)
    env = {"WARM_DRAWS": str(draws), "WARM_EXPECTED_THREADS": str(threads)}
    return Cell(suite_dir="warm", test_files=(name,), env=env, warm_dir=str(warm_dir or ""))


def test_nothing_a_warm_child_did_is_seen_by_the_next(tmp_path, warm_dir):
    cwd = tmp_path / "suites"
    shutil.copytree(FIXTURES / "warm", cwd / "warm")
    threads = cold_threads()
    cold = run_cell(leak_cell("test_leak_b.py", None, tmp_path / "cold_draws", threads), cwd, tmp_path / "cold")
    assert set(cold.statuses.values()) == {"passed"}, cold.explain()
    with launcher(warm_dir):
        runs = [
            run_cell(leak_cell(name, warm_dir, tmp_path / "draws", threads), cwd, tmp_path / f"warm{i}")
            for i, name in enumerate(("test_leak_a.py", "test_leak_b.py", "test_leak_b.py"))
        ]
        assert len(zygote_pids(warm_dir)) == 1  # all three forked by one zygote
    for run in runs:
        assert starts(run) == ["warm"], run.explain()
        assert set(run.statuses.values()) == {"passed"}, run.explain()
    assert records(runs[1]) == records(cold)
    first, second = (json.loads(p.read_text()) for p in (tmp_path / "draws").iterdir())  # the two test_leak_b.py runs
    for generator in ("torch", "numpy", "random"):  # each child draws its own numbers, as a fresh process does
        assert first[generator] != second[generator], (generator, first, second)


# -- never stale -------------------------------------------------------------------------------------


def copy_of_repo(root: Path) -> Path:
    shutil.copytree(REPO / "tools", root / "tools", ignore=shutil.ignore_patterns("__pycache__", "tests"))
    shutil.copytree(FIXTURES / "warm", root / "warm")
    return root


def test_an_edit_to_the_runtime_never_reaches_an_old_zygote(tmp_path, warm_dir):
    repo = copy_of_repo(tmp_path / "repo")
    threads = cold_threads()

    cell = leak_cell("test_leak_b.py", warm_dir, tmp_path / "draws", threads)

    with launcher(warm_dir, repo):
        before = run_cell(cell, repo, tmp_path / "before", repo)
        assert starts(before) == ["warm"], before.explain()
        old = zygote_pids(warm_dir)
        verdict = repo / "tools" / "matrix" / "runtime" / "verdict.py"
        verdict.write_text(verdict.read_text() + "\n# an edit to the runtime\n")
        edited = run_cell(cell, repo, tmp_path / "edited", repo)
        # The launcher was started from the old runtime: it refuses the new key, the cell starts cold.
        assert starts(edited) == ["cold: the warm launcher was started from another runtime than this target's "
                                  "(`bazel run //tools:matrix -- warm start` restarts it)"], edited.explain()  # fmt: skip
        assert zygote_pids(warm_dir) == old
    with launcher(warm_dir, repo):  # a launcher of the edited runtime (what `warm start` / `report` do)
        after = run_cell(cell, repo, tmp_path / "after", repo)
        assert starts(after) == ["warm"], after.explain()
        new = zygote_pids(warm_dir)
    assert set(new).isdisjoint(old) and set(new.values()).isdisjoint(old.values())
    assert records(before) == records(edited) == records(after)


def test_the_same_environment_through_a_link_is_served_warm(tmp_path, warm_dir):
    """A Bazel output base whose external/pyenv links to another's venv (the drills', the bench's):
    the same interpreter and files, another path. It was refused as another environment (cold)."""
    cwd = tmp_path / "suites"
    shutil.copytree(FIXTURES / "warm", cwd / "warm")
    (tmp_path / "pyenv").mkdir()
    (tmp_path / "pyenv" / "venv").symlink_to(os.path.realpath(sys.prefix), target_is_directory=True)
    linked = str(tmp_path / "pyenv" / "venv" / "bin" / Path(sys.executable).name)
    assert os.path.realpath(linked) == os.path.realpath(sys.executable) and linked != sys.executable
    cell = leak_cell("test_leak_b.py", warm_dir, tmp_path / "draws", cold_threads())
    with launcher(warm_dir):  # started by sys.executable
        run = run_cell(cell, cwd, tmp_path / "linked", python=linked)
    assert starts(run) == ["warm"], run.explain()
    assert set(run.statuses.values()) == {"passed"}, run.explain()


# -- fallback and opt-out ----------------------------------------------------------------------------


def test_a_missing_or_killed_warm_process_falls_back_with_the_same_records(tmp_path, warm_dir):
    cwd = tmp_path / "suites"
    shutil.copytree(FIXTURES / "warm", cwd / "warm")
    threads = cold_threads()

    cell = leak_cell("test_leak_b.py", warm_dir, tmp_path / "draws", threads)

    w = warm_dir
    w.mkdir(mode=0o700)
    nothing = run_cell(cell, cwd, tmp_path / "none")  # the directory exists, no launcher listens
    assert starts(nothing) == [f"cold: no warm launcher is running ({w / warm_start.LAUNCHER_SOCKET})"], nothing.explain()
    with launcher(w) as proc:
        first = run_cell(cell, cwd, tmp_path / "first")
        (pid,) = zygote_pids(w).values()
        os.kill(pid, signal.SIGKILL)
        again = run_cell(cell, cwd, tmp_path / "again")  # a new zygote
        assert starts(again) == ["warm"] and list(zygote_pids(w).values()) != [pid], again.explain()
        off = run_cell(replace(cell, env={**cell.env, "MATRIX_WARM": "off"}), cwd, tmp_path / "off")
        assert starts(off) == ["cold"], off.explain()  # asked for: no note
        (pid,) = zygote_pids(w).values()
        proc.kill()  # the launcher dies without cleaning up: its socket stays, nobody listens
        proc.wait()
        deadline = time.monotonic() + 30
        while not gone(pid) and time.monotonic() < deadline:  # its zygote ends too
            time.sleep(0.1)
        assert gone(pid), "the zygote outlived its launcher"
        dead = run_cell(cell, cwd, tmp_path / "dead")
    assert starts(first) == ["warm"], first.explain()
    assert starts(dead) == [f"cold: no warm launcher is running ({w / warm_start.LAUNCHER_SOCKET})"], dead.explain()
    for run in (nothing, again, off, dead):
        assert records(run) == records(first), run.explain()


@pytest.mark.parametrize(("cold", "environ", "expected"), [
    (True, {}, ["//x:y", warm.COLD_ARG]),
    (False, {"MATRIX_WARM": "off"}, ["//x:y", warm.COLD_ARG]),
    (False, {"MATRIX_WARM": "0"}, ["//x:y", warm.COLD_ARG]),
])  # fmt: skip
def test_the_opt_out_tells_every_test_to_start_cold(monkeypatch, capsys, cold, environ, expected):
    monkeypatch.delenv("MATRIX_WARM", raising=False)
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    assert warm.prepare(["//x:y"], cold) == expected
    assert "every test process starts cold" in capsys.readouterr().out
