"""Read what Bazel left (bazel-testlogs/**, optionally the Build Event Protocol file) into Records.

Sources, per cell shard, best first: the cell's results (matrix_results.json, the compact digest of
report.json, else report.json itself, from test.outputs/outputs.zip or unzipped), then test.xml
(JUnit, carrying the matrix status as a property), then test.log alone (the target died with
neither: every test of the shard becomes `crashed`, the log tail kept; `error` when Bazel's own
test.xml says it exited with a status rather than a signal). A source that is there but unreadable
gives way to the next one, and a problem line names it. Each source also says which tests the
target collected that the shard has no record of (runtime/outputs.COLLECTED_NOT_RUN).

Which record each known test of a cell gets, this run's, the previous report's or `not_run` /
`crashed` / `error` with the reason, is known_tests.py's decision: a report never loses a test it
knew. The BEP file, when given, adds what only Bazel knows: cache hits, attempts of flaky targets,
Bazel's own status.

One bad shard never spoils the rest: when none of its sources can be read (a corrupt or truncated
zip, invalid JSON or XML, a digest of the wrong shape, a member too large to read) the tests it would
have run get `error` records whose message names the file and what is wrong; a shard that ran but
reported no tests gets `error` records with its cell's own problems as the reason. Files are read
whole into memory by name, each at most MAX_OUTPUT_BYTES; nothing is extracted.

A record whose status keeps evidence (statuses.KEEPS_EVIDENCE) gets the evidence its test left in the
shard's outputs (runtime/evidence.py), checked field by field: a test writes into those outputs itself,
so evidence that is not what the writer writes becomes a `problem` of that record's evidence alone.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from tools.matrix import statuses
from tools.matrix.config import Cell, Matrix, Target
from tools.matrix.known_tests import NOT_RERUN, NOT_RUN, BrokenShard, CellNames, Dropped, TargetRun, cell_label_of
from tools.matrix.records import MatrixResult, Record
from tools.matrix.runtime.evidence import EVIDENCE_DIR, FORMAT, MAX_CALLS, CallEvidence, Payload, index_member, test_key
from tools.matrix.runtime.outputs import COLLECTED_NAME, COLLECTED_NOT_RUN, DIGEST_FIELDS, DIGEST_NAME, REPORT_NAME

LOG_TAIL_CHARS = 4000
LOG_TAIL_READ = 64 * 1024  # bytes read from the end of a test.log: logs can be gigabytes
# Largest output file read (digest, report.json, test.xml, a zip member uncompressed): larger is refused
# unread, so a zip bomb or a runaway file costs neither the memory nor the time.
MAX_OUTPUT_BYTES = 512 * 1024 * 1024
OUTPUT_FILES = ("test.xml", "test.log", "test.outputs")  # what a shard directory holds once it ran
_SHARD_DIR = re.compile(r"shard_(\d+)_of_(\d+)")
_BAZEL_EXIT = re.compile(r"exited with error code (\d+)")  # the message of Bazel's own test.xml
_NONE = type(None)
# Per digest field, the JSON types a row may hold (from records.MatrixResult's annotations; None: a field
# an older writer lacked).
_JSON_TYPES: dict[str, frozenset[type]] = {"str": frozenset({str}), "float": frozenset({int, float}), "bool": frozenset({bool})}
_FIELD_TYPES: dict[str, frozenset[type]] = {
    "nodeid": frozenset({str}),
    **{f.name: _JSON_TYPES[str(f.type).split(" | ")[0]] | ({_NONE} if f.name != "status" else set())
       for f in fields(MatrixResult) if f.name in DIGEST_FIELDS},
}  # fmt: skip
_TYPE_NAMES = {str: "a string", int: "a number", float: "a number", bool: "true/false", _NONE: "null"}
_TEXT = tuple(DIGEST_FIELDS.index(f) for f in ("message", "error_type", "expectation", "log_tail"))
_STATUSES = frozenset(statuses.ALL)
_ID, _STATUS, _DURATION, _TRANSFORM = (DIGEST_FIELDS.index(f) for f in ("nodeid", "status", "duration_s", "transform_failed"))


class Unreadable(Exception):
    """An output of a shard that cannot be used: `path` and what is wrong with it."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path, self.what = path, what


@dataclass
class BazelResult:
    """What the BEP says about one target: per shard, whether it was cached and how many attempts."""

    cached: dict[int, bool] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    overall: str = ""  # Bazel's testSummary.overallStatus (PASSED, FAILED, FLAKY, ...)


@dataclass
class Collected:
    records: list[Record]
    torch_version: str | None = None
    bazel: dict[str, BazelResult] = field(default_factory=dict)  # label -> result (when a BEP was read)
    problems: list[str] = field(default_factory=list)  # cell-level problems (unmatched expectations, ...)
    # Worth saying, not a failure: a BEP older than the testlogs, previous records dropped as gone.
    notes: list[str] = field(default_factory=list)


