"""The warm start's zygote: one Python process that has imported torch, pytest and the export stack
once, and forks the pytest child of each matrix target that asks for one, so that a target does not
pay those imports again (docs/architecture.md, "Warm start").

The launcher (warm_launcher.py) starts it with the interpreter and environment of the cell that
asked (the key, warm_key.py, digests both with the Python environment and the runtime's files), and
it serves on its socket until it has been idle IDLE_S or alive MAX_LIFE_S, or its launcher is gone. It only ever imports:
it runs no torch code, holds no device (it refuses to serve once a GPU driver library is loaded),
consumes no random numbers, and forks only from its one thread (with the pools its imports started,
which stop themselves at fork); its objects are frozen out of the garbage collector before the first
fork (the children's collections and their exit skip them).

A request comes from cell_main (warm_start.py) over the socket with cell_main's descriptors (stdin,
the output pipe, the journal) and namespaces (user, mount, pid, ...). The zygote forks a keeper,
which joins cell_main's namespaces (so the test sees exactly the sandbox Bazel gave cell_main: its
file system view, its pid namespace, its network) and forks the test process there; that process
takes cell_main's capabilities, descriptors, working directory, environment, umask and limits,
reports its pid, and runs `pytest` with cell_main's arguments. The keeper waits for it, sends its
exit status, and SIGKILLs it if cell_main goes away first.

This file imports nothing of the project (the zygote outlives the runfiles it was started from) and
is run as a script; warm_start.py imports it for the protocol (send/receive).
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from typing import Any

PROTOCOL = 1  # bumped when a message changes: a client and a zygote of different versions never talk
MAX_MESSAGE = 4 << 20  # bytes of one request (its environment, arguments and cell spec)
NAMESPACES = ("user", "mnt", "pid", "ipc", "uts", "net", "cgroup", "time")  # joined in this order: user first
# What the zygote imports: torch, pytest (not its plug-ins: pytest rewrites their asserts as it
# imports them, and warns about one imported before), and the modules
# the first call of the matrix's entry points and built-in variants import (torch.export.export,
# save/load, run_decompositions, torch._dynamo.export, torch.package): each import, never a call.
PRELOAD = (
    "torch", "pytest",
    "torch._dynamo", "torch.export", "torch.export._trace", "torch._export.serde.serialize", "torch._export.passes",
    "torch._export.converter", "torch._functorch.aot_autograd", "torch._functorch.compilers", "functorch.compile",
    "torch._decomp", "torch._refs", "torch._higher_order_ops", "torch.fx.experimental.symbolic_shapes",
    "torch.fx.experimental.validator", "torch.package", "torch._inductor", "torch._inductor.ir", "torch._dynamo.testing",
    "torch._dynamo.repro.after_dynamo", "torch.nn.attention.flex_attention", "torch.utils.serialization",
    "torch.distributed.tensor.experimental", "sympy", "sympy.combinatorics",
)  # fmt: skip
# A device driver's library in the zygote would be shared, initialised, with every child (CUDA does
# not survive fork): the zygote refuses to serve.
DRIVER_LIBRARIES = ("libcuda.so", "libamdhip64.so", "libhsa-runtime64.so", "libze_loader.so", "libnvidia-ml.so")
CAPABILITY_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Uid", "Gid", "Groups")

_libc = ctypes.CDLL(None, use_errno=True)


# -- the protocol: one JSON message per SOCK_SEQPACKET packet, descriptors alongside ------------------


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> None:  # type: ignore[assignment]
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a message of {len(data):,} bytes (at most {MAX_MESSAGE:,})")
    socket.send_fds(sock, [data], list(fds)) if fds else sock.sendall(data)


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and its descriptors; (None, []) when the other side closed."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, max_fds)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    message = json.loads(data)
    if not isinstance(message, dict):
        raise ValueError("not a message")
    return message, fds


def status_fields(pid: str = "self") -> dict[str, str]:
    """The credential lines of /proc/<pid>/status (capabilities, no_new_privs, seccomp, ids)."""
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in CAPABILITY_FIELDS:
                fields[name] = " ".join(value.split())
    return fields


# -- the zygote ------------------------------------------------------------------------------------


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # not installed here: that child imports what it needs itself
            pass


def why_not_pristine() -> str:
    """Why the zygote must not fork children ("" when it may)."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    loaded = [lib for lib in DRIVER_LIBRARIES if lib in maps]
    if loaded:
        return f"a device driver library is loaded ({', '.join(loaded)}): forking would share its state"
    torch = sys.modules.get("torch")
    if torch is not None:
        if torch.cuda.is_initialized():
            return "CUDA is initialised"
        fresh = torch.Generator().manual_seed(torch.initial_seed())
        # Compared as Python lists: a tensor op here could start an intra-op thread pool before a fork.
        if torch.default_generator.get_state().tolist() != fresh.get_state().tolist():
            return "torch's random number generator was used"
    return ""


