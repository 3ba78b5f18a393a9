"""The collector's output: one Record per (suite, test, variant, device), plus the run's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Record:
    suite: str
    test: str  # pytest node id relative to the suite directory
    variant: str
    device: str
    status: str  # one of tools.matrix.statuses.ALL
    duration_s: float = 0.0
    message: str = ""  # first line of the failure / skip reason
    error_type: str | None = None  # exception type name, or crashed/timeout/not_run
    transform_failed: bool = False  # the variant's transform raised, not the test's assertion
    target: str = ""  # Bazel label of the cell
    shard: int | None = None  # 0-based shard index
    attempts: int = 1  # > 1 when Bazel retried a flaky target
    cached: bool = False  # the result came from Bazel's cache
    run_id: str = ""  # which collection run produced this record (reruns merge by this)
    expectation: str | None = None  # the xfail/skip entry that applied, if any
    log_tail: str = ""  # for crashed / not_run cells: the end of the target's log

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.test, self.variant, self.device)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunInfo:
    """Metadata of the run that produced a report."""

    run_id: str
    created: str  # ISO 8601, UTC
    torch_version: str | None = None
    bazel_command: str = ""
    testlogs: str = ""
    matrix: str = "matrix.yaml"
    extra: dict[str, Any] = field(default_factory=dict)
