"""One bad cell never spoils the report (issue #17): a real testlogs tree of healthy cells, written with
the runtime's own writers, plus one cell per kind of corrupt output (truncated / empty zip, invalid
JSON, digests of the wrong shape, NaN duration, truncated XML, a zip bomb, a lying zip header, a cell
that ran but reported nothing), collected through the real `report --no-run` command; then the BEP's
freshness and truncation, and shard directories that differ from today's plan."""

from __future__ import annotations

import json
import math
import os
import re
import time
import zipfile
from pathlib import Path

import jsonschema
import pytest

from tools.matrix import config, generate, statuses
from tools.matrix.collect import MAX_OUTPUT_BYTES, collect, read_bep
from tools.matrix.report import SCHEMA_PATH
from tools.matrix.runtime import outputs
from tools.matrix.tests.fixtures.toolws import report_cli, write_workspace

A, B, C = "test_a.py::test_one", "test_a.py::test_two", "test_b.py::test_three"
# (variant, what the test does to its outputs, what the error message must say after the file name)
CASES = {
    "zip_truncated": "test.outputs/outputs.zip: not a readable zip file (BadZipFile",
    "zip_empty": "test.outputs/outputs.zip: not a readable zip file (BadZipFile: File is not a zip file)",
    "json_invalid": "test.outputs/outputs.zip: matrix_results.json: invalid JSON (JSONDecodeError: Unterminated string starting at",
    "report_invalid": "test.outputs/report.json: invalid JSON (JSONDecodeError: Unterminated string",
    "row_short": f"test.outputs/outputs.zip: matrix_results.json: test 2 has {len(outputs.DIGEST_FIELDS) - 1} values, 'fields' names {len(outputs.DIGEST_FIELDS)}",
    "tests_not_list": "test.outputs/outputs.zip: matrix_results.json: 'tests' is dict, not a list",
    "row_not_list": "test.outputs/outputs.zip: matrix_results.json: test 1 is 'test_a.py::test_one', not a list",
    "status_unknown": "test.outputs/outputs.zip: matrix_results.json: test 3 ('test_b.py::test_three'): status 'exploded' is not one of passed,",
    "duration_text": "test.outputs/outputs.zip: matrix_results.json: test 1 ('test_a.py::test_one'): duration_s is 'slow', not a number or null",
    "duration_nan": "test.outputs/outputs.zip: matrix_results.json: test 2 ('test_a.py::test_two'): duration_s is nan, not a finite number",
    "xml_truncated": "test.xml: invalid XML (unclosed token: line ",  # where depends on how long the XML is
    "zip_bomb": "test.outputs/outputs.zip: matrix_results.json is 545,259,520 bytes uncompressed",
    "zip_lies": "test.outputs/outputs.zip: not a readable zip file (BadZipFile: Bad CRC-32 for file 'matrix_results.json')",
    "ran_nothing": "the target ran but reported no test: variant impl pkg.mod:Nope could not be loaded: ModuleNotFoundError: No module named 'pkg'",
    "exit_1": "the target exited with code 1 without writing a report or test.xml (see log tail)",
}
HEALTHY = ("base", "sharded")
# Only the digest is damaged: report.json beside it in the same outputs.zip gives every result, and a
# problem line names the digest.
DIGEST_ONLY = ("json_invalid", "row_short", "tests_not_list", "row_not_list", "status_unknown", "duration_text", "duration_nan")
MATRIX = f"""\
devices:
  cpu: {{}}
variants:
{"".join(f"  {v}: {{impl: pkg.mod:V, description: {v}}}{chr(10)}" for v in (*HEALTHY, *CASES))}\
suites:
  s:
    variants: [{", ".join((*HEALTHY, *CASES))}]
    devices: [cpu]
"""
HOSTILE_PROBLEM = "xfail entry 'test_a.py::gone\x1b[2J\u202e' matched no test"
BAZEL_OWN_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="s/s_exit_1_cpu" tests="1" failures="0" errors="1">
<testcase name="s/s_exit_1_cpu" status="run" duration="3" time="3"><error message="exited with error code 1"></error></testcase>
</testsuite></testsuites>
"""


def entry(nodeid: str, status: str, message: str = "", duration: float = 0.25) -> dict:
    m = {"status": status, "duration_s": duration, "message": message, "error_type": "AssertionError" if message else None,
         "transform_failed": False, "expectation": None}  # fmt: skip
    return {"nodeid": nodeid, "outcome": "passed" if status == statuses.PASSED else "failed", "metadata": {"matrix": m}}


TESTS = [entry(A, statuses.PASSED, duration=1.5), entry(B, statuses.FAILED, "AssertionError: 1 != 2"), entry(C, statuses.SKIPPED, "no")]


def meta(variant: str, shard: int = 0, total: int = 1, problems: tuple[str, ...] = ()) -> dict:
    return {"suite": "s", "variant": variant, "device": "cpu", "target": f"//s:s_{variant}_cpu", "shard_index": shard,
            "total_shards": total, "test_filter": "", "torch_version": "2.13.0+cpu", "problems": list(problems)}  # fmt: skip


def write_cell(shard_dir: Path, tests: list[dict], metadata: dict, zipped: bool = True) -> dict[str, bytes]:
    """What cell_main writes (its own writer) into the undeclared outputs, zipped as Bazel does; a log."""
    out = shard_dir / "test.outputs"
    out.mkdir(parents=True)
    outputs.write_outputs(str(out), tests, metadata, time.time(), 0, "s")
    files = {name: (out / name).read_bytes() for name in (outputs.REPORT_NAME, outputs.DIGEST_NAME)}
    if zipped:
        rezip(shard_dir, files)
    (shard_dir / "test.log").write_text("collected 3 items\n")
    return files


def rezip(shard_dir: Path, files: dict[str, bytes]) -> Path:
    out = shard_dir / "test.outputs"
    for name in files:
        (out / name).unlink(missing_ok=True)
    with zipfile.ZipFile(out / "outputs.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return out / "outputs.zip"


def with_digest(files: dict[str, bytes], change) -> dict[str, bytes]:
    digest = json.loads(files[outputs.DIGEST_NAME])
    change(digest)
    return {**files, outputs.DIGEST_NAME: json.dumps(digest).encode()}


def set_row(i: int, field: str, value) -> callable:
    def change(digest: dict) -> None:
        digest["tests"][i][digest["fields"].index(field)] = value

    return change


def write_zip_bomb(archive: Path) -> None:
    """A real bomb: 520 MiB of zeros deflated to ~2.5 MB (level 1, for the test's speed)."""
    zeros = bytes(1 << 22)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open(outputs.DIGEST_NAME, "w", force_zip64=True) as f:
            for _ in range(130):
                f.write(zeros)


def write_lying_zip(archive: Path) -> None:
    """A member whose headers say 100 bytes but whose data inflates to 64 MiB."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(outputs.DIGEST_NAME, bytes(64 << 20))
    data = bytearray(archive.read_bytes())
    info = zipfile.ZipFile(archive).getinfo(outputs.DIGEST_NAME)
    size = (64 << 20).to_bytes(4, "little")
    for at in (i for i in range(len(data)) if data[i : i + 4] == size):
        data[at : at + 4] = (100).to_bytes(4, "little")  # uncompressed size: local header and central directory
    archive.write_bytes(bytes(data))
    assert zipfile.ZipFile(archive).getinfo(outputs.DIGEST_NAME).file_size == 100 != info.file_size


def corrupt(variant: str, d: Path) -> None:
    """Write cell `variant`'s shard directory `d`: healthy outputs, then the case's damage."""
    files = write_cell(d, TESTS, meta(variant))
    archive = d / "test.outputs" / "outputs.zip"
    match variant:
        case "zip_truncated":
            archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        case "zip_empty":
            archive.write_bytes(b"")
        case "json_invalid":
            rezip(d, {**files, outputs.DIGEST_NAME: files[outputs.DIGEST_NAME][:-40]})
        case "report_invalid":  # an unzipped report.json from before the digest, cut short
            archive.unlink()
            (d / "test.outputs" / outputs.REPORT_NAME).write_bytes(files[outputs.REPORT_NAME][:200])
        case "row_short":
            rezip(d, with_digest(files, lambda dg: dg["tests"][1].pop()))
        case "tests_not_list":
            rezip(d, with_digest(files, lambda dg: dg.update(tests={"a": 1})))
        case "row_not_list":
            rezip(d, with_digest(files, lambda dg: dg["tests"].__setitem__(0, A)))
        case "status_unknown":
            rezip(d, with_digest(files, set_row(2, "status", "exploded")))
        case "duration_text":
            rezip(d, with_digest(files, set_row(0, "duration_s", "slow")))
        case "duration_nan":  # json.dumps writes NaN, as a runtime bug would
            rezip(d, with_digest(files, set_row(1, "duration_s", math.nan)))
        case "xml_truncated":  # no outputs, only the JUnit XML, cut short
            archive.unlink()
            xml = outputs.junit_xml(TESTS, meta(variant))
            (d / "test.xml").write_bytes(xml[: len(xml) // 2])
        case "zip_bomb":
            write_zip_bomb(archive)
        case "zip_lies":
            write_lying_zip(archive)
        case "ran_nothing":  # cell_main's outputs when the variant could not be loaded: no test, a problem
            archive.unlink()
            problem = "variant impl pkg.mod:Nope could not be loaded: ModuleNotFoundError: No module named 'pkg'"
            write_cell(d / "x", [], meta(variant, problems=(problem,)))
            (d / "x" / "test.outputs" / "outputs.zip").rename(archive)
        case "exit_1":  # the process failed before writing anything: Bazel's own XML and the log
            archive.unlink()
            (d / "test.xml").write_text(BAZEL_OWN_XML)
            (d / "test.log").write_text("Traceback (most recent call last):\nImportError: cannot import name 'x'\n")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, Path]:
    """(workspace, testlogs): every healthy and corrupt cell above."""
    root = tmp_path_factory.mktemp("corrupt")
    ws = write_workspace(root / "ws", MATRIX, ("s/test_a.py", "s/test_b.py"))
    logs = root / "bazel-testlogs"
    write_cell(logs / "s" / "s_base_cpu", TESTS, meta("base"))
    # A cell sharded 3 ways by an earlier plan (today's plan: 1 shard); a problem quoting hostile text.
    for k, tests in enumerate(([TESTS[0]], [TESTS[1]], [TESTS[2]])):
        write_cell(logs / "s" / "s_sharded_cpu" / f"shard_{k + 1}_of_3", tests, meta("sharded", k, 3, (HOSTILE_PROBLEM,) if k == 0 else ()))
    for variant in CASES:
        corrupt(variant, logs / "s" / f"s_{variant}_cpu")
    return ws, logs


@pytest.fixture(scope="module")
def reported(tree, tmp_path_factory) -> tuple:
    """`report --no-run` on the tree, with an earlier run's BEP (older than the testlogs) in reports/."""
    ws, logs = tree
    out = ws / "reports"
    out.mkdir()
    stale = bep_file(out / "bep.json", "//s:s_base_cpu", True, "FAILED")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    return report_cli(ws, logs, tmp_path_factory.mktemp("bin"), "--no-run", "--out", str(out)), out


def _strict(text: str) -> dict:
    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_report_is_written_and_every_file_is_valid(reported):
    proc, out = reported
    assert proc.returncode == 1, proc.stdout + proc.stderr  # unexpected results (the errors), not a crash
    assert "Traceback" not in proc.stdout + proc.stderr
    data = _strict((out / "compat.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert (out / "compat.md").read_text().startswith("# Compatibility report")
    assert '<script type="application/json" id="report-data">' in (out / "compat.html").read_text()
    assert f"report: {out / 'compat.json'}, {out / 'compat.md'}, {out / 'compat.html'}" in proc.stdout
    assert len(data["records"]) == 3 * (len(HEALTHY) + len(CASES))
    # The earlier run's BEP in reports/ says s_base_cpu FAILED and was cached: neither is taken.
    assert f"note: {out / 'bep.json'} is older than the testlogs of 1 target(s)" in proc.stdout
    assert "Bazel says" not in proc.stdout
    assert {(r["cached"], r["attempts"]) for r in data["records"]} == {(False, 1)}
    # No carried-over line: there was no earlier report, every record is this run's.
    assert "Carried over" not in proc.stdout and {r["run_id"] for r in data["records"]} == {data["run"]["run_id"]}
    # A cell's own problem is printed, its control and bidi characters escaped.
    assert "problem: //s:s_sharded_cpu: xfail entry 'test_a.py::gone\\u001b[2J\\u202e' matched no test" in proc.stdout
    assert "\x1b" not in proc.stdout + proc.stderr and "\u202e" not in proc.stdout + proc.stderr


def test_report_that_runs_bazel_never_keeps_an_old_bep(tree, tmp_path):
    ws, logs = tree
    out = tmp_path / "reports"
    out.mkdir()
    bep_file(out / "bep.json", "//s:s_base_cpu", True, "FAILED")  # newer than the testlogs: would pass for fresh
    for path, text in generate.render(config.load(ws / "matrix.yaml", ws)).items():  # report refuses stale generated files
        (ws / path).write_text(text)
    proc = report_cli(ws, logs, tmp_path, "--out", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert not (out / "bep.json").exists() and "Bazel says" not in proc.stdout
    assert {(r["cached"], r["attempts"]) for r in _strict((out / "compat.json").read_text())["records"]} == {(False, 1)}


def test_healthy_cells_are_intact(reported):
    records = {(r["variant"], r["test"]): r for r in _strict((reported[1] / "compat.json").read_text())["records"]}
    for variant in (*HEALTHY, *DIGEST_ONLY):
        got = [(records[variant, t]["status"], records[variant, t]["duration_s"], records[variant, t]["message"]) for t in (A, B, C)]
        assert got == [(statuses.PASSED, 1.5, ""), (statuses.FAILED, 0.25, "AssertionError: 1 != 2"), (statuses.SKIPPED, 0.25, "no")]
    # The sharded cell was read from the 3 shard directories on disk, though today's plan has 1.
    assert [records["sharded", t]["shard"] for t in (A, B, C)] == [0, 1, 2]
    assert [records["base", t]["shard"] for t in (A, B, C)] == [0, 0, 0]


@pytest.mark.parametrize("variant", DIGEST_ONLY)
def test_a_corrupt_digest_gives_way_to_report_json_with_a_problem_line(reported, variant):
    proc, _out = reported
    problem = f"problem: //s:s_{variant}_cpu: shard 1: s/s_{variant}_cpu/{CASES[variant]}"
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(problem)), None)
    assert line is not None and line.endswith("; results read from report.json"), proc.stdout


@pytest.mark.parametrize("variant", [v for v in CASES if v not in DIGEST_ONLY])
def test_a_corrupt_cell_becomes_error_records_naming_the_file(reported, variant):
    proc, out = reported
    records = [r for r in _strict((out / "compat.json").read_text())["records"] if r["variant"] == variant]
    assert [r["test"] for r in records] == [A, B, C]  # the tests the suite's other cells reported
    for r in records:
        assert (r["status"], r["error_type"], r["shard"], r["target"]) == (statuses.ERROR, statuses.ERROR, 0, f"//s:s_{variant}_cpu")
        if variant not in ("ran_nothing", "exit_1"):
            assert r["message"].startswith(f"unusable test outputs: s/s_{variant}_cpu/{CASES[variant]}"), r["message"]
        else:
            assert r["message"] == CASES[variant]
    assert "Traceback" not in proc.stdout


def test_exit_1_keeps_the_log_tail(reported):
    records = [r for r in _strict((reported[1] / "compat.json").read_text())["records"] if r["variant"] == "exit_1"]
    assert {r["log_tail"] for r in records} == {"Traceback (most recent call last):\nImportError: cannot import name 'x'"}


def test_zip_bomb_is_refused_unread(tree):
    ws, logs = tree
    archive = logs / "s" / "s_zip_bomb_cpu" / "test.outputs" / "outputs.zip"
    info = zipfile.ZipFile(archive).getinfo(outputs.DIGEST_NAME)
    assert info.file_size > MAX_OUTPUT_BYTES and archive.stat().st_size < 4_000_000
    matrix = config.load(ws / "matrix.yaml", ws)
    cells = [c for c in matrix.cells() if c.variant.name == "zip_bomb"]
    started = time.perf_counter()
    collected = collect(matrix, logs, cells=cells, fill_missing=False)
    assert time.perf_counter() - started < 1.0  # refused from the header, never inflated
    assert collected.records == []
    (problem,) = collected.problems
    assert problem.startswith(f"//s:s_zip_bomb_cpu: shard 1: unusable test outputs: s/s_zip_bomb_cpu/{CASES['zip_bomb']}")


# ---------------------------------------------------------------- the BEP: truncated, or not this run's


def bep_file(path: Path, label: str, cached: bool, overall: str = "PASSED", tail: str = "") -> Path:
    events = [
        {"id": {"started": {}}, "started": {"uuid": "u", "command": "test"}},
        {"id": {"testResult": {"label": label, "run": 1, "shard": 1, "attempt": 2}}, "testResult": {"status": "PASSED", "cachedLocally": cached}},
        {"id": {"testSummary": {"label": label}}, "testSummary": {"overallStatus": overall}},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in events) + tail)
    return path


def test_a_truncated_bep_gives_what_parsed_and_says_so(tmp_path):
    bep = bep_file(tmp_path / "bep.json", "//s:s_base_cpu", True, tail='{"id": {"testSummary": {"lab')
    problems: list[str] = []
    results = read_bep(bep, problems)
    assert (results["//s:s_base_cpu"].cached, results["//s:s_base_cpu"].attempts) == ({0: True}, {0: 2})
    assert problems == [f"{bep}:4: the BEP file is truncated or corrupt (JSONDecodeError: Unterminated string starting at: "
                        f"line 1 column 25 (char 24)); only the events before this line were used"]  # fmt: skip


def test_the_bep_is_used_only_for_targets_whose_testlogs_are_not_newer(tree, tmp_path):
    ws, logs = tree
    matrix = config.load(ws / "matrix.yaml", ws)
    cells = [c for c in matrix.cells() if c.variant.name == "base"]
    written = (logs / "s" / "s_base_cpu" / "test.log").stat().st_mtime
    # Written by the run that produced these testlogs (after them): used.
    bep = bep_file(tmp_path / "fresh.json", "//s:s_base_cpu", True, "FAILED")
    os.utime(bep, (written + 5, written + 5))
    collected = collect(matrix, logs, bep=bep, cells=cells)
    assert {(r.cached, r.attempts) for r in collected.records} == {(True, 2)}
    assert (collected.bazel["//s:s_base_cpu"].overall, collected.notes) == ("FAILED", [])
    # An earlier run's (a later `bazel test` rewrote the testlogs since): ignored, with a note.
    os.utime(bep, (written - 60, written - 60))
    collected = collect(matrix, logs, bep=bep, cells=cells)
    assert {(r.cached, r.attempts) for r in collected.records} == {(False, 1)}
    assert collected.bazel == {} and collected.problems == []
    assert collected.notes == [f"{bep} is older than the testlogs of 1 target(s), rewritten by a later Bazel command: "
                               "its cache hits, attempts and status are not used for them (//s:s_base_cpu)"]  # fmt: skip


# ---------------------------------------------------------------- shard directories: what is on disk


def test_shard_dirs_of_two_runs_the_newest_layout_wins(tree, tmp_path):
    ws, logs = tree
    matrix = config.load(ws / "matrix.yaml", ws)
    cells = [c for c in matrix.cells() if c.variant.name == "sharded"]
    # An older run left 2 shards with other results; the 3-shard run is newer.
    old = logs.parent / "two_runs"
    for k in range(2):
        d = old / "s" / "s_sharded_cpu" / f"shard_{k + 1}_of_2"
        write_cell(d, [entry(A, statuses.FAILED, "AssertionError: old")] if k == 0 else [], meta("sharded", k, 2))
        for f in d.rglob("*"):
            os.utime(f, (time.time() - 3600, time.time() - 3600))
    for k, tests in enumerate(([TESTS[0]], [TESTS[1]], [TESTS[2]])):
        write_cell(old / "s" / "s_sharded_cpu" / f"shard_{k + 1}_of_3", tests, meta("sharded", k, 3))
    got = {r.test: (r.status, r.shard) for r in collect(matrix, old, cells=cells).records}
    assert got == {A: (statuses.PASSED, 0), B: (statuses.FAILED, 1), C: (statuses.SKIPPED, 2)}


def test_a_missing_shard_of_the_layout_on_disk(tree):
    """Shards 1 and 3 of 3 ran, shard 2 left nothing: its tests are not_run (Bazel never ran it)."""
    ws, logs = tree
    matrix = config.load(ws / "matrix.yaml", ws)
    other = logs.parent / "missing_shard"
    write_cell(other / "s" / "s_base_cpu", TESTS, meta("base"))
    write_cell(other / "s" / "s_sharded_cpu" / "shard_1_of_3", [TESTS[0]], meta("sharded", 0, 3))
    write_cell(other / "s" / "s_sharded_cpu" / "shard_3_of_3", [TESTS[2]], meta("sharded", 2, 3))
    cells = [c for c in matrix.cells() if c.variant.name in ("base", "sharded")]
    got = {r.test: (r.status, r.shard) for r in collect(matrix, other, cells=cells).records if r.variant == "sharded"}
    assert got == {A: (statuses.PASSED, 0), B: (statuses.NOT_RUN, None), C: (statuses.SKIPPED, 2)}


# ---------------------------------------------------------------- more shapes, one shard each


def _xml_with(old: bytes, new: bytes) -> bytes:
    xml = outputs.junit_xml(TESTS, meta("base"))
    assert old in xml
    return xml.replace(old, new, 1)


def _older_xml(old: bytes, new: bytes) -> bytes:
    """test.xml as the runtime wrote it before every field was a property: only matrix_status."""
    xml = re.sub(rb'\s*<property name="(nodeid|duration_s|message|transform_failed)" value="[^"]*" />', b"", _xml_with(old, new))
    return xml.replace(b'<property name="status"', b'<property name="matrix_status"')


@pytest.mark.parametrize(("name", "content", "message"), [
    ("test.xml", _xml_with(b'name="duration_s" value="1.5"', b'name="duration_s" value="NaN"'),
     "test.xml: test 1 ('test_a.py::test_one'): duration_s is nan, not a finite number >= 0"),
    ("test.xml", _xml_with(b'name="duration_s" value="1.5"', b'name="duration_s" value="slow"'),
     "test.xml: testcase 1: property duration_s is 'slow', not its JSON (JSONDecodeError: Expecting value"),
    ("test.xml", _xml_with(b'name="transform_failed" value="false"', b'name="transform_failed" value="1"'),
     "test.xml: test 1 ('test_a.py::test_one'): transform_failed is 1, not true/false or null"),
    ("test.xml", _xml_with(b'name="status" value="passed"', b'name="status" value="great"'),
     "test.xml: test 1 ('test_a.py::test_one'): status 'great' is not one of passed,"),
    ("test.xml", _older_xml(b'time="1.500"', b'time="nan"'), "test.xml: test 1 ('test_a.py::test_one'): duration_s is nan, not a finite number >= 0"),
    ("test.xml", _older_xml(b'value="passed"', b'value="great"'), "test.xml: test 1 ('test_a.py::test_one'): status 'great' is not one of passed,"),
    (outputs.DIGEST_NAME, json.dumps({"matrix": {"problems": "x"}, "fields": list(outputs.DIGEST_FIELDS), "tests": []}).encode(),
     "matrix_results.json: matrix.problems is 'x', not a list of strings"),
    (outputs.DIGEST_NAME, b"[" * 100_000 + b"]" * 100_000, "matrix_results.json: invalid JSON (RecursionError: maximum recursion depth exceeded"),
    (outputs.DIGEST_NAME, b'{"fields": ["a"], "tests": []}', "matrix_results.json: 'fields' is ['a'], not a list of field names with nodeid and status"),
    (outputs.DIGEST_NAME, b"{\"a\": \"\xff\"}", "matrix_results.json: invalid JSON (UnicodeDecodeError:"),
    (outputs.REPORT_NAME, b'{"tests": [{"nodeid": "t.py::x"}]}', "report.json: a test entry without its matrix metadata (KeyError: 'metadata')"),
])  # fmt: skip
def test_more_corrupt_outputs(tree, tmp_path, name, content, message):
    ws, _logs = tree
    matrix = config.load(ws / "matrix.yaml", ws)
    d = tmp_path / "s" / "s_base_cpu"
    if name == "test.xml":
        d.mkdir(parents=True)
        (d / name).write_bytes(content)
    else:
        (d / "test.outputs").mkdir(parents=True)
        (d / "test.outputs" / name).write_bytes(content)
    (cell,) = [c for c in matrix.cells() if c.variant.name == "base"]
    collected = collect(matrix, tmp_path, cells=[cell])
    ((status, got),) = {(r.status, r.message) for r in collected.records}
    assert status == statuses.ERROR
    where = "s/s_base_cpu/" + ("test.xml" if name == "test.xml" else f"test.outputs/{name}")
    assert got.startswith(f"unusable test outputs: {where}: {message.split(': ', 1)[1]}"), got


# ---------------------------------------------------------------- real cells: cell_main's own outputs


def test_real_cells_that_ran_no_test_are_error_with_the_runtimes_reason(tmp_path):
    """Three real cell_main runs (a healthy one, an unloadable variant impl, a segfault before any test),
    their outputs laid out as Bazel does, collected: the two that ran nothing are error, with the reason."""
    from tools.matrix.tests.fixtures import cellrun

    files = ("test_many.py", "test_more.py")
    impls = {"base": cellrun.BASE_IMPL, "bad": "faults.no_such_module:Nope", "crash": "faults.crash_at_import:Crash"}
    pool = cellrun.CellPool({v: cellrun.Cell("runtime", files, variant=v, impl=i, target=f"//syn:syn_{v}_cpu") for v, i in impls.items()}, tmp_path)
    try:
        pool.start(impls)
        runs = {v: pool[v] for v in impls}
    finally:
        pool.close()
    matrix_yaml = "devices:\n  cpu: {}\nvariants:\n" + "".join(f"  {v}: {{impl: pkg.mod:V, description: {v}}}\n" for v in impls)
    matrix_yaml += f"suites:\n  syn:\n    variants: [{', '.join(impls)}]\n    devices: [cpu]\n"
    ws = write_workspace(tmp_path / "ws", matrix_yaml, tuple(f"syn/{f}" for f in files))
    logs = tmp_path / "bazel-testlogs"
    for v, run in runs.items():
        d = logs / "syn" / f"syn_{v}_cpu"
        (d / "test.outputs").mkdir(parents=True)
        rezip(d, {f.name: f.read_bytes() for f in (run.tmp / "out").iterdir()})  # Bazel zips the undeclared outputs
        (d / "test.xml").write_bytes((run.tmp / "test.xml").read_bytes())
        (d / "test.log").write_text(run.output)
    records = collect(config.load(ws / "matrix.yaml", ws), logs).records
    base = {r.test: r.status for r in records if r.variant == "base"}
    assert len(base) == 12 and set(base.values()) == {statuses.PASSED}, runs["base"].explain()
    for v, reason in (
        ("bad", "//syn:syn_bad_cpu: variant impl 'faults.no_such_module:Nope': cannot import 'faults.no_such_module'"),
        ("crash", "pytest exited with SIGSEGV before running any test; its last output:\n"),
    ):
        got = [r for r in records if r.variant == v]
        assert sorted(r.test for r in got) == sorted(base), runs[v].explain()
        for r in got:
            assert (r.status, r.shard) == (statuses.ERROR, 0)
            assert r.message.startswith(f"the target ran but reported no test: {reason}"), r.message