class Zygote:
    def __init__(self, path: str, idle_s: float, max_life_s: float) -> None:
        self.path, self.idle_s, self.max_life_s = path, idle_s, max_life_s
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(path)
        os.chmod(path, 0o600)
        self.inode = os.stat(path).st_ino  # the launcher may put another zygote's socket at this path
        self.listener.listen(64)
        self.started = self.last = time.monotonic()
        self.children: set[int] = set()
        self.launcher = os.getppid()  # which bounds and stops us: without it, we end too

    def serve(self) -> tuple[socket.socket, dict[str, Any], list[int]] | None:
        """Fork a keeper per request. Returns in the test process only (its socket, request and
        descriptors); None in the zygote when it is time to end."""
        while True:
            self.reap()
            now = time.monotonic()
            if now - self.last > self.idle_s or now - self.started > self.max_life_s or not os.path.exists(self.path):
                return None
            if os.getppid() != self.launcher:  # the launcher died (killed: it could not stop us)
                return None
            if not select.select([self.listener], [], [], 1.0)[0]:
                continue
            conn, _ = self.listener.accept()
            self.last = time.monotonic()
            got = self.request(conn)
            if got is None:
                conn.close()
                continue
            request, fds = got
            why = why_not_pristine()
            if why:
                _refuse(conn, fds, f"the zygote cannot fork: {why}")
                return None
            pid = os.fork()
            if pid == 0:
                self.listener.close()
                return keeper(conn, request, fds)
            self.children.add(pid)
            conn.close()
            for fd in fds:
                os.close(fd)

    def close(self) -> None:
        """Stop listening; remove the socket unless it is another zygote's by now."""
        self.listener.close()
        try:
            if os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except OSError:
            pass

    def request(self, conn: socket.socket) -> tuple[dict[str, Any], list[int]] | None:
        conn.settimeout(10)
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            uid = int.from_bytes(creds[4:8], sys.byteorder)
            request, fds = receive(conn, max_fds=16)
        except (OSError, ValueError) as e:
            print(f"zygote: unreadable request: {e}", file=sys.stderr, flush=True)
            return None
        conn.settimeout(None)
        if request is None:
            return None
        if uid != os.getuid():
            _refuse(conn, fds, f"the client runs as uid {uid}, the zygote as {os.getuid()}")
            return None
        if request.get("protocol") != PROTOCOL:
            _refuse(conn, fds, f"protocol {request.get('protocol')!r}, the zygote speaks {PROTOCOL}")
            return None
        return request, fds

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)


def _refuse(conn: socket.socket, fds: list[int], why: str) -> None:
    for fd in fds:
        os.close(fd)
    try:
        send(conn, {"error": why})
    except OSError:
        pass
    conn.close()


# -- the keeper (a child of the zygote, in cell_main's namespaces) ----------------------------------


