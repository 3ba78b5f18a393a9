"""Benchmark of the matrix under Bazel, against the same cells run by plain pytest.

    bazel run //bench:bench                                # bench_generate, bench_report, then this (--skip tools)
    bazel run //bench:bench -- --quick                     # the same on a small slice
    <pyenv>/venv/bin/python3 bench/bench_matrix.py [--quick] [--targets //:device_cpu] [--output-base /tmp/bench_ob]
    bazel run //bench:bench -- --granularity export_tests=cell,file   # cold at both granularities, edits at file

What it measures, all in one run so that the ratios are taken side by side on the same (noisy) machine:

1. cold: `bazel test <targets>` with an empty action cache and output tree (`bazel clean` + server
   restart in the benchmark's own output base; the Python environment repository is reused: by default
   the workspace's own, through --override_repository, never rebuilt), vs the same tests with the same
   variants run by plain pytest with the same plugin, no Bazel: ONE `python -m pytest` process per
   matrix cell (the whole cell, unsharded: exactly the child command cell_main starts, with its
   environment), --jobs at a time in the order of the cells; and where the time goes: the number of
   processes (plain: one per cell; Bazel: one test action per shard), interpreter + `import torch` +
   first torch.export start-up, and the sum of the test durations (plain: the plugin's journal;
   Bazel: the shards' report.json).
2. noop: `bazel test <targets>` again, nothing changed.
   With `--granularity SUITE=cell,file` the cold Bazel run is taken once per setting (export_tests
   one target per cell, then one per test file), each against the same plain run; the last setting
   stays for the steps below.
2b. variant edit: append a comment to tools/matrix/variants/package.py in the copy, `bazel test
   <targets>`: the targets that executed vs those whose variant's impl lives in that module.
2c. runtime edit: the same with tools/matrix/runtime/verdict.py (the core every cell depends on),
   checked without running the tests (`--check_tests_up_to_date`): the targets it leaves out of date
   vs all of them.
2d. test-file edit: append a comment to one test file (--edit-test-file, default
   export_tests/test_dtypes.py; its suite is switched to `granularity: file` in the copy unless it
   already is), `bazel test <targets>`: the targets and tests that executed vs that file's targets,
   and the wall time vs plain pytest running only that file under the same variants (one process
   per variant, --jobs at a time).
   Before each edit step, an untimed `bazel test <targets>` re-runs what earlier edits left out of
   date (restoring a file is one more change for Bazel's action cache).
3. incremental: add one skip entry to one variant's expectations (in a copy of the workspace),
   regenerate, `bazel test <targets>`: which targets ran (they must be exactly those running that test:
   the variant's cells, or that file's targets under `granularity: file`).
4. rerun: plant one failure (remove a real xfail entry, or add an xfail for a passing test = xpassed),
   run that variant's targets, `report --no-run`, `rerun --failed`: tests rerun vs tests failing.
5. tools: bench_generate.measure and bench_report.run_once at their sizes.
6. transform: per variant, the mean transform time, differential check time, evidence time and test
   duration per test, relative to base, and how many tests kept evidence (from the Bazel cold run's
   report.json and outputs).

Prints tables; never asserts. Every Bazel command uses the benchmark's own output base (never the
workspace's default one) with --symlink_prefix=/, and runs in a copy of the workspace, so the
workspace's files and bazel-* links are never touched. The copy's matrix.yaml / BUILD files are
restored after each edit, and the benchmark's Bazel server is shut down at the end.
"""

# The code is in matrix_bench/ (its __init__.py maps the modules); the steps are matrix_bench/steps/.

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # the workspace (under `bazel run` too: runfiles symlinks resolve to the sources)
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from matrix_bench.context import QUICK_TARGETS, Context  # noqa: E402
from matrix_bench.nested_bazel import ensure_python  # noqa: E402
from matrix_bench.steps import SKIPPABLE, run_steps  # noqa: E402
from matrix_bench.summary import log  # noqa: E402

DEFAULT_EDIT_TEST_FILE = "export_tests/test_dtypes.py"


