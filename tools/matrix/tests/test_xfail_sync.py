"""`xfail sync`: new failures become xfails with their first error line as the reason, stale xfails
(xpassed) go away, and everything else in matrix.yaml (comments, order, quoting) stays byte-identical."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

import tools.matrix
from tools.matrix import config, matrix_writer, statuses, xfail_sync
from tools.matrix.errors import InvalidRewrite
from tools.matrix.records import Record
from tools.matrix.report import COMPAT_JSON
from tools.matrix.tests.fixtures import toolws
from tools.matrix.tests.fixtures.toolws import run_cli

TOOLS = Path(tools.matrix.__file__).absolute().parent
REAL_MATRIX = (TOOLS.parents[1] / "matrix.yaml").resolve()

PLANTED = """\
# The test matrix (synthetic).
devices:
  cpu: {}
  cuda:
    requires_gpu: true  # needs --config=gpu

variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: plain
  other:
    impl: tools.matrix.variants.export:Retrace
    description: other

suites:
  s:
    variants: [base, other]
    devices: [cpu, cuda]
  t:
    variants: [base]
    devices: [cpu]

expectations:
  s:
    base:
      xfail:
        # Known upstream issue, see #123.
        test_a.py::test_keep: "RuntimeError: still broken"  # tracked in #456
        test_a.py::test_old: old failure
    other:
      skip:
        test_b.py: too slow  # 10 minutes
  t:
    base:
      xfail:
        test_c.py::test_t: broken in t
# end of expectations
"""
FILES = ("s/test_a.py", "s/test_b.py", "t/test_c.py")
NEW_ENTRY = "        test_a.py::test_new: 'AssertionError: assert 1 == 2'\n"


def rec(test, variant, device, status, message="", error_type=None, expectation=None, suite="s", transform_failed=False):
    return Record(
        suite=suite, test=test, variant=variant, device=device, status=status, message=message, error_type=error_type,
        expectation=expectation, transform_failed=transform_failed, target=f"//{suite}:{suite}_{variant}_{device}",
    )  # fmt: skip


def args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"suite": [], "variant": [], "device": [], "tests": [], **kw})


def baseline_records() -> list[Record]:
    """What a run of PLANTED as written reports: everything as expected."""
    out = []
    for d in ("cpu", "cuda"):
        out += [
            rec("test_a.py::test_keep", "base", d, statuses.XFAILED, "RuntimeError: still broken", "RuntimeError", "test_a.py::test_keep"),
            rec("test_a.py::test_old", "base", d, statuses.XFAILED, "old failure", "ValueError", "test_a.py::test_old"),
            rec("test_a.py::test_new", "base", d, statuses.PASSED),
            rec("test_b.py::test_slow", "other", d, statuses.SKIPPED, "too slow", None, "test_b.py"),
            rec("test_a.py::test_new", "other", d, statuses.PASSED),
        ]
    out.append(rec("test_c.py::test_t", "base", "cpu", statuses.XFAILED, "boom", "KeyError", "test_c.py::test_t", suite="t"))
    return out


def replace(records: list[Record], *fresh: Record) -> list[Record]:
    by_key = {r.key: r for r in records}
    by_key.update({r.key: r for r in fresh})
    return list(by_key.values())


def scenario() -> list[Record]:
    """One new failure (both devices, a multi-line message) and one stale xfail (xpassed on both)."""
    return replace(
        baseline_records(),
        *(rec("test_a.py::test_new", "base", d, statuses.FAILED, "AssertionError: assert 1 == 2\n +  where 1 = f()", "AssertionError") for d in ("cpu", "cuda")),
        *(rec("test_a.py::test_old", "base", d, statuses.XPASSED, "", None, "test_a.py::test_old") for d in ("cpu", "cuda")),
    )


@pytest.fixture
def matrix_path(tmp_path) -> Path:
    return toolws.write_workspace(tmp_path, PLANTED, FILES, "def test_x():\n    pass\n") / "matrix.yaml"


def sync(path: Path, records: list[Record], **kw) -> str:
    """matrix.yaml's new text (its old text when nothing changes)."""
    edits = xfail_sync.sync(path, records, args(**kw))
    assert [e.path for e in edits] in ([], [path]) and all(e.old == path.read_text() for e in edits)
    return edits[0].new if edits else path.read_text()


