"""compat.schema.json, generated: a record, the run, a cell and a change from records.Record and RunInfo
(their annotations and field metadata), the statuses from statuses.ALL, an evidence call and its
payloads from the evidence writer's dataclasses (runtime/evidence.py); the summary and the baseline
comparison, which are not views of one record, are written out here.

    bazel run //tools/matrix:compat_schema            # rewrite tools/matrix/report/compat.schema.json
    bazel run //tools/matrix:compat_schema -- --check # exit 1 when it is stale

load_json validates against compat_schema() itself; the file is for readers of compat.json, and
test_record_fields.py fails when it is stale.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by `bazel run`
    sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tools.matrix import statuses  # noqa: E402
from tools.matrix.records import CHANGE_FIELDS, FIELDS, KEY_FIELDS, SCHEMA_TYPES, RunInfo, json_kinds  # noqa: E402
from tools.matrix.runtime.evidence import CallEvidence, Payload  # noqa: E402

SCHEMA_PATH = Path(__file__).with_name("compat.schema.json")
SCHEMA_VERSION = 1
DRAFT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE = "bazel run //tools/matrix:compat_schema"

_STATUS_DOC = (
    "tools.matrix.statuses.ALL. xfailed: expected failure that failed; xpassed: expected failure that passed (stale entry); "
    "error: setup/collection error; crashed: the process died in the test; not_run: the matrix has the cell but no result was found."
)
# What each field of an evidence call and of a payload means (the writer's dataclasses give their types).
_EVIDENCE_CALL_DOCS = {
    "entry": "The wrapped entry point, e.g. torch.export.export.",
    "before": "The program the API under test returned, as text (source-location comments left out).",
    "before_cut": "Characters cut from the middle of `before` (a line in it says where).",
    "after": "The transformed program as text; null when the transform did not finish.",
    "error": "The transform's error, when it raised.",
    "check": "The differential check's outcome for this call (as in transform_check); null when it did not run.",
}
_PAYLOAD_DOCS = {
    "file": "The payload's file in `dir`.",
    "bytes": "Its size as the transform made it.",
    "kept": "Bytes kept in `file`.",
    "cut": "What was left out; empty when nothing.",
}


def _type(kinds: tuple[str, ...]) -> str | list[str]:
    return kinds[0] if len(kinds) == 1 else list(kinds)


def record_property(f: Field[Any]) -> dict[str, Any]:
    """The schema of Record field `f`: its JSON types (or the schema its metadata gives), minimum, enum, description."""
    meta = f.metadata
    if f.name == "status":
        prop: dict[str, Any] = {"$ref": "#/$defs/status"}
    elif "enum" in meta:
        prop = {"enum": list(meta["enum"])}
    else:
        prop = {"type": _type(SCHEMA_TYPES[f.name]), **meta.get("schema", {})}
    if "minimum" in meta:
        prop["minimum"] = meta["minimum"]
    return {**prop, "description": meta["doc"]}


def _dataclass_properties(cls: type, docs: dict[str, str], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Per field of the writer's dataclass `cls`: its JSON types, numbers at least 0, the description in `docs`."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        kinds = json_kinds(hints[f.name], f"{cls.__name__}.{f.name}")
        prop: dict[str, Any] = {"type": _type(kinds)}
        if {"integer", "number"} & set(kinds):
            prop["minimum"] = 0
        if f.name in docs:
            prop["description"] = docs[f.name]
        out[f.name] = prop
    return out


def _required(cls: type) -> list[str]:
    return [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]


def _run() -> dict[str, Any]:
    hints = typing.get_type_hints(RunInfo)
    properties = {}
    for f in fields(RunInfo):
        prop: dict[str, Any] = {"type": _type(json_kinds(hints[f.name], f"RunInfo.{f.name}"))}
        if "doc" in f.metadata:
            prop["description"] = f.metadata["doc"]
        properties[f.name] = prop
    return {"description": "tools.matrix.records.RunInfo: the run that produced the report.", "type": "object",
            "required": _required(RunInfo), "additionalProperties": False, "properties": properties}  # fmt: skip


def _object(names: tuple[str, ...], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(names), "additionalProperties": False, "properties": {n: properties[n] for n in names}}


def compat_schema() -> dict[str, Any]:
    """compat.schema.json's content."""
    record = {f.name: record_property(f) for f in FIELDS}
    status = {"$ref": "#/$defs/status"}
    change = {**record, "old": status, "new": status}
    changes = {"type": "array", "items": {"$ref": "#/$defs/change"}}
    cells = {"type": "array", "items": {"$ref": "#/$defs/cell"}}
    counts = ["regressions", "fixes", "changed_xfails", "other", "new", "removed"]
    baseline = {
        "type": "object",
        "required": ["baseline_run_ids", "counts", *counts],
        "additionalProperties": False,
        "properties": {
            "baseline_run_ids": {"type": "array", "items": {"type": "string"}},
            "counts": {"type": "object", "required": counts, "additionalProperties": {"type": "integer", "minimum": 0}},
            "regressions": {**changes, "description": "passed/xfailed -> failed/error/crashed/timeout"},
            "fixes": {**changes, "description": "failed/error/crashed/timeout -> passed"},
            "changed_xfails": {**changes, "description": "xfailed -> anything else, or anything else -> xfailed"},
            "other": {**changes, "description": "Any other status change."},
            "new": {**cells, "description": "Cells only in this run."},
            "removed": {**cells, "description": "Cells only in the baseline."},
        },
    }
    group = ("suite", "variant", "device")
    return {
        "$schema": DRAFT,
        "$id": "tools/matrix/report/compat.schema.json",
        "$comment": f"Generated from tools/matrix/records.py by tools/matrix/report/schema.py: do not edit. Regenerate: {REGENERATE}",
        "title": "Compatibility report (compat.json)",
        "description": "One record per (suite, test, variant, device) of a test-matrix run, written by tools.matrix.report.write_json. "
                       "Records are sorted by (suite, test, variant, device).",
        "type": "object",
        "required": ["schema_version", "run", "summary", "baseline", "records"],
        "additionalProperties": False,
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION, "description": "Bumped on any incompatible change."},
            "run": _run(),
            "summary": {
                "type": "object",
                "required": ["total", "unexpected", "pass_rate", "counts", "groups"],
                "additionalProperties": False,
                "properties": {
                    "total": {"type": "integer", "minimum": 0},
                    "unexpected": {"type": "integer", "minimum": 0,
                                   "description": f"Records whose status is {', '.join(s for s in statuses.ALL if s in statuses.UNEXPECTED)}."},
                    "pass_rate": {"$ref": "#/$defs/pass_rate"},
                    "counts": {"$ref": "#/$defs/counts"},
                    "groups": {
                        "description": "Counts per (suite, variant, device), sorted by suite, variant (base first), device.",
                        "type": "array",
                        "items": _object((*group, "total", "pass_rate", "counts"), {
                            **{n: {"type": "string"} for n in group}, "total": {"type": "integer", "minimum": 0},
                            "pass_rate": {"$ref": "#/$defs/pass_rate"}, "counts": {"$ref": "#/$defs/counts"}}),
                    },
                },
            },
            "baseline": {
                "description": "Comparison with a baseline run (null when none was given). Each changed cell is in exactly one of "
                               "regressions, fixes, changed_xfails, other.",
                "oneOf": [{"type": "null"}, baseline],
            },
            "records": {"type": "array", "items": {"$ref": "#/$defs/record"}},
        },
        "$defs": {
            "status": {"enum": list(statuses.ALL), "description": _STATUS_DOC},
            "pass_rate": {"description": "passed / (total - skipped - not_run); null when that is 0.", "type": ["number", "null"], "minimum": 0, "maximum": 1},
            "counts": _object(statuses.ALL, {s: {"$ref": "#/$defs/count"} for s in statuses.ALL}),
            "count": {"type": "integer", "minimum": 0},
            "cell": _object((*KEY_FIELDS, "status"), record),
            "change": _object((*KEY_FIELDS, "old", "new", *CHANGE_FIELDS), change),
            "evidence": {
                "type": "object",
                "required": ["outputs", "dir", "calls", "calls_not_kept"],
                "additionalProperties": False,
                "properties": {
                    "outputs": {"type": "string", "description": "The undeclared outputs the evidence was read from: a test.outputs/outputs.zip or "
                                                                 "test.outputs directory under bazel-testlogs."},
                    "dir": {"type": "string", "description": "The evidence's directory in `outputs` (matrix_evidence/<key>): evidence.json and the payload files."},
                    "calls": {"type": "array", "items": {"$ref": "#/$defs/evidence_call"}, "description": "One per call the variant transformed, in order."},
                    "calls_not_kept": {"type": "integer", "minimum": 0, "description": "Calls past the per-test limit, counted only."},
                    "problem": {"type": "string", "description": "Why the evidence could not be read whole (it was there but unreadable or over a limit)."},
                },
            },
            "evidence_call": {
                "type": "object",
                "required": [f.name for f in fields(CallEvidence)],
                "additionalProperties": False,
                "properties": {
                    **_dataclass_properties(CallEvidence, _EVIDENCE_CALL_DOCS, skip=("payloads",)),
                    "payloads": {"type": "array", "items": {"type": "object", "required": [f.name for f in fields(Payload)], "additionalProperties": False,
                                                            "properties": _dataclass_properties(Payload, _PAYLOAD_DOCS)}},
                },
            },
            "record": {"description": "tools.matrix.records.Record.", **_object(tuple(record), record)},
        },
    }  # fmt: skip


def render() -> str:
    """The file's text: one JSON document, two-space indented."""
    return json.dumps(compat_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write (or --check) tools/matrix/report/compat.schema.json from tools/matrix/records.py.")
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is not what the records say")
    args = parser.parse_args(argv)
    root = os.environ.get("BUILD_WORKSPACE_DIRECTORY")  # `bazel run`: the source tree, not the runfiles
    path = Path(root) / "tools/matrix/report/compat.schema.json" if root else SCHEMA_PATH
    if args.check:
        fresh = path.is_file() and path.read_text(encoding="utf-8") == render()
        print(f"{path}: {'up to date' if fresh else f'stale; run {REGENERATE}'}")
        return 0 if fresh else 1
    path.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
