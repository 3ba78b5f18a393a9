"""The evidence a transforming variant leaves when a test goes wrong (tools/matrix/runtime/evidence.py):
what each call keeps (the program before and after as text, the serialized payloads, the check's
outcome), which tests keep it (failed, xfailed, crashed: never passed, never without a transform, never
under base), and its bounds (text, payload, calls per test, the shard's budget).

Cells run through cell_main on fixtures/evidence (real processes, real torch, the undeclared outputs
read as Bazel would zip them); the bounds that need much data are checked on a Recorder in this process.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from tools.matrix import statuses
from tools.matrix.runtime import evidence, outputs
from tools.matrix.runtime.evidence import (
    BUDGET,
    EVIDENCE_DIR,
    MAX_CALLS,
    MAX_PAYLOADS,
    PAYLOAD_CAP,
    TEST_BUDGET,
    TEXT_CAP,
    Recorder,
    program_text,
)
from tools.matrix.runtime.transform_host import TransformHost
from tools.matrix.tests.fixtures.cellrun import BASE_IMPL, Cell, CellRun, pool_fixture, uses
from tools.matrix.variants import Call, VariantTransformError
from tools.matrix.variants.export import Serdes

PROGRAMS, CRASHES, DYNAMO = "test_programs.py", "test_crashes.py", "test_dynamo.py"
RELU, OWN_ASSERTION, LISTED_XFAIL, NO_EXPORT, WIDE = (f"{PROGRAMS}::{name}" for name in (
    "test_relu_doubled", "test_fails_its_own_assertion", "test_listed_as_xfail", "test_fails_without_an_export", "test_wide_weights",
))  # fmt: skip
FIRST_CRASH, SECOND_CRASH = f"{CRASHES}::test_first_crash", f"{CRASHES}::test_second_crash"
HOARDING = "test_hoarding.py"
DYNAMO_FAILS = f"{DYNAMO}::test_fails_after_dynamo_export"
key = evidence.test_key  # (imported by its own name, pytest would collect it as a test)
EXPORT, DYNAMO_EXPORT = "torch.export.export", "torch._dynamo.export"
SERDES_IMPL = "tools.matrix.variants.export:Serdes"
SAVED = {"file": "call-1-saved.pt2", "what": "the archive written by torch.export.save", "cut": ""}

CELLS: dict[str, Cell] = {
    "serdes": Cell("evidence", (PROGRAMS,), variant="serdes", impl=SERDES_IMPL, applies_to=(EXPORT,), xfail={LISTED_XFAIL: "known"}),
    "serdes_passing": Cell("evidence", (PROGRAMS,), variant="serdes", impl=SERDES_IMPL, applies_to=(EXPORT,), env={"TESTBRIDGE_TEST_ONLY": RELU}),
    "swap": Cell("evidence", (PROGRAMS,), variant="swap", impl="synvariants.mistranslating:SwapReluForSigmoid", applies_to=(EXPORT,),
                 env={"TESTBRIDGE_TEST_ONLY": RELU}),
    "crash": Cell("evidence", (CRASHES,), variant="crash", impl="synvariants.mistranslating:CrashAfterSerializing", applies_to=(EXPORT,)),
    "dynamo": Cell("evidence", (DYNAMO,), variant="dynamo_package", impl="tools.matrix.variants.dynamo:DynamoPackage", applies_to=(DYNAMO_EXPORT,)),
    "base": Cell("evidence", (PROGRAMS,), variant="base", impl=BASE_IMPL),
    "hoarding": Cell("evidence", (HOARDING,), variant="hoarding", impl="synvariants.hoarding:KeepsTooMuch", applies_to=(EXPORT,)),
}  # fmt: skip


cells = pool_fixture(CELLS, "evidence")


def kept(run: CellRun) -> list[str]:
    """The test keys under the cell's matrix_evidence/ ([] when it is absent or empty)."""
    root = run.tmp / "out" / EVIDENCE_DIR
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def index(run: CellRun, nodeid: str) -> dict[str, Any]:
    path = run.tmp / "out" / evidence.index_member(nodeid)
    assert path.is_file(), f"no evidence for {nodeid}; kept: {kept(run)}\n{run.explain()}"
    return json.loads(path.read_text())


