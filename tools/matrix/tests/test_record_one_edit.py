"""Adding a field to the record is one edit in records.py (issue #23, "one record"): in a scratch copy of
the tools, one field of each JSON type is added to records.Record and nothing else is touched; a real
cell runs through that copy's cell_main, and that copy's `report --no-run` collects it from the
digest (test.outputs) and from test.xml alone (another cell whose outputs are lost). Each field's value
must be in report.json, the digest, test.xml's properties, compat.json (valid against the schema
generated from the edited records.py) and compat.html's data, by field name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import jsonschema
import pytest

import tools
from tools.matrix.tests.fixtures.cellrun import Cell, run_cell
from tools.matrix.tests.fixtures.toolws import report_cli, write_workspace

# The one edit: new fields, written by the runtime (at their defaults: nothing else sets them).
NEW_FIELDS = '''\
    extra_text: str = field(default="seven <&> \\x1b", metadata=_meta(RUNTIME, "A string field added by a test."))
    extra_count: int = field(default=7, metadata=_meta(RUNTIME, "An integer field added by a test.", minimum=0))
    extra_ratio: float = field(default=0.75, metadata=_meta(RUNTIME, "A number field added by a test."))
    extra_flag: bool = field(default=True, metadata=_meta(RUNTIME, "A boolean field added by a test."))
    extra_maybe: int | None = field(default=None, metadata=_meta(RUNTIME, "A field that is null."))
    extra_names: list[str] = field(default_factory=lambda: ["a", "b"], metadata=_meta(RUNTIME, "A list field added by a test."))
    extra_map: dict[str, Any] = field(default_factory=lambda: {"k": [1, None]}, metadata=_meta(RUNTIME, "An object field added by a test."))

'''
VALUES = {"extra_text": "seven <&> \x1b", "extra_count": 7, "extra_ratio": 0.75, "extra_flag": True, "extra_maybe": None,
          "extra_names": ["a", "b"], "extra_map": {"k": [1, None]}}  # fmt: skip
ANCHOR = "    @property\n    def key(self)"  # the fields end where Record's methods begin
TESTS = {"test_one.py::test_passes": "passed", "test_one.py::test_fails": "failed"}
MATRIX = """\
devices:
  cpu: {}
variants:
  digest: {impl: "tools.matrix.variants.base:Base", description: results from the digest}
  xml: {impl: "tools.matrix.variants.base:Base", description: results from test.xml alone}
suites:
  syn:
    variants: [digest, xml]
    devices: [cpu]
"""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A copy of the tools with NEW_FIELDS added to records.Record: the one edit."""
    root = tmp_path_factory.mktemp("one_edit")
    package = Path(tools.__file__).parent
    shutil.copytree(package, root / "tools", ignore=shutil.ignore_patterns("__pycache__", "tests", "drill", "remote"))
    records = root / "tools" / "matrix" / "records.py"
    text = records.read_text()
    assert text.count(ANCHOR) == 1
    records.write_text(text.replace(ANCHOR, NEW_FIELDS + ANCHOR))
    return root


@pytest.fixture(scope="module")
def reported(scratch: Path, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The real cell's outputs (through the copy's cell_main), laid out in testlogs as Bazel does: the
    digest cell with its outputs.zip, the xml cell with test.xml only; then the copy's `report --no-run`."""
    suites = tmp_path_factory.mktemp("suites")
    (suites / "syn").mkdir()
    (suites / "syn" / "test_one.py").write_text("def test_passes():\n    pass\n\n\ndef test_fails():\n    assert 1 == 2\n")
    run = run_cell(Cell("syn", ("test_one.py",), target="//syn:syn_digest_cpu"), suites, tmp_path_factory.mktemp("run") / "cell", repo=scratch)
    assert run.statuses == TESTS, run.explain()
    ws = write_workspace(tmp_path_factory.mktemp("ws"), MATRIX, ("syn/test_one.py",))
    logs = ws / "bazel-testlogs"
    digest_cell, xml_cell = logs / "syn" / "syn_digest_cpu", logs / "syn" / "syn_xml_cpu"
    (digest_cell / "test.outputs").mkdir(parents=True)
    with zipfile.ZipFile(digest_cell / "test.outputs" / "outputs.zip", "w") as z:
        for f in (run.tmp / "out").iterdir():
            if f.is_file():
                z.write(f, f.name)
    xml_cell.mkdir(parents=True)
    for cell in (digest_cell, xml_cell):
        shutil.copy(run.tmp / "test.xml", cell / "test.xml")
        (cell / "test.log").write_text(run.output)
    out = ws / "reports"
    proc = report_cli(ws, logs, tmp_path_factory.mktemp("bin"), "--no-run", "--out", str(out), cli=scratch / "tools/matrix/cli.py")
    return run.tmp, out, proc


