"""Top failure causes: failures grouped by a normalised error signature across variants and suites."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tools.matrix import statuses
from tools.matrix.records import Record
from tools.matrix.report.summary import failure_kind

MAX_SIGNATURE = 200

# Applied in order: paths before numbers, addresses before numbers, shapes before numbers. Each pattern
# starts with a literal or is guarded by a substring test, so it costs little on messages without a match.
_TMP = re.compile(r"/(?:tmp|var/folders|private/var/folders|dev/shm)/\S*")
_PYTEST_TMP = re.compile(r"pytest-\d+\S*")
_TMP_NAME = re.compile(r"tmp\w{6,}\S*")  # tempfile.mkdtemp() names
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_SHAPE = re.compile(r"\[\s*(?:-?\d+|s\d+)(?:\s*,\s*(?:-?\d+|s\d+))*\s*,?\s*\]")
_QUOTED = re.compile(r"'[^'\s]{1,200}'|\"[^\"\s]{1,200}\"|`[^`\s]{1,200}`")
_DIGITS = bytes.maketrans(b"0123456789", b"##########")  # bytes.translate: far faster than str.translate


def normalise(message: str) -> str:
    """The message with run-specific details blanked: temp paths -> <tmp>, 0x.. -> <addr>, shapes like
    [3, 4] -> [...], quoted names -> '...', every digit run -> #, whitespace collapsed; at most 200 chars."""
    has_tmp = "tmp" in message
    if "/" in message:
        message = _TMP.sub("<tmp>", message)
    if "pytest-" in message:
        message = _PYTEST_TMP.sub("<tmp>", message)
    if has_tmp:
        message = _TMP_NAME.sub("<tmp>", message)
    if "0x" in message:
        message = _HEX.sub("<addr>", message)
    if "[" in message:
        message = _SHAPE.sub("[…]", message)
    if "'" in message or '"' in message or "`" in message:
        message = _QUOTED.sub("'…'", message)
    # Digits -> '#', then runs of '#' -> one (a few C-speed passes instead of a regex match per number).
    message = message.encode("utf-8", "surrogatepass").translate(_DIGITS).decode("utf-8", "surrogatepass")
    while "##" in message:
        message = message.replace("##", "#")
    message = " ".join(message.split())
    return message if len(message) <= MAX_SIGNATURE else message[: MAX_SIGNATURE - 1] + "…"


def first_message(record: Record) -> str:
    """The record's message, or for crashed / not_run cells without one the last line of the log tail."""
    if record.message:
        return record.message
    lines = [line for line in record.log_tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def signature(record: Record) -> str:
    """`Type: normalised message`, the type said once: pytest's messages usually start with it already
    (`SystemExit: 3`, or dotted: `torch._dynamo.exc.Unsupported: ...` for type `Unsupported`)."""
    kind, message = record.error_type or record.status, first_message(record)
    head, sep, rest = message.partition(": ")
    if head == kind or head.endswith("." + kind) or (not sep and message in (kind, "")):
        message = rest
    return f"{kind}: {normalise(message)}" if message else kind


@dataclass
class Cause:
    kind: str  # "transform failure", "test failure", "setup error", "crash", "timeout"
    signature: str
    count: int = 0
    xfailed: int = 0  # of count, the ones an xfail entry expected
    variants: Counter[str] = field(default_factory=Counter)
    suites: Counter[str] = field(default_factory=Counter)
    example: Record | None = None  # the first record with this cause, in input order


def failure_causes(records: Iterable[Record], limit: int | None = 20) -> list[Cause]:
    """Failures grouped by (kind, signature), most frequent first; transform and test failures never merge.

    Pass records sorted (records.sort_records) for each cause's example to be its first test."""
    cache: dict[tuple[str | None, str, str], str] = {}  # messages repeat across variants: normalise once
    causes: dict[tuple[str, str], Cause] = {}
    for r in [r for r in records if r.status in statuses.FAILURE_MESSAGE]:
        raw = (r.error_type, r.status, r.message or r.log_tail)
        sig = cache.get(raw)
        if sig is None:
            sig = cache[raw] = signature(r)
        kind = failure_kind(r)
        cause = causes.get((kind, sig))
        if cause is None:
            cause = causes[(kind, sig)] = Cause(kind, sig, example=r)
        cause.count += 1
        if r.status == statuses.XFAILED:
            cause.xfailed += 1
        cause.variants[r.variant] += 1
        cause.suites[r.suite] += 1
    ranked = sorted(causes.values(), key=lambda c: (-c.count, c.kind, c.signature))
    return ranked if limit is None else ranked[:limit]
