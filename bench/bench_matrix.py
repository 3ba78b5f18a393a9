"""Benchmark of the matrix under Bazel, against the same cells run by plain pytest.

    bazel run //bench:bench                                # bench_generate, bench_report, then this (--skip tools)
    bazel run //bench:bench -- --quick                     # the same on a small slice
    <pyenv>/venv/bin/python3 bench/bench_matrix.py [--quick] [--targets //:device_cpu] [--output-base /tmp/bench_ob]
    bazel run //bench:bench -- --granularity export_tests=cell,file   # cold at both granularities, edits at file

What it measures, all in one run so that the ratios are taken side by side on the same (noisy) machine:

1. cold: `bazel test <targets>` with an empty action cache and output tree (`bazel clean` + server
   restart in the benchmark's own output base; the Python environment repository is reused: by default
   the workspace's own, through --override_repository, never rebuilt), vs the same tests with the same
   variants run by plain pytest with the same plugin, no Bazel: ONE `python -m pytest` process per
   matrix cell (the whole cell, unsharded: exactly the child command cell_main starts, with its
   environment), --jobs at a time in the order of the cells; and where the time goes: the number of
   processes (plain: one per cell; Bazel: one test action per shard), interpreter + `import torch` +
   first torch.export start-up, and the sum of the test durations (plain: the plugin's journal;
   Bazel: the shards' report.json).
2. noop: `bazel test <targets>` again, nothing changed.
   With `--granularity SUITE=cell,file` the cold Bazel run is taken once per setting (export_tests
   one target per cell, then one per test file), each against the same plain run; the last setting
   stays for the steps below.
2b. variant edit: append a comment to tools/matrix/variants/package.py in the copy, `bazel test
   <targets>`: the targets that executed vs those whose variant's impl lives in that module.
2c. runtime edit: the same with tools/matrix/runtime/verdict.py (the core every cell depends on),
   checked without running the tests (`--check_tests_up_to_date`): the targets it leaves out of date
   vs all of them.
2d. test-file edit: append a comment to one test file (--edit-test-file, default
   export_tests/test_dtypes.py; its suite is switched to `granularity: file` in the copy unless it
   already is), `bazel test <targets>`: the targets and tests that executed vs that file's targets,
   and the wall time vs plain pytest running only that file under the same variants (one process
   per variant, --jobs at a time).
   Before each edit step, an untimed `bazel test <targets>` re-runs what earlier edits left out of
   date (restoring a file is one more change for Bazel's action cache).
3. incremental: add one skip entry to one variant's expectations (in a copy of the workspace),
   regenerate, `bazel test <targets>`: which targets ran (they must be exactly those running that test:
   the variant's cells, or that file's targets under `granularity: file`).
4. rerun: plant one failure (remove a real xfail entry, or add an xfail for a passing test = xpassed),
   run that variant's targets, `report --no-run`, `rerun --failed`: tests rerun vs tests failing.
5. tools: bench_generate.measure and bench_report.run_once at their sizes.
6. transform: per variant, the mean transform time, differential check time, evidence time and test
   duration per test, relative to base, and how many tests kept evidence (from the Bazel cold run's
   report.json and outputs).

Prints tables; never asserts. Every Bazel command uses the benchmark's own output base (never the
workspace's default one) with --symlink_prefix=/, and runs in a copy of the workspace, so the
workspace's files and bazel-* links are never touched. The copy's matrix.yaml / BUILD files are
restored after each edit, and the benchmark's Bazel server is shut down at the end.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import difflib
import io
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the workspace (under `bazel run` too: runfiles symlinks resolve to the sources)
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

DEFAULT_TARGETS = ("//:device_cpu",)
QUICK_TARGETS = ("//package_tests/...", "//dynamo_tests/...")  # their cuda cells are excluded by .bazelrc
SKIPPABLE = ("plain", "noop", "variant_edit", "runtime_edit", "file_edit", "incremental", "rerun", "tools")
VARIANT_MODULE_EDIT = "tools/matrix/variants/package.py"  # a built-in variant module (from_directory, from_bytes)
RUNTIME_EDIT = "tools/matrix/runtime/verdict.py"  # part of //tools/matrix:runtime, which every cell depends on
DEFAULT_EDIT_TEST_FILE = "export_tests/test_dtypes.py"
SIZE_TIMEOUT_S = {"small": 60, "medium": 300, "large": 900, "enormous": 3600}  # Bazel's defaults
COPY_MARKER = ".bench_matrix_copy"
# Bazel commands that take build options (and so --symlink_prefix); query-like ones take only the repo flags.
BUILD_LIKE = ("build", "test", "run", "info", "coverage", "clean")
REPO_LIKE = ("query", "cquery", "aquery", "fetch", "sync")
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


def log(message: str = "") -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------
# The Python environment: the benchmark needs the project's (PyYAML, jsonschema, torch, pytest).


def find_pyenv(workspace: Path) -> Path | None:
    """The @pyenv repository (python_env.bzl): this interpreter's, the runfiles', or the one in the
    workspace's default output base (found through its bazel-* links; only read, never built)."""
    candidates = [Path(sys.prefix).parent]
    if os.environ.get("RUNFILES_DIR"):
        candidates.append((Path(os.environ["RUNFILES_DIR"]) / "pyenv" / "frozen_requirements.txt").resolve().parent)
    for link in sorted(workspace.glob("bazel-*")):
        if link.is_symlink():
            parts = link.resolve().parts
            if "execroot" in parts:
                candidates.append(Path(*parts[: parts.index("execroot")]) / "external" / "pyenv")
    for c in candidates:
        if (c / "frozen_requirements.txt").is_file() and (c / "BUILD.bazel").is_file() and (c / "venv" / "bin" / "python3").exists():
            return c
    return None


def _ensure_python(workspace: Path) -> None:
    try:
        import jsonschema  # noqa: F401
        import ruamel.yaml  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        pyenv = find_pyenv(workspace)
        python = pyenv / "venv" / "bin" / "python3" if pyenv else None
        if python and Path(sys.executable) != python and not os.environ.get("BENCH_MATRIX_REEXEC"):
            log(f"bench_matrix: {e.name} missing in {sys.executable}; re-running with the project's environment {python}")
            os.environ["BENCH_MATRIX_REEXEC"] = "1"
            os.execv(str(python), [str(python), *sys.argv])
        sys.exit(f"error: {e}. Run with the project's Python environment: `bazel run //bench:bench`, or "
                 f"<output_base>/external/pyenv/venv/bin/python3 {sys.argv[0]}")  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Bazel in the benchmark's own output base.


@dataclass
class BazelRun:
    argv: list[str]
    rc: int
    wall_s: float
    output: str
    log: Path
    timed_out: bool = False

    @property
    def executed(self) -> tuple[int, int] | None:
        m = re.findall(r"Executed (\d+) out of (\d+) tests?", self.output)
        return (int(m[-1][0]), int(m[-1][1])) if m else None

    @property
    def processes(self) -> str:
        m = re.findall(r"INFO: (\d+ process(?:es)?[:.].*)", self.output)
        return m[-1].strip() if m else "?"