def changed_lines(old: str, new: str) -> list[str]:
    return [ln for ln in xfail_sync.diff(old, new, "matrix.yaml").splitlines() if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]


# --- the rewrite -------------------------------------------------------------------------------------


def test_nothing_to_do_is_byte_identical(matrix_path):
    assert sync(matrix_path, baseline_records()) == PLANTED
    assert sync(matrix_path, []) == PLANTED


def test_real_matrix_yaml_round_trips_byte_identical(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_bytes(REAL_MATRIX.read_bytes())
    assert sync(path, []) == REAL_MATRIX.read_text()


def test_new_failure_added_and_stale_xfail_removed(matrix_path):
    new = sync(matrix_path, scenario())
    expected = PLANTED.replace("        test_a.py::test_old: old failure\n", NEW_ENTRY)
    assert new == expected  # the comments, the quoting, the order and every other byte unchanged
    assert changed_lines(PLANTED, new) == ["-        test_a.py::test_old: old failure", "+" + NEW_ENTRY.rstrip("\n")]
    assert xfail_sync.diff(PLANTED, new, "matrix.yaml").startswith("--- a/matrix.yaml\n+++ b/matrix.yaml\n")


def test_result_is_a_valid_matrix(matrix_path):
    matrix_path.write_text(sync(matrix_path, scenario()))
    matrix = config.load(matrix_path, matrix_path.parent)
    cell = next(c for c in matrix.cells() if c.target_name == "s_base_cuda")
    assert dict(cell.expectations.xfail) == {"test_a.py::test_keep": "RuntimeError: still broken", "test_a.py::test_new": "AssertionError: assert 1 == 2"}


def test_failing_on_one_device_only_goes_under_that_device(matrix_path):
    records = replace(
        baseline_records(),
        rec("test_a.py::test_new", "other", "cuda", statuses.FAILED, "RuntimeError: CUDA error: device-side assert triggered", "RuntimeError"),
    )
    new = sync(matrix_path, records)
    anchor = "        test_b.py: too slow  # 10 minutes\n"
    assert new == PLANTED.replace(
        anchor,
        anchor + "      devices:\n        cuda:\n          xfail:\n            test_a.py::test_new: 'RuntimeError: CUDA error: device-side assert triggered'\n",
    )
    matrix_path.write_text(new)
    cells = {c.target_name: c for c in config.load(matrix_path, matrix_path.parent).cells()}
    assert cells["s_other_cuda"].expectations.xfail == (("test_a.py::test_new", "RuntimeError: CUDA error: device-side assert triggered"),)
    assert cells["s_other_cpu"].expectations.xfail == ()


def test_stale_on_one_device_keeps_the_entry_on_the_other(matrix_path):
    records = replace(baseline_records(), rec("test_a.py::test_old", "base", "cpu", statuses.XPASSED, "", None, "test_a.py::test_old"))
    new = sync(matrix_path, records)
    assert new == PLANTED.replace(
        "        test_a.py::test_old: old failure\n",
        "      devices:\n        cuda:\n          xfail:\n            test_a.py::test_old: old failure\n",
    )


def test_stale_where_the_other_device_did_not_run_keeps_it_there(matrix_path):
    records = replace(
        baseline_records(),
        rec("test_a.py::test_old", "base", "cpu", statuses.XPASSED, "", None, "test_a.py::test_old"),
        rec("test_a.py::test_old", "base", "cuda", statuses.NOT_RUN, "no result", statuses.NOT_RUN),
    )
    new = sync(matrix_path, records)
    assert "          xfail:\n            test_a.py::test_old: old failure\n" in new
    assert "        test_a.py::test_old: old failure\n" not in new.replace("            test_a.py::test_old", "")


def test_a_broad_entry_covering_a_passing_test_gives_way_to_the_failures_it_covers(matrix_path):
    """A file entry covering one xpassing and one still-failing test on the same device is stale (its
    xpass fails the target): it is replaced by an entry for the test that still fails, so that the
    target passes after the sync (kept as it was, the target failed after every sync)."""
    text = PLANTED.replace("        test_c.py::test_t: broken in t\n", "        test_c.py: broken in t\n")
    matrix_path.write_text(text)
    records = [
        rec("test_c.py::test_t", "base", "cpu", statuses.XPASSED, "", None, "test_c.py", suite="t"),
        rec("test_c.py::test_u", "base", "cpu", statuses.XFAILED, "boom", "KeyError", "test_c.py", suite="t"),
    ]
    assert sync(matrix_path, records) == text.replace("        test_c.py: broken in t\n", "        test_c.py::test_u: boom\n")
    # ...and goes once every test it covers passes.
    records[1] = rec("test_c.py::test_u", "base", "cpu", statuses.XPASSED, "", None, "test_c.py", suite="t")
    assert sync(matrix_path, records) == text.replace("  t:\n    base:\n      xfail:\n        test_c.py: broken in t\n", "")


def test_removing_the_last_entries_prunes_empty_mappings(matrix_path):
    records = [rec("test_c.py::test_t", "base", "cpu", statuses.XPASSED, "", None, "test_c.py::test_t", suite="t")]
    new = sync(matrix_path, records)
    assert new == PLANTED.replace("  t:\n    base:\n      xfail:\n        test_c.py::test_t: broken in t\n", "")
    assert "xfail: {}" not in new and "t: {}" not in new


def test_everything_removed_leaves_an_empty_mapping(tmp_path):
    path = tmp_path / "matrix.yaml"
    text = "devices:\n  cpu: {}\nexpectations:\n  t:\n    base:\n      xfail:\n        test_c.py: x\n"
    path.write_text(text)
    new = sync(path, [rec("test_c.py::test_t", "base", "cpu", statuses.XPASSED, "", None, "test_c.py", suite="t")])
    assert new == "devices:\n  cpu: {}\nexpectations: {}\n"


def test_additions_into_an_empty_expectations_mapping(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text("devices:\n  cpu: {}\nexpectations: {}\n")
    new = sync(path, [rec("test_c.py::test_t", "base", "cpu", statuses.ERROR, "fixture 'gpu' not found", "error", suite="t")])
    assert new == "devices:\n  cpu: {}\nexpectations:\n  t:\n    base:\n      xfail:\n        test_c.py::test_t: fixture 'gpu' not found\n"


def test_comment_lines_stay_before_what_followed_them(tmp_path):
    """ruamel glues a comment line to the entry above it; added entries must not slip above it."""
    path = tmp_path / "matrix.yaml"
    text = (
        "expectations:\n"
        "  s:\n"
        "    base:\n"
        "      xfail:\n"
        "        a.py: x  # eol\n"
        "\n"
        "  # t comes next\n"
        "  t:\n"
        "    base:\n"
        "      skip:\n"
        "        b.py: y\n"
        "# the end\n"
    )
    path.write_text(text)
    new = sync(path, [rec("n.py", "other", "cpu", statuses.FAILED, "boom"), rec("c.py", "base", "cpu", statuses.TIMEOUT, "took 120 s", suite="t")])
    assert new == (
        "expectations:\n"
        "  s:\n"
        "    base:\n"
        "      xfail:\n"
        "        a.py: x  # eol\n"
        "    other:\n"
        "      xfail:\n"
        "        n.py: boom\n"
        "\n"
        "  # t comes next\n"
        "  t:\n"
        "    base:\n"
        "      skip:\n"
        "        b.py: y\n"
        "      xfail:\n"
        "        c.py: 'timeout: took 120 s'\n"
        "# the end\n"
    )


# --- filters ---------------------------------------------------------------------------------------------


def filter_records() -> list[Record]:
    return replace(
        scenario(),
        rec("test_c.py::test_new_t", "base", "cpu", statuses.CRASHED, "Fatal Python error: Segmentation fault", statuses.CRASHED, suite="t"),
        *(rec("test_a.py::test_new", "other", d, statuses.FAILED, "TypeError: bad", "TypeError", transform_failed=True) for d in ("cpu", "cuda")),
    )


T_ENTRY = "        test_c.py::test_new_t: 'crashed: Fatal Python error: Segmentation fault'\n"
OTHER_ENTRY = "      xfail:\n        test_a.py::test_new: 'variant transform failed: TypeError: bad'\n"


def test_no_filter_takes_everything(matrix_path):
    new = sync(matrix_path, filter_records())
    assert new == (
        PLANTED.replace("        test_a.py::test_old: old failure\n", NEW_ENTRY)
        .replace("        test_b.py: too slow  # 10 minutes\n", "        test_b.py: too slow  # 10 minutes\n" + OTHER_ENTRY)
        .replace("        test_c.py::test_t: broken in t\n", "        test_c.py::test_t: broken in t\n" + T_ENTRY)
    )


def test_suite_filter(matrix_path):
    new = sync(matrix_path, filter_records(), suite=["t"])
    assert new == PLANTED.replace("        test_c.py::test_t: broken in t\n", "        test_c.py::test_t: broken in t\n" + T_ENTRY)


def test_variant_filter(matrix_path):
    new = sync(matrix_path, filter_records(), variant=["oth*"])
    assert new == PLANTED.replace("        test_b.py: too slow  # 10 minutes\n", "        test_b.py: too slow  # 10 minutes\n" + OTHER_ENTRY)


def test_suite_and_variant_filter(matrix_path):
    new = sync(matrix_path, filter_records(), suite=["s"], variant=["base"])
    assert new == PLANTED.replace("        test_a.py::test_old: old failure\n", NEW_ENTRY)


def test_device_filter_places_under_that_device(matrix_path):
    """With --device cuda only cuda's results are seen: the new failure goes under devices.cuda."""
    new = sync(matrix_path, filter_records(), suite=["s"], variant=["other"], device=["cuda"])
    assert new == PLANTED.replace(
        "        test_b.py: too slow  # 10 minutes\n",
        "        test_b.py: too slow  # 10 minutes\n      devices:\n        cuda:\n          xfail:\n"
        "            test_a.py::test_new: 'variant transform failed: TypeError: bad'\n",
    )


# --- reasons ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (rec("t.py", "base", "cpu", statuses.FAILED, "AssertionError: x\nmore\nlines", "AssertionError"), "AssertionError: x"),
        (rec("t.py", "base", "cpu", statuses.FAILED, "\n  ValueError: leading blank\n", "ValueError"), "ValueError: leading blank"),
        (rec("t.py", "base", "cpu", statuses.FAILED, "", "KeyError"), "KeyError"),
        (rec("t.py", "base", "cpu", statuses.FAILED, "  \n ", "KeyError"), "KeyError"),
        (rec("t.py", "base", "cpu", statuses.FAILED, "   "), "failed"),
        (rec("t.py", "base", "cpu", statuses.ERROR, "fixture 'x' not found", "error"), "fixture 'x' not found"),
        (rec("t.py", "base", "cpu", statuses.FAILED, "TypeError: y", "TypeError", transform_failed=True), "variant transform failed: TypeError: y"),
        (rec("t.py", "base", "cpu", statuses.TIMEOUT, "exceeded 120 s", statuses.TIMEOUT), "timeout: exceeded 120 s"),
        (rec("t.py", "base", "cpu", statuses.CRASHED, "", statuses.CRASHED), "crashed: crashed"),
        (rec("t.py", "base", "cpu", statuses.FAILED, "E" * 300), "E" * 239 + "…"),
    ],
)
def test_reason_of(record, reason):
    assert xfail_sync.reason_of(record) == reason
    assert len(reason) <= xfail_sync.MAX_REASON and reason.strip()


