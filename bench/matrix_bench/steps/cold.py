"""Step 1, cold: `bazel test <targets>` from an empty action cache and output tree (`bazel clean` + server
restart; @pyenv kept), once per --granularity setting, against the same cells run by plain pytest (one
process per cell), for --rounds rounds; then where the time goes (processes, start-up, test durations).
Leaves the last run's reports and failures in the context for the later steps."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from matrix_bench.context import Context
from matrix_bench.nested_bazel import BazelRun
from matrix_bench.plain_pytest import PlainProcess, run_plain, startup_probe, whole_cell
from matrix_bench.run_outputs import cell_reports, failed_targets, read_bep_durations, restarts, sum_durations, tests_of
from matrix_bench.summary import fmt_s, log


@dataclass
class ColdRun:
    """One cold `bazel test` of a round, at one granularity setting."""

    setting: str  # `export_tests=file`, or "" for matrix.yaml as it is
    run: BazelRun
    bep: Path
    targets: int  # py_tests among the targets
    shards: int
    load: str


@dataclass
class Round:
    """The cold Bazel runs of one round (one per setting), then the plain pytest side (None: not run)."""

    colds: list[ColdRun]
    plain_wall: float | None = None
    plain: list[PlainProcess] = field(default_factory=list)
    plain_load: str = ""


def describe(setting: dict[str, str]) -> str:
    return ", ".join(f"{suite}={g}" for suite, g in setting.items())


def cold(ctx: Context) -> None:
    log("\n== 1. cold matrix: bazel test (empty action cache) vs plain pytest, one process per cell ==")
    t = time.monotonic()
    warm = ctx.bazel.run("warmup", "build", "--nobuild", *ctx.targets, timeout=min(3600, ctx.left()), echo=False)
    setup_s = time.monotonic() - t
    if warm.rc != 0:
        raise RuntimeError(f"bazel build --nobuild failed; see {warm.log}")
    ctx.resolve_cells()
    ctx.results.add(
        "setup (not in cold): server start + loading + analysis",
        fmt_s(setup_s),
        "bazel build --nobuild; then per round bazel clean + shutdown",
    )
    cells = len(ctx.cells)
    rounds = measure_rounds(ctx)
    if "plain" in ctx.args.skip:
        ctx.results.missing("cold plain pytest (--skip plain)")
    last = rounds[-1].colds[-1]
    ctx.cold_failed = failed_targets(last.bep)
    ctx.testlogs = ctx.bazel.info("bazel-testlogs")
    ctx.bazel_reports = cell_reports(ctx.testlogs, ctx.cell_targets)
    add_round_rows(ctx, rounds, cells)
    r = ctx.results
    r.add("  bazel processes (last run)", "", last.run.processes)
    if ctx.cold_failed:
        r.add("  targets failing in the cold run", str(len(ctx.cold_failed)), ", ".join(sorted(ctx.cold_failed)))
    missing = [f"{t.label} shard {s + 1}" for t in ctx.cell_targets for s in range(t.shard_count) if (t.label, s) not in ctx.bazel_reports]
    if missing:
        log(f"  note: no report.json for {len(missing)} shard(s): {', '.join(missing[:8])}")
    if rounds[-1].plain:
        add_where_the_time_goes(ctx, rounds[-1], last)


def measure_rounds(ctx: Context) -> list[Round]:
    """--rounds rounds, each the cold Bazel run of every granularity setting, then plain pytest."""
    cells, jobs = len(ctx.cells), ctx.args.jobs
    settings = ctx.granularity_runs or [{}]
    rounds: list[Round] = []
    for i in range(ctx.args.rounds):
        if i and not ctx.budget_ok(f"cold round {i + 1}", 120):
            break
        # Bazel first: its testlogs of the last round (and last setting) are what the later steps read.
        colds: list[ColdRun] = []
        runs = [(setting, start) for setting in settings for start in ctx.args.starts]
        for k, (setting, start) in enumerate(runs):
            name = ", ".join(x for x in (describe(setting), start if len(ctx.args.starts) > 1 else "") if x)
            if k and not ctx.budget_ok(f"cold round {i + 1}, {name}", 120):
                break
            if setting and ctx.set_granularities(setting, "--granularity"):
                ctx.resolve_cells()
            ctx.set_start(start)
            load0 = os.getloadavg()[0]
            run, bep = cold_bazel(ctx, i, k if len(runs) > 1 else None)
            colds.append(ColdRun(name, run, bep, len(ctx.cell_targets), sum(t.shard_count for t in ctx.cell_targets),
                                 f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"))  # fmt: skip
        this = Round(colds)
        load0 = os.getloadavg()[0]
        if "plain" not in ctx.args.skip and ctx.budget_ok(f"cold plain pytest, round {i + 1}"):
            log(f"\n  plain pytest, round {i + 1}: {cells} processes (one per cell), {jobs} at a time, python {ctx.python}")
            this.plain_wall, this.plain = run_plain([whole_cell(c) for c in ctx.cells], ctx.copy, ctx.python, jobs, ctx.logs / f"plain{i + 1}", ctx.deadline)
            log(f"  -> {this.plain_wall:.1f}s")
        this.plain_load = f"load avg {load0:.1f} -> {os.getloadavg()[0]:.1f}"
        rounds.append(this)
    return rounds


def cold_bazel(ctx: Context, i: int, setting: int | None = None) -> tuple[BazelRun, Path]:
    """`bazel clean`, server shut down, then the timed `bazel test <targets>`: (the run, its BEP file)."""
    external = ctx.output_base / "external" / "pyenv"
    before = external.stat().st_mtime if external.exists() else None
    ctx.bazel.run("clean", "clean", timeout=600, echo=False)
    ctx.bazel.shutdown()  # the cold run includes the server's start
    name = f"cold{i + 1}" + (f"_setting{setting + 1}" if setting is not None else "")
    run, bep = ctx.bazel_test(name)
    after = external.stat().st_mtime if external.exists() else None
    if ctx.pyenv is None and before != after:
        log("  note: @pyenv was refetched by the cold run (`bazel clean` did not keep it): the cold time includes it")
    return run, bep


def add_round_rows(ctx: Context, rounds: list[Round], cells: int) -> None:
    """Per round: each cold Bazel run, the plain run, their ratios; then the ratios' medians."""
    r, jobs = ctx.results, ctx.args.jobs
    bazel_tests = tests_of(ctx.bazel_reports)
    ratios: dict[str, list[float]] = {}
    for i, rnd in enumerate(rounds):
        tag = f"round {i + 1}: " if len(rounds) > 1 else ""
        for c in rnd.colds:
            b, ex = c.run, c.run.executed
            setting = f" [{c.setting}]" if c.setting else ""
            r.add(f"cold {tag}bazel test{setting} ({cells} cells, {c.targets} py_tests, {c.shards} shards)", fmt_s(b.wall_s),
                  (f"exit {b.rc}; executed {ex[0]}/{ex[1]} targets" if ex else f"exit {b.rc}") + ("; TIMED OUT" if b.timed_out else "") + f"; {c.load}")  # fmt: skip
        if rnd.plain_wall is not None:
            wall, procs = rnd.plain_wall, rnd.plain
            died = [p for p in procs if p.died]
            r.add(
                f"cold {tag}plain pytest ({len(procs)} processes, {jobs} at a time)",
                fmt_s(wall),
                f"{sum(len(p.tests) for p in procs)} tests (bazel, last run: {len(bazel_tests)}); {rnd.plain_load}"
                + (f"; {len(died)} died: {', '.join(p.label for p in died)}" if died else ""),
            )
            for c in rnd.colds:
                setting = f" [{c.setting}]" if c.setting else ""
                r.add(f"cold {tag}ratio bazel{setting} / plain", f"{c.run.wall_s / wall:.2f}x", f"bazel {c.run.wall_s - wall:+.1f} s")
                ratios.setdefault(c.setting, []).append(c.run.wall_s / wall)
    for setting, values in ratios.items():
        if len(values) > 1:
            r.add(f"cold ratio bazel{f' [{setting}]' if setting else ''} / plain, median of rounds", f"{statistics.median(values):.2f}x",
                  "  ".join(f"{x:.2f}x" for x in values))  # fmt: skip


