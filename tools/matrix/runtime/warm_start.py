"""cell_main's side of the warm start: its pytest child forked by a zygote instead of started cold.

`start` asks the zygote of the child's key (warm_key.py) for a child, through the launcher
(warm_launcher.py) when that zygote is not running yet, and returns a WarmProcess, which cell_main
uses as it uses a subprocess.Popen: the child's pid (in cell_main's pid namespace: cell_main signals
its group itself), its output pipe, its exit status. Whatever is missing or refuses (no launcher, a
zygote that cannot start, a sandbox it cannot join) raises WarmUnavailable, saying why, and
cell_main starts the child cold: the same child, the same results.

The child is what Popen would start, made so by the zygote (zygote.become): cell_main's namespaces
(its sandbox), credentials, descriptors (stdin, the output pipe as stdout and stderr, the journal at
the same number), working directory, environment, umask and limits, in a session of its own.
"""

from __future__ import annotations

import os
import resource
import select
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

from tools.matrix.runtime import warm_key, zygote

WARM_ENV = "MATRIX_WARM"  # `off` (or 0, false, no, cold): every child starts cold
OFF = ("off", "0", "false", "no", "cold")
LAUNCHER_SOCKET = "launcher.sock"
ZYGOTE_START_S = 600.0  # a zygote's imports take seconds; on a loaded machine, more
ANSWER_S = 60.0  # for the zygote to fork a child and for it to take cell_main's place


class WarmUnavailable(Exception):
    """Why this child cannot start warm (it starts cold)."""


DIR_ENV = "MATRIX_WARM_DIR"  # another state directory (the tools' own tests)


def state_dir() -> Path:
    """Where the launcher and the zygotes listen: one directory per user, in /tmp (which Bazel's
    sandboxes share with the host: a test can reach it, a process it leaves behind cannot live on)."""
    return Path(os.environ.get(DIR_ENV) or f"/tmp/torch-matrix-warm-{os.getuid()}")


def checked_state_dir() -> Path:
    """state_dir(), refused unless it is a directory of ours that nobody else can write to."""
    path = state_dir()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise WarmUnavailable(f"no warm launcher is running ({path} does not exist)") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise WarmUnavailable(f"{path} is not a private directory of uid {os.getuid()}")
    return path


def disabled(environ: dict[str, str]) -> str:
    """Why the environment turns the warm start off ("" when it does not)."""
    value = environ.get(WARM_ENV, "")
    return f"${WARM_ENV}={value}" if value.strip().lower() in OFF else ""


