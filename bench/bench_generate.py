"""Benchmark: load + validate + generate BUILD files for a synthetic matrix of N targets.

    python bench/bench_generate.py [--sizes 200,2000,20000]

Prints a table (targets, seconds, growth vs the previous size); never asserts. Target: 2,000 targets
in under a second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.matrix import config, generate  # noqa: E402

SUITES = 20
DEVICES = ("cpu", "cuda")
SIZES = (200, 2000, 20000)  # targets; bench_matrix.py imports these


def synthetic_workspace(root: Path, targets: int) -> Path:
    variants = max(1, targets // (SUITES * len(DEVICES)))
    lines = ["devices:", "  cpu: {}", "  cuda:", "    requires_gpu: true", "variants:"]
    for v in range(variants):
        lines += [f"  v{v}:", "    impl: tools.matrix.variants.export:Retrace", f"    description: variant {v}"]
    lines.append("suites:")
    for s in range(SUITES):
        directory = root / f"suite{s}"
        directory.mkdir()
        for t in range(10):
            (directory / f"test_{t}.py").write_text("def test_ok():\n    pass\n")
        lines += [f"  suite{s}:", f"    variants: [{', '.join(f'v{v}' for v in range(variants))}]", "    devices: [cpu, cuda]", "    shards: {cpu: 2, cuda: 1}"]
    lines.append("expectations:")
    for s in range(SUITES):
        lines += [f"  suite{s}:", "    v0:", "      xfail:"] + [f"        test_{t}.py::test_ok: known failure {t}" for t in range(5)]
    (root / "matrix.yaml").write_text("\n".join(lines) + "\n")
    return root / "matrix.yaml"


def measure(targets: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = synthetic_workspace(Path(tmp), targets)
        start = time.perf_counter()
        matrix = config.load(path, Path(tmp))
        generate.write(matrix, Path(tmp))
        elapsed = time.perf_counter() - start
        return len(matrix.cells()), elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="targets, comma-separated")
    sizes = [int(s) for s in parser.parse_args(argv).sizes.split(",")]
    print("generator: load + validate + write BUILD files")
    print(f"{'targets':>8} {'seconds':>9} {'growth':>8}")
    previous = None
    for size in sizes:
        cells, seconds = measure(size)
        growth = f"{seconds / previous:.1f}x" if previous else "-"
        print(f"{cells:>8} {seconds:>9.3f} {growth:>8}")
        previous = seconds


if __name__ == "__main__":
    main()
