"""A matrix cell's configuration: parsed from the target's args/env by cell_main, handed to the
pytest plugin through environment variables (nothing reads matrix.yaml at test time)."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field

ENV_KEY = "MATRIX_CELL"


@dataclass(frozen=True)
class CellConfig:
    suite: str
    suite_dir: str
    variant: str
    variant_impl: str
    device: str
    target: str = ""
    applies_to: tuple[str, ...] = ()
    test_files: tuple[str, ...] = ()
    sibling_files: tuple[str, ...] = ()  # the cell's other test files, run by other targets (granularity: file)
    test_timeout_s: float = 120.0
    default_device: bool = False
    requires_gpu: bool = False  # the device's matrix.yaml requires_gpu (the target's requires-gpu tag)
    xfail: dict[str, str] = field(default_factory=dict)
    skip: dict[str, str] = field(default_factory=dict)
    shard_index: int = 0
    total_shards: int = 1
    test_filter: str = ""
    durations_file: str = ""  # recorded durations that plan the shards (empty: round-robin)
    journal: str = ""  # the inherited descriptor (a number) the plugin appends JSON-line events to (journal.py)
    done: tuple[str, ...] = ()  # node ids already recorded by an earlier process (crash resume)
    evidence_dir: str = ""  # where the plugin writes evidence (runtime/evidence.py); "": none
    pytest_args: tuple[str, ...] = ()  # the suite's extra pytest options (matrix.yaml pytest_args)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CellConfig | None:
        raw = (environ if environ is not None else os.environ).get(ENV_KEY)
        if not raw:
            return None
        data = json.loads(raw)
        for key in ("applies_to", "test_files", "sibling_files", "done", "pytest_args"):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class CellArgs:
    """A target's args, the inverse of parse_args: what defs.bzl writes, built in Python for those
    that start cell_main themselves (tests/fixtures/cellrun.py, bench/bench_matrix.py)."""

    suite: str
    suite_dir: str
    variant: str
    variant_impl: str
    device: str
    test_files: tuple[str, ...]
    target: str = ""
    applies_to: tuple[str, ...] = ()
    sibling_files: tuple[str, ...] = ()
    test_timeout_s: float = 120.0
    default_device: bool = False
    requires_gpu: bool = False
    durations: str = ""
    pytest_args: tuple[str, ...] = ()

    def to_argv(self) -> list[str]:
        argv = [
            f"--suite={self.suite}", f"--variant={self.variant}", f"--variant-impl={self.variant_impl}",
            f"--device={self.device}", f"--suite-dir={self.suite_dir}", f"--test-timeout-s={self.test_timeout_s:g}",
        ]  # fmt: skip
        if self.target:
            argv.append(f"--target={self.target}")
        argv += [f"--applies-to={entry}" for entry in self.applies_to]
        if self.default_device:
            argv.append("--default-device")
        if self.requires_gpu:
            argv.append("--requires-gpu")
        argv += [f"--test-file={f}" for f in self.test_files]
        argv += [f"--sibling-file={f}" for f in self.sibling_files]
        argv += [f"--pytest-arg={a}" for a in self.pytest_args]
        if self.durations:
            argv.append(f"--durations={self.durations}")
        return argv


def parser() -> argparse.ArgumentParser:
    """The cell's argument protocol: defs.bzl writes these flags, CellArgs.to_argv builds them (both
    checked against this parser by tests/test_cell_args.py)."""
    parser = argparse.ArgumentParser(prog="cell_main", description="Run one matrix cell's tests.")
    parser.add_argument("--suite", required=True)
    parser.add_argument("--suite-dir", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--variant-impl", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--target", default="")
    parser.add_argument("--applies-to", action="append", default=[])
    parser.add_argument("--test-file", action="append", default=[], required=True)
    # Names only (their contents are other targets' inputs): a --test_filter naming one of these
    # files selects nothing here without being a typo.
    parser.add_argument("--sibling-file", action="append", default=[])
    parser.add_argument("--test-timeout-s", type=float, default=120.0)
    parser.add_argument("--default-device", action="store_true")
    parser.add_argument("--requires-gpu", action="store_true")
    parser.add_argument("--durations", default="")
    parser.add_argument("--pytest-arg", action="append", default=[])
    return parser


def parse_args(argv: list[str], environ: dict[str, str]) -> CellConfig:
    """The target's args (see tools/matrix/defs.bzl) plus Bazel's test environment."""
    args = parser().parse_args(argv)
    expectations = json.loads(environ.get("MATRIX_EXPECTATIONS") or "{}")
    return CellConfig(
        suite=args.suite,
        suite_dir=args.suite_dir,
        variant=args.variant,
        variant_impl=args.variant_impl,
        device=args.device,
        target=args.target,
        applies_to=tuple(args.applies_to),
        test_files=tuple(args.test_file),
        sibling_files=tuple(args.sibling_file),
        test_timeout_s=args.test_timeout_s,
        default_device=args.default_device,
        requires_gpu=args.requires_gpu,
        xfail=dict(expectations.get("xfail", {})),
        skip=dict(expectations.get("skip", {})),
        shard_index=int(environ.get("TEST_SHARD_INDEX", "0")),
        total_shards=int(environ.get("TEST_TOTAL_SHARDS", "1")),
        test_filter=environ.get("TESTBRIDGE_TEST_ONLY", ""),
        durations_file=args.durations,
        pytest_args=tuple(args.pytest_arg),
    )
