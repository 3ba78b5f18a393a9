"""The warm start's launcher: a small daemon, outside Bazel, that starts zygotes when cells ask.

Bazel 4.2.3 ends whatever a test leaves running (linux-sandbox puts each test in a pid namespace
whose end kills every process in it; the processwrapper sandbox kills the test's process tree), so
a zygote cannot be started by the test that first needs it: something outside Bazel must start it.
`report` and `rerun` start this launcher (and `bazel run //tools:matrix -- warm start` does, for a
plain `bazel test`). It imports nothing heavy and knows nothing of the matrix: a cell sends the key
of the zygote it needs (warm_key.py) and its environment, and the launcher starts that zygote,
unless it runs already, and answers with its socket.

It runs only its own code and its own interpreter: the zygote.py of the runtime it was started from,
with the interpreter that runs it. A cell whose key is not the one the launcher computes for that
environment (another runtime, another Python environment) is refused and starts cold; `report`
restarts a launcher whose runtime is not the workspace's.

Bounds: at most MAX_ZYGOTES zygotes at a time (the least recently asked for is stopped to make
room), each refused above MAX_ZYGOTE_RSS of memory; a zygote ends after ZYGOTE_IDLE_S without a
request, and the launcher after LAUNCHER_IDLE_S without one (stopping its zygotes). Everything lives
in warm_start.state_dir() (a private directory, mode 0700): the sockets, each zygote's source and
log. `warm stop` stops them all and removes the directory's contents.

    python -m tools.matrix.runtime.warm_launcher      # serves in the foreground (warm.py daemonises it)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.matrix.runtime import warm_key, zygote
from tools.matrix.runtime.warm_start import LAUNCHER_SOCKET, ZYGOTE_START_S, state_dir

# Never in a zygote's environment: they would load code of the asker's choosing outside its sandbox.
REFUSED_ENV = ("LD_PRELOAD", "LD_AUDIT", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONINSPECT")

MAX_ZYGOTES = 2
MAX_ZYGOTE_RSS = 6 << 30  # bytes: a zygote is torch and the export stack, imported (~1 GiB)
ZYGOTE_IDLE_S = 900.0
ZYGOTE_MAX_LIFE_S = 4 * 3600.0
LAUNCHER_IDLE_S = 1800.0


OTHER = {"runtime": "runtime", "environment": "Python environment", "key": "runtime or Python environment"}


class Refused(Exception):
    """A request the launcher will not serve (the cell starts cold, saying why)."""


@dataclass
class Zygote:
    key: str
    process: subprocess.Popen
    socket: Path
    last_used: float = field(default_factory=time.monotonic)

    def alive(self) -> bool:
        return self.process.poll() is None and self.socket.exists()

    def stop(self) -> None:
        """End it (the children it forked live on: they are their cells'), remove its socket and files."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.socket.unlink(missing_ok=True)
        shutil.rmtree(self.socket.with_suffix(""), ignore_errors=True)


def same_interpreter(python: str, ours: str) -> bool:
    """Whether `python` is our interpreter, in our virtual environment, maybe under another name or
    through a link to its directory (venv/bin/python3 vs python; a drill's output base whose
    external/pyenv links to this build's): the zygote runs the path the target runs (its key has it)."""
    same_dir = os.path.realpath(os.path.dirname(python)) == os.path.realpath(os.path.dirname(ours))
    return python == ours or (same_dir and os.path.realpath(python) == os.path.realpath(ours))


def rss(pid: int) -> int:
    """Resident memory of `pid`, in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Launcher:
    def __init__(self, directory: Path, idle_s: float = LAUNCHER_IDLE_S, zygote_idle_s: float = ZYGOTE_IDLE_S) -> None:
        self.directory, self.idle_s, self.zygote_idle_s = directory, idle_s, zygote_idle_s
        self.python = sys.executable  # as invoked, not resolved: a virtual environment is known by that path
        self.source = Path(zygote.__file__).read_text()  # read now: the runfiles it came from may change
        self.runtime = warm_key.runtime_digest()
        self.zygotes: dict[str, Zygote] = {}
        self.lock = threading.Lock()  # self.zygotes
        self.starting: dict[str, threading.Lock] = {}  # one start per key at a time
        self.last = time.monotonic()
        self.stopping = False
        self.path = directory / LAUNCHER_SOCKET
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        self.listener.settimeout(1.0)
        self.inode = os.stat(self.path).st_ino

    def serve(self) -> None:
        while not self.stopping:
            if not self._still_ours() or (time.monotonic() - self.last > self.idle_s and not self._alive()):
                break
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.last = time.monotonic()
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()
        self.close()

    def _still_ours(self) -> bool:
        try:
            return os.stat(self.path).st_ino == self.inode
        except OSError:
            return False

    def _alive(self) -> list[Zygote]:
        with self.lock:
            for key, z in list(self.zygotes.items()):
                if not z.alive():
                    z.stop()
                    del self.zygotes[key]
            return list(self.zygotes.values())

    def close(self) -> None:
        self.listener.close()
        if self._still_ours():
            self.path.unlink(missing_ok=True)
        with self.lock:
            for z in self.zygotes.values():
                z.stop()
            self.zygotes.clear()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                message, fds = zygote.receive(conn)
                for fd in fds:
                    os.close(fd)
                conn.settimeout(None)
                if message is None:
                    return
                if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
                    answer: dict[str, Any] = {"error": "the launcher serves its own user only"}
                elif message.get("protocol", zygote.PROTOCOL) != zygote.PROTOCOL:
                    answer = {"error": f"protocol {message.get('protocol')!r}; the running launcher speaks {zygote.PROTOCOL} (`warm stop`)"}
                else:
                    answer = self.answer(message)
                zygote.send(conn, answer)
            except (OSError, ValueError) as e:
                print(f"launcher: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "status":
            zygotes = [{"key": z.key, "pid": z.process.pid, "rss": rss(z.process.pid)} for z in self._alive()]
            return {"pid": os.getpid(), "python": self.python, "runtime": self.runtime, "zygotes": zygotes}
        if op == "stop":
            self.stopping = True
            return {"stopped": len(self._alive())}
        if op == "zygote":
            try:
                return {"socket": str(self.zygote(message))}
            except Refused as e:
                return {"error": str(e)}
            except (KeyError, TypeError, OSError, RuntimeError) as e:
                return {"error": f"the zygote could not start: {type(e).__name__}: {e}"}
        return {"error": f"unknown request {op!r}"}

    def zygote(self, message: dict[str, Any]) -> Path:
        key, python, env = message["key"], message["python"], message["env"]
        if not same_interpreter(python, self.python):
            raise Refused(f"the warm launcher runs {self.python}, this target {python}")
        if not isinstance(env, dict) or any(not isinstance(v, str) for v in env.values()):
            raise Refused("not an environment")
        refused = sorted(set(env) & set(REFUSED_ENV))
        if refused:
            raise Refused(f"the environment sets {', '.join(refused)}, which a zygote never takes")
        if warm_key.key(python, env, self.runtime) != key:
            other = [what for what, ours in (("runtime", self.runtime), ("environment", warm_key.environment_digest()))
                     if message.get(what) != ours] or ["key"]  # fmt: skip
            raise Refused(f"the warm launcher was started from another {' and '.join(OTHER[o] for o in other)} than this target's "
                          "(`bazel run //tools:matrix -- warm start` restarts it)")  # fmt: skip
        with self.lock:
            starting = self.starting.setdefault(key, threading.Lock())
        with starting:
            with self.lock:
                known = self.zygotes.get(key)
                if known is not None and known.alive():
                    known.last_used = time.monotonic()
                    return known.socket
            self._make_room()
            started = self._start(key, python, env)
            with self.lock:
                self.zygotes[key] = started
            return started.socket

    def _make_room(self) -> None:
        alive = sorted(self._alive(), key=lambda z: z.last_used)
        for z in alive[: max(0, len(alive) - MAX_ZYGOTES + 1)]:
            with self.lock:
                self.zygotes.pop(z.key, None)
            z.stop()

    def _start(self, key: str, python: str, env: dict[str, str]) -> Zygote:
        home = self.directory / key
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(mode=0o700)
        script = home / "zygote.py"
        script.write_text(self.source)
        sock = self.directory / f"{key}.sock"
        sock.unlink(missing_ok=True)
        ready_r, ready_w = os.pipe()
        with open(home / "log.txt", "ab") as log:
            process = subprocess.Popen(
                [python, str(script), str(sock), str(ready_w), str(self.zygote_idle_s), str(ZYGOTE_MAX_LIFE_S)],
                cwd=home, env={**env, "HOME": str(home), "TMPDIR": str(home)}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, pass_fds=(ready_w,), start_new_session=True,
            )  # fmt: skip
        os.close(ready_w)
        z = Zygote(key, process, sock)
        with os.fdopen(ready_r, "rb") as ready:
            line = _read_line(ready, ZYGOTE_START_S).decode(errors="replace").strip()
        if not line.startswith("ready"):
            z.stop()
            tail = (home / "log.txt").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{line or 'it exited before it was ready'}; its log ends:\n{tail}")
        size = rss(process.pid)
        if size > MAX_ZYGOTE_RSS:
            z.stop()
            raise RuntimeError(f"it takes {size >> 20} MiB (at most {MAX_ZYGOTE_RSS >> 20} MiB)")
        return z


def _read_line(stream: Any, timeout: float) -> bytes:
    """The first line the zygote writes on its ready pipe ("" at EOF or after `timeout`)."""
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else b""


def main() -> int:
    directory = state_dir()
    directory.mkdir(mode=0o700, exist_ok=True)
    try:
        launcher = Launcher(directory)
    except OSError as e:  # another launcher took the socket first
        print(f"launcher: {e}", file=sys.stderr)
        return 1
    os.chdir(directory)  # not the runfiles it was started from, which a rebuild may replace
    signal.signal(signal.SIGTERM, lambda *_: setattr(launcher, "stopping", True))
    print(f"launcher {os.getpid()} serving on {launcher.path}", flush=True)
    launcher.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
