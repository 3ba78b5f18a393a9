"""`rerun`: which targets and tests to run again (plan), the bazel commands (commands), the merged
report (a real rerun through a stand-in `bazel`), plus the dry-run / nothing-to-do paths of rerun().
The merge's precedence itself: test_known_tests.py."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from tools.matrix import config, generate, last_report, statuses, warm
from tools.matrix import rerun as rerun_mod
from tools.matrix.errors import UserError
from tools.matrix.known_tests import NO_RESULTS, NOT_RERUN
from tools.matrix.records import Record
from tools.matrix.runtime import outputs
from tools.matrix.tests.fixtures import toolws

plan, commands = rerun_mod.plan, rerun_mod.commands


MATRIX = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base: {impl: tools.matrix.variants.base:Base, description: plain}
  other: {impl: tools.matrix.variants.export:Retrace, description: other}
suites:
  s:
    variants: [base, other]
    devices: [cpu, cuda]
  t:
    variants: [base]
    devices: [cpu]
"""
T1, T2, T3, T4 = "test_a.py::test_one", "test_a.py::TestK::test_two", "test_b.py::test_three[x]", "test_b.py::test_four"
C1, C2, C3 = "test_c.py::test_c1", "test_c.py::test_c2", "test_c.py::test_c3"
ALL_LABELS = ["//s:s_base_cpu", "//s:s_base_cuda", "//s:s_other_cpu", "//s:s_other_cuda", "//t:t_base_cpu"]
CPU_LABELS = [label for label in ALL_LABELS if not label.endswith("_cuda")]  # whole-target reruns skip GPU cells


@pytest.fixture
def ws(tmp_path) -> Path:
    return toolws.write_workspace(tmp_path, MATRIX, ("s/test_a.py", "s/test_b.py", "t/test_c.py"))


@pytest.fixture
def matrix(ws) -> config.Matrix:
    return config.load(ws / "matrix.yaml", ws)


def rec(suite, variant, device, test, status, run_id="old") -> Record:
    return Record(suite=suite, test=test, variant=variant, device=device, status=status, target=f"//{suite}:{suite}_{variant}_{device}", run_id=run_id)


def previous() -> list[Record]:
    return [
        rec("s", "base", "cpu", T1, statuses.FAILED),
        rec("s", "base", "cpu", T2, statuses.PASSED),
        rec("s", "base", "cpu", T3, statuses.CRASHED),
        rec("s", "base", "cpu", T4, statuses.SKIPPED),
        rec("s", "base", "cuda", T1, statuses.FAILED),
        rec("s", "base", "cuda", T2, statuses.XFAILED),
        rec("s", "base", "cuda", T3, statuses.CRASHED),
        rec("s", "other", "cpu", T2, statuses.TIMEOUT),
        rec("s", "other", "cpu", T4, statuses.XPASSED),
        rec("s", "other", "cpu", T1, statuses.NOT_RUN),
        rec("s", "other", "cuda", T2, statuses.ERROR),
        rec("t", "base", "cpu", C1, statuses.FAILED),
        rec("t", "base", "cpu", C2, statuses.XFAILED),
        rec("t", "base", "cpu", C3, statuses.NOT_RUN),
    ]


def args(**kw) -> argparse.Namespace:
    base = {"suite": [], "variant": [], "device": [], "tests": [], "failed": False, "xpassed": False, "dry_run": False, "bazel_args": [], "strict_flaky": False}
    return argparse.Namespace(**{**base, **kw})


def labels(groups) -> dict[tuple[str, ...], list[str]]:
    return {filters: list(labels) for filters, labels in groups.items()}


# --- plan ------------------------------------------------------------------------------------------


def test_plan_everything(matrix):
    assert labels(plan(matrix, args(), None)) == {(): CPU_LABELS}
    assert labels(plan(matrix, args(device=["*"]), None)) == {(): ALL_LABELS}  # GPU cells when asked for


def test_plan_variant(matrix):
    assert labels(plan(matrix, args(variant=["other"]), previous())) == {(): ["//s:s_other_cpu"]}
    assert labels(plan(matrix, args(variant=["other"], device=["cuda"]), previous())) == {(): ["//s:s_other_cuda"]}
    assert labels(plan(matrix, args(variant=["b*"], device=["cpu"]), None)) == {(): ["//s:s_base_cpu", "//t:t_base_cpu"]}
    with pytest.raises(UserError, match=r"^--variant nope: no variant of matrix.yaml matches; valid: base, other$"):
        plan(matrix, args(variant=["nope"]), None)