def payload_file(run: CellRun, nodeid: str, name: str) -> Path:
    return run.tmp / "out" / EVIDENCE_DIR / key(nodeid) / name


def the_call(run: CellRun, nodeid: str) -> dict[str, Any]:
    """The evidence of a test with exactly one recorded call (format, node id and counts checked)."""
    found = index(run, nodeid)
    assert (found["format"], found["nodeid"], found["calls_not_kept"], len(found["calls"])) == (evidence.FORMAT, nodeid, 0, 1), found
    return found["calls"][0]


def saved_payload(run: CellRun, nodeid: str, call: dict[str, Any]) -> bytes:
    """The torch.export.save archive a Serdes-like call kept whole; its entry says exactly that."""
    data = payload_file(run, nodeid, SAVED["file"]).read_bytes()
    assert call["payloads"] == [{**SAVED, "bytes": len(data), "kept": len(data)}]
    return data


def assert_tail_of_traceback(run: CellRun, nodeid: str) -> str:
    """The record's log_tail is the end of the test's traceback (the same text the plugin reads)."""
    log_tail = run.matrix(nodeid)["log_tail"]
    traceback = outputs.failure_text(run.tests[nodeid])
    assert traceback and log_tail == outputs.tail(traceback), log_tail
    return log_tail


# --- which tests keep evidence ----------------------------------------------------------------


@uses("serdes_passing")
def test_a_passing_test_under_a_transforming_variant_keeps_nothing(cells):
    run = cells["serdes_passing"]
    m = run.matrix(RELU)
    assert (run.returncode, run.statuses, m["transform_check"]) == (0, {RELU: statuses.PASSED}, "passed"), run.explain()
    assert kept(run) == []
    assert m["log_tail"] == ""  # a pass keeps no traceback
    assert m["evidence_s"] > 0  # recorded while it ran (the cost every test pays), then removed


@uses("swap")
def test_a_mistranslated_program_keeps_both_texts_the_check_and_a_loadable_payload(cells):
    run = cells["swap"]
    m = run.matrix(RELU)
    assert (m["status"], m["error_type"]) == (statuses.FAILED, "VariantNumericsMismatch"), run.explain()
    assert kept(run) == [key(RELU)]
    call = the_call(run, RELU)
    relu_line = '            relu: "f32[2, 3]" = torch.ops.aten.relu.default(linear);  linear = None'
    assert relu_line in call["before"].splitlines()
    # The graph's one difference is the op SwapReluForSigmoid changed: the evidence shows exactly that.
    assert call["after"] == call["before"].replace("aten.relu.default(linear)", "aten.sigmoid.default(linear)") != call["before"]
    assert (call["entry"], call["before_cut"], call["after_cut"], call["error"]) == (EXPORT, 0, 0, None)
    assert call["check"] == m["transform_check"] and call["check"].startswith("failed: output: max abs difference "), call
    assert call["check_s"] > 0
    # The payload is the archive torch.export.save wrote, before the mistranslation: it loads, and it
    # is the program the test exported.
    loaded = torch.export.load(io.BytesIO(saved_payload(run, RELU, call)))
    assert program_text(loaded) == call["before"]
    log_tail = assert_tail_of_traceback(run, RELU)
    *_, raised, blank, where = log_tail.splitlines()
    assert (raised, blank) == (f"E           {m['message']}", "")
    assert m["message"].startswith(
        "tools.matrix.variants.VariantNumericsMismatch: variant 'swap' changed what the result of torch.export.export computes: "
    )
    assert re.fullmatch(r".*tools/matrix/runtime/transform_host\.py:\d+: VariantNumericsMismatch", where), where  # the check runs in the runtime
    # Someone reading `bazel test` output learns that the evidence is there, and where.
    hint = (f"[matrix]   what the variant's transform changed: {evidence.index_member(RELU)} in this target's test.outputs "
            "(`bazel run //tools:matrix -- report --no-run` shows it)")  # fmt: skip
    assert hint in run.output.splitlines(), run.output[-3000:]