def read_bep(path: str | os.PathLike[str], problems: list[str] | None = None) -> dict[str, BazelResult]:
    """Per target label, what the BEP file says. A truncated or corrupt file: the events before the first
    bad line are used and, when `problems` is given, one line saying so is appended to it."""
    results: dict[str, BazelResult] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                _read_event(json.loads(line), results)
            except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as e:
                if problems is not None:
                    problems.append(f"{path}:{lineno}: the BEP file is truncated or corrupt ({type(e).__name__}: {e}); "
                                    f"only the events before this line were used")  # fmt: skip
                break
    return results


def _read_event(event: dict[str, Any], results: dict[str, BazelResult]) -> None:
    ident = event.get("id", {})
    if "testResult" in ident:
        label = ident["testResult"]["label"]
        shard = max(int(ident["testResult"].get("shard", 1)) - 1, 0)
        attempt = int(ident["testResult"].get("attempt", 1))
        result = event.get("testResult", {})
        cached = bool(result.get("cachedLocally")) or bool(result.get("executionInfo", {}).get("cachedRemotely"))
        entry = results.setdefault(label, BazelResult())
        entry.attempts[shard] = max(entry.attempts.get(shard, 0), attempt)
        entry.cached[shard] = cached
    elif "testSummary" in ident:
        label = ident["testSummary"]["label"]
        results.setdefault(label, BazelResult()).overall = str(event.get("testSummary", {}).get("overallStatus", ""))


def _newest_mtime(dirs: list[Path]) -> float:
    """The newest modification time of the outputs in `dirs` (0.0 when there are none)."""
    newest = 0.0
    for d in dirs:
        for name in ("test.xml", "test.log", "test.outputs/outputs.zip", "test.outputs"):
            try:
                newest = max(newest, (d / name).stat().st_mtime)
            except OSError:
                pass
    return newest


def shard_dirs(testlogs: Path, target: Target) -> list[tuple[int, Path]]:
    """The target's shard directories as they are on disk, not as the matrix plans them today: after
    `durations` re-plans the shards, the testlogs still hold the last run's `shard_K_of_N`. When
    several layouts are there (runs with different shard counts), the most recently written one."""
    base = testlogs / target.cell.suite.directory / target.name
    layouts: dict[int, list[Path]] = {}
    if any((base / name).exists() for name in OUTPUT_FILES):
        layouts[1] = [base]
    try:
        entries = [e.name for e in os.scandir(base) if e.is_dir()]
    except OSError:
        entries = []
    for name in entries:
        m = _SHARD_DIR.fullmatch(name)
        if m and 1 <= int(m[1]) <= int(m[2]):
            layouts.setdefault(int(m[2]), []).append(base / name)
    if not layouts:  # never ran: the plan's layout (nothing there either way)
        total = target.shard_count
    elif len(layouts) == 1:
        (total,) = layouts
    else:
        total = max(layouts, key=lambda n: (_newest_mtime(layouts[n]), n))
    if total == 1:
        return [(0, base)]
    return [(i, base / f"shard_{i + 1}_of_{total}") for i in range(total)]


def _read_bounded(path: Path, limit: int = MAX_OUTPUT_BYTES) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise Unreadable(path, f"{size:,} bytes, over the {limit:,}-byte limit; not read")
    return path.read_bytes()


# What zipfile raises for a corrupt archive or member.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError)


def _not_a_zip(archive: Path, e: Exception) -> Unreadable:
    return Unreadable(archive, f"not a readable zip file ({type(e).__name__}: {e})")


def _read_member(archive: Path, name: str, limit: int = MAX_OUTPUT_BYTES) -> bytes | None:
    """Member `name` of the zip, read into memory by name (nothing is extracted), at most `limit` bytes."""
    try:
        with zipfile.ZipFile(archive) as z:
            return _member_bytes(z, archive, name, limit)
    except _ZIP_ERRORS as e:
        raise _not_a_zip(archive, e) from None


def _member_bytes(z: zipfile.ZipFile, archive: Path, name: str, limit: int) -> bytes | None:
    """Member `name` of the open zip `z` (None: not there), at most `limit` bytes: Unreadable over it;
    one of _ZIP_ERRORS when the member is corrupt."""
    try:
        info = z.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise Unreadable(archive, f"{name} is {info.file_size:,} bytes uncompressed ({info.compress_size:,} compressed), "
                                  f"over the {limit:,}-byte limit; not read")  # fmt: skip
    # zipfile stops at the declared size and then checks the CRC, so a member whose header
    # understates its size fails here; read(limit + 1) bounds it even so.
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Unreadable(archive, f"{name} is over the {limit:,}-byte limit uncompressed; not read")
    return data


def _parse_json(data: bytes, path: Path, name: str = "") -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Unreadable(path, f"{name + ': ' if name else ''}invalid JSON ({type(e).__name__}: {e})") from None


