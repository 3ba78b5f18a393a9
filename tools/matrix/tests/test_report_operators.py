"""The per-operator table (report/operators.py) and its sections of compat.md and compat.html."""

from __future__ import annotations

import json
import re

from tools.matrix.records import Record, RunInfo
from tools.matrix.report.html_report import render_html
from tools.matrix.report.markdown import render_markdown
from tools.matrix.report.operators import operator_of, operator_table

RUN = RunInfo(run_id="r1", created="2026-12-07T00:00:00Z")


def sample(op: str, index: int, variant: str, status: str, message: str = "", suite: str = "ops", file: str = "test_slice.py") -> Record:
    return Record(suite=suite, test=f"{file}::test_{op}[float32-{index}-{index:06x}]", variant=variant, device="cpu", status=status, target=f"//{suite}:{suite}_{variant}_cpu",
                  message=message, error_type="AssertionError" if message else None)  # fmt: skip


def records() -> list[Record]:
    out = []
    for variant in ("base", "swap"):
        for i in range(4):
            out.append(sample("abs", i, variant, "passed"))
            out.append(sample("nn_functional_relu", i, variant, "failed" if variant == "swap" and i else "passed",
                              f"the exported program does not compute what eager relu does: max abs difference {i}.5" if variant == "swap" and i else ""))  # fmt: skip
            out.append(sample("narrow", i, variant, "xfailed" if i % 2 else "passed", "PendingUnbackedSymbolNotFound: u0" if i % 2 else ""))
    out.append(Record(suite="ops", test="test_other.py::test_plain", variant="base", device="cpu", status="failed", message="x", target="//ops:ops_base_cpu"))
    out.append(Record(suite="ops", test="test_other.py::test_p[1-2]", variant="base", device="cpu", status="passed", target="//ops:ops_base_cpu"))
    return out


def test_only_opinfo_ids_make_rows():
    assert operator_of(sample("linalg_vector_norm", 3, "base", "passed")) == "linalg_vector_norm"
    assert operator_of(Record("s", "t.py::test_p[1-2]", "base", "cpu", "passed")) is None
    assert operator_of(Record("s", "t.py::test_add[float32-1-zzzzzz]", "base", "cpu", "passed")) is None


def test_the_table_counts_samples_and_names_exactly_the_broken_operator():
    table = operator_table(records())
    assert table.columns == [("base", "cpu"), ("swap", "cpu")]
    assert [(r.suite, r.operator) for r in table.rows] == [("ops", "abs"), ("ops", "narrow"), ("ops", "nn_functional_relu")]
    assert table.broken() == {("swap", "cpu"): ["nn_functional_relu"]}
    relu = table.rows[2].cells[("swap", "cpu")]
    assert (relu.passed, relu.total, relu.state) == (1, 4, "broken")
    assert relu.signature == "AssertionError: the exported program does not compute what eager relu does: max abs difference #.#"
    assert [r.test for r in relu.failing] == [f"test_slice.py::test_nn_functional_relu[float32-{i}-{i:06x}]" for i in (1, 2, 3)]
    narrow = table.rows[1].cells[("base", "cpu")]
    assert (narrow.passed, narrow.total, narrow.state) == (2, 4, "known")
    assert table.rows[0].cells[("swap", "cpu")].state == "ok"


def test_compat_md_has_the_operator_table_and_the_failing_samples():
    md = render_markdown(records(), RUN)
    section = md.split("## Operators (3)", 1)[1].split("\n## ", 1)[0]
    assert "- broken under swap/cpu (1): `nn_functional_relu`" in section
    assert "2 of 3 operators have a failing sample somewhere; 1 pass or skip every sample everywhere" in section
    assert "| ops | `nn_functional_relu` | 4/4 | **[✗ 1/4](#op-ops-nn_functional_relu-swap-cpu)** |" in section
    assert "| ops | `narrow` | [x 2/4](#op-ops-narrow-base-cpu) | [x 2/4](#op-ops-narrow-swap-cpu) |" in section
    assert "`abs`" not in section.split("### Failing samples")[0].split("| --- |", 1)[1]
    details = section.split("### Failing samples", 1)[1]
    assert ('- <a id="op-ops-nn_functional_relu-swap-cpu"></a>`nn_functional_relu` under swap/cpu: 3 of 4 samples fail: '
            "`AssertionError: the exported program does not compute what eager relu does: max abs difference #.#` "
            "(`test_nn_functional_relu[float32-1-000001]`, `test_nn_functional_relu[float32-2-000002]`, "
            "`test_nn_functional_relu[float32-3-000003]`)") in details  # fmt: skip


def test_compat_html_carries_the_table_and_each_failing_cell_points_at_its_first_failing_sample():
    page = render_html(records(), RUN)
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)[1])
    ops = data["ops"]
    assert [row[1] for row in ops["rows"]] == ["abs", "narrow", "nn_functional_relu"]
    relu_swap = ops["rows"][2][2][ops["cols"].index(1)]
    passed, total, state, sig, first = relu_swap
    assert (passed, total, ops["states"][state]) == (1, 4, "broken")
    assert data["str"][sig].startswith("AssertionError: the exported program does not compute")
    row = max(r for r, start in enumerate(data["rows"]["start"]) if start <= first)
    assert data["rows"]["test"][row] == "test_slice.py::test_nn_functional_relu[float32-1-000001]"
    assert ops["rows"][0][2][0][4] == -1  # abs: nothing to click


def test_a_report_without_opinfo_tests_has_no_operator_table():
    plain = [r for r in records() if operator_of(r) is None]
    assert "## Operators" not in render_markdown(plain, RUN)
    page = render_html(plain, RUN)
    assert '"ops":null' in page