# --- the command line ----------------------------------------------------------------------------------


def write_compat(path: Path, records: list[Record]) -> Path:
    return toolws.write_compat(path, records, torch_version="2.13.0")


def test_cli_dry_run_changes_nothing(matrix_path):
    ws = matrix_path.parent
    write_compat(ws / "out" / COMPAT_JSON, scenario())
    out = run_cli(ws, "xfail", "sync", "--out", "out", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert out.stdout == xfail_sync.diff(PLANTED, PLANTED.replace("        test_a.py::test_old: old failure\n", NEW_ENTRY), "matrix.yaml")
    assert matrix_path.read_text() == PLANTED
    assert not (ws / "BUILD.bazel").exists() and not (ws / "s" / "BUILD.bazel").exists()


def test_cli_sync_writes_and_regenerates(matrix_path):
    ws = matrix_path.parent
    write_compat(ws / "reports" / COMPAT_JSON, scenario())
    out = run_cli(ws, "xfail", "sync", "--suite", "s")
    assert out.returncode == 0, out.stderr
    expected = PLANTED.replace("        test_a.py::test_old: old failure\n", NEW_ENTRY)
    assert matrix_path.read_text() == expected
    assert out.stdout.startswith(xfail_sync.diff(PLANTED, expected, "matrix.yaml"))
    assert "wrote 4 file(s)" in out.stdout
    assert "test_a.py::test_new" in (ws / "s" / "BUILD.bazel").read_text()
    again = run_cli(ws, "xfail", "sync", "--suite", "s")
    assert (again.returncode, again.stdout) == (0, "matrix.yaml expectations already match the last report\n")


def test_cli_without_a_report_exits_2(matrix_path):
    out = run_cli(matrix_path.parent, "xfail", "sync", "--out", "nowhere")
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "no report yet" in out.stderr
    assert "Traceback" not in out.stderr
    assert matrix_path.read_text() == PLANTED


# --- what sync never writes, and what it writes safely -----------------------------------------------------

NO_RESULTS = "(no test results for this suite)"


def pseudo_records() -> list[Record]:
    """What the collector writes for cells without results: not tests, so never expectations."""
    return [
        rec(NO_RESULTS, "base", "cpu", statuses.CRASHED, "the target died without writing a report or test.xml (see log tail)", statuses.CRASHED, suite="t"),
        rec(NO_RESULTS, "other", "cuda", statuses.NOT_RUN, "no result: the target was not run", statuses.NOT_RUN),
        rec("test_a.py::test_new", "other", "cuda", statuses.NOT_RUN, "no result: the target was not run", statuses.NOT_RUN),
    ]


def test_pseudo_records_never_become_entries(matrix_path):
    assert sync(matrix_path, replace(baseline_records(), *pseudo_records())) == PLANTED


def test_cli_sync_with_a_dead_cell_keeps_matrix_yaml_valid(matrix_path):
    """Reproduces the report: a cell that died without results used to become an xfail entry
    `(no test results for this suite)`, an invalid matrix.yaml left on disk."""
    ws = matrix_path.parent
    write_compat(ws / "reports" / COMPAT_JSON, replace(scenario(), *pseudo_records()))
    out = run_cli(ws, "xfail", "sync")
    assert out.returncode == 0, out.stderr
    assert matrix_path.read_text() == PLANTED.replace("        test_a.py::test_old: old failure\n", NEW_ENTRY)
    config.load(matrix_path, ws)


def test_failures_of_tests_matrix_yaml_no_longer_has_or_now_skips_are_left_out(matrix_path):
    """The report predates an edit: a deleted test file, a new skip entry. Adding them would make
    matrix.yaml invalid (unknown file; both xfail and skip)."""
    ws = matrix_path.parent
    (ws / "s" / "test_gone.py").write_text("")
    records = replace(
        baseline_records(),
        rec("test_gone.py::test_x", "base", "cpu", statuses.FAILED, "boom"),
        rec("test_b.py::test_slow", "other", "cpu", statuses.FAILED, "boom"),
    )
    matrix = config.load(matrix_path, ws)
    (ws / "s" / "test_gone.py").unlink()
    assert xfail_sync.sync(matrix_path, records, args(), config.load(matrix_path, ws)) == [] and matrix_path.read_text() == PLANTED
    (edit,) = xfail_sync.sync(matrix_path, records, args(), matrix)
    assert "test_gone.py::test_x" in edit.new  # only the current matrix.yaml decides


def test_an_invalid_rewrite_is_refused_and_the_file_left_as_it_was(matrix_path):
    ws = matrix_path.parent
    matrix_path.chmod(0o640)
    bad = PLANTED.replace("test_a.py::test_keep", "test_nope.py::test_keep")
    with pytest.raises(InvalidRewrite) as refused:
        matrix_writer.write(matrix_path, bad, ws)
    (problem,) = refused.value.problems  # the loader's own message (config/ words it), at the entry
    assert problem.startswith("matrix.yaml:28:9: ") and "'test_nope.py' of 'test_nope.py::test_keep' is not a test file of suite 's'" in problem
    assert matrix_path.read_text() == PLANTED and sorted(p.name for p in ws.iterdir()) == ["matrix.yaml", "s", "t"]
    good = PLANTED.replace("old failure", "older failure")
    matrix_writer.write(matrix_path, good, ws)
    assert matrix_path.read_text() == good and matrix_path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in ws.iterdir()) == ["matrix.yaml", "s", "t"]  # no temp file left behind


