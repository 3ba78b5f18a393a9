"""The collector: a synthetic bazel-testlogs tree (report.json zipped and unzipped, shards, JUnit
fallback, log-only crashes, cells with nothing) and a Build Event Protocol file."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

from tools.matrix import config, statuses
from tools.matrix.collect import LOG_TAIL_CHARS, collect, read_bep, shard_dirs
from tools.matrix.collect.files import log_tail
from tools.matrix.runtime import outputs
from tools.matrix.tests.fixtures.toolws import write_workspace

MATRIX = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base: {impl: pkg.mod:Base, description: plain}
  other: {impl: pkg.mod:Other, description: other}
suites:
  s:
    variants: [base, other]
    devices: [cpu, cuda]
    shards: {cpu: 2}
  t:
    variants: [base]
    devices: [cpu]
"""
A, B, C = "test_a.py::test_one", "test_a.py::TestK::test_two[x-1]", "test_b.py::test_three"
SANDBOX = "1700000000.000000000: src/main/tools/linux-sandbox-pid1.cc:180: remount ro: /proc"
NO_RESULTS = "(no test results for this suite)"


def entry(nodeid, status, message="", error_type=None, duration=0.25, expectation=None, transform_failed=False, log_tail=None):
    m = {
        "status": status, "duration_s": duration, "message": message, "error_type": error_type,
        "transform_failed": transform_failed, "transform_s": 0.0, "transform_calls": 0, "expectation": expectation,
    }  # fmt: skip
    if log_tail is not None:
        m["log_tail"] = log_tail
    return {"nodeid": nodeid, "outcome": "passed" if status == statuses.PASSED else "failed", "metadata": {"matrix": m}}


def metadata(target, shard=0, total=1, problems=(), torch_version="2.13.0+cpu"):
    suite, _, name = target.partition(":")
    return {
        "suite": suite.strip("/").split("/")[-1], "variant": name.split("_")[1], "device": name.split("_")[2], "target": target,
        "shard_index": shard, "total_shards": total, "test_filter": "", "torch_version": torch_version, "problems": list(problems),
    }  # fmt: skip


def report_json(tests, meta) -> bytes:
    return json.dumps(outputs.json_report(tests, meta, time.time(), 0, "s")).encode()


@pytest.fixture
def matrix(tmp_path) -> config.Matrix:
    ws = write_workspace(tmp_path / "ws", MATRIX, ("s/test_a.py", "s/test_b.py", "t/test_c.py"))
    return config.load(ws / "matrix.yaml", ws)


def shard_dir(testlogs: Path, target: str, shard: int | None = None, total: int = 2) -> Path:
    d = testlogs / "s" / target
    if shard is not None:
        d = d / f"shard_{shard}_of_{total}"
    d.mkdir(parents=True, exist_ok=True)
    return d


