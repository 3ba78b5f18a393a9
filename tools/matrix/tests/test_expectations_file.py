"""Expectations at scale: a suite's expectations file (suites.<s>.expectations_file) instead of
matrix.yaml, split per cell and test file at build time, so that a target reads only its own entries
and editing one entry reruns only the targets it names; `xfail sync` writes the file, one entry per
parametrized test (an operator) whose every sample fails; `manual` test files stay out of
`bazel test //...`. What the generated BUILD files make is evaluated through the real defs.bzl
(test_generate's harness); the split is the real expectations_split.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tools.matrix import config, expectations_split, generate, statuses, xfail_sync
from tools.matrix.records import Record
from tools.matrix.tests.fixtures.toolws import write_workspace
from tools.matrix.tests.test_generate import cells_of, evaluate, made_by_defs_bzl, spec_of

MATRIX = """devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: plain
  other:
    impl: tools.matrix.variants.base:Base
    description: another
suites:
  ops:
    variants: [base, other]
    devices: [cpu, cuda]
    granularity: file
    expectations_file: expectations.yaml
    manual: ["test_ops_b*.py"]
  plain:
    variants: [base]
    devices: [cpu]
"""
EXPECTATIONS = """# the suite's expectations
base:
  xfail:
    test_ops_a.py::test_add: 'RuntimeError: add is broken'
    test_ops_b.py::test_mul[float32-0-ab12cd]: 'AssertionError: mul differs'
  devices:
    cuda:
      skip:
        test_ops_b.py::test_div: no division on this device
other:
  xfail:
    test_ops_b.py::test_mul: 'ValueError: other breaks mul'
