"""The collector's output: one Record per (suite, test, variant, device), plus the run's metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

# MatrixResult's fields that the collector reads (the digest's columns after "nodeid", in this order):
# each is also a Record field of that name (a missing one is read as the Record default). The others
# stay in report.json only.
_COLLECTED = {"collected": True}


@dataclass
class MatrixResult:
    """The one definition of a test's matrix result: report.json's metadata["matrix"] (the plugin's
    block, cell_main's synthetic records), the digest's rows (runtime/outputs.DIGEST_FIELDS) and the
    collector's row -> Record mapping all derive from these fields, in this order.

    A field whose value is None is left out of metadata["matrix"]: subtests_* are written only by the
    plugin (which ran the test); log_tail by the plugin for a failure (its traceback) or by cell_main
    (which saw the process die)."""

    status: str = field(metadata=_COLLECTED)  # one of tools.matrix.statuses.ALL
    duration_s: float = field(default=0.0, metadata=_COLLECTED)
    message: str = field(default="", metadata=_COLLECTED)
    error_type: str | None = field(default=None, metadata=_COLLECTED)
    transform_failed: bool = field(default=False, metadata=_COLLECTED)
    transform_s: float = 0.0  # time in the variant's transform
    transform_calls: int = 0
    expectation: str | None = field(default=None, metadata=_COLLECTED)
    subtests_run: int | None = None
    subtests_failed: int | None = None
    # The end of what explains the failure: the traceback (plugin, statuses.KEEPS_EVIDENCE) or the
    # dead process's output (cell_main). None: "" once collected.
    log_tail: str | None = field(default=None, metadata=_COLLECTED)
    # The differential check (runtime/transform_check.py) over the test's calls: "passed",
    # "skipped: <reason>", "failed: <mismatch>", "off: <reason>"; None: nothing was checked.
    transform_check: str | None = field(default=None, metadata=_COLLECTED)
    check_s: float | None = None  # time in the differential check (apart from transform_s); None: nothing was checked
    evidence_s: float | None = None  # time spent keeping evidence (runtime/evidence.py); None: no transform recorded any

    def to_metadata(self) -> dict[str, Any]:
        """metadata["matrix"] of report.json."""
        return {k: v for k, v in asdict(self).items() if v is not None or k not in _OMITTED_WHEN_NONE}


# Fields a writer leaves out rather than writing null (the rest are written even when None).
_OMITTED_WHEN_NONE = frozenset({"subtests_run", "subtests_failed", "log_tail", "transform_check", "check_s", "evidence_s"})
COLLECTED_FIELDS = tuple(f.name for f in fields(MatrixResult) if f.metadata.get("collected"))


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
    log_tail: str = ""  # the end of the traceback (a failure) or of the target's log (crashed, not_run)
    transform_check: str | None = None  # the variant's differential check (records.MatrixResult.transform_check)
    # What the variant's transform made of the test's programs, for a record in statuses.KEEPS_EVIDENCE
    # (the collector reads it from the target's outputs: collect.read_evidence); None: none kept.
    evidence: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.suite, self.test, self.variant, self.device)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        # 100,000 are read when `report` merges the last report: the field names are looked up once.
        items = data.items()
        if data.keys() <= _RECORD_FIELDS:
            return cls(**data)
        return cls(**{k: v for k, v in items if k in _RECORD_FIELDS})


_RECORD_FIELDS = frozenset(f.name for f in fields(Record))


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
