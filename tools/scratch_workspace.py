"""A scratch workspace built the way a user builds one, for the tests that run the real tools under
real Bazel (the fault drill, the remote-execution integration test).

It holds a copy of WORKSPACE, .bazelignore, requirements.txt and tools/ (without the tools' own
tests and these two tests), the directories the caller names (suites, a plug-in's package), and the
matrix.yaml the caller writes; `generate` is left to the caller, as it is to a user. Its .bazelrc is
the project's (user.bazelrc still imported) plus the caller's lines, and reuses this build's @pyenv
so that nothing is pip-installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

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


def discard(root: Path, ws: Path, env: dict[str, str]) -> None:
    """The end of a drill: stop the scratch workspace's Bazel server, then remove `root` (all the
    drill wrote: workspace, output base, logs) unless MATRIX_DRILL_KEEP is set."""
    subprocess.run(["bazel", "shutdown"], cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)
    if os.environ.get("MATRIX_DRILL_KEEP"):
        print(f"kept {root}")
        return
    subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)  # Bazel's output base is read-only
    shutil.rmtree(root, ignore_errors=True)
