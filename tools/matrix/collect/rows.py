"""A shard's results as rows, one per test: its node id and the fields records.Record says the runtime
writes (runtime/outputs.DIGEST_FIELDS, in that order), whichever source they came from (the digest,
report.json, test.xml). Every row is checked against its fields' JSON types, enums and minimums, all
taken from Record's annotations and metadata, then made a Record by one reader generated from Record's
fields. 100,000 rows pass here: both work column by column or in one comprehension, at C speed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, Field
from functools import partial
from operator import is_not, itemgetter
from typing import Any

from tools.matrix.collect.files import Unreadable
from tools.matrix.config import Target
from tools.matrix.records import FIELDS, JSON_TYPES, RUNTIME_FIELDS, SCHEMA_TYPES, Record, default_of
from tools.matrix.runtime.outputs import DIGEST_FIELDS

_NONE = type(None)
# Per column, the Python types its JSON values may have; None also where a field an older runtime did
# not write is read as the field's default (every field but the node id and the status).
ALLOWED: dict[str, frozenset[type]] = {
    "nodeid": frozenset({str}),
    **{name: JSON_TYPES[name] | ({_NONE} if name != "status" else set()) for name in RUNTIME_FIELDS},
}  # fmt: skip
_META = {f.name: f.metadata for f in FIELDS}
_ENUMS = [(k, name, frozenset(_META[name]["enum"])) for k, name in enumerate(DIGEST_FIELDS) if "enum" in _META.get(name, {})]
# Numbers must be finite (JSON's NaN and Infinity are not) and at least the field's minimum, if it has one.
_NUMBERS = [(k, name, _META[name].get("minimum")) for k, name in enumerate(DIGEST_FIELDS) if ALLOWED[name] & {int, float}]
_KIND_NAMES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true/false", "array": "a list",
               "object": "an object", "null": "null"}  # fmt: skip
# Per column, what its values may be, in words.
_WANTED = {name: " or ".join(_KIND_NAMES[k] for k in dict.fromkeys([*SCHEMA_TYPES.get(name, ("string",)), *(["null"] if _NONE in allowed else [])]))
           for name, allowed in ALLOWED.items()}  # fmt: skip


def _numbers(column: list[Any]) -> list[Any]:
    return list(filter(partial(is_not, None), column))


def _numbers_ok(values: list[Any], minimum: float | None) -> bool:
    try:
        return math.isfinite(sum(values)) and (minimum is None or min(values, default=minimum) >= minimum)  # a NaN survives the sum
    except OverflowError:  # an integer too large for a float
        return False


def _rows_ok(columns: list[list[Any]]) -> bool:
    """Whether every value is well formed, in a few C-speed passes per column (check_rows says what is wrong)."""
    if not all(set(map(type, column)) <= ALLOWED[name] for name, column in zip(DIGEST_FIELDS, columns)):
        return False
    if not all(set(columns[k]) <= allowed for k, _name, allowed in _ENUMS):
        return False
    return all(_numbers_ok(_numbers(columns[k]), minimum) for k, _name, minimum in _NUMBERS)


def check_rows(rows: list[list[Any]], bad: Callable[[str], Unreadable]) -> None:
    """Raise bad(what) unless every row holds values of its fields' types, in their enums, numbers
    finite and at least their minimum. Rows are lists of len(DIGEST_FIELDS)."""
    if not rows:
        return
    # One list per column (zip(*rows) would make an iterator per row: garbage-collector work for 100,000).
    columns = [list(map(itemgetter(k), rows)) for k in range(len(DIGEST_FIELDS))]
    if _rows_ok(columns):
        return
    ids = columns[0]

    def at(i: int) -> str:
        return f"test {i + 1} ({ids[i]!r:.120})" if isinstance(ids[i], str) else f"test {i + 1}"

    for name, column in zip(DIGEST_FIELDS, columns):
        allowed = ALLOWED[name]
        if not set(map(type, column)) <= allowed:
            i = next(i for i, v in enumerate(column) if type(v) not in allowed)
            raise bad(f"{at(i)}: {name} is {column[i]!r:.80}, not {_WANTED[name]}")
    for k, name, allowed in _ENUMS:
        i = next((i for i, v in enumerate(columns[k]) if v not in allowed), None)
        if i is not None:
            raise bad(f"{at(i)}: {name} {columns[k][i]!r:.80} is not one of {', '.join(_META[name]['enum'])}")
    for k, name, minimum in _NUMBERS:
        for i, v in enumerate(columns[k]):
            if v is not None and not _numbers_ok([v], minimum):
                floor = "" if minimum is None else f" >= {minimum}"
                raise bad(f"{at(i)}: {name} is {v!r:.80}, not a finite number{floor}")


def _row_reader() -> Callable[[list[list[Any]], str, str, str, str, int], list[Record]]:
    """The rows -> Records loop, generated from DIGEST_FIELDS and Record's fields (as dataclasses
    generate __init__): positional, as fast as the loop written out by hand (keyword arguments cost ~50%
    more). A None in a field that does not allow it (a field an older runtime did not write) is the
    field's default; a whole number in a float field becomes a float."""
    from_cell = {"suite": "suite", "test": "nodeid", "variant": "variant", "device": "device", "target": "label", "shard": "shard"}
    namespace: dict[str, Any] = {"Record": Record}

    def default(f: Field[Any]) -> str:
        if f.default_factory is MISSING:
            return repr(f.default)
        namespace[f"new_{f.name}"] = f.default_factory  # a fresh list or dict per record
        return f"new_{f.name}()"

    args = []
    for f in FIELDS:
        value, number = f"v_{f.name}", float in JSON_TYPES[f.name]
        if f.name in from_cell:
            args.append(from_cell[f.name])
        elif f.name not in DIGEST_FIELDS:  # the collector adds it later
            args.append(default(f))
        elif f.default is MISSING and f.default_factory is MISSING:  # required: the checks made sure it is there
            args.append(value)
        elif _NONE in JSON_TYPES[f.name]:
            args.append(f"(None if {value} is None else float({value}))" if number else value)
        else:  # `or` where every falsy value is the default ("", 0, False, []), the faster of the two
            falsy_default = not default_of(f)
            read = f"({value} or {default(f)})" if falsy_default else f"({default(f)} if {value} is None else {value})"
            args.append(f"float{read}" if number else read)
    names = ", ".join("nodeid" if name == "nodeid" else f"v_{name}" for name in DIGEST_FIELDS)
    source = f"def read(rows, suite, variant, device, label, shard):\n    return [Record({', '.join(args)}) for {names} in rows]\n"
    exec(compile(source, "<collect.rows._row_reader>", "exec"), namespace)
    return namespace["read"]


_read_rows = _row_reader()


def records_from_rows(rows: list[list[Any]], target: Target, shard: int) -> list[Record]:
    """The Records of checked rows (check_rows) of `target`'s shard `shard`."""
    cell = target.cell
    return _read_rows(rows, cell.suite.name, cell.variant.name, cell.device.name, target.label, shard)