# --- crashed / timed-out tests: xfailed when listed (H1's runtime), so sync adds and removes them ---------------------


def test_cli_crash_and_timeout_xfails_are_added_then_removed_when_stale(matrix_path):
    ws = matrix_path.parent
    died = "the test process died (SIGSEGV) inside this test"
    hung = "timed out after 120s (per-test timeout)"
    first = replace(
        baseline_records(),
        *(rec("test_a.py::test_new", "base", d, statuses.CRASHED, died, statuses.CRASHED) for d in ("cpu", "cuda")),
        *(rec("test_a.py::test_new", "other", d, statuses.TIMEOUT, hung, statuses.TIMEOUT) for d in ("cpu", "cuda")),
    )
    write_compat(ws / "reports" / COMPAT_JSON, first)
    assert run_cli(ws, "xfail", "sync").returncode == 0
    crash_entry = "        test_a.py::test_new: 'crashed: the test process died (SIGSEGV) inside this test'\n"
    hang_entry = "      xfail:\n        test_a.py::test_new: 'timeout: timed out after 120s (per-test timeout)'\n"
    anchor = "        test_b.py: too slow  # 10 minutes\n"
    expected = PLANTED.replace("        test_a.py::test_old: old failure\n", "        test_a.py::test_old: old failure\n" + crash_entry)
    assert matrix_path.read_text() == expected.replace(anchor, anchor + hang_entry)
    # The next run: the crash is fixed (xpassed: stale), the hang still happens (xfailed, error_type timeout).
    second = replace(
        first,
        *(rec("test_a.py::test_new", "base", d, statuses.XPASSED, "", None, "test_a.py::test_new") for d in ("cpu", "cuda")),
        *(rec("test_a.py::test_new", "other", d, statuses.XFAILED, hung, statuses.TIMEOUT, "test_a.py::test_new") for d in ("cpu", "cuda")),
    )
    write_compat(ws / "reports" / COMPAT_JSON, second)
    assert run_cli(ws, "xfail", "sync").returncode == 0
    assert matrix_path.read_text() == PLANTED.replace(anchor, anchor + hang_entry)