def connect(path: Path, timeout: float) -> socket.socket:
    """A connection to the launcher or a zygote, whose process must run as our uid."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except OSError:
        sock.close()
        raise
    if int.from_bytes(creds[4:8], "little") != os.getuid():
        sock.close()
        raise WarmUnavailable(f"{path} is served by another user")
    return sock


def ask(path: Path, message: dict[str, Any], timeout: float, fds: list[int] = ()) -> tuple[socket.socket, dict[str, Any]]:  # type: ignore[assignment]
    """Send `message` to the socket at `path`; (the connection, the first answer)."""
    sock = connect(path, timeout)
    try:
        zygote.send(sock, message, fds)
        answer, _ = zygote.receive(sock)
    except (OSError, ValueError) as e:
        sock.close()
        raise WarmUnavailable(f"{path.name}: {type(e).__name__}: {e}") from None
    if answer is None or "error" in answer:
        sock.close()
        raise WarmUnavailable(answer["error"] if answer else f"{path.name} closed the connection without an answer")
    return sock, answer


def zygote_socket(python: str, env: dict[str, str], directory: Path) -> Path:
    """The socket of the zygote for a child run by `python` with `env`, which the launcher starts
    unless it runs already."""
    launcher = directory / LAUNCHER_SOCKET
    request = {"op": "zygote", "protocol": zygote.PROTOCOL, "key": warm_key.key(python, env), "python": python, "env": warm_key.zygote_env(env),
               "runtime": warm_key.runtime_digest(), "environment": warm_key.environment_digest()}  # fmt: skip
    try:
        sock, answer = ask(launcher, request, ZYGOTE_START_S)
    except (FileNotFoundError, ConnectionRefusedError):
        raise WarmUnavailable(f"no warm launcher is running ({launcher})") from None
    sock.close()
    return Path(answer["socket"])


def _namespaces() -> tuple[list[str], list[int]]:
    names, fds = [], []
    for name in zygote.NAMESPACES:
        try:
            fds.append(os.open(f"/proc/self/ns/{name}", os.O_RDONLY | os.O_CLOEXEC))
            names.append(f"ns:{name}")
        except FileNotFoundError:  # a kernel without this kind of namespace
            pass
    return names, fds


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _rlimits() -> dict[str, tuple[int, int]]:
    return {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource) if name.startswith("RLIMIT_")}


class WarmProcess:
    """A warm child, as cell_main's _Child uses a subprocess.Popen: pid, stdout, wait, returncode."""

    def __init__(self, conn: socket.socket, pid: int, stdout_fd: int) -> None:
        self._conn, self.pid, self.returncode = conn, pid, None
        self.stdout = os.fdopen(stdout_fd, "rb", buffering=0)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is not None:
            return self.returncode
        if not select.select([self._conn], [], [], timeout)[0]:
            raise subprocess.TimeoutExpired(["warm child"], timeout or 0)
        try:
            answer, _ = zygote.receive(self._conn)
        except (OSError, ValueError):
            answer = None
        if answer is None or "exit" not in answer:
            # The keeper died without a word: the child dies with it (PR_SET_PDEATHSIG); make sure.
            try:
                os.killpg(self.pid, 9)
            except ProcessLookupError:
                pass
            self.returncode = -9
        else:
            self.returncode = int(answer["exit"])
        self._conn.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None


def start(command: list[str], env: dict[str, str], journal_fd: int, cwd: str | None = None) -> WarmProcess:
    """The child `command` (python -m pytest ...) with environment `env`, the journal at `journal_fd`
    and the working directory `cwd` (ours by default), forked by its zygote; WarmUnavailable when it
    cannot be."""
    why = disabled(env)
    if why:
        raise WarmUnavailable(why)
    python, dash_m, module, *argv = command
    if (dash_m, module) != ("-m", "pytest"):
        raise WarmUnavailable(f"not a pytest child: {command[:3]}")
    directory = checked_state_dir()
    path = directory / f"{warm_key.key(python, env)}.sock"
    names, ns_fds = _namespaces()
    read_end, write_end = os.pipe()
    request = {
        "protocol": zygote.PROTOCOL, "argv": argv, "cwd": cwd or os.getcwd(), "env": env, "journal_fd": journal_fd,
        "umask": _umask(), "rlimits": _rlimits(), "credentials": zygote.status_fields(),
        "runner_pid": os.getpid(), "fd_names": ["stdin", "stdout", "journal", *names],
    }  # fmt: skip
    try:
        for attempt in (1, 2):
            if attempt == 2 or not path.exists():  # not running (or gone since): the launcher starts it
                path = zygote_socket(python, env, directory)
            try:
                conn, answer = ask(path, request, ANSWER_S, [0, write_end, journal_fd, *ns_fds])
                break
            except (FileNotFoundError, ConnectionRefusedError):  # it ended (idle, stopped) since
                if attempt == 2:
                    raise WarmUnavailable(f"the zygote at {path} is gone") from None
    except (OSError, WarmUnavailable) as e:
        os.close(read_end)
        raise e if isinstance(e, WarmUnavailable) else WarmUnavailable(f"{path}: {e}") from None
    finally:
        os.close(write_end)
        for fd in ns_fds:
            os.close(fd)
    conn.settimeout(None)
    return WarmProcess(conn, int(answer["pid"]), read_end)
