"""One definition of the per-test record (records.Record): the runtime's report.json metadata, the digest,
test.xml's properties, the collector's rows -> Record and compat.schema.json all derive from its fields.
(test_record_one_edit.py adds a field of each JSON type in a scratch copy and follows it end to end.)"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tools.matrix import statuses
from tools.matrix.collect.files import Unreadable, complaint
from tools.matrix.collect.rows import check_rows, records_from_rows
from tools.matrix.collect.sources import digest_results
from tools.matrix.records import (
    CHANGE_FIELDS,
    COLLECTOR,
    KEY_FIELDS,
    RUNTIME,
    RUNTIME_FIELDS,
    Record,
    RuntimeDetail,
    check_definition,
    runtime_result,
)
from tools.matrix.report import schema
from tools.matrix.runtime import outputs, progress

TARGET = SimpleNamespace(cell=SimpleNamespace(suite=SimpleNamespace(name="s"), variant=SimpleNamespace(name="v"), device=SimpleNamespace(name="d")), label="//s:t")
# A value unlike its field's default in every field the runtime writes.
WRITTEN = {"duration_s": 1.5, "message": "m", "error_type": "E", "transform_failed": True, "expectation": "x.py", "log_tail": "tail",
           "transform_check": "failed: output: x"}  # fmt: skip


def test_compat_schema_json_is_generated_from_the_records_and_up_to_date() -> None:
    assert schema.SCHEMA_PATH.read_text(encoding="utf-8") == schema.render(), f"compat.schema.json is stale: run `{schema.REGENERATE}`"
    generated = json.loads(schema.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert generated["$comment"].startswith("Generated from tools/matrix/records.py") and schema.REGENERATE in generated["$comment"]
    record = generated["$defs"]["record"]
    assert list(record["properties"]) == record["required"] == [f.name for f in fields(Record)]
    assert generated["$defs"]["change"]["required"] == [*KEY_FIELDS, "old", "new", *CHANGE_FIELDS]


def test_the_fields_the_runtime_writes_are_the_digest_columns_and_test_xml_properties() -> None:
    assert RUNTIME_FIELDS == ("status", "duration_s", "message", "error_type", "transform_failed", "expectation", "log_tail", "transform_check")
    assert outputs.DIGEST_FIELDS == ("nodeid", *RUNTIME_FIELDS)
    assert {f.name for f in fields(Record) if f.metadata["by"] == COLLECTOR} == {
        "suite", "variant", "device", "target", "shard", "attempts", "cached", "run_id", "evidence"}  # fmt: skip
    assert {f.name for f in fields(Record) if f.metadata["by"] == RUNTIME} == {"test", *RUNTIME_FIELDS}


def _xml_rows(tests: list[dict[str, Any]], tmp_path: Path) -> list[list[Any]]:
    from tools.matrix.collect.sources import _xml_rows

    path = tmp_path / "test.xml"
    path.write_bytes(outputs.junit_xml(tests, {"suite": "s"}))
    return _xml_rows(path, ET.parse(path).getroot(), "s")


def test_every_runtime_field_travels_to_the_record_through_the_digest_and_through_test_xml(tmp_path: Path) -> None:
    """Non-default values in every field: report.json metadata -> digest row / test.xml properties -> Record."""
    metadata = runtime_result(statuses.XFAILED, RuntimeDetail(transform_s=0.25, transform_calls=3, subtests_run=2, subtests_failed=1), **WRITTEN)
    assert set(WRITTEN) == set(RUNTIME_FIELDS) - {"status"}
    tests = [{"nodeid": "x.py::t[\x1b\"]", "metadata": {"matrix": metadata}}]
    expected = Record("s", "x.py::t[\x1b\"]", "v", "d", statuses.XFAILED, **WRITTEN, target="//s:t", shard=2)
    digest = outputs.digest(tests, {})
    assert digest["fields"] == list(outputs.DIGEST_FIELDS)
    assert records_from_rows(digest["tests"], TARGET, 2) == [expected]  # type: ignore[arg-type]
    assert records_from_rows(_xml_rows(tests, tmp_path), TARGET, 2) == [expected]  # type: ignore[arg-type]


def test_an_older_writers_row_gets_the_record_defaults() -> None:
    row = ["x.py::t", statuses.PASSED, 1, None, None, None, None, None, None]
    (record,) = records_from_rows([row], TARGET, 0)  # type: ignore[arg-type]
    assert record == Record("s", "x.py::t", "v", "d", statuses.PASSED, 1.0, target="//s:t", shard=0)
    assert type(record.duration_s) is float


def test_a_digest_written_before_transform_check_reads_as_none(tmp_path: Path) -> None:
    """A digest whose `fields` lack transform_check (an older runtime's cached output) still reads."""
    outputs_dir = tmp_path / "test.outputs"
    outputs_dir.mkdir()
    older_fields = [f for f in outputs.DIGEST_FIELDS if f != "transform_check"]
    row = ["x.py::t", statuses.FAILED, 0.5, "m", "E", True, None, ""]
    (outputs_dir / outputs.DIGEST_NAME).write_text(json.dumps({"matrix": {}, "fields": older_fields, "tests": [row]}))
    meta, rows = digest_results(tmp_path)
    assert rows == [["x.py::t", statuses.FAILED, 0.5, "m", "E", True, None, "", None]]


@pytest.mark.parametrize(("column", "value", "what"), [
    ("message", 0, "message is 0, not a string or null"),
    ("error_type", [], "error_type is [], not a string or null"),
    ("transform_failed", 1, "transform_failed is 1, not true/false or null"),
    ("duration_s", True, "duration_s is True, not a number or null"),
    ("duration_s", -1, "duration_s is -1, not a finite number >= 0"),
    ("duration_s", 10**400, "duration_s is 1000000000"),
    ("status", None, "status is None, not a string"),
    ("status", "great", "status 'great' is not one of passed, failed,"),
])  # fmt: skip
def test_a_row_value_outside_its_fields_json_type_is_refused(column: str, value: Any, what: str) -> None:
    """Exact types from the annotations: no 0 for a string, no 1 for a bool, no bool for a number."""
    row = ["x.py::t", statuses.PASSED, 0.5, "", None, False, None, "", None]
    row[outputs.DIGEST_FIELDS.index(column)] = value
    with pytest.raises(Unreadable) as raised:
        check_rows([["x.py::a", statuses.PASSED, 0.1, "", None, False, None, "", None], row], complaint(Path("d.json")))
    assert str(raised.value).startswith(f"d.json: test 2 ('x.py::t'): {what}"), raised.value


def test_report_json_metadata_is_the_runtime_fields_then_the_detail() -> None:
    plugin = runtime_result(statuses.PASSED, RuntimeDetail(subtests_run=0, subtests_failed=0))
    assert list(plugin) == [*RUNTIME_FIELDS, "transform_s", "transform_calls", "subtests_run", "subtests_failed"]
    checked = runtime_result(statuses.PASSED, RuntimeDetail(check_s=0.25), transform_check="passed")
    assert checked["transform_check"] == "passed" and checked["check_s"] == 0.25  # only a checked test carries check_s
    synthetic = progress.synthetic(SimpleNamespace(xfail={}), "x.py::t", statuses.CRASHED, "died", "tail")  # type: ignore[arg-type]
    assert synthetic["metadata"]["matrix"] == {
        "status": statuses.CRASHED, "duration_s": 0.0, "message": "died", "error_type": statuses.CRASHED, "transform_failed": False,
        "expectation": None, "log_tail": "tail", "transform_check": None, "transform_s": 0.0, "transform_calls": 0,
    }  # fmt: skip
    with pytest.raises(TypeError, match="not fields the runtime writes: target"):
        runtime_result(statuses.PASSED, target="//x")


def _fields(annotation: str, default: Any) -> type:
    """A Record-like dataclass whose last field is `extra: <annotation> = <default>`."""
    namespace: dict[str, Any] = {}
    exec(f"""from __future__ import annotations
from dataclasses import dataclass, field
from typing import Any
@dataclass
class Like:
    test: str = field(metadata={{"by": "runtime", "key": True}})
    status: str = field(metadata={{"by": "runtime"}})
    extra: {annotation} = field(default={default}, metadata={{"by": "runtime"}})
""", namespace)  # fmt: skip
    return namespace["Like"]


@pytest.mark.parametrize(("annotation", "default", "why"), [
    ("set[str]", "None", r"Like.extra: set\[str\] is not a JSON type"),
    ("str | int", '""', "Like.extra: one JSON type, or that type | None, not string | integer"),
    ("int | None", "3", "Like.extra: a field that may be None defaults to None"),
    ("int", "MISSING", "Like.extra: needs a default"),
])  # fmt: skip
def test_a_field_every_view_could_not_carry_is_refused_at_import(annotation: str, default: str, why: str) -> None:
    cls = _fields(annotation, default.replace("MISSING", "__import__('dataclasses').MISSING"))
    with pytest.raises(TypeError, match=why):
        check_definition(cls)
    check_definition(_fields("list[str] | None", "None"))  # a list, or null: fine
