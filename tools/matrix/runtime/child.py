"""The pytest child of a cell: one process in its own session, its output copied to ours as it comes
(the last TAIL_BYTES kept for the records of a crash or a timeout), ended from outside whatever it
holds (SIGTERM for its stacks, SIGKILL TERM_GRACE_S later); and Bazel's own SIGTERM, passed on to it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from typing import Any

TAIL_BYTES = 8192  # of the child's output, kept for the records of a crash or a timeout
TERM_GRACE_S = 2.0  # after SIGTERM (a timeout, or Bazel's own), the child's group gets this long before SIGKILL


def signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name if returncode < 0 else f"exit status {returncode}"
    except ValueError:
        return f"signal {-returncode}"


def how_it_ended(returncode: int) -> str:
    """'died (SIGSEGV)' or 'exited (status 0)': the child's end, for a crash message."""
    return f"died ({signal_name(returncode)})" if returncode < 0 else f"exited (status {returncode})"


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Child:
    """One pytest child in its own session (a test that kills its process group reaches only its own),
    its stdout and stderr copied to ours as they come, the last TAIL_BYTES kept for the records."""

    def __init__(self, command: list[str], env: dict[str, str], journal_fd: int) -> None:
        self.proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(journal_fd,), start_new_session=True
        )
        self._tail = bytearray()
        self._tail_lock = threading.Lock()
        self._kill_timer: threading.Timer | None = None
        self._reader = threading.Thread(target=self._copy, daemon=True)
        self._reader.start()

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        out: Any = sys.stdout.buffer
        while chunk := os.read(self.proc.stdout.fileno(), 1 << 16):
            try:
                out.write(chunk)
                out.flush()
            except (OSError, ValueError):  # our stdout is gone: keep draining, or the child blocks
                out = io.BytesIO()
            self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        with self._tail_lock:
            self._tail += chunk
            del self._tail[:-TAIL_BYTES]

    def note(self, line: str) -> None:
        """A line of ours in the child's output (the log and the tail), e.g. why we stop it."""
        print(line, flush=True)
        self._keep(f"{line}\n".encode())

    def poll(self, timeout: float) -> int | None:
        """The child's exit status once it has ended; None when it still runs after `timeout` seconds."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """SIGTERM to its process group (its faulthandler prints where each thread is), SIGKILL
        TERM_GRACE_S later: ending it depends on nothing the test can do."""
        if self._kill_timer is None:
            _kill_group(self.proc.pid, signal.SIGTERM)
            self._kill_timer = threading.Timer(TERM_GRACE_S, _kill_group, args=(self.proc.pid, signal.SIGKILL))
            self._kill_timer.daemon = True
            self._kill_timer.start()

    def wait(self) -> int:
        returncode = self.proc.wait()
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        _kill_group(self.proc.pid, signal.SIGKILL)  # what the test left running would hold the pipe open
        self._reader.join(timeout=5)  # one that escaped into its own session may still: stop waiting
        return returncode

    @property
    def tail(self) -> str:
        with self._tail_lock:
            return bytes(self._tail).decode(errors="replace")

    def tail_or_why_none(self, returncode: int) -> str:
        """The tail, or (a SIGKILL or os._exit as the child's first act prints nothing) a line saying so."""
        return self.tail or f"(the test process {how_it_ended(returncode)} without writing any output)"


class Termination:
    """Bazel ends a target that overruns its own timeout with SIGTERM (then SIGKILL after a grace
    period): stop the child (Child.stop), keep every result recorded so far, write the outputs."""

    def __init__(self) -> None:
        self.requested = False
        self.child: Child | None = None
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        if self.child is not None:
            self.child.stop()