class Bazel:
    def __init__(self, binary: str, workspace: Path, output_base: Path, pyenv: Path | None, jobs: int, logs: Path):
        self.binary, self.workspace, self.output_base, self.logs = binary, workspace, output_base, logs
        self.startup = [f"--output_base={output_base}", "--max_idle_secs=900"]
        self.repo_flags = [f"--override_repository=pyenv={pyenv}"] if pyenv else []
        self.build_flags = ["--symlink_prefix=/", f"--local_test_jobs={jobs}"]
        home = pwd.getpwuid(os.geteuid()).pw_dir
        # Nested under `bazel run`: none of the outer run's runfiles / workspace / Python settings.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RUNFILES_", "PYTHON", "JAVA_RUNFILES", "BUILD_", "TEST_", "BENCH_MATRIX"))
        }
        self.env["HOME"] = home
        self.count = 0

    def argv(self, command: str, *args: str) -> list[str]:
        flags = self.repo_flags + self.build_flags if command in BUILD_LIKE else self.repo_flags if command in REPO_LIKE else []
        return [self.binary, *self.startup, command, *flags, *args]

    def wrapper(self, path: Path) -> Path:
        """A `bazel` for the matrix CLI's nested calls (BAZEL=path): the same output base and flags."""
        q = shlex.join
        path.write_text(
            "#!/bin/sh\n# bench_matrix: bazel in the benchmark's output base, with the benchmark's flags.\n"
            'cmd="$1"; [ $# -gt 0 ] && shift\ncase "$cmd" in\n'
            f'  {"|".join(BUILD_LIKE)}) exec {q([self.binary, *self.startup])} "$cmd" {q(self.repo_flags + self.build_flags)} "$@" ;;\n'
            f'  {"|".join(REPO_LIKE)}) exec {q([self.binary, *self.startup])} "$cmd" {q(self.repo_flags) if self.repo_flags else ""} "$@" ;;\n'
            f'  *) exec {q([self.binary, *self.startup])} "$cmd" "$@" ;;\nesac\n'
        )
        path.chmod(0o755)
        return path

    def run(self, name: str, command: str, *args: str, timeout: float, echo: bool = True) -> BazelRun:
        self.count += 1
        argv = self.argv(command, *args)
        log_path = self.logs / f"bazel_{self.count:02d}_{name}.log"
        log(f"  $ {shlex.join(argv)}")
        started = time.monotonic()
        lines: list[str] = []
        with open(log_path, "w") as out:
            proc = subprocess.Popen(
                argv, cwd=self.workspace, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    out.write(line)
                    lines.append(line)
                    if echo and re.match(r"(//\S+ |Executed |INFO: \d+ process|ERROR:|FAIL: )", line):
                        log("    | " + line.rstrip()[:200])

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            timed_out = False
            try:
                proc.wait(timeout=max(timeout, 1))
            except subprocess.TimeoutExpired:
                timed_out = True
                log(f"  ! bazel {command} ran past {timeout:.0f}s: interrupting it")
                proc.send_signal(signal.SIGINT)  # the client asks its server to cancel the build
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            except BaseException:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
                raise
            reader.join(timeout=10)
        wall = time.monotonic() - started
        run = BazelRun(argv, proc.returncode, wall, "".join(lines), log_path, timed_out)
        log(f"  -> exit {run.rc} in {wall:.1f}s (log {log_path})")
        return run

    def info(self, key: str) -> Path:
        out = subprocess.run(self.argv("info", key), cwd=self.workspace, env=self.env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"bazel info {key} failed:\n{out.stderr[-3000:]}")
        return Path(out.stdout.strip())

    def shutdown(self) -> None:
        if not (self.output_base / "server").exists():
            return
        try:
            subprocess.run([self.binary, *self.startup, "shutdown"], cwd=self.workspace if self.workspace.exists() else "/", env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)  # fmt: skip
        except subprocess.TimeoutExpired:
            pid_file = self.output_base / "server" / "server.pid.txt"
            if pid_file.is_file():  # our own server (our output base), ended by its id
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


def read_bep_durations(path: Path) -> dict[tuple[str, int], float]:
    """(label, shard) -> the test action's duration, from the BEP (testAttemptDurationMillis)."""
    out: dict[tuple[str, int], float] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        ident = event.get("id", {}).get("testResult")
        if ident:
            result = event.get("testResult", {})
            ms = result.get("testAttemptDurationMillis") or result.get("testAttemptDuration", "0").rstrip("s")
            with contextlib.suppress(ValueError, TypeError):
                out[(ident["label"], max(int(ident.get("shard", 1)) - 1, 0))] = float(ms) / (
                    1000 if "testAttemptDurationMillis" in result else 1
                )
    return out


# --------------------------------------------------------------------------------------------------
# The workspace copy and the matrix edits.


def make_copy(source: Path, copy: Path) -> int:
    """Copy the working tree (tracked and untracked-but-not-ignored files, as they are now)."""
    if copy.exists():
        if not (copy / COPY_MARKER).exists():
            sys.exit(f"error: {copy} exists and is not a copy made by this benchmark; pass another --copy")
        shutil.rmtree(copy)
    copy.mkdir(parents=True)
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-co", "--exclude-standard", "-z"], capture_output=True)
    if listed.returncode == 0:
        files = [f for f in listed.stdout.decode().split("\0") if f]
    else:  # not a git checkout: everything but Bazel's links, caches and reports
        files = [str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() and not any(
            part.startswith(("bazel-", ".git")) or part in ("__pycache__", ".pytest_cache", ".ruff_cache", "reports") for part in p.relative_to(source).parts)]  # fmt: skip
    n = 0
    for rel in files:
        if rel.split("/", 1)[0].startswith("bazel-") or rel == "user.bazelrc":
            continue
        src = source / rel
        if not (src.is_file() or src.is_symlink()):
            continue  # deleted in the working tree
        dst = copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
        n += 1
    (copy / COPY_MARKER).write_text(f"made by bench/bench_matrix.py from {source}\n")
    return n


def lock(path: Path, option: str, what: Path) -> Any:
    """Hold an exclusive lock on `path` for the life of this process; exit if another run holds it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 (held until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit(f"error: another bench_matrix run is using {option} {what} (lock {path}); wait for it, or pass another {option}")
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def pyenv_mirror(pyenv: Path, mirror: Path) -> Path:
    """A directory that looks like `pyenv` (small files copied, venv/ a symlink) for
    --override_repository, so that nothing the benchmark's Bazel does can reach the original."""
    if pyenv.resolve() == mirror.resolve():  # e.g. run by a `bazel run` that itself used the mirror
        return mirror
    mirror.mkdir(parents=True, exist_ok=True)
    for name in ("WORKSPACE", "BUILD.bazel", "frozen_requirements.txt", "python3"):
        if (pyenv / name).exists():
            if not (mirror / name).exists() or (mirror / name).read_bytes() != (pyenv / name).read_bytes():
                shutil.copy2(pyenv / name, mirror / name)
    venv = mirror / "venv"
    if venv.is_symlink() and venv.resolve() != (pyenv / "venv").resolve():
        venv.unlink()
    if not venv.exists():
        venv.symlink_to((pyenv / "venv").resolve())
    return mirror


class MatrixEdit:
    """Edit the copy's matrix.yaml, regenerate, and restore every file afterwards (even on errors)."""

    def __init__(self, workspace: Path, python: str, env: dict[str, str]):
        from tools.matrix import config, generate

        self.workspace, self.python, self.env = workspace, python, env
        matrix = config.load(workspace / "matrix.yaml", workspace)
        paths = ["matrix.yaml", *generate.render(matrix)]
        self.saved = {p: (workspace / p).read_bytes() for p in paths if (workspace / p).exists()}
        self.diff = ""

    def __enter__(self) -> MatrixEdit:
        return self

    def change(self, edit) -> list[str]:
        """Apply edit(doc) to matrix.yaml (ruamel round trip: comments and order kept), regenerate
        with the CLI; return the generated files that changed."""
        path = self.workspace / "matrix.yaml"
        old = path.read_text()
        new = edit_yaml(old, edit)
        path.write_text(new)
        self.diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/matrix.yaml", "b/matrix.yaml"))
        return regenerate(self.workspace, self.python, self.env)

    def __exit__(self, *exc: Any) -> None:
        for p, data in self.saved.items():
            target = self.workspace / p
            if not target.exists() or target.read_bytes() != data:
                target.write_bytes(data)


def regenerate(workspace: Path, python: str, env: dict[str, str]) -> list[str]:
    """`generate` with the workspace's CLI; the generated files it changed."""
    out = subprocess.run([python, str(workspace / "tools/matrix/cli.py"), "--workspace", str(workspace), "generate"],
                         cwd=workspace, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"generate failed (exit {out.returncode}):\n{out.stdout}{out.stderr}")
    m = re.search(r"wrote \d+ file\(s\): (.*)", out.stdout)
    return m.group(1).split(", ") if m else []


@contextlib.contextmanager
def appended_comment(path: Path, text: str = "bench_matrix: a change Bazel must notice"):
    """`path` with one comment line appended (a new digest, the same code); restored afterwards."""
    saved = path.read_bytes()
    path.write_bytes(saved + (b"" if saved.endswith(b"\n") or not saved else b"\n") + f"# {text}\n".encode())
    try:
        yield
    finally:
        path.write_bytes(saved)


def impl_module_path(impl: str, workspace: Path) -> str | None:
    """The workspace-relative file of a variant's impl (`pkg.mod:Class` -> `pkg/mod.py`), as generate finds it."""
    from tools.matrix.variant_library import module_file

    return module_file(impl.split(":", 1)[0], workspace)


def parse_granularity(specs: list[str]) -> list[dict[str, str]]:
    """`--granularity SUITE=G[,G...]` (repeatable) -> the settings of the cold runs, in order: the k-th
    holds each named suite's k-th value (its last one when it lists fewer). ValueError on bad input."""
    from tools.matrix.config import GRANULARITIES

    per_suite: dict[str, list[str]] = {}
    for spec in specs:
        suite, sep, values = spec.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not suite.strip() or not choices:
            raise ValueError(f"{spec!r}: expected SUITE=G[,G...] with G one of {', '.join(GRANULARITIES)}")
        bad = [v for v in choices if v not in GRANULARITIES]
        if bad:
            raise ValueError(f"{spec!r}: {', '.join(bad)} is not one of {', '.join(GRANULARITIES)}")
        if suite.strip() in per_suite:
            raise ValueError(f"{spec!r}: suite {suite.strip()} given twice (list its settings in one option: {suite.strip()}=cell,file)")
        per_suite[suite.strip()] = choices
    runs = max((len(v) for v in per_suite.values()), default=0)
    return [{suite: values[min(k, len(values) - 1)] for suite, values in per_suite.items()} for k in range(runs)]


def set_granularity(suite: str, granularity: str):
    def edit(doc: Any) -> None:
        if suite not in (doc.get("suites") or {}):
            raise ValueError(f"matrix.yaml has no suite {suite!r}")
        doc["suites"][suite]["granularity"] = granularity

    return edit


def edit_yaml(text: str, edit: Callable[[Any], None]) -> str:
    """`text` after edit(doc) on its ruamel round trip: comments, order and quotes kept."""
    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    doc = y.load(text)
    edit(doc)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def _block(node: Any) -> Any:
    with contextlib.suppress(AttributeError):
        node.fa.set_block_style()  # `expectations: {}` is a flow mapping: grow it as a block
    return node


def _child(parent: Any, key: str) -> Any:
    from ruamel.yaml.comments import CommentedMap

    if not isinstance(parent.get(key), dict):
        parent[key] = CommentedMap()
    return _block(parent[key])


def add_entry(suite: str, variant: str, kind: str, nodeid: str, reason: str):
    def edit(doc: Any) -> None:
        _child(_child(_child(_block(doc), "expectations"), suite), variant)
        _child(doc["expectations"][suite][variant], kind)[nodeid] = reason

    return edit


def remove_entry(suite: str, variant: str, device: str, nodeid: str):
    def edit(doc: Any) -> None:
        spec = doc["expectations"][suite][variant]
        for holder in (spec, spec.get("devices", {}).get(device, {})):
            if nodeid in (holder.get("xfail") or {}):
                del holder["xfail"][nodeid]
                if not holder["xfail"]:
                    del holder["xfail"]
                break
        # drop what became empty, innermost first
        if spec.get("devices", {}).get(device) == {}:
            del spec["devices"][device]
        if spec.get("devices") == {}:
            del spec["devices"]
        if not spec:
            del doc["expectations"][suite][variant]
        if not doc["expectations"][suite]:
            del doc["expectations"][suite]

    return edit


# --------------------------------------------------------------------------------------------------
# Cells: reports, plain processes.


def cell_reports(testlogs: Path, targets: list) -> dict[tuple[str, int], dict[str, Any]]:
    """(target label, shard) -> report.json of config.Targets' shards, read the way the collector reads it.
    Each test also gets `evidence_kept` (bench only): whether the shard's outputs hold its evidence."""
    from tools.matrix.collect import read_cell_report, shard_dirs
    from tools.matrix.runtime.evidence import index_member

    out = {}
    for target in targets:
        for shard, shard_dir in shard_dirs(testlogs, target):
            report = read_cell_report(shard_dir)
            if report is not None:
                kept = evidence_indexes(shard_dir)
                for test in report.get("tests", []):
                    test["evidence_kept"] = index_member(test["nodeid"]) in kept
                out[(target.label, shard)] = report
    return out


def evidence_indexes(shard_dir: Path) -> set[str]:
    """The evidence.json files (runtime/evidence.py) a shard kept: members of test.outputs/outputs.zip,
    or files of an unzipped test.outputs/, relative to it."""
    from tools.matrix.runtime.evidence import EVIDENCE_DIR, INDEX

    outputs = shard_dir / "test.outputs"
    found = {p.relative_to(outputs).as_posix() for p in (outputs / EVIDENCE_DIR).glob(f"*/{INDEX}")}
    archive = outputs / "outputs.zip"
    if archive.is_file():
        with contextlib.suppress(OSError, zipfile.BadZipFile), zipfile.ZipFile(archive) as z:
            found.update(n for n in z.namelist() if n.startswith(f"{EVIDENCE_DIR}/") and n.endswith(f"/{INDEX}"))
    return found


def whole_cell(cell):
    """The cell as one target running all its files (what plain pytest runs), whatever its granularity."""
    from tools.matrix.config import Target

    return Target(cell, cell.target_name, tuple(f for t in cell.targets for f in t.test_files))


def tests_of(reports: dict[tuple[str, int], dict[str, Any]], label: str | None = None) -> list[dict[str, Any]]:
    """The tests of the Bazel shards' report.json files (of one target, or all)."""
    return [t for (lab, _s), r in reports.items() if label in (None, lab) for t in r.get("tests", [])]


def sum_durations(tests: list[dict[str, Any]]) -> float:
    """Sum of the tests' durations (metadata.matrix.duration_s: report.json's and the journal's alike)."""
    return sum(float(t["metadata"]["matrix"].get("duration_s") or 0.0) for t in tests)


def restarts(reports: dict[tuple[str, int], dict[str, Any]]) -> int:
    return sum(int(r.get("matrix", {}).get("restarts") or 0) for r in reports.values())


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


# --------------------------------------------------------------------------------------------------
# Step 6's table: per variant, what a test costs (from the shards' report.json).

VARIANT_COST_HEADER = (
    f"{'suite':<14} {'variant':<16} {'tests':>6} {'mean test s':>12} {'mean transform s':>17} {'test vs base':>13} "
    f"{'transform / base test':>22} {'mean check s':>13} {'mean evidence s':>16} {'kept evidence':>14}  differential check (all tests)"
)


@dataclass
class VariantCost:
    """One variant of one suite. The means are over the tests that passed both here and under the
    suite's base; `kept_evidence` and `verdicts` count all of the variant's tests."""

    suite: str
    variant: str
    tests: int  # passed here and under base
    mean_test_s: float = 0.0
    mean_transform_s: float = 0.0
    ratio: float = float("nan")  # mean test time / the same tests' mean under base
    share: float = float("nan")  # mean transform time / the same tests' mean under base
    mean_check_s: float = 0.0  # runtime/transform_check.py (check_s)
    mean_evidence_s: float = 0.0  # recording evidence, kept or not (runtime/evidence.py, evidence_s)
    kept_evidence: int = 0  # tests whose evidence the shard's outputs hold (failed, xfailed, crashed, ...)
    verdicts: str = ""  # "3 failed, 40 passed, 2 none"

    def line(self) -> str:
        if not self.tests:
            return f"{self.suite:<14} {self.variant:<16} {0:>6}  (no test passed in both this variant and base); kept evidence: {self.kept_evidence}"
        return (
            f"{self.suite:<14} {self.variant:<16} {self.tests:>6} {self.mean_test_s:>12.4f} {self.mean_transform_s:>17.4f} "
            f"{self.ratio:>12.2f}x {self.share:>21.2f}x {self.mean_check_s:>13.4f} {self.mean_evidence_s:>16.4f} {self.kept_evidence:>14}  {self.verdicts}"
        )

    def note(self) -> str:
        return (
            f"{self.tests} tests; mean {self.mean_test_s * 1000:.1f} ms/test, transform {self.mean_transform_s * 1000:.1f} ms/test = "
            f"{self.share:.2f}x base test, check {self.mean_check_s * 1000:.1f} ms/test, evidence {self.mean_evidence_s * 1000:.1f} ms/test "
            f"({self.kept_evidence} tests kept it); check verdicts: {self.verdicts}"
        )


def _mean(matrix: dict[Any, dict[str, Any]], keys: list[Any], name: str) -> float:
    """The mean of a metadata.matrix field over `keys` (absent or None: 0)."""
    return statistics.mean(float(matrix[k].get(name) or 0) for k in keys)


def variant_costs(per: dict[tuple[str, str], dict[Any, dict[str, Any]]]) -> list[VariantCost]:
    """(suite, variant) -> {(device, nodeid): report.json test (with cell_reports' evidence_kept)}:
    one VariantCost each, base first within a suite."""
    costs = []
    for (suite, variant), tests in sorted(per.items(), key=lambda kv: (kv[0][0], kv[0][1] != "base", kv[0][1])):
        matrix = {k: t["metadata"]["matrix"] for k, t in tests.items()}
        base = {k: t["metadata"]["matrix"] for k, t in per.get((suite, "base"), {}).items()}
        common = [k for k, m in matrix.items() if m["status"] == "passed" and base.get(k, {}).get("status") == "passed"]
        cost = VariantCost(suite, variant, len(common), kept_evidence=sum(bool(t.get("evidence_kept")) for t in tests.values()))
        verdicts = collections.Counter(str(m.get("transform_check") or "none").split(":", 1)[0].split(" (", 1)[0] for m in matrix.values())
        cost.verdicts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        if common:
            cost.mean_test_s, cost.mean_transform_s = _mean(matrix, common, "duration_s"), _mean(matrix, common, "transform_s")
            cost.mean_check_s, cost.mean_evidence_s = _mean(matrix, common, "check_s"), _mean(matrix, common, "evidence_s")
            mean_base = _mean(base, common, "duration_s")
            if mean_base:
                cost.ratio, cost.share = cost.mean_test_s / mean_base, cost.mean_transform_s / mean_base
        costs.append(cost)
    return costs


# --------------------------------------------------------------------------------------------------
# The benchmark.


@dataclass
class Results:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (measurement, value, note)
    not_measured: list[str] = field(default_factory=list)

    def add(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))

    def missing(self, what: str) -> None:
        log(f"  NOT MEASURED: {what}")
        self.not_measured.append(what)

    def print(self) -> None:
        width = min(max([len(r[0]) for r in self.rows] + [20]), 64)
        vwidth = min(max([len(r[1]) for r in self.rows] + [8]), 12)
        log("\n" + "=" * 100 + "\nbench_matrix summary\n" + "=" * 100)
        for what, value, note in self.rows:
            log(f"{what:<{width}}  {value:>{vwidth}}  {note}")
        if self.not_measured:
            log("\nnot measured:")
            for m in self.not_measured:
                log(f"  - {m}")