"""
FILES = ("ops/test_ops_a.py", "ops/test_ops_b.py", "ops/test_ops_slice.py", "plain/test_p.py")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write_workspace(tmp_path, MATRIX, FILES, "def test_x():\n    pass\n")
    (tmp_path / "ops" / "expectations.yaml").write_text(EXPECTATIONS)
    return tmp_path


def load(ws: Path) -> config.Matrix:
    return config.load(ws / "matrix.yaml", ws)


def split_outputs(ws: Path, cell: dict) -> dict[str, dict]:
    """Run the real split for one matrix_cell as its rule would: output (package-relative) -> JSON."""
    made: list = []
    from tools.matrix.tests.test_generate import _defs_bzl

    _defs_bzl(made, ["ops"])["matrix_cell"](**cell)
    (rule,) = [kw for kind, kw in made if kind == "rule:_expectations_split_impl"]
    outs = {}
    for test_file, out in zip(rule["test_files"], rule["outs"]):
        path = ws / "out" / out
        path.parent.mkdir(parents=True, exist_ok=True)
        argv = ["--source", str(ws / "ops" / rule["src"]), "--display", rule["display"], "--variant", rule["variant"], "--device", rule["device"]]
        assert expectations_split.main([*argv, "--out", test_file, str(path)]) == 0
        outs[out] = json.loads(path.read_text())
    return outs


def test_the_entries_come_from_the_file_and_reach_only_their_targets(ws):
    matrix = load(ws)
    cell = next(c for c in matrix.cells() if (c.suite.name, c.variant.name, c.device.name) == ("ops", "base", "cuda"))
    assert dict(cell.expectations.xfail) == {"test_ops_a.py::test_add": "RuntimeError: add is broken", "test_ops_b.py::test_mul[float32-0-ab12cd]": "AssertionError: mul differs"}
    assert dict(cell.expectations.skip) == {"test_ops_b.py::test_div": "no division on this device"}
    rendered = generate.render(matrix)
    made = made_by_defs_bzl(rendered)
    for target in matrix.targets():
        if target.cell.suite.name != "ops":
            continue
        kind, py_test = made[target.label]
        spec = spec_of(py_test)
        assert spec == target.spec() and spec.xfail == {} and spec.skip == {}  # not in the environment
        (own,) = target.test_files
        part = f"{target.cell.target_name}.expectations/{own}.json"
        assert spec.expectations == (f"ops/{part}",)
        assert [d for d in py_test["data"] if d.endswith(".json")] == [part]  # its own file's entries, nothing else
    outs = split_outputs(ws, cells_of(rendered["ops/BUILD.bazel"])["ops_base_cuda"])
    by_file = {out.split("/", 1)[1].removesuffix(".json"): data for out, data in outs.items()}
    for target in cell.targets:  # the split holds exactly what config says the target expects
        (own,) = target.test_files
        assert by_file[own] == {"source": "ops/expectations.yaml", "xfail": dict(target.expectations.xfail), "skip": dict(target.expectations.skip)}


def test_editing_one_entry_changes_only_its_files_split_output(ws):
    cell = cells_of(generate.render(load(ws))["ops/BUILD.bazel"])["ops_base_cpu"]
    before = split_outputs(ws, cell)
    path = ws / "ops" / "expectations.yaml"
    path.write_text(path.read_text().replace("mul differs", "mul differs by 1"))
    after = split_outputs(ws, cell)
    assert [out for out in before if before[out] != after[out]] == ["ops_base_cpu.expectations/test_ops_b.py.json"]


def test_manual_files_stay_out_of_everything_bazel_test_reaches(ws):
    matrix = load(ws)
    rendered = generate.render(matrix)
    made = made_by_defs_bzl(rendered)
    manual = {label for label, (kind, kw) in made.items() if "manual" in kw.get("tags", [])}
    assert manual == {
        *(f"//ops:ops_{v}_{d}/test_ops_b" for v in ("base", "other") for d in ("cpu", "cuda")),
        *(f"//ops:ops_{v}_{d}" for v in ("base", "other") for d in ("cpu", "cuda")),  # each cell's test_suite: named, it runs all
    }
    root = {kw["name"]: kw for kind, kw in evaluate(rendered["BUILD.bazel"]) if kind == "test_suite"}
    assert root["all_cells"]["tags"] == ["manual"] and "//ops:ops_base_cpu" in root["all_cells"]["tests"]
    assert root["variant_base"]["tests"] == ["//ops:ops_base_cpu/test_ops_a", "//ops:ops_base_cpu/test_ops_slice", "//ops:ops_base_cuda/test_ops_a",
                                             "//ops:ops_base_cuda/test_ops_slice", "//plain:plain_base_cpu"]  # fmt: skip
    assert "tags" not in root["variant_base"]
    # Every test_suite `bazel test //...` reaches lists no manual target (Bazel would run it).
    for name, suite in root.items():
        if "manual" not in suite.get("tags", []):
            assert not manual & set(suite["tests"]), name


def test_a_group_of_only_manual_cells_is_manual(ws):
    (ws / "matrix.yaml").write_text(MATRIX.replace("    variants: [base]\n    devices: [cpu]\n", "    variants: [base]\n    devices: [cpu]\n    tags: [manual]\n"))
    root = {kw["name"]: kw for kind, kw in evaluate(generate.render(load(ws))["BUILD.bazel"]) if kind == "test_suite"}
    assert root["suite_plain"] == {"name": "suite_plain", "tests": ["//plain:plain_base_cpu"], "tags": ["manual"]}
    assert "//plain:plain_base_cpu" not in root["variant_base"]["tests"] and "//plain:plain_base_cpu" not in root["device_cpu"]["tests"]


def rec(test: str, variant: str, status: str, message: str = "", expectation: str | None = None, device: str = "cpu") -> Record:
    return Record("ops", test, variant, device, status, message=message, expectation=expectation, target=f"//ops:ops_{variant}_{device}")


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(suite=kw.get("suite", []), variant=kw.get("variant", []), device=kw.get("device", []), tests=[])


def test_xfail_sync_writes_the_file_one_entry_per_operator_whose_every_sample_fails(ws):
    matrix = load(ws)
    add = [f"test_ops_a.py::test_sub[float32-{i}-0000aa]" for i in range(3)]
    some = [f"test_ops_a.py::test_neg[float32-{i}-0000bb]" for i in range(3)]
    records = [rec(t, "other", statuses.FAILED, f"RuntimeError: sub of shape [{i}] fails") for i, t in enumerate(add)]
    records += [rec(some[0], "other", statuses.FAILED, "RuntimeError: neg fails"), rec(some[1], "other", statuses.PASSED), rec(some[2], "other", statuses.SKIPPED)]
    records += [rec(t.replace("ops_a", "ops_b"), "other", statuses.FAILED, "KeyError: one way" if i else "TypeError: another") for i, t in enumerate(add)]
    edits = xfail_sync.sync(ws / "matrix.yaml", records, args(device=["cpu"]), matrix, workspace=ws)
    assert [e.display for e in edits] == ["ops/expectations.yaml"]  # matrix.yaml is left as it is
    new = edits[0].new
    assert new.startswith(EXPECTATIONS)  # comments and order kept
    added = new[len(EXPECTATIONS) :]
    assert added == (
        "    test_ops_a.py::test_neg[float32-0-0000bb]: 'RuntimeError: neg fails'\n"
        "    test_ops_a.py::test_sub: 'RuntimeError: sub of shape [0] fails'\n"
        "    test_ops_b.py::test_sub: 'KeyError: one way (1 of its 3 samples fail otherwise)'\n"
    )
    config.parse((ws / "matrix.yaml").read_text(), "matrix.yaml", ws, overrides={"ops/expectations.yaml": new})  # valid


def test_xfail_sync_keeps_the_still_failing_samples_of_a_stale_operator_entry(ws):
    entry = "test_ops_b.py::test_mul"
    records = [
        rec(f"{entry}[float32-0-ab12cd]", "other", statuses.XPASSED, "XPASS(strict)", entry),
        rec(f"{entry}[float32-1-ab12ce]", "other", statuses.XFAILED, "ValueError: mul of 1", entry),
    ]
    (edit,) = xfail_sync.sync(ws / "matrix.yaml", records, args(), load(ws), workspace=ws)
    assert edit.new.endswith("other:\n  xfail:\n    test_ops_b.py::test_mul[float32-1-ab12ce]: 'ValueError: mul of 1'\n")
    assert "test_ops_b.py::test_mul:" not in edit.new


def test_cli_xfail_sync_writes_the_file_and_regenerates(ws):
    from tools.matrix.report import COMPAT_JSON
    from tools.matrix.tests.fixtures.toolws import run_cli, write_compat

    (ws / "matrix.yaml").write_text(MATRIX)
    generate.write(load(ws), ws)
    matrix_before = (ws / "matrix.yaml").read_text()
    write_compat(ws / "reports" / COMPAT_JSON, [rec("test_ops_slice.py::test_x", "base", statuses.FAILED, "AssertionError: boom")])
    out = run_cli(ws, "xfail", "sync")
    assert out.returncode == 0, out.stderr
    assert "+++ b/ops/expectations.yaml" in out.stdout and "matrix.yaml" not in out.stdout.replace("suites.ops.expectations_file", "")
    assert "    test_ops_slice.py::test_x: 'AssertionError: boom'\n" in (ws / "ops" / "expectations.yaml").read_text()
    assert (ws / "matrix.yaml").read_text() == matrix_before
