"""Step 4, selective rerun: plant one failure in the copy's matrix.yaml (remove a real xfail entry, or add
an xfail for a passing test = xpassed), run that variant's targets, `report --no-run`, `rerun --failed`:
the tests rerun must be exactly the failing ones."""

from __future__ import annotations

import argparse
import re
import time

from matrix_bench.context import Context
from matrix_bench.copy_edits import MatrixEdit, add_entry, matrix_cli, remove_entry
from matrix_bench.run_outputs import cell_reports, executed_targets, pick_test
from matrix_bench.summary import fmt_s, log


def planted_failure(ctx: Context) -> tuple[str, str, str, str, str] | None:
    """(how, suite, variant, device, test id): a real xfail entry of a cell among the targets to remove,
    if there is one; else a passing test to add an xfail for. The cheapest variant first, preferably not
    the one the incremental step edited."""
    by_cost = ctx.variants_by_cost(with_base=True)
    prefer = [k for k in by_cost if k != ctx.incremental_variant] + by_cost
    for s, v in prefer:
        cell = next((c for c in ctx.cells if (c.suite.name, c.variant.name) == (s, v) and c.expectations.xfail), None)
        if cell:
            return ("remove", s, v, cell.device.name, cell.expectations.xfail[0][0])
    for s, v in prefer:
        nodeid = next(
            (pick_test(ctx.bazel_reports, lab) for lab in sorted(ctx.expected_labels(s, v)) if pick_test(ctx.bazel_reports, lab)),
            None,
        )
        if nodeid:
            return ("add", s, v, "", nodeid)
    return None


def rerun(ctx: Context) -> None:
    log("\n== 4. selective rerun: plant one failure, report, rerun --failed ==")
    from tools.matrix import rerun as matrix_rerun
    from tools.matrix import statuses
    from tools.matrix.filters import RERUN_FAILED
    from tools.matrix.report import COMPAT_JSON, load_json

    planted = planted_failure(ctx)
    if planted is None:
        ctx.results.missing("rerun: no xfail entry and no passing test among the targets to plant a failure with")
        return
    how, suite, variant, device, nodeid = planted
    labels = sorted(ctx.expected_labels(suite, variant))
    flags = ["--failed"] if how == "remove" else ["--failed", "--xpassed"]  # an xpass is not a --failed status
    out_dir = ctx.logs / "reports"
    with MatrixEdit(ctx.copy, ctx.python, ctx.tool_env) as edit:
        if how == "remove":
            changed = edit.change(remove_entry(suite, variant, device, nodeid))
        else:
            changed = edit.change(
                add_entry(suite, variant, "xfail", nodeid, "bench_matrix: planted xfail for a passing test (expect xpassed)")
            )
        log(edit.diff.rstrip())
        log(f"  regenerated: {', '.join(changed) or '(nothing)'}")
        run = ctx.bazel.run("planted", "test", "--keep_going", *labels, timeout=max(ctx.left(), 60))
        rep = matrix_cli(ctx.copy, ctx.python, ctx.tool_env, "report", "--no-run", "--out", str(out_dir), timeout=max(ctx.left(), 60))
        (ctx.logs / "report_no_run.log").write_text(rep.stdout + rep.stderr)
        if not (out_dir / COMPAT_JSON).is_file():
            raise RuntimeError(f"report --no-run wrote no {COMPAT_JSON} (exit {rep.returncode}); see {ctx.logs / 'report_no_run.log'}")
        records = load_json(out_dir / COMPAT_JSON)[1]
        wanted = RERUN_FAILED | ({statuses.XPASSED} if "--xpassed" in flags else frozenset())
        failing = {(r.target, r.test) for r in records if r.status in wanted}
        ns = argparse.Namespace(suite=[], variant=[], device=[], tests=[], failed=True, xpassed="--xpassed" in flags)
        groups = matrix_rerun.plan(ctx.matrix_now(), ns, records)
        planned = {label for labels in groups.values() for label in labels}  # the targets rerun may run
        log(f"  report: {len(failing)} failing test(s) ({', '.join(sorted(wanted))}) in {len({t for t, _ in failing})} target(s)")
        t = time.monotonic()
        rr = matrix_cli(ctx.copy, ctx.python, ctx.tool_env, "rerun", *flags, "--out", str(out_dir), timeout=max(ctx.left(), 60))
        rerun_s = time.monotonic() - t
        (ctx.logs / "rerun.log").write_text(rr.stdout + rr.stderr)
        for line in (rr.stdout + rr.stderr).splitlines():
            if line.startswith(("+ ", "rerun:", "nothing to rerun", "error:", "Executed")):
                log("    | " + line[:300])
        ran_targets = set().union(*(executed_targets(b) for b in sorted(out_dir.glob("bep.*.json"))))
        # Only what the rerun executed: a target it did not run still holds the planted run's report.
        after = cell_reports(ctx.testlogs, [t for t in ctx.matrix_now().targets() if t.label in planned & ran_targets])
        rerun_tests = {(lab, t["nodeid"]) for (lab, _s), rep_ in after.items() for t in rep_.get("tests", [])}
    log("  matrix.yaml and BUILD files of the copy restored")
    execs = re.findall(r"Executed (\d+) out of (\d+) tests?", rr.stdout + rr.stderr)
    what = f"{'xfail removed' if how == 'remove' else 'xfail added (xpass)'}: {nodeid}"
    ctx.results.add(
        f"rerun: one failure planted in {suite}/{variant}",
        fmt_s(run.wall_s),
        f"bazel test of its {len(labels)} target(s), exit {run.rc}; {what}",
    )
    per_target: dict[str, int] = {}
    for target, _test in failing:
        per_target[target] = per_target.get(target, 0) + 1
    ctx.results.add(
        "  report --no-run: failing tests", str(len(failing)), ", ".join(f"{k} {n}" for k, n in sorted(per_target.items()))
    )
    note = f"`rerun {' '.join(flags)}` exit {rr.returncode} in {rerun_s:.1f}s; targets executed: {', '.join(sorted(ran_targets)) or '(none)'}"
    if execs:
        note += f"; bazel: executed {'+'.join(e[0] for e in execs)} target(s)"
    ctx.results.add("  rerun: tests executed", str(len(rerun_tests)), note)
    verdict = (
        "equal (target met)"
        if rerun_tests == failing
        else (f"DIFFERENT: {len(rerun_tests - failing)} extra, {len(failing - rerun_tests)} missing")
    )
    ctx.results.add("  rerun tests vs failing tests", f"{len(rerun_tests)} vs {len(failing)}", verdict)
