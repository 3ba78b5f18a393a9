"""Evidence of why a test broke under a transforming variant, kept for the report.

For each call a variant transforms (`Variant.transforming(entry, program=...)`): the program before
and after the transform as readable text, the serialized payloads the transform made
(`Variant.keep_payload`), the transform's error if it raised, and the differential check's outcome.
It is written as the test runs, one step at a time, so a test that kills its process (a segfault in
a C++ deserializer) leaves what was written up to the crash. When the test ends, the plugin keeps it
only if the test's status is in statuses.KEEPS_EVIDENCE; cell_main removes any other that is left.

Layout, in the target's undeclared outputs (Bazel zips them into outputs.zip):
    matrix_evidence/<test_key(nodeid)>/evidence.json   the index (FORMAT below), read by the collector
    matrix_evidence/<test_key(nodeid)>/call-<n>-<name>  one payload file each, at most PAYLOAD_CAP bytes

Everything is bounded and says what was cut: each program text (TEXT_CAP, its middle cut), each
payload (PAYLOAD_CAP: an archive keeps the members that fit, other data its head), the calls per test
(MAX_CALLS), the payloads listed per call (MAX_PAYLOADS), and the bytes of texts and payloads one test
(TEST_BUDGET) and one target shard (BUDGET) keep: each is counted as it is written, and what would
pass a budget is not kept (listed, saying which budget).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

_perf_counter = time.perf_counter  # bound at import: the plugin calls start/finish whatever a test did to `time`
EVIDENCE_DIR = "matrix_evidence"
INDEX = "evidence.json"
FORMAT = 1
TEXT_CAP = 64 * 1024  # characters of one program's text
PAYLOAD_CAP = 1024 * 1024  # bytes of one payload file
MAX_CALLS = 8  # calls of one test kept; more are counted in `calls_not_kept`
BUDGET = 64 * 1024 * 1024  # bytes of evidence one target shard keeps, at most
TEST_BUDGET = BUDGET // 4  # bytes of evidence one test keeps, at most (three more fill the shard's)
MAX_PAYLOADS = 16  # payloads of one call listed; one more entry counts the rest
_MEMBER_HEADERS = 30 + 46 + 20  # bytes of a zip member's local and central headers, and a zip64 extra field
# Source-location comments torch puts in a program's text: they differ between the original and a
# deserialized program without saying anything about what it computes.
_NOISE = re.compile(r"^\s*# (File: .*|No stacktrace found for following nodes)$")


def test_key(nodeid: str) -> str:
    """The directory name of a test's evidence (node ids may hold any character)."""
    return hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def index_member(nodeid: str) -> str:
    """Where a test's evidence.json is, relative to the undeclared outputs (a member of outputs.zip)."""
    return f"{EVIDENCE_DIR}/{test_key(nodeid)}/{INDEX}"