def _read_output(shard_dir: Path, name: str) -> tuple[Any, Path, str] | None:
    """A JSON file of the shard's undeclared outputs, unzipped or inside outputs.zip (Bazel's default):
    (value, the file it came from, the member name inside it or "")."""
    outputs = shard_dir / "test.outputs"
    plain = outputs / name
    if plain.is_file():
        return _parse_json(_read_bounded(plain), plain), plain, ""
    archive = outputs / "outputs.zip"
    if archive.is_file():
        data = _read_member(archive, name)
        if data is not None:
            return _parse_json(data, archive, name), archive, name
    return None


def read_cell_report(shard_dir: Path) -> dict[str, Any] | None:
    """The shard's full report.json (pytest-json-report's format plus matrix metadata)."""
    found = _read_output(shard_dir, REPORT_NAME)
    return None if found is None else found[0]


def _first_bad(column: tuple[Any, ...], ok: Callable[[Any], bool]) -> int:
    return next(i for i, value in enumerate(column) if not ok(value))


def _rows_ok(rows: list[list[Any]]) -> bool:
    """Whether every row is well formed, in a few C-speed passes (100,000 rows are checked here; a
    type() per value costs twice as much). _check_rows says what is wrong when this says no. Falsy
    values (0, "", null) pass: the records take them as 0.0 / "" / None."""
    try:
        # str.join raises TypeError on anything but a string: node ids, and the text fields when set.
        "".join(map(itemgetter(_ID), rows))
        for k in _TEXT:
            "".join(filter(None, map(itemgetter(k), rows)))
        durations = list(filter(None, map(itemgetter(_DURATION), rows)))
        return (
            set(map(itemgetter(_STATUS), rows)) <= _STATUSES
            and set(map(itemgetter(_TRANSFORM), rows)) <= {True, False, None}
            and set(map(type, durations)) <= {int, float}
            and math.isfinite(sum(durations))  # a NaN or an infinity survives the sum
            and min(durations, default=0) >= 0
        )
    except TypeError:  # an unhashable status, a number among the strings, ...
        return False


def _check_rows(rows: list[list[Any]], bad: Callable[[str], Unreadable]) -> None:
    """Raise bad(what) unless every row holds values of the right type, a known status, a finite duration."""
    if not rows or _rows_ok(rows):
        return
    columns = list(zip(*rows))
    ids = columns[0]

    def at(i: int) -> str:
        return f"test {i + 1} ({ids[i]!r:.120})" if isinstance(ids[i], str) else f"test {i + 1}"

    for name, column in zip(DIGEST_FIELDS, columns):
        allowed = _FIELD_TYPES[name]
        if not set(map(type, column)) <= allowed:
            i = _first_bad(column, lambda v, allowed=allowed: type(v) in allowed)
            wanted = " or ".join(sorted({_TYPE_NAMES[t] for t in allowed}))
            raise bad(f"{at(i)}: {name} is {column[i]!r:.80}, not {wanted}")
    if not set(columns[1]) <= _STATUSES:
        i = _first_bad(columns[1], lambda s: s in _STATUSES)
        raise bad(f"{at(i)}: status {columns[1][i]!r:.80} is not one of {', '.join(statuses.ALL)}")
    i = next((i for i, d in enumerate(columns[2]) if d is not None and not (math.isfinite(d) and d >= 0)), None)
    if i is not None:
        raise bad(f"{at(i)}: duration_s is {columns[2][i]!r}, not a finite number of seconds >= 0")


def _check_meta(meta: Any, bad: Callable[[str], Unreadable]) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise bad(f"'matrix' is {type(meta).__name__}, not an object")
    problems = meta.get("problems", [])
    if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
        raise bad(f"matrix.problems is {problems!r:.80}, not a list of strings")
    if not isinstance(meta.get("torch_version"), (str, _NONE)):
        raise bad(f"matrix.torch_version is {meta['torch_version']!r:.80}, not a string")
    if not isinstance(meta.get("test_filter"), (str, _NONE)):
        raise bad(f"matrix.test_filter is {meta['test_filter']!r:.80}, not a string")
    _check_names(meta.get(COLLECTED_NOT_RUN, []), f"matrix.{COLLECTED_NOT_RUN}", bad)
    return meta


def _check_names(names: Any, where: str, bad: Callable[[str], Unreadable]) -> None:
    """Raise bad(...) unless `names` is a list of node ids (strings); str.join checks 100,000 at C speed."""
    try:
        "".join(names if isinstance(names, list) else None)  # type: ignore[arg-type]
    except TypeError:
        raise bad(f"{where} is {names!r:.80}, not a list of test ids") from None


def _complaint(path: Path, name: str) -> Callable[[str], Unreadable]:
    """Builds the Unreadable for what is wrong inside `path` (inside its member `name`, if given)."""
    return lambda what: Unreadable(path, f"{name}: {what}" if name else what)


Results = tuple[dict[str, Any], list[list[Any]]]  # (cell metadata, one row of DIGEST_FIELDS per test)


