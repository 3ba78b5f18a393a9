"""Steps 2b-2d: a comment appended to one source file of the copy (a new digest, the same code), then what
Bazel re-runs, against the targets that depend on that file: a variant's module (2b), the runtime core
every cell depends on (2c, checked with --check_tests_up_to_date), one test file (2d, also timed against
plain pytest of that file). Each edit is preceded by a settle and undone afterwards."""

from __future__ import annotations

import os
import re

from matrix_bench.context import Context
from matrix_bench.copy_edits import appended_comment, impl_module_path
from matrix_bench.plain_pytest import run_plain
from matrix_bench.run_outputs import cell_reports, executed_targets, tests_of
from matrix_bench.summary import fmt_s, log

VARIANT_MODULE_EDIT = "tools/matrix/variants/package.py"  # a built-in variant module (from_directory, from_bytes)
RUNTIME_EDIT = "tools/matrix/runtime/verdict.py"  # part of //tools/matrix:runtime, which every cell depends on


def edit_verdict(ctx: Context, executed: set[str], expected: set[str]) -> str:
    """`executed` vs `expected`, leaving out targets that failed in the cold run (never cached)."""
    cacheable = executed - (ctx.cold_failed - expected)
    extra = executed - cacheable
    verdict = "exactly the expected ones" if cacheable == expected else (
        f"DIFFERENT: {len(cacheable - expected)} unexpected ({', '.join(sorted(cacheable - expected)[:6])}), "
        f"{len(expected - cacheable)} missing ({', '.join(sorted(expected - cacheable)[:6])})")  # fmt: skip
    return verdict + (f"; plus {len(extra)} that failed before (never cached)" if extra else "")