@uses("serdes")
def test_a_failing_or_xfailed_test_keeps_evidence_and_one_that_made_no_export_call_keeps_none(cells):
    run = cells["serdes"]
    assert run.statuses == {
        RELU: statuses.PASSED, OWN_ASSERTION: statuses.FAILED, LISTED_XFAIL: statuses.XFAILED,
        NO_EXPORT: statuses.FAILED, WIDE: statuses.FAILED,
    }, run.explain()  # fmt: skip
    assert kept(run) == sorted(key(n) for n in (OWN_ASSERTION, LISTED_XFAIL, WIDE))
    for nodeid in (OWN_ASSERTION, LISTED_XFAIL):
        call = the_call(run, nodeid)
        # A faithful transform: the check passed and the program reads the same after it.
        assert (call["check"], call["after"], call["error"]) == ("passed", call["before"], None), call
        assert "torch.ops.aten.relu.default(linear)" in call["before"]
        assert program_text(torch.export.load(io.BytesIO(saved_payload(run, nodeid, call)))) == call["before"]
        assert run.matrix(nodeid)["evidence_s"] > 0
        assert assert_tail_of_traceback(run, nodeid).endswith(": AssertionError")
    # Failed without any transform: a traceback, but nothing to show of a variant.
    m = run.matrix(NO_EXPORT)
    assert "evidence_s" not in m and m["transform_check"] is None  # (a record field is always written; a detail only when something happened)
    assert assert_tail_of_traceback(run, NO_EXPORT).endswith(": AssertionError")


@uses("base")
def test_the_base_variant_never_writes_evidence(cells):
    run = cells["base"]
    assert run.statuses == {
        RELU: statuses.PASSED, OWN_ASSERTION: statuses.FAILED, LISTED_XFAIL: statuses.FAILED,
        NO_EXPORT: statuses.FAILED, WIDE: statuses.FAILED,
    }, run.explain()  # fmt: skip
    assert kept(run) == []
    assert not any("evidence_s" in run.matrix(n) for n in run.tests)
    assert "what the variant's transform changed" not in run.output


@uses("crash")
def test_a_segfault_keeps_what_was_written_and_the_next_process_keeps_its_own(cells):
    run = cells["crash"]
    assert run.statuses == {FIRST_CRASH: statuses.CRASHED, SECOND_CRASH: statuses.CRASHED}, run.explain()
    assert run.matrix(FIRST_CRASH)["message"] == "the test process died (SIGSEGV) inside this test"
    assert run.report["matrix"]["restarts"] == 2  # each test ran in a process of its own
    assert kept(run) == sorted(key(n) for n in (FIRST_CRASH, SECOND_CRASH))
    for nodeid, op, other in ((FIRST_CRASH, "relu", "tanh"), (SECOND_CRASH, "tanh", "relu")):
        call = the_call(run, nodeid)
        # Written before the process died: the program and the payload; the transform never finished.
        assert (call["after"], call["check"], call["error"]) == (None, None, None), call
        assert f"torch.ops.aten.{op}.default(x)" in call["before"] and other not in call["before"], call["before"]
        assert program_text(torch.export.load(io.BytesIO(saved_payload(run, nodeid, call)))) == call["before"]


