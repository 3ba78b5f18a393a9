"""The report renderers: compat.json (+ schema), compat.md, compat.html (static checks), terminal summary,
baseline comparison and rerun commands, on small synthetic record sets."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import fields, replace

import jsonschema
import pytest

from tools.matrix import config, statuses
from tools.matrix.collect import collect
from tools.matrix.records import Record, RunInfo
from tools.matrix.report import (
    SCHEMA_PATH,
    compare,
    failure_causes,
    load_json,
    markdown,
    normalise,
    render_html,
    render_json,
    render_markdown,
    rerun_command,
    terminal_summary,
    unexpected,
    write_json,
    write_reports,
    writer,
)
from tools.matrix.report.html_report import embed_json
from tools.matrix.run_report import new_run
from tools.matrix.runtime import selection
from tools.matrix.tests.fixtures.toolws import write_workspace

EVIL_NAME = "test_evil.py::test_x[<script>alert(1)</script>]"
EVIL_MSG = "boom <script>alert(1)</script> | pipe \"dq\" 'sq' ünïcødé ✓\nsecond line"
RUN = RunInfo(run_id="run-2", created="2024-05-01T12:00:00Z", torch_version="2.13.0", bazel_command="bazel test //...")


def rec(test: str, variant: str, device: str, status: str, suite: str = "export_tests", **kw) -> Record:
    kw.setdefault("target", f"//{suite}:{suite}_{variant}_{device}")
    kw.setdefault("run_id", "run-2")
    return Record(suite, test, variant, device, status, **kw)


@pytest.fixture
def records() -> list[Record]:
    """Deliberately unsorted; every status; one test whose name and messages are hostile."""
    err = {"error_type": "AssertionError"}
    return [
        rec("test_b.py::test_fail", "retrace", "cpu", statuses.FAILED, message="Expected [3, 4] but got [5, 6] at 0x7f00ab", duration_s=1.5, **err),
        rec("test_b.py::test_fail", "base", "cpu", statuses.PASSED, duration_s=0.25),
        rec("test_b.py::test_fail", "serdes", "cpu", statuses.FAILED, message="Expected [7, 8] but got [1, 2] at 0x7f11cd", **err),
        rec("test_b.py::test_fail", "base", "cuda", statuses.PASSED),
        rec("test_a.py::test_green", "base", "cpu", statuses.PASSED),
        rec("test_a.py::test_green", "retrace", "cpu", statuses.PASSED),
        rec("test_a.py::test_green", "serdes", "cpu", statuses.SKIPPED, message="not applicable"),
        rec("test_c.py::test_transform", "retrace", "cpu", statuses.FAILED, message="Expected [3, 4] but got [5, 6] at 0x1", transform_failed=True, **err),
        rec("test_c.py::test_transform", "base", "cpu", statuses.PASSED),
        rec("test_c.py::test_xfail", "serdes", "cpu", statuses.XFAILED, message="cannot serialize 'L__self___fc1'", error_type="SerializeError",
            expectation="test_c.py::test_xfail"),
        rec("test_c.py::test_stale", "retrace", "cpu", statuses.XPASSED, expectation="test_c.py"),
        rec("test_c.py::test_crash", "base", "cuda", statuses.CRASHED, error_type="crashed", log_tail="...\nFatal Python error: Segmentation fault\n"),
        rec("test_c.py::test_slow", "base", "cpu", statuses.TIMEOUT, error_type="timeout", message="timed out after 120 s"),
        rec("test_c.py::test_setup", "base", "cpu", statuses.ERROR, error_type="RuntimeError", message="fixture failed"),
        rec("test_c.py::test_missing", "serdes", "cpu", statuses.NOT_RUN, error_type="not_run"),
        rec(EVIL_NAME, "base", "cpu", statuses.FAILED, message=EVIL_MSG, error_type="ValueError"),
        rec(EVIL_NAME, "retrace", "cpu", statuses.PASSED),
        rec("test_p.py::test_pkg", "from_bytes", "cpu", statuses.FAILED, suite="package_tests", message="KeyError: 'x'", error_type="KeyError"),
        rec("test_p.py::test_pkg", "base", "cpu", statuses.PASSED, suite="package_tests"),
    ]


def md_cells(line: str) -> list[str]:
    """A GFM table row split on unescaped pipes."""
    assert line.startswith("| ") and line.endswith(" |"), line
    return [c.strip() for c in re.split(r"(?<!\\)\|", line[1:-1])]


def md_section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


# ---------------------------------------------------------------- unexpected / commands


def test_unexpected_keeps_exactly_the_failing_statuses_in_order(records):
    got = unexpected(records)
    assert [r.status for r in got] == [r.status for r in records if r.status in statuses.UNEXPECTED]
    assert {r.status for r in got} == set(statuses.UNEXPECTED)


def test_rerun_command_cpu_cuda_and_quoting():
    cpu = rec("test_a.py::TestX::test_y[1-a b]", "retrace", "cpu", statuses.FAILED)
    assert rerun_command(cpu) == "bazel test //export_tests:export_tests_retrace_cpu --test_filter='test_a.py::TestX::test_y[1-a b]'"
    cuda = replace(cpu, device="cuda", target="//export_tests:export_tests_retrace_cuda")
    assert rerun_command(cuda).endswith(" --config=gpu")
    assert shlex.split(rerun_command(cuda)) == [
        "bazel", "test", "//export_tests:export_tests_retrace_cuda", "--test_filter=test_a.py::TestX::test_y[1-a b]", "--config=gpu"]
    hostile = replace(cpu, test="t.py::test_q[it's; rm -rf / $(x) `y`]")
    argv = shlex.split(rerun_command(hostile))
    assert argv[3] == "--test_filter=t.py::test_q[it's; rm -rf / $(x) `y`]" and len(argv) == 4


def test_rerun_command_names_the_collected_target_of_a_suite_in_another_directory(tmp_path):
    """Suite s lives in nested/s_dir: the label comes from the collector (config.Cell.label), never
    from the suite's name (//s:s_base_cpu does not exist)."""
    matrix = config.load(write_workspace(tmp_path, GPU_MATRIX, ("nested/s_dir/test_a.py",)) / "matrix.yaml", tmp_path)
    (tmp_path / "testlogs").mkdir()
    records = collect(matrix, tmp_path / "testlogs", None).records  # nothing ran: one not_run record a cell
    assert {shlex.split(rerun_command(r))[2] for r in records} == {f"//nested/s_dir:s_base_{d}" for d in ("cpu", "rocm", "cuda_sim")}
    with pytest.raises(ValueError, match=r"a s record \(base, cpu\) has no target"):
        rerun_command(replace(records[0], device="cpu", target=""))


