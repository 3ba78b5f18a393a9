"""One definition of the per-test record (records.MatrixResult): the digest, report.json's metadata, the
collector's row -> Record mapping and compat.schema.json's record all agree with it."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path
from types import SimpleNamespace

from tools.matrix import collect, statuses
from tools.matrix.records import COLLECTED_FIELDS, MatrixResult, Record
from tools.matrix.report.json_report import SCHEMA_PATH
from tools.matrix.runtime import cell_main, outputs

_JSON = {"str": "string", "float": "number", "int": "integer", "bool": "boolean", "dict[str, Any]": "object"}


def _schema_type(annotation: str) -> str | list[str]:
    kinds = [_JSON.get(part, "null") for part in str(annotation).split(" | ")]
    return kinds[0] if len(kinds) == 1 else kinds


def test_schema_record_is_the_record_dataclass() -> None:
    record = json.loads(SCHEMA_PATH.read_text())["$defs"]["record"]
    names = [f.name for f in fields(Record)]
    assert list(record["properties"]) == names
    assert record["required"] == names
    for f in fields(Record):
        schema = record["properties"][f.name]
        assert schema.get("type", "status") == (_schema_type(f.type) if f.name != "status" else "status"), f.name


def test_digest_fields_are_the_collected_test_result_fields() -> None:
    assert outputs.DIGEST_FIELDS == ("nodeid", "status", "duration_s", "message", "error_type", "transform_failed", "expectation", "log_tail",
                                     "transform_check")  # fmt: skip
    assert outputs.DIGEST_FIELDS == ("nodeid", *COLLECTED_FIELDS)
    record = {f.name: f for f in fields(Record)}
    for f in fields(MatrixResult):
        if f.name in COLLECTED_FIELDS:  # the Record field is the same, less "None: not written"
            written = str(f.type).removesuffix(" | None") if f.name == "log_tail" else str(f.type)
            assert str(record[f.name].type) == written, f.name


def test_every_collected_field_travels_from_metadata_to_record() -> None:
    """Non-default values in every field: report.json metadata -> digest row -> Record."""
    result = MatrixResult(statuses.XFAILED, duration_s=1.5, message="m", error_type="E", transform_failed=True,
                        transform_s=0.25, transform_calls=3, expectation="x.py", subtests_run=2, subtests_failed=1,
                        log_tail="tail", transform_check="failed: output: x", check_s=0.5)  # fmt: skip
    digest = outputs.digest([{"nodeid": "x.py::t", "metadata": {"matrix": result.to_metadata()}}], {})
    assert digest["fields"] == list(outputs.DIGEST_FIELDS)
    target = SimpleNamespace(cell=SimpleNamespace(suite=SimpleNamespace(name="s"), variant=SimpleNamespace(name="v"), device=SimpleNamespace(name="d")), label="//s:t")
    (record,) = collect._records_from_rows(digest["tests"], target, 2)  # type: ignore[arg-type]
    assert record == Record("s", "x.py::t", "v", "d", statuses.XFAILED, 1.5, "m", "E", True, "//s:t", 2, expectation="x.py", log_tail="tail",
                            transform_check="failed: output: x")  # fmt: skip
    for name in COLLECTED_FIELDS:
        default = next(f.default for f in fields(Record) if f.name == name)
        assert default is MISSING or getattr(record, name) != default, name


def test_an_older_writers_row_gets_the_record_defaults() -> None:
    target = SimpleNamespace(cell=SimpleNamespace(suite=SimpleNamespace(name="s"), variant=SimpleNamespace(name="v"), device=SimpleNamespace(name="d")), label="//s:t")
    row = ["x.py::t", statuses.PASSED, 1, None, None, None, None, None, None]
    (record,) = collect._records_from_rows([row], target, 0)  # type: ignore[arg-type]
    assert record == Record("s", "x.py::t", "v", "d", statuses.PASSED, 1.0, target="//s:t", shard=0)
    assert type(record.duration_s) is float


def test_a_digest_written_before_transform_check_reads_as_none(tmp_path: Path) -> None:
    """A digest whose `fields` lack transform_check (an older runtime's cached output) still reads."""
    outputs_dir = tmp_path / "test.outputs"
    outputs_dir.mkdir()
    older_fields = [f for f in outputs.DIGEST_FIELDS if f != "transform_check"]
    row = ["x.py::t", statuses.FAILED, 0.5, "m", "E", True, None, ""]
    (outputs_dir / outputs.DIGEST_NAME).write_text(json.dumps({"matrix": {}, "fields": older_fields, "tests": [row]}))
    meta, rows = collect._digest_results(tmp_path)
    assert rows == [["x.py::t", statuses.FAILED, 0.5, "m", "E", True, None, "", None]]


def test_report_json_metadata_keys_are_unchanged() -> None:
    """The plugin's block and cell_main's synthetic block, key for key as before MatrixResult."""
    plugin = MatrixResult(statuses.PASSED, subtests_run=0, subtests_failed=0).to_metadata()
    assert list(plugin) == ["status", "duration_s", "message", "error_type", "transform_failed", "transform_s",
                            "transform_calls", "expectation", "subtests_run", "subtests_failed"]  # fmt: skip
    checked = MatrixResult(statuses.PASSED, subtests_run=0, subtests_failed=0, transform_check="passed", check_s=0.25).to_metadata()
    assert list(checked) == [*plugin, "transform_check", "check_s"]  # only a checked test carries them
    synthetic = cell_main._synthetic(SimpleNamespace(xfail={}), "x.py::t", statuses.CRASHED, "died", "tail")  # type: ignore[arg-type]
    assert synthetic["metadata"]["matrix"] == {
        "status": statuses.CRASHED, "duration_s": 0.0, "message": "died", "error_type": statuses.CRASHED, "transform_failed": False,
        "transform_s": 0.0, "transform_calls": 0, "expectation": None, "log_tail": "tail",
    }  # fmt: skip
    assert list(synthetic["metadata"]["matrix"]) == ["status", "duration_s", "message", "error_type", "transform_failed",
                                                     "transform_s", "transform_calls", "expectation", "log_tail"]  # fmt: skip
