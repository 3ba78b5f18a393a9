"""Benchmark of the history store (tools/matrix/history/): appends, the `history` queries, bytes per record.

    python bench/bench_history.py [--append 100000] [--runs 300] [--per-run 3334] [--postgres URL] [--quick]

1. append: one run of --append records (the report's Record, ~60-character node ids, 6 % failing with a
   ~100-character message) into an empty store, timed from open to commit.
2. a store of --runs runs x --per-run records (default 300 x 3,334 = 1,000,000, written untimed; each run
   churns: ~2 % of tests change status, a few are flaky, 30 % of results cached), then timed: one test's
   timeline, failing-since for every failing record, flaky over the last 30 runs, the runs list; its size
   (the SQLite file after VACUUM, PostgreSQL's pg_total_relation_size of the tables) per record, and
   per run.
3. `report`'s work after collecting, with and without the history, for one more run of --per-run records on the
   1,000,000-record store: write_reports alone, against read_view (new/fixed/failing since) + write_reports
   with the History section + the append.

SQLite always; PostgreSQL too with --postgres URL (an empty database: its tables are dropped first).
Wall and CPU time of this process (PostgreSQL's own CPU is not in the latter); load average at the start.
Prints only; never asserts. --quick: 20,000 appended, 30 runs x 3,334.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.matrix import statuses  # noqa: E402
from tools.matrix.history import queries  # noqa: E402
from tools.matrix.history.append import read_view  # noqa: E402
from tools.matrix.history.store import Store, open_store  # noqa: E402
from tools.matrix.records import Record, RunInfo  # noqa: E402
from tools.matrix.report import write_reports  # noqa: E402

VARIANTS = ("base", "retrace", "cpp_serdes", "package", "strict")
MESSAGE = "AssertionError: Tensor-likes are not close! Mismatched elements: 3 / 12 (25.0%) Greatest absolute difference"


def names(n: int) -> list[tuple[str, str, str, str]]:
    per_variant = max(n // len(VARIANTS), 1)
    keys = [("export_tests", f"test_export_{i // 40:04d}.py::TestExport{i % 7}::test_case_{i:06d}", v, "cpu")
            for v in VARIANTS for i in range(per_variant)]  # fmt: skip
    return keys[:n]


def run_of(i: int, commit: str) -> RunInfo:
    return RunInfo(run_id=f"run{i:05d}", created=f"2026-{1 + i // 28 % 12:02d}-{1 + i % 28:02d}T00:00:00+00:00", torch_version="2.13.0",
                   bazel_command="bazel test //:all_cells --keep_going", git_commit=commit, git_dirty=False, host="ci")  # fmt: skip


def records_of(keys: list[tuple[str, str, str, str]], run_id: str, failing: set[int], flaky: set[int], rng: random.Random) -> list[Record]:
    out = []
    for k, key in enumerate(keys):
        status = statuses.FAILED if k in failing else statuses.FLAKY if k in flaky else statuses.PASSED
        out.append(Record(*key, status=status, duration_s=round(rng.random(), 3), message=MESSAGE if status == statuses.FAILED else "",
                          error_type="AssertionError" if status == statuses.FAILED else None, target=f"//export_tests:export_tests_{key[2]}_cpu",
                          shard=k % 4, cached=rng.random() < 0.3, run_id=run_id, attempts=2 if status == statuses.FLAKY else 1))  # fmt: skip
    return out


def clock(what: str, fn, *args):
    start, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  {what:<44} {seconds * 1000:10.1f} ms wall {cpu * 1000:10.1f} ms CPU")
    return result, seconds


def fresh(kind: str, tmp: Path, url: str | None, name: str) -> str:
    if kind == "sqlite":
        path = tmp / f"{name}.sqlite"
        path.unlink(missing_ok=True)
        return str(path)
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return url


def size_of(store: Store, kind: str, location: str) -> int:
    if kind == "sqlite":
        store.conn.execute("VACUUM")
        return os.path.getsize(location)
    return sum(store.query(f"SELECT pg_total_relation_size('{t}')")[0][0] for t in ("runs", "tests", "results", "meta"))


def bench(kind: str, args: argparse.Namespace, tmp: Path) -> None:
    print(f"{kind}:")
    rng = random.Random(7)
    keys = names(args.append)
    records = records_of(keys, "run00000", set(rng.sample(range(len(keys)), len(keys) * 6 // 100)), set(), rng)
    location = fresh(kind, tmp, args.postgres, "append")
    with open_store(location) as store:
        clock(f"append {len(records):,} records (one run)", store.append, run_of(0, "c0"), records)

    location = fresh(kind, tmp, args.postgres, "big")
    keys = names(args.per_run)
    failing = set(rng.sample(range(len(keys)), len(keys) // 20))
    start = time.perf_counter()
    with open_store(location) as store:
        for i in range(args.runs):
            for k in rng.sample(range(len(keys)), len(keys) // 50):  # churn: ~2 % change status
                failing ^= {k}
            flaky = set(rng.sample(range(len(keys)), 5))
            store.append(run_of(i, f"c{i // 3}"), records_of(keys, f"run{i:05d}", failing, flaky, rng))
        total = args.runs * len(keys)
        print(f"  (wrote {args.runs} runs x {len(keys):,} = {total:,} records in {time.perf_counter() - start:.0f} s, untimed)")
        test = keys[len(keys) // 3][1]
        timeline, _ = clock("timeline of one test (all its variants)", queries.timeline, store, test, 30)
        since, _ = clock("failing-since, every failing record", queries.failing_since, store)
        flaky_found, _ = clock("flaky over the last 30 runs", queries.flaky, store, 30)
        clock("runs (last 20)", queries.runs, store, 20)
        print(f"  ({len(timeline)} timelines, {len(since):,} failing records, {len(flaky_found):,} flaky tests)")
        size = size_of(store, kind, location)
        print(f"  size: {size / 1e6:.1f} MB, {size / total:.0f} bytes per record, {size / args.runs / 1e6:.2f} MB per run")

        one = records_of(keys, f"run{args.runs + 1:05d}", failing, set(), rng)
        out = tmp / f"report-{kind}"
        run = run_of(args.runs + 1, "cx")
        _, without = clock(f"write_reports of {len(one):,} records", write_reports, one, run, out)
        view, viewed = clock("  + what the store says of them (read_view)", read_view, location, run, one)
        _, written = clock("  + write_reports with its History section", write_reports, one, run, out, None, view)
        _, appended = clock("  + append that run to the 1M store", store.append, run, one)
        print(f"  report with history / without: {(viewed + written + appended) / without:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--append", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--per-run", type=int, default=3_334)
    parser.add_argument("--postgres", help="a postgresql:// URL of an empty database (its tables are dropped)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.append, args.runs = 20_000, 30
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        bench("sqlite", args, Path(tmp))
        if args.postgres:
            bench("postgresql", args, Path(tmp))


if __name__ == "__main__":
    main()