def add_where_the_time_goes(ctx: Context, last_round: Round, cold: ColdRun) -> None:
    """The start-up probes, and the last round's processes, start-up costs and test durations, both sides."""
    jobs, procs, plain_wall = ctx.args.jobs, last_round.plain, last_round.plain_wall
    log("\n  start-up probes (sequential, few repetitions)")
    probe = startup_probe(ctx.python, ctx.args.repeat, {k: v for k, v in ctx.bazel.env.items()})
    startup_s = probe["import_torch_process_s"] + probe["first_export_s"]
    shards = sum(t.shard_count for t in ctx.cell_targets)
    plain_tests, bazel_tests = [t for p in procs for t in p.tests], tests_of(ctx.bazel_reports)
    sum_plain, sum_bazel = sum_durations(plain_tests), sum_durations(bazel_tests)
    bazel_restarts = restarts(ctx.bazel_reports)
    bazel_children = shards + bazel_restarts
    sum_proc_wall = sum(p.wall_s for p in procs)
    died = [p for p in procs if p.died]
    collect_errors = sum(p.collect_errors for p in procs)
    bep = read_bep_durations(cold.bep)
    log("\n  where the time goes (cold, last round)")
    rows = [
        ("plain pytest processes (one per cell)", f"{len(procs)}", "python -m pytest -p tools.matrix.runtime.plugin: the child cell_main would start, whole cell"
         + (f"; {len(died)} died ({', '.join(p.label for p in died)})" if died else "") + (f"; {collect_errors} collection errors" if collect_errors else "")),
        ("bazel test actions (shards)", f"{shards}", f"each a cell_main + its pytest child ({bazel_children} children, {bazel_restarts} crash restarts)"),
        ("python -c pass", fmt_s(probe["python_s"]), f"mean of {ctx.args.repeat}"),
        ('python -c "import torch" (whole process)', fmt_s(probe["import_torch_process_s"]), f"min {probe['import_torch_min_s']:.2f} / max {probe['import_torch_max_s']:.2f}"),
        ("import torch (in process)", fmt_s(probe["import_s"]), ""),
        ("first torch.export.export (tiny module)", fmt_s(probe["first_export_s"]), f"second call {probe['second_export_s']:.2f} s"),
        ("start-up x plain processes", fmt_s(len(procs) * startup_s), f"(import torch + first export) x {len(procs)}, {jobs} at a time"),
        ("start-up x bazel pytest children", fmt_s(bazel_children * startup_s), f"(import torch + first export) x {bazel_children}, {jobs} at a time"),
        ("sum of test durations (journal), plain", fmt_s(sum_plain), f"{len(plain_tests)} tests"),
        ("sum of test durations (report.json), bazel", fmt_s(sum_bazel), f"{len(bazel_tests)} tests"),
        ("sum of process walls, plain", fmt_s(sum_proc_wall), f"beyond test durations {sum_proc_wall - sum_plain:.1f} s = {(sum_proc_wall - sum_plain) / max(len(procs), 1):.1f} s per process"),
        ("plain lower bound: sum of process walls / jobs", fmt_s(sum_proc_wall / jobs), f"ideal packing on {jobs} slots (plain wall {fmt_s(plain_wall or 0.0)})"),
        ("plain wall not covered by processes", fmt_s((plain_wall or 0.0) - sum_proc_wall / jobs), f"wall - sum of process walls / {jobs} (imperfect packing)"),
    ]  # fmt: skip
    if bep:
        s = sum(bep.values())
        extra = len(bep) - len(procs)
        rows += [
            ("sum of test action durations, bazel (BEP)", fmt_s(s), f"{len(bep)} actions; {s - sum_proc_wall:+.1f} s vs the {len(procs)} plain processes"
             + (f" = {(s - sum_proc_wall) / extra:+.1f} s per extra process" if extra > 0 else "")),
            ("bazel lower bound: sum of action durations / jobs", fmt_s(s / jobs), f"ideal packing on {jobs} slots"),
            ("bazel wall not covered by test actions", fmt_s(cold.run.wall_s - s / jobs), f"wall - sum of action durations / {jobs}: server start, loading, analysis, runfiles trees, packing"),
        ]  # fmt: skip
    for row in rows:
        ctx.results.add("  " + row[0], row[1], row[2])
        log(f"    {row[0]:<50} {row[1]:>9}  {row[2]}")