def test_plan_failed_groups_identical_filter_sets(matrix):
    """Only failed/crashed/timeout/error tests, per target; targets with the same set share a command."""
    assert labels(plan(matrix, args(failed=True), previous())) == {
        (T1, T3): ["//s:s_base_cpu", "//s:s_base_cuda"],
        (T2,): ["//s:s_other_cpu", "//s:s_other_cuda"],
        (C1,): ["//t:t_base_cpu"],
    }


def test_plan_failed_with_filters(matrix):
    assert labels(plan(matrix, args(failed=True, device=["cpu"]), previous())) == {
        (T1, T3): ["//s:s_base_cpu"],
        (T2,): ["//s:s_other_cpu"],
        (C1,): ["//t:t_base_cpu"],
    }
    assert labels(plan(matrix, args(failed=True, suite=["s"], tests=["test_a.py"]), previous())) == {
        (T1,): ["//s:s_base_cpu", "//s:s_base_cuda"],
        (T2,): ["//s:s_other_cpu", "//s:s_other_cuda"],
    }
    assert labels(plan(matrix, args(failed=True, tests=["TestK.test_two"]), previous())) == {(T2,): ["//s:s_other_cpu", "//s:s_other_cuda"]}


def test_plan_xpassed(matrix):
    assert labels(plan(matrix, args(xpassed=True), previous())) == {(T4,): ["//s:s_other_cpu"]}
    assert labels(plan(matrix, args(xpassed=True, failed=True, variant=["other"]), previous())) == {
        (T2, T4): ["//s:s_other_cpu"],
        (T2,): ["//s:s_other_cuda"],
    }


def test_plan_tests(matrix):
    assert labels(plan(matrix, args(tests=["test_b.py::test_three", "TestK"]), None)) == {("test_b.py::test_three", "TestK"): CPU_LABELS}
    assert labels(plan(matrix, args(tests=["test_c*"], suite=["t"]), None)) == {("test_c*",): ["//t:t_base_cpu"]}


def test_plan_failed_needs_a_report(matrix):
    with pytest.raises(rerun_mod.NoReport, match="need a previous report"):
        plan(matrix, args(failed=True), None)
    with pytest.raises(rerun_mod.NoReport):
        plan(matrix, args(xpassed=True), None)


def test_plan_nothing_failed(matrix):
    assert plan(matrix, args(failed=True), [r for r in previous() if r.status not in statuses.UNEXPECTED]) == {}
    assert plan(matrix, args(failed=True, suite=["t"], tests=["test_c2"]), previous()) == {}


def test_plan_parametrized_id_with_a_comma(matrix):
    """Bazel's --test_filter is comma-separated: such an id is rerun through its base name."""
    old = [rec("s", "base", "cpu", "test_b.py::test_p[1,2]", statuses.FAILED), rec("s", "base", "cpu", "test_b.py::test_q[3]", statuses.FAILED)]
    assert labels(plan(matrix, args(failed=True), old)) == {("test_b.py::test_p", "test_b.py::test_q[3]"): ["//s:s_base_cpu"]}
    from tools.matrix.runtime.selection import parse_filter, select

    (command,) = commands(plan(matrix, args(failed=True), old), Path("/r/bep.json"), [])
    patterns = parse_filter(next(a for a in command if a.startswith("--test_filter=")).split("=", 1)[1])
    assert select(["test_b.py::test_p[1,2]", "test_b.py::test_p[3,4]", "test_b.py::test_q[3]", "test_b.py::test_q[4]"], patterns) == [
        "test_b.py::test_p[1,2]", "test_b.py::test_p[3,4]", "test_b.py::test_q[3]",
    ]  # fmt: skip


# --- commands ----------------------------------------------------------------------------------------


def test_commands(matrix):
    groups = plan(matrix, args(failed=True), previous())
    assert commands(groups, Path("/out/bep.json"), ["--keep_going"]) == [
        ["bazel", "test", "//s:s_other_cpu", "//s:s_other_cuda", "--config=gpu", f"--test_filter={T2}", "--build_event_json_file=/out/bep.0.json", "--keep_going"],
        ["bazel", "test", "//s:s_base_cpu", "//s:s_base_cuda", "--config=gpu", f"--test_filter={T1},{T3}", "--build_event_json_file=/out/bep.1.json", "--keep_going"],
        ["bazel", "test", "//t:t_base_cpu", f"--test_filter={C1}", "--build_event_json_file=/out/bep.2.json", "--keep_going"],
    ]  # in the order of the sorted filter sets


