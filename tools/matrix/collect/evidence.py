"""The evidence a failing test left in its shard's outputs (runtime/evidence.py), read into its record.

A test writes into those outputs itself, so its evidence.json is checked field by field against the
writer's dataclasses (runtime/evidence.CallEvidence, Payload: their annotations are the format):
evidence that is not what the writer writes becomes a `problem` of that record's evidence alone. A
report holds at most EVIDENCE_REPORT_CHARS of program text; past that, a record's evidence says where
to read it."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import typing
import zipfile
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from tools.matrix import statuses
from tools.matrix.collect.files import ZIP_ERRORS, Unreadable, member_bytes, not_a_zip, read_bounded, shown
from tools.matrix.records import PYTHON_TYPES, Record, json_kinds
from tools.matrix.runtime.evidence import EVIDENCE_DIR, FORMAT, MAX_CALLS, CallEvidence, Payload, index_member, test_key

_NONE = type(None)

# Largest evidence.json read; larger is refused unread. The writer stays well under it: MAX_CALLS calls
# of two TEXT_CAP-character texts and two 4000-character lines, each character at most 6 bytes of JSON.
EVIDENCE_MAX_BYTES = 8 * 1024 * 1024
# The payload file names evidence.Recorder writes (call-<n>-<_safe_name>): one path component, never "..".
_PAYLOAD_FILE = re.compile(r"call-[0-9]+-[A-Za-z0-9._-]{1,80}")
_VALUE_NAMES = {str: "a string", float: "a number", int: "an integer", _NONE: "null"}


def _json_types(cls: type) -> dict[str, frozenset[type]]:
    """Per field of the writer's dataclass `cls`, the Python types of its JSON values: the dataclass is the format."""
    hints = typing.get_type_hints(cls)
    return {f.name: frozenset().union(*(PYTHON_TYPES[k] for k in json_kinds(hints[f.name], f"{cls.__name__}.{f.name}"))) for f in fields(cls)}


_CALL_TYPES = {name: types for name, types in _json_types(CallEvidence).items() if name != "payloads"}
_CALL_FIELDS = tuple(f.name for f in fields(CallEvidence))
_PAYLOAD_TYPES = _json_types(Payload)


class _BadEvidence(Exception):
    """What is wrong with an evidence.json's content."""


def _check_value(value: Any, allowed: frozenset[type], where: str) -> None:
    kind = type(value)  # not isinstance: true/false are not integers here
    if kind not in allowed:
        wanted = [name for t, name in _VALUE_NAMES.items() if t in allowed and not (t is int and float in allowed)]
        raise _BadEvidence(f"{where} is {value!r:.80}, not {' or '.join(wanted)}")
    if kind in (int, float) and not (math.isfinite(value) and value >= 0):
        raise _BadEvidence(f"{where} is {value!r}, not a finite number >= 0")


def _fields_of(value: Any, types: dict[str, frozenset[type]], where: str) -> dict[str, Any]:
    """`value`'s fields named in `types`, each checked (unknown keys are dropped)."""
    if type(value) is not dict:
        raise _BadEvidence(f"{where} is a JSON {type(value).__name__}, not an object")
    missing = [name for name in types if name not in value]
    if missing:
        raise _BadEvidence(f"{where} lacks {', '.join(missing)}")
    for name, allowed in types.items():
        _check_value(value[name], allowed, f"{where}.{name}")
    return {name: value[name] for name in types}


def _evidence_calls(doc: Any, nodeid: str, has_file: Callable[[str], bool]) -> tuple[list[dict[str, Any]], int]:
    """(calls, calls_not_kept) of an evidence.json's content, as compat.schema.json's evidence has them."""
    if type(doc) is not dict:
        raise _BadEvidence(f"a JSON {type(doc).__name__}, not an evidence object")
    if type(doc.get("format")) is not int or doc["format"] != FORMAT:
        raise _BadEvidence(f"format {doc.get('format')!r:.40}, not {FORMAT}")
    if doc.get("nodeid") != nodeid:
        raise _BadEvidence(f"the evidence of {doc.get('nodeid')!r:.200}, not of this test")
    calls = doc.get("calls")
    if type(calls) is not list:
        raise _BadEvidence(f"calls is {calls!r:.80}, not a list")
    if len(calls) > MAX_CALLS:
        raise _BadEvidence(f"{len(calls)} calls, more than the {MAX_CALLS} a test keeps")
    _check_value(doc.get("calls_not_kept"), frozenset({int}), "calls_not_kept")
    out = []
    for i, call in enumerate(calls, 1):
        checked = _fields_of(call, _CALL_TYPES, f"call {i}")
        payloads = call.get("payloads")
        if type(payloads) is not list:
            raise _BadEvidence(f"call {i}.payloads is {payloads!r:.80}, not a list")
        kept = []
        for j, payload in enumerate(payloads, 1):
            p = _fields_of(payload, _PAYLOAD_TYPES, f"call {i} payload {j}")
            if not _PAYLOAD_FILE.fullmatch(p["file"]):
                raise _BadEvidence(f"call {i} payload {j}: file {p['file']!r:.120} is not a payload file name (call-<n>-<name>)")
            if p["kept"] and not has_file(p["file"]):
                raise _BadEvidence(f"call {i} payload {j}: {p['file']} is not in the outputs")
            kept.append(p)
        out.append({name: kept if name == "payloads" else checked[name] for name in _CALL_FIELDS})
    return out, doc["calls_not_kept"]