BAZEL_OWN_XML = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
<testsuite name="s/s_other_cuda" tests="1" failures="0" errors="1">
<testcase name="s/s_other_cuda" status="run" duration="3" time="3"><error message="exited with error code 134"></error></testcase>
<system-out>Generated test.log (if the file is not UTF-8, then this may be unreadable):
<![CDATA[Fatal Python error: Aborted]]></system-out>
</testsuite>
</testsuites>
"""


@pytest.fixture
def testlogs(tmp_path) -> Path:
    logs = tmp_path / "bazel-testlogs"
    # s_base_cpu shard 1: report.json inside outputs.zip (Bazel's default), plus a test.xml that must lose.
    d = shard_dir(logs, "s_base_cpu", 1)
    (d / "test.outputs").mkdir()
    with zipfile.ZipFile(d / "test.outputs" / "outputs.zip", "w") as z:
        z.writestr("report.json", report_json(
            [entry(A, statuses.PASSED, duration=1.5), entry(B, statuses.FAILED, "AssertionError: 1 != 2", "AssertionError")],
            metadata("//s:s_base_cpu", 0, 2),
        ))  # fmt: skip
        z.writestr("other.txt", "unrelated")
    (d / "test.xml").write_bytes(outputs.junit_xml([entry(A, statuses.FAILED, "wrong source")], metadata("//s:s_base_cpu", 0, 2)))
    # s_base_cpu shard 2: an unzipped test.outputs/report.json.
    d = shard_dir(logs, "s_base_cpu", 2)
    (d / "test.outputs").mkdir()
    (d / "test.outputs" / "report.json").write_bytes(report_json(
        [entry(C, statuses.XFAILED, "RuntimeError: nope", "RuntimeError", expectation="test_b.py")],
        metadata("//s:s_base_cpu", 1, 2, problems=["xfail entry 'test_b.py::gone' matched no test"]),
    ))  # fmt: skip
    # s_other_cpu shard 1: only the JUnit XML the runtime writes.
    d = shard_dir(logs, "s_other_cpu", 1)
    (d / "test.xml").write_bytes(outputs.junit_xml(
        [
            entry(A, statuses.FAILED, "TypeError: cannot pickle 'module'", "TypeError", duration=0.125, transform_failed=True),
            entry(B, statuses.SKIPPED, "needs cuda"),
        ],
        metadata("//s:s_other_cpu", 0, 2),
    ))  # fmt: skip
    # s_other_cpu shard 2: died leaving only its log.
    d = shard_dir(logs, "s_other_cpu", 2)
    (d / "test.log").write_text(f"{SANDBOX}\nexec ${{PAGER:-/usr/bin/less}} \"$0\" || exit 1\nrunning test_b.py\nSegmentation fault (core dumped)\n")
    # s_base_cuda: nothing at all (requires-gpu, excluded).
    # s_other_cuda: Bazel's own one-testcase test.xml and the log.
    d = shard_dir(logs, "s_other_cuda")
    (d / "test.xml").write_text(BAZEL_OWN_XML)
    (d / "test.log").write_text(f"{SANDBOX}\nFatal Python error: Aborted\n{SANDBOX}\n")
    # t_base_cpu: nothing, and no other cell of suite t reported anything.
    return logs


def by_key(records):
    out = {(r.variant, r.device, r.test): r for r in records}
    assert len(out) == len(records), "duplicate records"
    return out


def test_collect_every_source(matrix, testlogs):
    collected = collect(matrix, testlogs, run_id="run-1")
    records = by_key(collected.records)
    assert [r.key for r in collected.records] == sorted(r.key for r in collected.records)
    s_tests = [A, B, C]
    expected_keys = {(v, d, t) for v in ("base", "other") for d in ("cpu", "cuda") for t in s_tests} | {("base", "cpu", NO_RESULTS)}
    assert set(records) == expected_keys  # every cell of the matrix has a record for every test of its suite
    assert {r.run_id for r in collected.records} == {"run-1"}
    assert collected.torch_version == "2.13.0+cpu"
    assert collected.problems == ["//s:s_base_cpu: xfail entry 'test_b.py::gone' matched no test"]
    assert collected.bazel == {}

    # report.json from outputs.zip (shard 1) wins over that shard's test.xml
    a = records["base", "cpu", A]
    assert (a.status, a.duration_s, a.shard, a.target, a.suite) == (statuses.PASSED, 1.5, 0, "//s:s_base_cpu", "s")
    b = records["base", "cpu", B]
    assert (b.status, b.message, b.error_type, b.shard) == (statuses.FAILED, "AssertionError: 1 != 2", "AssertionError", 0)
    # unzipped report.json (shard 2)
    c = records["base", "cpu", C]
    assert (c.status, c.expectation, c.error_type, c.shard) == (statuses.XFAILED, "test_b.py", "RuntimeError", 1)


def test_junit_fallback(matrix, testlogs):
    records = by_key(collect(matrix, testlogs).records)
    a = records["other", "cpu", A]
    assert (a.status, a.message, a.error_type, a.transform_failed, a.duration_s, a.shard) == (
        statuses.FAILED, "TypeError: cannot pickle 'module'", "TypeError", True, 0.125, 0,
    )  # fmt: skip
    b = records["other", "cpu", B]
    assert (b.status, b.message, b.transform_failed, b.target) == (statuses.SKIPPED, "needs cuda", False, "//s:s_other_cpu")


def test_a_shard_that_left_only_its_log_is_crashed_with_the_log_tail(matrix, testlogs):
    c = by_key(collect(matrix, testlogs).records)["other", "cpu", C]
    assert c.status == c.error_type == statuses.CRASHED
    assert c.shard == 1
    assert "died without writing a report or test.xml" in c.message
    assert c.log_tail.endswith("running test_b.py\nSegmentation fault (core dumped)")
    assert "linux-sandbox" not in c.log_tail


def test_bazels_own_test_xml_is_not_taken_for_results(matrix, testlogs):
    """A target that died gets a one-testcase test.xml from Bazel: its tests are crashed, no bogus test."""
    records = collect(matrix, testlogs).records
    cuda = {r.test: r for r in records if (r.variant, r.device) == ("other", "cuda")}
    assert set(cuda) == {A, B, C}
    for r in cuda.values():
        assert (r.status, r.shard, r.target) == (statuses.CRASHED, 0, "//s:s_other_cuda")
        assert r.log_tail == "Fatal Python error: Aborted"


def test_cells_with_nothing_are_not_run(matrix, testlogs):
    records = by_key(collect(matrix, testlogs).records)
    for t in (A, B, C):
        r = records["base", "cuda", t]
        assert (r.status, r.error_type, r.shard, r.target, r.log_tail) == (statuses.NOT_RUN, statuses.NOT_RUN, None, "//s:s_base_cuda", "")
        assert r.message.startswith("no result: the target was not run")
    t = records["base", "cpu", NO_RESULTS]
    assert (t.suite, t.status, t.target) == ("t", statuses.NOT_RUN, "//t:t_base_cpu")


def test_empty_testlogs(matrix, tmp_path):
    records = collect(matrix, tmp_path / "nothing").records
    assert {r.status for r in records} == {statuses.NOT_RUN}
    assert sorted((r.suite, r.variant, r.device) for r in records) == sorted(
        (c.suite.name, c.variant.name, c.device.name) for c in matrix.cells()
    )


def test_fill_missing_false_keeps_only_what_was_found(matrix, testlogs):
    collected = collect(matrix, testlogs, fill_missing=False)
    assert {(r.variant, r.device, r.test) for r in collected.records} == {
        ("base", "cpu", A), ("base", "cpu", B), ("base", "cpu", C), ("other", "cpu", A), ("other", "cpu", B),
    }  # fmt: skip
    assert statuses.NOT_RUN not in {r.status for r in collected.records}
    # The targets that died cannot be filled in: they are reported as problems, never dropped silently.
    assert collected.problems == [
        "//s:s_base_cpu: xfail entry 'test_b.py::gone' matched no test",
        "//s:s_other_cpu: shard 2 died without writing a report or test.xml; see its test.log",
        "//s:s_other_cuda: shard 1 died without writing a report or test.xml; see its test.log",
    ]


def test_collect_some_cells(matrix, testlogs):
    cells = [c for c in matrix.cells() if c.target_name == "s_other_cpu"]
    collected = collect(matrix, testlogs, cells=cells)
    assert {(r.variant, r.device) for r in collected.records} == {("other", "cpu")}
    # Alone, the cell cannot know which tests its dead shard had: a problem says so.
    assert {r.test: r.status for r in collected.records} == {A: statuses.FAILED, B: statuses.SKIPPED}
    assert collected.problems == ["//s:s_other_cpu: shard 2 died without writing a report or test.xml; see its test.log"]
    # With a cell that ran those tests, they are filled in as crashed.
    cells += [c for c in matrix.cells() if c.target_name == "s_base_cpu"]
    collected = collect(matrix, testlogs, cells=cells)
    assert {r.test: r.status for r in collected.records if r.variant == "other"} == {A: statuses.FAILED, B: statuses.SKIPPED, C: statuses.CRASHED}
    assert not [p for p in collected.problems if "died" in p]


def bep_lines(*events) -> str:
    return "\n".join(json.dumps(e) for e in events) + "\n\n"


def test_result(label, shard, attempt, cached=False, status="PASSED"):
    result = {"status": status, "testAttemptDurationMillis": "1200"}
    if cached:
        result["cachedLocally"] = True
    return {"id": {"testResult": {"label": label, "run": 1, "shard": shard, "attempt": attempt, "configuration": {"id": "abc"}}}, "testResult": result}


def summary(label, overall):
    return {"id": {"testSummary": {"label": label, "configuration": {"id": "abc"}}}, "testSummary": {"overallStatus": overall, "totalRunCount": 2}}


test_result.__test__ = False  # a helper, not a test


@pytest.fixture
def bep(tmp_path) -> Path:
    path = tmp_path / "bep.json"
    path.write_text(bep_lines(
        {"id": {"started": {}}, "started": {"uuid": "u", "command": "test"}, "children": [{"targetCompleted": {"label": "//s:s_base_cpu"}}]},
        test_result("//s:s_base_cpu", 1, 1, cached=True),
        test_result("//s:s_base_cpu", 2, 1),
        summary("//s:s_base_cpu", "FAILED"),
        test_result("//s:s_other_cpu", 1, 1, status="FAILED"),
        test_result("//s:s_other_cpu", 1, 2),
        test_result("//s:s_other_cpu", 2, 1, status="FAILED"),
        {"id": {"testResult": {"label": "//s:s_remote", "shard": 1, "attempt": 1}}, "testResult": {"executionInfo": {"cachedRemotely": True}}},
        summary("//s:s_other_cpu", "FLAKY"),
        {"id": {"buildFinished": {}}, "finished": {"exitCode": {"name": "TESTS_FAILED", "code": 3}}},
    ))  # fmt: skip
    return path


def test_read_bep(bep):
    results = read_bep(bep)
    assert set(results) == {"//s:s_base_cpu", "//s:s_other_cpu", "//s:s_remote"}
    base = results["//s:s_base_cpu"]
    assert (base.cached, base.attempts, base.overall) == ({0: True, 1: False}, {0: 1, 1: 1}, "FAILED")
    other = results["//s:s_other_cpu"]
    assert (other.cached, other.attempts, other.overall) == ({0: False, 1: False}, {0: 2, 1: 1}, "FLAKY")
    assert results["//s:s_remote"].cached == {0: True}


def test_bep_gives_cached_and_attempts(matrix, testlogs, bep):
    collected = collect(matrix, testlogs, bep=bep)
    records = by_key(collected.records)
    assert collected.bazel["//s:s_other_cpu"].overall == "FLAKY"
    assert (records["base", "cpu", A].cached, records["base", "cpu", A].attempts) == (True, 1)  # shard 1
    assert (records["base", "cpu", C].cached, records["base", "cpu", C].attempts) == (False, 1)  # shard 2
    assert (records["other", "cpu", A].cached, records["other", "cpu", A].attempts) == (False, 2)  # retried
    assert records["other", "cpu", C].attempts == 1  # crashed in shard 2
    # No BEP entry: the defaults.
    assert (records["base", "cuda", A].cached, records["base", "cuda", A].attempts) == (False, 1)


def test_without_bep_nothing_is_cached(matrix, testlogs):
    records = collect(matrix, testlogs).records
    assert not any(r.cached for r in records) and {r.attempts for r in records} == {1}


def test_log_tail_is_bounded(tmp_path):
    log = tmp_path / "test.log"
    log.write_text("\n".join(f"line {i}" for i in range(5000)) + "\n" + SANDBOX + "\n")
    tail = log_tail(log)
    assert len(tail) == LOG_TAIL_CHARS
    assert tail.endswith("line 4999")


def _zip_outputs(shard: Path, files: dict[str, bytes]) -> None:
    (shard / "test.outputs").mkdir(exist_ok=True)
    with zipfile.ZipFile(shard / "test.outputs" / "outputs.zip", "w") as z:
        for name, data in files.items():
            z.writestr(name, data)


def test_the_digest_says_what_report_json_says_and_is_read_first(matrix, tmp_path):
    tests = [
        entry(A, statuses.PASSED, duration=1.5),
        entry(B, statuses.FAILED, "AssertionError: 1 != 2", "AssertionError", transform_failed=True),
        entry(C, statuses.CRASHED, "the test process died (SIGSEGV)", "crashed", expectation=None, log_tail="Fatal Python error"),
    ]
    meta = metadata("//s:s_base_cpu", 0, 2, problems=["xfail entry 'test_b.py::gone' matched no test"])
    # What cell_main writes, through its own writer.
    out = tmp_path / "undeclared"
    out.mkdir()
    outputs.write_outputs(str(out), tests, meta, time.time(), 1, "s")
    written = {name: (out / name).read_bytes() for name in (outputs.REPORT_NAME, outputs.DIGEST_NAME)}
    assert len(written[outputs.DIGEST_NAME]) < len(written[outputs.REPORT_NAME]) / 2
    (cell,) = [c for c in matrix.cells() if c.target_name == "s_base_cpu"]

    def collected(files: dict[str, bytes]) -> tuple[list[dict], list[str]]:
        logs = tmp_path / f"logs{len(list(tmp_path.iterdir()))}"
        _zip_outputs(shard_dir(logs, "s_base_cpu", 1), files)
        c = collect(matrix, logs, cells=[cell], fill_missing=False)
        return [r.to_json() for r in c.records], c.problems

    from_both = collected(written)
    from_report_alone = collected({outputs.REPORT_NAME: written[outputs.REPORT_NAME]})
    assert from_both == from_report_alone
    records, problems = from_both
    assert [(r["test"], r["status"], r["duration_s"], r["transform_failed"], r["log_tail"]) for r in records] == [
        (B, statuses.FAILED, 0.25, True, ""),  # sorted by node id: "TestK" < "test_one"
        (A, statuses.PASSED, 1.5, False, ""),
        (C, statuses.CRASHED, 0.25, False, "Fatal Python error"),
    ]
    assert problems == ["//s:s_base_cpu: xfail entry 'test_b.py::gone' matched no test"]

    # With both present the digest is what is read: a digest that disagrees wins.
    digest = json.loads(written[outputs.DIGEST_NAME])
    assert digest["tests"][0][0] == A
    digest["tests"][0][digest["fields"].index("status")] = statuses.XPASSED
    records, _ = collected({**written, outputs.DIGEST_NAME: json.dumps(digest).encode()})
    assert {r["test"]: r["status"] for r in records}[A] == statuses.XPASSED

    # A digest from another version, with its fields in another order (and one it lacks): read by name.
    fields = digest["fields"]
    order = [f for f in reversed(fields) if f != "log_tail"]
    other = {**digest, "fields": order, "tests": [[row[fields.index(f)] for f in order] for row in digest["tests"]]}
    records, _ = collected({outputs.DIGEST_NAME: json.dumps(other).encode()})
    assert [(r["test"], r["status"], r["duration_s"], r["transform_failed"], r["log_tail"]) for r in records] == [
        (B, statuses.FAILED, 0.25, True, ""),
        (A, statuses.XPASSED, 1.5, False, ""),
        (C, statuses.CRASHED, 0.25, False, ""),
    ]


def test_log_tail_of_a_huge_log_reads_only_its_end(tmp_path):
    log = tmp_path / "test.log"
    with open(log, "w") as f:
        f.write("x" * 50_000_000 + "\n")  # one 50 MB line: only the last LOG_TAIL_READ bytes are read
        f.write("\n".join(f"line {i}" for i in range(100)) + "\nSegmentation fault\n")
    tail = log_tail(log)
    assert tail.startswith("line 0\n") and tail.endswith("line 99\nSegmentation fault")  # the cut first line dropped


# --- granularity: file: one target per (cell, test file) ----------------------------------------------

BY_FILE = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base: {impl: pkg.mod:Base, description: plain}
  other: {impl: pkg.mod:Other, description: other}
suites:
  s:
    granularity: file
    variants: [base, other]
    devices: [cpu, cuda]
    shards: {cpu: 2}
  u:
    granularity: file
    variants: [base]
    devices: [cpu]
"""
P, Q = "test_p.py::test_p", "test_q.py::test_q"


