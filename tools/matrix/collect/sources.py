"""One shard's outputs, read into records: its sources best first (collect/__init__.py), the first
usable one giving its rows (collect/rows.py), the cell metadata it carries, and what it says about
the tests it did not run; or, when none is usable, why (a BrokenShard for known_tests.py)."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.matrix import statuses
from tools.matrix.collect.files import Unreadable, complaint, log_tail, parse_json, read_bounded, read_output, shown
from tools.matrix.collect.rows import check_rows, records_from_rows
from tools.matrix.config import Target
from tools.matrix.known_tests import BrokenShard
from tools.matrix.records import Record
from tools.matrix.runtime.outputs import COLLECTED_NAME, COLLECTED_NOT_RUN, DIGEST_FIELDS, DIGEST_NAME, REPORT_NAME, from_junit_property

OUTPUT_FILES = ("test.xml", "test.log", "test.outputs")  # what a shard directory holds once it ran
_SHARD_DIR = re.compile(r"shard_(\d+)_of_(\d+)")
_BAZEL_EXIT = re.compile(r"exited with error code (\d+)")  # the message of Bazel's own test.xml
_NONE = type(None)


def newest_mtime(dirs: list[Path]) -> float:
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
        total = max(layouts, key=lambda n: (newest_mtime(layouts[n]), n))
    if total == 1:
        return [(0, base)]
    return [(i, base / f"shard_{i + 1}_of_{total}") for i in range(total)]


def read_cell_report(shard_dir: Path) -> dict[str, Any] | None:
    """The shard's full report.json (pytest-json-report's format plus matrix metadata)."""
    found = read_output(shard_dir, REPORT_NAME)
    return None if found is None else found[0]


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
    check_names(meta.get(COLLECTED_NOT_RUN, []), f"matrix.{COLLECTED_NOT_RUN}", bad)
    return meta


def check_names(names: Any, where: str, bad: Callable[[str], Unreadable]) -> None:
    """Raise bad(...) unless `names` is a list of node ids (strings); str.join checks 100,000 at C speed."""
    try:
        "".join(names if isinstance(names, list) else None)  # type: ignore[arg-type]
    except TypeError:
        raise bad(f"{where} is {names!r:.80}, not a list of test ids") from None


Results = tuple[dict[str, Any], list[list[Any]]]  # (cell metadata, one row of DIGEST_FIELDS per test)


def digest_results(shard_dir: Path) -> Results | None:
    """The shard's results from its digest (None: no digest). Raises Unreadable when it is not usable."""
    found = read_output(shard_dir, DIGEST_NAME)
    if found is not None:
        digest, path, name = found
        bad = complaint(path, name)
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
        check_rows(rows, bad)
        return _check_meta(digest.get("matrix", {}), bad), rows
    return None


def _report_results(shard_dir: Path) -> Results | None:
    """The shard's results from report.json (None: not there). Raises Unreadable when it is not usable."""
    found = read_output(shard_dir, REPORT_NAME)
    if found is None:
        return None
    report, path, name = found
    bad = complaint(path, name)
    if not isinstance(report, dict):
        raise bad(f"a JSON {type(report).__name__}, not a report object")
    try:
        tests = [{**t["metadata"]["matrix"], "nodeid": t["nodeid"]} for t in report.get("tests", [])]
    except (AttributeError, KeyError, TypeError) as e:
        raise bad(f"a test entry without its matrix metadata ({type(e).__name__}: {e})") from None
    rows = [[t.get(f) for f in DIGEST_FIELDS] for t in tests]
    check_rows(rows, bad)
    return _check_meta(report.get("matrix", {}), bad), rows


def _names_beside_digest(shard_dir: Path) -> list[str] | None:
    """The shard's COLLECTED_NOT_RUN list from its own file beside the digest (None: an older runtime
    wrote none). Raises Unreadable when it is not usable."""
    found = read_output(shard_dir, COLLECTED_NAME)
    if found is None:
        return None
    value, path, name = found
    names = value.get(COLLECTED_NOT_RUN) if isinstance(value, dict) else None
    check_names(names, COLLECTED_NOT_RUN, complaint(path, name))
    return names


def _parse_xml(path: Path) -> ET.Element:
    try:
        return ET.fromstring(read_bounded(path))
    except ET.ParseError as e:
        raise Unreadable(path, f"invalid XML ({e})") from None


# A test.xml an older runtime wrote lacks some fields' properties: what JUnit itself says stands in.
_JUNIT_STATUS = {"failure": statuses.FAILED, "error": statuses.ERROR, "skipped": statuses.SKIPPED}