GPU_MATRIX = """devices:
  cpu: {}
  rocm:
    requires_gpu: true
  cuda_sim: {}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: plain
suites:
  s:
    directory: nested/s_dir
    variants: [base]
    devices: [cpu, rocm, cuda_sim]
"""


def test_rerun_commands_add_config_gpu_for_exactly_the_matrix_requires_gpu_devices(tmp_path):
    """The report's run, made from the matrix, says which devices need --config=gpu: a `rocm`
    requires_gpu device does, a `cuda_sim` without it does not, whatever the names; so does compat.html,
    and the answer survives compat.json."""
    matrix = config.load(write_workspace(tmp_path, GPU_MATRIX, ("nested/s_dir/test_a.py",)) / "matrix.yaml", tmp_path)
    run = new_run(["bazel", "test", "//..."], tmp_path / "testlogs", None, matrix)
    assert run.extra == {"gpu_devices": ["rocm"]}
    by_device = {d: rec("test_a.py::test_x", "base", d, statuses.FAILED, suite="s", target=f"//nested/s_dir:s_base_{d}") for d in ("cpu", "rocm", "cuda_sim")}
    assert rerun_command(by_device["rocm"], run) == "bazel test //nested/s_dir:s_base_rocm --test_filter=test_a.py::test_x --config=gpu"
    assert rerun_command(by_device["cuda_sim"], run) == "bazel test //nested/s_dir:s_base_cuda_sim --test_filter=test_a.py::test_x"
    assert rerun_command(by_device["cpu"], run) == "bazel test //nested/s_dir:s_base_cpu --test_filter=test_a.py::test_x"
    data = _embedded(render_html(list(by_device.values()), run))
    assert {data["devices"][c[1]]: c[2] for c in data["cols"]} == {"cpu": "", "cuda_sim": "", "rocm": " --config=gpu"}
    write_json(list(by_device.values()), run, tmp_path / "compat.json")
    assert load_json(tmp_path / "compat.json")[0].extra == {"gpu_devices": ["rocm"]}


