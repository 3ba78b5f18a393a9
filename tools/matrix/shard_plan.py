"""How many shards each cell's target gets: matrix.yaml's fixed `shards`, or, for a suite with
`shard_seconds`, a count planned from the suite's recorded durations (test_durations.json).

config/ validates matrix.yaml and asks this module for each suite's recorded durations and each
cell's count; durations.py owns the file's format and how the runtime deals tests to the shards.
An unreadable durations file is not an error here: it is kept as `SuiteDurations.problem`, which
config/build.py reports against `shard_seconds` and the CLI turns into an error for every command but
`durations` (which rewrites the file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from tools.matrix import durations

MAX_SHARDS = 50


@dataclass(frozen=True)
class SuiteDurations:
    """What one suite's test_durations.json holds: the recorded seconds, or why it is unreadable."""

    recorded: durations.Recorded = field(default_factory=dict)
    problem: str = ""  # `<directory>/test_durations.json...: what is wrong`; empty when readable


def read(workspace: Path, directory: str) -> SuiteDurations:
    """The suite's recorded durations (none when the file does not exist)."""
    display = f"{directory}/{durations.FILE_NAME}"
    try:
        return SuiteDurations(durations.load(workspace / directory / durations.FILE_NAME, display))
    except durations.DurationsError as e:
        return SuiteDurations(problem=str(e))  # planned as if nothing were recorded


def shard_count(seconds: float, shard_seconds: float) -> int:
    """Shards of about `shard_seconds` each (rounded to the nearest count, at least one)."""
    return max(1, math.floor(min(seconds / shard_seconds, MAX_SHARDS) + 0.5))  # min first: the ratio may overflow to inf


def cell_shard_count(fixed: int, shard_seconds: float | None, recorded: dict[str, float]) -> int:
    """The count from `shards` (`fixed`), or, with `shard_seconds`, from the cell's recorded durations."""
    if shard_seconds is None:
        return fixed
    return shard_count(sum(recorded.values()), shard_seconds)
