"""compat.json: the machine-readable report (schema: compat.schema.json next to this file)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, fields
from functools import cache
from math import fsum, isfinite
from operator import attrgetter
from pathlib import Path
from typing import Any

import jsonschema

from tools.matrix.records import Record, RunInfo
from tools.matrix.report.baseline import Comparison
from tools.matrix.report.summary import Prepared, pass_rate, prepare

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("compat.schema.json")
_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def summary_json(prep: Prepared) -> dict[str, Any]:
    return {
        "total": len(prep.records),
        "unexpected": prep.unexpected_count,
        "pass_rate": pass_rate(prep.totals),
        "counts": prep.totals,
        "groups": [
            {"suite": s, "variant": v, "device": d, "total": sum(c.values()), "pass_rate": pass_rate(c), "counts": c}
            for (s, v, d), c in prep.groups.items()
        ],
    }


def _record_dicts(records: list[Record]) -> list[dict[str, Any]]:
    # A plain dataclass's __dict__ is exactly its fields, in order: no copy (asdict would deep-copy 100k).
    dicts = list(map(vars, records))
    if set(map(len, dicts)) - {len(_RECORD_FIELDS)}:  # something added attributes: take the fields only
        dicts = [{name: d[name] for name in _RECORD_FIELDS} for d in dicts]
    try:
        finite = isfinite(fsum(map(attrgetter("duration_s"), records)))
    except (TypeError, ValueError, OverflowError):  # fsum: inf + -inf, or a non-number
        finite = False
    if not finite:  # NaN / Infinity are not JSON: such a duration is unknown, written as 0.0
        dicts = [d if _finite(d["duration_s"]) else {**d, "duration_s": 0.0} for d in dicts]
    return dicts


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and isfinite(value)


def render_json(records: Sequence[Record] | Prepared, run: RunInfo, baseline: Comparison | None = None) -> str:
    prep = prepare(records)
    ordered = prep.records
    head = {
        "schema_version": SCHEMA_VERSION,
        "run": asdict(run),
        "summary": summary_json(prep),
        "baseline": None if baseline is None else baseline.to_json(),
    }
    # allow_nan=False: compat.json is strict JSON, whatever a record holds (durations are sanitised above).
    text = json.dumps(head, indent=2, ensure_ascii=False, allow_nan=False, default=str)  # default: odd values in run.extra
    body = json.dumps(_record_dicts(ordered), ensure_ascii=False, allow_nan=False)
    # One record per line (diffable, greppable) without encoding 100k records one call at a time:
    # a raw `}, {"suite": ` cannot occur inside an encoded string, where `"` is always escaped.
    body = body[1:-1].replace('}, {"suite": ', '},\n    {"suite": ')
    records_text = f'[\n    {body}\n  ]' if ordered else "[]"
    return f'{text[:-2]},\n  "records": {records_text}\n}}\n'


def write_text(path: Path, text: str) -> Path:
    # backslashreplace: a lone surrogate from undecodable test output becomes `\udcxx`, which inside a
    # JSON string is that same escape, so the document stays valid UTF-8 and round-trips exactly.
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="backslashreplace")
    return path


def write_json(records: Sequence[Record], run: RunInfo, path: str | Path, baseline: Comparison | None = None) -> Path:
    """Write compat.json; records sorted by (suite, test, variant, device)."""
    return write_text(Path(path), render_json(records, run, baseline))


class NotACompatJson(ValueError):
    """A file load_json cannot read as a compat.json; the message says why (without the path)."""


def load_json(path: str | Path) -> tuple[RunInfo, list[Record]]:
    """Read a compat.json back (e.g. as the baseline of the next run), checked against what it must
    hold (compat.schema.json's run and records: _reader_schema) before any of it is used.

    Raises OSError, UnicodeDecodeError, json.JSONDecodeError or NotACompatJson (a ValueError that says
    what is wrong and where: nesting deeper than the reader follows, a number that is not finite or
    too long, a value of the wrong type or missing)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        # compat.json is strict JSON (render_json): NaN, Infinity and 1e999 are not numbers of it.
        data = json.loads(text, parse_constant=_not_a_number, parse_float=_finite_number)
    except RecursionError:
        raise NotACompatJson("nested deeper than a compat.json ever is") from None
    except json.JSONDecodeError:
        raise
    except ValueError as e:  # a non-finite number, an integer past Python's digit limit
        raise NotACompatJson(str(e)) from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
        raise NotACompatJson(f"not a compat.json of schema_version {SCHEMA_VERSION} (found {found!r:.80})")
    head, record = _readers()
    _refuse(head, {**data, "records": []} if isinstance(data.get("records"), list) else data, "")
    simple = _simple_checks(record.schema)
    for i, r in enumerate(data["records"], 1):
        # The validator is slow (35 s for 100k records): it judges only what the quick check doubts.
        if not (type(r) is dict and all(check(r.get(name, _ABSENT)) for name, check in simple)):
            _refuse(record, r, f"record {i}: ")
    run_fields = {f.name for f in fields(RunInfo)}
    run = RunInfo(**{k: v for k, v in data["run"].items() if k in run_fields})
    return run, [Record.from_json(r) for r in data["records"]]


def _not_a_number(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite_number(text: str) -> float:
    value = float(text)
    if not isfinite(value):
        raise ValueError(f"the number {text:.40} is out of range")
    return value


def _refuse(validator: jsonschema.protocols.Validator, instance: Any, where: str) -> None:
    """Raise NotACompatJson for the first thing wrong in `instance`: where, then why
    (`record 3: duration_s: 'fast' is not of type 'number'`)."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is not None:
        inside = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise NotACompatJson(f"{where}{inside + ': ' if inside else ''}{message}")


_ABSENT = object()
_JSON_TYPES = {"string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,), "null": (type(None),), "object": (dict,), "array": (list,)}


def _simple_checks(record: dict[str, Any]) -> list[tuple[str, Callable[[Any], bool]]]:
    """Per property of the record schema, a quick test that passes only values the schema accepts
    (exact types: a bool is no integer; an object-valued property only when null; a required one
    only when present). A record any test fails goes to the validator, which decides."""
    defs, required = record["$defs"], set(record["required"])

    def check(name: str, prop: dict[str, Any]) -> Callable[[Any], bool]:
        prop = defs[prop["$ref"].rpartition("/")[2]] if "$ref" in prop else prop
        allowed = frozenset(prop.get("enum", ()))
        types = tuple(t for kind in ([prop["type"]] if isinstance(prop.get("type"), str) else prop.get("type", [])) for t in _JSON_TYPES[kind])
        types = tuple(t for t in types if t not in (dict, list))  # nested values: the validator's
        minimum = prop.get("minimum")

        def passes(value: Any) -> bool:
            if value is _ABSENT:
                return name not in required
            if allowed:
                return value in allowed and type(value) is str
            return type(value) in types and (minimum is None or value is None or value >= minimum)

        return passes

    return [(name, check(name, prop)) for name, prop in record["properties"].items()]


@cache
def _readers() -> tuple[jsonschema.protocols.Validator, jsonschema.protocols.Validator]:
    """(the document without its records, one record): compat.schema.json narrowed to what load_json
    reads (run, records) and widened to the reports of other versions of schema 1: a record needs
    only the fields Record cannot default, and keys this version does not know are left out
    (Record.from_json) rather than refused."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    defs = schema["$defs"]
    required = [f.name for f in fields(Record) if f.default is MISSING and f.default_factory is MISSING]
    record = {"$schema": schema["$schema"], "$defs": defs, **defs["record"], "required": required, "additionalProperties": True}
    head = {
        "$schema": schema["$schema"],
        "type": "object",
        "required": ["schema_version", "run", "records"],
        "properties": {"run": {**schema["properties"]["run"], "additionalProperties": True}, "records": {"type": "array"}},
    }
    return tuple(jsonschema.validators.validator_for(s)(s) for s in (head, record))  # type: ignore[return-value]