def test_rerun_commands_of_a_report_without_gpu_devices_keep_cuda_as_the_gpu():
    """compat.json written before the run recorded its GPU devices: cuda was the only one."""
    cuda = rec("t.py::test_a", "base", "cuda", statuses.FAILED)
    assert rerun_command(cuda, RUN).endswith(" --config=gpu") and rerun_command(cuda).endswith(" --config=gpu")
    assert not rerun_command(cuda, replace(RUN, extra={"gpu_devices": []})).endswith(" --config=gpu")


COLLECTED = [  # what one module might collect: plain, parametrized (with commas), in a class
    "t.py::test_a", "t.py::test_ab", "t.py::C::test_a",
    "t.py::test_p[1,2]", "t.py::test_p[1,3]", "t.py::test_p[1]", "t.py::test_p[2]",
    "t.py::C::test_q[x-1,y*]", "t.py::C::test_q[x-1,y]", "t.py::C::test_q[x-1,yy]",
    "t.py::test_r[a]", "t.py::test_r[b]",
]


@pytest.mark.parametrize("nodeid", COLLECTED)
def test_rerun_filter_selects_exactly_that_test_in_the_runtime(nodeid):
    """The runtime (selection.py) splits --test_filter on commas and globs on [*?: every id still selects itself only."""
    siblings = COLLECTED
    arg = shlex.split(rerun_command(rec(nodeid, "base", "cpu", statuses.FAILED)))[3]
    patterns = selection.parse_filter(arg.removeprefix("--test_filter="))
    assert selection.select(sorted(set(siblings)), patterns) == [nodeid]


# ---------------------------------------------------------------- compat.json


def test_json_validates_against_the_schema_and_round_trips(records, tmp_path):
    path = write_json(records, RUN, tmp_path / "compat.json")
    doc = json.loads(path.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)

    assert doc["schema_version"] == 1 and doc["baseline"] is None
    keys = [(r["suite"], r["test"], r["variant"], r["device"]) for r in doc["records"]]
    assert keys == sorted(keys) and len(keys) == len(records)
    assert doc["summary"]["total"] == len(records)
    assert doc["summary"]["counts"][statuses.FAILED] == 5
    assert doc["summary"]["unexpected"] == len(unexpected(records))
    group = next(g for g in doc["summary"]["groups"] if (g["suite"], g["variant"], g["device"]) == ("export_tests", "serdes", "cpu"))
    # passed 0 of (4 - skipped 1 - not_run 1) = 2 that ran
    assert group["counts"][statuses.FAILED] == 1 and group["total"] == 4 and group["pass_rate"] == 0

    run, loaded = load_json(path)
    assert run == RUN
    assert loaded == sorted(records, key=lambda r: r.key)
    evil = next(r for r in loaded if r.test == EVIL_NAME and r.status == statuses.FAILED)
    assert evil.message == EVIL_MSG


def test_json_records_have_every_record_field_and_the_schema_documents_them(records, tmp_path):
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    names = [f.name for f in fields(Record)]
    assert sorted(schema["$defs"]["record"]["properties"]) == sorted(names)
    assert sorted(schema["$defs"]["record"]["required"]) == sorted(names)
    doc = json.loads(render_json(records, RUN))
    assert all(list(r) == names for r in doc["records"])
    assert sorted(schema["properties"]["run"]["properties"]) == sorted(f.name for f in fields(RunInfo))


def test_json_ignores_attributes_that_are_not_record_fields(records):
    records[0].scratch = "not a field"  # e.g. set by a collector on the side
    doc = json.loads(render_json(records, RUN))
    assert all("scratch" not in r for r in doc["records"]) and len(doc["records"]) == len(records)


def test_json_one_record_per_line(records):
    text = render_json(records, RUN)
    lines = [line for line in text.splitlines() if line.lstrip().startswith('{"suite": ')]
    assert len(lines) == len(records)


def test_json_survives_lone_surrogates_and_control_characters(tmp_path):
    odd = [rec("t.py::test_\udcff", "base", "cpu", statuses.FAILED, message="bad \udce9 bytes \x00\x1b[31m")]
    path = write_json(odd, RUN, tmp_path / "c.json")
    path.read_bytes().decode("utf-8")  # valid UTF-8
    assert load_json(path)[1] == odd


def test_load_json_rejects_other_documents(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"schema_version": 99}', encoding="utf-8")
    with pytest.raises(ValueError, match="schema_version 1"):
        load_json(path)


def test_empty_run_renders_everywhere(tmp_path):
    paths = write_reports([], RUN, tmp_path)
    assert [p.name for p in paths] == ["compat.json", "compat.md", "compat.html"]
    doc = json.loads(paths[0].read_text(encoding="utf-8"))
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert doc["records"] == [] and doc["summary"]["pass_rate"] is None
    assert terminal_summary([]) == "No test results.\n"