# --- reasons copied from hostile error messages -------------------------------------------------------------------

NASTY = [  # (message, the reason stored)
    ("\x1b[31mAssertionError\x1b[0m: \x1b[1;4mred\x1b[m", "AssertionError: red"),
    ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ text", "link text"),
    ("bell\x07 nul\x00 del\x7f esc\x1b", "bell\\x07 nul\\x00 del\\x7f esc\\x1b"),
    ("evil \u202eexe.txt zero\u200bwidth \ufeffbom", "evil \\u202eexe.txt zero\\u200bwidth \\ufeffbom"),
    ("$(rm -rf /) ${HOME} $$ $", "$(rm -rf /) ${HOME} $$ $"),
    ("first line\nsecond line", "first line"),
    ("\r\n  windows first\r\nsecond", "windows first"),
    ("a\u2028b", "a"),
    ("it's \"quoted\" \\ back\\slash \\n", "it's \"quoted\" \\ back\\slash \\n"),
    ("snake 🐍 and 𝔘 and 中文", "snake 🐍 and 𝔘 and 中文"),
    ("tab\tseparated", "tab separated"),
    ("lone \udcff surrogate", "lone \\udcff surrogate"),
    ("# not a comment: - [x] {y} *a &b !c %d @e `f` | >", "# not a comment: - [x] {y} *a &b !c %d @e `f` | >"),
    ("null", "null"),
    ("1.5e3", "1.5e3"),
    ("x" * 1000, "x" * 239 + "…"),
]


