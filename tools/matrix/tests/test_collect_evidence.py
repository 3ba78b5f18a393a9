"""The collector reads the evidence a failing test left in its target's outputs (runtime/evidence.py)
into Record.evidence; evidence that is broken or hostile (a test writes into its own outputs) becomes a
`problem` of that record's evidence and changes nothing else.

Real cells run through cell_main on fixtures/collect_evidence under deliberately broken plug-ins
(fixtures/synvariants/mistranslating.py); their outputs are laid out as Bazel 4 leaves them
(<testlogs>/<suite>/<target>/test.outputs/outputs.zip, or unzipped, plus test.xml and test.log) and
read by the real collector.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tools.matrix import config, statuses
from tools.matrix.collect import EVIDENCE_MAX_BYTES, collect
from tools.matrix.collect import evidence as collect_evidence
from tools.matrix.records import Record, RunInfo
from tools.matrix.report import SCHEMA_PATH, write_reports
from tools.matrix.runtime import evidence
from tools.matrix.runtime.outputs import DIGEST_NAME, REPORT_NAME
from tools.matrix.tests.fixtures.cellrun import Cell, CellPool, CellRun
from tools.matrix.tests.fixtures.toolws import write_workspace

SUITE = "collect_evidence"  # the fixture suite's directory, and the suite's name and directory in the workspace
FILE = "test_kept.py"
EXPORTS, PLAIN = f"{FILE}::test_exports_linear_relu", f"{FILE}::test_plain"
EXPORT = "torch.export.export"
IMPLS = {
    "base": "tools.matrix.variants.base:Base",
    "swap": "synvariants.mistranslating:SwapReluForSigmoid",
    "crash": "synvariants.mistranslating:CrashAfterSerializing",
    "expected": "synvariants.mistranslating:SwapReluForSigmoid",  # its breakage listed as an xfail
}
XFAIL = {EXPORTS: "relu becomes sigmoid"}
CELLS = {
    name: Cell(
        SUITE, (FILE,), variant=name, impl=impl, applies_to=(EXPORT,) if name != "base" else (), xfail=XFAIL if name == "expected" else {}
    )
    for name, impl in IMPLS.items()
}
MATRIX = (
    "devices:\n  cpu: {}\nvariants:\n"
    + "".join(f'  {name}: {{impl: "{impl}", description: {name}}}\n' for name, impl in IMPLS.items())
    + (f"suites:\n  {SUITE}:\n    variants: [{', '.join(IMPLS)}]\n    devices: [cpu]\n")
)
DIR = f"{evidence.EVIDENCE_DIR}/{evidence.test_key(EXPORTS)}"  # the failing test's evidence directory
MEMBER = evidence.index_member(EXPORTS)
PAYLOAD = "call-1-saved.pt2"
SAVED = "the archive written by torch.export.save"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, CellRun]:
    pool = CellPool(CELLS, tmp_path_factory.mktemp("collect_evidence"))
    pool.start(CELLS)
    try:
        out = {name: pool[name] for name in CELLS}
    finally:
        pool.close()
    assert out["swap"].statuses == {EXPORTS: statuses.FAILED, PLAIN: statuses.PASSED}, out["swap"].explain()
    assert out["crash"].statuses == {EXPORTS: statuses.CRASHED, PLAIN: statuses.PASSED}, out["crash"].explain()
    assert out["base"].statuses == {EXPORTS: statuses.PASSED, PLAIN: statuses.PASSED}, out["base"].explain()
    assert out["expected"].statuses == {EXPORTS: statuses.XFAILED, PLAIN: statuses.PASSED}, out["expected"].explain()
    return out


@pytest.fixture
def matrix(tmp_path) -> config.Matrix:
    ws = write_workspace(tmp_path / "ws", MATRIX, (f"{SUITE}/{FILE}",))
    return config.load(ws / "matrix.yaml", ws)


def shard(testlogs: Path, variant: str) -> Path:
    return testlogs / SUITE / f"{SUITE}_{variant}_cpu"


def zip_of(testlogs: Path, variant: str) -> Path:
    return shard(testlogs, variant) / "test.outputs" / "outputs.zip"


def lay_out(runs: dict[str, CellRun], testlogs: Path, unzipped: bool = False) -> Path:
    """Each run's outputs where Bazel 4 leaves them: test.outputs/outputs.zip (a zip of the run's
    undeclared outputs), or that directory unzipped; its JUnit XML as test.xml, its log as test.log."""
    for variant, run in runs.items():
        d = shard(testlogs, variant)
        (d / "test.outputs").mkdir(parents=True)
        shutil.copy(run.tmp / "test.xml", d / "test.xml")
        shutil.copy(run.tmp / "log.txt", d / "test.log")
        out = run.tmp / "out"
        if unzipped:
            shutil.copytree(out, d / "test.outputs", dirs_exist_ok=True)
            continue
        with zipfile.ZipFile(d / "test.outputs" / "outputs.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                z.write(path, path.relative_to(out).as_posix())
    return testlogs


def rewrite(archive: Path, member: str, data: bytes | None) -> None:
    """Replace (None: remove) one member of a real zip, keeping the others."""
    with zipfile.ZipFile(archive) as z:
        kept = [(info, z.read(info)) for info in z.infolist() if info.filename != member]
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data_ in kept:
            z.writestr(info, data_)
        if data is not None:
            z.writestr(member, data)


def by_key(records: list[Record]) -> dict[tuple[str, str], Record]:
    out = {(r.variant, r.test): r for r in records}
    assert len(out) == len(records), "duplicate records"
    return out


def kept_evidence(runs: dict[str, CellRun], variant: str) -> dict[str, Any]:
    return json.loads((runs[variant].tmp / "out" / MEMBER).read_text(encoding="utf-8"))


# --- what a clean run's records carry -------------------------------------------------------------


def test_a_failing_record_carries_the_programs_before_and_after_and_the_payload(runs, matrix, tmp_path):
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    records = by_key(collect(matrix, testlogs).records)
    failed = records["swap", EXPORTS]
    assert (failed.status, failed.error_type) == (statuses.FAILED, "VariantNumericsMismatch")
    ev = failed.evidence
    archive = zip_of(testlogs, "swap")
    assert list(ev) == ["outputs", "dir", "calls", "calls_not_kept"]  # no problem
    assert (ev["outputs"], ev["dir"], ev["calls_not_kept"], len(ev["calls"])) == (str(archive), DIR, 0, 1)
    (call,) = ev["calls"]
    assert call == kept_evidence(runs, "swap")["calls"][0]  # as the writer wrote it
    assert list(call) == ["entry", "before", "before_cut", "after", "after_cut", "error", "check", "check_s", "payloads"]
    assert (call["entry"], call["before_cut"], call["after_cut"], call["error"]) == (EXPORT, 0, 0, None)
    assert "= torch.ops.aten.relu.default(linear);" in call["before"]
    assert "aten.sigmoid" not in call["before"]
    # The one difference between the programs is the op the broken variant swapped.
    assert call["after"] == call["before"].replace("aten.relu.default(linear)", "aten.sigmoid.default(linear)") != call["before"]
    assert call["check"].startswith("failed: output: max abs difference ")
    assert call["check"] == failed.transform_check
    assert call["check_s"] > 0
    with zipfile.ZipFile(archive) as z:
        size = len(z.read(f"{DIR}/{PAYLOAD}"))
    assert call["payloads"] == [{"file": PAYLOAD, "what": SAVED, "bytes": size, "kept": size, "cut": ""}]
    assert size > 1000
    # A passing test keeps nothing, under a broken variant or the base one.
    assert records["swap", PLAIN].evidence is None and records["swap", PLAIN].status == statuses.PASSED
    assert records["base", EXPORTS].evidence is None and records["base", EXPORTS].status == statuses.PASSED
    with zipfile.ZipFile(zip_of(testlogs, "base")) as z:
        assert not [n for n in z.namelist() if n.startswith(evidence.EVIDENCE_DIR)]


def test_an_xfailed_record_keeps_its_evidence_too(runs, matrix, tmp_path):
    records = by_key(collect(matrix, lay_out(runs, tmp_path / "bazel-testlogs")).records)
    expected, swap = records["expected", EXPORTS], records["swap", EXPORTS]
    assert (expected.status, expected.expectation) == (statuses.XFAILED, EXPORTS)
    (call,) = expected.evidence["calls"]
    assert "problem" not in expected.evidence
    assert (call["before"], call["after"]) == (swap.evidence["calls"][0]["before"], swap.evidence["calls"][0]["after"])
    assert call["check"].startswith("failed: output: max abs difference ")


def test_a_crashed_record_keeps_the_program_before_and_the_payload(runs, matrix, tmp_path):
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    crashed = by_key(collect(matrix, testlogs).records)["crash", EXPORTS]
    assert crashed.status == statuses.CRASHED
    ev = crashed.evidence
    assert (ev["outputs"], ev["dir"], ev["calls_not_kept"]) == (str(zip_of(testlogs, "crash")), DIR, 0)
    assert "problem" not in ev
    (call,) = ev["calls"]
    assert "= torch.ops.aten.relu.default(linear);" in call["before"]
    assert (call["after"], call["check"], call["check_s"], call["error"]) == (None, None, None, None)  # it died in the transform
    with zipfile.ZipFile(zip_of(testlogs, "crash")) as z:
        size = len(z.read(f"{DIR}/{PAYLOAD}"))
    assert call["payloads"] == [{"file": PAYLOAD, "what": SAVED, "bytes": size, "kept": size, "cut": ""}]


def test_a_shard_that_died_without_results_still_gives_its_crashed_records_their_evidence(runs, matrix, tmp_path):
    """cell_main itself killed (no report, no test.xml): the collector makes every test of the shard
    crashed, and the test whose evidence the outputs hold gets it."""
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    clean = by_key(collect(matrix, testlogs).records)["crash", EXPORTS].evidence
    for member in (DIGEST_NAME, REPORT_NAME):
        rewrite(zip_of(testlogs, "crash"), member, None)
    (shard(testlogs, "crash") / "test.xml").unlink()
    records = by_key(collect(matrix, testlogs).records)
    exports, plain = records["crash", EXPORTS], records["crash", PLAIN]
    assert (exports.status, plain.status) == (statuses.CRASHED, statuses.CRASHED)
    assert "died without writing a report or test.xml" in exports.message
    assert exports.evidence == clean
    assert plain.evidence is None


def test_the_unzipped_outputs_directory_is_read_the_same(runs, matrix, tmp_path):
    zipped = by_key(collect(matrix, lay_out(runs, tmp_path / "zipped")).records)
    testlogs = lay_out(runs, tmp_path / "unzipped", unzipped=True)
    records = by_key(collect(matrix, testlogs).records)
    for variant in ("swap", "crash"):
        ev = records[variant, EXPORTS].evidence
        assert ev == {**zipped[variant, EXPORTS].evidence, "outputs": str(shard(testlogs, variant) / "test.outputs")}
    assert records["swap", PLAIN].evidence is None


def test_only_the_shards_with_failing_records_are_opened_again_for_evidence(runs, matrix, tmp_path, monkeypatch):
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    opened: list[str] = []
    real = zipfile.ZipFile

    def counting(file: Any, *args: Any, **kwargs: Any) -> zipfile.ZipFile:
        opened.append(Path(file).parent.parent.name)
        return real(file, *args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", counting)
    asked: list[tuple[str, list[str]]] = []
    read = collect_evidence.read_evidence
    monkeypatch.setattr(
        collect_evidence, "read_evidence", lambda logs, d, records: (asked.append((d.name, [r.test for r in records])), read(logs, d, records))
    )
    collect(matrix, testlogs)
    # Once for the results; once more for the evidence, only where a record keeps evidence.
    assert sorted(opened) == sorted([f"{SUITE}_{v}_cpu" for v in ("base", "swap", "swap", "crash", "crash", "expected", "expected")])
    assert sorted(asked) == [(f"{SUITE}_{v}_cpu", [EXPORTS]) for v in ("crash", "expected", "swap")]


# --- broken or hostile evidence --------------------------------------------------------------------


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], bytes]:
    """The clean evidence.json with `change` applied to its (parsed) content."""

    def make(doc: dict[str, Any]) -> bytes:
        change(doc)
        return _json(doc)

    return make


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], bytes]:
    def change(doc: dict[str, Any]) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return _edit(change)


def _json_error(data: bytes) -> str:
    try:
        json.loads(data)
    except (ValueError, RecursionError) as e:
        return f"invalid JSON ({type(e).__name__}: {e})"
    raise AssertionError("valid JSON")


TRUNCATED = b'{"format": 1, "nodeid": "test_kept.py::test_exports_linear_relu", "calls": [{"entry": "torch.e'
NOT_UTF8 = b'{"format": 1, "nodeid": "\xff"}'
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE = EVIDENCE_MAX_BYTES + 1
# (name, the evidence.json written instead of the clean one (from the clean one's content), what the problem says after its member)
HOSTILE: list[tuple[str, Callable[[dict[str, Any]], bytes], str]] = [
    ("truncated", lambda doc: TRUNCATED, f": {_json_error(TRUNCATED)}"),
    ("not_utf8", lambda doc: NOT_UTF8, f": {_json_error(NOT_UTF8)}"),
    ("deeply_nested", lambda doc: DEEP, f": {_json_error(DEEP)}"),
    ("a_list", lambda doc: b"[]", ": a JSON list, not an evidence object"),
    ("other_format", _set(("format",), 2), ": format 2, not 1"),
    ("true_as_format", _set(("format",), True), ": format True, not 1"),
    ("another_tests", _set(("nodeid",), PLAIN), f": the evidence of {PLAIN!r}, not of this test"),
    ("calls_an_object", _set(("calls",), {}), ": calls is {}, not a list"),
    ("too_many_calls", _edit(lambda doc: doc.update(calls=doc["calls"] * 9)), ": 9 calls, more than the 8 a test keeps"),
    ("negative_not_kept", _set(("calls_not_kept",), -1), ": calls_not_kept is -1, not a finite number >= 0"),
    ("true_as_count", _set(("calls_not_kept",), True), ": calls_not_kept is True, not an integer"),
    ("call_a_string", _set(("calls", 0), "x"), ": call 1 is a JSON str, not an object"),
    ("call_lacks_after", _edit(lambda doc: doc["calls"][0].pop("after")), ": call 1 lacks after"),
    ("before_a_number", _set(("calls", 0, "before"), 3), ": call 1.before is 3, not a string"),
    ("cut_a_string", _set(("calls", 0, "before_cut"), "3"), ": call 1.before_cut is '3', not an integer"),
    ("check_s_nan", _set(("calls", 0, "check_s"), float("nan")), ": call 1.check_s is nan, not a finite number >= 0"),  # json writes NaN
    ("check_s_a_list", _set(("calls", 0, "check_s"), [1]), ": call 1.check_s is [1], not a number or null"),
    ("payloads_null", _set(("calls", 0, "payloads"), None), ": call 1.payloads is None, not a list"),
    ("payload_kept_a_float", _set(("calls", 0, "payloads", 0, "kept"), 1.5), ": call 1 payload 1.kept is 1.5, not an integer"),
    ("payload_up_the_tree", _set(("calls", 0, "payloads", 0, "file"), "../../../etc/passwd"),
     ": call 1 payload 1: file '../../../etc/passwd' is not a payload file name (call-<n>-<name>)"),
    ("payload_in_a_folder", _set(("calls", 0, "payloads", 0, "file"), "call-1-a/b"),
     ": call 1 payload 1: file 'call-1-a/b' is not a payload file name (call-<n>-<name>)"),
    ("payload_absolute", _set(("calls", 0, "payloads", 0, "file"), "/etc/passwd"),
     ": call 1 payload 1: file '/etc/passwd' is not a payload file name (call-<n>-<name>)"),
    ("payload_not_there", _set(("calls", 0, "payloads", 0, "file"), "call-1-gone.pt2"), ": call 1 payload 1: call-1-gone.pt2 is not in the outputs"),
    # Spaces compress to almost nothing: refused by its declared size, never inflated.
    ("huge", lambda doc: _json(doc) + b" " * HUGE, None),
]  # fmt: skip


@pytest.mark.parametrize("bad, what", [(make, what) for _name, make, what in HOSTILE], ids=[name for name, _m, _w in HOSTILE])
def test_broken_evidence_is_a_problem_of_that_record_alone(runs, matrix, tmp_path, bad, what):
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    clean = collect(matrix, testlogs).records
    archive = zip_of(testlogs, "swap")
    with zipfile.ZipFile(archive) as z:
        data = bad(json.loads(z.read(MEMBER)))
    rewrite(archive, MEMBER, data)
    records = collect(matrix, testlogs).records
    where = f"{SUITE}/{SUITE}_swap_cpu/test.outputs/outputs.zip"
    if what is None:  # over the size limit
        with zipfile.ZipFile(archive) as z:
            info = z.getinfo(MEMBER)
        problem = (f"{where}: {MEMBER} is {info.file_size:,} bytes uncompressed ({info.compress_size:,} compressed), "
                   f"over the {EVIDENCE_MAX_BYTES:,}-byte limit; not read")  # fmt: skip
    else:
        problem = f"{where}: {MEMBER}{what}"
    assert [r.key for r in records] == [r.key for r in clean]
    for before, after in zip(clean, records):
        if (after.variant, after.test) == ("swap", EXPORTS):
            assert after.evidence == {"outputs": str(archive), "dir": DIR, "calls": [], "calls_not_kept": 0, "problem": problem}
            after.evidence = before.evidence  # status, message and every other field: as in the clean run
        assert after == before


def test_evidence_that_is_not_a_regular_file_is_not_followed(runs, matrix, tmp_path):
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs", unzipped=True)
    index = shard(testlogs, "swap") / "test.outputs" / MEMBER
    index.unlink()
    index.symlink_to("/etc/hostname")
    fifo = shard(testlogs, "crash") / "test.outputs" / MEMBER
    fifo.unlink()
    os.mkfifo(fifo)  # reading it would wait forever
    records = by_key(collect(matrix, testlogs).records)
    for variant in ("swap", "crash"):
        where = f"{SUITE}/{SUITE}_{variant}_cpu/test.outputs"
        assert records[variant, EXPORTS].evidence == {
            "outputs": str(shard(testlogs, variant) / "test.outputs"), "dir": DIR, "calls": [], "calls_not_kept": 0,
            "problem": f"{where}/{MEMBER}: not a regular file; not read",
        }  # fmt: skip


def test_evidence_of_a_corrupt_member_is_a_problem(runs, matrix, tmp_path):
    """A member whose data does not match its CRC: the digest in the same zip is still read."""
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    archive = zip_of(testlogs, "swap")
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo(MEMBER)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw = bytearray(archive.read_bytes())
    raw[start + info.compress_size // 2] ^= 0xFF
    archive.write_bytes(bytes(raw))
    record = by_key(collect(matrix, testlogs).records)["swap", EXPORTS]
    assert record.status == statuses.FAILED
    assert record.evidence["calls"] == [] and record.evidence["problem"].startswith(
        f"{SUITE}/{SUITE}_swap_cpu/test.outputs/outputs.zip: {MEMBER}: not readable ("
    )


def test_control_characters_are_kept_as_data_unknown_keys_dropped_and_compat_json_validates(runs, matrix, tmp_path):
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    archive = zip_of(testlogs, "swap")
    with zipfile.ZipFile(archive) as z:
        doc = json.loads(z.read(MEMBER))
    clean_call = json.loads(json.dumps(doc["calls"][0]))  # a deep copy
    odd = "\x00\x1b[31mred\x1b[0m\u202eevil\r\n</script><b>\ud800"  # NUL, ANSI, bidi override, HTML, a lone surrogate
    doc["calls"][0].update(before=odd, extra={"x": 1})
    doc["calls"][0]["payloads"][0]["unknown"] = True
    doc["something_new"] = [1, 2]
    rewrite(archive, MEMBER, json.dumps(doc).encode())  # ensure_ascii: the surrogate travels as \ud800
    records = collect(matrix, testlogs).records
    ev = by_key(records)["swap", EXPORTS].evidence
    assert "problem" not in ev
    assert ev["calls"] == [{**clean_call, "before": odd}]
    out = tmp_path / "reports"
    write_reports(records, RunInfo(run_id="r1", created="2026-12-04T00:00:00+00:00"), out)
    compat = json.loads((out / "compat.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(SCHEMA).validate(compat)
    written = {(r["variant"], r["test"]): r["evidence"] for r in compat["records"]}
    assert written["swap", EXPORTS] == ev
    assert written["crash", EXPORTS]["calls"][0]["after"] is None
    assert written["swap", PLAIN] is None


def test_the_size_limit_is_above_what_the_writer_can_write():
    # Every character of the writer's bounded texts at its longest JSON form (\u0000: 6 bytes).
    most = evidence.MAX_CALLS * (2 * (evidence.TEXT_CAP + 100) + 2 * 4000) * 6
    assert most < EVIDENCE_MAX_BYTES


def test_a_reports_evidence_is_bounded_unexpected_records_first(runs, matrix, tmp_path, monkeypatch):
    """Past EVIDENCE_REPORT_CHARS of program text in one report, a record's evidence says where to read
    it instead; the failed record is served before the xfailed one (its sort key comes later)."""
    testlogs = lay_out(runs, tmp_path / "bazel-testlogs")
    clean = by_key(collect(matrix, testlogs).records)
    one = sum(len(c["before"]) + len(c["after"] or "") for c in clean["swap", EXPORTS].evidence["calls"])
    crash = len(clean["crash", EXPORTS].evidence["calls"][0]["before"])
    monkeypatch.setattr(collect_evidence, "EVIDENCE_REPORT_CHARS", one + crash)  # the two unexpected records, not the xfailed one
    records = by_key(collect(matrix, testlogs).records)
    assert records["swap", EXPORTS].evidence == clean["swap", EXPORTS].evidence
    assert records["crash", EXPORTS].evidence == clean["crash", EXPORTS].evidence
    bounded = records["expected", EXPORTS].evidence
    assert (bounded["calls"], bounded["calls_not_kept"]) == ([], 1)
    assert bounded["problem"] == (
        f"not included: this report already holds {one + crash:,} characters of evidence; "
        f"the {one:,} of this test are in {zip_of(testlogs, 'expected')}, {DIR}/"
    )
    assert records["expected", EXPORTS].status == statuses.XFAILED