def file_meta(target: str, shard: int = 0, total: int = 1) -> dict:
    """The metadata cell_main writes for a file's target (`//s:s_base_cpu/test_a`)."""
    cell = target.split(":")[1].split("/")[0]
    suite, variant, device = cell.split("_")
    return {**metadata(f"//{suite}:{cell}", shard, total), "target": target}


@pytest.fixture
def by_file(tmp_path) -> config.Matrix:
    ws = write_workspace(tmp_path / "ws", BY_FILE, ("s/test_a.py", "s/test_b.py", "u/test_p.py", "u/test_q.py"))
    return config.load(ws / "matrix.yaml", ws)


@pytest.fixture
def file_logs(tmp_path) -> Path:
    """Testlogs laid out as Bazel lays out `<cell>/<file>` targets: <testlogs>/s/s_base_cpu/test_a/shard_1_of_2/."""
    logs = tmp_path / "bazel-testlogs"

    def target_dir(name: str, shard: int | None = None, total: int = 2) -> Path:
        d = logs / name.split(":")[0].strip("/") / name.split(":")[1]
        d = d / f"shard_{shard}_of_{total}" if shard is not None else d
        d.mkdir(parents=True, exist_ok=True)
        return d

    # s_base_cpu/test_a: two shards, each its report.json.
    for shard, tests in ((1, [entry(A, statuses.PASSED, duration=1.5)]), (2, [entry(B, statuses.FAILED, "AssertionError: 1 != 2", "AssertionError")])):
        d = target_dir("//s:s_base_cpu/test_a", shard)
        (d / "test.outputs").mkdir()
        (d / "test.outputs" / "report.json").write_bytes(report_json(tests, file_meta("//s:s_base_cpu/test_a", shard - 1, 2)))
    # s_base_cpu/test_b: both shards died leaving only their logs.
    for shard in (1, 2):
        (target_dir("//s:s_base_cpu/test_b", shard) / "test.log").write_text(f"running test_b.py (shard {shard})\nSegmentation fault (core dumped)\n")
    # s_other_cpu/test_a ran (JUnit XML only); s_other_cpu/test_b never ran.
    d = target_dir("//s:s_other_cpu/test_a", 1)
    (d / "test.xml").write_bytes(outputs.junit_xml([entry(A, statuses.PASSED), entry(B, statuses.XPASSED, expectation="test_a.py")], file_meta("//s:s_other_cpu/test_a", 0, 2)))
    # s_other_cuda (one shard): test_a died (Bazel's own test.xml), test_b ran.
    d = target_dir("//s:s_other_cuda/test_a")
    (d / "test.xml").write_text(BAZEL_OWN_XML.replace("s/s_other_cuda", "s/s_other_cuda/test_a"))
    (d / "test.log").write_text("Fatal Python error: Aborted\n")
    d = target_dir("//s:s_other_cuda/test_b")
    (d / "test.outputs").mkdir()
    (d / "test.outputs" / "report.json").write_bytes(report_json([entry(C, statuses.PASSED)], file_meta("//s:s_other_cuda/test_b")))
    # s_base_cuda: nothing at all. u_base_cpu: test_q died, test_p never ran: no test of suite u is known.
    (target_dir("//u:u_base_cpu/test_q") / "test.log").write_text("Killed\n")
    return logs


