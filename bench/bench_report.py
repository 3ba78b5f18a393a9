"""Benchmark of the report renderers: write_reports (json + md + html) and terminal_summary.

    python bench/bench_report.py [--sizes 10000,100000,300000] [--profile]

Generates synthetic records (realistic status mix, ~300-character failure messages), times each size and
prints seconds and the growth ratio relative to the previous size. Prints only; never asserts.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.matrix import statuses
from tools.matrix.records import Record, RunInfo
from tools.matrix.report import compare, terminal_summary, write_reports, writer

SUITES = {
    "export_tests": ["base", "cpp_serdes", "retrace", "package", "serdes", "strict", "run_decomp"],
    "package_tests": ["base", "from_directory", "from_bytes"],
    "dynamo_tests": ["base", "dynamo_package", "dynamo_reexport"],
}
DEVICES = ["cpu", "cuda"]
SIZES = (10000, 100000, 300000)  # records; bench_matrix.py imports these
MIX = [  # (status, weight)
    (statuses.PASSED, 78), (statuses.XFAILED, 8), (statuses.FAILED, 5), (statuses.SKIPPED, 5), (statuses.XPASSED, 1),
    (statuses.ERROR, 1), (statuses.CRASHED, 0.5), (statuses.TIMEOUT, 0.5), (statuses.NOT_RUN, 1),
]
ERRORS = [
    ("AssertionError", "Tensor-likes are not close! Mismatched elements: {n} / {m} ({p}%) Greatest absolute difference: 0.{n}{m} at index ({n}, {p}) (up to 1e-05 allowed) Greatest relative difference: 0.{p}{n} at index ({p}, {n}) (up to 1.3e-06 allowed) for output of shape [{n}, {m}] in test case {name}"),
    ("RuntimeError", "Cannot serialize node 'L__self___layers_{n}_linear' of type torch.fx.Node at 0x7f{n}a{m}c: the schema of aten::_native_batch_norm_legit_functional.default expects argument 'running_mean' of shape [{m}] but got [{n}, {m}] while processing /tmp/pytest-of-ci/pytest-{p}/test_{name}0/model.pt2 in variant"),
    ("torch._dynamo.exc.Unsupported", "call_function BuiltinVariable(setattr) [UserDefinedObjectVariable(Config), ConstantVariable(str: 'mode_{n}'), ConstantVariable(int: {m})] {{}} graph break in user code at /tmp/tmp{name}abcdef/mod.py line {p}; consider torch._dynamo.allow_in_graph or refactor the side effect"),
    ("KeyError", "Missing key(s) in state_dict: \"layer{n}.weight\", \"layer{n}.bias\", \"buffer_{m}\" when loading the package from /tmp/tmpq{name}xyz/pkg/archive/data.pkl after round trip through torch.package.PackageImporter with {p} modules mocked"),
]


def make_records(n: int, seed: int = 0, run_id: str = "bench") -> list[Record]:
    rng = random.Random(seed)
    cells = [(s, v, d) for s, vs in SUITES.items() for v in vs for d in DEVICES]
    status_names, weights = zip(*MIX)
    out: list[Record] = []
    i = 0
    while len(out) < n:
        file = f"test_module_{i // 40:03d}.py"
        test = f"{file}::TestCase{i % 7}::test_case_{i}" + (f"[dtype{i % 3},shape{i % 5}]" if i % 4 == 0 else "")
        suite = list(SUITES)[i % len(SUITES)]
        for s, v, d in cells:
            if s != suite or len(out) >= n:
                continue
            status = rng.choices(status_names, weights)[0]
            rec = Record(suite, test, v, d, status, duration_s=rng.random() * 3, target=f"//{s}:{s}_{v}_{d}", run_id=run_id,
                         shard=i % 4, cached=rng.random() < 0.3)
            if status in (statuses.FAILED, statuses.XFAILED, statuses.ERROR):
                etype, template = ERRORS[rng.randrange(len(ERRORS))]
                rec.error_type = etype
                rec.message = template.format(n=rng.randrange(1000), m=rng.randrange(1000), p=rng.randrange(100), name=f"c{i}")[:300]
                rec.transform_failed = v != "base" and rng.random() < 0.4
            elif status in (statuses.CRASHED, statuses.TIMEOUT, statuses.NOT_RUN):
                rec.error_type = status
                rec.message = f"{status}: process exited with signal 11 after {rng.randrange(500)} s"
                rec.log_tail = "Fatal Python error: Segmentation fault\n" * 5
            elif status == statuses.SKIPPED:
                rec.message = "matrix.yaml skip (test_module.py): not applicable to this variant"
                rec.expectation = file
            if status in (statuses.XFAILED, statuses.XPASSED):
                rec.expectation = test
            out.append(rec)
        i += 1
    return out


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process, and of its waited-for children (write_reports may fork one)."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def run_once(records: list[Record], baseline: list[Record] | None) -> tuple[float, float, float, float, float]:
    """(write_reports s, terminal_summary s, CPU s of this process, CPU s of the child, MB written)."""
    run = RunInfo(run_id="bench", created="2024-01-01T00:00:00Z", torch_version="2.x", bazel_command="bazel test //...")
    with tempfile.TemporaryDirectory() as tmp:
        (p0, c0), t0 = _cpu(), time.perf_counter()
        write_reports(records, run, tmp, baseline=baseline)
        t1 = time.perf_counter()
        terminal_summary(records, compare(baseline, records) if baseline is not None else None)
        t2, (p2, c2) = time.perf_counter(), _cpu()
        size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
    return t1 - t0, t2 - t1, p2 - p0, c2 - c0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest is shown")
    parser.add_argument("--baseline", action="store_true", help="also compare with a baseline run of the same size")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest size and print the top functions")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}; best of {args.repeat}. Seconds: wall, then CPU of this process")
    print("and of the forked compat.json child (on an idle machine wall ~ max(main, child) since they run in parallel).")
    print(f"{'records':>9} {'write_reports':>14} {'terminal':>9} {'total':>8} {'growth':>7} {'cpu main':>9} {'cpu child':>10} {'MB':>6}")
    previous = None
    for n in sizes:
        records = make_records(n)
        baseline = make_records(n, seed=1, run_id="baseline") if args.baseline else None
        write_s, term_s, cpu_main, cpu_child, size = min(run_once(records, baseline) for _ in range(args.repeat))
        total = write_s + term_s
        growth = f"{total / previous:.2f}x" if previous else "-"
        print(f"{n:>9} {write_s:>14.3f} {term_s:>9.3f} {total:>8.3f} {growth:>7} {cpu_main:>9.3f} {cpu_child:>10.3f} {size:>6.1f}", flush=True)
        previous = total
    if args.profile:
        writer.PARALLEL_MIN_RECORDS = sys.maxsize  # profile everything in this process
        records = make_records(sizes[-1])
        profiler = cProfile.Profile()
        profiler.runcall(run_once, records, None)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
