"""Running Bazel from the tools (nested calls from `bazel run` work: the server lock is released)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


class BazelNotFound(Exception):
    pass


class BazelFailed(Exception):
    """A bazel command the tool needs (`bazel info`, a build) failed; the message says which and why."""


# `bazel test` exit statuses that still leave results to collect: success, some tests failed, no tests.
TEST_RESULTS_EXIT = frozenset({0, 3, 4})


def bazel_binary() -> str:
    found = os.environ.get("BAZEL") or shutil.which("bazel")
    if not found:
        raise BazelNotFound("bazel is not on PATH; run `make setup` (installs Debian's bazel-bootstrap) or set BAZEL")
    return found


def quote(argv: list[str]) -> str:
    return shlex.join(argv)


def run(argv: list[str], workspace: Path) -> int:
    """Print, then run, a bazel command in the user's workspace; return its exit status."""
    print(f"+ {quote(argv)}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNFILES_", "PYTHON"))}
    return subprocess.run([bazel_binary(), *argv[1:]] if argv[0] == "bazel" else argv, cwd=workspace, env=env, stdout=sys.stdout, stderr=sys.stderr).returncode


def info(key: str, workspace: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNFILES_", "PYTHON"))}
    out = subprocess.run([bazel_binary(), "info", key], cwd=workspace, env=env, capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        said = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BazelFailed(f"`bazel info {key}` failed in {workspace} (exit status {out.returncode}): {said}")
    return Path(out.stdout.strip())
