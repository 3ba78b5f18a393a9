"""The benchmark's own Bazel: a client in its own output base (never the workspace's), with --symlink_prefix=/,
run in a copy of the workspace; the @pyenv it reuses through a mirror; the locks that keep two runs off one
output base or copy; and the Python environment the benchmark itself needs."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matrix_bench.summary import log

COPY_MARKER = ".bench_matrix_copy"
# Bazel commands that take build options (and so --symlink_prefix); query-like ones take only the repo flags.
BUILD_LIKE = ("build", "test", "run", "info", "coverage", "clean")
REPO_LIKE = ("query", "cquery", "aquery", "fetch", "sync")


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


def ensure_python(workspace: Path) -> None:
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



# --------------------------------------------------------------------------------------------------
# The workspace copy, the locks, the @pyenv mirror.


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