def test_cli_nasty_reasons_round_trip_through_yaml_and_the_generated_build(matrix_path):
    """Sync → matrix.yaml loads → generate writes BUILD files whose string literals read back as the reasons."""
    ws = matrix_path.parent
    failures = [rec(f"test_a.py::test_n{i:02}", "other", "cpu", statuses.FAILED, message) for i, (message, _) in enumerate(NASTY)]
    write_compat(ws / "reports" / COMPAT_JSON, failures)
    out = run_cli(ws, "xfail", "sync", "--suite", "s", "--variant", "other")
    assert out.returncode == 0, out.stderr
    expected = {f"test_a.py::test_n{i:02}": reason for i, (_, reason) in enumerate(NASTY)}
    cells = {c.target_name: c for c in config.load(matrix_path, ws).cells()}
    assert dict(cells["s_other_cpu"].expectations.xfail) == dict(cells["s_other_cuda"].expectations.xfail) == expected
    assert run_cli(ws, "generate", "--check").returncode == 0
    build = (ws / "s" / "BUILD.bazel").read_text()
    for target in ("s_other_cpu", "s_other_cuda"):
        block = build.split(f'name = "{target}"', 1)[1].split('            "xfail": {\n', 1)[1].split("\n            },\n", 1)[0]
        assert ast.literal_eval("{" + block + "}") == expected
    for message, reason in NASTY:
        assert xfail_sync.reason_of(rec("t.py", "base", "cpu", statuses.FAILED, message)) == reason