def test_granularity_file_records_name_the_files_target(by_file, file_logs):
    records = by_key(collect(by_file, file_logs, run_id="r").records)
    s_keys = {(v, d, t) for v in ("base", "other") for d in ("cpu", "cuda") for t in (A, B, C)}
    assert set(records) == s_keys | {("base", "cpu", NO_RESULTS)}
    got = {k: (r.status, r.target, r.shard) for k, r in records.items() if k != ("base", "cpu", NO_RESULTS) or r.suite == "s"}
    assert {k: v for k, v in got.items() if k[:2] == ("base", "cpu")} == {
        ("base", "cpu", A): (statuses.PASSED, "//s:s_base_cpu/test_a", 0),
        ("base", "cpu", B): (statuses.FAILED, "//s:s_base_cpu/test_a", 1),
        ("base", "cpu", C): (statuses.CRASHED, "//s:s_base_cpu/test_b", 0),  # the target's first broken shard speaks for its tests
    }
    assert {k: v for k, v in got.items() if k[:2] == ("other", "cpu")} == {
        ("other", "cpu", A): (statuses.PASSED, "//s:s_other_cpu/test_a", 0),
        ("other", "cpu", B): (statuses.XPASSED, "//s:s_other_cpu/test_a", 0),
        ("other", "cpu", C): (statuses.NOT_RUN, "//s:s_other_cpu/test_b", None),  # its file's target never ran
    }
    assert {k: v for k, v in got.items() if k[:2] == ("base", "cuda")} == {
        (("base", "cuda", t)): (statuses.NOT_RUN, f"//s:s_base_cuda/{t.split('.py')[0]}", None) for t in (A, B, C)
    }
    # A crashed target speaks for its own file's tests only.
    assert {k: v for k, v in got.items() if k[:2] == ("other", "cuda")} == {
        ("other", "cuda", A): (statuses.CRASHED, "//s:s_other_cuda/test_a", 0),
        ("other", "cuda", B): (statuses.CRASHED, "//s:s_other_cuda/test_a", 0),
        ("other", "cuda", C): (statuses.PASSED, "//s:s_other_cuda/test_b", 0),
    }
    assert records["other", "cuda", A].log_tail == "Fatal Python error: Aborted"
    assert records["base", "cpu", C].log_tail == "running test_b.py (shard 1)\nSegmentation fault (core dumped)"
    # The second dead shard of s_base_cpu/test_b is said, never silent.
    assert collect(by_file, file_logs).problems == ["//s:s_base_cpu/test_b: shard 2 died without writing a report or test.xml; see its test.log"]


