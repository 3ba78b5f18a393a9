"""Where a run came from, for the history: the workspace's git commit, whether its tree was dirty, the host."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 10


def _git(workspace: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(workspace), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(workspace: Path) -> tuple[str | None, bool | None]:
    """(HEAD's commit, whether the tree has changes git would commit or untracked files it does not
    ignore); (None, None) outside a git checkout or without git."""
    head = _git(workspace, "rev-parse", "--verify", "HEAD")
    if head is None:
        return None, None
    status = _git(workspace, "status", "--porcelain")
    return head.strip(), None if status is None else bool(status.strip())


def host() -> str:
    return socket.gethostname()