def _digest_results(shard_dir: Path) -> Results | None:
    """The shard's results from its digest (None: no digest). Raises Unreadable when it is not usable."""
    found = _read_output(shard_dir, DIGEST_NAME)
    if found is not None:
        digest, path, name = found
        bad = _complaint(path, name)
        if not isinstance(digest, dict):
            raise bad(f"a JSON {type(digest).__name__}, not a results object")
        rows, fields = digest.get("tests"), digest.get("fields")
        if not isinstance(rows, list):
            raise bad(f"'tests' is {type(rows).__name__}, not a list")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields) or not {"nodeid", "status"} <= set(fields):
            raise bad(f"'fields' is {fields!r:.120}, not a list of field names with nodeid and status")
        if not set(map(type, rows)) <= {list}:
            i = next(i for i, row in enumerate(rows) if type(row) is not list)
            raise bad(f"test {i + 1} is {rows[i]!r:.80}, not a list")
        if not set(map(len, rows)) <= {len(fields)}:
            i = next(i for i, row in enumerate(rows) if len(row) != len(fields))
            raise bad(f"test {i + 1} has {len(rows[i])} values, 'fields' names {len(fields)}")
        if tuple(fields) != DIGEST_FIELDS:  # written by another version: reorder, missing fields empty
            rows = [[dict(zip(fields, row)).get(f) for f in DIGEST_FIELDS] for row in rows]
        _check_rows(rows, bad)
        return _check_meta(digest.get("matrix", {}), bad), rows
    return None


def _report_results(shard_dir: Path) -> Results | None:
    """The shard's results from report.json (None: not there). Raises Unreadable when it is not usable."""
    found = _read_output(shard_dir, REPORT_NAME)
    if found is None:
        return None
    report, path, name = found
    bad = _complaint(path, name)
    if not isinstance(report, dict):
        raise bad(f"a JSON {type(report).__name__}, not a report object")
    try:
        tests = [{**t["metadata"]["matrix"], "nodeid": t["nodeid"]} for t in report.get("tests", [])]
    except (AttributeError, KeyError, TypeError) as e:
        raise bad(f"a test entry without its matrix metadata ({type(e).__name__}: {e})") from None
    rows = [[t.get(f) for f in DIGEST_FIELDS] for t in tests]
    _check_rows(rows, bad)
    return _check_meta(report.get("matrix", {}), bad), rows


def _names_beside_digest(shard_dir: Path) -> list[str] | None:
    """The shard's COLLECTED_NOT_RUN list from its own file beside the digest (None: an older runtime
    wrote none). Raises Unreadable when it is not usable."""
    found = _read_output(shard_dir, COLLECTED_NAME)
    if found is None:
        return None
    value, path, name = found
    names = value.get(COLLECTED_NOT_RUN) if isinstance(value, dict) else None
    _check_names(names, COLLECTED_NOT_RUN, _complaint(path, name))
    return names


def _row_reader() -> Callable[[list[list[Any]], str, str, str, str, int], list[Record]]:
    """The digest rows -> Records loop, generated from DIGEST_FIELDS and Record's fields (as dataclasses
    generate __init__): positional, as fast as the loop written out by hand. 100,000 records are built
    here; keyword arguments cost ~50% more. A row's None (a field an older writer lacked) or a number
    for duration_s becomes what the Record field holds: its default, a float."""
    from_cell = {"suite": "suite", "test": "nodeid", "variant": "variant", "device": "device", "target": "label", "shard": "shard"}
    missing = set(DIGEST_FIELDS) - {"nodeid"} - {f.name for f in fields(Record)}
    if missing:
        raise TypeError(f"digest fields {sorted(missing)} are not Record fields")
    args = []
    for f in fields(Record):
        if f.name in from_cell:
            args.append(from_cell[f.name])
        elif f.name not in DIGEST_FIELDS:
            args.append(repr(f.default))
        elif f.default is MISSING or f.default is None:
            args.append(f"v_{f.name}")
        elif isinstance(f.default, bool):
            args.append(f"bool(v_{f.name})")
        elif isinstance(f.default, float):
            args.append(f"float(v_{f.name} or {f.default!r})")
        else:
            args.append(f"(v_{f.name} or {f.default!r})")
    names = ", ".join("nodeid" if name == "nodeid" else f"v_{name}" for name in DIGEST_FIELDS)
    source = f"def read(rows, suite, variant, device, label, shard):\n    return [Record({', '.join(args)}) for {names} in rows]\n"
    namespace: dict[str, Any] = {"Record": Record}
    exec(compile(source, "<collect._row_reader>", "exec"), namespace)
    return namespace["read"]


_read_rows = _row_reader()


def _records_from_rows(rows: list[list[Any]], target: Target, shard: int) -> list[Record]:
    cell = target.cell
    return _read_rows(rows, cell.suite.name, cell.variant.name, cell.device.name, target.label, shard)


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.fromstring(_read_bounded(path))
    except ET.ParseError as e:
        raise Unreadable(path, f"invalid XML ({e})") from None


