"""Reading what a Bazel run left: the shards' report.json (read the way the collector reads it) and the
evidence they kept, under bazel-testlogs; which targets a run executed or failed, and the test actions'
durations, from its build event protocol (BEP) file."""

from __future__ import annotations

import contextlib
import json
import zipfile
from pathlib import Path
from typing import Any


def cell_reports(testlogs: Path, targets: list) -> dict[tuple[str, int], dict[str, Any]]:
    """(target label, shard) -> report.json of config.Targets' shards, read the way the collector reads it.
    Each test also gets `evidence_kept` (bench only): whether the shard's outputs hold its evidence."""
    from tools.matrix.collect import read_cell_report, shard_dirs
    from tools.matrix.runtime.evidence import index_member

    out = {}
    for target in targets:
        for shard, shard_dir in shard_dirs(testlogs, target):
            report = read_cell_report(shard_dir)
            if report is not None:
                kept = evidence_indexes(shard_dir)
                for test in report.get("tests", []):
                    test["evidence_kept"] = index_member(test["nodeid"]) in kept
                out[(target.label, shard)] = report
    return out


def evidence_indexes(shard_dir: Path) -> set[str]:
    """The evidence.json files (runtime/evidence.py) a shard kept: members of test.outputs/outputs.zip,
    or files of an unzipped test.outputs/, relative to it."""
    from tools.matrix.runtime.evidence import EVIDENCE_DIR, INDEX

    outputs = shard_dir / "test.outputs"
    found = {p.relative_to(outputs).as_posix() for p in (outputs / EVIDENCE_DIR).glob(f"*/{INDEX}")}
    archive = outputs / "outputs.zip"
    if archive.is_file():
        with contextlib.suppress(OSError, zipfile.BadZipFile), zipfile.ZipFile(archive) as z:
            found.update(n for n in z.namelist() if n.startswith(f"{EVIDENCE_DIR}/") and n.endswith(f"/{INDEX}"))
    return found


def tests_of(reports: dict[tuple[str, int], dict[str, Any]], label: str | None = None) -> list[dict[str, Any]]:
    """The tests of the Bazel shards' report.json files (of one target, or all)."""
    return [t for (lab, _s), r in reports.items() if label in (None, lab) for t in r.get("tests", [])]


def sum_durations(tests: list[dict[str, Any]]) -> float:
    """Sum of the tests' durations (metadata.matrix.duration_s: report.json's and the journal's alike)."""
    return sum(float(t["metadata"]["matrix"].get("duration_s") or 0.0) for t in tests)


def restarts(reports: dict[tuple[str, int], dict[str, Any]]) -> int:
    return sum(int(r.get("matrix", {}).get("restarts") or 0) for r in reports.values())


def pick_test(reports: dict, label: str, statuses_ok=("passed",)) -> str | None:
    """A real test id of `label` in `statuses_ok`, preferably not parametrized (a plain matrix.yaml key)."""
    ids = sorted(t["nodeid"] for t in tests_of(reports, label) if t["metadata"]["matrix"]["status"] in statuses_ok)
    plain = [i for i in ids if "[" not in i]
    return (plain or ids or [None])[0]


def read_bep_durations(path: Path) -> dict[tuple[str, int], float]:
    """(label, shard) -> the test action's duration, from the BEP (testAttemptDurationMillis)."""
    out: dict[tuple[str, int], float] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        ident = event.get("id", {}).get("testResult")
        if ident:
            result = event.get("testResult", {})
            ms = result.get("testAttemptDurationMillis") or result.get("testAttemptDuration", "0").rstrip("s")
            with contextlib.suppress(ValueError, TypeError):
                out[(ident["label"], max(int(ident.get("shard", 1)) - 1, 0))] = float(ms) / (
                    1000 if "testAttemptDurationMillis" in result else 1
                )
    return out


def executed_targets(bep: Path) -> set[str]:
    """The test targets the run executed (not all of their results cached)."""
    from tools.matrix.collect import read_bep

    return {lab for lab, res in read_bep(bep).items() if res.cached and not all(res.cached.values())} if bep.exists() else set()


def failed_targets(bep: Path) -> set[str]:
    """The test targets whose overall result was neither PASSED nor FLAKY (Bazel never caches those)."""
    from tools.matrix.collect import read_bep

    return {lab for lab, res in read_bep(bep).items() if res.overall and res.overall not in ("PASSED", "FLAKY")} if bep.exists() else set()
