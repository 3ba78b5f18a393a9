"""The cell's journal: JSON-line events the pytest child appends as they happen, so a crash loses nothing.

The journal is an unlinked file: cell_main creates it, removes its name at once and hands the open
descriptor to each child (`pass_fds`). A test that wipes its temporary directory (or TEST_TMPDIR)
cannot delete it, and no path to it exists. A test that finds the descriptor anyway and writes junk
costs at most the lines it mangles: every event starts on a fresh line (a torn line before it ends
there), and a line that is not a well-formed event is skipped with a warning, never fatal.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from tools.matrix import statuses

# The plugin's watchdog exits with this status after journaling a `timeout` event; cell_main then
# records that test as timed out and resumes. (Here, not in the plugin: cell_main must not pay
# for importing pytest.)
TIMEOUT_EXIT_CODE = 86

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
    "start": ("nodeid",),
    "timeout": ("nodeid", "timeout_s"),
    "result": ("test",),
}

_lock = threading.Lock()  # the watchdog thread journals too


def append(fd: int, event: dict[str, Any]) -> None:
    """Append one event through the inherited descriptor (opened O_APPEND: each write lands at the end)."""
    data = ("\n" + json.dumps(event, default=str) + "\n").encode()
    with _lock:
        while data:
            data = data[os.write(fd, data) :]


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
    return event


class Journal:
    """cell_main's side: the descriptor children write to, read incrementally."""

    def __init__(self, directory: str | None = None) -> None:
        fd, path = tempfile.mkstemp(prefix="matrix-journal-", dir=directory)
        os.unlink(path)  # only the descriptor remains: nothing under any directory to delete or find
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        self.fd = fd
        self._offset = 0
        self._partial = b""  # an unterminated last line, completed (or proven torn) by the next write

    def read_new(self, warn: Callable[[str], None]) -> list[dict[str, Any]]:
        """The events appended since the last call; malformed lines are reported to `warn` and skipped."""
        chunks = []
        while chunk := os.pread(self.fd, 1 << 20, self._offset):
            chunks.append(chunk)
            self._offset += len(chunk)
        complete, _, self._partial = (self._partial + b"".join(chunks)).rpartition(b"\n")
        events = []
        for line in complete.split(b"\n"):
            if not line.strip():
                continue
            event = parse(line)
            if event is None:
                warn(f"journal line skipped (not a journal event): {line[:200].decode(errors='replace')}")
            else:
                events.append(event)
        return events

    def close(self) -> None:
        os.close(self.fd)