def parse_granularity(specs: list[str]) -> list[dict[str, str]]:
    """`--granularity SUITE=G[,G...]` (repeatable) -> the settings of the cold runs, in order: the k-th
    holds each named suite's k-th value (its last one when it lists fewer). ValueError on bad input."""
    from tools.matrix.config import GRANULARITIES

    per_suite: dict[str, list[str]] = {}
    for spec in specs:
        suite, sep, values = spec.partition("=")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not suite.strip() or not choices:
            raise ValueError(f"{spec!r}: expected SUITE=G[,G...] with G one of {', '.join(GRANULARITIES)}")
        bad = [v for v in choices if v not in GRANULARITIES]
        if bad:
            raise ValueError(f"{spec!r}: {', '.join(bad)} is not one of {', '.join(GRANULARITIES)}")
        if suite.strip() in per_suite:
            raise ValueError(f"{spec!r}: suite {suite.strip()} given twice (list its settings in one option: {suite.strip()}=cell,file)")
        per_suite[suite.strip()] = choices
    runs = max((len(v) for v in per_suite.values()), default=0)
    return [{suite: values[min(k, len(values) - 1)] for suite, values in per_suite.items()} for k in range(runs)]



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1]
    )
    p.add_argument(
        "--targets",
        action="append",
        default=[],
        help="Bazel target patterns (repeatable or comma-separated; default //:device_cpu, every CPU cell)",
    )
    p.add_argument("--quick", action="store_true", help=f"a small slice: {' '.join(QUICK_TARGETS)} (their CPU cells)")
    p.add_argument(
        "--workspace",
        default=os.environ.get("BUILD_WORKSPACE_DIRECTORY") or str(ROOT),
        help="the matrix workspace (default: where `bazel run` was called)",
    )
    p.add_argument(
        "--output-base",
        default="/tmp/bench_ob",
        help="the benchmark's own Bazel output base (default /tmp/bench_ob; never the workspace's)",
    )
    p.add_argument(
        "--copy",
        default="/tmp/bench_ws",
        help="where to copy the workspace to (default /tmp/bench_ws; removed at the end unless --keep-copy)",
    )
    p.add_argument("--keep-copy", action="store_true")
    p.add_argument(
        "--pyenv",
        default="auto",
        help="the @pyenv repository to reuse (auto: this interpreter's / the workspace's), or `own` to build one in the output base",
    )
    p.add_argument(
        "--jobs", type=int, default=2, help="tests at a time, for both Bazel (--local_test_jobs) and the plain processes (default 2)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="cold bazel + plain rounds, alternating (default 1, --quick 2); the ratio's median is shown",
    )
    p.add_argument("--repeat", type=int, default=3, help="repetitions of the start-up probes (default 3)")
    p.add_argument("--skip", action="append", default=[], choices=SKIPPABLE, help="leave a measurement out (repeatable)")
    p.add_argument(
        "--granularity",
        action="append",
        default=[],
        metavar="SUITE=G[,G...]",
        help="set a suite's granularity (cell|file) in the copy before the cold run (repeatable); with several values, one cold "
        "Bazel run per value against the same plain run, the last one kept for the later steps (e.g. export_tests=cell,file)",
    )
    p.add_argument(
        "--starts",
        default="cold",
        metavar="cold[,warm]",
        help="how the test processes start in the cold Bazel runs: cold (MATRIX_WARM=off), warm (a fresh warm launcher per run: "
        "its zygote's start is in the time), or both in turn; the last stays for the later steps (default cold)",
    )
    p.add_argument(
        "--edit-test-file",
        default=DEFAULT_EDIT_TEST_FILE,
        help=f"the test file the file-edit step appends a comment to (default {DEFAULT_EDIT_TEST_FILE}; its suite is set to "
        "granularity: file in the copy unless it already is)",
    )
    p.add_argument(
        "--budget-min", type=float, default=None, help="stop starting measurements after this many minutes (default 240, --quick 90)"
    )
    args = p.parse_args(argv)
    try:
        args.granularity_runs = parse_granularity(args.granularity)
    except ValueError as e:
        p.error(f"--granularity {e}")
    args.starts = [s.strip() for s in args.starts.split(",") if s.strip()]
    if not args.starts or set(args.starts) - {"cold", "warm"}:
        p.error(f"--starts {','.join(args.starts)!r}: cold, warm or cold,warm")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 1
    args.rounds = max(1, args.rounds)
    if args.budget_min is None:
        args.budget_min = 90.0 if args.quick else 240.0
    return args




def run(args: argparse.Namespace) -> int:
    """Set up, run the steps, clean up what this run owns, print the summary table."""
    ctx = Context(args)
    try:
        ctx.setup()
        ctx.results.add("python environment", "", ctx.pyenv_note)
        run_steps(ctx)
    except KeyboardInterrupt:
        log("\ninterrupted: cleaning up")
        ctx.results.missing("the rest: interrupted")
    finally:
        ctx.close()
    ctx.results.print()
    log(f"\ntotal {time.time() - ctx.started:.0f} s; logs in {ctx.logs or '-'}; output base {args.output_base} "
        f"(remove it with `bazel --output_base={args.output_base} clean --expunge`)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_python(Path(args.workspace))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