def test_granularity_file_fill_missing_false_names_each_dead_target(by_file, file_logs):
    collected = collect(by_file, file_logs, fill_missing=False)
    assert sorted((r.variant, r.device, r.test, r.target) for r in collected.records) == [
        ("base", "cpu", B, "//s:s_base_cpu/test_a"),
        ("base", "cpu", A, "//s:s_base_cpu/test_a"),
        ("other", "cpu", B, "//s:s_other_cpu/test_a"),
        ("other", "cpu", A, "//s:s_other_cpu/test_a"),
        ("other", "cuda", C, "//s:s_other_cuda/test_b"),
    ]
    assert collected.problems == [
        "//s:s_base_cpu/test_b: shard 1 died without writing a report or test.xml; see its test.log",
        "//s:s_base_cpu/test_b: shard 2 died without writing a report or test.xml; see its test.log",
        "//s:s_other_cuda/test_a: shard 1 died without writing a report or test.xml; see its test.log",
        "//u:u_base_cpu/test_q: shard 1 died without writing a report or test.xml; see its test.log",
    ]


def test_granularity_file_a_suite_with_no_known_test_is_one_record_of_the_broken_target(by_file, file_logs):
    """Suite u: test_q's target died, test_p's never ran, no test id is known: one placeholder, and
    the target it names is the one whose crash it carries."""
    (placeholder,) = [r for r in collect(by_file, file_logs).records if r.suite == "u"]
    assert (placeholder.test, placeholder.status, placeholder.shard, placeholder.log_tail) == (NO_RESULTS, statuses.CRASHED, 0, "Killed")
    assert placeholder.target == "//u:u_base_cpu/test_q"


