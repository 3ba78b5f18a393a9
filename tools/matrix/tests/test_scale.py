"""A matrix target at operator-by-sample scale (thousands of tests, thousands of expectations):
nothing the runtime hands its test process may grow with the number of tests or entries, because
Linux caps one environment string at 128 KiB (MAX_ARG_STRLEN) and a child that cannot start loses
every result. The cells run through cell_main in child processes, as Bazel runs them
(fixtures/cellrun.py), on fixtures/scale."""

from __future__ import annotations

from tools.matrix import statuses
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses

MAX_ARG_STRLEN = 128 * 1024
THOUSANDS = "test_thousands.py"
IDS = [f"an_operator_with_a_rather_long_name_{i // 20:03d}-float32-{i:04d}" for i in range(2400)]  # as the fixture's
NODE_IDS = [f"{THOUSANDS}::test_sample[{i}]" for i in IDS]
CRASHED = NODE_IDS[-2]

CELLS = {
    # The segfault near the end: the child that resumes after it must be told which ~2,400 tests are done.
    "crash_late": Cell("scale", (THOUSANDS,), target="//syn/scale:thousands_cpu"),
}

cells = pool_fixture(CELLS, "scale")


def test_the_fixture_is_over_the_limit():
    assert sum(len(n) + 3 for n in NODE_IDS) > MAX_ARG_STRLEN  # as a JSON list of ids


@uses("crash_late")
def test_a_crash_after_thousands_of_tests_loses_nothing(cells):
    run = cells["crash_late"]
    expected = {n: statuses.PASSED for n in NODE_IDS} | {CRASHED: statuses.CRASHED}
    assert run.statuses == expected, run.explain()
    assert run.matrix(CRASHED)["message"] == "the test process died (SIGSEGV) inside this test"
    assert run.problems == [] and run.returncode == 1  # the crash alone fails the target
    assert run.report["matrix"]["restarts"] == 1
