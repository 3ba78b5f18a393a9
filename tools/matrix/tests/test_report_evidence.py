"""How the report shows a record's evidence (report/evidence.py, compat.md, compat.html's data, the
terminal line), with evidence kept from real torch programs by the runtime's Recorder: a relu ->
sigmoid mistranslation, a nudged constant (text unchanged), a crash after serializing, a hostile one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from tools.matrix import statuses
from tools.matrix.records import Record, RunInfo
from tools.matrix.report import SCHEMA_PATH, load_json, render_html, render_markdown, terminal_summary, write_reports
from tools.matrix.report.evidence import UNCHANGED, UNFINISHED, evidence_view, fetch_command
from tools.matrix.report.markdown import MAX_DIFF_LINES, MAX_EVIDENCE_CELLS
from tools.matrix.tests.fixtures.evidence_records import BIDI, BREAKOUT, RELU_LINE, SIGMOID_LINE, TEST, evidence_records

RUN = RunInfo(run_id="ev-run", created="2026-12-04T03:00:00Z", torch_version="2.13.0")


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return evidence_records()


def one(records: list[Record], variant: str, test: str = TEST) -> Record:
    return next(r for r in records if r.variant == variant and r.test == test)


def md_evidence(md: str) -> list[str]:
    start = md.index("\n## What the transform changed")
    end = md.find("\n## ", start + 1)
    return md[start + 1 : end if end > 0 else len(md)].rstrip("\n").split("\n")


def _embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.DOTALL)
    assert m is not None
    return json.loads(m.group(1))


# ---------------------------------------------------------------- report/evidence.py


def test_the_mistranslation_shows_as_exactly_its_one_changed_line(records):
    swap = one(records, "swap")
    call = evidence_view(swap).calls[0]
    removed = [line for line, k in zip(call.diff, call.kinds) if k == "-"]
    added = [line for line, k in zip(call.diff, call.kinds) if k == "+"]
    assert removed == ["-" + RELU_LINE] and added == ["+" + SIGMOID_LINE]
    assert call.diff[:3] == ["--- before swap", "+++ after swap", "@@ -3,7 +3,7 @@"]
    assert call.kinds == "hh@" + "   " + "-+" + "   "  # 3 lines of context each side
    assert call.note == "" and call.error == "" and call.entry == "torch.export.export"
    assert call.check == "check: " + swap.evidence["calls"][0]["check"]
    assert call.check.startswith("check: failed: output: max abs difference ")


def test_weights_changed_only_the_text_is_unchanged_and_the_check_has_the_numbers(records):
    nudge = one(records, "nudge")
    view = evidence_view(nudge)
    call = view.calls[0]
    assert call.diff == [] and call.kinds == "" and call.note == UNCHANGED == "the program text is unchanged"
    assert call.check.startswith("check: failed: parameter l.weight before the call: max abs difference 0.5 at index [0, 0]")
    # outputs as a directory (an unzipped test.outputs): the file's path, no unzip
    (p,) = call.payloads
    assert p.command == f"bazel-testlogs/export_tests/export_tests_nudge_cpu/shard_1_of_2/test.outputs/{nudge.evidence['dir']}/call-1-saved.pt2"


def test_a_crash_shows_the_before_text_the_payload_and_that_the_transform_did_not_finish(records):
    crash = one(records, "crash", "test_models.py::test_crash")
    ev = crash.evidence
    call = evidence_view(crash).calls[0]
    assert call.after is None and call.diff == [] and call.note == UNFINISHED
    assert call.before == ev["calls"][0]["before"] and RELU_LINE in call.before
    assert call.check == "check: did not run"
    size = ev["calls"][0]["payloads"][0]["bytes"]
    (p,) = call.payloads
    assert p.line == f"call-1-saved.pt2: the archive written by torch.export.save, {size:,} of {size:,} bytes kept"
    assert p.command == (f"unzip -p bazel-testlogs/export_tests/export_tests_crash_cpu/test.outputs/outputs.zip "
                         f"{ev['dir']}/call-1-saved.pt2 > call-1-saved.pt2")


def test_fetch_command_quotes_paths_and_a_payload_not_kept_has_none():
    assert fetch_command("logs/a b/outputs.zip", "matrix_evidence/k", "call-1-x;y") == (
        "unzip -p 'logs/a b/outputs.zip' 'matrix_evidence/k/call-1-x;y' > 'call-1-x;y'")
    rec = Record("s", "t.py::test", "v", "cpu", statuses.FAILED, evidence={
        "outputs": "o/outputs.zip", "dir": "matrix_evidence/k", "calls_not_kept": 2, "problem": "evidence.json: not JSON",
        "calls": [{"entry": "e", "before": "a\n", "before_cut": 1024, "after": "a\n", "after_cut": 0, "error": "boom", "check": None,
                   "check_s": None, "payloads": [{"file": "call-1-p.pt2", "what": "w", "bytes": 70_000_000, "kept": 0,
                                                  "cut": "not kept: this target's evidence reached its budget"}]}]})
    view = evidence_view(rec)
    (p,) = view.calls[0].payloads
    assert p.line == "call-1-p.pt2: w, 0 of 70,000,000 bytes kept; not kept: this target's evidence reached its budget" and p.command == ""
    assert view.calls[0].cuts == ["before: 1,024 characters cut from its middle"] and view.calls[0].error == "boom"
    assert view.problem == "evidence.json: not JSON" and view.not_kept == "2 more calls of this test not kept (past the runtime's limit per test)"
    assert view.where == "kept in o/outputs.zip under matrix_evidence/k"
    md = md_evidence(render_markdown([rec], RUN))
    assert md[4:] == [
        "### failed · v/cpu · s `t.py::test`", "",
        "**The evidence could not be read whole:** evidence.json: not JSON", "",
        "Call 1 of 1: `e` · `check: did not run`", "",
        "*the program text is unchanged*", "",
        "*before: 1,024 characters cut from its middle*", "",
        "```text", "boom", "```", "",
        "- payload `call-1-p.pt2`: w, 0 of 70,000,000 bytes kept; not kept: this target's evidence reached its budget", "",
        "2 more calls of this test not kept (past the runtime's limit per test)",
    ]
    assert evidence_view(replace(rec, evidence=None)) is None
    # outside a table a pipe in a command stays as it is: the command runs as copied
    piped = replace(rec, evidence={**rec.evidence, "outputs": "logs/a|b/outputs.zip",
                                   "calls": [{**rec.evidence["calls"][0], "payloads": [{"file": "call-1-p", "what": "w", "bytes": 1, "kept": 1, "cut": ""}]}]})
    assert "- payload `call-1-p`: w, 1 of 1 bytes kept · `unzip -p 'logs/a|b/outputs.zip' matrix_evidence/k/call-1-p > call-1-p`" in md_evidence(
        render_markdown([piped], RUN))


@pytest.mark.skipif(shutil.which("unzip") is None, reason="needs unzip")
def test_the_shown_commands_get_the_payload_out_of_a_zip_and_a_directory(tmp_path):
    """Run as a person would: the command compat.md shows, in a shell; the path it shows, opened."""
    data = bytes(range(256)) * 40
    outputs = tmp_path / "bazel-testlogs" / "a dir; $(x)" / "test.outputs"
    outputs.mkdir(parents=True)
    with zipfile.ZipFile(outputs / "outputs.zip", "w") as z:
        z.writestr("matrix_evidence/k/call-1-saved.pt2", data)
    (outputs / "matrix_evidence" / "k").mkdir(parents=True)
    (outputs / "matrix_evidence" / "k" / "call-1-saved.pt2").write_bytes(data)
    call = {"entry": "e", "before": "a\n", "before_cut": 0, "after": "b\n", "after_cut": 0, "error": None, "check": "passed", "check_s": 0.0,
            "payloads": [{"file": "call-1-saved.pt2", "what": "w", "bytes": len(data), "kept": len(data), "cut": ""}]}
    for where in (outputs / "outputs.zip", outputs):
        rec = Record("s", "t.py::test", "v", "cpu", statuses.FAILED,
                     evidence={"outputs": str(where), "dir": "matrix_evidence/k", "calls_not_kept": 0, "calls": [call]})
        (line,) = [line for line in md_evidence(render_markdown([rec], RUN)) if line.startswith("- payload ")]
        shown = line.split(" · `", 1)[1].removesuffix("`")
        assert shown == evidence_view(rec).calls[0].payloads[0].command
        if where.suffix == ".zip":
            subprocess.run(shown, shell=True, cwd=tmp_path, check=True)
            assert (tmp_path / "call-1-saved.pt2").read_bytes() == data
        else:
            assert Path(shown).read_bytes() == data


# ---------------------------------------------------------------- compat.md


def test_markdown_shows_the_diff_the_check_and_the_payload(records):
    swap = one(records, "swap")
    ev = swap.evidence
    size = ev["calls"][0]["payloads"][0]["bytes"]
    md = md_evidence(render_markdown(records, RUN))
    assert md[0] == "## What the transform changed (4)"
    start = md.index(f"### failed · swap/cpu · export_tests `{TEST}`")
    assert md[start : start + 19] == [
        f"### failed · swap/cpu · export_tests `{TEST}`", "",
        f"Call 1 of 1: `torch.export.export` · `check: {ev['calls'][0]['check']}`", "",
        "```diff",
        "--- before swap",
        "+++ after swap",
        "@@ -3,7 +3,7 @@",
        '         def forward(self, p_l_weight: "f32[3, 4]", p_l_bias: "f32[3]", x: "f32[2, 4]"):',  # context: " " + the line
        '             linear: "f32[2, 3]" = torch.ops.aten.linear.default(x, p_l_weight, p_l_bias);  x = p_l_weight = p_l_bias = None',
        "     ",
        "-" + RELU_LINE,
        "+" + SIGMOID_LINE,
        '             mul: "f32[2, 3]" = torch.ops.aten.mul.Tensor(relu, 2);  relu = None',
        "             return (mul,)",
        "     ",
        "```", "",
        (f"- payload `call-1-saved.pt2`: the archive written by torch.export.save, {size:,} of {size:,} bytes kept · "
         f"`unzip -p bazel-testlogs/export_tests/export_tests_swap_cpu/test.outputs/outputs.zip {ev['dir']}/call-1-saved.pt2 > call-1-saved.pt2`"),
    ]
    # unexpected first (most severe first), then xfailed
    headings = [line for line in md if line.startswith("### ")]
    assert headings == [
        "### crashed · crash/cpu · export_tests `test_models.py::test_crash`",
        "### failed · swap/cpu · export_tests `test_evil.py::test_\\u202e\\u2066[</script><script>window.__pwned=1</script>]`",
        f"### failed · swap/cpu · export_tests `{TEST}`",
        f"### xfailed · nudge/cpu · export_tests `{TEST}`",
    ]
    crash = md.index(headings[0])
    assert md[crash + 4 : crash + 6] == ["*the transform did not finish: there is no program after it*", ""]


def test_markdown_bounds_cells_calls_and_diff_lines():
    before = "".join(f"line {i}\n" for i in range(100))
    call = {"entry": "e", "before": before, "before_cut": 0, "after": before.replace("line", "LINE"), "after_cut": 0, "error": None,
            "check": "passed", "check_s": 0.0, "payloads": []}
    ev = {"outputs": "o/outputs.zip", "dir": "matrix_evidence/k", "calls_not_kept": 0, "calls": [call] * 4}
    recs = [Record("s", f"t.py::test_{i:02d}", "v", "cpu", statuses.XFAILED if i % 2 else statuses.FAILED, evidence=ev)
            for i in range(MAX_EVIDENCE_CELLS + 5)]
    md = md_evidence(render_markdown(recs, RUN))
    diff_len = len(evidence_view(recs[0]).calls[0].diff)
    assert diff_len == 3 + 200  # both headers, one hunk, every line removed and added
    assert md.count("```diff") == MAX_EVIDENCE_CELLS * 3  # 3 calls a cell
    assert md.count(f"… {diff_len - MAX_DIFF_LINES} more diff lines: compat.html has the whole diff and both texts.") == MAX_EVIDENCE_CELLS * 3
    assert md.count("1 more calls in compat.html.") == MAX_EVIDENCE_CELLS
    assert md[-1] == "… and 5 more cells with evidence (see compat.json / compat.html)."
    headings = [line for line in md if line.startswith("### ")]
    assert len(headings) == MAX_EVIDENCE_CELLS and all(h.startswith("### failed") for h in headings[:13])
    assert headings[13].startswith("### xfailed")
    first = md.index("```diff")
    assert md[first + MAX_DIFF_LINES + 1] == "```"


def test_no_evidence_no_section():
    md = render_markdown([Record("s", "t.py::test", "v", "cpu", statuses.FAILED, message="m")], RUN)
    assert "What the transform changed" not in md


def test_hostile_evidence_is_escaped_in_markdown(records):
    md = render_markdown(records, RUN)
    assert "\u202e" not in md and "\u2066" not in md
    section = md_evidence(md)
    # the after text holds a line of three backticks: the fence is longer, so it cannot close the block
    start = section.index("````diff")
    assert section[start + 8 : start + 11] == [
        '+            evil = </script><script>window.__pwned=1</script> <img src=x onerror="window.__pwned=1"> \\u202e\\u2066x',
        "+```", "+~~~"]
    assert "````" in section[start + 11 :]
    assert ("- payload `call-1-x.pt2`: \\</script\\>\\<script\\>window.__pwned=1\\</script\\>\\\\u202e\\\\u2066, 10 of 10 bytes kept · "
            "`unzip") in "\n".join(section)


# ---------------------------------------------------------------- compat.html data


def test_html_data_has_evidence_only_for_records_that_have_it(records):
    data = _embedded(render_html(records, RUN))
    ordered = sorted(records, key=lambda r: r.key)
    assert sorted(map(int, data["ev"])) == [i for i, r in enumerate(ordered) if r.evidence]
    i = next(i for i, r in enumerate(ordered) if r.variant == "swap" and r.test == TEST)
    view, ev = evidence_view(ordered[i]), data["ev"][str(i)]
    (call,) = ev["calls"]
    assert call["diff"] == view.calls[0].diff and call["kinds"] == view.calls[0].kinds
    assert data["evText"][call["before"]] == ordered[i].evidence["calls"][0]["before"]
    assert data["evText"][call["after"]] == ordered[i].evidence["calls"][0]["after"]
    assert call["payloads"] == [[p.line, p.command] for p in view.calls[0].payloads] and call["check"] == view.calls[0].check
    assert ev["where"] == view.where and ev["problem"] == "" and ev["notKept"] == ""
    # one text per distinct program: every record's `before` is the same program, and the nudged `after` equals it
    assert len(data["evText"]) == 3
    crash = next(v for k, v in data["ev"].items() if ordered[int(k)].status == statuses.CRASHED)
    assert crash["calls"][0]["after"] == -1 and crash["calls"][0]["note"] == UNFINISHED
    # the record's transform_check is in the panel's fields
    w, f = len(data["detFields"]), {n: k for k, n in enumerate(data["detFields"])}
    for k, r in enumerate(ordered):
        chk = data["det"][data["rec"]["det"][k] * w + f["transform_check"]]
        assert (None if chk == -1 else data["str"][chk]) == (r.transform_check and r.transform_check.replace("\u202e", "\\u202e").replace("\u2066", "\\u2066"))


def test_hostile_evidence_cannot_break_out_of_the_html(records):
    html = render_html(records, RUN)
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert "\u202e" not in html and "\u2066" not in html and "<img" not in html
    data = _embedded(html)
    evil = next(v for v in data["ev"].values() if "\\u202e" in v["calls"][0]["entry"])
    assert evil["calls"][0]["check"] == f"check: failed: {BREAKOUT}\\u202e\\u2066"
    assert any(line.startswith(f"+            evil = {BREAKOUT}") for line in evil["calls"][0]["diff"])
    assert BIDI not in json.dumps(data, ensure_ascii=False)


# ---------------------------------------------------------------- terminal, compat.json


def test_terminal_says_in_one_line_how_many_failing_cells_kept_evidence(records):
    lines = terminal_summary(records).splitlines()
    said = [line for line in lines if line.startswith("Evidence:")]
    assert said == ["Evidence: 3 of 3 failing cells kept what their variant's transform changed: "
                    "compat.md, \"What the transform changed\", or click the cell in compat.html."]
    assert lines[-1] == said[0]
    without = [replace(r, evidence=None) for r in records]
    assert not any(line.startswith("Evidence:") for line in terminal_summary(without).splitlines())


def test_compat_json_keeps_the_evidence_valid_and_it_renders_the_same_when_read_back(records, tmp_path):
    json_path, md_path, _ = write_reports(records, RUN, tmp_path)
    jsonschema.validate(json.loads(json_path.read_text(encoding="utf-8")), json.loads(SCHEMA_PATH.read_text()))
    run, back = load_json(json_path)
    assert {r.key: r.evidence for r in back} == {r.key: r.evidence for r in records}
    assert render_markdown(back, run) == md_path.read_text(encoding="utf-8")
