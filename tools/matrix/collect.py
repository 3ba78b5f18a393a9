"""Read what Bazel left (bazel-testlogs/**, optionally the Build Event Protocol file) into Records.

Sources, per cell shard, best first: the cell's results (matrix_results.json, the compact digest of
report.json, else report.json itself, from test.outputs/outputs.zip or unzipped), then test.xml
(JUnit, carrying the matrix status as a property), then test.log alone (the target died with
neither: every test of the cell becomes `crashed`, the log tail kept). A cell
of the matrix with nothing at all becomes `not_run` for every known test of its suite. The BEP file,
when given, adds what only Bazel knows: cache hits, attempts of flaky targets, Bazel's own status.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

from tools.matrix import statuses
from tools.matrix.config import Cell, Matrix
from tools.matrix.records import Record
from tools.matrix.runtime.outputs import DIGEST_FIELDS, DIGEST_NAME, REPORT_NAME

LOG_TAIL_CHARS = 4000


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


def read_bep(path: str | os.PathLike[str]) -> dict[str, BazelResult]:
    results: dict[str, BazelResult] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            event = json.loads(line)
            ident = event.get("id", {})
            if "testResult" in ident:
                label = ident["testResult"]["label"]
                shard = max(int(ident["testResult"].get("shard", 1)) - 1, 0)
                attempt = int(ident["testResult"].get("attempt", 1))
                result = event.get("testResult", {})
                entry = results.setdefault(label, BazelResult())
                entry.attempts[shard] = max(entry.attempts.get(shard, 0), attempt)
                cached = bool(result.get("cachedLocally")) or bool(result.get("executionInfo", {}).get("cachedRemotely"))
                entry.cached[shard] = cached
            elif "testSummary" in ident:
                label = ident["testSummary"]["label"]
                results.setdefault(label, BazelResult()).overall = event.get("testSummary", {}).get("overallStatus", "")
    return results


def _shard_dirs(testlogs: Path, cell: Cell) -> list[tuple[int, Path]]:
    base = testlogs / cell.suite.directory / cell.target_name
    total = cell.shard_count
    if total == 1:
        return [(0, base)]
    return [(i, base / f"shard_{i + 1}_of_{total}") for i in range(total)]


def _read_output(shard_dir: Path, name: str) -> dict[str, Any] | None:
    """A JSON file of the shard's undeclared outputs: unzipped, or inside outputs.zip (Bazel's default)."""
    outputs = shard_dir / "test.outputs"
    plain = outputs / name
    if plain.is_file():
        return json.loads(plain.read_bytes())
    archive = outputs / "outputs.zip"
    if archive.is_file():
        with zipfile.ZipFile(archive) as z:
            if name in z.namelist():
                return json.loads(z.read(name))
    return None


def _read_cell_report(shard_dir: Path) -> dict[str, Any] | None:
    """The shard's full report.json (pytest-json-report's format plus matrix metadata)."""
    return _read_output(shard_dir, REPORT_NAME)


def _read_cell_results(shard_dir: Path) -> tuple[dict[str, Any], list[list[Any]]] | None:
    """(cell metadata, one row of DIGEST_FIELDS per test): from the digest, else from report.json
    (outputs written before the digest existed)."""
    digest = _read_output(shard_dir, DIGEST_NAME)
    if digest is not None:
        rows, fields = digest["tests"], tuple(digest["fields"])
        if fields != DIGEST_FIELDS:  # written by another version: reorder, missing fields empty
            rows = [[dict(zip(fields, row)).get(f) for f in DIGEST_FIELDS] for row in rows]
        return digest.get("matrix", {}), rows
    report = _read_cell_report(shard_dir)
    if report is None:
        return None
    tests = [{**t["metadata"]["matrix"], "nodeid": t["nodeid"]} for t in report.get("tests", [])]
    return report.get("matrix", {}), [[t.get(f) for f in DIGEST_FIELDS] for t in tests]


def _records_from_rows(rows: list[list[Any]], cell: Cell, shard: int) -> list[Record]:
    suite, variant, device, label = cell.suite.name, cell.variant.name, cell.device.name, cell.label
    # Positional, in DIGEST_FIELDS order: 100,000 records are built here, keyword lookups add up.
    return [
        Record(suite, nodeid, variant, device, status, float(duration or 0.0), message or "", error_type,
               bool(transform_failed), label, shard, expectation=expectation, log_tail=log_tail or "")  # fmt: skip
        for nodeid, status, duration, message, error_type, transform_failed, expectation, log_tail in rows
    ]


def _records_from_xml(path: Path, cell: Cell, shard: int) -> list[Record]:
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        problem = next((case.find(tag) for tag in ("failure", "error", "skipped") if case.find(tag) is not None), None)
        status = props.get("matrix_status") or {"failure": statuses.FAILED, "error": statuses.ERROR, "skipped": statuses.SKIPPED}.get(
            problem.tag if problem is not None else "", statuses.PASSED
        )
        classname = case.get("classname", "")
        file = classname.split(".", 1)[1] if classname.startswith(cell.suite.name + ".") else classname
        name = case.get("name", "")
        message = (problem.get("message", "") if problem is not None else "").split(": ", 1)[-1]
        out.append(
            Record(
                suite=cell.suite.name, test=f"{file}::{name}" if name != file else file, variant=cell.variant.name,
                device=cell.device.name, status=status, duration_s=float(case.get("time", 0) or 0), message=message,
                error_type=problem.get("type") if problem is not None else None,
                transform_failed=props.get("transform_failed") == "true", target=cell.label, shard=shard,
            )
        )  # fmt: skip
    return out


def _log_tail(path: Path) -> str:
    text = path.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if "linux-sandbox" not in ln]  # Bazel's sandbox debug lines
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


def collect(
    matrix: Matrix,
    testlogs: str | os.PathLike[str],
    bep: str | os.PathLike[str] | None = None,
    run_id: str = "",
    cells: list[Cell] | None = None,
    fill_missing: bool = True,
) -> Collected:
    """Records for `cells` (default: the whole matrix). With fill_missing, every test any cell of a
    suite reported gets a record in every cell of that suite (`not_run` / `crashed` when absent)."""
    testlogs = Path(testlogs)
    cells = matrix.cells() if cells is None else cells
    bazel = read_bep(bep) if bep else {}
    collected = Collected(records=[], bazel=bazel)
    found: dict[tuple[str, str, str], list[Record]] = {}
    dead: list[tuple[Cell, int, str]] = []  # shards that left only a log
    for cell in cells:
        key = (cell.suite.name, cell.variant.name, cell.device.name)
        found[key] = []
        for shard, shard_dir in _shard_dirs(testlogs, cell):
            results = _read_cell_results(shard_dir)
            if results is not None:
                meta, rows = results
                found[key] += _records_from_rows(rows, cell, shard)
                collected.torch_version = collected.torch_version or meta.get("torch_version")
                collected.problems += [f"{cell.label}: {p}" for p in meta.get("problems", [])]
            elif (shard_dir / "test.xml").is_file() and list(ET.parse(shard_dir / "test.xml").getroot().iter("testcase")):
                records = _records_from_xml(shard_dir / "test.xml", cell, shard)
                # Bazel writes its own one-testcase XML (named after the target) when the test died
                # without one: not ours. Ours name tests by node id, which starts with a .py file.
                if any(r.test.split("::", 1)[0].endswith(".py") for r in records):
                    found[key] += records
                else:
                    dead.append((cell, shard, _log_tail(shard_dir / "test.log") if (shard_dir / "test.log").is_file() else ""))
            elif (shard_dir / "test.log").is_file():
                dead.append((cell, shard, _log_tail(shard_dir / "test.log")))
    # Every test id any cell of a suite reported: the rows of the suite's matrix.
    suite_tests: dict[str, set[str]] = {}
    for (suite, _v, _d), records in found.items():
        suite_tests.setdefault(suite, set()).update(r.test for r in records)
    dead_keys = {(c.suite.name, c.variant.name, c.device.name): (c, s, tail) for c, s, tail in dead}
    filled_dead: set[tuple[str, str, str]] = set()
    for cell in cells if fill_missing else []:
        key = (cell.suite.name, cell.variant.name, cell.device.name)
        have = {r.test for r in found[key]}
        missing = sorted(suite_tests.get(cell.suite.name, set()) - have) or ([] if have else ["(no test results for this suite)"])
        if key in dead_keys:
            if missing:
                filled_dead.add(key)
            _c, shard, tail = dead_keys[key]
            status, message = statuses.CRASHED, "the target died without writing a report or test.xml (see log tail)"
        else:
            shard, tail = None, ""
            status, message = statuses.NOT_RUN, "no result: the target was not run (e.g. requires-gpu excluded, or not built)"
        found[key] += [
            Record(suite=cell.suite.name, test=t, variant=cell.variant.name, device=cell.device.name, status=status,
                   message=message, error_type=status, target=cell.label, shard=shard, log_tail=tail)
            for t in missing
        ]  # fmt: skip
    # A dead shard whose tests are unknown (fill_missing=False, or no cell reported them): never silent.
    collected.problems += [
        f"{c.label}: shard {s + 1} died without writing a report or test.xml; see its test.log"
        for c, s, _tail in dead
        if (c.suite.name, c.variant.name, c.device.name) not in filled_dead
    ]
    for records in found.values():
        for record in records:
            record.run_id = run_id
            result = bazel.get(record.target)
            if result and record.shard is not None:
                record.cached = result.cached.get(record.shard, False)
                record.attempts = result.attempts.get(record.shard, 1)
            collected.records.append(record)
    collected.records.sort(key=attrgetter("suite", "test", "variant", "device"))  # Record.key, without a call per record
    return collected