@dataclass
class ColdRun:
    """One cold `bazel test` of a round, at one granularity setting."""

    setting: str  # `export_tests=file`, or "" for matrix.yaml as it is
    run: BazelRun
    targets: int  # py_tests among the targets
    shards: int
    load: str


def describe(setting: dict[str, str]) -> str:
    return ", ".join(f"{suite}={g}" for suite, g in setting.items())


def fmt_s(s: float) -> str:
    return f"{s:.1f} s" if s >= 10 else f"{s:.2f} s"


def pick_test(reports: dict, label: str, statuses_ok=("passed",)) -> str | None:
    """A real test id of `label` in `statuses_ok`, preferably not parametrized (a plain matrix.yaml key)."""
    ids = sorted(t["nodeid"] for t in tests_of(reports, label) if t["metadata"]["matrix"]["status"] in statuses_ok)
    plain = [i for i in ids if "[" not in i]
    return (plain or ids or [None])[0]


class Benchmark:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results = Results()
        self.started = time.time()
        self.deadline = self.started + args.budget_min * 60
        self.owns = False  # True once this run holds the locks on its output base and copy

    def left(self) -> float:
        return self.deadline - time.time()

    def budget_ok(self, step: str, need_s: float = 60) -> bool:
        if self.left() < need_s:
            self.results.missing(f"{step}: the time budget (--budget-min {self.args.budget_min}) ran out")
            return False
        return True

    # -- set-up -------------------------------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        from tools.matrix import bazel as matrix_bazel

        try:
            binary = matrix_bazel.bazel_binary()
        except matrix_bazel.BazelNotFound as e:
            sys.exit(f"error: {e}")
        if not shutil.which(binary):
            sys.exit(f"error: bazel {binary!r} (from $BAZEL or PATH) is not an executable; run `make setup` or fix BAZEL")
        binary = shutil.which(binary) or binary
        self.workspace = Path(a.workspace).resolve()
        if not (self.workspace / "WORKSPACE").is_file() or not (self.workspace / "matrix.yaml").is_file():
            sys.exit(f"error: {self.workspace} is not the matrix workspace (no WORKSPACE / matrix.yaml); pass --workspace")
        self.output_base = Path(a.output_base).resolve()
        default_base = Path.home() / ".cache" / "bazel"
        if default_base in self.output_base.parents or self.output_base == default_base:
            sys.exit(f"error: --output-base {self.output_base} is inside Bazel's default location {default_base}; use a separate one")
        where = [os.environ.get(k, "") for k in ("RUNFILES_DIR", "PYTHON_RUNFILES", "RUNFILES_MANIFEST_FILE")] + [os.getcwd(), sys.argv[0]]
        if any(w and os.path.abspath(w).startswith(str(self.output_base) + os.sep) for w in where):
            sys.exit(f"error: this benchmark runs from the output base {self.output_base} (bazel run --output_base=...); "
                     "pass another --output-base for its own Bazel")  # fmt: skip
        self.copy = Path(a.copy).resolve()
        if self.copy == self.workspace or self.workspace in self.copy.parents:
            sys.exit("error: --copy must not be the workspace or inside it")
        # One run at a time per output base and per copy: a second one would clean / re-copy under the first.
        self.locks = [
            lock(Path(str(self.output_base) + ".lock"), "--output-base", self.output_base),
            lock(Path(str(self.copy) + ".lock"), "--copy", self.copy),
        ]
        self.owns = True
        self.logs = Path(tempfile.mkdtemp(prefix="bench_matrix_"))
        log(f"bench_matrix: workspace {self.workspace}; copy {self.copy}; output base {self.output_base}; logs {self.logs}")
        log(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; time budget {a.budget_min} min")

        pyenv = None if a.pyenv == "own" else Path(a.pyenv).resolve() if a.pyenv != "auto" else find_pyenv(self.workspace)
        if a.pyenv not in ("own", "auto") and not (pyenv and (pyenv / "frozen_requirements.txt").is_file()):
            sys.exit(f"error: --pyenv {a.pyenv}: not a python_env repository (no frozen_requirements.txt)")
        if pyenv:
            self.pyenv = pyenv_mirror(pyenv, Path(str(self.output_base) + ".pyenv"))
            self.python = str(pyenv / "venv" / "bin" / "python3")
            self.pyenv_note = f"@pyenv reused from {pyenv} (--override_repository, via {self.pyenv}): not rebuilt, not timed"
        else:
            self.pyenv = None
            self.python = sys.executable
            self.pyenv_note = "@pyenv built in the benchmark's output base (kept by `bazel clean`: not part of the cold time)"
        log(f"  {self.pyenv_note}")

        self.bazel = Bazel(binary, self.copy, self.output_base, self.pyenv, a.jobs, self.logs)
        self.bazel.shutdown()  # a server of an earlier run may hold the old copy
        n = make_copy(self.workspace, self.copy)
        log(f"  copied {n} files (the working tree as it is now, uncommitted changes included) to {self.copy}")
        self.tool_env = {k: v for k, v in self.bazel.env.items()}
        self.tool_env["BAZEL"] = str(self.bazel.wrapper(self.logs / "bazel"))
        # The copy's generated files must be what the generator writes, or the first edit would change more.
        out = subprocess.run([self.python, str(self.copy / "tools/matrix/cli.py"), "--workspace", str(self.copy), "generate"],
                             cwd=self.copy, env=self.tool_env, capture_output=True, text=True, timeout=300)  # fmt: skip
        if out.returncode != 0:
            sys.exit(f"error: `generate` fails in the copy:\n{out.stdout}{out.stderr}")
        if "wrote" in out.stdout:
            log(f"  note: the workspace's generated files were stale; regenerated in the copy: {out.stdout.strip()}")

        from tools.matrix import config

        self.matrix = config.load(self.copy / "matrix.yaml", self.copy)
        self.granularity_origin: dict[str, str] = {}
        self.yaml_granularity = {s.name: s.granularity for s in self.matrix.suites}
        self.granularity_runs = a.granularity_runs
        if self.granularity_runs:  # the first setting from the start: the warm-up's loading and analysis use it
            self.set_granularities(self.granularity_runs[0], "--granularity")
        self.targets = [
            t for spec in (a.targets or (QUICK_TARGETS if a.quick else DEFAULT_TARGETS)) for t in re.split(r"[,\s]+", spec) if t
        ]

    def resolve_cells(self) -> None:
        """The tests `bazel test <targets>` runs (query, minus what .bazelrc's tag filter drops), as matrix cells."""
        expr = " + ".join(f"tests({t})" for t in self.targets)
        excluded = f'attr(tags, "requires-gpu|manual", {expr})'  # .bazelrc's --test_tag_filters, and manual tests
        run = self.bazel.run("query", "query", f"({expr}) except {excluded}", "--output=label", timeout=min(900, self.left()), echo=False)
        if run.rc != 0:
            raise RuntimeError(f"bazel query failed; see {run.log}")
        labels = sorted({line.strip() for line in run.output.splitlines() if line.startswith("//")})
        wanted = set(labels)
        # matrix.yaml order: the plain side's order. A cell is in when Bazel runs any of its py_tests.
        self.cell_targets = [t for t in self.matrix.targets() if t.label in wanted]
        self.cells = list({id(t.cell): t.cell for t in self.cell_targets}.values())
        matrix_labels = {t.label for t in self.cell_targets}
        self.other_tests = [lab for lab in labels if lab not in matrix_labels]
        shards = sum(t.shard_count for t in self.cell_targets)
        log(f"  targets {' '.join(self.targets)}: {len(self.cells)} matrix cells, {len(self.cell_targets)} py_tests ({shards} shards); "
            f"granularity {self.granularity_note()}"
            + (f", plus {len(self.other_tests)} other tests (run by Bazel only): {', '.join(self.other_tests)}" if self.other_tests else ""))  # fmt: skip
        if not self.cells:
            raise RuntimeError(f"{self.targets} select no matrix cell")

    def granularity_note(self) -> str:
        """Each selected suite's granularity and who set it (matrix.yaml, --granularity, or the file-edit step)."""
        suites = list(dict.fromkeys(c.suite for c in self.cells)) if getattr(self, "cells", None) else list(self.matrix.suites)
        return ", ".join(f"{s.name}={s.granularity} ({self.granularity_origin.get(s.name, 'matrix.yaml')})" for s in suites)

    def set_granularities(self, wanted: dict[str, str], origin: str) -> bool:
        """Set suites' granularity in the copy's matrix.yaml (kept for the rest of the run), regenerate,
        reload the matrix; True when anything changed (the caller resolves the targets again)."""
        from tools.matrix import config

        current = {s.name: s.granularity for s in self.matrix.suites}
        unknown = sorted(set(wanted) - set(current))
        if unknown:
            raise RuntimeError(f"--granularity: matrix.yaml has no suite {', '.join(unknown)} (suites: {', '.join(current)})")
        changes = {s: g for s, g in wanted.items() if current[s] != g}
        # Back to matrix.yaml's own setting (e.g. the last of `--granularity export_tests=cell,file`): say so.
        self.granularity_origin.update({s: "matrix.yaml" if g == self.yaml_granularity[s] else origin for s, g in changes.items()})
        if not changes:
            return False
        path = self.copy / "matrix.yaml"
        text = path.read_text()
        for suite, g in changes.items():
            text = edit_yaml(text, set_granularity(suite, g))
        path.write_text(text)
        changed = regenerate(self.copy, self.python, self.tool_env)
        self.matrix = config.load(self.copy / "matrix.yaml", self.copy)
        log(f"  granularity {', '.join(f'{s}={g}' for s, g in changes.items())} set in the copy's matrix.yaml "
            f"({', '.join(self.granularity_origin[s] for s in changes)}); "
            f"regenerated {len(changed)} file(s)")
        return True

    # -- 1. cold ------------------------------------------------------------------------------------

    def cold(self) -> None:
        log("\n== 1. cold matrix: bazel test (empty action cache) vs plain pytest, one process per cell ==")
        from tools.matrix.collect import read_bep

        r = self.results
        t = time.monotonic()
        warm = self.bazel.run("warmup", "build", "--nobuild", *self.targets, timeout=min(3600, self.left()), echo=False)
        setup_s = time.monotonic() - t
        if warm.rc != 0:
            raise RuntimeError(f"bazel build --nobuild failed; see {warm.log}")
        self.resolve_cells()
        r.add(
            "setup (not in cold): server start + loading + analysis",
            fmt_s(setup_s),
            "bazel build --nobuild; then per round bazel clean + shutdown",
        )
        cells = len(self.cells)
        jobs = self.args.jobs
        settings = self.granularity_runs or [{}]
        rounds: list[tuple[list[ColdRun], float | None, list[PlainProcess], str]] = []
        for i in range(self.args.rounds):
            if i and not self.budget_ok(f"cold round {i + 1}", 120):
                break
            # Bazel first: its testlogs of the last round (and last setting) are what the later steps read.
            colds: list[ColdRun] = []
            for k, setting in enumerate(settings):
                if k and not self.budget_ok(f"cold round {i + 1}, {describe(setting)}", 120):
                    break
                if setting and self.set_granularities(setting, "--granularity"):
                    self.resolve_cells()
                load0 = os.getloadavg()[0]
                run = self.cold_bazel(i, k if len(settings) > 1 else None)
                colds.append(ColdRun(describe(setting), run, len(self.cell_targets), sum(t.shard_count for t in self.cell_targets),
                                     f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"))  # fmt: skip
            wall, procs, load0 = None, [], os.getloadavg()[0]
            if "plain" not in self.args.skip and self.budget_ok(f"cold plain pytest, round {i + 1}"):
                log(f"\n  plain pytest, round {i + 1}: {cells} processes (one per cell), {jobs} at a time, python {self.python}")
                wall, procs = run_plain([whole_cell(c) for c in self.cells], self.copy, self.python, jobs, self.logs / f"plain{i + 1}", self.deadline)
                log(f"  -> {wall:.1f}s")
            rounds.append((colds, wall, procs, f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"))
        if "plain" in self.args.skip:
            r.missing("cold plain pytest (--skip plain)")
        cold = rounds[-1][0][-1].run
        shards = sum(t.shard_count for t in self.cell_targets)
        self.cold_run = cold
        self.cold_failed = (
            {lab for lab, res in read_bep(self.bep_cold).items() if res.overall and res.overall not in ("PASSED", "FLAKY")}
            if self.bep_cold.exists()
            else set()
        )
        self.testlogs = self.bazel.info("bazel-testlogs")
        self.bazel_reports = cell_reports(self.testlogs, self.cell_targets)
        bazel_tests = tests_of(self.bazel_reports)
        ratios: dict[str, list[float]] = {}
        for i, (colds, wall, procs, plain_load) in enumerate(rounds):
            tag = f"round {i + 1}: " if len(rounds) > 1 else ""
            for c in colds:
                b, ex = c.run, c.run.executed
                setting = f" [{c.setting}]" if c.setting else ""
                r.add(f"cold {tag}bazel test{setting} ({cells} cells, {c.targets} py_tests, {c.shards} shards)", fmt_s(b.wall_s),
                      (f"exit {b.rc}; executed {ex[0]}/{ex[1]} targets" if ex else f"exit {b.rc}") + ("; TIMED OUT" if b.timed_out else "") + f"; {c.load}")  # fmt: skip
            if wall is not None:
                died = [p for p in procs if p.died]
                r.add(
                    f"cold {tag}plain pytest ({len(procs)} processes, {jobs} at a time)",
                    fmt_s(wall),
                    f"{sum(len(p.tests) for p in procs)} tests (bazel, last run: {len(bazel_tests)}); {plain_load}"
                    + (f"; {len(died)} died: {', '.join(p.label for p in died)}" if died else ""),
                )
                for c in colds:
                    setting = f" [{c.setting}]" if c.setting else ""
                    r.add(f"cold {tag}ratio bazel{setting} / plain", f"{c.run.wall_s / wall:.2f}x", f"bazel {c.run.wall_s - wall:+.1f} s")
                    ratios.setdefault(c.setting, []).append(c.run.wall_s / wall)
        for setting, values in ratios.items():
            if len(values) > 1:
                r.add(f"cold ratio bazel{f' [{setting}]' if setting else ''} / plain, median of rounds", f"{statistics.median(values):.2f}x",
                      "  ".join(f"{x:.2f}x" for x in values))  # fmt: skip
        r.add("  bazel processes (last run)", "", cold.processes)
        if self.cold_failed:
            r.add("  targets failing in the cold run", str(len(self.cold_failed)), ", ".join(sorted(self.cold_failed)))
        missing = [f"{t.label} shard {s + 1}" for t in self.cell_targets for s in range(t.shard_count) if (t.label, s) not in self.bazel_reports]
        if missing:
            log(f"  note: no report.json for {len(missing)} shard(s): {', '.join(missing[:8])}")
        _, plain_wall, procs, _ = rounds[-1]
        if not procs:
            return

        log("\n  start-up probes (sequential, few repetitions)")
        probe = startup_probe(self.python, self.args.repeat, {k: v for k, v in self.bazel.env.items()})
        startup_s = probe["import_torch_process_s"] + probe["first_export_s"]
        plain_tests = [t for p in procs for t in p.tests]
        sum_plain, sum_bazel = sum_durations(plain_tests), sum_durations(bazel_tests)
        bazel_restarts = restarts(self.bazel_reports)
        bazel_children = shards + bazel_restarts
        sum_proc_wall = sum(p.wall_s for p in procs)
        died = [p for p in procs if p.died]
        collect_errors = sum(p.collect_errors for p in procs)
        bep = read_bep_durations(self.bep_cold)
        log("\n  where the time goes (cold, last round)")
        rows = [
            ("plain pytest processes (one per cell)", f"{len(procs)}", "python -m pytest -p tools.matrix.runtime.plugin: the child cell_main would start, whole cell"
             + (f"; {len(died)} died ({', '.join(p.label for p in died)})" if died else "") + (f"; {collect_errors} collection errors" if collect_errors else "")),
            ("bazel test actions (shards)", f"{shards}", f"each a cell_main + its pytest child ({bazel_children} children, {bazel_restarts} crash restarts)"),
            ("python -c pass", fmt_s(probe["python_s"]), f"mean of {self.args.repeat}"),
            ('python -c "import torch" (whole process)', fmt_s(probe["import_torch_process_s"]), f"min {probe['import_torch_min_s']:.2f} / max {probe['import_torch_max_s']:.2f}"),
            ("import torch (in process)", fmt_s(probe["import_s"]), ""),
            ("first torch.export.export (tiny module)", fmt_s(probe["first_export_s"]), f"second call {probe['second_export_s']:.2f} s"),
            ("start-up x plain processes", fmt_s(len(procs) * startup_s), f"(import torch + first export) x {len(procs)}, {jobs} at a time"),
            ("start-up x bazel pytest children", fmt_s(bazel_children * startup_s), f"(import torch + first export) x {bazel_children}, {jobs} at a time"),
            ("sum of test durations (journal), plain", fmt_s(sum_plain), f"{len(plain_tests)} tests"),
            ("sum of test durations (report.json), bazel", fmt_s(sum_bazel), f"{len(bazel_tests)} tests"),
            ("sum of process walls, plain", fmt_s(sum_proc_wall), f"beyond test durations {sum_proc_wall - sum_plain:.1f} s = {(sum_proc_wall - sum_plain) / max(len(procs), 1):.1f} s per process"),
            ("plain lower bound: sum of process walls / jobs", fmt_s(sum_proc_wall / jobs), f"ideal packing on {jobs} slots (plain wall {fmt_s(plain_wall or 0.0)})"),
            ("plain wall not covered by processes", fmt_s((plain_wall or 0.0) - sum_proc_wall / jobs), f"wall - sum of process walls / {jobs} (imperfect packing)"),
        ]  # fmt: skip
        if bep:
            s = sum(bep.values())
            extra = len(bep) - len(procs)
            rows += [
                ("sum of test action durations, bazel (BEP)", fmt_s(s), f"{len(bep)} actions; {s - sum_proc_wall:+.1f} s vs the {len(procs)} plain processes"
                 + (f" = {(s - sum_proc_wall) / extra:+.1f} s per extra process" if extra > 0 else "")),
                ("bazel lower bound: sum of action durations / jobs", fmt_s(s / jobs), f"ideal packing on {jobs} slots"),
                ("bazel wall not covered by test actions", fmt_s(cold.wall_s - s / jobs), f"wall - sum of action durations / {jobs}: server start, loading, analysis, runfiles trees, packing"),
            ]  # fmt: skip
        for row in rows:
            r.add("  " + row[0], row[1], row[2])
            log(f"    {row[0]:<50} {row[1]:>9}  {row[2]}")

    def cold_bazel(self, i: int, setting: int | None = None) -> BazelRun:
        external = self.output_base / "external" / "pyenv"
        before = external.stat().st_mtime if external.exists() else None
        self.bazel.run("clean", "clean", timeout=600, echo=False)
        self.bazel.shutdown()  # the cold run includes the server's start
        name = f"cold{i + 1}" + (f"_setting{setting + 1}" if setting is not None else "")
        self.bep_cold = self.logs / f"bep_{name}.json"
        cold = self.bazel.run(
            name, "test", "--keep_going", f"--build_event_json_file={self.bep_cold}", *self.targets, timeout=max(self.left(), 60)
        )
        after = external.stat().st_mtime if external.exists() else None
        if self.pyenv is None and before != after:
            log("  note: @pyenv was refetched by the cold run (`bazel clean` did not keep it): the cold time includes it")
        return cold

    def executed_targets(self, bep: Path) -> set[str]:
        from tools.matrix.collect import read_bep

        return {lab for lab, res in read_bep(bep).items() if res.cached and not all(res.cached.values())} if bep.exists() else set()

    # -- 2. no-op -----------------------------------------------------------------------------------

    def noop(self) -> None:
        log("\n== 2. no-op: bazel test again, nothing changed ==")
        bep = self.logs / "bep_noop.json"
        run = self.bazel.run(
            "noop", "test", "--keep_going", f"--build_event_json_file={bep}", *self.targets, timeout=min(3600, self.left())
        )
        ex = run.executed
        executed = self.executed_targets(bep)
        self.results.add(
            "no-op bazel test", fmt_s(run.wall_s), f"executed {ex[0]} out of {ex[1]} tests" if ex else f"exit {run.rc} (no 'Executed' line)"
        )
        if executed:
            others = executed - self.cold_failed
            self.results.add("  targets executed", str(len(executed)), f"{len(executed & self.cold_failed)} failed in the cold run (Bazel never caches a failed test)"
                             + (f"; {len(others)} others: {', '.join(sorted(others))}" if others else "; no other"))  # fmt: skip

    # -- 2b-2d. edits of one source file -------------------------------------------------------------

    def settle(self, before: str) -> None:
        """An untimed `bazel test <targets>`: re-run what earlier edits left out of date, so that the
        next measurement sees only its own edit (restoring a file is one more change for Bazel)."""
        bep = self.logs / f"bep_settle_{re.sub(r'[^a-z]+', '_', before)}.json"
        run = self.bazel.run(f"settle_{before}", "test", "--keep_going", f"--build_event_json_file={bep}", *self.targets,
                             timeout=max(self.left(), 60), echo=False)  # fmt: skip
        executed = self.executed_targets(bep)
        log(f"  settle before {before}: {len(executed)} target(s) re-run in {run.wall_s:.1f}s (untimed)")

    def edit_verdict(self, executed: set[str], expected: set[str]) -> str:
        """`executed` vs `expected`, leaving out targets that failed in the cold run (never cached)."""
        cacheable = executed - (self.cold_failed - expected)
        extra = executed - cacheable
        verdict = "exactly the expected ones" if cacheable == expected else (
            f"DIFFERENT: {len(cacheable - expected)} unexpected ({', '.join(sorted(cacheable - expected)[:6])}), "
            f"{len(expected - cacheable)} missing ({', '.join(sorted(expected - cacheable)[:6])})")  # fmt: skip
        return verdict + (f"; plus {len(extra)} that failed before (never cached)" if extra else "")

    def variant_edit(self) -> None:
        log(f"\n== 2b. variant edit: a comment appended to {VARIANT_MODULE_EDIT} ==")
        users = [t for t in self.cell_targets if impl_module_path(t.cell.variant.impl, self.copy) == VARIANT_MODULE_EDIT]
        if not users:
            self.results.missing(f"variant edit: no target among {' '.join(self.targets)} uses a variant from {VARIANT_MODULE_EDIT}")
            return
        expected = {t.label for t in users}
        variants = sorted({t.cell.variant.name for t in users})
        self.settle("variant_edit")
        bep = self.logs / "bep_variant_edit.json"
        load0 = os.getloadavg()[0]
        with appended_comment(self.copy / VARIANT_MODULE_EDIT):
            run = self.bazel.run("variant_edit", "test", "--keep_going", f"--build_event_json_file={bep}", *self.targets,
                                 timeout=max(self.left(), 60))  # fmt: skip
        log(f"  {VARIANT_MODULE_EDIT} restored")
        executed = self.executed_targets(bep)
        self.results.add(f"variant edit: {VARIANT_MODULE_EDIT} (variants {', '.join(variants)})", fmt_s(run.wall_s),
                         f"bazel test {' '.join(self.targets)}, exit {run.rc}; load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
        self.results.add("  targets executed vs expected", f"{len(executed)} vs {len(expected)}",
                         f"expected: the {len(expected)} of {len(self.cell_targets)} py_tests whose variant's impl is in that module; "
                         f"{self.edit_verdict(executed, expected)}")  # fmt: skip

    def runtime_edit(self) -> None:
        log(f"\n== 2c. runtime edit: a comment appended to {RUNTIME_EDIT} (checked with --check_tests_up_to_date, not run) ==")
        expected = {t.label for t in self.cell_targets}
        self.settle("runtime_edit")
        before = self.out_of_date_targets("runtime_check_before")  # the same check unedited: it must find none
        with appended_comment(self.copy / RUNTIME_EDIT):
            out_of_date = self.out_of_date_targets("runtime_edit")
        log(f"  {RUNTIME_EDIT} restored")
        self.results.add(f"runtime edit: {RUNTIME_EDIT}: targets out of date vs all", f"{len(out_of_date)} vs {len(expected)}",
                         f"bazel test --check_tests_up_to_date (tests not run); {self.edit_verdict(out_of_date, expected)}; "
                         f"the same check before the edit: {len(before)} out of date")  # fmt: skip
        # For Bazel the restore is one more change of the core (the check left the tests' outputs out of
        # date): the next `bazel test` runs what that change costs, timed here rather than in a settle.
        bep = self.logs / "bep_runtime_restored.json"
        load0 = os.getloadavg()[0]
        run = self.bazel.run("runtime_restored", "test", "--keep_going", f"--build_event_json_file={bep}", *self.targets,
                             timeout=max(self.left(), 60))  # fmt: skip
        executed = self.executed_targets(bep)
        self.results.add("  bazel test after restoring it (a second change of the core)", fmt_s(run.wall_s),
                         f"executed {len(executed)} of {len(expected)} targets, exit {run.rc}; load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip

    def out_of_date_targets(self, name: str) -> set[str]:
        """The test targets that `bazel test --check_tests_up_to_date <targets>` reports as not up to
        date (each one `ERROR: action 'Testing //...' is not up-to-date`; nothing runs)."""
        run = self.bazel.run(name, "test", "--keep_going", "--check_tests_up_to_date", *self.targets, timeout=max(self.left(), 60), echo=False)
        found = set(re.findall(r"action 'Testing (//[^\s']+)[^']*' is not up-to-date", run.output))
        if run.rc not in (0, 1, 3) or (run.rc != 0 and not found):  # 1/3: build/tests failed = some were out of date
            raise RuntimeError(f"bazel test --check_tests_up_to_date exit {run.rc} without naming what is out of date; see {run.log}")
        return found

    def file_edit(self) -> None:
        wanted = self.args.edit_test_file
        suites = {c.suite.name: c.suite for c in self.cells}
        suite = next((s for s in suites.values() if wanted in s.test_files), None)
        if suite is None:  # e.g. --quick: the first test file of the first suite among the targets
            suite = next(iter(suites.values()))
            log(f"  note: {wanted} is no test file of {', '.join(suites)}; using {suite.test_files[0]}")
            wanted = suite.test_files[0]
        log(f"\n== 2d. test-file edit: a comment appended to {wanted} ==")
        switched = suite.granularity != "file"
        if switched:
            self.set_granularities({suite.name: "file"}, "set by the file-edit step")
            self.resolve_cells()
            suite = next(c.suite for c in self.cells if c.suite.name == suite.name)
        log(f"  granularity {self.granularity_note()}")
        file = wanted[len(suite.directory) + 1 :]
        mine = [t for t in self.cell_targets if t.cell.suite.name == suite.name and file in t.test_files]
        expected = {t.label for t in mine}
        self.settle("file_edit")  # after a switch: every new per-file target runs here once
        if switched:  # the later steps read the reports of the targets as they are now
            self.bazel_reports = cell_reports(self.testlogs, self.cell_targets)
        bep = self.logs / "bep_file_edit.json"
        load0 = os.getloadavg()[0]
        with appended_comment(self.copy / wanted):
            run = self.bazel.run("file_edit", "test", "--keep_going", f"--build_event_json_file={bep}", *self.targets,
                                 timeout=max(self.left(), 60))  # fmt: skip
            bazel_load = f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
            executed = self.executed_targets(bep)
            reports = cell_reports(self.testlogs, [t for t in self.cell_targets if t.label in executed])
            tests = tests_of(reports)
            others = sorted({t["nodeid"].split("::", 1)[0] for t in tests} - {file})
            plain_wall, procs, plain_load = None, [], ""
            if "plain" not in self.args.skip:
                load0 = os.getloadavg()[0]
                log(f"\n  plain pytest of {wanted} under {len(mine)} variant(s)/device(s): one process each, {self.args.jobs} at a time")
                plain_wall, procs = run_plain(mine, self.copy, self.python, self.args.jobs, self.logs / "plain_file_edit", self.deadline)
                plain_load = f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
                log(f"  -> {plain_wall:.1f}s")
        log(f"  {wanted} restored")
        r = self.results
        r.add(f"file edit: {wanted} (granularity file: {self.granularity_origin.get(suite.name, 'matrix.yaml')})", fmt_s(run.wall_s),
              f"bazel test {' '.join(self.targets)}, exit {run.rc}; {bazel_load}")  # fmt: skip
        r.add("  targets executed vs expected", f"{len(executed)} vs {len(expected)}",
              f"expected: {file}'s py_test under each of the {len(mine)} variant/device cells; {self.edit_verdict(executed, expected)}")
        r.add("  tests executed (report.json of those targets)", str(len(tests)),
              f"all from {file}" if not others else f"ALSO FROM {', '.join(others)}")
        if plain_wall is not None:
            died = [p for p in procs if p.died]
            r.add(f"  plain pytest of {file} ({len(procs)} processes, {self.args.jobs} at a time)", fmt_s(plain_wall),
                  f"{sum(len(p.tests) for p in procs)} tests; {plain_load}" + (f"; {len(died)} died" if died else ""))  # fmt: skip
            r.add("  file edit ratio bazel / plain", f"{run.wall_s / plain_wall:.2f}x", f"bazel {run.wall_s - plain_wall:+.1f} s (goal <= 1.5x)")
        else:
            r.missing("file edit: plain pytest side (--skip plain)")

    # -- 3. incremental -----------------------------------------------------------------------------

    def variants_by_cost(self, with_base: bool = False) -> list[tuple[str, str]]:
        """(suite, variant) among the targets (non-base unless with_base), cheapest first (by the cold run's durations)."""
        cost: dict[tuple[str, str], float] = {}
        for t in self.cell_targets:
            if t.cell.variant.name == "base" and not with_base:
                continue
            key = (t.cell.suite.name, t.cell.variant.name)
            cost[key] = cost.get(key, 0.0) + sum_durations(tests_of(self.bazel_reports, t.label))
        return sorted(cost, key=lambda k: (cost[k], k))

    def expected_labels(self, suite: str, variant: str) -> set[str]:
        """The py_tests (target labels) of that suite and variant among the targets."""
        return {t.label for t in self.cell_targets if t.cell.suite.name == suite and t.cell.variant.name == variant}

    def incremental(self) -> None:
        log("\n== 3. incremental: one skip entry added to one variant's expectations ==")
        choice = next(((s, v, pick_test(self.bazel_reports, lab)) for s, v in self.variants_by_cost() for lab in sorted(self.expected_labels(s, v))
                       if pick_test(self.bazel_reports, lab)), None)  # fmt: skip
        if choice is None:
            self.results.missing("incremental: no non-base variant with a passing test among the targets")
            return
        suite, variant, nodeid = choice
        self.incremental_variant = (suite, variant)
        # The targets that run that test, one per device (the whole cell's, or its file's under `granularity: file`).
        expected = {c.target_of(nodeid).label for c in self.cells if (c.suite.name, c.variant.name) == (suite, variant)}
        with MatrixEdit(self.copy, self.python, self.tool_env) as edit:
            changed = edit.change(add_entry(suite, variant, "skip", nodeid, "bench_matrix: incremental-build probe"))
            log(edit.diff.rstrip())
            log(f"  regenerated: {', '.join(changed) or '(nothing)'}")
            bep = self.logs / "bep_incremental.json"
            run = self.bazel.run(
                "incremental", "test", "--keep_going", f"--build_event_json_file={bep}", *self.targets, timeout=max(self.left(), 60)
            )
        log("  matrix.yaml and BUILD files of the copy restored")
        executed = self.executed_targets(bep)
        ex = run.executed
        # A target that failed before runs again anyway (failures are never cached): not caused by the edit.
        cacheable = executed - (self.cold_failed - expected)
        verdict = "exactly the targets running that test" if cacheable == expected else f"DIFFERENT: expected {sorted(expected)}, got {sorted(cacheable)}"
        self.results.add(f"incremental: one skip added to {suite}/{variant}", fmt_s(run.wall_s),
                         (f"executed {ex[0]} out of {ex[1]} tests" if ex else f"exit {run.rc}") + f"; skip {nodeid}")  # fmt: skip
        self.results.add("  targets executed", str(len(executed)), f"{', '.join(sorted(cacheable)) or '(none)'}: {verdict}"
                         + (f"; plus {len(executed - cacheable)} that failed before (never cached)" if executed - cacheable else ""))  # fmt: skip

    # -- 4. selective rerun -------------------------------------------------------------------------

    def rerun(self) -> None:
        log("\n== 4. selective rerun: plant one failure, report, rerun --failed ==")
        from tools.matrix import rerun as matrix_rerun
        from tools.matrix import statuses
        from tools.matrix.collect import read_bep
        from tools.matrix.filters import RERUN_FAILED
        from tools.matrix.report import COMPAT_JSON, load_json

        # A real xfail entry of a cell among the targets, if there is one; else an xfail for a passing test.
        # The cheapest variant first, preferably not the one the incremental step edited.
        by_cost = self.variants_by_cost(with_base=True)
        prefer = [k for k in by_cost if k != getattr(self, "incremental_variant", None)] + by_cost
        planted = None
        for s, v in prefer:
            cell = next((c for c in self.cells if (c.suite.name, c.variant.name) == (s, v) and c.expectations.xfail), None)
            if cell:
                planted = ("remove", s, v, cell.device.name, cell.expectations.xfail[0][0])
                break
        if planted is None:
            for s, v in prefer:
                nodeid = next(
                    (
                        pick_test(self.bazel_reports, lab)
                        for lab in sorted(self.expected_labels(s, v))
                        if pick_test(self.bazel_reports, lab)
                    ),
                    None,
                )
                if nodeid:
                    planted = ("add", s, v, "", nodeid)
                    break
        if planted is None:
            self.results.missing("rerun: no xfail entry and no passing test among the targets to plant a failure with")
            return
        how, suite, variant, device, nodeid = planted
        labels = sorted(self.expected_labels(suite, variant))
        flags = ["--failed"] if how == "remove" else ["--failed", "--xpassed"]  # an xpass is not a --failed status
        out_dir = self.logs / "reports"
        with MatrixEdit(self.copy, self.python, self.tool_env) as edit:
            if how == "remove":
                changed = edit.change(remove_entry(suite, variant, device, nodeid))
            else:
                changed = edit.change(
                    add_entry(suite, variant, "xfail", nodeid, "bench_matrix: planted xfail for a passing test (expect xpassed)")
                )
            log(edit.diff.rstrip())
            log(f"  regenerated: {', '.join(changed) or '(nothing)'}")
            run = self.bazel.run("planted", "test", "--keep_going", *labels, timeout=max(self.left(), 60))
            rep = subprocess.run([self.python, str(self.copy / "tools/matrix/cli.py"), "--workspace", str(self.copy), "report", "--no-run", "--out", str(out_dir)],
                                 cwd=self.copy, env=self.tool_env, capture_output=True, text=True, timeout=max(self.left(), 60))  # fmt: skip
            (self.logs / "report_no_run.log").write_text(rep.stdout + rep.stderr)
            if not (out_dir / COMPAT_JSON).is_file():
                raise RuntimeError(f"report --no-run wrote no {COMPAT_JSON} (exit {rep.returncode}); see {self.logs / 'report_no_run.log'}")
            records = load_json(out_dir / COMPAT_JSON)[1]
            wanted = RERUN_FAILED | ({statuses.XPASSED} if "--xpassed" in flags else frozenset())
            failing = {(r.target, r.test) for r in records if r.status in wanted}
            ns = argparse.Namespace(suite=[], variant=[], device=[], tests=[], failed=True, xpassed="--xpassed" in flags)
            groups = matrix_rerun.plan(self.matrix_now(), ns, records)
            planned = {label for labels in groups.values() for label in labels}  # the targets rerun may run
            log(f"  report: {len(failing)} failing test(s) ({', '.join(sorted(wanted))}) in {len({t for t, _ in failing})} target(s)")
            t = time.monotonic()
            rr = subprocess.run([self.python, str(self.copy / "tools/matrix/cli.py"), "--workspace", str(self.copy), "rerun", *flags, "--out", str(out_dir)],
                                cwd=self.copy, env=self.tool_env, capture_output=True, text=True, timeout=max(self.left(), 60))  # fmt: skip
            rerun_s = time.monotonic() - t
            (self.logs / "rerun.log").write_text(rr.stdout + rr.stderr)
            for line in (rr.stdout + rr.stderr).splitlines():
                if line.startswith(("+ ", "rerun:", "nothing to rerun", "error:", "Executed")):
                    log("    | " + line[:300])
            beps = sorted(out_dir.glob("bep.*.json"))
            ran_targets = {lab for b in beps for lab, res in read_bep(b).items() if res.cached and not all(res.cached.values())}
            # Only what the rerun executed: a target it did not run still holds the planted run's report.
            after = cell_reports(self.testlogs, [t for t in self.matrix_now().targets() if t.label in planned & ran_targets])
            rerun_tests = {(lab, t["nodeid"]) for (lab, _s), rep_ in after.items() for t in rep_.get("tests", [])}
        log("  matrix.yaml and BUILD files of the copy restored")
        execs = re.findall(r"Executed (\d+) out of (\d+) tests?", rr.stdout + rr.stderr)
        what = f"{'xfail removed' if how == 'remove' else 'xfail added (xpass)'}: {nodeid}"
        self.results.add(
            f"rerun: one failure planted in {suite}/{variant}",
            fmt_s(run.wall_s),
            f"bazel test of its {len(labels)} target(s), exit {run.rc}; {what}",
        )
        per_target: dict[str, int] = {}
        for target, _test in failing:
            per_target[target] = per_target.get(target, 0) + 1
        self.results.add(
            "  report --no-run: failing tests", str(len(failing)), ", ".join(f"{k} {n}" for k, n in sorted(per_target.items()))
        )
        note = f"`rerun {' '.join(flags)}` exit {rr.returncode} in {rerun_s:.1f}s; targets executed: {', '.join(sorted(ran_targets)) or '(none)'}"
        if execs:
            note += f"; bazel: executed {'+'.join(e[0] for e in execs)} target(s)"
        self.results.add("  rerun: tests executed", str(len(rerun_tests)), note)
        verdict = (
            "equal (target met)"
            if rerun_tests == failing
            else (f"DIFFERENT: {len(rerun_tests - failing)} extra, {len(failing - rerun_tests)} missing")
        )
        self.results.add("  rerun tests vs failing tests", f"{len(rerun_tests)} vs {len(failing)}", verdict)

    def matrix_now(self):
        from tools.matrix import config

        return config.load(self.copy / "matrix.yaml", self.copy)

    # -- 5. tools -----------------------------------------------------------------------------------

    def tools(self) -> None:
        log("\n== 5. tools: generator and report renderers (bench_generate / bench_report) ==")
        import bench_generate
        import bench_report

        log("generator: load + validate + write BUILD files")
        log(f"{'targets':>8} {'seconds':>9} {'growth':>8}")
        previous = None
        for size in bench_generate.SIZES:
            cells, seconds = bench_generate.measure(size)
            log(f"{cells:>8} {seconds:>9.3f} {f'{seconds / previous:.1f}x' if previous else '-':>8}")
            self.results.add(f"generate {cells} targets", fmt_s(seconds), "bench_generate.measure")
            previous = seconds
        log("report renderers: write_reports (json+md+html) + terminal_summary")
        log(f"{'records':>9} {'write_reports':>14} {'terminal':>9} {'total':>8} {'growth':>7} {'cpu main':>9} {'cpu child':>10} {'MB':>6}")
        previous = None
        for n in bench_report.SIZES:
            write_s, term_s, cpu_main, cpu_child, size = bench_report.run_once(bench_report.make_records(n), None)
            total = write_s + term_s
            log(
                f"{n:>9} {write_s:>14.3f} {term_s:>9.3f} {total:>8.3f} {f'{total / previous:.2f}x' if previous else '-':>7} {cpu_main:>9.3f} {cpu_child:>10.3f} {size:>6.1f}"
            )
            self.results.add(
                f"report {n} records", fmt_s(total), f"write_reports {write_s:.2f} s + terminal {term_s:.2f} s (bench_report.run_once)"
            )
            previous = total

    # -- 6. transform -------------------------------------------------------------------------------

    def transform(self) -> None:
        log("\n== 6. per variant: transform, differential-check and evidence cost per test, relative to base (cold run's report.json) ==")
        per: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        for target in self.cell_targets:
            c = target.cell
            tests = per.setdefault((c.suite.name, c.variant.name), {})
            for t in tests_of(self.bazel_reports, target.label):
                tests[(c.device.name, t["nodeid"])] = t
        if not per:
            self.results.missing("transform: no report.json from the cold run")
            return
        log(VARIANT_COST_HEADER)
        self.results.add("transform per test (passed in both; ratios to the suite's base)", "", "")
        for cost in variant_costs(per):
            log(cost.line())
            if cost.tests:
                self.results.add(f"  {cost.suite}/{cost.variant}", f"{cost.ratio:.2f}x", cost.note())

    # -- driver -------------------------------------------------------------------------------------

    def step(self, name: str, fn) -> bool:
        if name in self.args.skip:
            self.results.missing(f"{name} (--skip {name})")
            return False
        if not self.budget_ok(name):
            return False
        try:
            fn()
            return True
        except (Exception, subprocess.TimeoutExpired) as e:  # report and go on: one broken step must not hide the others
            self.results.missing(f"{name}: {type(e).__name__}: {str(e)[:500]}")
            return False

    def run(self) -> int:
        try:
            self.setup()
            self.results.add("python environment", "", self.pyenv_note)
            if not self.step("cold", self.cold):
                self.results.missing("noop, incremental, rerun, transform: they need the cold run")
            else:
                self.step("noop", self.noop)
                self.step("variant_edit", self.variant_edit)
                self.step("runtime_edit", self.runtime_edit)
                self.step("file_edit", self.file_edit)
                if any(s not in self.args.skip for s in ("variant_edit", "runtime_edit", "file_edit")):
                    self.step("incremental", lambda: (self.settle("incremental"), self.incremental()))
                else:
                    self.step("incremental", self.incremental)
                self.step("rerun", self.rerun)
                self.step("transform", self.transform)
            self.step("tools", self.tools)
        except KeyboardInterrupt:
            log("\ninterrupted: cleaning up")
            self.results.missing("the rest: interrupted")
        finally:  # only what this run owns: a run refused by the locks must not touch the other's server or copy
            if self.owns and hasattr(self, "bazel"):
                self.bazel.shutdown()
            if self.owns and self.copy.exists() and not self.args.keep_copy and (self.copy / COPY_MARKER).exists():
                shutil.rmtree(self.copy, ignore_errors=True)
        self.results.print()
        log(f"\ntotal {time.time() - self.started:.0f} s; logs in {getattr(self, 'logs', '-')}; output base {self.args.output_base} "
            f"(remove it with `bazel --output_base={self.args.output_base} clean --expunge`)")  # fmt: skip
        return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    p.add_argument(
        "--targets",
        action="append",
        default=[],
        help="Bazel target patterns (repeatable or comma-separated; default //:device_cpu, every CPU cell)",
    )
    p.add_argument("--quick", action="store_true", help=f"a small slice: {' '.join(QUICK_TARGETS)} (their CPU cells)")
    p.add_argument(
        "--workspace",
        default=os.environ.get("BUILD_WORKSPACE_DIRECTORY") or str(ROOT),
        help="the matrix workspace (default: where `bazel run` was called)",
    )
    p.add_argument(
        "--output-base",
        default="/tmp/bench_ob",
        help="the benchmark's own Bazel output base (default /tmp/bench_ob; never the workspace's)",
    )
    p.add_argument(
        "--copy",
        default="/tmp/bench_ws",
        help="where to copy the workspace to (default /tmp/bench_ws; removed at the end unless --keep-copy)",
    )
    p.add_argument("--keep-copy", action="store_true")
    p.add_argument(
        "--pyenv",
        default="auto",
        help="the @pyenv repository to reuse (auto: this interpreter's / the workspace's), or `own` to build one in the output base",
    )
    p.add_argument(
        "--jobs", type=int, default=2, help="tests at a time, for both Bazel (--local_test_jobs) and the plain processes (default 2)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="cold bazel + plain rounds, alternating (default 1, --quick 2); the ratio's median is shown",
    )
    p.add_argument("--repeat", type=int, default=3, help="repetitions of the start-up probes (default 3)")
    p.add_argument("--skip", action="append", default=[], choices=SKIPPABLE, help="leave a measurement out (repeatable)")
    p.add_argument(
        "--granularity",
        action="append",
        default=[],
        metavar="SUITE=G[,G...]",
        help="set a suite's granularity (cell|file) in the copy before the cold run (repeatable); with several values, one cold "
        "Bazel run per value against the same plain run, the last one kept for the later steps (e.g. export_tests=cell,file)",
    )
    p.add_argument(
        "--edit-test-file",
        default=DEFAULT_EDIT_TEST_FILE,
        help=f"the test file the file-edit step appends a comment to (default {DEFAULT_EDIT_TEST_FILE}; its suite is set to "
        "granularity: file in the copy unless it already is)",
    )
    p.add_argument(
        "--budget-min", type=float, default=None, help="stop starting measurements after this many minutes (default 240, --quick 90)"
    )
    args = p.parse_args(argv)
    try:
        args.granularity_runs = parse_granularity(args.granularity)
    except ValueError as e:
        p.error(f"--granularity {e}")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 1
    args.rounds = max(1, args.rounds)
    if args.budget_min is None:
        args.budget_min = 90.0 if args.quick else 240.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _ensure_python(Path(args.workspace))
    bench = Benchmark(args)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return bench.run()


if __name__ == "__main__":
    sys.exit(main())
