"""The benchmark's steps, in the order they run, and the loop that runs them.

A step is a function of the shared Context (matrix_bench/context.py): it logs as it goes and adds rows
to ctx.results. One that raises is listed under "not measured" and the next one still runs. To add a
step, write its function in a module of this package and list it in STEPS; its name is also its
`--skip` choice."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from matrix_bench.context import Context
from matrix_bench.steps.cold import cold
from matrix_bench.steps.incremental import incremental
from matrix_bench.steps.noop import noop
from matrix_bench.steps.rerun import rerun
from matrix_bench.steps.source_edits import file_edit, runtime_edit, variant_edit
from matrix_bench.steps.tools import tools
from matrix_bench.steps.transform import transform


@dataclass(frozen=True)
class Step:
    name: str
    measure: Callable[[Context], None]
    needs_cold: bool = True  # reads what the cold step leaves (its reports and failures, a built output tree)
    skippable: bool = True  # a --skip choice


COLD = Step("cold", cold, needs_cold=False, skippable=False)
STEPS = (
    COLD,
    Step("noop", noop),
    Step("variant_edit", variant_edit),
    Step("runtime_edit", runtime_edit),
    Step("file_edit", file_edit),
    Step("incremental", incremental),
    Step("rerun", rerun),
    Step("transform", transform, skippable=False),
    Step("tools", tools, needs_cold=False),
)
# `--skip plain` leaves out the plain-pytest side of the cold and file-edit steps: not a step of its own.
SKIPPABLE = ("plain", *(s.name for s in STEPS if s.skippable))


def run_step(ctx: Context, step: Step) -> bool:
    """Run one step unless --skip names it or the time budget ran out; False when it did not complete."""
    if step.name in ctx.args.skip:
        ctx.results.missing(f"{step.name} (--skip {step.name})")
        return False
    if not ctx.budget_ok(step.name):
        return False
    try:
        step.measure(ctx)
        return True
    except (Exception, subprocess.TimeoutExpired) as e:  # report and go on: one broken step must not hide the others
        ctx.results.missing(f"{step.name}: {type(e).__name__}: {str(e)[:500]}")
        return False


def run_steps(ctx: Context, steps: tuple[Step, ...] = STEPS) -> None:
    """Each step in order; when the cold step does not complete, the steps that need it are left out."""
    cold_ok = True
    for step in steps:
        if step.needs_cold and not cold_ok:
            continue
        if not run_step(ctx, step) and step.name == COLD.name:
            cold_ok = False
            ctx.results.missing(f"{', '.join(s.name for s in steps if s.needs_cold)}: they need the cold run")