# ---------------------------------------------------------------- compat.md


def test_markdown_summary_table_counts_and_pass_rate(records):
    text = render_markdown(records, RUN)
    section = md_section(text, "Summary")
    table = [line for line in section.splitlines() if line.startswith("| ")]
    header = md_cells(table[0])
    assert header == ["suite", "variant", "device", "passed", "flaky", "xfailed", "failed", "xpassed", "skipped", "error",
                      "crashed", "timeout", "not_run", "pass rate"]
    rows = {tuple(c[:3]): dict(zip(header, c)) for c in map(md_cells, table[2:])}
    base_cpu = rows[("export_tests", "base", "cpu")]
    # base/cpu: passed 3 (green, fail, transform) + failed 1 (evil) + timeout + error = 6 ran
    assert (base_cpu["passed"], base_cpu["failed"], base_cpu["timeout"], base_cpu["error"]) == ("3", "1", "1", "1")
    assert base_cpu["pass rate"] == "50.0%"
    assert rows[("export_tests", "serdes", "cpu")]["pass rate"] == "0.0%"  # skipped and not_run are not in the denominator
    assert rows[("package_tests", "from_bytes", "cpu")]["failed"] == "1"
    total = dict(zip(header, md_cells(table[-1])))
    assert total["suite"] == "**all**" and total["failed"] == "**5**"
    # variants ordered with base first
    assert [k[1] for k in rows if k[0] == "export_tests"][:2] == ["base", "base"]


def test_markdown_grid_lists_only_tests_not_green_with_status_symbols(records):
    section = md_section(render_markdown(records, RUN), "Tests not green everywhere")
    assert "test_a.py::test_green" not in section  # passed + skipped only
    export = section[section.index("### export_tests"):section.index("### package_tests")]
    lines = [line for line in export.splitlines() if line.startswith("| ")]
    header = md_cells(lines[0])
    assert header == ["test", "base<br>cpu", "base<br>cuda", "retrace<br>cpu", "serdes<br>cpu"]
    grid = {c[0]: dict(zip(header, c)) for c in map(md_cells, lines[2:])}
    fail = grid["`test_b.py::test_fail`"]
    assert (fail["base<br>cpu"], fail["base<br>cuda"], fail["retrace<br>cpu"], fail["serdes<br>cpu"]) == ("✓", "✓", "✗", "✗")
    assert grid["`test_c.py::test_transform`"]["retrace<br>cpu"] == "✗" + markdown.TRANSFORM_MARK
    assert grid["`test_c.py::test_transform`"]["serdes<br>cpu"] == ""  # no such cell
    assert grid["`test_c.py::test_stale`"]["retrace<br>cpu"] == "X!"
    assert grid["`test_c.py::test_crash`"]["base<br>cuda"] == markdown.SYMBOLS[statuses.CRASHED]
    assert "Legend:" in section and "⚙ after a symbol" in section


def test_markdown_escapes_pipes_newlines_and_html(records):
    text = render_markdown(records, RUN)
    for line in text.splitlines():
        if line.startswith("| "):
            cells = md_cells(line)
            assert all("\n" not in c for c in cells)
    # the hostile name/message only ever appear inside code spans, with `|` escaped and the newline folded
    assert "`boom <script>alert(1)</script> \\| pipe \"dq\" 'sq' ünïcødé ✓ ↵ second line`" in text
    assert f"`{EVIL_NAME}`" in text
    outside_code = [re.sub(r"(`+).*?\1", "", line) for line in text.splitlines()]
    assert not any("<script>" in line or "<img" in line for line in outside_code)
    unexpected_rows = [md_cells(l) for l in md_section(text, "Unexpected results").splitlines() if l.startswith("| ")]
    assert {len(r) for r in unexpected_rows} == {8}


def test_markdown_escape_and_code_helpers():
    assert markdown.escape("a|b\nc<d>*e*") == "a\\|b ↵ c\\<d\\>\\*e\\*"
    assert markdown.code("x`y") == "``x`y``"
    assert markdown.code("`x") == "`` `x ``"
    assert markdown.code("") == ""
    assert markdown.code("a" * 50, limit=10) == "`aaaaaaaaa…`"


