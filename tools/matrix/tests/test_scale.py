"""A matrix target at operator-by-sample scale (thousands of tests, thousands of expectations):
nothing the runtime hands its test process may grow with the number of tests or entries, because
Linux caps one environment string at 128 KiB (MAX_ARG_STRLEN) and a child that cannot start loses
every result. Entries that would not fit a target's spec come from its suite's expectations file,
split per test file at build time (expectations_split.py). The cells run through cell_main in child
processes, as Bazel runs them (fixtures/cellrun.py), on fixtures/scale."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tools.matrix import expectations_split, statuses
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses

MAX_ARG_STRLEN = 128 * 1024
FILE = "test_thousands.py"
OPERATORS = [f"an_operator_with_a_rather_long_name_{op:03d}" for op in range(120)]  # as the fixture's


def ids(op: int) -> list[str]:
    return [f"{FILE}::test_{OPERATORS[op]}[float32-{i:04d}-5f3a9c]" for i in range(20)]


NODE_IDS = [n for op in range(120) for n in ids(op)]
CRASHED = ids(119)[18]

# The suite's expectations file: every failing sample of operators 0..98 one by one (1,980 entries),
# operator 99 by one entry for the operator; operator 100 (which passes) by one too: stale, so its 20
# samples are xpassed; and a sample of operator 119 that does not exist: an entry matching nothing.
EXPECTATIONS = {
    "base": {
        "xfail": {
            **{n: f"AssertionError: {OPERATORS[op]} computes something else" for op in range(99) for n in ids(op)},
            f"{FILE}::test_{OPERATORS[99]}": "AssertionError: computes something else on every sample",
            f"{FILE}::test_{OPERATORS[100]}": "was broken in torch 2.12",
            f"{FILE}::test_{OPERATORS[119]}[float32-0099-5f3a9c]": "a sample that is no more",
        }
    }
}
SPLIT = Path(tempfile.mkdtemp(prefix="matrix-scale-"))  # what the build-time split writes for the target


def _split() -> str:
    source = SPLIT / "expectations.yaml"
    source.write_text(json.dumps(EXPECTATIONS))  # JSON is YAML
    out = SPLIT / f"{FILE}.json"
    assert expectations_split.main(["--source", str(source), "--display", "scale/expectations.yaml", "--variant", "base", "--device", "cpu", "--out", FILE, str(out)]) == 0
    return str(out)


CELLS = {
    # The segfault near the end: the child that resumes after it must be told which ~2,400 tests are done.
    "crash_late": Cell("scale", (FILE,), target="//syn/scale:thousands_cpu"),
    "from_file": Cell("scale", (FILE,), target="//syn/scale:thousands_cpu", expectations=(_split(),)),
}

cells = pool_fixture(CELLS, "scale")


def test_the_fixture_is_over_the_limit():
    assert sum(len(n) + 3 for n in NODE_IDS) > MAX_ARG_STRLEN  # as a JSON list of ids
    assert len(json.dumps(EXPECTATIONS)) > MAX_ARG_STRLEN


@uses("crash_late")
def test_a_crash_after_thousands_of_tests_loses_nothing(cells):
    run = cells["crash_late"]
    failing = {n: statuses.FAILED for op in range(100) for n in ids(op)}
    expected = {n: statuses.PASSED for n in NODE_IDS} | failing | {CRASHED: statuses.CRASHED}
    assert run.statuses == expected, run.explain()
    assert run.matrix(CRASHED)["message"] == "the test process died (SIGSEGV) inside this test"
    assert run.problems == [] and run.returncode == 1
    assert run.report["matrix"]["restarts"] == 1


@uses("from_file")
def test_thousands_of_entries_from_an_expectations_file_are_strict(cells):
    run = cells["from_file"]
    expected = {n: statuses.XFAILED for op in range(100) for n in ids(op)}
    expected |= {n: statuses.XPASSED for n in ids(100)} | {n: statuses.PASSED for op in range(101, 120) for n in ids(op)}
    expected[CRASHED] = statuses.CRASHED
    assert run.statuses == expected, run.explain()
    assert run.matrix(ids(5)[3])["expectation"] == ids(5)[3]
    assert run.matrix(ids(99)[7])["expectation"] == f"{FILE}::test_{OPERATORS[99]}"  # one entry for the operator
    stale = run.matrix(ids(100)[0])["message"]
    assert stale.startswith(f"XPASS(strict): {ids(100)[0]} passed under variant 'base' on 'cpu', but scale/expectations.yaml expects it to fail")
    assert f"Remove the xfail entry '{FILE}::test_{OPERATORS[100]}' from base in scale/expectations.yaml" in stale
    assert run.problems == [
        f"scale/expectations.yaml xfail entry '{FILE}::test_{OPERATORS[119]}[float32-0099-5f3a9c]' matches no test of syn; remove or fix it (base)"
    ]
    assert run.returncode == 1
