"""The plain-pytest side of the comparison: a matrix target run as the one `python -m pytest` child that
cell_main would start for it, with its environment and journal but no Bazel; and the start-up probes
(interpreter, `import torch`, first torch.export) that say where a process's time goes."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from matrix_bench.summary import log

SIZE_TIMEOUT_S = {"small": 60, "medium": 300, "large": 900, "enormous": 3600}  # Bazel's defaults
STARTUP_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
class M(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) * 2 + 1
torch.export.export(M(), (torch.randn(4, 4),))
t2 = time.perf_counter()
torch.export.export(M(), (torch.randn(4, 4),))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_export_s": t2 - t1, "second_export_s": t3 - t2}))
"""


def whole_cell(cell):
    """The cell as one target running all its files (what plain pytest runs), whatever its granularity."""
    from tools.matrix.config import Target

    return Target(cell, cell.target_name, tuple(f for t in cell.targets for f in t.test_files))


@dataclass
class PlainProcess:
    """One matrix target (a whole cell, or one file of it) run by one plain pytest process."""

    label: str
    journal: Any  # tools.matrix.runtime.journal.Journal: the descriptor the child appends to
    wall_s: float = 0.0
    rc: int | None = None
    tests: list[dict[str, Any]] = field(default_factory=list)  # the journal's `result` events
    collect_errors: int = 0
    started: bool = False  # the plugin journaled its `session` event
    timed_out: bool = False

    @property
    def died(self) -> bool:
        """Ended other than by pytest finishing (0 passed, 1 failures, 5 nothing collected): a crash,
        the plugin's per-test watchdog, a fatal plugin error, or the benchmark's own limit."""
        return self.timed_out or self.rc not in (0, 1, 5) or not self.started


def plain_env(target, tmp: Path) -> dict[str, str]:
    """What defs.bzl's matrix_cell gives the py_test of a config.Target (its spec, the device's env), plus
    Bazel's test protocol variables, for all its files in one process: no TEST_SHARD_INDEX / TEST_TOTAL_SHARDS."""
    from tools.matrix.runtime.cell_config import SPEC_ENV

    scrub = (
        "TEST_",
        "TESTBRIDGE_",
        "XML_OUTPUT_FILE",
        "MATRIX_",
        "PYTEST_",
        "RUNFILES_",
        "BUILD_",
        "PYTHON",
        "JAVA_RUNFILES",
        "BENCH_MATRIX",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
    (tmp / "tmpdir").mkdir(parents=True, exist_ok=True)
    env.update(dict(target.cell.device.env))
    env.update(
        TEST_TMPDIR=str(tmp / "tmpdir"), HOME=str(tmp / "tmpdir"),
        TEST_UNDECLARED_OUTPUTS_DIR=str(tmp / "out"), XML_OUTPUT_FILE=str(tmp / "test.xml"),
        TEST_PREMATURE_EXIT_FILE=str(tmp / "premature_exit"), TEST_SHARD_STATUS_FILE=str(tmp / "shard_status"),
        PYTHONDONTWRITEBYTECODE="1",
    )  # fmt: skip
    env[SPEC_ENV] = target.spec().to_json()
    return env


def plain_command(target, python: str, workspace: Path, tmp: Path) -> tuple[list[str], dict[str, str], Any]:
    """The pytest child cell_main would start for all of a target's files: (argv, env, journal). The command is
    cell_main.pytest_command with `python` as the interpreter (cell_main's sys.executable); the
    environment is cell_main.child_env as it would be computed inside the test (the test's
    environment, cwd = the workspace); the journal is a journal.Journal whose descriptor the child
    must inherit (pass_fds), as under cell_main."""
    from tools.matrix.runtime import cell_config, cell_main, journal

    env = plain_env(target, tmp)
    events = journal.Journal(str(tmp))
    config = replace(cell_config.CellConfig.from_bazel(env), journal=str(events.fd))
    scratch = tempfile.mkdtemp(prefix="cell-", dir=env["TEST_TMPDIR"])
    argv = cell_main.pytest_command(config)
    argv[0] = python
    return argv, cell_main.child_env(config, scratch, environ=env, cwd=str(workspace)), events


def read_journal(proc: PlainProcess) -> None:
    for event in proc.journal.read_new(lambda message: print(f"  {proc.label}: {message}")):
        if event["event"] == "session":
            proc.started = True
        elif event["event"] == "result":
            proc.tests.append(event["test"])
        elif event["event"] == "collect_error":
            proc.collect_errors += 1
    proc.journal.close()


def run_plain(targets: list, workspace: Path, python: str, jobs: int, root: Path, deadline: float) -> tuple[float, list[PlainProcess]]:
    """Every config.Target (whole_cell(cell) for a cell) as one plain pytest process with the matrix
    plugin, `jobs` at a time in the order of `targets`, from the workspace root (what Bazel's runfiles
    root looks like to the test). Returns (wall, processes)."""
    work = []
    for target in targets:
        tmp = root / target.name
        tmp.mkdir(parents=True, exist_ok=True)
        argv, env, journal = plain_command(target, python, workspace, tmp)
        # Bazel gives each shard its size's timeout; the whole target gets as many, doubled.
        limit_s = SIZE_TIMEOUT_S.get(target.cell.suite.size, 900) * target.shard_count * 2
        work.append((argv, env, tmp, limit_s, PlainProcess(target.label, journal)))

    def one(argv: list[str], env: dict[str, str], tmp: Path, limit_s: float, proc: PlainProcess) -> PlainProcess:
        limit = min(limit_s, max(deadline - time.time(), 1))
        started = time.monotonic()
        with open(tmp / "log.txt", "w") as out:
            p = subprocess.Popen(argv, cwd=workspace, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(proc.journal.fd,))
            try:
                proc.rc = p.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)  # its own session: pytest and anything it started
                proc.rc = p.wait()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                raise
        proc.wall_s = time.monotonic() - started
        read_journal(proc)
        log(
            f"    | {proc.label}: exit {proc.rc}, {len(proc.tests)} tests, {proc.wall_s:.1f}s"
            + (f", {proc.collect_errors} collection errors" if proc.collect_errors else "")
            + (" (TIMED OUT)" if proc.timed_out else " (DIED: see its log.txt)" if proc.died else "")
        )
        return proc

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, *w) for w in work]  # FIFO: the processes start in the order of `cells`
        try:
            done = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return time.monotonic() - started, done


def startup_probe(python: str, repeat: int, env: dict[str, str]) -> dict[str, float]:
    """Mean seconds: interpreter start, `python -c "import torch"` (whole process), and inside one
    process import torch / first torch.export.export / second export."""

    def wall(argv: list[str]) -> float:
        t = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        return time.perf_counter() - t

    bare = [wall([python, "-c", "pass"]) for _ in range(repeat)]
    imp = [wall([python, "-c", "import torch"]) for _ in range(repeat)]
    inner = []
    for _ in range(repeat):
        out = subprocess.run([python, "-c", STARTUP_PROBE], env=env, check=True, capture_output=True, text=True, timeout=600)
        inner.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mean = statistics.mean
    return {
        "python_s": mean(bare), "import_torch_process_s": mean(imp),
        "import_s": mean(i["import_s"] for i in inner), "first_export_s": mean(i["first_export_s"] for i in inner),
        "second_export_s": mean(i["second_export_s"] for i in inner),
        "import_torch_min_s": min(imp), "import_torch_max_s": max(imp),
    }  # fmt: skip