def test_markdown_stale_xfails_and_failure_causes(records):
    text = render_markdown(records, RUN)
    stale = md_section(text, "Stale xfails")
    rows = [md_cells(l) for l in stale.splitlines() if l.startswith("| ")][2:]
    assert rows == [["export_tests", "`test_c.py::test_stale`", "retrace", "cpu", "`test_c.py`"]]

    causes = md_section(text, "Top failure causes")
    rows = [md_cells(l) for l in causes.splitlines() if l.startswith("| ")]
    header, body = rows[0], [dict(zip(rows[0], r)) for r in rows[2:]]
    assert header[:5] == ["#", "count", "of which xfailed", "kind", "signature"]
    top = body[0]
    # retrace + serdes assertion failures differ only in numbers, shapes and addresses: one cause
    assert top["count"] == "2" and top["kind"] == "**test failure**"
    assert top["signature"] == "`AssertionError: Expected […] but got […] at <addr>`"
    assert top["variants"] == "retrace (1), serdes (1)" and top["suites"] == "export_tests (2)"
    # the same message from the variant's transform is a different, distinctly labelled cause
    transform = [r for r in body if r["kind"] == "**transform failure**"]
    assert len(transform) == 1 and transform[0]["signature"] == top["signature"] and transform[0]["count"] == "1"
    xfail = next(r for r in body if "SerializeError" in r["signature"])
    assert xfail["of which xfailed"] == "1" and "'…'" in xfail["signature"]


def test_failure_causes_top_20_across_variants():
    words = [f"k{chr(97 + i)}" for i in range(25)]
    recs = [rec(f"t.py::test_{i}", f"v{i % 3}", "cpu", statuses.FAILED, error_type="E", message=f"{words[i % 25]} at 0x{i:x} #{i}")
            for i in range(100)] + [rec(f"t.py::test_{i}", "v0", "cpu", statuses.FAILED, error_type="E", message=f"ka at 0x{i:x} #{i}") for i in range(100, 103)]
    causes = failure_causes(recs)
    assert len(causes) == 20 and sum(c.count for c in failure_causes(recs, limit=None)) == 103
    assert (causes[0].count, causes[0].signature) == (7, "E: ka at <addr> #")
    assert dict(causes[0].variants) == {"v0": 5, "v1": 1, "v2": 1} and causes[0].example.test == "t.py::test_0"
    assert [c.count for c in causes[1:]] == [4] * 19


@pytest.mark.parametrize(("message", "expected"), [
    ("size mismatch [3, 4] vs torch.Size([5, 6])", "size mismatch […] vs torch.Size([…])"),
    ("object at 0x7fabc0123 and 0xDEAD", "object at <addr> and <addr>"),
    ("no attribute 'L__self___fc1' in \"mod_2\"", "no attribute '…' in '…'"),
    ("wrote /tmp/pytest-of-ci/pytest-12/test_a0/x.pt2 and /tmp/tmpab_c12x/y", "wrote <tmp> and <tmp>"),
    ("took 12.5 s (3 tries)\n  next   line", "took #.# s (# tries) next line"),
    ("quoted phrase 'keeps spaces intact'", "quoted phrase 'keeps spaces intact'"),
])
def test_normalise(message, expected):
    assert normalise(message) == expected


# ---------------------------------------------------------------- baseline


def _baseline(records: list[Record]) -> list[Record]:
    """The previous run: the same records with a known set of differences (see test_compare...)."""
    old = [replace(r, run_id="run-1") for r in records]
    old = [o for o in old if o.test != "test_p.py::test_pkg"]  # new in this run
    old.append(rec("test_gone.py::test_old", "base", "cpu", statuses.PASSED, run_id="run-1"))  # removed
    idx = {r.key: i for i, r in enumerate(old)}

    def was(test, variant, device, status):
        old[idx[("export_tests", test, variant, device)]] = replace(old[idx[("export_tests", test, variant, device)]], status=status)

    was("test_b.py::test_fail", "retrace", "cpu", statuses.PASSED)  # -> failed: regression
    was("test_b.py::test_fail", "serdes", "cpu", statuses.XFAILED)  # -> failed: regression
    was("test_c.py::test_crash", "base", "cuda", statuses.FAILED)  # -> crashed: other
    was("test_b.py::test_fail", "base", "cpu", statuses.FAILED)  # -> passed: fix
    was("test_c.py::test_xfail", "serdes", "cpu", statuses.PASSED)  # -> xfailed: changed xfail
    was("test_c.py::test_stale", "retrace", "cpu", statuses.XFAILED)  # -> xpassed: changed xfail
    return old


