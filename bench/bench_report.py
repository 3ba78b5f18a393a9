"""Benchmark of `report`'s pipeline after Bazel: the collector, then the report renderers.

    python bench/bench_report.py [--sizes 10000,100000,1000000] [--repeat N] [--baseline] [--profile]

For each size it writes (untimed) a synthetic workspace and bazel-testlogs tree in a temp dir, then
times what `tools/matrix/run_report.py` runs on it:

1. collect: `collect(matrix, testlogs, bep)` + `disagreements()`, reading the tree the way it reads
   Bazel's: per cell shard `testlogs/<suite dir>/<target>[/shard_i_of_n]/test.outputs/outputs.zip`
   holding `report.json`, plus the BEP file (`--build_event_json_file`) for cache hits and attempts;
2. write_reports (compat.json + .md + .html) and terminal_summary on the collected records.

The workspace is real: a matrix.yaml (the SUITES / variants / DEVICES below; export_tests with a fixed
`shards: 4`, so its 14 cells are read from 56 sharded directories, the other 12 cells unsharded) and
empty test files, loaded with `tools.matrix.config.load`, so the cells are real `Cell`s. The records
(make_records: realistic status mix, ~300-character failure messages) become report.json test
entries shaped like pytest-json-report's (lineno, setup/call/teardown stages, crash + traceback +
~1 kB longrepr on failures; crashed / timeout / not_run shaped like cell_main's entries for tests it lost) plus the
`metadata.matrix` block the plugin adds, written with the runtime's own writers
(`outputs.write_outputs`: report.json and its digest matrix_results.json, which is what the
collector reads, and, as cell_main writes them, the target's tests the shard has no record of, the
other shards', beside them) into the shard's undeclared-outputs directory, which is
then deflated into test.outputs/outputs.zip and removed, as Bazel does. Each shard also gets a short
test.log; no test.xml, which the collector never opens when the digest is there (the common case; its
JUnit / log-only fallbacks are for targets that died). The BEP file has a testResult per shard
(~30 % cached, a few retried) and a testSummary per target, consistent with the records so that
`disagreements` finds none. The tree was just written, so collect reads it from the page cache, as
`report` does right after `bazel test`.

`collect` fills in `not_run` records for the cells the last, partly generated test did not reach, so
the records column (what the report stage got) can exceed the size asked for by up to 13.

Sizes: 10,000 / 100,000 / 1,000,000 is 10x less and 10x more than the 100,000 of the target (collect +
report under 3 s). Both stages grow about linearly, so 1,000,000 takes about 100x the 10,000 time
(estimated at under a minute on the 2-core CI machine) and about 2 GB at peak (max RSS column: the
collected records plus the renderers' working set; the generated ones are dropped before collect).
The untimed setup costs more than the timed part at every size: the runtime's write_json uses
json.dump with indent, i.e. Python's pure-Python encoder, as cell_main does (there it is spread over
the shards). At 1,000,000 expect a few minutes of setup; --sizes 10000,100000 skips it.
Seconds are wall, then CPU of this process and of the forked compat.json child. Prints only; never asserts.

--previous: collect also merges the last report, as `report` does when reports/compat.json exists
(known_tests.py): the collected records, written beforehand (untimed) as compat.json of an earlier
run, are read back with last_report.load inside the timed collect.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import random
import resource
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml
from pytest_jsonreport import serialize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.matrix import config, last_report, statuses
from tools.matrix.collect import collect
from tools.matrix.records import Record, RunInfo, RuntimeDetail, runtime_result
from tools.matrix.report import compare, terminal_summary, write_json, write_reports, writer
from tools.matrix.run_report import disagreements
from tools.matrix.runtime import outputs

SUITES = {
    "export_tests": ["base", "cpp_serdes", "retrace", "package", "serdes", "strict", "run_decomp"],
    "package_tests": ["base", "from_directory", "from_bytes"],
    "dynamo_tests": ["base", "dynamo_package", "dynamo_reexport"],
}
DEVICES = ["cpu", "cuda"]
SHARDS = {"export_tests": 4}  # fixed shard counts in the synthetic matrix.yaml (the others: 1)
SIZES = (10000, 100000, 1000000)  # records; bench_matrix.py imports these
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


# -- the synthetic workspace and bazel-testlogs tree (untimed) -------------------------------------

OUTCOME = {  # matrix status -> pytest-json-report's test outcome
    statuses.PASSED: "passed", statuses.FAILED: "failed", statuses.ERROR: "error",
    statuses.SKIPPED: "skipped", statuses.XFAILED: "xfailed", statuses.XPASSED: "xpassed",
}  # fmt: skip
TORCH_VERSION = "2.13.0+cpu"


def write_workspace(ws: Path, records: list[Record]) -> config.Matrix:
    """matrix.yaml + one empty file per test file the records name, loaded (and validated) as in production."""
    variants = dict.fromkeys(v for vs in SUITES.values() for v in vs)
    doc = {
        "devices": {d: {"requires_gpu": True} if d == "cuda" else {} for d in DEVICES},
        "variants": {v: {"impl": f"bench.variants:{v.title().replace('_', '')}", "description": f"synthetic {v}"} for v in variants},
        "suites": {
            # Fresh lists: a list shared by two suites would be dumped as an anchor and alias, which matrix.yaml refuses.
            s: {"tests": ["test_*.py"], "variants": list(vs), "devices": list(DEVICES), **({"shards": SHARDS[s]} if s in SHARDS else {})}
            for s, vs in SUITES.items()
        },
    }
    files = {(s, "test_module_000.py") for s in SUITES} | {(r.suite, r.test.split("::", 1)[0]) for r in records}
    for suite, file in files:
        (ws / suite).mkdir(parents=True, exist_ok=True)
        (ws / suite / file).touch()
    (ws / "matrix.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return config.load(ws / "matrix.yaml", ws)


def _longrepr(r: Record, file: str, lineno: int) -> str:
    """A pytest traceback of typical length (~1 kB) ending in the record's error."""
    name = r.test.split("::")[-1]
    return (
        f"{file}:{lineno}: in {name.split('[')[0]}\n    result = check_round_trip(model, example_inputs, device=device)\n"
        f"tools/matrix/variants/__init__.py:212: in wrapper\n    return self.transform(fn(*args, **kwargs), args, kwargs)\n"
        f"tools/matrix/variants/export.py:88: in transform\n    loaded = torch.export.load(buffer)\n"
        f".venv/lib/python3.11/site-packages/torch/export/__init__.py:412: in load\n    ep = deserialize(artifact, expected_opset_version)\n"
        f".venv/lib/python3.11/site-packages/torch/_export/serde/serialize.py:2471: in deserialize\n"
        f"    .deserialize(serialized_artifact.exported_program, state_dict, constants, example_inputs)\n"
        f"{file}:{lineno + 14}: in check_round_trip\n    torch.testing.assert_close(actual, expected, rtol=1.3e-6, atol=1e-5)\n"
        f"E   {r.error_type}: {r.message}\n"
    )


