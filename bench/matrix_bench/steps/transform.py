"""Step 6, transform: per variant of a suite, the mean transform, differential-check and evidence time and
test duration per test, relative to base, and how many tests kept evidence (the cold run's report.json
and outputs; the table is variant_costs.py's)."""

from __future__ import annotations

from typing import Any

from matrix_bench.context import Context
from matrix_bench.run_outputs import tests_of
from matrix_bench.summary import log
from matrix_bench.variant_costs import VARIANT_COST_HEADER, variant_costs


def transform(ctx: Context) -> None:
    log("\n== 6. per variant: transform, differential-check and evidence cost per test, relative to base (cold run's report.json) ==")
    per: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
    for target in ctx.cell_targets:
        c = target.cell
        tests = per.setdefault((c.suite.name, c.variant.name), {})
        for t in tests_of(ctx.bazel_reports, target.label):
            tests[(c.device.name, t["nodeid"])] = t
    if not per:
        ctx.results.missing("transform: no report.json from the cold run")
        return
    log(VARIANT_COST_HEADER)
    ctx.results.add("transform per test (passed in both; ratios to the suite's base)", "", "")
    for cost in variant_costs(per):
        log(cost.line())
        if cost.tests:
            ctx.results.add(f"  {cost.suite}/{cost.variant}", f"{cost.ratio:.2f}x", cost.note())
