"""Choosing matrix cells and report records by --suite/--variant/--device/--tests/status (list, rerun, xfail sync)."""

from __future__ import annotations

import argparse
from fnmatch import fnmatchcase

from tools.matrix import statuses
from tools.matrix.config import Cell, Matrix, did_you_mean
from tools.matrix.errors import UserError
from tools.matrix.records import Record
from tools.matrix.runtime.selection import matches_filter

RERUN_FAILED = statuses.FAILING  # what `rerun --failed` reruns (rerun.py imports it by this name)
OPTIONS = ("suite", "variant", "device")


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", action="append", default=[], help="only this suite (repeatable, globs allowed)")
    parser.add_argument("--variant", action="append", default=[], help="only this variant (repeatable, globs allowed)")
    parser.add_argument("--device", action="append", default=[], help="only this device (repeatable, globs allowed)")


def _ok(value: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatchcase(value, p) for p in patterns)


def cell_matches(cell: Cell, args: argparse.Namespace) -> bool:
    return _ok(cell.suite.name, args.suite) and _ok(cell.variant.name, args.variant) and _ok(cell.device.name, args.device)


def selected_cells(matrix: Matrix, args: argparse.Namespace) -> list[Cell]:
    """The cells the filters choose. A name or glob that matches nothing in matrix.yaml (a typo)
    is a UserError naming the valid choices, never an empty selection that looks like success."""
    names = {
        "suite": [s.name for s in matrix.suites],
        "variant": [v.name for v in matrix.variants],
        "device": [d.name for d in matrix.devices],
    }
    for option in OPTIONS:
        for pattern in getattr(args, option):
            if not any(fnmatchcase(name, pattern) for name in names[option]):
                raise UserError(f"--{option} {pattern}: no {option} of {matrix.path} matches; {did_you_mean(pattern, names[option])}")
    cells = [c for c in matrix.cells() if cell_matches(c, args)]
    if not cells:
        given = " ".join(f"--{o} {p}" for o in OPTIONS for p in getattr(args, o))
        raise UserError(f"no cell of {matrix.path} matches {given} together (no suite runs that variant/device); `list` shows the cells")
    return cells


def record_matches(record: Record, args: argparse.Namespace) -> bool:
    if not (_ok(record.suite, args.suite) and _ok(record.variant, args.variant) and _ok(record.device, args.device)):
        return False
    tests = getattr(args, "tests", None)
    return not tests or any(matches_filter(record.test, p) for p in tests)