def _lost_entry(r: Record) -> dict:
    """The entry cell_main writes for a test its child could not report (crashed, timeout, not_run),
    with the record's status as already decided (the bench has no CellConfig to decide it again)."""
    matrix = runtime_result(r.status, RuntimeDetail(), message=r.message, error_type=r.error_type, expectation=r.expectation, log_tail=r.log_tail)
    return {"nodeid": r.test, "outcome": "failed" if r.status != statuses.NOT_RUN else r.status, "metadata": {"matrix": matrix}}


def _test_entry(r: Record, lineno: int) -> dict:
    """What cell_main puts in report.json for one test: pytest-json-report's entry + metadata.matrix."""
    if r.status not in OUTCOME:  # crashed / timeout / not_run: cell_main's entry for a test it lost
        return _lost_entry(r)
    file, _, name = r.test.partition("::")
    test = serialize.make_testitem(r.test, None, (file, lineno, name))
    test["outcome"] = OUTCOME[r.status]
    setup = {"duration": 0.00079, "outcome": "passed"}
    call = {"duration": r.duration_s, "outcome": "passed"}
    if r.status in (statuses.FAILED, statuses.ERROR, statuses.XFAILED):
        failed = {"outcome": "failed" if r.status != statuses.XFAILED else "skipped", "crash": {"path": f"/work/{r.suite}/{file}", "lineno": lineno + 14, "message": f"{r.error_type}: {r.message}"},
                  "traceback": [{"path": f"{r.suite}/{file}", "lineno": lineno, "message": ""}, {"path": "tools/matrix/variants/export.py", "lineno": 88, "message": ""},
                                {"path": f"{r.suite}/{file}", "lineno": lineno + 14, "message": r.error_type}],
                  "longrepr": _longrepr(r, file, lineno)}  # fmt: skip
        (setup if r.status == statuses.ERROR else call).update(failed)
    elif r.status == statuses.SKIPPED:
        setup.update(outcome="skipped", longrepr=f"('{r.suite}/{file}', {lineno}, 'Skipped: {r.message}')")
    test["setup"] = setup
    if setup["outcome"] == "passed":
        test["call"] = call
    test["teardown"] = {"duration": 0.00085, "outcome": "passed"}
    test["metadata"] = {
        "matrix": runtime_result(
            r.status, RuntimeDetail(transform_s=round(r.duration_s / 4, 6), transform_calls=2), duration_s=round(r.duration_s, 6),
            message=r.message, error_type=r.error_type, transform_failed=r.transform_failed, expectation=r.expectation,
        )
    }  # fmt: skip
    return test


