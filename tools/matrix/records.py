"""One definition of a test's result: `Record`, one per (suite, test, variant, device); and the run's metadata.

Every view of a record derives from Record's fields (their annotations and metadata); none lists them:
- the runtime writes the RUNTIME fields of each test (runtime/outputs.py): report.json's
  metadata["matrix"] (`runtime_result`), the digest's columns, test.xml's properties;
- the collector reads them back from any of these, checks each value against its field's JSON types
  (JSON_TYPES) and adds the COLLECTOR fields: the cell's names and where it found the outputs, what
  Bazel's BEP says, the run, the evidence (tools/matrix/collect/);
- compat.json holds every field; compat.schema.json is generated from them (report/schema.py);
  compat.html's data and script show each field by name (report/html_report.py); a change since a
  baseline carries the fields marked `change` (report/baseline.py).

Adding a field is one edit here (plus its rendering, where the default one will not do). A field is
one JSON type (str, int, float, bool, list, dict), or that or None. Every field but the key and the
status has a default, since outputs an older runtime wrote lack the new field: None where None is
allowed (test.xml writes no property for a None), a default_factory for a list or a dict.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from operator import attrgetter
from typing import Any

from tools.matrix import statuses

RUNTIME = "runtime"  # the runtime writes it for each test; the collector reads it back
COLLECTOR = "collector"  # the collector adds it


def _meta(by: str, doc: str, **more: Any) -> dict[str, Any]:
    """A field's metadata: who writes it, what it means (compat.schema.json's description), and any of
    key (one of the record's identity), change (a baseline change carries it), minimum, enum, schema
    (a JSON schema that replaces the one its annotation gives)."""
    return {"by": by, "doc": doc, **more}


@dataclass
class Record:
    suite: str = field(metadata=_meta(COLLECTOR, "Suite name from matrix.yaml.", key=True))
    # The runtime names the test by its node id ("nodeid" in report.json, the digest and test.xml).
    test: str = field(metadata=_meta(RUNTIME, "pytest node id relative to the suite directory.", key=True))
    variant: str = field(metadata=_meta(COLLECTOR, "The variant of the cell.", key=True))
    device: str = field(metadata=_meta(COLLECTOR, "The device of the cell.", key=True))
    status: str = field(metadata=_meta(RUNTIME, "One of tools.matrix.statuses.ALL.", enum=statuses.ALL))
    duration_s: float = field(default=0.0, metadata=_meta(RUNTIME, "Seconds the test took (setup, call, teardown).", minimum=0))
    message: str = field(default="", metadata=_meta(RUNTIME, "First line of the failure / skip reason.", change=True))
    error_type: str | None = field(default=None, metadata=_meta(RUNTIME, "Exception type name, or crashed / timeout / not_run.", change=True))
    transform_failed: bool = field(default=False, metadata=_meta(RUNTIME, "The variant's transform raised, not the test's assertion.", change=True))
    target: str = field(default="", metadata=_meta(COLLECTOR, "Bazel label of the cell."))
    shard: int | None = field(default=None, metadata=_meta(COLLECTOR, "0-based shard index.", minimum=0))
    attempts: int = field(default=1, metadata=_meta(COLLECTOR, "> 1 when Bazel retried a flaky target.", minimum=1))
    cached: bool = field(default=False, metadata=_meta(COLLECTOR, "The result came from Bazel's cache."))
    run_id: str = field(default="", metadata=_meta(COLLECTOR, "The collection run that produced this record (reruns merge by this)."))
    expectation: str | None = field(default=None, metadata=_meta(RUNTIME, "The matrix.yaml xfail/skip entry that applied."))
    log_tail: str = field(default="", metadata=_meta(RUNTIME, "The end of the traceback (failed, error, xfailed) or of the target's log (crashed, timeout, not_run)."))
    transform_check: str | None = field(default=None, metadata=_meta(
        RUNTIME, "The variant's differential check over the test's calls (runtime/transform_check.py): passed, skipped: <reason>, "
                 "failed: <mismatch>, off: <reason>; null when the variant does not check or the test made no call."))  # fmt: skip
    evidence: dict[str, Any] | None = field(default=None, metadata=_meta(
        COLLECTOR, "For a record whose status keeps evidence (failed, error, crashed, timeout, xfailed) under a variant that transforms "
                   "programs: what the transform made of the test's programs (tools/matrix/runtime/evidence.py), read from the target's "
                   "outputs by the collector (collect/evidence.py); null when none was kept.",
        schema={"anyOf": [{"type": "null"}, {"$ref": "#/$defs/evidence"}]}))  # fmt: skip

    @property
    def key(self) -> tuple[str, str, str, str]:
        return _key(self)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        # 100,000 are read when `report` merges the last report: the field names are looked up once.
        if data.keys() <= _NAMES:
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in _NAMES})


FIELDS: tuple[Field[Any], ...] = fields(Record)
_NAMES = frozenset(f.name for f in FIELDS)
KEY_FIELDS = tuple(f.name for f in FIELDS if f.metadata.get("key"))
_key = attrgetter(*KEY_FIELDS)
# What the runtime writes per test beside the test's node id, in this order (the digest's columns).
RUNTIME_FIELDS = tuple(f.name for f in FIELDS if f.metadata["by"] == RUNTIME and not f.metadata.get("key"))
CHANGE_FIELDS = tuple(f.name for f in FIELDS if f.metadata.get("change"))


def sort_records(records: Iterable[Record]) -> list[Record]:
    """Records in Record.key order: (suite, test, variant, device)."""
    # Stable single-field passes, least significant first: faster than one sort on a 4-tuple key.
    least, *more = reversed(KEY_FIELDS)
    out = sorted(records, key=attrgetter(least))
    for name in more:
        out.sort(key=attrgetter(name))
    return out


# JSON type names (as JSON Schema spells them) -> the Python types json.loads gives for them.
PYTHON_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}), "integer": frozenset({int}), "number": frozenset({int, float}), "boolean": frozenset({bool}),
    "array": frozenset({list}), "object": frozenset({dict}), "null": frozenset({type(None)}),
}  # fmt: skip
_JSON_NAME = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object", type(None): "null"}


def json_kinds(annotation: Any, where: str) -> tuple[str, ...]:
    """The JSON types (JSON Schema's names) of a field annotated `annotation`: `str | None` is ("string", "null")."""
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    kinds = []
    for part in typing.get_args(annotation) if union else (annotation,):
        base = typing.get_origin(part) or part  # list[str] -> list
        if base not in _JSON_NAME:
            raise TypeError(f"{where}: {part!r} is not a JSON type (str, int, float, bool, list, dict, or one of them | None)")
        kinds.append(_JSON_NAME[base])
    return tuple(kinds)


def _kinds_of(cls: type) -> dict[str, tuple[str, ...]]:
    hints = typing.get_type_hints(cls)
    return {f.name: json_kinds(hints[f.name], f"{cls.__name__}.{f.name}") for f in fields(cls)}


SCHEMA_TYPES = _kinds_of(Record)  # per field, its JSON types
JSON_TYPES = {name: frozenset().union(*(PYTHON_TYPES[k] for k in kinds)) for name, kinds in SCHEMA_TYPES.items()}


def default_of(f: Field[Any]) -> Any:
    """A fresh default value of field `f` (MISSING when it has none)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def check_definition(cls: type) -> None:
    """Raise TypeError unless `cls` (Record) keeps the rules every view relies on (module docstring)."""
    kinds_of = _kinds_of(cls)
    for f in fields(cls):
        kinds, default = kinds_of[f.name], default_of(f)
        where = f"{cls.__name__}.{f.name}"
        if len(set(kinds) - {"null"}) != 1:
            raise TypeError(f"{where}: one JSON type, or that type | None, not {' | '.join(kinds)}")
        if default is MISSING and not (f.metadata.get("key") or f.name == "status"):
            raise TypeError(f"{where}: needs a default (outputs of an older runtime lack it)")
        if "null" in kinds and default is not None and default is not MISSING:
            raise TypeError(f"{where}: a field that may be None defaults to None (test.xml writes no property for it)")
        if f.metadata.get("by") not in (RUNTIME, COLLECTOR):
            raise TypeError(f"{where}: metadata['by'] is RUNTIME or COLLECTOR")
    runtime = [f.name for f in fields(cls) if f.metadata["by"] == RUNTIME and not f.metadata.get("key")]
    if runtime[:1] != ["status"]:
        raise TypeError(f"{cls.__name__}.status is the first field the runtime writes (runtime_result)")


check_definition(Record)
_RUNTIME_DEFAULTS = tuple((f.name, f) for f in FIELDS if f.name in RUNTIME_FIELDS[1:])


@dataclass
class RuntimeDetail:
    """Per test, what the runtime also writes into report.json's metadata["matrix"] and no further (the
    benchmarks and the remote integration test read it): counts and the time spent in the runtime's
    own machinery. A None (nothing of the kind happened) is left out."""

    transform_s: float = 0.0  # time in the variant's transform
    transform_calls: int = 0
    subtests_run: int | None = None
    subtests_failed: int | None = None
    check_s: float | None = None  # time in the differential check (apart from transform_s); None: nothing was checked
    evidence_s: float | None = None  # time spent keeping evidence (runtime/evidence.py); None: no transform recorded any


def runtime_result(status: str, detail: RuntimeDetail | None = None, **values: Any) -> dict[str, Any]:
    """report.json's metadata["matrix"] of one test: every RUNTIME field in Record's order (a field not
    given at its default), then the detail's fields that are not None."""
    unknown = values.keys() - set(RUNTIME_FIELDS)
    if unknown:
        raise TypeError(f"not fields the runtime writes: {', '.join(sorted(unknown))}")
    result = {"status": status, **{name: values[name] if name in values else default_of(f) for name, f in _RUNTIME_DEFAULTS}}
    if detail is not None:  # (its fields are numbers: no asdict's deep copy)
        result.update((k, v) for k, v in vars(detail).items() if v is not None)
    return result


@dataclass
class RunInfo:
    """Metadata of the run that produced a report."""

    run_id: str
    created: str = field(metadata={"doc": "ISO 8601, UTC."})
    torch_version: str | None = None
    bazel_command: str = ""
    testlogs: str = field(default="", metadata={"doc": "The bazel-testlogs directory the records were collected from."})
    matrix: str = field(default="matrix.yaml", metadata={"doc": "Path of the matrix file."})
    git_commit: str | None = field(default=None, metadata={"doc": "The workspace's git HEAD; null outside a git checkout."})
    git_dirty: bool | None = field(default=None, metadata={"doc": "The working tree had changes git would commit (its inputs are not the commit's)."})
    host: str = field(default="", metadata={"doc": "The machine that ran `report` / `rerun`."})
    extra: dict[str, Any] = field(default_factory=dict)