@uses("dynamo")
def test_a_dynamo_export_keeps_the_graph_modules_code_and_the_package(cells):
    run = cells["dynamo"]
    m = run.matrix(DYNAMO_FAILS)
    assert (m["status"], m["transform_check"]) == (statuses.FAILED, "passed"), run.explain()
    call = the_call(run, DYNAMO_FAILS)
    assert call["entry"] == DYNAMO_EXPORT and call["check"] == "passed" and call["error"] is None
    assert call["before"].startswith("class GraphModule(torch.nn.Module):\n    def forward(self, x):\n")
    assert 'cos: "f32[s77]" = torch.cos(l_x_);  l_x_ = None' in call["before"]
    assert call["after"] == (
        "class GraphModule(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        cos = torch.cos(x);  x = None\n"
        "        mul = cos * 3;  cos = None\n"
        "        return mul\n"
    ), call["after"]
    data = payload_file(run, DYNAMO_FAILS, "call-1-package.zip").read_bytes()
    assert call["payloads"] == [
        {
            "file": "call-1-package.zip",
            "what": "the torch.package archive holding the pickled GraphModule",
            "bytes": len(data),
            "kept": len(data),
            "cut": "",
        }
    ]
    # The package is the round trip's archive: it loads, and the module computes what the test's function does.
    from torch.package import PackageImporter

    graph = PackageImporter(io.BytesIO(data)).load_pickle("graph", "module.pkl")
    x = torch.tensor([0.0, 1.0])
    assert torch.equal(graph(x), torch.cos(x) * 3)


# --- bounds -------------------------------------------------------------------------------------


def _kept_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


@uses("hoarding")
def test_a_plugin_that_keeps_too_much_stays_within_each_tests_and_the_shards_budget(cells):
    """Six failing tests, each of whose export keeps 40 MiB of payloads: each call lists MAX_PAYLOADS
    and counts the rest, each test keeps at most TEST_BUDGET, the shard at most BUDGET, and what is
    left out says which budget (before: one shard kept 84 MB of a 64 MiB budget)."""
    run = cells["hoarding"]
    nodeids = [f"{HOARDING}::test_fails_after_export[{n}]" for n in range(6)]
    assert run.statuses == dict.fromkeys(nodeids, statuses.FAILED), run.explain()
    root = run.tmp / "out" / EVIDENCE_DIR
    assert kept(run) == sorted(key(n) for n in nodeids)
    assert _kept_bytes(root) <= BUDGET
    reasons = set()
    for nodeid in nodeids:
        assert _kept_bytes(root / key(nodeid)) <= TEST_BUDGET, nodeid
        payloads = the_call(run, nodeid)["payloads"]
        assert len(payloads) == MAX_PAYLOADS + 1, payloads
        assert payloads[-1] == {
            "file": "call-1-more", "what": f"{40 - MAX_PAYLOADS} more payloads (the last: random bytes)", "bytes": (40 - MAX_PAYLOADS) << 20,
            "kept": 0, "cut": f"not kept: a call lists at most {MAX_PAYLOADS} payloads",
        }  # fmt: skip
        for p in payloads[:-1]:
            on_disk = payload_file(run, nodeid, p["file"])
            assert (p["kept"], on_disk.exists()) in ((1 << 20, True), (0, False)), p
            reasons.add(p["cut"])
    assert reasons == {
        "", f"not kept: this test's evidence reached its {TEST_BUDGET:,}-byte budget", f"not kept: this target's evidence reached its {BUDGET:,}-byte budget"
    }  # fmt: skip
    assert the_call(run, nodeids[0])["payloads"][0]["kept"] == 1 << 20  # the first test kept up to its own budget
    assert the_call(run, nodeids[-1])["payloads"][0]["cut"].endswith(f"target's evidence reached its {BUDGET:,}-byte budget")


def test_a_tests_budget_counts_texts_and_payloads_as_they_are_written(tmp_path: Path):
    recorder = Recorder(str(tmp_path))
    program = _exported()
    recorder.start("t.py::test_keeps_too_much")
    recorder.begin(EXPORT, program)
    for n in range(MAX_PAYLOADS):
        recorder.payload(f"p{n}", b"z" * PAYLOAD_CAP, "a megabyte")
    recorder.finish(True)
    found = json.loads((tmp_path / key("t.py::test_keeps_too_much") / "evidence.json").read_text())
    kept_ones = [p for p in found["calls"][0]["payloads"] if p["kept"]]
    assert len(kept_ones) == TEST_BUDGET // PAYLOAD_CAP - 1  # the program's text took the rest of the last megabyte
    assert _kept_bytes(tmp_path) <= TEST_BUDGET
    # A test that passed gives its room back; the next failing test has a whole test budget again.
    recorder.start("t.py::test_passes")
    recorder.begin(EXPORT, program)
    recorder.payload("p", b"z" * PAYLOAD_CAP, "a megabyte")
    recorder.finish(False)
    recorder.start("t.py::test_fails_next")
    recorder.begin(EXPORT, program)
    recorder.payload("p", b"z" * PAYLOAD_CAP, "a megabyte")
    recorder.finish(True)
    assert json.loads((tmp_path / key("t.py::test_fails_next") / "evidence.json").read_text())["calls"][0]["payloads"][0]["kept"] == PAYLOAD_CAP


