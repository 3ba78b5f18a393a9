"""Statuses equal to plain pytest/unittest (issue #13): verdict.py's rules as a table, then real
unittest code (fixtures/unittest_style) run through real cells and through plain pytest in a
subprocess (fixtures/pytest_outcomes.py records what pytest's own summary says), compared test by
test: subtests (unittest subTest and the `subtests` fixture), expected failures, skips and errors in
every phase, PyTorch-style files under `base` and a transforming variant, a crash inside a subtest,
matrix.yaml xfail entries over subtests, and how a unittest test learns its variant.

Two documented differences from pytest, both stricter: a failed unittest subTest fails its test
(pytest 9.2 prints SUBFAILED but reports the test PASSED), and an expected failure that passes is
`xpassed` (pytest: a unittest unexpected success or a strict xpass is `failed`, a non-strict xpass
a success).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.matrix import statuses
from tools.matrix.runtime import current_variant, verdict
from tools.matrix.runtime.verdict import Expectation, Facts, Phase, Subtest, Verdict
from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses

SUITE = "unittest_style"
SEMANTICS, SETUP_MODULE, TORCH, CRASH, ENV, MODULE_TEARDOWN = (
    "test_semantics.py", "test_setup_module.py", "test_torch_style.py", "test_subtest_crash.py", "test_variant_env.py", "test_module_teardown.py"
)  # fmt: skip
RETRACE = "tools.matrix.variants.export:Retrace"
EXPORT = "torch.export.export"
ENV_CHECK = f"{ENV}::TestVariantEnv::test_variant_and_device"

# The statuses of the semantics suite, written out (plain pytest must imply the same, see below).
S = f"{SEMANTICS}::"
SEMANTICS_STATUSES = {
    S + "TestSubtests::test_subtest_fails": statuses.FAILED,
    S + "TestSubtests::test_subtest_all_pass": statuses.PASSED,
    S + "TestSubtests::test_subtest_errors": statuses.FAILED,
    S + "TestSubtests::test_subtest_fails_then_body_fails": statuses.FAILED,
    S + "TestSubtests::test_subtest_skipped": statuses.PASSED,
    S + "test_subtests_fixture_fails": statuses.FAILED,
    S + "test_subtests_fixture_passes": statuses.PASSED,
    S + "TestExpectedFailure::test_fails_as_expected": statuses.XFAILED,
    S + "TestExpectedFailure::test_passes_unexpectedly": statuses.XPASSED,
    S + "TestSkips::test_skiptest_in_body": statuses.SKIPPED,
    S + "TestSkips::test_skip_decorator": statuses.SKIPPED,
    S + "TestSkipInSetUp::test_a": statuses.SKIPPED,
    S + "TestSkipInSetUpClass::test_a": statuses.SKIPPED,
    S + "TestSkipIfClass::test_a": statuses.SKIPPED,
    S + "TestSetUpError::test_a": statuses.FAILED,  # unittest's setUp runs in pytest's call
    S + "TestSetUpClassError::test_a": statuses.ERROR,
    S + "TestSetUpClassError::test_b": statuses.ERROR,
    S + "TestTearDownClassError::test_a": statuses.ERROR,
    S + "TestSkipThenTearDownClassError::test_a": statuses.ERROR,
    S + "TestTearDownError::test_passes_then_teardown_fails": statuses.FAILED,  # unittest's tearDown runs in pytest's call
    S + "test_passes_then_fixture_teardown_fails": statuses.ERROR,
    S + "test_fails_in_call_and_teardown": statuses.FAILED,
    S + "test_pytest_xfail_marker_fails": statuses.XFAILED,
    S + "test_pytest_xfail_marker_passes": statuses.XPASSED,
    S + "test_pytest_xfail_strict_passes": statuses.XPASSED,
    S + "test_pytest_xfail_call": statuses.XFAILED,
    f"{SETUP_MODULE}::TestModuleBroken::test_a": statuses.ERROR,
    f"{MODULE_TEARDOWN}::test_uses_the_fixture": statuses.PASSED,
    f"{MODULE_TEARDOWN}::test_skipped_last": statuses.ERROR,  # skipped in setup, then its teardown failed
}
T = f"{TORCH}::"
TORCH_STATUSES = {
    T + "TestExportStyle::test_export_matches_eager": statuses.PASSED,
    T + "TestExportStyle::test_tagged_only": statuses.PASSED,
    T + "TestExportStyle::test_subtests_over_shapes": statuses.FAILED,
    T + "TestExportStyle::test_expected_failure": statuses.XFAILED,
    T + "TestExportStyle::test_parametrized_n_1": statuses.PASSED,
    T + "TestExportStyle::test_parametrized_n_2": statuses.PASSED,
    T + "TestExportStyle::test_skip_in_body": statuses.SKIPPED,
    T + "TestClassSkipped::test_a": statuses.SKIPPED,
    T + "TestTorchSetUpClassError::test_a": statuses.ERROR,
    T + "TestPlainSetUpClassError::test_a": statuses.ERROR,
    T + "TestPlainFails::test_assertion": statuses.FAILED,
}
# matrix.yaml xfail entries over subtests and unittest expected failures.
ENTRIES = {
    S + "TestSubtests::test_subtest_fails": "subtests 1 and 2 fail",
    S + "TestSubtests::test_subtest_all_pass": "was broken once",
    S + "test_subtests_fixture_fails": "case 1 fails",
    S + "TestExpectedFailure": "the whole class",
}

CELLS: dict[str, Cell] = {
    "torch_retrace": Cell(SUITE, (TORCH, ENV), variant="retrace", impl=RETRACE, applies_to=(EXPORT,),
                          env={"EXPECTED_VARIANT": "retrace", "EXPECTED_DEVICE": "cpu"}),
    "torch_base": Cell(SUITE, (TORCH, ENV), env={"EXPECTED_VARIANT": "base", "EXPECTED_DEVICE": "cpu"}),
    "semantics": Cell(SUITE, (SEMANTICS, SETUP_MODULE, MODULE_TEARDOWN)),
    "entries": Cell(SUITE, (SEMANTICS,), xfail=ENTRIES),
    "crash": Cell(SUITE, (CRASH,)),
}  # fmt: skip


def _plain_pytest(root: Path, out: Path) -> dict[str, list[dict[str, object]]]:
    """Plain pytest (no matrix plugin) over the same copied files: every report's category."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "TESTBRIDGE_", "XML_OUTPUT_FILE", "MATRIX_", "PYTEST_"))}
    env.update(PYTEST_OUTCOMES_FILE=str(out), PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    files = [f"{SUITE}/{f}" for f in (SEMANTICS, SETUP_MODULE, MODULE_TEARDOWN, TORCH)]
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pytest_outcomes", f"--rootdir={SUITE}", "-q", *files]
    proc = subprocess.run(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.exists(), proc.stdout[-4000:]
    return json.loads(out.read_text())


cells = pool_fixture(CELLS, "statuses")


@pytest.fixture(scope="module")
def plain(cells):
    with concurrent.futures.ThreadPoolExecutor(1) as executor:  # beside the cells already running
        yield executor.submit(_plain_pytest, cells.root, cells.tmp / "plain.json").result()


def pytest_status(events: list[dict[str, object]]) -> str:
    """The matrix status that plain pytest's summary implies for one test (issue #13's mapping):
    setup error/skip first; any SUBFAILED fails the test; the call's category; then a teardown
    ERROR after a pass, skip or xfail is an error. pytest's `failed` for an unexpected success or a
    strict xpass is our `xpassed` (deliberately stricter: the expectation is stale)."""
    phases = {e["when"]: e for e in events if not e["subtest"]}
    if phases["setup"]["category"] == "error":
        return statuses.ERROR
    if phases["setup"]["category"] == "skipped":
        return statuses.ERROR if phases["teardown"]["category"] == "error" else statuses.SKIPPED
    call = phases["call"]
    if any(e["subtest"] and e["category"] == "failed" for e in events):
        status = statuses.FAILED
    elif call["category"] == "failed" and str(call["message"]).startswith(("Failed: Unexpected success", "[XPASS(strict)]")):
        status = statuses.XPASSED
    else:
        status = {"passed": statuses.PASSED, "failed": statuses.FAILED, "skipped": statuses.SKIPPED,
                  "xfailed": statuses.XFAILED, "xpassed": statuses.XPASSED}[call["category"]]  # fmt: skip
    if phases["teardown"]["category"] == "error" and status in (statuses.PASSED, statuses.SKIPPED, statuses.XFAILED):
        return statuses.ERROR
    return status


# --- verdict.py, in-process: the rules as a table ------------------------------------------------

OK = Phase("passed")
FAIL = Phase("failed", "AssertionError: 1 != 2", "AssertionError")
TEARDOWN_FAIL = Phase("failed", "RuntimeError: teardown broke", "RuntimeError")
SUB_PASS = Subtest("[i=0]", "passed")
SUB_FAIL = Subtest("[i=1]", "failed", "AssertionError: 1 != 0", "AssertionError")
SUB_ERROR = Subtest("[key='k']", "failed", "KeyError: 'k'", "KeyError", transform_failed=True)
ENTRY = Expectation("t.py::test", "known bug", "XPASS(strict): remove the entry")

VERDICTS = {
    "pass": (Facts(OK, OK, OK), Verdict(statuses.PASSED)),
    "call fails": (Facts(OK, FAIL, OK), Verdict(statuses.FAILED, FAIL.message, "AssertionError")),
    "transform fails": (
        Facts(OK, Phase("failed", "VariantTransformError: x", "VariantTransformError", True), OK),
        Verdict(statuses.FAILED, "VariantTransformError: x", "VariantTransformError", True),
    ),
    "a subtest fails": (
        Facts(OK, OK, OK, (SUB_PASS, SUB_FAIL, Subtest("[i=2]", "failed", "AssertionError: 2 != 0"))),
        Verdict(statuses.FAILED, "[i=1] AssertionError: 1 != 0", "AssertionError", subtests_run=3, subtests_failed=2),
    ),
    "a subtest errors (transform)": (
        Facts(OK, OK, OK, (SUB_ERROR,)),
        Verdict(statuses.FAILED, "[key='k'] KeyError: 'k'", "KeyError", True, subtests_run=1, subtests_failed=1),
    ),
    "subtest, then the body fails": (
        Facts(OK, FAIL, OK, (SUB_FAIL,)),
        Verdict(statuses.FAILED, "[i=1] AssertionError: 1 != 0", "AssertionError", subtests_run=1, subtests_failed=1),
    ),
    "bare subTest()": (
        Facts(OK, OK, OK, (Subtest("", "failed", "AssertionError: no", "AssertionError"),)),
        Verdict(statuses.FAILED, "AssertionError: no", "AssertionError", subtests_run=1, subtests_failed=1),
    ),
    "subtests pass or skip": (Facts(OK, OK, OK, (SUB_PASS, Subtest("[i=1]", "skipped", "no"))), Verdict(statuses.PASSED, subtests_run=2)),
    "setup error": (Facts(Phase("failed", "RuntimeError: setUpClass", "RuntimeError"), None, OK), Verdict(statuses.ERROR, "RuntimeError: setUpClass", "RuntimeError")),
    "setup skip": (Facts(Phase("skipped", "Skipped: class"), None, OK), Verdict(statuses.SKIPPED, "Skipped: class")),
    "teardown after setup skip": (Facts(Phase("skipped", "Skipped: x"), None, TEARDOWN_FAIL), Verdict(statuses.ERROR, TEARDOWN_FAIL.message, "RuntimeError")),
    "call skip": (Facts(OK, Phase("skipped", "Skipped: body"), OK), Verdict(statuses.SKIPPED, "Skipped: body")),
    "pytest xfail": (
        Facts(OK, Phase("skipped", "AssertionError: bug", "AssertionError", xfail_reason="r"), OK),
        Verdict(statuses.XFAILED, "AssertionError: bug", "AssertionError"),
    ),
    "pytest xpass": (Facts(OK, Phase("passed", xfail_reason="r"), OK), Verdict(statuses.XPASSED, "XPASS: expected to fail (r), but passed")),
    "unexpected success": (
        Facts(OK, Phase("failed", "Failed: Unexpected success", "Failed", xpassed=True), OK),
        Verdict(statuses.XPASSED, "Failed: Unexpected success"),
    ),
    "teardown after pass": (Facts(OK, OK, TEARDOWN_FAIL), Verdict(statuses.ERROR, TEARDOWN_FAIL.message, "RuntimeError")),
    "teardown after skip": (Facts(OK, Phase("skipped", "Skipped: x"), TEARDOWN_FAIL), Verdict(statuses.ERROR, TEARDOWN_FAIL.message, "RuntimeError")),
    "teardown after xfail": (
        Facts(OK, Phase("skipped", "XFailed", xfail_reason=""), TEARDOWN_FAIL),
        Verdict(statuses.ERROR, TEARDOWN_FAIL.message, "RuntimeError"),
    ),
    "call and teardown fail": (Facts(OK, FAIL, TEARDOWN_FAIL), Verdict(statuses.FAILED, FAIL.message, "AssertionError")),
    "no teardown yet": (Facts(OK, FAIL), Verdict(statuses.FAILED, FAIL.message, "AssertionError")),
    "no setup": (Facts(), Verdict(statuses.ERROR, "the test has no setup result")),
    "no call": (Facts(OK, None, OK), Verdict(statuses.ERROR, "the test has no call result")),
    "entry, fails": (Facts(OK, FAIL, OK, xfail=ENTRY), Verdict(statuses.XFAILED, FAIL.message, "AssertionError", expectation=ENTRY.entry)),
    "entry, passes": (Facts(OK, OK, OK, xfail=ENTRY), Verdict(statuses.XPASSED, ENTRY.stale_message, expectation=ENTRY.entry)),
    "entry, subtest fails": (
        Facts(OK, OK, OK, (SUB_FAIL,), ENTRY),
        Verdict(statuses.XFAILED, "[i=1] AssertionError: 1 != 0", "AssertionError", expectation=ENTRY.entry, subtests_run=1, subtests_failed=1),
    ),
    "entry, pytest xfail": (
        Facts(OK, Phase("skipped", "AssertionError: bug", "AssertionError", xfail_reason="r"), OK, xfail=ENTRY),
        Verdict(statuses.XFAILED, "AssertionError: bug", "AssertionError", expectation=ENTRY.entry),
    ),
    "entry, unexpected success": (
        Facts(OK, Phase("failed", "Failed: Unexpected success", "Failed", xpassed=True), OK, xfail=ENTRY),
        Verdict(statuses.XPASSED, ENTRY.stale_message, expectation=ENTRY.entry),
    ),
    "entry, skipped": (Facts(OK, Phase("skipped", "Skipped: x"), OK, xfail=ENTRY), Verdict(statuses.SKIPPED, "Skipped: x", expectation=ENTRY.entry)),
    "entry, passes, teardown fails": (Facts(OK, OK, TEARDOWN_FAIL, xfail=ENTRY), Verdict(statuses.XPASSED, ENTRY.stale_message, expectation=ENTRY.entry)),
    "entry, fails, teardown fails": (
        Facts(OK, FAIL, TEARDOWN_FAIL, xfail=ENTRY),
        Verdict(statuses.ERROR, TEARDOWN_FAIL.message, "RuntimeError", expectation=ENTRY.entry),
    ),
    "entry, setup error": (
        Facts(Phase("failed", "RuntimeError: s", "RuntimeError"), None, OK, xfail=ENTRY),
        Verdict(statuses.ERROR, "RuntimeError: s", "RuntimeError"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", VERDICTS)
def test_verdict(case):
    facts, expected = VERDICTS[case]
    assert verdict.decide(facts) == expected


@pytest.mark.parametrize(
    "msg, params, context",
    [
        (None, {"i": "1"}, "[i=1]"),
        ("case", {"i": "1", "j": "'a'"}, "[case, i=1, j='a']"),
        ("only a message", {}, "[only a message]"),
        (None, {}, ""),
    ],
)
def test_subtest_context(msg, params, context):
    assert verdict.subtest_context(msg, params) == context


@pytest.mark.parametrize(
    ("status", "entry", "expected"),
    [
        (statuses.CRASHED, None, Verdict(statuses.CRASHED, error_type=statuses.CRASHED)),
        (statuses.CRASHED, "t.py::x", Verdict(statuses.XFAILED, error_type=statuses.CRASHED, expectation="t.py::x")),
        (statuses.TIMEOUT, "t.py", Verdict(statuses.XFAILED, error_type=statuses.TIMEOUT, expectation="t.py")),
        (statuses.TIMEOUT, None, Verdict(statuses.TIMEOUT, error_type=statuses.TIMEOUT)),
        # Only a crash or a timeout is an expected failure; a file that cannot be imported, or a test
        # never reached, keeps its status whatever the entry says.
        (statuses.ERROR, "t.py", Verdict(statuses.ERROR, error_type=statuses.ERROR)),
        (statuses.NOT_RUN, "t.py::x", Verdict(statuses.NOT_RUN, error_type=statuses.NOT_RUN)),
    ],
)
def test_died(status, entry, expected):
    assert verdict.died(status, entry) == expected


def test_current_variant_outside_a_cell(monkeypatch):
    monkeypatch.delenv("MATRIX_VARIANT", raising=False)
    assert current_variant() == "base"
    monkeypatch.setenv("MATRIX_VARIANT", "retrace")
    assert current_variant() == "retrace"


# --- real cells against plain pytest -------------------------------------------------------------


@uses("semantics")
def test_subtest_failures_fail_their_test(cells):
    """The bug of issue #13: a unittest test whose only failures are in subTest blocks was `passed`."""
    run = cells["semantics"]
    fails = run.matrix(S + "TestSubtests::test_subtest_fails")
    assert (fails["status"], fails["message"], fails["error_type"]) == (statuses.FAILED, "[i=1] AssertionError: 1 != 0", "AssertionError")
    assert (fails["subtests_run"], fails["subtests_failed"]) == (3, 2)
    errors = run.matrix(S + "TestSubtests::test_subtest_errors")
    assert (errors["status"], errors["message"], errors["error_type"]) == (statuses.FAILED, "[lookup, key='k'] KeyError: 'k'", "KeyError")
    fixture = run.matrix(S + "test_subtests_fixture_fails")
    assert (fixture["status"], fixture["message"], fixture["subtests_run"], fixture["subtests_failed"]) == (
        statuses.FAILED, "[case, i=1] AssertionError: 1 is not 0", 2, 1
    )  # fmt: skip
    both = run.matrix(S + "TestSubtests::test_subtest_fails_then_body_fails")
    assert (both["status"], both["message"]) == (statuses.FAILED, "[step=1] AssertionError: first subtest")
    passing = run.matrix(S + "TestSubtests::test_subtest_all_pass")
    assert (passing["status"], passing["message"], passing["subtests_run"], passing["subtests_failed"]) == (statuses.PASSED, "", 3, 0)
    assert run.returncode == 1, run.explain()
    assert f"[matrix] FAILED: {S}TestSubtests::test_subtest_fails: [i=1] AssertionError: 1 != 0" in run.output


@uses("semantics")
def test_semantics_statuses(cells):
    run = cells["semantics"]
    assert run.statuses == SEMANTICS_STATUSES, run.explain()
    messages = {
        S + "TestExpectedFailure::test_passes_unexpectedly": "Failed: Unexpected success",
        S + "TestTearDownClassError::test_a": "RuntimeError: tearDownClass broke",
        S + "TestSkipThenTearDownClassError::test_a": "RuntimeError: tearDownClass broke after a skip",
        S + "test_fails_in_call_and_teardown": "AssertionError: call failed first",
        S + "TestSkipInSetUpClass::test_a": "Skipped: skipped in setUpClass",
        S + "TestExpectedFailure::test_fails_as_expected": "failed as expected (@unittest.expectedFailure)",
        S + "test_pytest_xfail_marker_passes": "XPASS: expected to fail (pytest marker), but passed",
        S + "test_pytest_xfail_strict_passes": "[XPASS(strict)] strict marker",
        S + "test_pytest_xfail_call": "xfail called in the body",
        f"{MODULE_TEARDOWN}::test_skipped_last": "RuntimeError: the module fixture's teardown broke",
    }
    assert {n: run.matrix(n)["message"] for n in messages} == messages


@pytest.mark.parametrize("name", ["semantics", "torch_base", "torch_retrace"])
@uses("semantics", "torch_base", "torch_retrace")
def test_statuses_equal_plain_pytest(cells, plain, name):
    """Test by test, the cell's status is what plain pytest reports for the same test."""
    run = cells[name]
    files = (TORCH,) if name.startswith("torch") else (SEMANTICS, SETUP_MODULE, MODULE_TEARDOWN)
    expected = {n: pytest_status(events) for n, events in plain.items() if n.split("::")[0] in files}
    ours = {n: s for n, s in run.statuses.items() if n.split("::")[0] in files}
    assert ours == expected, run.explain()
    assert expected == (TORCH_STATUSES if name.startswith("torch") else SEMANTICS_STATUSES)


@uses("torch_base", "torch_retrace")
def test_torch_style_under_two_variants(cells):
    """Same names under every variant (no class-factory suffix), the variant really ran, and a
    unittest test reads its variant and device from MATRIX_VARIANT / current_variant()."""
    base, retrace = cells["torch_base"], cells["torch_retrace"]
    assert sorted(base.tests) == sorted(retrace.tests) == sorted([*TORCH_STATUSES, ENV_CHECK])
    exported = T + "TestExportStyle::test_export_matches_eager"
    assert retrace.matrix(exported)["transform_calls"] >= 1 and base.matrix(exported)["transform_calls"] == 0
    assert base.matrix(ENV_CHECK)["status"] == retrace.matrix(ENV_CHECK)["status"] == statuses.PASSED, retrace.explain()
    subtests = retrace.matrix(T + "TestExportStyle::test_subtests_over_shapes")
    assert (subtests["message"], subtests["subtests_run"], subtests["subtests_failed"]) == (
        "[n=1] AssertionError: Scalars are not equal!",
        3,
        2,
    )
    assert base.problems == retrace.problems == []


@uses("entries")
def test_matrix_xfail_entries_over_subtests(cells):
    run = cells["entries"]
    m = {
        n: run.matrix(S + n)
        for n in ("TestSubtests::test_subtest_fails", "TestSubtests::test_subtest_all_pass", "test_subtests_fixture_fails")
    }
    assert [(x["status"], x["expectation"]) for x in m.values()] == [
        (statuses.XFAILED, S + "TestSubtests::test_subtest_fails"),
        (statuses.XPASSED, S + "TestSubtests::test_subtest_all_pass"),
        (statuses.XFAILED, S + "test_subtests_fixture_fails"),
    ]
    assert m["TestSubtests::test_subtest_fails"]["message"] == "[i=1] AssertionError: 1 != 0"
    assert m["TestSubtests::test_subtest_all_pass"]["message"].startswith(f"XPASS(strict): {S}TestSubtests::test_subtest_all_pass passed")
    expected_failure = {
        n: run.matrix(S + f"TestExpectedFailure::{n}")["status"] for n in ("test_fails_as_expected", "test_passes_unexpectedly")
    }
    assert expected_failure == {"test_fails_as_expected": statuses.XFAILED, "test_passes_unexpectedly": statuses.XPASSED}
    assert run.problems == []
    # The target's log names the stale entry to remove.
    assert f"[matrix] XPASSED: {S}TestSubtests::test_subtest_all_pass: XPASS(strict)" in run.output, run.explain()


@uses("crash")
def test_segfault_inside_a_subtest_is_a_crash_of_that_test(cells):
    run = cells["crash"]
    crashed, after = run.matrix(f"{CRASH}::TestCrash::test_1_segfault_in_subtest"), run.matrix(f"{CRASH}::TestCrash::test_2_after")
    assert (crashed["status"], crashed["message"]) == (statuses.CRASHED, "the test process died (SIGSEGV) inside this test"), run.explain()
    assert (after["status"], after["subtests_run"], after["subtests_failed"]) == (statuses.PASSED, 1, 0)
    assert run.report["matrix"]["restarts"] == 1


def test_each_test_is_judged_once_and_concluded_once(tmp_path, monkeypatch):
    """The plugin's gathering (runtime/test_facts.py) fed real pytest reports: verdict.judge runs once per
    test (when its call ends, or at teardown when it had none) and verdict.conclude once, at teardown."""
    from collections import Counter

    from tools.matrix.runtime import test_facts

    (tmp_path / "test_x.py").write_text("import pytest\n\ndef test_pass():\n    pass\n\ndef test_fail():\n    assert 0\n\n"
                                        "@pytest.mark.skip(reason='no')\ndef test_skip():\n    pass\n")  # fmt: skip
    calls: Counter[str] = Counter()
    judge, conclude = verdict.judge, verdict.conclude
    monkeypatch.setattr(verdict, "judge", lambda facts: (calls.update(["judge"]), judge(facts))[1])
    monkeypatch.setattr(verdict, "conclude", lambda facts, judged: (calls.update(["conclude"]), conclude(facts, judged))[1])
    gathered = test_facts.Gathered(lambda nodeid: ENTRY if nodeid.endswith("test_fail") else None)
    decided: dict[str, str] = {}

    class Feed:
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(self, item, call):
            outcome = yield
            gathered.raised(item, call, outcome.get_result())

        def pytest_runtest_logreport(self, report):
            gathered.take(report)
            if report.when == "teardown":
                decided[report.nodeid.split("::")[-1]] = gathered.pop(report.nodeid).decided().status

    pytest.main([str(tmp_path / "test_x.py"), "-q", "-p", "no:cacheprovider"], plugins=[Feed()])
    assert decided == {"test_pass": statuses.PASSED, "test_fail": statuses.XFAILED, "test_skip": statuses.SKIPPED}
    assert calls == Counter(judge=3, conclude=3)
