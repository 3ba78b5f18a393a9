"""The per-variant cost table (step 6, transform): per variant of a suite, what a test costs in transform,
differential check and evidence time, relative to the same tests under the suite's base (from the
shards' report.json)."""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass
from typing import Any

VARIANT_COST_HEADER = (
    f"{'suite':<14} {'variant':<16} {'tests':>6} {'mean test s':>12} {'mean transform s':>17} {'test vs base':>13} "
    f"{'transform / base test':>22} {'mean check s':>13} {'mean evidence s':>16} {'kept evidence':>14}  differential check (all tests)"
)


@dataclass
class VariantCost:
    """One variant of one suite. The means are over the tests that passed both here and under the
    suite's base; `kept_evidence` and `verdicts` count all of the variant's tests."""

    suite: str
    variant: str
    tests: int  # passed here and under base
    mean_test_s: float = 0.0
    mean_transform_s: float = 0.0
    ratio: float = float("nan")  # mean test time / the same tests' mean under base
    share: float = float("nan")  # mean transform time / the same tests' mean under base
    mean_check_s: float = 0.0  # runtime/transform_check.py (check_s)
    mean_evidence_s: float = 0.0  # recording evidence, kept or not (runtime/evidence.py, evidence_s)
    kept_evidence: int = 0  # tests whose evidence the shard's outputs hold (failed, xfailed, crashed, ...)
    verdicts: str = ""  # "3 failed, 40 passed, 2 none"

    def line(self) -> str:
        if not self.tests:
            return f"{self.suite:<14} {self.variant:<16} {0:>6}  (no test passed in both this variant and base); kept evidence: {self.kept_evidence}"
        return (
            f"{self.suite:<14} {self.variant:<16} {self.tests:>6} {self.mean_test_s:>12.4f} {self.mean_transform_s:>17.4f} "
            f"{self.ratio:>12.2f}x {self.share:>21.2f}x {self.mean_check_s:>13.4f} {self.mean_evidence_s:>16.4f} {self.kept_evidence:>14}  {self.verdicts}"
        )

    def note(self) -> str:
        return (
            f"{self.tests} tests; mean {self.mean_test_s * 1000:.1f} ms/test, transform {self.mean_transform_s * 1000:.1f} ms/test = "
            f"{self.share:.2f}x base test, check {self.mean_check_s * 1000:.1f} ms/test, evidence {self.mean_evidence_s * 1000:.1f} ms/test "
            f"({self.kept_evidence} tests kept it); check verdicts: {self.verdicts}"
        )


def _mean(matrix: dict[Any, dict[str, Any]], keys: list[Any], name: str) -> float:
    """The mean of a metadata.matrix field over `keys` (absent or None: 0)."""
    return statistics.mean(float(matrix[k].get(name) or 0) for k in keys)


def variant_costs(per: dict[tuple[str, str], dict[Any, dict[str, Any]]]) -> list[VariantCost]:
    """(suite, variant) -> {(device, nodeid): report.json test (with cell_reports' evidence_kept)}:
    one VariantCost each, base first within a suite."""
    costs = []
    for (suite, variant), tests in sorted(per.items(), key=lambda kv: (kv[0][0], kv[0][1] != "base", kv[0][1])):
        matrix = {k: t["metadata"]["matrix"] for k, t in tests.items()}
        base = {k: t["metadata"]["matrix"] for k, t in per.get((suite, "base"), {}).items()}
        common = [k for k, m in matrix.items() if m["status"] == "passed" and base.get(k, {}).get("status") == "passed"]
        cost = VariantCost(suite, variant, len(common), kept_evidence=sum(bool(t.get("evidence_kept")) for t in tests.values()))
        verdicts = collections.Counter(str(m.get("transform_check") or "none").split(":", 1)[0].split(" (", 1)[0] for m in matrix.values())
        cost.verdicts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
        if common:
            cost.mean_test_s, cost.mean_transform_s = _mean(matrix, common, "duration_s"), _mean(matrix, common, "transform_s")
            cost.mean_check_s, cost.mean_evidence_s = _mean(matrix, common, "check_s"), _mean(matrix, common, "evidence_s")
            mean_base = _mean(base, common, "duration_s")
            if mean_base:
                cost.ratio, cost.share = cost.mean_test_s / mean_base, cost.mean_transform_s / mean_base
        costs.append(cost)
    return costs
