"""Choosing matrix cells and report records by --suite/--variant/--device/--tests/status (list, rerun, xfail sync)."""

from __future__ import annotations

import argparse
from fnmatch import fnmatchcase

from tools.matrix import statuses
from tools.matrix.config import Cell
from tools.matrix.records import Record
from tools.matrix.runtime.selection import matches_filter

RERUN_FAILED = frozenset({statuses.FAILED, statuses.CRASHED, statuses.TIMEOUT, statuses.ERROR})


def add_filter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", action="append", default=[], help="only this suite (repeatable, globs allowed)")
    parser.add_argument("--variant", action="append", default=[], help="only this variant (repeatable, globs allowed)")
    parser.add_argument("--device", action="append", default=[], help="only this device (repeatable, globs allowed)")


def _ok(value: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatchcase(value, p) for p in patterns)


def cell_matches(cell: Cell, args: argparse.Namespace) -> bool:
    return _ok(cell.suite.name, args.suite) and _ok(cell.variant.name, args.variant) and _ok(cell.device.name, args.device)


def record_matches(record: Record, args: argparse.Namespace) -> bool:
    if not (_ok(record.suite, args.suite) and _ok(record.variant, args.variant) and _ok(record.device, args.device)):
        return False
    tests = getattr(args, "tests", None)
    return not tests or any(matches_filter(record.test, p) for p in tests)