def test_commands_whole_targets_and_cpu_only(matrix):
    assert commands(plan(matrix, args(device=["cpu"]), None), Path("/out/bep.json"), []) == [
        ["bazel", "test", "//s:s_base_cpu", "//s:s_other_cpu", "//t:t_base_cpu", "--build_event_json_file=/out/bep.0.json"],
    ]
    assert commands(plan(matrix, args(device=["cuda"], tests=["TestK"]), None), Path("out/x.json"), ["-c", "opt"]) == [
        ["bazel", "test", "//s:s_base_cuda", "//s:s_other_cuda", "--config=gpu", "--test_filter=TestK", "--build_event_json_file=out/x.0.json", "-c", "opt"],
    ]


# --- rerun() -------------------------------------------------------------------------------------------


def write_compat(path: Path, records: list[Record]) -> Path:
    return toolws.write_compat(path, records, run_id="old")


def test_rerun_nothing_to_rerun_exits_0(ws, matrix, capsys, monkeypatch):
    monkeypatch.setenv("BAZEL", "/nonexistent/bazel")  # would fail loudly if anything were run
    out = ws / "reports"
    write_compat(out / rerun_mod.COMPAT_JSON, [r for r in previous() if r.status not in statuses.UNEXPECTED])
    before = sorted(p.name for p in out.iterdir())
    assert rerun_mod.rerun(ws, matrix, out, args(failed=True, dry_run=True)) == 0
    assert capsys.readouterr().out == (  # that report has no record of s/other/cuda: --failed cannot rerun it, and says so
        "rerun: skipped 1 cell(s) new since the last report: //s:s_other_cuda (--failed/--xpassed rerun what that report "
        "names; `rerun --suite S --variant V --device D` runs a whole cell)\n"
        "nothing to rerun: no target or test matches --failed with the given filters\n"
    )
    assert rerun_mod.rerun(ws, matrix, out, args(failed=True, xpassed=True, dry_run=False)) == 0
    assert "--failed --xpassed" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == before


def test_rerun_dry_run_prints_the_commands(ws, matrix, capsys, monkeypatch):
    monkeypatch.setenv("BAZEL", "/nonexistent/bazel")
    out = ws / "reports"
    write_compat(out / rerun_mod.COMPAT_JSON, previous())
    assert rerun_mod.rerun(ws, matrix, out, args(failed=True, suite=["t"], dry_run=True)) == 0
    assert capsys.readouterr().out == f"bazel test //t:t_base_cpu --test_filter={C1} --build_event_json_file={out}/bep.0.json\n"