def test_compare_classifies_every_change_once(records):
    c = compare(_baseline(records), records)
    tests = lambda changes: [(x.new.test, x.new.variant, x.old.status, x.new.status) for x in changes]
    assert tests(c.regressions) == [("test_b.py::test_fail", "retrace", "passed", "failed"), ("test_b.py::test_fail", "serdes", "xfailed", "failed")]
    assert tests(c.fixes) == [("test_b.py::test_fail", "base", "failed", "passed")]
    assert tests(c.changed_xfails) == [("test_c.py::test_stale", "retrace", "xfailed", "xpassed"), ("test_c.py::test_xfail", "serdes", "passed", "xfailed")]
    assert tests(c.other) == [("test_c.py::test_crash", "base", "failed", "crashed")]
    assert [r.key for r in c.new] == [("package_tests", "test_p.py::test_pkg", v, "cpu") for v in ("base", "from_bytes")]
    assert [r.test for r in c.removed] == ["test_gone.py::test_old"]
    assert c.baseline_run_ids == ["run-1"]


def test_baseline_in_markdown_terminal_and_json(records, tmp_path):
    old = _baseline(records)
    old_path = write_json(old, replace(RUN, run_id="run-1"), tmp_path / "old" / "compat.json")
    paths = write_reports(records, RUN, tmp_path / "new", baseline=old_path)  # baseline given as a compat.json path

    md = paths[1].read_text(encoding="utf-8")
    changes = md_section(md, "Changes since baseline")
    assert "**2 regressions**, 1 fixes, 2 changed xfails, 1 other status changes, 2 new cells, 1 removed cells" in changes
    reg = [md_cells(l) for l in changes[changes.index("### Regressions"):changes.index("### Fixes")].splitlines() if l.startswith("| ")]
    assert reg[2][:6] == ["export_tests", "`test_b.py::test_fail`", "retrace", "cpu", "passed", "failed"]
    assert "- package\\_tests" not in changes and "- package_tests `test_p.py::test_pkg`: base/cpu (passed), from_bytes/cpu (failed)" in changes
    assert "`test_gone.py::test_old`" in changes

    doc = json.loads(paths[0].read_text(encoding="utf-8"))
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert doc["baseline"]["counts"] == {"regressions": 2, "fixes": 1, "changed_xfails": 2, "other": 1, "new": 2, "removed": 1}
    assert doc["baseline"]["regressions"][0]["old"] == "passed" and doc["baseline"]["removed"][0]["test"] == "test_gone.py::test_old"

    term = terminal_summary(records, compare(old, records))
    assert "Changes since baseline: 2 regressions, 1 fixes, 2 changed xfails, 1 other, 2 new cells, 1 removed cells" in term
    assert re.search(r"passed->failed\s+export_tests::test_b.py::test_fail \[retrace/cpu\]", term)


# ---------------------------------------------------------------- terminal


def test_terminal_summary_table_is_aligned_and_lists_unexpected(records):
    out = terminal_summary(records)
    lines = out.splitlines()
    table = lines[: lines.index("")]
    assert table[0].split() == ["suite", "variant", "device", "pass", "flaky", "xfail", "fail", "xpass", "skip", "error", "crash", "timeout", "not_run", "rate"]
    assert len({len(line) for line in table[1:]}) == 1  # right-aligned counts end in one column
    row = next(line.split() for line in table if line.startswith("export_tests") and " retrace " in line)
    assert row == ["export_tests", "retrace", "cpu", "2", ".", ".", "2", "1", ".", ".", ".", ".", ".", "40.0%"]
    assert table[-1].split()[0] == "total"
    listed = lines[lines.index("") + 1:]
    assert listed[0] == f"Unexpected results ({len(unexpected(records))}):"
    assert listed[1].split()[0] == "crashed"  # most severe first
    assert any("failed (transform)" in l and "test_c.py::test_transform" in l and "transform: AssertionError" in l for l in listed)
    assert any("xpassed" in l and "test_c.py::test_stale" in l for l in listed)
    assert not any("\n" in l or "\x1b" in l for l in listed)