def test_the_new_fields_are_written_by_the_runtime(reported):
    cell, _out, _proc = reported
    report = json.loads((cell / "out" / "report.json").read_text())
    digest = json.loads((cell / "out" / "matrix_results.json").read_text())
    assert [t["nodeid"] for t in report["tests"]] == sorted(TESTS)
    for test in report["tests"]:
        assert {k: test["metadata"]["matrix"][k] for k in VALUES} == VALUES
    columns = digest["fields"]
    assert columns[-len(VALUES):] == list(VALUES)  # after the fields records.py had before
    for row in digest["tests"]:
        assert dict(zip(columns, row, strict=True)) | VALUES == dict(zip(columns, row, strict=True))


def test_the_new_fields_are_junit_properties(reported, scratch):
    cell, _out, _proc = reported
    for case in ET.parse(cell / "test.xml").getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert "extra_maybe" not in props  # None: no property, as the field's default says
        assert props["extra_text"] == json.dumps(VALUES["extra_text"])  # XML cannot carry ESC: written as JSON
        assert (props["extra_count"], props["extra_ratio"], props["extra_flag"]) == ("7", "0.75", "true")
        assert (json.loads(props["extra_names"]), json.loads(props["extra_map"])) == (VALUES["extra_names"], VALUES["extra_map"])


def test_the_new_fields_reach_compat_json_from_the_digest_and_from_test_xml(reported, scratch):
    _cell, out, proc = reported
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr  # test_fails fails
    data = json.loads((out / "compat.json").read_text())
    got = {(r["variant"], r["test"]): r for r in data["records"]}
    assert set(got) == {(v, t) for v in ("digest", "xml") for t in TESTS}
    for (variant, test), record in got.items():
        assert record["status"] == TESTS[test], (variant, record)
        assert {k: record[k] for k in VALUES} == VALUES, variant
    schema = subprocess.run([sys.executable, "-c", "import json; from tools.matrix.report.schema import compat_schema; print(json.dumps(compat_schema()))"],
                            cwd=scratch, capture_output=True, text=True, check=True)  # fmt: skip
    generated = json.loads(schema.stdout)
    jsonschema.validate(data, generated)
    assert {k: generated["$defs"]["record"]["properties"][k]["type"] for k in VALUES} == {
        "extra_text": "string", "extra_count": "integer", "extra_ratio": "number", "extra_flag": "boolean",
        "extra_maybe": ["integer", "null"], "extra_names": "array", "extra_map": "object",
    }  # fmt: skip


def test_the_new_fields_are_in_the_html_data_by_name(reported):
    _cell, out, _proc = reported
    html = (out / "compat.html").read_text()
    start = html.index('id="report-data">') + len('id="report-data">')
    data = json.loads(html[start : html.index("</script>", start)])
    names, kinds, width = data["detFields"], data["detKinds"], len(data["detFields"])

    def value(i: int, name: str):  # as the page's script decodes it (report/html_assets.py: value)
        v = data["det"][data["rec"]["det"][i] * width + names.index(name)]
        if v is None:
            return None
        if {"string", "array", "object"} & set(kinds[name]):
            return None if v < 0 else data["str"][v]
        return v == 1 if "boolean" in kinds[name] else v

    assert len(data["rec"]["det"]) == 4
    for i in range(4):
        assert value(i, "extra_text") == "seven <&> \\u001b"  # shown escaped, as every text on the page (report/text.visible)
        assert (value(i, "extra_count"), value(i, "extra_ratio"), value(i, "extra_flag"), value(i, "extra_maybe")) == (7, 0.75, True, None)
        assert json.loads(value(i, "extra_names")) == VALUES["extra_names"] and json.loads(value(i, "extra_map")) == VALUES["extra_map"]



def test_the_new_fields_reach_the_history_store(reported, scratch):
    """`report` appended the run to reports/history.sqlite: the store's tables, derived from the edited
    Record, have a column per new field, and each stored record reads back the field's value."""
    _cell, out, proc = reported
    assert "history: 4 record(s) of run " in proc.stdout, proc.stdout
    read = subprocess.run([sys.executable, "-c", f"""
import json, sys
from tools.matrix.history import schema
from tools.matrix.history.store import open_store
with open_store({str(out / "history.sqlite")!r}, create=False) as store:
    rows = store.query(f"SELECT {{', '.join(schema.RESULT_NAMES)}} FROM results")
print(json.dumps([{{k: v for k, v in schema.result_fields(row).items() if k.startswith("extra_")}} for row in rows]))
"""], cwd=scratch, capture_output=True, text=True, check=True)  # fmt: skip
    assert json.loads(read.stdout) == [VALUES] * 4
