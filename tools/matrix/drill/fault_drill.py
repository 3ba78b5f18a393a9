"""The fault drill: hostile tests and a corrupted output, run under real Bazel and collected by the
real `report` command; it fails unless every result is accounted for.

    bazel run //tools/matrix/drill:fault_drill      # ~3 min on 2 cores; `make test` runs it

In a scratch workspace (a copy of WORKSPACE, requirements.txt and tools/, plus the two suites in
suites/) with its own output base, reusing this build's @pyenv so nothing is installed:
1. `matrix report` runs `bazel test //:all_cells --keep_going` over drill_faults (segfault, abort, hang,
   os._exit(0), a test that SIGKILLs its own process group, one that wipes the temp dir, one that
   writes junk into every file it finds there, 10 MB of output, a segfault and an ImportError while
   importing a test file, a failing subtest, an expected crash) and drill_healthy, under two
   variants; every test must have the status plain pytest would give it (crashes and hangs: their
   own status), with 0 results lost.
   A test that segfaults after its export was transformed keeps that evidence (the program before
   and after) in its record; passing tests keep none.
2. One cell's outputs.zip is truncated; `report --no-run` must still write the report, that cell's
   results read from its intact test.xml and a problem line naming the zip; then its test.xml is
   truncated too: only that cell's records turn into `error`, naming the file.
3. A --test_filter that matches nothing must fail the cell, naming the near match.
Every test process runs on the warm path (report starts the drill's own warm launcher): each cell's
report.json must say so (scratch_workspace.check_warm); the launcher is stopped at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import check_warm, discard, drill_workspace, run_step

HERE = Path(__file__).resolve().parent
STEP_TIMEOUT_S = 900

# (suite, test) -> the status plain pytest semantics (plus the matrix's crash/timeout statuses) give.
EXPECTED = {
    ("drill_faults", "test_faults.py::test_a_ok_first"): "passed",
    ("drill_faults", "test_faults.py::test_b_segfault"): "crashed",
    ("drill_faults", "test_faults.py::test_c_ok"): "passed",
    ("drill_faults", "test_faults.py::test_d_abort"): "crashed",
    ("drill_faults", "test_faults.py::test_e_hang"): "timeout",
    ("drill_faults", "test_faults.py::test_f_exit0"): "crashed",
    ("drill_faults", "test_faults.py::test_g_killpg"): "crashed",
    ("drill_faults", "test_faults.py::test_h_wipe_tmp"): "passed",
    ("drill_faults", "test_faults.py::test_i_junk_journal"): "passed",
    ("drill_faults", "test_faults.py::test_j_loud"): "passed",
    ("drill_faults", "test_faults.py::test_k_xfail_crash"): "xfailed",
    ("drill_faults", "test_faults.py::test_l_export_then_segfault"): "crashed",
    ("drill_faults", "test_faults.py::test_z_ok_last"): "passed",
    ("drill_faults", "test_import_segfault.py"): "crashed",
    ("drill_faults", "test_import_error.py"): "error",
    ("drill_faults", "test_zz_healthy.py::test_export_add"): "passed",
    ("drill_faults", "test_zz_healthy.py::test_plain"): "passed",
    ("drill_faults", "test_zz_healthy.py::TestSub::test_subtest_fails"): "failed",
    ("drill_healthy", "test_healthy.py::test_export_mul"): "passed",
    ("drill_healthy", "test_healthy.py::test_one"): "passed",
    ("drill_healthy", "test_healthy.py::test_two"): "passed",
}
VARIANTS = ("base", "retrace")
CORRUPTED = ("drill_healthy", "retrace")  # the cell whose outputs.zip the drill truncates

MATRIX_YAML = """\
# The fault drill's matrix (written by tools/matrix/drill/fault_drill.py).
devices:
  cpu: {}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
  retrace:
    impl: tools.matrix.variants.export:Retrace
    description: Export the exported program's .module() again.
    applies_to: [torch.export.export]
suites:
  drill_faults:
    variants: [base, retrace]
    devices: [cpu]
    size: medium
    test_timeout_s: 10
  drill_healthy:
    variants: [base, retrace]
    devices: [cpu]
    size: medium
    test_timeout_s: 60
