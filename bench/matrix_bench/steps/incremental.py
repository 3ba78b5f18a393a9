"""Step 3, incremental: one skip entry added to one variant's expectations in the copy's matrix.yaml,
regenerated, `bazel test <targets>`: the targets that ran must be exactly those running that test (the
variant's cells, or that file's targets under `granularity: file`)."""

from __future__ import annotations

from matrix_bench.context import Context
from matrix_bench.copy_edits import MatrixEdit, add_entry
from matrix_bench.run_outputs import executed_targets, pick_test
from matrix_bench.summary import fmt_s, log

SOURCE_EDIT_STEPS = ("variant_edit", "runtime_edit", "file_edit")  # they leave the build out of date (steps/source_edits.py)


def incremental(ctx: Context) -> None:
    if any(s not in ctx.args.skip for s in SOURCE_EDIT_STEPS):
        ctx.settle("incremental")
    log("\n== 3. incremental: one skip entry added to one variant's expectations ==")
    choice = next(((s, v, pick_test(ctx.bazel_reports, lab)) for s, v in ctx.variants_by_cost() for lab in sorted(ctx.expected_labels(s, v))
                   if pick_test(ctx.bazel_reports, lab)), None)  # fmt: skip
    if choice is None:
        ctx.results.missing("incremental: no non-base variant with a passing test among the targets")
        return
    suite, variant, nodeid = choice
    ctx.incremental_variant = (suite, variant)
    # The targets that run that test, one per device (the whole cell's, or its file's under `granularity: file`).
    expected = {c.target_of(nodeid).label for c in ctx.cells if (c.suite.name, c.variant.name) == (suite, variant)}
    with MatrixEdit(ctx.copy, ctx.python, ctx.tool_env) as edit:
        changed = edit.change(add_entry(suite, variant, "skip", nodeid, "bench_matrix: incremental-build probe"))
        log(edit.diff.rstrip())
        log(f"  regenerated: {', '.join(changed) or '(nothing)'}")
        run, bep = ctx.bazel_test("incremental")
    log("  matrix.yaml and BUILD files of the copy restored")
    executed = executed_targets(bep)
    ex = run.executed
    # A target that failed before runs again anyway (failures are never cached): not caused by the edit.
    cacheable = executed - (ctx.cold_failed - expected)
    verdict = "exactly the targets running that test" if cacheable == expected else f"DIFFERENT: expected {sorted(expected)}, got {sorted(cacheable)}"
    ctx.results.add(f"incremental: one skip added to {suite}/{variant}", fmt_s(run.wall_s),
                    (f"executed {ex[0]} out of {ex[1]} tests" if ex else f"exit {run.rc}") + f"; skip {nodeid}")  # fmt: skip
    ctx.results.add("  targets executed", str(len(executed)), f"{', '.join(sorted(cacheable)) or '(none)'}: {verdict}"
                    + (f"; plus {len(executed - cacheable)} that failed before (never cached)" if executed - cacheable else ""))  # fmt: skip