def test_past_the_shards_budget_program_texts_are_not_kept_either(tmp_path: Path):
    _earlier_process_kept(tmp_path, BUDGET - 100)
    recorder = Recorder(str(tmp_path))
    recorder.start("t.py::test_late")
    recorder.begin(EXPORT, _exported())
    recorder.finish(True)
    call = json.loads((tmp_path / key("t.py::test_late") / "evidence.json").read_text())["calls"][0]
    assert call["before"] == f"(not kept: this target's evidence reached its {BUDGET:,}-byte budget)"
    assert call["before_cut"] == len(program_text(_exported()))


@uses("serdes")
def test_an_archive_over_the_payload_cap_keeps_the_programs_json_without_the_weights(cells):
    run = cells["serdes"]
    call = the_call(run, WIDE)
    (payload,) = call["payloads"]
    data = payload_file(run, WIDE, SAVED["file"]).read_bytes()
    assert payload["bytes"] > 2 * 1024 * 1024 > PAYLOAD_CAP >= payload["kept"] == len(data)
    with zipfile.ZipFile(io.BytesIO(data)) as smaller:
        assert smaller.testzip() is None
        names = smaller.namelist()
        program = json.loads(smaller.read("archive/models/model.json"))
    assert "archive/data/weights/weight_0" not in names and "archive/data/weights/weight_1" in names  # the bias fits
    assert "graph_module" in program and "aten.linear.default" in json.dumps(program)
    assert payload["cut"] == (
        f"an archive of {payload['bytes']:,} bytes: kept {len(names)} of {len(names) + 1} members; "
        "left out archive/data/weights/weight_0 (2,097,152 bytes)"
    )


def _long_graph(additions: int) -> torch.fx.GraphModule:
    graph = torch.fx.Graph()
    value = graph.placeholder("x")
    for _ in range(additions):
        value = graph.call_function(torch.add, (value, 1))
    graph.output(value)
    return torch.fx.GraphModule(torch.nn.Module(), graph)


def test_a_text_over_the_cap_is_cut_in_the_middle_saying_how_much(tmp_path: Path):
    program = _long_graph(4000)
    full = program_text(program)
    assert len(full) > 2 * TEXT_CAP
    recorder = Recorder(str(tmp_path))
    recorder.start("t.py::test_long")
    recorder.begin(EXPORT, program)
    recorder.transformed(program)
    (call,) = json.loads((tmp_path / key("t.py::test_long") / "evidence.json").read_text())["calls"]
    cut = len(full) - TEXT_CAP
    assert call["before_cut"] == call["after_cut"] == cut
    assert call["before"] == call["after"] == f"{full[: TEXT_CAP // 2]}\n... {cut} characters cut ...\n{full[-TEXT_CAP // 2 :]}"
    assert call["before"].startswith("class GraphModule(torch.nn.Module):\n") and call["before"].endswith("        return add_3999\n")


def _exported() -> torch.export.ExportedProgram:
    return torch.export.export(torch.nn.Linear(2, 2), (torch.ones(1, 2),))