def test_granularity_file_bep_is_read_per_target(by_file, file_logs, tmp_path):
    bep = tmp_path / "bep.json"
    bep.write_text(bep_lines(
        test_result("//s:s_base_cpu/test_a", 1, 1, cached=True),
        test_result("//s:s_base_cpu/test_a", 2, 1, status="FAILED"),
        test_result("//s:s_base_cpu/test_a", 2, 2, status="FAILED"),
        test_result("//s:s_other_cuda/test_b", 1, 1, cached=True),
        summary("//s:s_base_cpu/test_a", "FAILED"),
    ))  # fmt: skip
    collected = collect(by_file, file_logs, bep=bep)
    records = by_key(collected.records)
    assert {label: result.overall for label, result in collected.bazel.items()} == {"//s:s_base_cpu/test_a": "FAILED", "//s:s_other_cuda/test_b": ""}
    assert [(records[k].cached, records[k].attempts) for k in (("base", "cpu", A), ("base", "cpu", B), ("other", "cuda", C), ("other", "cuda", A))] == [
        (True, 1), (False, 2), (True, 1), (False, 1),
    ]  # fmt: skip


def test_shard_dirs_of_a_files_target(by_file, file_logs):
    cell = next(c for c in by_file.cells() if c.target_name == "s_base_cpu")
    a, b = cell.targets
    assert shard_dirs(file_logs, a) == [(0, file_logs / "s/s_base_cpu/test_a/shard_1_of_2"), (1, file_logs / "s/s_base_cpu/test_a/shard_2_of_2")]
    (file_logs / "s/s_base_cpu/test_a/shard_2_of_2/test.outputs/report.json").unlink()
    assert [shard for shard, _ in shard_dirs(file_logs, b)] == [0, 1]
    never = next(c for c in by_file.cells() if c.target_name == "s_base_cuda").targets[0]
    assert shard_dirs(file_logs, never) == [(0, file_logs / "s/s_base_cuda/test_a")]  # the plan's layout: one shard