def _xml_rows(path: Path, root: ET.Element, suite: str) -> list[list[Any]]:
    """One row of DIGEST_FIELDS per <testcase>, from its properties (runtime/outputs.junit_property: one
    per field). A field without its property (an older runtime's test.xml) is what JUnit says of it:
    the node id from classname and name, the status from <failure>/<error>/<skipped> (or the property
    matrix_status), the duration from `time`, the message and error type from that element; any other
    field its default (None in the row)."""
    rows = []
    for i, case in enumerate(root.iter("testcase"), 1):
        props = {p.get("name"): p.get("value") or "" for p in case.iter("property")}
        values: dict[str, Any] = {}
        for name in DIGEST_FIELDS:
            if name in props:
                try:
                    values[name] = from_junit_property(name, props[name])
                except (ValueError, RecursionError) as e:
                    raise Unreadable(path, f"testcase {i}: property {name} is {props[name]!r:.80}, not its JSON ({type(e).__name__}: {e})") from None
        problem = next((case.find(tag) for tag in _JUNIT_STATUS if case.find(tag) is not None), None)
        if "nodeid" not in values:
            classname, name = case.get("classname", ""), case.get("name", "")
            file = classname.split(".", 1)[1] if classname.startswith(suite + ".") else classname
            values["nodeid"] = f"{file}::{name}" if name != file else file
        if "status" not in values:
            values["status"] = props.get("matrix_status") or _JUNIT_STATUS.get(problem.tag if problem is not None else "", statuses.PASSED)
        if "duration_s" not in values:
            try:
                values["duration_s"] = float(case.get("time", 0) or 0)
            except ValueError:
                values["duration_s"] = case.get("time")  # check_rows says what is wrong with it
        if problem is not None:
            values.setdefault("message", problem.get("message", "").split(": ", 1)[-1])
            values.setdefault("error_type", problem.get("type"))
        rows.append([values.get(name) for name in DIGEST_FIELDS])
    check_rows(rows, complaint(path))
    return rows

def xml_rows(path: Path, suite: str) -> list[list[Any]]:
    """The DIGEST_FIELDS rows of a test.xml the runtime wrote (Unreadable when it is not one)."""
    return _xml_rows(path, _parse_xml(path), suite)


@dataclass
class Shard:
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


def _xml_meta(path: Path, root: ET.Element) -> dict[str, Any]:
    """The cell metadata our test.xml carries as testsuite properties (runtime/outputs.junit_xml)."""
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    props = {} if suite is None else {p.get("name"): p.get("value") or "" for p in suite.findall("properties/property")}
    meta: dict[str, Any] = {}
    if "test_filter" in props:
        meta["test_filter"] = props["test_filter"]
    if COLLECTED_NOT_RUN in props:
        names = parse_json(props[COLLECTED_NOT_RUN].encode(), path, f"property {COLLECTED_NOT_RUN}")
        check_names(names, f"property {COLLECTED_NOT_RUN}", complaint(path, ""))
        meta[COLLECTED_NOT_RUN] = names
    return meta


def read_shard(testlogs: Path, shard_dir: Path, target: Target, shard: int) -> Shard | None:
    """What one shard directory holds; None when it holds nothing (Bazel never ran it). Its sources
    best first (module docstring): one that is there but unreadable gives way to the next."""
    log = shard_dir / "test.log"
    where = f"shard {shard + 1}"
    unreadable: list[str] = []  # what was wrong with each source that was there but could not be used

    def broken(status: str, message: str, problem: str = "", meta: dict[str, Any] | None = None) -> Shard:
        tail = log_tail(log) if log.is_file() else ""  # read only for a shard that needs it
        return Shard(meta=meta or {}, broken=BrokenShard(target, shard, status, message, tail, problem or f"{where}: {message}"))

    def instead_of_unreadable(source: str) -> str:
        return f"{where}: {'; '.join(unreadable)}; results read from {source}" if unreadable else ""

    def attempt(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Unreadable as e:
            what = f"{shown(testlogs, e.path)}: {e.what}"
        except Exception as e:  # noqa: BLE001 - a bug met on one odd shard must not cost the whole report
            what = f"{shown(testlogs, shard_dir)}: could not be read ({type(e).__name__}: {e})"
        if what not in unreadable:  # the digest and report.json share one outputs.zip
            unreadable.append(what)
        return None

    for read, name in ((digest_results, DIGEST_NAME), (_report_results, REPORT_NAME)):
        results = attempt(lambda read=read: read(shard_dir))
        if results is None:
            continue
        meta, rows = results
        if rows or not meta.get("problems"):
            not_run_here = (lambda: _names_beside_digest(shard_dir)) if name == DIGEST_NAME else (lambda meta=meta: meta.get(COLLECTED_NOT_RUN))
            return Shard(records_from_rows(rows, target, shard), meta, problem=instead_of_unreadable(name), not_run_here=not_run_here)
        # It ran and reported no test, saying why (e.g. the variant could not be loaded).
        message = "the target ran but reported no test: " + "; ".join(meta["problems"])
        return broken(statuses.ERROR, message, meta={**meta, "problems": []})
    xml = shard_dir / "test.xml"
    root = attempt(lambda: _parse_xml(xml)) if xml.is_file() else None
    if root is not None and root.find(".//testcase") is not None:
        rows = attempt(lambda: _xml_rows(xml, root, target.cell.suite.name))
        # Bazel writes its own one-testcase XML (named after the target) when the test died
        # without one: not ours. Ours name tests by node id, which starts with a .py file.
        if rows and any(row[0].split("::", 1)[0].endswith(".py") for row in rows):
            meta = attempt(lambda: _xml_meta(xml, root))
            if meta is not None:
                return Shard(records_from_rows(rows, target, shard), meta, outputs_usable=not unreadable, problem=instead_of_unreadable("test.xml"),
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