def test_calls_past_the_limit_are_counted_not_kept(tmp_path: Path):
    recorder = Recorder(str(tmp_path))
    recorder.start("t.py::test_many")
    program = _exported()
    for n in range(1, MAX_CALLS + 3):
        recorder.begin(EXPORT, program)
        recorder.payload("saved.pt2", f"payload {n}", "a payload")
        recorder.checked("passed", 0.001)
    found = json.loads((tmp_path / key("t.py::test_many") / "evidence.json").read_text())
    assert (len(found["calls"]), found["calls_not_kept"]) == (MAX_CALLS, 2)
    assert [c["payloads"][0]["file"] for c in found["calls"]] == [f"call-{n}-saved.pt2" for n in range(1, MAX_CALLS + 1)]
    assert all(c["check"] == "passed" for c in found["calls"])
    assert sorted(p.name for p in (tmp_path / key("t.py::test_many")).iterdir()) == sorted(
        ["evidence.json"] + [f"call-{n}-saved.pt2" for n in range(1, MAX_CALLS + 1)]
    )  # the calls not kept wrote nothing
    assert (tmp_path / key("t.py::test_many") / "call-3-saved.pt2").read_text() == "payload 3"


def _earlier_process_kept(root: Path, size: int) -> None:
    """What earlier processes of the shard kept: a file of `size` bytes (sparse: no disk needed)."""
    (root / "earlier").mkdir()
    with open(root / "earlier" / "call-1-saved.pt2", "wb") as f:
        f.truncate(size)


def test_past_the_budget_payloads_are_listed_as_not_kept(tmp_path: Path):
    _earlier_process_kept(tmp_path, BUDGET - 30_000)
    recorder = Recorder(str(tmp_path))
    program = _exported()

    def one_test(nodeid: str, keep: bool) -> dict[str, Any]:
        recorder.start(nodeid)
        recorder.begin(EXPORT, program)
        recorder.payload("saved.pt2", b"x" * 20_000, "a payload")
        found = json.loads((tmp_path / key(nodeid) / "evidence.json").read_text())
        recorder.finish(keep)
        return found["calls"][0]["payloads"][0]

    # Under the budget: kept. A test that passed (its evidence removed) does not count against it.
    assert one_test("t.py::test_passes", keep=False) == {
        "file": "call-1-saved.pt2",
        "what": "a payload",
        "bytes": 20_000,
        "kept": 20_000,
        "cut": "",
    }
    assert not (tmp_path / key("t.py::test_passes")).exists()
    assert one_test("t.py::test_fails", keep=True)["kept"] == 20_000  # leaves less room than another one takes
    assert one_test("t.py::test_fails_later", keep=True) == {
        "file": "call-1-saved.pt2", "what": "a payload", "bytes": 20_000, "kept": 0,
        "cut": f"not kept: this target's evidence reached its {BUDGET:,}-byte budget",
    }  # fmt: skip
    assert sorted(p.name for p in (tmp_path / key("t.py::test_fails_later")).iterdir()) == ["evidence.json"]


def test_a_test_that_runs_again_starts_from_nothing(tmp_path: Path):
    """An earlier process's evidence of the same test (more calls, other payloads) is not mixed in."""
    nodeid = "t.py::test_again"
    earlier = tmp_path / key(nodeid)
    earlier.mkdir()
    (earlier / "evidence.json").write_text(
        json.dumps({"format": 1, "nodeid": nodeid, "calls": [{"entry": "old"}] * 3, "calls_not_kept": 0})
    )
    (earlier / "call-3-saved.pt2").write_bytes(b"the earlier process's")
    recorder = Recorder(str(tmp_path))
    recorder.start(nodeid)
    assert not earlier.exists()
    recorder.begin(EXPORT, _exported())
    found = json.loads((earlier / "evidence.json").read_text())
    assert [c["entry"] for c in found["calls"]] == [EXPORT]
    assert sorted(p.name for p in earlier.iterdir()) == ["evidence.json"]


def test_outside_a_matrix_cell_nothing_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    recorder = Recorder(None)
    recorder.start("t.py::test_x")
    recorder.begin(EXPORT, _exported())
    recorder.payload("saved.pt2", b"data", "a payload")
    recorder.transformed(_exported())
    recorder.checked("passed", 0.1)
    recorder.finish(True)
    assert not recorder.recorded and list(tmp_path.iterdir()) == []