@pytest.mark.parametrize(("matched", "problems"), [
    ((), ["//u:u_base_cpu: --test_filter 'test_qq' matches no test of any of its 2 file targets; check its spelling"]),
    (("test_q",), []),  # the other file's target had it
])  # fmt: skip
def test_granularity_file_a_filter_no_file_target_matched_is_a_problem_of_the_cell(by_file, tmp_path, matched, problems):
    """Each file's target passes with 0 tests for a bare name it lacks (it may be another file's); when
    every file target of the cell ran with the filter and none had it, the cell says so."""
    logs = tmp_path / "bazel-testlogs"
    for name in ("test_p", "test_q"):
        d = logs / "u" / "u_base_cpu" / name / "test.outputs"
        d.mkdir(parents=True)
        tests = [entry(Q, statuses.PASSED)] if name in matched else []
        d.joinpath("report.json").write_bytes(report_json(tests, {**file_meta(f"//u:u_base_cpu/{name}"), "test_filter": "test_qq"}))
    cells = [c for c in by_file.cells() if c.suite.name == "u"]
    assert collect(by_file, logs, cells=cells, fill_missing=False).problems == problems


def configured(label):
    return {"id": {"targetConfigured": {"label": label}}, "configured": {"targetKind": "py_test rule", "testSize": "MEDIUM"}}


def completed(label, **event):
    return {"id": {"targetCompleted": {"label": label, "configuration": {"id": "abc"}}}, **event}