def write_testlogs(matrix: config.Matrix, records: list[Record], testlogs: Path, bep: Path, seed: int = 0) -> float:
    """Bazel's testlogs tree (report.json deflated into outputs.zip per cell shard, test.log) and its BEP
    file for `records`; the MB written."""
    rng = random.Random(seed)
    cells = {(c.suite.name, c.variant.name, c.device.name): c for c in matrix.cells()}
    targets = {t.label: t for c in cells.values() for t in c.targets}
    shards: dict[tuple[str, int], list[Record]] = {(t.label, i): [] for t in targets.values() for i in range(t.shard_count)}
    collected: dict[str, list[str]] = {label: [] for label in targets}  # per target, every test it collected
    for r in records:
        target = cells[r.suite, r.variant, r.device].target_of(r.test)
        shards[target.label, (r.shard or 0) % target.shard_count].append(r)
        collected[target.label].append(r.test)
    events: list[dict] = [{"id": {"started": {}}, "started": {"uuid": "bench", "command": "test", "startTimeMillis": "1700000000000"}}]
    failing: dict[str, bool] = {}
    retried: set[str] = set()
    for (label, shard), recs in shards.items():
        target = targets[label]
        cell, total = target.cell, target.shard_count
        shard_dir = testlogs / cell.suite.directory / target.name
        if total > 1:
            shard_dir /= f"shard_{shard + 1}_of_{total}"
        undeclared = shard_dir / "test.outputs" / "_undeclared"  # TEST_UNDECLARED_OUTPUTS_DIR
        undeclared.mkdir(parents=True)
        tests = sorted((_test_entry(r, 10 + 7 * (i % 300)) for i, r in enumerate(recs)), key=lambda t: t["nodeid"])
        problems: list[str] = []
        unexpected = any(outputs.status_of(t) in statuses.UNEXPECTED for t in tests)
        metadata = {
            "suite": cell.suite.name, "variant": cell.variant.name, "device": cell.device.name, "target": label,
            "shard_index": shard, "total_shards": total, "test_filter": "", "torch_version": TORCH_VERSION, "python": "3.11.7",
            "restarts": sum(outputs.status_of(t) in (statuses.CRASHED, statuses.TIMEOUT) for t in tests),
            "transform_s": round(sum(t["metadata"]["matrix"]["transform_s"] for t in tests), 6), "problems": problems,
            outputs.COLLECTED_NOT_RUN: outputs.not_run_here(collected[label], tests),
        }  # fmt: skip
        outputs.write_outputs(str(undeclared), tests, metadata, time.time() - 60, 1 if unexpected else 0, cell.suite.directory)
        with zipfile.ZipFile(shard_dir / "test.outputs" / "outputs.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for name in (outputs.REPORT_NAME, outputs.DIGEST_NAME, outputs.COLLECTED_NAME):
                z.write(undeclared / name, name)
        shutil.rmtree(undeclared)
        (shard_dir / "test.log").write_text(
            f'exec ${{PAGER:-/usr/bin/less}} "$0" || exit 1\nExecuting tests from {label}\n' + "-" * 80 + "\n"
            f"[matrix] {target.name} ({cell.variant.name}, {cell.device.name}, shard {shard + 1}/{total}): {len(tests)} tests\n"
        )
        failing[label] = failing.get(label, False) or unexpected
        attempts = 2 if rng.random() < 0.05 else 1
        if attempts > 1:
            retried.add(label)
        for attempt in range(1, attempts + 1):
            status = "FAILED" if attempt < attempts or unexpected else "PASSED"
            uri = f"file://{shard_dir}"
            events.append({
                "id": {"testResult": {"label": label, "run": 1, "shard": shard + 1, "attempt": attempt, "configuration": {"id": "e1f0c2"}}},
                "testResult": {
                    "testActionOutput": [{"name": "test.log", "uri": f"{uri}/test.log"}, {"name": "test.xml", "uri": f"{uri}/test.xml"},
                                         {"name": "test.outputs__outputs.zip", "uri": f"{uri}/test.outputs/outputs.zip"}],
                    "testAttemptDurationMillis": str(int(sum(r.duration_s for r in recs) * 1000)), "status": status,
                    "cachedLocally": rng.random() < 0.3, "testAttemptStartMillisEpoch": "1700000000000",
                    "executionInfo": {"strategy": "linux-sandbox", "hostname": "ci-runner", "timingBreakdown": {"name": "totalTime", "time": "61s"}},
                },
            })  # fmt: skip
    for label, target in targets.items():
        overall = "FAILED" if failing.get(label) else "FLAKY" if label in retried else "PASSED"
        summary = {"overallStatus": overall, "totalRunCount": target.shard_count, "shardCount": target.shard_count}
        events.append({"id": {"testSummary": {"label": label, "configuration": {"id": "e1f0c2"}}}, "testSummary": summary})
    finished = {"exitCode": {"name": "TESTS_FAILED", "code": 3}, "finishTimeMillis": "1700000600000"}
    events.append({"id": {"buildFinished": {}}, "finished": finished})
    bep.write_text("".join(json.dumps(e) + "\n" for e in events))
    return (sum(f.stat().st_size for f in testlogs.rglob("*") if f.is_file()) + bep.stat().st_size) / 1e6


def setup(n: int, root: Path) -> tuple[config.Matrix, Path, Path, float]:
    """(matrix, testlogs, bep, MB written) for n records under `root`; the generated records are dropped."""
    records = make_records(n)
    matrix = write_workspace(root / "ws", records)
    testlogs, bep = root / "bazel-testlogs", root / "bep.json"
    mb = write_testlogs(matrix, records, testlogs, bep)
    del records
    gc.collect()
    return matrix, testlogs, bep, mb


# -- timed --------------------------------------------------------------------------------------------


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


def collect_once(matrix: config.Matrix, testlogs: Path, bep: Path, previous: Path | None = None) -> tuple[list[Record], float, float, list[str]]:
    """What run_report.report does before rendering: (records, wall s, CPU s, problems); with
    `previous`, merging that compat.json."""
    (p0, _), t0 = _cpu(), time.perf_counter()
    earlier = last_report.load(previous)[1] if previous else None
    collected = collect(matrix, testlogs, bep, run_id="bench", previous=earlier)
    problems = collected.problems + disagreements(collected, "bench")
    t1, (p1, _) = time.perf_counter(), _cpu()
    return collected.records, t1 - t0, p1 - p0, problems


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the fastest (collect + report) is shown")
    parser.add_argument("--baseline", action="store_true", help="also compare with a baseline run of the same size")
    parser.add_argument("--profile", action="store_true", help="cProfile collect + report on the largest size and print the top functions")
    parser.add_argument("--previous", action="store_true", help="collect also merges a previous compat.json, as `report` does when there is one")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}; best of {args.repeat}. Seconds: wall, then CPU of this process")
    print("and of the forked compat.json child (on an idle machine wall ~ max(main, child) since they run in parallel).")
    print("collect = collect() + disagreements() from an on-disk testlogs tree + BEP file; setup (untimed) = generate + write that tree.")
    print(f"{'records':>9} {'collect':>8} {'write_reports':>14} {'terminal':>9} {'total':>8} {'growth':>7} {'cpu main':>9} {'cpu child':>10} "
          f"{'in MB':>6} {'out MB':>7} {'max RSS MB':>11} {'setup s':>8}")  # fmt: skip
    previous = None
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench_report-") as tmp:
            t0 = time.perf_counter()
            matrix, testlogs, bep, in_mb = setup(n, Path(tmp))
            setup_s = time.perf_counter() - t0
            baseline = make_records(n, seed=1, run_id="baseline") if args.baseline else None
            earlier = None
            if args.previous:  # the last report of the same tree, as an earlier run wrote it
                earlier = Path(tmp) / "compat.json"
                write_json(collect(matrix, testlogs, bep, run_id="earlier").records, RunInfo("earlier", "2024-01-01T00:00:00Z"), earlier)
            best = None
            for _ in range(args.repeat):
                records, collect_s, collect_cpu, problems = collect_once(matrix, testlogs, bep, earlier)
                write_s, term_s, cpu_main, cpu_child, out_mb = run_once(records, baseline)
                total = collect_s + write_s + term_s
                run = (total, len(records), collect_s, write_s, term_s, collect_cpu + cpu_main, cpu_child, out_mb, problems)
                best = min(best, run, key=lambda r: r[0]) if best else run
                del records
            total, count, collect_s, write_s, term_s, cpu_main, cpu_child, out_mb, problems = best
        growth = f"{total / previous:.2f}x" if previous else "-"
        print(f"{count:>9} {collect_s:>8.3f} {write_s:>14.3f} {term_s:>9.3f} {total:>8.3f} {growth:>7} {cpu_main:>9.3f} {cpu_child:>10.3f} "
              f"{in_mb:>6.1f} {out_mb:>7.1f} {_max_rss_mb():>11.0f} {setup_s:>8.1f}", flush=True)  # fmt: skip
        for problem in problems[:5]:  # none expected: the tree and the BEP agree
            print(f"    problem: {problem}")
        previous = total
        baseline = None
        gc.collect()
    if args.profile:
        writer.PARALLEL_MIN_RECORDS = sys.maxsize  # profile everything in this process
        with tempfile.TemporaryDirectory(prefix="bench_report-") as tmp:
            matrix, testlogs, bep, _ = setup(sizes[-1], Path(tmp))
            profiler = cProfile.Profile()
            profiler.runcall(lambda: run_once(collect_once(matrix, testlogs, bep)[0], None))
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