def test_carried_over_records_are_counted_in_the_terminal_compat_md_and_compat_html(records):
    """Records kept from an earlier report (known_tests.py) say so in every format, failures counted."""
    carried = [replace(r, run_id="run-1") for r in records[:3]] + [replace(records[3], run_id="run-\u202e0")]  # 2 failed, 2 passed
    mixed = carried + records[4:]
    line = ("Carried over: 4 record(s) from earlier runs (run run-1: 3, run run-\\u202e0: 1), kept because this run's outputs have no "
            "result for their tests (a --test_filter, a rerun of other targets); 2 of them failing, which still count.")  # fmt: skip
    assert line in terminal_summary(mixed, None, RUN.run_id).splitlines()
    assert "Carried over" not in terminal_summary(records, None, RUN.run_id) + render_markdown(records, RUN)
    raw = line.replace("\\u202e", "\u202e")  # compat.md escapes the raw run id itself
    assert "**" + markdown.escape(raw) + "**" in render_markdown(mixed, RUN).splitlines()  # under the run line
    assert _embedded(render_html(mixed, RUN))["carried"] == line and _embedded(render_html(records, RUN))["carried"] == ""


def test_terminal_summary_caps_the_list_and_strips_control_characters():
    recs = [rec(f"t.py::test_{i:03d}", "base", "cpu", statuses.FAILED, message="\x1b[2Jcleared\rX") for i in range(100)]
    out = terminal_summary(recs)
    listed = out.splitlines()[out.splitlines().index("Unexpected results (100):") + 1:]
    assert len(listed) == 41 and listed[-1] == "  ... and 60 more"
    assert "\x1b" not in out and "\r" not in out


# ---------------------------------------------------------------- compat.html (static; the browser test runs it)


def _embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.DOTALL)
    assert m is not None
    return json.loads(m.group(1))


def test_html_is_self_contained_and_data_cannot_break_out(records):
    hostile = records + [
        rec('t.py::test_<img src=x onerror="window.__pwned=1">', "base", "cpu", statuses.FAILED,
            message="</script><script>window.__pwned=1</script>", error_type="</script>"),
    ]
    html = render_html(hostile, RUN)
    assert html.count("<script") == 2 and html.count("</script>") == 2  # ours: the data block and the code
    assert "<img" not in html and "window.__pwned" in html  # present, but only as escaped JSON
    assert "\\u003c/script\\u003e\\u003cscript\\u003ewindow.__pwned=1" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html) and "<link" not in html and "@import" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    data = _embedded(html)
    assert 't.py::test_<img src=x onerror="window.__pwned=1">' in data["rows"]["test"]
    assert EVIL_MSG in data["str"] and "</script><script>window.__pwned=1</script>" in data["str"]


def test_html_embedded_data_describes_every_record(records):
    data = _embedded(render_html(records, RUN))
    assert len(data["rec"]["det"]) == len(records) == len(data["rec"]["ms"])
    assert data["variants"][0] == "base" and data["statuses"][0] == statuses.PASSED
    # rows: one per (suite, test), sorted; commands assembled from parts made by commands.py
    ordered = sorted(records, key=lambda r: r.key)
    assert data["rows"]["test"] == list(dict.fromkeys(r.test for r in ordered))
    w = len(data["detFields"])
    f = {n: k for k, n in enumerate(data["detFields"])}
    row_of = {t: i for i, t in enumerate(data["rows"]["test"])}
    for i, r in enumerate(ordered):
        d = data["det"][data["rec"]["det"][i] * w:][:w]
        cmd = data["targets"][d[f["tgt"]]][1] + " " + data["rows"]["filter"][row_of[r.test]] + data["cols"][d[f["col"]]][2]
        assert cmd == rerun_command(r)
        assert data["statuses"][d[f["status"]]] == r.status and data["str"][d[f["message"]]] == r.message
        assert bool(d[f["transform_failed"]]) == r.transform_failed and data["rec"]["ms"][i] == round(r.duration_s * 1000)