def _unusable(source: Path, nodeid: str, problem: str) -> dict[str, Any]:
    """The evidence of a record whose evidence.json was there but could not be used: `problem` says why."""
    return {"outputs": str(source), "dir": f"{EVIDENCE_DIR}/{test_key(nodeid)}", "calls": [], "calls_not_kept": 0, "problem": problem}


def _evidence_of(record: Record, source: Path, read: Callable[[], bytes | None], has_file: Callable[[str], bool],
                 shown: Callable[[Path], str]) -> dict[str, Any] | None:  # fmt: skip
    """The evidence of `record` in the outputs `source` (None: it kept none); `read()` gives its
    evidence.json (raising Unreadable); `has_file(name)` says whether a file of its directory is there."""
    try:
        data = read()
        if data is None:
            return None
        try:
            calls, not_kept = _evidence_calls(json.loads(data), record.test, has_file)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise _BadEvidence(f"invalid JSON ({type(e).__name__}: {e})") from None
    except Unreadable as e:
        return _unusable(source, record.test, f"{shown(e.path)}: {e.what}")
    except _BadEvidence as e:
        return _unusable(source, record.test, f"{shown(source)}: {index_member(record.test)}: {e}")
    return {"outputs": str(source), "dir": f"{EVIDENCE_DIR}/{test_key(record.test)}", "calls": calls, "calls_not_kept": not_kept}


# Program text all records of one report carry at most (compat.json and compat.html hold it): past
# it, a record's evidence says where to read it instead. Unexpected records are served first.
EVIDENCE_REPORT_CHARS = 32 * 1024 * 1024


def bound_evidence(records: list[Record]) -> None:
    used = 0
    for record in sorted(records, key=lambda r: (r.status not in statuses.UNEXPECTED, r.key)):
        evidence = record.evidence
        if not evidence or not evidence["calls"]:
            continue
        size = sum(len(c["before"]) + len(c["after"] or "") for c in evidence["calls"])
        used += size
        if used > EVIDENCE_REPORT_CHARS:
            problem = (f"not included: this report already holds {EVIDENCE_REPORT_CHARS:,} characters of evidence; "
                       f"the {size:,} of this test are in {evidence['outputs']}, {evidence['dir']}/")  # fmt: skip
            record.evidence = {**evidence, "calls": [], "calls_not_kept": evidence["calls_not_kept"] + len(evidence["calls"]), "problem": problem}


def attach_evidence(testlogs: Path, shard_dir: Path, records: list[Record]) -> None:
    """read_evidence, where a bug met on one odd shard costs that shard's evidence, not the report."""
    try:
        read_evidence(testlogs, shard_dir, records)
    except Exception as e:  # noqa: BLE001
        for record in records:
            if record.evidence is None:  # not reached, or kept none: which one is unknown
                problem = f"{shown(testlogs, shard_dir)}: the evidence could not be read ({type(e).__name__}: {e})"
                record.evidence = _unusable(shard_dir / "test.outputs", record.test, problem)


def read_evidence(testlogs: Path, shard_dir: Path, records: list[Record]) -> None:
    """Set the `evidence` of each of `records` (one shard's) that its test left in the shard's outputs:
    the unzipped test.outputs/ directory, else outputs.zip, opened once for all of them."""
    outputs = shard_dir / "test.outputs"
    archive = outputs / "outputs.zip"

    def shown_here(path: Path) -> str:
        return shown(testlogs, path)

    in_zip = []
    for record in records:
        member = index_member(record.test)
        folder = outputs / member.rpartition("/")[0]
        if not os.path.lexists(outputs / member):
            in_zip.append(record)
            continue

        def read(path: Path = outputs / member) -> bytes:
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):  # a link or a FIFO a test left there: never followed
                    raise Unreadable(path, "not a regular file; not read")
                return read_bounded(path, EVIDENCE_MAX_BYTES)
            except OSError as e:  # e.g. a test made it unreadable
                raise Unreadable(path, f"not readable ({type(e).__name__}: {e})") from None

        def in_folder(name: str, folder: Path = folder) -> bool:
            try:
                return stat.S_ISREG(os.lstat(folder / name).st_mode)
            except OSError:
                return False

        record.evidence = _evidence_of(record, outputs, read, in_folder, shown_here)
    if not in_zip or not archive.is_file():
        return
    try:
        z = zipfile.ZipFile(archive)
    except ZIP_ERRORS as e:
        problem = f"{shown_here(archive)}: {not_a_zip(archive, e).what}"
        for record in in_zip:
            record.evidence = _unusable(archive, record.test, problem)
        return
    with z:
        names = set(z.namelist())
        for record in in_zip:
            member = index_member(record.test)

            def read(member: str = member) -> bytes | None:
                try:
                    return member_bytes(z, archive, member, EVIDENCE_MAX_BYTES)
                except ZIP_ERRORS as e:
                    raise Unreadable(archive, f"{member}: not readable ({type(e).__name__}: {e})") from None

            def in_archive(name: str, folder: str = member.rpartition("/")[0]) -> bool:
                return f"{folder}/{name}" in names

            record.evidence = _evidence_of(record, archive, read, in_archive, shown_here)