expectations:
  drill_faults:
    base:
      xfail:
        test_faults.py::test_k_xfail_crash: "crashed: the drill's expected segfault"
    retrace:
      xfail:
        test_faults.py::test_k_xfail_crash: "crashed: the drill's expected segfault"
"""


def fail(message: str) -> NoReturn:
    print(f"\nfault_drill: FAIL: {message}", flush=True)
    sys.exit(1)


def run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    rc, out = run_step(argv, cwd, env, log, STEP_TIMEOUT_S)
    if "Traceback (most recent call last)" in out and "report" in argv:
        fail(f"a traceback reached the user:\n{out[-4000:]}")
    return rc, out


def records_of(report_dir: Path) -> dict[tuple[str, str, str], dict]:
    data = json.loads((report_dir / "compat.json").read_text())
    return {(r["suite"], r["test"], r["variant"]): r for r in data["records"]}


def check_statuses(records: dict[tuple[str, str, str], dict], corrupted: tuple[str, str] | None) -> tuple[int, list[str]]:
    """(results lost, mismatches): every expected (test, variant) must have its expected status."""
    lost, wrong = 0, []
    for (suite, test), expected in EXPECTED.items():
        for variant in VARIANTS:
            want = "error" if (suite, variant) == corrupted else expected
            record = records.get((suite, test, variant))
            got = record["status"] if record else "missing"
            if got in ("missing", "not_run"):
                lost += 1
            if got != want:
                wrong.append(f"{suite} {variant} {test}: expected {want}, got {got}" + (f" ({record['message'][:160]})" if record else ""))
            elif want in ("crashed", "timeout") and not record.get("log_tail"):
                wrong.append(f"{suite} {variant} {test}: {want} without the log tail")
    return lost, wrong


def check_evidence(records: dict[tuple[str, str, str], dict]) -> list[str]:
    """A test that crashed after its export was transformed keeps the evidence (the program before
    and after, the check's verdict) through a real segfault, Bazel's outputs.zip and the collector;
    a passing test and the untransformed base variant keep none."""
    wrong = []
    crashed = records[("drill_faults", "test_faults.py::test_l_export_then_segfault", "retrace")]
    calls = (crashed.get("evidence") or {}).get("calls") or [{}]
    call = calls[0]
    if not ("aten.relu.default" in (call.get("before") or "") and "aten.relu.default" in (call.get("after") or "") and call.get("check") == "passed"):
        wrong.append(f"the crashed retrace record lost its evidence: {json.dumps(crashed.get('evidence'))[:600]}")
    for key in (("drill_faults", "test_faults.py::test_l_export_then_segfault", "base"), ("drill_faults", "test_zz_healthy.py::test_export_add", "retrace")):
        if records[key].get("evidence") is not None:
            wrong.append(f"{key} should keep no evidence: {json.dumps(records[key]['evidence'])[:300]}")
    return wrong


def main() -> int:
    started = time.monotonic()
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or fail("run me with `bazel run //tools/matrix/drill:fault_drill`"))
    root, ws, env, cli = drill_workspace(source, "matrix-drill-", MATRIX_YAML, sorted((HERE / "suites").iterdir()))
    try:
        rc, out = run([*cli, "generate"], ws, env, root / "generate.log")
        if rc != 0:
            fail(f"generate failed:\n{out[-3000:]}")
        # 1. The real main job: bazel test //:all_cells --keep_going, then collect and write the report.
        rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / "report.log")
        if rc != 1:
            fail(f"report should exit 1 (the drill's faults are unexpected results), got {rc}:\n{out[-3000:]}")
        records = records_of(ws / "reports")
        lost, wrong = check_statuses(records, None)
        loud = [r for r in records.values() if r["test"].endswith("test_j_loud")]
        for name in ("drill_faults", "drill_healthy"):
            for variant in VARIANTS:
                zip_path = next((ws / "bazel-testlogs").glob(f"{name}/{name}_{variant}_cpu/**/outputs.zip"), None)
                if zip_path is None:
                    wrong.append(f"{name} {variant}: no outputs.zip")
                    continue
                with zipfile.ZipFile(zip_path) as z:
                    size = sum(i.file_size for i in z.infolist() if i.filename == "report.json")
                if size > 2_000_000:
                    wrong.append(f"{name} {variant}: report.json is {size} bytes: captured output is not capped")
        wrong += check_evidence(records)
        wrong += check_warm(ws)
        print(f"\n1. report: {len(records)} records, {sum(len(VARIANTS) for _ in EXPECTED)} expected, {lost} lost, {len(wrong)} wrong; loud test: {[r['status'] for r in loud]}")
        for (suite, test, variant), r in sorted(records.items()):
            if suite == "drill_faults" and variant == "base":
                print(f"   {r['status']:<8} {test}: {r['message'][:110]}")
        if lost or wrong:
            fail("\n".join(wrong))
        # 2. Truncate one cell's outputs.zip: only that cell may change.
        suite, variant = CORRUPTED
        zip_path = next((ws / "bazel-testlogs").glob(f"{suite}/{suite}_{variant}_cpu/**/outputs.zip"))
        data = zip_path.read_bytes()
        zip_path.chmod(0o644)
        zip_path.write_bytes(data[: len(data) // 2])
        rc, out = run([*cli, "report", "--no-run", "--out", "reports_corrupt"], ws, env, root / "report_corrupt.log")
        if rc != 1 or not (ws / "reports_corrupt" / "compat.html").is_file():
            fail(f"report --no-run over a truncated outputs.zip: exit {rc}, report written: {(ws / 'reports_corrupt' / 'compat.json').is_file()}\n{out[-3000:]}")
        lost2, wrong2 = check_statuses(records_of(ws / "reports_corrupt"), None)
        problem = f"problem: //{suite}:{suite}_{variant}_cpu: shard 1: {suite}/{suite}_{variant}_cpu/test.outputs/outputs.zip: not a readable zip file"
        if not any(line.startswith(problem) and line.endswith("; results read from test.xml") for line in out.splitlines()):
            wrong2.append(f"no problem line naming the truncated outputs.zip and test.xml:\n{out[-3000:]}")
        # Its test.xml truncated too: nothing of the shard is readable, its tests become error records.
        xml = zip_path.parents[1] / "test.xml"
        xml_data = xml.read_bytes()
        xml.chmod(0o644)
        xml.write_bytes(xml_data[: len(xml_data) // 2])
        rc, out = run([*cli, "report", "--no-run", "--out", "reports_corrupt_xml"], ws, env, root / "report_corrupt_xml.log")
        after = records_of(ws / "reports_corrupt_xml")
        lost3, wrong3 = check_statuses(after, CORRUPTED)
        bad = [r for r in after.values() if (r["suite"], r["variant"]) == CORRUPTED]
        if rc != 1 or not all("outputs.zip" in r["message"] and "test.xml: invalid XML" in r["message"] for r in bad):
            wrong3.append(f"exit {rc}; the corrupted cell's records do not name outputs.zip and test.xml: {[r['message'][:200] for r in bad]}")
        print(f"2. truncated outputs.zip: results read from test.xml, {lost2} lost, {len(wrong2)} wrong; test.xml truncated too: "
              f"{len(bad)} records of that cell are error, {lost3} lost elsewhere, {len(wrong3)} wrong")  # fmt: skip
        if wrong2 or wrong3:
            fail("\n".join(wrong2 + wrong3))
        # 3. A --test_filter with a typo fails the cell and names the near match.
        rc, out = run(["bazel", "test", "//drill_healthy:drill_healthy_base_cpu", "--test_filter=test_on", "--test_output=all"], ws, env, root / "filter.log")
        if rc == 0 or "test_one" not in out:
            fail(f"--test_filter=test_on (a typo of test_one) should fail the cell naming test_one; exit {rc}:\n{out[-3000:]}")
        print("3. --test_filter=test_on: the cell failed, naming test_one")
        print(f"\nfault_drill: PASS in {time.monotonic() - started:.0f}s: {len(EXPECTED) * len(VARIANTS)} results, 0 lost; "
              f"13 fault kinds (evidence kept through a segfault), 1 corrupted output, 1 mistyped filter")  # fmt: skip
        return 0
    finally:
        discard(root, ws, env)


if __name__ == "__main__":
    sys.exit(main())