def test_embed_json_escapes_markup_characters():
    text = embed_json({"a": "</script><!-- & -->", "b": "\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & -->", "b": "\u2028"}


# ---------------------------------------------------------------- write_reports


def test_write_reports_writes_three_files_only_under_out_dir(records, tmp_path):
    out = tmp_path / "reports" / "nested"
    paths = write_reports(records, RUN, out)
    assert paths == [out / "compat.json", out / "compat.md", out / "compat.html"]
    assert sorted(p.name for p in out.iterdir()) == ["compat.html", "compat.json", "compat.md"]
    assert paths[0].read_text(encoding="utf-8") == render_json(records, RUN)
    assert paths[1].read_text(encoding="utf-8") == render_markdown(records, RUN)
    assert paths[2].read_text(encoding="utf-8") == render_html(records, RUN)


def test_write_reports_forked_json_is_identical(records, tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "PARALLEL_MIN_RECORDS", 0)
    monkeypatch.setattr(writer, "_can_fork", lambda: hasattr(writer.os, "fork"))
    forked = write_reports(records, RUN, tmp_path / "a")
    monkeypatch.setattr(writer, "_can_fork", lambda: False)
    plain = write_reports(records, RUN, tmp_path / "b")
    assert [p.read_bytes() for p in forked] == [p.read_bytes() for p in plain]


def test_write_reports_renders_json_itself_when_the_child_fails(records, tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "PARALLEL_MIN_RECORDS", 0)
    monkeypatch.setattr(writer, "_write_in_child", lambda path, render: None)
    paths = write_reports(records, RUN, tmp_path)
    assert load_json(paths[0])[1] == sorted(records, key=lambda r: r.key)


def test_reports_are_deterministic_whatever_the_input_order(records, tmp_path):
    a = write_reports(records, RUN, tmp_path / "a")
    b = write_reports(list(reversed(records)), RUN, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


# ---------------------------------------------------------------- issue #17: hostile or broken record contents


def test_failure_cause_says_the_error_type_once():
    recs = [
        rec("t.py::test_exit", "base", "cpu", statuses.FAILED, error_type="SystemExit", message="SystemExit: 3"),
        rec("t.py::test_exit", "retrace", "cpu", statuses.FAILED, error_type="SystemExit", message="SystemExit: 4"),
        rec("t.py::test_dyn", "base", "cpu", statuses.FAILED, error_type="Unsupported", message="torch._dynamo.exc.Unsupported: call_function 7"),
        rec("t.py::test_bare", "base", "cpu", statuses.ERROR, error_type="KeyboardInterrupt", message="KeyboardInterrupt"),
        rec("t.py::test_plain", "base", "cpu", statuses.FAILED, error_type="AssertionError", message="1 != 2"),
    ]
    assert [(c.count, c.signature) for c in failure_causes(recs)] == [
        (2, "SystemExit: #"), (1, "KeyboardInterrupt"), (1, "AssertionError: # != #"), (1, "Unsupported: call_function #"),
    ]  # fmt: skip
    causes = md_section(render_markdown(recs, RUN), "Top failure causes")
    assert "`SystemExit: #`" in causes and "SystemExit: SystemExit" not in causes


BIDI = "ok\u202eevil\u2066x\u200f \x1b[31m\x00 end"


def test_control_and_bidi_characters_are_shown_escaped_everywhere(tmp_path):
    recs = [rec(f"t.py::test_{BIDI}", "base", "cpu", statuses.FAILED, error_type="E", message=f"E: {BIDI}", log_tail=BIDI)]
    raw = ("\u202e", "\u2066", "\u200f", "\x1b", "\x00")
    shown = "ok\\u202eevil\\u2066x\\u200f \\u001b[31m\\u0000 end"
    md = render_markdown(recs, RUN)
    assert not any(ch in md for ch in raw)
    assert f"`t.py::test_{shown}`" in md_section(md, "Unexpected results")
    term = terminal_summary(recs)
    assert not any(ch in term for ch in raw) and shown in term
    html = render_html(recs, RUN)
    assert not any(ch in html for ch in raw)
    data = _embedded(html)
    assert data["rows"]["test"] == [f"t.py::test_{shown}"] and f"E: {shown}" in data["str"] and shown in data["str"]
    # compat.json keeps the data exact (JSON escapes what it must); it is data, not display.
    write_reports(recs, RUN, tmp_path)
    assert json.loads((tmp_path / "compat.json").read_text())["records"][0]["message"] == f"E: {BIDI}"


def test_compat_json_is_strict_json_whatever_the_durations(tmp_path):
    recs = [
        rec("t.py::test_nan", "base", "cpu", statuses.PASSED, duration_s=float("nan")),
        rec("t.py::test_inf", "base", "cpu", statuses.PASSED, duration_s=float("inf")),
        rec("t.py::test_ok", "base", "cpu", statuses.PASSED, duration_s=1.25),
    ]

    def refuse(name: str):
        raise ValueError(f"not JSON: {name}")

    for path in write_reports(recs, RUN, tmp_path):
        assert path.stat().st_size > 0
    data = json.loads((tmp_path / "compat.json").read_text(), parse_constant=refuse)
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert {r["test"]: r["duration_s"] for r in data["records"]} == {"t.py::test_inf": 0.0, "t.py::test_nan": 0.0, "t.py::test_ok": 1.25}
    assert math.isnan(recs[0].duration_s)  # the records themselves are not changed