def variant_edit(ctx: Context) -> None:
    log(f"\n== 2b. variant edit: a comment appended to {VARIANT_MODULE_EDIT} ==")
    users = [t for t in ctx.cell_targets if impl_module_path(t.cell.variant.impl, ctx.copy) == VARIANT_MODULE_EDIT]
    if not users:
        ctx.results.missing(f"variant edit: no target among {' '.join(ctx.targets)} uses a variant from {VARIANT_MODULE_EDIT}")
        return
    expected = {t.label for t in users}
    variants = sorted({t.cell.variant.name for t in users})
    ctx.settle("variant_edit")
    load0 = os.getloadavg()[0]
    with appended_comment(ctx.copy / VARIANT_MODULE_EDIT):
        run, bep = ctx.bazel_test("variant_edit")
    log(f"  {VARIANT_MODULE_EDIT} restored")
    executed = executed_targets(bep)
    ctx.results.add(f"variant edit: {VARIANT_MODULE_EDIT} (variants {', '.join(variants)})", fmt_s(run.wall_s),
                    f"bazel test {' '.join(ctx.targets)}, exit {run.rc}; load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip
    ctx.results.add("  targets executed vs expected", f"{len(executed)} vs {len(expected)}",
                    f"expected: the {len(expected)} of {len(ctx.cell_targets)} py_tests whose variant's impl is in that module; "
                    f"{edit_verdict(ctx, executed, expected)}")  # fmt: skip


def runtime_edit(ctx: Context) -> None:
    log(f"\n== 2c. runtime edit: a comment appended to {RUNTIME_EDIT} (checked with --check_tests_up_to_date, not run) ==")
    expected = {t.label for t in ctx.cell_targets}
    ctx.settle("runtime_edit")
    before = out_of_date_targets(ctx, "runtime_check_before")  # the same check unedited: it must find none
    with appended_comment(ctx.copy / RUNTIME_EDIT):
        out_of_date = out_of_date_targets(ctx, "runtime_edit")
    log(f"  {RUNTIME_EDIT} restored")
    ctx.results.add(f"runtime edit: {RUNTIME_EDIT}: targets out of date vs all", f"{len(out_of_date)} vs {len(expected)}",
                    f"bazel test --check_tests_up_to_date (tests not run); {edit_verdict(ctx, out_of_date, expected)}; "
                    f"the same check before the edit: {len(before)} out of date")  # fmt: skip
    # For Bazel the restore is one more change of the core (the check left the tests' outputs out of
    # date): the next `bazel test` runs what that change costs, timed here rather than in a settle.
    load0 = os.getloadavg()[0]
    run, bep = ctx.bazel_test("runtime_restored")
    executed = executed_targets(bep)
    ctx.results.add("  bazel test after restoring it (a second change of the core)", fmt_s(run.wall_s),
                    f"executed {len(executed)} of {len(expected)} targets, exit {run.rc}; load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip


def out_of_date_targets(ctx: Context, name: str) -> set[str]:
    """The test targets that `bazel test --check_tests_up_to_date <targets>` reports as not up to
    date (each one `ERROR: action 'Testing //...' is not up-to-date`; nothing runs)."""
    run = ctx.bazel.run(name, "test", "--keep_going", "--check_tests_up_to_date", *ctx.targets, timeout=max(ctx.left(), 60), echo=False)
    found = set(re.findall(r"action 'Testing (//[^\s']+)[^']*' is not up-to-date", run.output))
    if run.rc not in (0, 1, 3) or (run.rc != 0 and not found):  # 1/3: build/tests failed = some were out of date
        raise RuntimeError(f"bazel test --check_tests_up_to_date exit {run.rc} without naming what is out of date; see {run.log}")
    return found


def file_edit(ctx: Context) -> None:
    wanted = ctx.args.edit_test_file
    suites = {c.suite.name: c.suite for c in ctx.cells}
    suite = next((s for s in suites.values() if wanted in s.test_files), None)
    if suite is None:  # e.g. --quick: the first test file of the first suite among the targets
        suite = next(iter(suites.values()))
        log(f"  note: {wanted} is no test file of {', '.join(suites)}; using {suite.test_files[0]}")
        wanted = suite.test_files[0]
    log(f"\n== 2d. test-file edit: a comment appended to {wanted} ==")
    switched = suite.granularity != "file"
    if switched:
        ctx.set_granularities({suite.name: "file"}, "set by the file-edit step")
        ctx.resolve_cells()
        suite = next(c.suite for c in ctx.cells if c.suite.name == suite.name)
    log(f"  granularity {ctx.granularity_note()}")
    file = wanted[len(suite.directory) + 1 :]
    mine = [t for t in ctx.cell_targets if t.cell.suite.name == suite.name and file in t.test_files]
    expected = {t.label for t in mine}
    ctx.settle("file_edit")  # after a switch: every new per-file target runs here once
    if switched:  # the later steps read the reports of the targets as they are now
        ctx.bazel_reports = cell_reports(ctx.testlogs, ctx.cell_targets)
    load0 = os.getloadavg()[0]
    with appended_comment(ctx.copy / wanted):
        run, bep = ctx.bazel_test("file_edit")
        bazel_load = f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
        executed = executed_targets(bep)
        reports = cell_reports(ctx.testlogs, [t for t in ctx.cell_targets if t.label in executed])
        tests = tests_of(reports)
        others = sorted({t["nodeid"].split("::", 1)[0] for t in tests} - {file})
        plain_wall, procs, plain_load = None, [], ""
        if "plain" not in ctx.args.skip:
            load0 = os.getloadavg()[0]
            log(f"\n  plain pytest of {wanted} under {len(mine)} variant(s)/device(s): one process each, {ctx.args.jobs} at a time")
            plain_wall, procs = run_plain(mine, ctx.copy, ctx.python, ctx.args.jobs, ctx.logs / "plain_file_edit", ctx.deadline)
            plain_load = f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
            log(f"  -> {plain_wall:.1f}s")
    log(f"  {wanted} restored")
    r = ctx.results
    r.add(f"file edit: {wanted} (granularity file: {ctx.granularity_origin.get(suite.name, 'matrix.yaml')}; {'warm' if ctx.warm else 'cold'} starts)", fmt_s(run.wall_s),
          f"bazel test {' '.join(ctx.targets)}, exit {run.rc}; {bazel_load}")  # fmt: skip
    r.add("  targets executed vs expected", f"{len(executed)} vs {len(expected)}",
          f"expected: {file}'s py_test under each of the {len(mine)} variant/device cells; {edit_verdict(ctx, executed, expected)}")
    r.add("  tests executed (report.json of those targets)", str(len(tests)),
          f"all from {file}" if not others else f"ALSO FROM {', '.join(others)}")
    if plain_wall is not None:
        died = [p for p in procs if p.died]
        r.add(f"  plain pytest of {file} ({len(procs)} processes, {ctx.args.jobs} at a time)", fmt_s(plain_wall),
              f"{sum(len(p.tests) for p in procs)} tests; {plain_load}" + (f"; {len(died)} died" if died else ""))  # fmt: skip
        r.add("  file edit ratio bazel / plain", f"{run.wall_s / plain_wall:.2f}x", f"bazel {run.wall_s - plain_wall:+.1f} s (goal <= 1.5x)")
    else:
        r.missing("file edit: plain pytest side (--skip plain)")
