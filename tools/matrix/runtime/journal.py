"""An append-only JSON-lines journal: each event is flushed as it happens, so a crash loses nothing."""

from __future__ import annotations

import json
import os
from typing import Any

# The plugin's watchdog exits with this status after journaling a `timeout` event; cell_main then
# records that test as timed out and resumes. (Here, not in the plugin: cell_main must not pay
# for importing pytest.)
TIMEOUT_EXIT_CODE = 86


def append(path: str, event: dict[str, Any]) -> None:
    line = json.dumps(event, default=str) + "\n"
    # One write() on an O_APPEND descriptor: a record is either fully there or absent.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(path: str) -> list[dict[str, Any]]:
    if not os.path.exists(path):
        return []
    events = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):  # a torn last line (killed mid-write) is ignored
                events.append(json.loads(line))
    return events
