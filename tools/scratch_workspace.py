"""A scratch workspace built the way a user builds one, for the tests that run the real tools under
real Bazel (the fault drill, the remote-execution integration test).

It holds a copy of WORKSPACE, .bazelignore, requirements.txt and tools/ (without the tools' own
tests and these two tests), the directories the caller names (suites, a plug-in's package), and the
matrix.yaml the caller writes; `generate` is left to the caller, as it is to a user. Its .bazelrc is
the project's (user.bazelrc still imported) plus the caller's lines, and reuses this build's @pyenv
so that nothing is pip-installed.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

from tools.matrix.runtime import warm_start

COPIED_FILES = ("WORKSPACE", "requirements.txt", ".bazelignore")
# Not part of what a user copies: the tools' own tests, the drill, the remote integration test.
NOT_COPIED = shutil.ignore_patterns("__pycache__", "tests", "remote", "drill", "bazel-*")
TOOLCHAIN = Path("tools") / "bazel" / "remote"  # the remote toolchain, which NOT_COPIED's "remote" also matches


def project_pyenv() -> Path:
    """This build's @pyenv repository (the Python environment of `bazel run`'s runfiles)."""
    frozen = Path(os.environ["RUNFILES_DIR"]) / "pyenv" / "frozen_requirements.txt"
    return frozen.resolve().parent


def nested_env() -> dict[str, str]:
    """The environment for a nested `bazel` or CLI process: without this process's test environment
    (`bazel run` of a test sets HOME to a scratch directory), runfiles or Python settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNFILES_", "PYTHON", "JAVA_RUNFILES", "BUILD_", "TEST_"))}
    env["HOME"] = pwd.getpwuid(os.geteuid()).pw_dir
    return env


def scratch_workspace(source: Path, ws: Path, pyenv: Path, matrix_yaml: str, dirs: Iterable[Path] = (), rc: str = "") -> Path:
    """Create `ws` from the checkout at `source`: each of `dirs` is copied to `ws/<its name>`;
    `rc` is appended to the copied .bazelrc."""
    ws.mkdir()
    for name in COPIED_FILES:
        shutil.copy2(source / name, ws / name)
    shutil.copytree(source / "tools", ws / "tools", ignore=NOT_COPIED, symlinks=True)
    shutil.copytree(source / TOOLCHAIN, ws / TOOLCHAIN)
    for directory in dirs:
        shutil.copytree(directory, ws / directory.name, ignore=shutil.ignore_patterns("__pycache__"))
    (ws / "matrix.yaml").write_text(matrix_yaml)
    settings = (source / ".bazelrc").read_text()
    (ws / ".bazelrc").write_text(f"{settings}\n# The scratch workspace's own settings.\nbuild --override_repository=pyenv={pyenv}\n{rc}")
    return ws


def drill_workspace(source: Path, prefix: str, matrix_yaml: str, dirs: Iterable[Path]) -> tuple[Path, Path, dict[str, str], list[str]]:
    """A drill's scratch workspace (see scratch_workspace) in a new temporary directory, with its own
    output base: `report` runs a plain `bazel test` there. Returns (the temporary directory, the
    workspace, the environment for nested commands, the matrix CLI's command line)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    pyenv = project_pyenv()
    own_output_base = f"startup --output_base={root / 'ob'}\nstartup --max_idle_secs=300\n"
    ws = scratch_workspace(source, root / "ws", pyenv, matrix_yaml, dirs, own_output_base)
    cli = [str(pyenv / "venv" / "bin" / "python3"), str(ws / "tools" / "matrix" / "cli.py"), "--workspace", str(ws)]
    env = nested_env()
    env[warm_start.DIR_ENV] = str(root / "warm")  # the drill's own warm launcher: `report` starts it, discard stops it
    return root, ws, env, cli


def check_warm(ws: Path) -> list[str]:
    """What is wrong with the claim that every test process of every cell of `ws`'s last run (the
    first and each one after a crash) was forked warm: a drill's tests hit the warm path (`report
    --cold` and the tools' tests keep the cold one tested)."""
    zips = sorted((ws / "bazel-testlogs").glob("**/outputs.zip"))
    wrong = [] if zips else ["no outputs.zip to read the test processes' starts from"]
    for zip_path in zips:
        with zipfile.ZipFile(zip_path) as z:
            starts = json.loads(z.read("report.json"))["matrix"]["starts"]
        if not starts or set(starts) != {"warm"}:
            wrong.append(f"{zip_path.relative_to(ws / 'bazel-testlogs')}: test processes started {starts}, not all warm")
    return wrong


def run_step(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout_s: float) -> tuple[int, str]:
    """One step of a drill: prints the command, keeps its output in `log`, prints how it ended.
    Returns (exit status, output)."""
    print(f"$ {' '.join(argv)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
    log.write_text(proc.stdout)
    print(f"  exit {proc.returncode} in {time.monotonic() - started:.0f}s (log: {log})", flush=True)
    return proc.returncode, proc.stdout


def discard(root: Path, ws: Path, env: dict[str, str]) -> None:
    """Stop the scratch workspace's Bazel server and remove `root` (kept when MATRIX_DRILL_KEEP is set)."""
    subprocess.run(["bazel", "shutdown"], cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
    if warm_start.DIR_ENV in env:  # the drill's warm launcher stops its zygotes as it ends
        try:
            warm_start.ask(Path(env[warm_start.DIR_ENV]) / warm_start.LAUNCHER_SOCKET, {"op": "stop"}, 30.0)[0].close()
        except (OSError, warm_start.WarmUnavailable):
            pass  # none runs
    if os.environ.get("MATRIX_DRILL_KEEP"):
        print(f"kept {root}")
    else:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)