def test_targets_bazel_did_not_test_are_not_read_from_earlier_testlogs(matrix, testlogs, tmp_path):
    """The report's own Bazel command configured every target; it tested only s_base_cpu. The testlogs of
    the others are an earlier command's (Bazel leaves them): a target that did not build is `error` in
    every test (not its earlier results stamped with this run), a GPU cell Bazel skipped as incompatible
    and a target the command never reached are `not_run` saying so. Event shapes as Bazel 4.2.3 writes them."""
    path = tmp_path / "bep.json"
    path.write_text(bep_lines(
        *(configured(label) for label in ("//s:s_base_cpu", "//s:s_other_cpu", "//s:s_base_cuda", "//s:s_other_cuda", "//t:t_base_cpu")),
        completed("//s:s_other_cuda", aborted={"reason": "SKIPPED", "description": "Target //s:s_other_cuda build was skipped."}),
        completed("//s:s_other_cpu", completed={"failureDetail": {"message": "missing input file '//x:gone.txt'",
                                                                  "execution": {"code": "SOURCE_INPUT_MISSING"}}}),  # fmt: skip
        completed("//s:s_base_cpu", completed={"success": True}),
        test_result("//s:s_base_cpu", 1, 1),
        test_result("//s:s_base_cpu", 2, 1),
        completed("//s:s_base_cuda", aborted={"reason": "INCOMPLETE", "description": "The build was interrupted."}),
    ))  # fmt: skip
    collected = collect(matrix, testlogs, bep=path, run_id="R")
    got = {(r.variant, r.device, r.suite, r.test): (r.status, r.message) for r in collected.records}
    built = "its target did not build in run R: missing input file '//x:gone.txt'"
    gpu = "Bazel skipped the target in run R: it needs a GPU (`--config=gpu` on a machine with one)"
    assert got == {
        ("base", "cpu", "s", A): (statuses.PASSED, ""),
        ("base", "cpu", "s", B): (statuses.FAILED, "AssertionError: 1 != 2"),
        ("base", "cpu", "s", C): (statuses.XFAILED, "RuntimeError: nope"),
        ("other", "cpu", "s", A): (statuses.ERROR, built),
        ("other", "cpu", "s", B): (statuses.ERROR, built),
        ("other", "cpu", "s", C): (statuses.ERROR, built),
        ("base", "cuda", "s", A): (statuses.NOT_RUN, "Bazel did not run the target in run R (INCOMPLETE: The build was interrupted.)"),
        ("base", "cuda", "s", B): (statuses.NOT_RUN, "Bazel did not run the target in run R (INCOMPLETE: The build was interrupted.)"),
        ("base", "cuda", "s", C): (statuses.NOT_RUN, "Bazel did not run the target in run R (INCOMPLETE: The build was interrupted.)"),
        ("other", "cuda", "s", A): (statuses.NOT_RUN, gpu),  # not its earlier run's crash
        ("other", "cuda", "s", B): (statuses.NOT_RUN, gpu),
        ("other", "cuda", "s", C): (statuses.NOT_RUN, gpu),
        ("base", "cpu", "t", NO_RESULTS): (statuses.NOT_RUN, "Bazel did not run the target in run R (the command ended before it)"),
    }
    assert "//s:s_other_cpu: Bazel could not build it: missing input file '//x:gone.txt'" in collected.problems


def test_a_target_that_did_not_build_carries_no_earlier_pass(matrix, testlogs, tmp_path):
    """With an earlier report, a target that did not build does not keep its earlier passes: each test is
    `error` naming its last result (a broken build must not pass for them)."""
    earlier = collect(matrix, testlogs, run_id="R0").records
    path = tmp_path / "bep.json"
    path.write_text(bep_lines(
        configured("//s:s_base_cpu"),
        completed("//s:s_base_cpu", completed={"failureDetail": {"message": "missing input file '//x:gone.txt'"}}),
    ))  # fmt: skip
    collected = collect(matrix, testlogs, bep=path, run_id="R1", previous=earlier)
    got = {r.test: (r.status, r.message, r.run_id) for r in collected.records if (r.variant, r.device) == ("base", "cpu") and r.suite == "s"}
    built = "its target did not build in run R1: missing input file '//x:gone.txt'; its last result"
    assert got == {
        A: (statuses.ERROR, f"{built}: passed in run R0", "R1"),
        B: (statuses.ERROR, f"{built}: failed in run R0", "R1"),
        C: (statuses.ERROR, f"{built}: xfailed in run R0", "R1"),
    }