def _records_from_xml(path: Path, root: ET.Element, target: Target, shard: int) -> list[Record]:
    cell, out = target.cell, []
    for i, case in enumerate(root.iter("testcase"), 1):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        problem = next((case.find(tag) for tag in ("failure", "error", "skipped") if case.find(tag) is not None), None)
        status = props.get("matrix_status") or {"failure": statuses.FAILED, "error": statuses.ERROR, "skipped": statuses.SKIPPED}.get(
            problem.tag if problem is not None else "", statuses.PASSED
        )
        if status not in statuses.ALL:
            raise Unreadable(path, f"testcase {i}: matrix_status {status!r:.80} is not one of {', '.join(statuses.ALL)}")
        try:
            duration = float(case.get("time", 0) or 0)
        except ValueError:
            duration = math.nan
        if not math.isfinite(duration) or duration < 0:
            raise Unreadable(path, f"testcase {i}: time {case.get('time')!r:.80} is not a finite number of seconds >= 0")
        classname = case.get("classname", "")
        file = classname.split(".", 1)[1] if classname.startswith(cell.suite.name + ".") else classname
        name = case.get("name", "")
        message = (problem.get("message", "") if problem is not None else "").split(": ", 1)[-1]
        out.append(
            Record(
                suite=cell.suite.name, test=f"{file}::{name}" if name != file else file, variant=cell.variant.name,
                device=cell.device.name, status=status, duration_s=duration, message=message,
                error_type=problem.get("type") if problem is not None else None,
                transform_failed=props.get("transform_failed") == "true", target=target.label, shard=shard,
            )
        )  # fmt: skip
    return out


def _log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - LOG_TAIL_READ, 0))
            data = f.read()
    except OSError as e:
        return f"(test.log unreadable: {e})"
    text = data.decode(errors="replace")
    if size > LOG_TAIL_READ:
        text = text.partition("\n")[2]  # the first line read is likely cut
    lines = [ln for ln in text.splitlines() if "linux-sandbox" not in ln]  # Bazel's sandbox debug lines
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


@dataclass
class _Shard:
    records: list[Record] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # the cell metadata its source holds (test.xml: some of it)
    broken: BrokenShard | None = None
    outputs_usable: bool = True  # False: its outputs could not be read, so neither can its evidence
    problem: str = ""  # a source that was there but unreadable, when a later one gave the results
    # The tests the target collected that it has no record of (COLLECTED_NOT_RUN; None: not listed),
    # read when asked: only a target that ran filtered or lost a shard needs them.
    not_run_here: Callable[[], list[str] | None] = lambda: None

    @property
    def test_filter(self) -> str | None:
        """The --test_filter it ran with ("": none), None when its source does not say."""
        return self.meta.get("test_filter", None) if "test_filter" in self.meta else None


DIED = "died without writing a report or test.xml"


def _shown(testlogs: Path, path: Path) -> str:
    """`path` as a report names it: relative to the testlogs when it is inside them."""
    return str(path.relative_to(testlogs) if path.is_relative_to(testlogs) else path)


def _xml_meta(path: Path, root: ET.Element) -> dict[str, Any]:
    """The cell metadata our test.xml carries as testsuite properties (runtime/outputs.junit_xml)."""
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    props = {} if suite is None else {p.get("name"): p.get("value") or "" for p in suite.findall("properties/property")}
    meta: dict[str, Any] = {}
    if "test_filter" in props:
        meta["test_filter"] = props["test_filter"]
    if COLLECTED_NOT_RUN in props:
        names = _parse_json(props[COLLECTED_NOT_RUN].encode(), path, f"property {COLLECTED_NOT_RUN}")
        _check_names(names, f"property {COLLECTED_NOT_RUN}", _complaint(path, ""))
        meta[COLLECTED_NOT_RUN] = names
    return meta