class _ManyWeights(torch.nn.Module):
    """800 weights of 1.5 KB: each smaller than the program's JSON, together over PAYLOAD_CAP."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(torch.full((384,), float(i))) for i in range(800)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1


def test_an_archive_of_many_small_weights_keeps_the_programs_json_first():
    buffer = io.BytesIO()
    torch.export.save(torch.export.export(_ManyWeights(), (torch.ones(2),)), buffer)
    data = buffer.getvalue()
    kept, cut = evidence.bound_payload(data)
    with zipfile.ZipFile(io.BytesIO(data)) as whole, zipfile.ZipFile(io.BytesIO(kept)) as smaller:
        assert len(data) > PAYLOAD_CAP >= len(kept) and smaller.testzip() is None
        json_members = [name for name in whole.namelist() if name.endswith(".json")]
        assert "archive/models/model.json" in json_members
        assert {name: smaller.read(name) for name in json_members} == {name: whole.read(name) for name in json_members}
        left = set(whole.namelist()) - set(smaller.namelist())
        assert len(left) > 3 and all(name.startswith("archive/data/") for name in left), left  # tensors only
    assert re.fullmatch(
        rf"an archive of {len(data):,} bytes: kept {len(smaller.namelist())} of {len(whole.namelist())} members; "
        rf"left out (archive/data/\S+ \([\d,]+ bytes\), ){{2}}archive/data/\S+ \([\d,]+ bytes\) and {len(left) - 3} more",
        cut,
    ), cut


def test_an_archive_of_thousands_of_members_stays_a_valid_archive():
    """Each member costs its headers too (more than 100 bytes): thousands of small ones must still fit."""
    buffer = io.BytesIO()
    torch.save({f"w{i}": torch.full((64,), float(i)) for i in range(5000)}, buffer)
    data = buffer.getvalue()
    kept, cut = evidence.bound_payload(data)
    assert len(data) > PAYLOAD_CAP >= len(kept)
    with zipfile.ZipFile(io.BytesIO(data)) as whole, zipfile.ZipFile(io.BytesIO(kept)) as smaller:
        assert smaller.testzip() is None
        assert 1000 < len(smaller.namelist()) < 5000
        assert cut.startswith(
            f"an archive of {len(data):,} bytes: kept {len(smaller.namelist())} of {len(whole.namelist())} members; left out "
        )


class _FailsToLoad(Serdes):
    """Serializes (the payload is kept), then cannot load the archive back."""

    def after(self, call: Call, result: Any) -> Any:
        buffer = io.BytesIO()
        torch.export.save(result, buffer)
        self.keep_payload("saved.pt2", buffer.getvalue(), "the archive written by torch.export.save")
        raise ValueError("cannot read the archive back")


def test_a_transform_that_raises_keeps_its_error_and_what_it_serialized(tmp_path: Path):
    recorder = Recorder(str(tmp_path))
    export = _FailsToLoad("fails_to_load", TransformHost(evidence=recorder)).wrap(EXPORT, torch.export.export)
    recorder.start("t.py::test_raises")
    with pytest.raises(VariantTransformError) as raised:
        export(torch.nn.Linear(2, 2), (torch.ones(1, 2),))
    found = json.loads((tmp_path / key("t.py::test_raises") / "evidence.json").read_text())
    (call,) = found["calls"]
    assert str(raised.value) == (
        "variant 'fails_to_load' failed to transform the result of torch.export.export: ValueError: cannot read the archive back"
    )
    assert (call["error"], call["after"], call["check"]) == (str(raised.value), None, None)
    assert "torch.ops.aten.linear.default(input_1, p_weight, p_bias)" in call["before"]
    data = (tmp_path / key("t.py::test_raises") / "call-1-saved.pt2").read_bytes()
    assert call["payloads"] == [{**SAVED, "bytes": len(data), "kept": len(data)}]
