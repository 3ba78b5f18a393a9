"""compat.json: the machine-readable report (schema: compat.schema.json next to this file)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, fields
from math import fsum, isfinite
from operator import attrgetter
from pathlib import Path
from typing import Any

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


def load_json(path: str | Path) -> tuple[RunInfo, list[Record]]:
    """Read a compat.json back (e.g. as the baseline of the next run)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not a compat.json of schema_version {SCHEMA_VERSION} (found {found!r})")
    run_fields = {f.name for f in fields(RunInfo)}
    run = RunInfo(**{k: v for k, v in data["run"].items() if k in run_fields})
    return run, [Record.from_json(r) for r in data["records"]]
