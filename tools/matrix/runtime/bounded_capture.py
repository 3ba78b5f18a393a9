"""pytest's capture of a test's output, bounded while the test runs (not cut afterwards).

pytest reads everything a phase printed into one string (and pytest-json-report, the report's
sections and the journal event copy it again): a test that prints 300 MiB held gigabytes. Here the
session's global capture keeps what a test prints on disk, whatever the capture mode (`sys` and
`tee-sys` kept it in memory), and each phase's reading takes only its first and last OUTPUT_CAP / 2
bytes, saying how many were cut. The report's log section (pytest's logging plugin) is bounded the
same way, and the records it would keep for `caplog` are not kept for a test that does not ask for
caplog. A test's own `capsys`/`capfd`/`caplog` keep what it asks them to keep.

pytest has no option for any of this: `install` replaces methods of the session's capture objects
(and `bound_logs` the report's log handler) only, never pytest's classes.
"""

from __future__ import annotations

import io
import logging
import os
import types
from tempfile import TemporaryFile
from typing import Any

import pytest
from _pytest import capture as _capture
from _pytest import logging as _logging

from tools.matrix.runtime import outputs

_fstat, _pread = os.fstat, os.pread


def _disk_file(tee: Any = None) -> io.TextIOWrapper:
    """What pytest's fd capture writes to (a temporary file), optionally copying each write to `tee`."""
    cls = _capture.EncodedFile if tee is None else _Tee
    file = cls(TemporaryFile(buffering=0), encoding="utf-8", errors="replace", newline="", write_through=True)
    if tee is not None:
        file.other = tee
    return file


class _Tee(_capture.EncodedFile):
    """`tee-sys` on disk: every write goes to the file and to the original stream."""

    other: Any

    def write(self, text: str) -> int:
        super().write(text)
        return self.other.write(text)


def _bounded_snap(self: Any) -> str:
    """A capture's `snap`: what was written since the last one, at most OUTPUT_CAP bytes of it."""
    fd = self.tmpfile.fileno()
    size = _fstat(fd).st_size
    if size == 0:
        return ""
    half = outputs.OUTPUT_CAP // 2
    if size <= 2 * half:
        text = _pread(fd, size, 0).decode("utf-8", "replace")
    else:
        head, tail = _pread(fd, half, 0), _pread(fd, half, size - half)
        text = head.decode("utf-8", "replace") + outputs.cut_marker(size - 2 * half) + tail.decode("utf-8", "replace")
    self.tmpfile.seek(0)
    self.tmpfile.truncate()
    return text


def install(config: pytest.Config) -> None:
    """Bound the session's global capture (nothing to do without one: `-s`, output goes to cell_main,
    which keeps a bounded tail)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    multi = getattr(capman, "_global_capturing", None)
    if multi is None:
        return
    for stream in (multi.out, multi.err):
        if stream is None:
            continue
        if isinstance(stream, _capture.SysCapture) and isinstance(stream.tmpfile, _capture.CaptureIO):
            # sys/tee-sys keep the output in memory (a BytesIO): keep it on disk instead. The capture is
            # suspended while the plugin configures, so the next resume installs the new file.
            tee = stream.tmpfile._other if isinstance(stream.tmpfile, _capture.TeeCaptureIO) else None
            stream.tmpfile.close()
            stream.tmpfile = _disk_file(tee)
        stream.snap = types.MethodType(_bounded_snap, stream)


class _BoundedText(io.StringIO):
    """The report's log text: its first and last OUTPUT_CAP / 2 characters."""

    def __init__(self) -> None:
        super().__init__()
        self._tail = ""
        self._cut = 0

    def write(self, text: str) -> int:
        half = outputs.OUTPUT_CAP // 2
        room = half - self.tell()
        rest = text
        if room > 0:
            super().write(text[:room])
            rest = text[room:]
        if rest:
            joined = self._tail + rest
            self._cut += max(0, len(joined) - half)
            self._tail = joined[-half:]
        return len(text)

    def getvalue(self) -> str:
        middle = outputs.cut_marker(self._cut, "characters") if self._cut else ""
        return super().getvalue() + middle + self._tail


class _Discarded(list):
    """Records nobody will read (no caplog in the test): not kept."""

    def append(self, record: Any) -> None:
        pass


def bound_logs(item: pytest.Item) -> None:
    """At the start of one phase of `item` (inside pytest's logging plugin, which has just made its
    handlers): the report's handler keeps a bounded text and no records (only its text is read, for
    the "Captured log" section); caplog's keeps nothing unless the test uses caplog."""
    caplog_handler = item.stash.get(_logging.caplog_handler_key, None)
    uses_caplog = "caplog" in getattr(item, "fixturenames", ())
    for handler in logging.getLogger().handlers:
        if type(handler) is _logging.LogCaptureHandler and not (handler is caplog_handler and uses_caplog):
            handler.stream = _BoundedText()
            handler.records = _Discarded()