def cut_text(text: str, cap: int = TEXT_CAP) -> tuple[str, int]:
    """(`text` with its middle replaced by a line saying how much was cut, characters cut)."""
    if len(text) <= cap:
        return text, 0
    head, tail = text[: cap // 2], text[len(text) - cap // 2 :]
    cut = len(text) - len(head) - len(tail)
    return f"{head}\n... {cut} characters cut ...\n{tail}", cut


def program_text(program: Any) -> str:
    """A program as a person reads it: an ExportedProgram's text (graph, signature, range
    constraints) or a GraphModule's code, without torch's source-location comments."""
    import torch

    try:
        if isinstance(program, torch.export.ExportedProgram):
            text = str(program)
        elif isinstance(program, torch.fx.GraphModule):
            text = program.print_readable(print_output=False)
        else:
            return f"({type(program).__module__}.{type(program).__qualname__}: no program text)"
    except Exception as e:  # noqa: BLE001 - a program that cannot print itself is still evidence of that
        return f"(the program could not be printed: {type(e).__name__}: {e})"[:2000]
    return "\n".join(line for line in text.splitlines() if not _NOISE.match(line)) + "\n"


def bound_payload(data: bytes, cap: int = PAYLOAD_CAP) -> tuple[bytes, str]:
    """(what of `data` to keep, what was cut: "" when nothing). A zip archive over `cap` keeps, as a
    smaller valid archive, its JSON members (the program, not its weights), then its smallest others
    that fit."""
    if len(data) <= cap:
        return data, ""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = sorted(archive.infolist(), key=lambda m: (not m.filename.endswith(".json"), m.file_size, m.filename))
            out, kept, left = io.BytesIO(), 0, []
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as smaller:
                for member in members:
                    # Its local and central headers (with name and extra field twice) count too.
                    size = member.file_size + _MEMBER_HEADERS + 2 * (len(member.filename.encode()) + len(member.extra))
                    if kept + size <= cap * 3 // 4:  # room for compression's worst case
                        smaller.writestr(member, archive.read(member))
                        kept += size
                    else:
                        left.append(member)
        if out.tell() <= cap:
            named = ", ".join(f"{m.filename} ({m.file_size:,} bytes)" for m in sorted(left, key=lambda m: -m.file_size)[:3])
            more = f" and {len(left) - 3} more" if len(left) > 3 else ""
            return (
                out.getvalue(),
                f"an archive of {len(data):,} bytes: kept {len(members) - len(left)} of {len(members)} members; left out {named}{more}",
            )
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        pass  # not an archive (or not one zipfile can read): keep its head
    return data[:cap], f"kept the first {cap:,} of {len(data):,} bytes"


@dataclass
class Payload:
    file: str  # the file beside evidence.json
    what: str  # what it is, in the variant's words ("the program serialized by torch.export.save")
    bytes: int  # its size as the transform made it
    kept: int  # bytes kept in `file`
    cut: str = ""  # what was left out ("" when nothing); "not kept: ..." when the file was not written


@dataclass
class CallEvidence:
    entry: str  # the wrapped entry point
    before: str = ""  # the program the API under test returned, as text
    before_cut: int = 0  # characters cut from `before`
    after: str | None = None  # the transformed program as text; None: the transform did not finish
    after_cut: int = 0
    error: str | None = None  # the transform's error, when it raised
    check: str | None = None  # the differential check's outcome (transform_check.Outcome.summary())
    check_s: float | None = None
    payloads: list[Payload] = field(default_factory=list)


def _timed(method: Callable[..., None]) -> Callable[..., None]:
    """Adds the method's time to the recorder's `seconds` (the evidence's cost, apart from the
    transform's). Keeping evidence never fails a test: when it fails (a test made the outputs
    read-only, the disk is full), the test's evidence stops there and one line on stderr says why."""

    def timed(self: Recorder, *args: Any) -> None:
        start = _perf_counter()
        try:
            method(self, *args)
        except Exception as e:  # noqa: BLE001
            print(f"[matrix] evidence of {self._nodeid} not kept whole: {type(e).__name__}: {e}", file=sys.__stderr__, flush=True)
            self._nodeid = None
        finally:
            self.seconds += _perf_counter() - start

    timed.__doc__ = method.__doc__
    return timed


class Recorder:
    """A process's evidence writer; the plugin starts and finishes it around each test. Without a
    root directory (a variant used outside a matrix cell) every method does nothing."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        self._used = _size(root) if root else 0  # other processes of this shard kept this much
        self._test_used = 0  # of which the current test's
        self._more = 0  # payloads of the current call past MAX_PAYLOADS
        self._nodeid: str | None = None
        self._calls: list[CallEvidence] = []
        self._not_kept = 0
        self.seconds = 0.0  # spent on the current test's evidence (since `start`)

    @property
    def recorded(self) -> bool:
        """Whether the current (or last) test's transforms recorded any call."""
        return bool(self._calls or self._not_kept)

    @property
    def _dir(self) -> str | None:
        return os.path.join(self.root, test_key(self._nodeid)) if self.root and self._nodeid is not None else None

    @_timed
    def start(self, nodeid: str) -> None:
        self._nodeid, self._calls, self._not_kept, self.seconds, self._test_used = nodeid, [], 0, 0.0, 0
        if self._dir and os.path.isdir(self._dir):  # an earlier process's, for a test that runs again
            shutil.rmtree(self._dir, ignore_errors=True)

    @_timed
    def finish(self, keep: bool) -> None:
        """The test ended: keep its evidence (counted against the budget) or remove it."""
        where = self._dir
        self._nodeid = None
        if where is None or not os.path.isdir(where):
            self._used -= self._test_used
            return
        if keep:
            self._used += _size(where) - self._test_used  # what was counted, made exact (the index's own bytes)
        else:
            shutil.rmtree(where, ignore_errors=True)
            self._used -= self._test_used

    def _room_for(self, size: int) -> str:
        """"" when `size` more bytes fit this test's and this shard's budgets; else why they are not kept."""
        if self._used + size > BUDGET:
            return f"not kept: this target's evidence reached its {BUDGET:,}-byte budget"
        if self._test_used + size > TEST_BUDGET:
            return f"not kept: this test's evidence reached its {TEST_BUDGET:,}-byte budget"
        return ""

    def _keep(self, size: int) -> None:
        self._used += size
        self._test_used += size

    def _text(self, program: Any) -> tuple[str, int]:
        """(a program's text as kept, characters cut): bounded, and counted against the budgets."""
        text, cut = cut_text(program_text(program))
        why = self._room_for(len(text.encode(errors="replace")))
        if why:
            return f"({why})", len(text) + cut
        self._keep(len(text.encode(errors="replace")))
        return text, cut

    @_timed
    def begin(self, entry: str, program: Any) -> None:
        """A call's transform starts; `program` is what it transforms."""
        if self._dir is None:
            return
        if len(self._calls) >= MAX_CALLS:
            self._not_kept += 1
            self._write()
            return
        before, cut = self._text(program)
        self._calls.append(CallEvidence(entry, before, cut))
        self._more = 0
        self._write()

    def _current(self) -> CallEvidence | None:
        return self._calls[-1] if self._dir is not None and self._calls and not self._not_kept else None

    @_timed
    def payload(self, name: str, data: bytes | str, what: str) -> None:
        """Keep what the transform serialized (`name`: a file name such as "program.pt2")."""
        call = self._current()
        if call is None:
            return
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if len(call.payloads) >= MAX_PAYLOADS:  # one more entry counts the rest
            if not self._more:
                call.payloads.append(Payload(f"call-{len(self._calls)}-more", "", 0, 0, f"not kept: a call lists at most {MAX_PAYLOADS} payloads"))
            self._more += 1
            more = call.payloads[-1]
            more.what, more.bytes = f"{self._more} more payloads (the last: {what})"[:500], more.bytes + len(raw)
            self._write()
            return
        file = f"call-{len(self._calls)}-{_safe_name(name)}"
        kept, cut = bound_payload(raw)
        why = self._room_for(len(kept))
        if why:
            call.payloads.append(Payload(file, what, len(raw), 0, why))
        else:
            _write_file(os.path.join(self._dir or "", file), kept)
            self._keep(len(kept))
            call.payloads.append(Payload(file, what, len(raw), len(kept), cut))
        self._write()

    @_timed
    def transformed(self, program: Any) -> None:
        call = self._current()
        if call is not None:
            call.after, call.after_cut = self._text(program)
            self._write()

    @_timed
    def failed(self, message: str) -> None:
        call = self._current()
        if call is not None:
            call.error = message[:4000]
            self._write()

    @_timed
    def checked(self, summary: str, seconds: float) -> None:
        call = self._current()
        if call is not None:
            call.check, call.check_s = summary[:4000], round(seconds, 6)
            self._write()

    def _write(self) -> None:
        assert self._dir is not None and self._nodeid is not None
        index = {"format": FORMAT, "nodeid": self._nodeid, "calls": [asdict(c) for c in self._calls], "calls_not_kept": self._not_kept}
        _write_file(os.path.join(self._dir, INDEX), json.dumps(index, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80] or "payload"


def _write_file(path: str, data: bytes) -> None:
    """Whole or not at all (a crash mid-write leaves the previous version)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _size(root: str) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def prune(root: str, keep: set[str]) -> None:
    """Remove the evidence of every test whose key is not in `keep` (cell_main, at the end: a test
    that passed in a process that died before it could remove its evidence)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        if entry.name not in keep:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(entry.path)