def test_cli_rerun(ws):
    def cli(*argv):
        return toolws.run_cli(ws, *argv)

    no_report = cli("rerun", "--failed", "--dry-run")
    assert no_report.returncode == 2
    assert no_report.stderr.startswith("error: --failed/--xpassed need a previous report")
    assert "Traceback" not in no_report.stderr

    write_compat(ws / "reports" / rerun_mod.COMPAT_JSON, previous())
    dry = cli("rerun", "--xpassed", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout == f"bazel test //s:s_other_cpu --test_filter={T4} --build_event_json_file={ws}/reports/bep.0.json\n"
    # Shell-quoted where needed (a parametrized id), so the printed command can be pasted.
    assert cli("rerun", "--failed", "--suite", "s", "--variant", "base", "--device", "cpu", "--dry-run").stdout == (
        f"bazel test //s:s_base_cpu '--test_filter={T1},{T3}' --build_event_json_file={ws}/reports/bep.0.json\n"
    )


# --- granularity: file: the per-file targets ---------------------------------------------------------

BY_FILE = MATRIX.replace("  s:\n", "  s:\n    granularity: file\n")


@pytest.fixture
def by_file(tmp_path) -> config.Matrix:
    ws = toolws.write_workspace(tmp_path / "by_file", BY_FILE, ("s/test_a.py", "s/test_b.py", "t/test_c.py"))
    return config.load(ws / "matrix.yaml", ws)


def test_plan_a_placeholder_record_reruns_its_target_without_a_filter(matrix, by_file):
    """A cell whose target died before any test was known has one placeholder record (collect.NO_RESULTS):
    its target reruns whole; the placeholder text is no test filter."""
    dead = Record(suite="s", test=NO_RESULTS, variant="other", device="cpu", status=statuses.CRASHED, target="//s:s_other_cpu")
    assert labels(plan(matrix, args(failed=True, variant=["other"]), [dead])) == {(): ["//s:s_other_cpu"]}
    dead_file = Record(suite="s", test=NO_RESULTS, variant="other", device="cpu", status=statuses.CRASHED, target="//s:s_other_cpu/test_b")
    failed = rec("s", "other", "cpu", T1, statuses.FAILED)
    assert labels(plan(by_file, args(failed=True, variant=["other"]), [dead_file, *per_file([failed])])) == {
        (): ["//s:s_other_cpu/test_b"],
        (T1,): ["//s:s_other_cpu/test_a"],
    }


def per_file(records: list[Record]) -> list[Record]:
    """The records as a report of the per-file targets holds them: each names its file's target."""
    for r in records:
        if r.suite == "s":
            r.target = f"{r.target}/{r.test.split('.py')[0]}"
    return records


def test_plan_failed_per_file_targets(by_file):
    """Each failed test is rerun in its file's target only; targets with the same tests share a command."""
    assert labels(plan(by_file, args(failed=True), per_file(previous()))) == {
        (T1,): ["//s:s_base_cpu/test_a", "//s:s_base_cuda/test_a"],
        (T3,): ["//s:s_base_cpu/test_b", "//s:s_base_cuda/test_b"],
        (T2,): ["//s:s_other_cpu/test_a", "//s:s_other_cuda/test_a"],
        (C1,): ["//t:t_base_cpu"],
    }
    assert labels(plan(by_file, args(xpassed=True, failed=True, variant=["other"], device=["cpu"]), per_file(previous()))) == {
        (T2,): ["//s:s_other_cpu/test_a"],
        (T4,): ["//s:s_other_cpu/test_b"],
    }


def test_commands_per_file_targets(by_file):
    groups = plan(by_file, args(failed=True, suite=["s"], variant=["base"]), per_file(previous()))
    assert commands(groups, Path("/out/bep.json"), []) == [
        ["bazel", "test", "//s:s_base_cpu/test_a", "//s:s_base_cuda/test_a", "--config=gpu", f"--test_filter={T1}", "--build_event_json_file=/out/bep.0.json"],
        ["bazel", "test", "//s:s_base_cpu/test_b", "//s:s_base_cuda/test_b", "--config=gpu", f"--test_filter={T3}", "--build_event_json_file=/out/bep.1.json"],
    ]  # in the order of the sorted filter sets


def test_plan_a_report_from_before_the_granularity_change_reruns_each_test_in_its_files_target(by_file):
    """Records naming the cell's label (written when the suite ran as one target per cell): each
    test reruns in the target that runs it today, its file's."""
    assert labels(plan(by_file, args(failed=True, suite=["s"], device=["cpu"]), previous())) == {
        (T1,): ["//s:s_base_cpu/test_a"],
        (T3,): ["//s:s_base_cpu/test_b"],
        (T2,): ["//s:s_other_cpu/test_a"],
    }
    # Both kinds in one report (a rerun merged into the old one): grouped by file target all the same.
    mixed = previous() + per_file([rec("s", "base", "cpu", T4, statuses.FAILED, run_id="new")])
    assert labels(plan(by_file, args(failed=True, suite=["s"], variant=["base"], device=["cpu"]), mixed)) == {
        (T1,): ["//s:s_base_cpu/test_a"],
        (T4, T3): ["//s:s_base_cpu/test_b"],  # sorted: test_four < test_three[x]
    }


def test_plan_whole_cells_name_the_cells_label(by_file):
    assert labels(plan(by_file, args(), None)) == {(): CPU_LABELS}
    assert labels(plan(by_file, args(tests=["test_a.py"], variant=["other"], device=["*"]), None)) == {("test_a.py",): ["//s:s_other_cpu", "//s:s_other_cuda"]}


def test_rerun_dry_run_per_file_targets(tmp_path, by_file, capsys, monkeypatch):
    monkeypatch.setenv("BAZEL", "/nonexistent/bazel")
    out = tmp_path / "reports"
    write_compat(out / rerun_mod.COMPAT_JSON, per_file(previous()))
    assert rerun_mod.rerun(tmp_path / "by_file", by_file, out, args(failed=True, device=["cpu"], suite=["s"], dry_run=True)) == 0
    assert capsys.readouterr().out == (
        f"bazel test //s:s_other_cpu/test_a --test_filter={T2} --build_event_json_file={out}/bep.0.json\n"
        f"bazel test //s:s_base_cpu/test_a --test_filter={T1} --build_event_json_file={out}/bep.1.json\n"
        f"bazel test //s:s_base_cpu/test_b '--test_filter={T3}' --build_event_json_file={out}/bep.2.json\n"
    )


def _report_json(target: str, results: dict[str, str], test_filter: str = "", not_run_here: tuple[str, ...] = ()) -> str:
    """What cell_main writes (through its own writer) for one run of `target` (//s:s_base_cpu/test_a)."""
    tests = [{"nodeid": t, "outcome": s, "metadata": {"matrix": {"status": s, "duration_s": 0.5, "message": "", "error_type": None,
              "transform_failed": False, "transform_s": 0.0, "transform_calls": 0, "expectation": None}}} for t, s in results.items()]  # fmt: skip
    meta = {"suite": "s", "variant": "base", "device": "cpu", "target": target, "shard_index": 0, "total_shards": 1, "test_filter": test_filter,
            "torch_version": "2.13.0+cpu", "problems": [], outputs.COLLECTED_NOT_RUN: list(not_run_here)}  # fmt: skip
    return json.dumps(outputs.json_report(tests, meta, time.time(), 0, "s"))


def test_rerun_of_one_files_target_merges_only_that_targets_results(tmp_path, by_file, monkeypatch, capfd):
    """A real `rerun --failed` through a stand-in `bazel` that rewrites the testlogs of the targets it
    is asked to test: test_a's target reruns T1; test_b's target did not run again, so its tests keep
    the previous run's records (their run_id says which run produced them)."""
    logs = tmp_path / "bazel-testlogs"
    for name, results in (("test_a", {T1: statuses.FAILED, T2: statuses.PASSED}), ("test_b", {T3: statuses.PASSED, T4: statuses.SKIPPED})):
        (logs / "s" / "s_base_cpu" / name / "test.outputs").mkdir(parents=True)
        (logs / "s" / "s_base_cpu" / name / "test.outputs" / "report.json").write_text(_report_json(f"//s:s_base_cpu/{name}", results))
    fresh = tmp_path / "fresh.json"
    fresh.write_text(_report_json("//s:s_base_cpu/test_a", {T1: statuses.PASSED}, test_filter=T1, not_run_here=(T2,)))
    fake = tmp_path / "bazel"
    fake.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = info ]; then echo {logs}; exit 0; fi\n'
        f'echo "$@" >> {tmp_path / "calls.txt"}\n'
        f"cp {fresh} {logs}/s/s_base_cpu/test_a/test.outputs/report.json\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("BAZEL", str(fake))
    out = tmp_path / "reports"
    old = [rec("s", "base", "cpu", t, s) for t, s in ((T1, statuses.FAILED), (T2, statuses.PASSED), (T3, statuses.PASSED), (T4, statuses.SKIPPED))]
    write_compat(out / rerun_mod.COMPAT_JSON, per_file(old))
    generate.write(by_file, tmp_path / "by_file")  # rerun refuses stale generated files
    assert rerun_mod.rerun(tmp_path / "by_file", by_file, out, args(failed=True)) == 0, capfd.readouterr().out
    # conftest.py's MATRIX_WARM=off (no tools test starts a warm launcher) reaches the tests as Bazel's --test_env.
    assert (tmp_path / "calls.txt").read_text() == f"test //s:s_base_cpu/test_a --test_filter={T1} --build_event_json_file={out}/bep.0.json {warm.COLD_ARG}\n"
    run, merged = last_report.load(out / rerun_mod.COMPAT_JSON)
    rerun_cell = [r for r in merged if (r.suite, r.variant, r.device) == ("s", "base", "cpu")]
    assert {r.test: (r.status, r.target, r.run_id == run.run_id) for r in rerun_cell} == {
        T1: (statuses.PASSED, "//s:s_base_cpu/test_a", True),
        T2: (statuses.PASSED, "//s:s_base_cpu/test_a", False),  # not in the filter: not rerun
        T3: (statuses.PASSED, "//s:s_base_cpu/test_b", False),
        T4: (statuses.SKIPPED, "//s:s_base_cpu/test_b", False),
    }
    # The cells the last report never had are there too: every known test not_run, saying why.
    others = [r for r in merged if r not in rerun_cell]
    assert sorted((r.suite, r.variant, r.device, r.test) for r in others) == sorted(
        [("s", v, d, t) for v, d in (("base", "cuda"), ("other", "cpu"), ("other", "cuda")) for t in (T1, T2, T3, T4)] + [("t", "base", "cpu", NO_RESULTS)]
    )
    assert {(r.status, r.message, r.run_id == run.run_id) for r in others} == {(statuses.NOT_RUN, NOT_RERUN, True)}


def test_plan_a_report_from_before_going_back_to_one_target_per_cell(matrix):
    """The suite ran with granularity: file and is back to one target per cell: its failures rerun in the cell's target."""
    assert labels(plan(matrix, args(failed=True, suite=["s"]), per_file(previous()))) == {
        (T1, T3): ["//s:s_base_cpu", "//s:s_base_cuda"],
        (T2,): ["//s:s_other_cpu", "//s:s_other_cuda"],
    }