HOSTILE_IDS = {  # node id -> why it cannot be a matrix.yaml key as it is
    "test_a.py::": "it has nothing after a '::'",
    "test_a.py::t\x1b[31m": "it holds '\\x1b', which matrix.yaml cannot show as it is",
    "test_a.py::a\nb": "it holds '\\n', which matrix.yaml cannot show as it is",
    "test_a.py::t\u202eevil": "it holds '\\u202e', which matrix.yaml cannot show as it is",
    "test_a.py::t\u200b": "it holds '\\u200b', which matrix.yaml cannot show as it is",
}


def test_cli_a_failure_whose_id_cannot_be_a_key_is_named_and_left_out(matrix_path):
    """A report can hold test ids matrix.yaml cannot hold as they are (the loader refuses control
    characters and an empty `::` part; a bidi override would make the file show something else than
    it holds): each is one warning line, the other failures are added, the file validates."""
    ws = matrix_path.parent
    hostile = [rec(test, "base", "cpu", statuses.FAILED, "boom") for test in HOSTILE_IDS]
    write_compat(ws / "reports" / COMPAT_JSON, [*hostile, rec("test_a.py::test_plain", "base", "cpu", statuses.FAILED, "AssertionError: plain")])
    out = run_cli(ws, "xfail", "sync")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.splitlines() == [
        f"warning: not added: {ascii(test)[1:-1]}: {why}; add its entry by hand if you must" for test, why in sorted(HOSTILE_IDS.items())
    ]
    cells = {c.target_name: c for c in config.load(matrix_path, ws).cells()}
    assert dict(cells["s_base_cpu"].expectations.xfail)["test_a.py::test_plain"] == "AssertionError: plain"
    assert not any(t in dict(cells["s_base_cpu"].expectations.xfail) for t in HOSTILE_IDS)


def test_a_symlinked_matrix_yaml_stays_a_symlink(matrix_path):
    ws = matrix_path.parent
    real = ws / "config" / "matrix.yaml"
    real.parent.mkdir()
    matrix_path.rename(real)
    matrix_path.symlink_to(real)
    new = PLANTED.replace("old failure", "older failure")
    matrix_writer.write(matrix_path, new, ws)
    assert matrix_path.is_symlink() and real.read_text() == new
