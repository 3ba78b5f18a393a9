"""The cell's journal: JSON-line events the pytest child appends as they happen, so a crash loses nothing.

The journal is an unlinked file: cell_main creates it, removes its name at once and hands the open
descriptor to each child (`pass_fds`). A test that wipes its temporary directory (or TEST_TMPDIR)
cannot delete it, and no path to it exists. A test that finds the descriptor anyway and writes junk
costs at most the lines it mangles: every event starts on a fresh line (a torn line before it ends
there), and a line that is not a well-formed event (or is longer than MAX_EVENT_BYTES) is skipped with
a warning, never fatal.

The child writes through `Writer`, which nothing a test does in its process can take away: the
functions it calls were bound when this module was imported (before any test module), its descriptor
is checked before every write, and one a test closed or replaced is opened again from cell_main's
(/proc/<cell_main>/fd/<n>).
"""

from __future__ import annotations

import fcntl
import json
import json.encoder
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from tools.matrix import statuses
from tools.matrix.runtime.descriptors import identity

# Each event kind and the fields cell_main reads from it.
FIELDS: dict[str, tuple[str, ...]] = {
    "session": ("torch_version", "python"),
    "fatal": ("message",),
    "collecting": ("nodeid",),  # a test file is about to be imported
    "collecting_done": ("nodeid",),
    "collect_error": ("nodeid", "message", "longrepr"),
    "unmatched": ("kind", "entry"),  # an expectation entry that matches no test of the cell
    "filter_unmatched": ("filter", "near"),  # --test_filter selects no test of the cell (all shards)
    "collected": ("nodeids",),
    "nothing_collected": ("files", "why"),  # the child's files hold no test at all
    "start": ("nodeid",),  # the test's clock starts (cell_main's, per-test timeout)
    "stop": ("nodeid",),  # its teardown is over: what follows is bookkeeping, off its clock
    "result": ("test",),
}
# A longer line is skipped unread (a test's junk); the plugin's events are never longer.
MAX_EVENT_BYTES = 16 << 20


class EventTooLarge(ValueError):
    """An event that would take more than MAX_EVENT_BYTES: not written."""


# Bound now, before any test module is imported: a test or plug-in that patches json, os, fcntl or
# builtins later cannot change how events are encoded or written.
_write, _fstat, _open, _close, _fcntl = os.write, os.fstat, os.open, os.close, fcntl.fcntl
_c_make_encoder, _encode_str, _str = json.encoder.c_make_encoder, json.encoder.encode_basestring_ascii, str
_fallback_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode  # without CPython's _json only


def _default(value: Any) -> str:
    return _str(value)


def dumps(event: dict[str, Any]) -> str:
    """`event` as one line of ASCII JSON (what cannot be encoded is written as its str())."""
    if _c_make_encoder is None:
        return _fallback_encode(event)
    return "".join(_c_make_encoder({}, _default, _encode_str, None, ":", ",", False, False, True)(event, 0))


class Writer:
    """The child's side. `fd` is the descriptor inherited from cell_main (the same number there)."""

    def __init__(self, fd: int, parent_pid: int) -> None:
        self._parent_copy = f"/proc/{parent_pid}/fd/{fd}"
        self._identity = identity(fd)
        self._fd = _fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)  # private: a subprocess of a test does not inherit it
        _close(fd)
        self._lock = threading.Lock()

    def _usable_fd(self) -> int:
        if identity(self._fd) == self._identity:
            return self._fd
        # A test closed it (or put another file at its number): open the journal again from cell_main's.
        fresh = _open(self._parent_copy, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if identity(fresh) != self._identity:
            _close(fresh)
            raise OSError(f"{self._parent_copy} is no longer the cell's journal")
        self._fd = fresh
        return fresh

    def append(self, event: dict[str, Any]) -> None:
        """Append one event (each write lands at the end: the descriptor is O_APPEND)."""
        data = ("\n" + dumps(event) + "\n").encode()
        if len(data) > MAX_EVENT_BYTES:
            raise EventTooLarge(f"a {event.get('event')} event of {len(data):,} bytes")
        with self._lock:
            fd = self._usable_fd()
            while data:
                data = data[_write(fd, data) :]


def parse(line: bytes) -> dict[str, Any] | None:
    """The event on `line`, or None when it is not a well-formed one."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("event") not in FIELDS or not all(k in event for k in FIELDS[event["event"]]):
        return None
    if "nodeid" in event and not isinstance(event["nodeid"], str):
        return None
    if event["event"] == "result":
        test = event["test"]
        meta = test.get("metadata") if isinstance(test, dict) else None
        matrix = meta.get("matrix") if isinstance(meta, dict) else None
        if not (isinstance(matrix, dict) and isinstance(test.get("nodeid"), str) and matrix.get("status") in statuses.ALL):
            return None
    if event["event"] == "nothing_collected" and not (isinstance(event["files"], list) and all(isinstance(f, str) for f in event["files"])):
        return None
    return event


class Journal:
    """cell_main's side: the descriptor children write to, read incrementally."""

    def __init__(self, directory: str | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix="matrix-journal-", dir=directory)
        os.unlink(path)  # only the descriptor remains: nothing under any directory to delete or find
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        self.fd = fd
        self._offset = 0
        self._partial = bytearray()  # an unterminated last line, completed (or proven torn) by the next write
        self._skipping = 0  # bytes of a line over MAX_EVENT_BYTES, dropped as they come

    def read_new(self, warn: Callable[[str], None]) -> list[dict[str, Any]]:
        """The events appended since the last call; malformed lines are reported to `warn` and skipped.
        Memory stays within MAX_EVENT_BYTES plus one read, whatever was written."""
        events: list[dict[str, Any]] = []
        while chunk := os.pread(self.fd, 1 << 20, self._offset):
            self._offset += len(chunk)
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                self._take(chunk[start:end])
                self._end_line(events, warn)
                start = end + 1
            self._take(chunk[start:])
        return events

    def _take(self, data: bytes) -> None:
        if self._skipping or len(self._partial) + len(data) > MAX_EVENT_BYTES:
            self._skipping += len(self._partial) + len(data)
            self._partial.clear()
        else:
            self._partial += data

    def _end_line(self, events: list[dict[str, Any]], warn: Callable[[str], None]) -> None:
        line, skipped = bytes(self._partial), self._skipping
        self._partial.clear()
        self._skipping = 0
        if skipped:
            warn(f"journal line skipped ({skipped:,} bytes, more than the {MAX_EVENT_BYTES:,} an event may take)")
        elif line.strip():
            event = parse(line)
            if event is None:
                warn(f"journal line skipped (not a journal event): {line[:200].decode(errors='replace')}")
            else:
                events.append(event)

    def close(self) -> None:
        os.close(self.fd)
