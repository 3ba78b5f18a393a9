"""`bazel run //bench:bench [-- BENCH_MATRIX_ARGS]` (what `make bench` runs): bench_generate, bench_report,
then bench_matrix on the workspace `bazel run` was called from (BUILD_WORKSPACE_DIRECTORY).

bench_matrix gets `--skip tools` (the two benchmarks before it are its `tools` measurement) plus the
arguments given after `--`, e.g. `bazel run //bench:bench -- --quick`. Each runs in its own process, in
this interpreter (the project's Python environment); a failing one is reported and the next still runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    if not os.environ.get("BUILD_WORKSPACE_DIRECTORY"):
        print("bench/run_all.py: BUILD_WORKSPACE_DIRECTORY is not set; run it with `bazel run //bench:bench` "
              "(or run bench/bench_matrix.py --workspace DIR directly)", file=sys.stderr)  # fmt: skip
        return 2
    runs = [
        ["bench_generate.py"],
        ["bench_report.py"],
        ["bench_matrix.py", "--skip", "tools", *argv],
    ]
    status = 0
    for script, *args in runs:
        print(f"\n##### {script} {' '.join(args)}".rstrip(), flush=True)
        started = time.monotonic()
        rc = subprocess.run([sys.executable, str(HERE / script), *args]).returncode
        print(f"##### {script}: exit {rc} after {time.monotonic() - started:.0f} s", flush=True)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
