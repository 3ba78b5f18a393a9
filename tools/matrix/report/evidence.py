"""How a record's evidence is shown: the one definition compat.md and compat.html both render.

A record's evidence (Record.evidence, read by the collector from the test's undeclared outputs,
runtime/evidence.py) holds, per call a transforming variant wrapped, the program's text before and
after the transform, the transform's error, the differential check's outcome and the payloads it
serialized. Shown here as: a unified diff of before vs after (3 lines of context; "the program text is
unchanged" when they are equal, e.g. only the weights changed and the check's numbers are the
evidence; "the transform did not finish" when there is no after), the check line, and per payload
what it is, how much was kept and the command that gets the file out of the outputs.

Every string of a view is made visible (text.visible): program texts come from the tests' modules.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools.matrix import statuses
from tools.matrix.records import Record
from tools.matrix.report.summary import by_severity
from tools.matrix.report.text import visible

CONTEXT = 3  # unchanged lines around each change in a diff
# Kinds of diff lines (CallView.kinds, one letter each): the page colours them by these.
HEADER, HUNK, REMOVED, ADDED, SAME = "h", "@", "-", "+", " "
UNCHANGED = "the program text is unchanged"
UNFINISHED = "the transform did not finish: there is no program after it"


@dataclass(frozen=True)
class PayloadView:
    file: str
    about: str  # "<what>, 8,987 of 8,987 bytes kept[; what was cut]"
    command: str  # how to get the kept file out of the outputs; "" when nothing was kept

    @property
    def line(self) -> str:
        return f"{self.file}: {self.about}"


@dataclass(frozen=True)
class CallView:
    number: int  # 1-based, in the order the test made the calls
    entry: str
    check: str  # "check: <outcome>" (or that it did not run)
    note: str  # UNCHANGED / UNFINISHED; "" when there is a diff
    diff: list[str]  # unified diff lines, headers "before <variant>" / "after <variant>"
    kinds: str  # one of HEADER, HUNK, REMOVED, ADDED, SAME per diff line
    error: str  # the transform's error; "" when none
    cuts: list[str]  # what the runtime cut from the texts ("before: 1,024 characters cut from its middle")
    before: str
    after: str | None
    payloads: list[PayloadView]


@dataclass(frozen=True)
class EvidenceView:
    where: str  # "kept in <outputs> under <dir>"
    problem: str  # why the evidence could not be read whole; "" when it could
    not_kept: str  # "" or "N more calls were not kept (...)"
    calls: list[CallView]


def _text(value: Any) -> str:
    """A display string: line breaks as "\\n" only, invisible and bidi characters escaped."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return visible(text.replace("\r\n", "\n").replace("\r", "\n"))


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def program_diff(before: str, after: str, variant: str) -> tuple[list[str], str]:
    """(unified diff lines of two program texts, their kinds); no lines when the texts are equal."""
    diff = list(difflib.unified_diff(_lines(before), _lines(after), f"before {variant}", f"after {variant}", n=CONTEXT, lineterm=""))
    kinds = "".join(HEADER if k < 2 else HUNK if line.startswith("@@") else line[:1] or SAME for k, line in enumerate(diff))
    return diff, kinds


def fetch_command(outputs: str, directory: str, file: str) -> str:
    """The shell command (or path) that gets a kept file: `unzip -p` for an outputs.zip, else the path."""
    member = f"{directory}/{file}"
    if outputs.endswith(".zip"):
        return f"unzip -p {shlex.quote(outputs)} {shlex.quote(member)} > {shlex.quote(file)}"
    return f"{outputs.rstrip('/')}/{member}"


def _payload(raw: dict[str, Any], outputs: str, directory: str) -> PayloadView:
    file, what = _text(raw.get("file")), _text(raw.get("what"))
    size, kept, cut = int(raw.get("bytes") or 0), int(raw.get("kept") or 0), _text(raw.get("cut"))
    about = f"{what}, {kept:,} of {size:,} bytes kept" + (f"; {cut}" if cut else "")
    return PayloadView(file, about, _text(fetch_command(str(outputs), str(directory), str(raw.get("file") or ""))) if kept else "")


def call_view(raw: dict[str, Any], number: int, variant: str, outputs: str, directory: str) -> CallView:
    before, after = _text(raw.get("before")), raw.get("after")
    after = None if after is None else _text(after)
    diff, kinds = program_diff(before, after, _text(variant)) if after is not None else ([], "")
    note = UNFINISHED if after is None else "" if diff else UNCHANGED
    check = raw.get("check")
    check_line = f"check: {_text(check)}" if check is not None else "check: did not run"
    cuts = [f"{which}: {int(raw.get(which + '_cut') or 0):,} characters cut from its middle"
            for which in ("before", "after") if raw.get(which + "_cut")]
    payloads = [_payload(p, outputs, directory) for p in raw.get("payloads") or [] if isinstance(p, dict)]
    return CallView(number, _text(raw.get("entry")), check_line, note, diff, kinds, _text(raw.get("error")), cuts, before, after, payloads)


def evidence_view(record: Record) -> EvidenceView | None:
    """What the report shows of `record.evidence`; None when the record has none."""
    ev = record.evidence
    if not ev:
        return None
    outputs, directory = str(ev.get("outputs") or ""), str(ev.get("dir") or "")
    calls = [call_view(c, n, record.variant, outputs, directory) for n, c in enumerate(ev.get("calls") or [], 1) if isinstance(c, dict)]
    not_kept = int(ev.get("calls_not_kept") or 0)
    return EvidenceView(
        where=f"kept in {_text(outputs)} under {_text(directory)}",
        problem=_text(ev.get("problem")),
        not_kept=f"{not_kept} more call{'s' if not_kept != 1 else ''} of this test not kept (past the runtime's limit per test)" if not_kept else "",
        calls=calls,
    )


def with_evidence(records: Sequence[Record]) -> list[Record]:
    """Records that have evidence: the unexpected ones (most severe first), then xfailed, then any other."""
    kept = [r for r in records if r.evidence]
    bad = by_severity(r for r in kept if r.status in statuses.UNEXPECTED)
    return [*bad, *(r for r in kept if r.status == statuses.XFAILED),
            *(r for r in kept if r.status not in statuses.UNEXPECTED and r.status != statuses.XFAILED)]


def failing_with_evidence(records: Sequence[Record]) -> tuple[int, int]:
    """(failing cells that kept evidence, failing cells): for the terminal's one line."""
    failing = [r for r in records if r.status in statuses.FAILING]
    return sum(1 for r in failing if r.evidence), len(failing)