def _read_shard(testlogs: Path, shard_dir: Path, target: Target, shard: int) -> _Shard | None:
    """What one shard directory holds; None when it holds nothing (Bazel never ran it). Its sources
    best first (module docstring): one that is there but unreadable gives way to the next."""
    log = shard_dir / "test.log"
    where = f"shard {shard + 1}"
    unreadable: list[str] = []  # what was wrong with each source that was there but could not be used

    def shown(path: Path) -> str:
        return _shown(testlogs, path)

    def broken(status: str, message: str, problem: str = "", meta: dict[str, Any] | None = None) -> _Shard:
        tail = _log_tail(log) if log.is_file() else ""  # read only for a shard that needs it
        return _Shard(meta=meta or {}, broken=BrokenShard(target, shard, status, message, tail, problem or f"{where}: {message}"))

    def instead_of_unreadable(source: str) -> str:
        return f"{where}: {'; '.join(unreadable)}; results read from {source}" if unreadable else ""

    def attempt(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Unreadable as e:
            what = f"{shown(e.path)}: {e.what}"
        except Exception as e:  # noqa: BLE001 - a bug met on one odd shard must not cost the whole report
            what = f"{shown(shard_dir)}: could not be read ({type(e).__name__}: {e})"
        if what not in unreadable:  # the digest and report.json share one outputs.zip
            unreadable.append(what)
        return None

    for read, name in ((_digest_results, DIGEST_NAME), (_report_results, REPORT_NAME)):
        results = attempt(lambda read=read: read(shard_dir))
        if results is None:
            continue
        meta, rows = results
        if rows or not meta.get("problems"):
            not_run_here = (lambda: _names_beside_digest(shard_dir)) if name == DIGEST_NAME else (lambda meta=meta: meta.get(COLLECTED_NOT_RUN))
            return _Shard(_records_from_rows(rows, target, shard), meta, problem=instead_of_unreadable(name), not_run_here=not_run_here)
        # It ran and reported no test, saying why (e.g. the variant could not be loaded).
        message = "the target ran but reported no test: " + "; ".join(meta["problems"])
        return broken(statuses.ERROR, message, meta={**meta, "problems": []})
    xml = shard_dir / "test.xml"
    root = attempt(lambda: _parse_xml(xml)) if xml.is_file() else None
    if root is not None and root.find(".//testcase") is not None:
        records = attempt(lambda: _records_from_xml(xml, root, target, shard))
        # Bazel writes its own one-testcase XML (named after the target) when the test died
        # without one: not ours. Ours name tests by node id, which starts with a .py file.
        if records and any(r.test.split("::", 1)[0].endswith(".py") for r in records):
            meta = attempt(lambda: _xml_meta(xml, root))
            if meta is not None:
                return _Shard(records, meta, outputs_usable=not unreadable, problem=instead_of_unreadable("test.xml"),
                              not_run_here=lambda: meta.get(COLLECTED_NOT_RUN))  # fmt: skip
        code = _BAZEL_EXIT.search(ET.tostring(root, encoding="unicode"))
        if not unreadable and code and int(code[1]) < 128:  # an exit status, not a signal: it failed to start, did not crash
            return broken(statuses.ERROR, f"the target exited with code {code[1]} without writing a report or test.xml (see log tail)")
    elif not unreadable and not log.is_file():
        return None
    if unreadable:
        unusable = broken(statuses.ERROR, f"unusable test outputs: {'; '.join(unreadable)}")
        unusable.outputs_usable = False
        return unusable
    return broken(statuses.CRASHED, f"the target {DIED} (see log tail)", f"{where} {DIED}; see its test.log")


# --- evidence (runtime/evidence.py) -------------------------------------------------------------

# Largest evidence.json read; larger is refused unread. The writer stays well under it: MAX_CALLS calls
# of two TEXT_CAP-character texts and two 4000-character lines, each character at most 6 bytes of JSON.
EVIDENCE_MAX_BYTES = 8 * 1024 * 1024
# The payload file names evidence.Recorder writes (call-<n>-<_safe_name>): one path component, never "..".
_PAYLOAD_FILE = re.compile(r"call-[0-9]+-[A-Za-z0-9._-]{1,80}")
_EVIDENCE_TYPES = {"str": {str}, "int": {int}, "float": {int, float}, "None": {_NONE}}
_VALUE_NAMES = {str: "a string", float: "a number", int: "an integer", _NONE: "null"}


def _json_types(annotation: str) -> frozenset[type]:
    """The JSON value types of a field annotated `annotation` ("str | None"): the dataclass is the format."""
    return frozenset().union(*(_EVIDENCE_TYPES[part] for part in annotation.split(" | ")))


_CALL_TYPES = {f.name: _json_types(str(f.type)) for f in fields(CallEvidence) if f.name != "payloads"}
_CALL_FIELDS = tuple(f.name for f in fields(CallEvidence))
_PAYLOAD_TYPES = {f.name: _json_types(str(f.type)) for f in fields(Payload)}


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


def _bound_evidence(records: list[Record]) -> None:
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


def _attach_evidence(testlogs: Path, shard_dir: Path, records: list[Record]) -> None:
    try:
        read_evidence(testlogs, shard_dir, records)
    except Exception as e:  # noqa: BLE001 - a bug met on one odd shard's evidence must not cost the report
        where = shard_dir.relative_to(testlogs) if shard_dir.is_relative_to(testlogs) else shard_dir
        for record in records:
            if record.evidence is None:  # not reached, or kept none: which one is unknown
                problem = f"{where}: the evidence could not be read ({type(e).__name__}: {e})"
                record.evidence = _unusable(shard_dir / "test.outputs", record.test, problem)


def read_evidence(testlogs: Path, shard_dir: Path, records: list[Record]) -> None:
    """Set the `evidence` of each of `records` (one shard's) that its test left in the shard's outputs:
    the unzipped test.outputs/ directory, else outputs.zip, opened once for all of them."""
    outputs = shard_dir / "test.outputs"
    archive = outputs / "outputs.zip"

    def shown(path: Path) -> str:
        return _shown(testlogs, path)

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
                return _read_bounded(path, EVIDENCE_MAX_BYTES)
            except OSError as e:  # e.g. a test made it unreadable
                raise Unreadable(path, f"not readable ({type(e).__name__}: {e})") from None

        def in_folder(name: str, folder: Path = folder) -> bool:
            try:
                return stat.S_ISREG(os.lstat(folder / name).st_mode)
            except OSError:
                return False

        record.evidence = _evidence_of(record, outputs, read, in_folder, shown)
    if not in_zip or not archive.is_file():
        return
    try:
        z = zipfile.ZipFile(archive)
    except _ZIP_ERRORS as e:
        problem = f"{shown(archive)}: {_not_a_zip(archive, e).what}"
        for record in in_zip:
            record.evidence = _unusable(archive, record.test, problem)
        return
    with z:
        names = set(z.namelist())
        for record in in_zip:
            member = index_member(record.test)

            def read(member: str = member) -> bytes | None:
                try:
                    return _member_bytes(z, archive, member, EVIDENCE_MAX_BYTES)
                except _ZIP_ERRORS as e:
                    raise Unreadable(archive, f"{member}: not readable ({type(e).__name__}: {e})") from None

            def in_archive(name: str, folder: str = member.rpartition("/")[0]) -> bool:
                return f"{folder}/{name}" in names

            record.evidence = _evidence_of(record, archive, read, in_archive, shown)


def _fresh_bep(bazel: dict[str, BazelResult], bep: Path, newest: dict[str, float]) -> tuple[dict[str, BazelResult], list[str]]:
    """The BEP's entries for the targets whose testlogs it describes. Bazel writes the BEP file until the
    end of its command, after every test output of that run; a target whose outputs are newer than the
    file was rewritten by a later Bazel command (a plain `bazel test`, a rerun), so for it the file's cache
    hits, attempts and status are another run's: dropped, with a note."""
    written = bep.stat().st_mtime
    stale = sorted(label for label in bazel if newest.get(label, 0.0) > written)
    if not stale:
        return bazel, []
    note = (f"{bep} is older than the testlogs of {len(stale)} target(s), rewritten by a later Bazel command: its cache hits, "
            f"attempts and status are not used for them ({', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''})")  # fmt: skip
    return {label: r for label, r in bazel.items() if label not in stale}, [note]


def collect(
    matrix: Matrix,
    testlogs: str | os.PathLike[str],
    bep: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
    run_id: str = "",
    cells: list[Cell] | None = None,
    fill_missing: bool = True,
    labels: set[str] | None = None,
    previous: list[Record] | None = None,
) -> Collected:
    """Records for `cells` (default: the whole matrix), stamped `run_id`. With fill_missing, every test
    the matrix knows keeps a record (known_tests.py decides which: this run's, the `previous` report's,
    or one saying why there is none), and the previous records of the matrix's other cells are kept.
    With `labels`, only the targets named there are read (a cell's label names all its targets): a
    rerun of one file's target must not re-stamp the other targets' old testlogs as fresh results.
    `bep`: the Build Event Protocol file(s) of the Bazel command(s) that ran."""
    testlogs = Path(testlogs)
    cells = matrix.cells() if cells is None else cells
    collected = Collected(records=[])
    found: dict[tuple[str, str, str], list[Record]] = {}
    runs: dict[tuple[str, str, str], dict[str, TargetRun]] = {}  # per cell, its targets read, by name
    newest: dict[str, float] = {}  # label -> newest output mtime (is the BEP about these testlogs?)
    readable: dict[tuple[str, int], Path] = {}  # (label, shard) -> the shard's directory, when its outputs could be read
    for cell in cells:
        key = (cell.suite.name, cell.variant.name, cell.device.name)
        found[key], runs[key] = [], {}
        filters: set[str] = set()  # the --test_filter of each shard read
        for target in cell.targets:
            if labels is not None and target.label not in labels and cell.label not in labels:
                continue
            run = runs[key][target.name] = TargetRun(target)
            shards = shard_dirs(testlogs, target)
            if bep:
                newest[target.label] = _newest_mtime([d for _s, d in shards])
            read: list[tuple[int, _Shard]] = []  # its shards with results
            for shard, shard_dir in shards:
                result = _read_shard(testlogs, shard_dir, target, shard)
                if result is None:
                    run.missing += 1
                    continue
                if result.outputs_usable:
                    readable[target.label, shard] = shard_dir
                found[key] += result.records
                collected.torch_version = collected.torch_version or result.meta.get("torch_version")
                collected.problems += [f"{target.label}: {p}" for p in [*result.meta.get("problems", []), result.problem] if p]
                filters.add(str(result.meta.get("test_filter") or ""))
                if result.broken:
                    run.broken.append(result.broken)
                else:
                    run.add([r.test for r in result.records], result.test_filter)
                    read.append((shard, result))
            if run.test_filter != "" or run.broken or run.missing:  # its records alone may not name all its tests
                for shard, result in read:
                    try:
                        run.add_names(result.not_run_here())
                    except Unreadable as e:
                        collected.problems.append(f"{target.label}: shard {shard + 1}: {_shown(testlogs, e.path)}: {e.what}; "
                                                  "its list of the tests it did not run is not used")  # fmt: skip
                        run.add_names(None)
        # A file's target cannot tell a bare test name that is another file's from a typo, so it
        # passes with no test (runtime/selection.decidable_here); the cell as a whole can tell.
        if len(cell.targets) > 1 and len(filters) == 1 and "" not in filters and not found[key] and not any(r.broken for r in runs[key].values()):
            collected.problems.append(f"{cell.label}: --test_filter {next(iter(filters))!r} matches no test of any of its "
                                      f"{len(cell.targets)} file targets; check its spelling")  # fmt: skip
    if bep:
        collected.bazel, collected.notes = _read_beps(bep, newest, collected.problems)
    if fill_missing:
        _complete(matrix, cells, found, runs, previous or [], run_id, NOT_RUN if labels is None else NOT_RERUN, collected)
    carried = {id(r) for r in previous or []}  # kept as the previous report has them
    bazel = collected.bazel
    keeping: dict[tuple[str, int], list[Record]] = {}  # per shard, its records whose status keeps evidence
    keeps = statuses.KEEPS_EVIDENCE
    for records in found.values():
        for record in records:
            if id(record) in carried:
                continue
            record.run_id = run_id
            result = bazel.get(record.target)
            if result and record.shard is not None:
                record.cached = result.cached.get(record.shard, False)
                record.attempts = result.attempts.get(record.shard, 1)
            if record.status in keeps and record.shard is not None:
                keeping.setdefault((record.target, record.shard), []).append(record)
    for shard_key, records in keeping.items():
        if shard_key in readable:
            _attach_evidence(testlogs, readable[shard_key], records)
    # A broken shard no record speaks for (tests unknown, or another shard spoke for the target): never silent.
    collected.problems += [f"{b.target.label}: {b.problem}" for cell_runs in runs.values() for run in cell_runs.values()
                           for b in run.broken if not b.spoken]  # fmt: skip
    for records in found.values():
        collected.records += records
    _bound_evidence([r for r in collected.records if r.evidence])
    # In Record.key order: stable one-field passes, least significant first (faster than a 4-tuple key).
    for name in ("device", "variant", "test", "suite"):
        collected.records.sort(key=attrgetter(name))
    return collected


def _read_beps(beps: str | os.PathLike[str] | list[str | os.PathLike[str]], newest: dict[str, float],
               problems: list[str]) -> tuple[dict[str, BazelResult], list[str]]:  # fmt: skip
    """What the BEP file(s) say about the targets whose testlogs they describe (each label is in one file)."""
    results: dict[str, BazelResult] = {}
    notes: list[str] = []
    for bep in beps if isinstance(beps, list) else [beps]:
        fresh, stale = _fresh_bep(read_bep(bep, problems), Path(bep), newest)
        results.update(fresh)
        notes += stale
    return results, notes


def _complete(matrix: Matrix, cells: list[Cell], found: dict[tuple[str, str, str], list[Record]], runs: dict[tuple[str, str, str], dict[str, TargetRun]],
              previous: list[Record], run_id: str, unread: str, collected: Collected) -> None:  # fmt: skip
    """Add to `found` a record for every known test of `cells` it lacks (known_tests.py), and the
    previous records of the matrix's cells not among `cells`; note the previous records dropped."""
    before: dict[tuple[str, str, str], dict[str, Record]] = {}
    for record in previous:
        before.setdefault((record.suite, record.variant, record.device), {})[record.test] = record
    dropped = Dropped()
    decisions = [CellNames(cell, {r.test: r for r in found[key]}, runs[key], before.pop(key, {}), run_id, unread, dropped)
                 for cell in cells for key in [(cell.suite.name, cell.variant.name, cell.device.name)]]  # fmt: skip
    in_matrix = {(c.suite.name, c.variant.name, c.device.name) for c in matrix.cells()}
    for key, records in before.items():  # cells outside `cells`: kept as they were, or dropped with their cell
        if key in in_matrix:
            found.setdefault(key, []).extend(records.values())
        else:
            for record in records.values():
                dropped[Dropped.CELL, cell_label_of(record)] += 1
    suite_fresh: dict[str, set[str]] = {}  # per suite, the ids this run collected in any of its cells
    suite_previous: dict[str, set[str]] = {}  # per suite, the previous report's ids this run does not prove gone
    for decision in decisions:
        suite_fresh.setdefault(decision.cell.suite.name, set()).update(decision.collected())
        suite_previous.setdefault(decision.cell.suite.name, set()).update(decision.surviving_previous())
    for decision in decisions:
        cell = decision.cell
        found[(cell.suite.name, cell.variant.name, cell.device.name)] += decision.records(suite_fresh[cell.suite.name], suite_previous[cell.suite.name])
    collected.notes += dropped.notes()