def keeper(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> tuple[socket.socket, dict[str, Any], dict[str, int]]:
    """Join cell_main's namespaces, fork the test process there and wait for it. Returns in the test
    process only (with its descriptors by name: stdin, stdout, journal); the keeper ends here."""
    named = dict(zip(request.get("fd_names", []), fds))
    try:
        join_namespaces({name[3:]: fd for name, fd in named.items() if name.startswith("ns:")})
        pid = os.fork()
    except Exception as e:  # noqa: BLE001 - whatever failed, cell_main starts this child cold
        _refuse(conn, fds, f"the warm child could not join cell_main's sandbox: {type(e).__name__}: {e}")
        os._exit(1)
    if pid == 0:
        for name, fd in named.items():
            if name.startswith("ns:"):
                os.close(fd)
        return conn, request, {name: fd for name, fd in named.items() if not name.startswith("ns:")}
    for fd in fds:
        os.close(fd)
    _keep(conn, pid)
    os._exit(0)


def join_namespaces(by_name: dict[str, int]) -> None:
    """setns(2) into each of cell_main's namespaces that is not ours already (user first: it gives
    the rights to join the others). Ours are read before joining any: once in cell_main's mount
    namespace, /proc is its pid namespace's, where this process has no entry."""
    ours = {name: os.stat(f"/proc/self/ns/{name}") for name in by_name}
    for name in NAMESPACES:
        fd = by_name.get(name)
        if fd is None:
            continue
        theirs = os.fstat(fd)
        if (theirs.st_dev, theirs.st_ino) != (ours[name].st_dev, ours[name].st_ino) and _libc.setns(fd, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")


def _keep(conn: socket.socket, pid: int) -> None:
    """Wait for the test process and send cell_main its exit status. If cell_main goes away first
    (its end of the socket closes), the test process and its group go too."""
    pidfd = os.pidfd_open(pid)
    watching = [conn, pidfd]
    while True:
        ready, _, _ = select.select(watching, [], [])
        if pidfd in ready:
            _, status = os.waitpid(pid, 0)
            try:
                send(conn, {"exit": os.waitstatus_to_exitcode(status)})
            except OSError:
                pass
            return
        if conn in ready:  # cell_main sends nothing after its request: this is its end closing
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            watching = [pidfd]


# -- the test process (in cell_main's namespaces, a child of the keeper) -----------------------------


def become(conn: socket.socket, request: dict[str, Any], named: dict[str, int]) -> None:
    """Make this process what cell_main's subprocess.Popen would have started, up to running pytest:
    its own session, cell_main's credentials, descriptors, working directory, umask, limits,
    environment and interpreter settings; then tell cell_main its pid. Anything that cannot be made
    equal is refused (cell_main then starts the child cold)."""
    try:
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the keeper's end is ours (it outlives cell_main by no more)
        take_credentials(request["credentials"])
        conn = _place_descriptors(conn, named, int(request["journal_fd"]))
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        for name, (soft, hard) in request["rlimits"].items():
            resource.setrlimit(getattr(resource, name), (soft, hard))
        _take_environment(request)
        now = status_fields()
        if now != request["credentials"]:  # e.g. a user namespace that maps our uid otherwise
            differ = sorted(k for k in set(now) | set(request["credentials"]) if now.get(k) != request["credentials"].get(k))
            raise OSError(f"credentials differ from cell_main's: {', '.join(differ)}")
    except Exception as e:  # noqa: BLE001
        _refuse(conn, [], f"the warm child could not take cell_main's place: {type(e).__name__}: {e}")
        os._exit(1)
    send(conn, {"pid": os.getpid()})
    conn.close()
    keep = {0, 1, 2, int(request["journal_fd"])}
    for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


CAP_VERSION_3 = 0x20080522
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL, PR_SET_NO_NEW_PRIVS = 1, 24, 47, 2, 4, 38


def take_credentials(theirs: dict[str, str]) -> None:
    """cell_main's capability sets (a process that joins a user namespace holds every capability in
    it; cell_main, started by exec, may hold none) and its no_new_privs; a seccomp filter cannot be
    copied: refused."""
    if theirs.get("Seccomp", "0") != "0":
        raise OSError("cell_main runs under a seccomp filter, which a warm child cannot take")
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    bounding = int(theirs["CapBnd"], 16)
    for cap in range(last + 1):
        if not bounding >> cap & 1 and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"dropping capability {cap} from the bounding set")
    header = (ctypes.c_uint32 * 2)(CAP_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    for i, name in enumerate(("CapEff", "CapPrm", "CapInh")):
        value = int(theirs[name], 16)
        data[i], data[3 + i] = value & 0xFFFFFFFF, value >> 32
    if _libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    ambient = int(theirs["CapAmb"], 16)
    for cap in range(last + 1):
        if ambient >> cap & 1 and _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"raising ambient capability {cap}")
    if theirs.get("NoNewPrivs") == "1":
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _place_descriptors(conn: socket.socket, named: dict[str, int], journal_fd: int) -> socket.socket:
    """stdin at 0, the output pipe at 1 and 2 (stderr=STDOUT), the journal at cell_main's number,
    all inheritable (what Popen's pass_fds gives); the socket moved out of their way."""
    targets = {0: "stdin", 1: "stdout", 2: "stdout", journal_fd: "journal"}
    high = max(targets) + 1
    moved = {name: fcntl.fcntl(named[name], fcntl.F_DUPFD_CLOEXEC, high) for name in set(targets.values())}
    conn_fd = fcntl.fcntl(conn.fileno(), fcntl.F_DUPFD_CLOEXEC, high)
    conn.close()
    for fd in named.values():
        os.close(fd)
    for target, name in targets.items():
        os.dup2(moved[name], target, inheritable=True)
    for fd in moved.values():
        os.close(fd)
    return socket.socket(fileno=conn_fd)


def _take_environment(request: dict[str, Any]) -> None:
    """cell_main's environment for the child, and what a fresh `python -m pytest` derives from it
    and from the working directory: sys.path ([cwd] + PYTHONPATH + the interpreter's own),
    bytecode writing, the faulthandler, the temporary directory; fresh random seeds for torch and
    numpy (Python's own `random` reseeds itself at every fork); os.getppid() answers cell_main, the parent the cold child has."""
    env = request["env"]
    sys.argv[:] = ["-m", *request["argv"]]  # what `python -m` has until runpy names the module's file
    os.environ.clear()
    os.environ.update(env)
    base = [p for p in sys.path[1:]]  # the interpreter's own path; [0] is this script's directory
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *base]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    if env.get("PYTHONFAULTHANDLER"):
        import faulthandler

        faulthandler.enable()
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()
    if "torch" in sys.modules:  # a fresh interpreter seeds torch's generator at random
        sys.modules["torch"].seed()
    runner = int(request["runner_pid"])
    os.getppid = lambda: runner  # the keeper (outside cell_main's pid namespace: 0) is not what a test expects


def main(argv: list[str]) -> tuple[socket.socket, dict[str, Any], dict[str, int]] | None:
    """`zygote.py SOCKET READY_FD IDLE_S MAX_LIFE_S`: preload, then serve until idle or old. Returns
    in a test process only."""
    path, ready_fd, idle_s, max_life_s = argv[0], int(argv[1]), float(argv[2]), float(argv[3])
    preload()
    why = why_not_pristine()
    if why:
        os.write(ready_fd, f"refused: {why}\n".encode())
        return None
    zygote = Zygote(path, idle_s, max_life_s)
    gc.collect()
    gc.freeze()  # the children's collections (and their exit) skip what the zygote imported
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(ready_fd, f"ready {os.getpid()}\n".encode())
    os.close(ready_fd)
    got = zygote.serve()
    if got is None:
        zygote.close()
    return got


if __name__ == "__main__":
    got = main(sys.argv[1:])
    if got is None:
        sys.exit(0)
    become(*got)
    del got
    import runpy

    runpy.run_module("pytest", run_name="__main__", alter_sys=True)
