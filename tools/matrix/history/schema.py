"""The history store's tables, derived from records.Record and records.RunInfo (no field is spelt here).

    runs     one row per run: `seq` (the order runs were stored in), then every RunInfo field
    tests    one row per record key (Record's key fields), `id` numbering them: a name is stored once
    results  one row per fresh record of a run: `run_seq`, `test_id`, then every other Record field
             (less run_id: the run's)
    meta     the schema version

A field added to Record or RunInfo becomes a column with no other edit: opening a store adds the
columns it lacks (`missing_columns`), and older rows read as the field's default. A change these
additive columns cannot express bumps SCHEMA_VERSION and adds a step to MIGRATIONS; a store written by
a newer version is refused (store.py)."""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, Field, fields
from operator import attrgetter
from typing import Any

from tools.matrix.records import FIELDS, KEY_FIELDS, Record, RunInfo, default_of, json_kinds

SCHEMA_VERSION = 1
# Steps from version N to N + 1, as SQL run in the transaction that opens an older store: none yet.
MIGRATIONS: dict[int, tuple[str, ...]] = {}

# A JSON type -> the column type; the same words in SQLite and PostgreSQL (SQLite reads them by affinity).
_COLUMN_TYPE = {"string": "TEXT", "integer": "BIGINT", "number": "DOUBLE PRECISION", "boolean": "BOOLEAN", "array": "TEXT", "object": "TEXT"}
JSON_KINDS = frozenset({"array", "object"})  # stored as JSON text


class Column(typing.NamedTuple):
    name: str
    sql_type: str
    kind: str  # its JSON type (records.json_kinds), "null" left out
    nullable: bool
    default: Any  # of the field, for a row that predates the column


def _columns(cls: type, chosen: list[Field[Any]]) -> tuple[Column, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in chosen:
        kinds = json_kinds(hints[f.name], f"{cls.__name__}.{f.name}")
        kind = next(k for k in kinds if k != "null")
        default = default_of(f)
        out.append(Column(f.name, _COLUMN_TYPE[kind], kind, "null" in kinds, None if default is MISSING else default))
    return tuple(out)


RUN_COLUMNS = _columns(RunInfo, list(fields(RunInfo)))
KEY_COLUMNS = _columns(Record, [f for f in FIELDS if f.name in KEY_FIELDS])
RESULT_COLUMNS = _columns(Record, [f for f in FIELDS if f.name not in KEY_FIELDS and f.name != "run_id"])
RESULT_NAMES = tuple(c.name for c in RESULT_COLUMNS)
RUN_NAMES = tuple(c.name for c in RUN_COLUMNS)


def _defs(columns: tuple[Column, ...], not_null: frozenset[str] = frozenset()) -> str:
    return ", ".join(f"{c.name} {c.sql_type}" + (" NOT NULL" if c.name in not_null else "") for c in columns)


def create_statements(serial: str, clustered: str) -> list[str]:
    """CREATE statements of a new store. `serial`: the dialect's auto-numbered primary key column type;
    `clustered`: what makes the results table stored in its primary key's order (SQLite's WITHOUT ROWID)."""
    return [
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE runs (seq {serial}, {_defs(RUN_COLUMNS, frozenset({'run_id', 'created'}))}, UNIQUE (run_id))",
        f"CREATE TABLE tests (id {serial}, {_defs(KEY_COLUMNS, frozenset(KEY_FIELDS))}, UNIQUE ({', '.join(KEY_FIELDS)}))",
        f"CREATE TABLE results (run_seq BIGINT NOT NULL, test_id BIGINT NOT NULL, {_defs(RESULT_COLUMNS, frozenset({'status'}))}, "
        f"PRIMARY KEY (test_id, run_seq)){clustered}",
        # A run's results by status without reading their rows (runs' counts, flaky's suspects, prune).
        "CREATE INDEX results_by_run ON results (run_seq, status)",
    ]


def missing_columns(table: str, present: set[str]) -> list[str]:
    """ALTER statements adding the columns a field added since the store was created needs."""
    columns = {"runs": RUN_COLUMNS, "results": RESULT_COLUMNS}[table]
    return [f"ALTER TABLE {table} ADD COLUMN {c.name} {c.sql_type}" for c in columns if c.name not in present]


def to_column(column: Column, value: Any) -> Any:
    if column.kind in JSON_KINDS and value is not None:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def from_column(column: Column, value: Any) -> Any:
    if value is None:  # a row stored before the column existed, or a null
        return None if column.nullable else column.default
    if column.kind in JSON_KINDS:
        return json.loads(value)
    if column.kind == "boolean":
        return bool(value)
    return value


def run_row(run: RunInfo) -> tuple[Any, ...]:
    return tuple(to_column(c, getattr(run, c.name)) for c in RUN_COLUMNS)


_RESULT_VALUES = attrgetter(*RESULT_NAMES)
_JSON_AT = tuple(i for i, c in enumerate(RESULT_COLUMNS) if c.kind in JSON_KINDS)


def result_row(record: Record) -> tuple[Any, ...]:
    """The results columns of `record` (100,000 per run: one C-speed getter, JSON only where there is a value)."""
    row = _RESULT_VALUES(record)
    if any(row[i] is not None for i in _JSON_AT):
        values = list(row)
        for i in _JSON_AT:
            values[i] = to_column(RESULT_COLUMNS[i], values[i])
        return tuple(values)
    return row


def result_fields(row: typing.Sequence[Any]) -> dict[str, Any]:
    """A results row (RESULT_NAMES' order) as Record field values."""
    return {c.name: from_column(c, v) for c, v in zip(RESULT_COLUMNS, row)}


def run_from_row(row: typing.Sequence[Any]) -> RunInfo:
    return RunInfo(**{c.name: from_column(c, v) for c, v in zip(RUN_COLUMNS, row)})
