"""Step 2, no-op: `bazel test <targets>` again, nothing changed: what Bazel executes anyway."""

from __future__ import annotations

from matrix_bench.context import Context
from matrix_bench.run_outputs import executed_targets
from matrix_bench.summary import fmt_s, log


def noop(ctx: Context) -> None:
    log("\n== 2. no-op: bazel test again, nothing changed ==")
    run, bep = ctx.bazel_test("noop", timeout=min(3600, ctx.left()))
    ex = run.executed
    executed = executed_targets(bep)
    ctx.results.add(
        "no-op bazel test", fmt_s(run.wall_s), f"executed {ex[0]} out of {ex[1]} tests" if ex else f"exit {run.rc} (no 'Executed' line)"
    )
    if executed:
        others = executed - ctx.cold_failed
        ctx.results.add("  targets executed", str(len(executed)), f"{len(executed & ctx.cold_failed)} failed in the cold run (Bazel never caches a failed test)"
                        + (f"; {len(others)} others: {', '.join(sorted(others))}" if others else "; no other"))  # fmt: skip
