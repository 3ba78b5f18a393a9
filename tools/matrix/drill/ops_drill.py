"""The operators drill: the OpInfo suite (opinfo_tests/) under real Bazel and the real `report`, with a
broken plug-in variant that mistranslates exactly one operator; it fails unless the per-operator
table names exactly that operator and every record is exactly what it should be.

    bazel run //tools/matrix/drill:ops_drill      # ~3 min on 2 cores

In a scratch workspace (tools/scratch_workspace.py, reusing this build's @pyenv) holding opinfo_tests/
and the tools' test plug-ins (fixtures/synvariants), the OpInfo suite runs a few operators (OPINFO_OPS)
on their first samples under base, serdes and `swap` (synvariants.mistranslating:SwapReluForSigmoid:
the serdes round trip, then every aten.relu in the program calls aten.sigmoid):
1. `report`: under swap, exactly nn_functional_relu's samples fail (the differential check's
   mismatch) and compat.md's and compat.html's operator tables name exactly that operator under
   exactly that variant; every other record passes.
2. `xfail sync` writes the suite's expectations file (expectations.yaml), one entry for the operator,
   with the real error as the reason; matrix.yaml is untouched. `report` again: those samples are
   xfailed, exit 0, the other cells come from Bazel's cache.
3. An entry for an operator no variant breaks (planted by hand): strict, its samples are xpassed and
   the run fails; `xfail sync` removes it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import discard, drill_workspace, run_step

STEP_TIMEOUT_S = 900
OPS = ("abs", "add", "amax", "cumsum", "mm", "nn_functional_relu", "sin", "where")
SAMPLES = 3
# How many of its first SAMPLES samples each operator has in torch 2.13.0's op_db (elementwise unary
# operators have one float32 sample on CPU).
SAMPLE_COUNT = {op: 1 if op in ("abs", "sin") else SAMPLES for op in OPS}
BROKEN = "nn_functional_relu"
SUITE = "opinfo_tests"
MISMATCH = "tools.matrix.variants.VariantNumericsMismatch: variant 'swap' changed what the result of torch.export.export computes: output: "

MATRIX_YAML = f"""\
# The operators drill's matrix (written by tools/matrix/drill/ops_drill.py).
devices:
  cpu: {{}}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
  serdes:
    impl: tools.matrix.variants.export:Serdes
    description: torch.export.save / load.
    applies_to: [torch.export.export]
  swap:
    impl: synvariants.mistranslating:SwapReluForSigmoid
    description: A broken plug-in (relu becomes sigmoid).
    applies_to: [torch.export.export]
suites:
  {SUITE}:
    tests: ["test_slice.py"]
    data: ["opinfo_cases.py"]
    variants: [base, serdes, swap]
    devices: [cpu]
    granularity: file
    env: {{OPINFO_OPS: "{",".join(OPS)}", OPINFO_SAMPLES: "{SAMPLES}"}}
    expectations_file: expectations.yaml
    pytest_args: ["-p", "no:logging"]
    size: medium
    test_timeout_s: 120
"""


def fail(message: str) -> NoReturn:
    print(f"\nops_drill: FAIL: {message}", flush=True)
    sys.exit(1)


def run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    rc, out = run_step(argv, cwd, env, log, STEP_TIMEOUT_S)
    if "Traceback (most recent call last)" in out:
        fail(f"a traceback reached the user:\n{out[-4000:]}")
    return rc, out


def statuses_of(ws: Path) -> dict[tuple[str, str], dict]:
    report = json.loads((ws / "reports" / "compat.json").read_text())
    return {(r["test"], r["variant"]): r for r in report["records"] if r["suite"] == SUITE}


def check_first_report(records: dict[tuple[str, str], dict], md: str, html: str) -> list[str]:
    wrong = []
    tests = sorted({test for test, _ in records})
    ops = sorted({re.search(r"::test_(\w+)\[", t)[1] for t in tests})
    if ops != sorted(OPS):
        wrong.append(f"operators {ops}, expected {sorted(OPS)}")
    counts = {op: len([t for t in tests if f"::test_{op}[" in t]) for op in OPS}
    if counts != SAMPLE_COUNT:
        wrong.append(f"samples per operator {counts}, expected {SAMPLE_COUNT}")
    for (test, variant), r in sorted(records.items()):
        broken = variant == "swap" and f"::test_{BROKEN}[" in test
        if broken:  # the differential check catches it inside export, before the test's own comparison
            if r["status"] != "failed" or not r["message"].startswith(MISMATCH):
                wrong.append(f"{test} [{variant}]: {r['status']}: {r['message'][:200]}")
        elif r["status"] != "passed":
            wrong.append(f"{test} [{variant}]: {r['status']}: {r['message'][:200]}")
    section = md.split("## Operators (", 1)[-1].split("\n## ", 1)[0]
    if f"- broken under swap/cpu (1): `{BROKEN}`\n" not in section or section.count("- broken under") != 1:
        wrong.append(f"compat.md's operator section does not name exactly {BROKEN} under swap:\n{section[:1500]}")
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)[1])
    states = data["ops"]["states"]
    red = sorted((row[1], data["variants"][data["cols"][data["ops"]["cols"][k]][0]])
                 for row in data["ops"]["rows"] for k, cell in enumerate(row[2]) if cell and states[cell[2]] == "broken")  # fmt: skip
    if red != [(BROKEN, "swap")]:
        wrong.append(f"compat.html's operator table has red cells {red}, expected only ({BROKEN}, swap)")
    return wrong


def main() -> int:
    started = time.monotonic()
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or fail("run me with `bazel run //tools/matrix/drill:ops_drill`"))
    dirs = [source / SUITE, source / "tools" / "matrix" / "tests" / "fixtures" / "synvariants"]
    root, ws, env, cli = drill_workspace(source, "matrix-ops-drill-", MATRIX_YAML, dirs)
    expectations = ws / SUITE / "expectations.yaml"
    expectations.write_text("")
    try:
        rc, out = run([*cli, "generate"], ws, env, root / "generate.log")
        if rc != 0:
            fail(f"generate failed:\n{out[-3000:]}")
        # 1. The broken plug-in: the table names exactly the operator it mistranslates.
        rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / "report1.log")
        if rc != 1:
            fail(f"the first report should exit 1 (swap breaks {BROKEN}), got {rc}:\n{out[-3000:]}")
        records = statuses_of(ws)
        wrong = check_first_report(records, (ws / "reports" / "compat.md").read_text(), (ws / "reports" / "compat.html").read_text())
        if wrong:
            fail("\n".join(wrong))
        failed = sorted(t for (t, _v), r in records.items() if r["status"] == "failed")
        print(f"1. {len(records)} records; under swap exactly {BROKEN} fails ({len(failed)} samples), named alone by the table")

        # 2. xfail sync writes the expectations file, one entry for the operator; the rerun is green.
        matrix_before = (ws / "matrix.yaml").read_text()
        rc, out = run([*cli, "xfail", "sync", "--out", "reports"], ws, env, root / "sync1.log")
        written = expectations.read_text()
        entry = f"test_slice.py::test_{BROKEN}"
        if rc != 0 or (ws / "matrix.yaml").read_text() != matrix_before:
            fail(f"xfail sync exit {rc} or it edited matrix.yaml:\n{out[-2000:]}")
        if written.count("::test_") != 1 or f"{entry}:" not in written or "VariantNumericsMismatch: variant 'swap' changed what the result of torch.export.export computes" not in written:
            fail(f"expectations.yaml should hold one entry, {entry}, with the real error:\n{written}")
        rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / "report2.log")
        records = statuses_of(ws)
        xfailed = sorted(t for (t, _v), r in records.items() if r["status"] == "xfailed")
        others = {r["status"] for (t, _v), r in records.items() if t not in xfailed}
        if rc != 0 or xfailed != failed or others != {"passed"}:
            fail(f"after sync: exit {rc}, xfailed {xfailed} (expected {failed}), other statuses {others}:\n{out[-2000:]}")
        print(f"2. xfail sync wrote 1 entry ({entry}); the rerun: {len(xfailed)} xfailed, the rest passed, exit 0")

        # 3. A stale entry (an operator swap does not break) fails its target; sync removes it.
        stale = "test_slice.py::test_sin"
        expectations.write_text(written.replace(f"    {entry}:", f"    {stale}: 'planted: sin is not broken'\n    {entry}:", 1))
        rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / "report3.log")
        records = statuses_of(ws)
        xpassed = sorted(t for (t, v), r in records.items() if r["status"] == "xpassed")
        if rc != 1 or len(xpassed) != SAMPLE_COUNT["sin"] or any("::test_sin[" not in t for t in xpassed):
            fail(f"the stale entry: exit {rc}, xpassed {xpassed}:\n{out[-2000:]}")
        rc, out = run([*cli, "xfail", "sync", "--out", "reports"], ws, env, root / "sync2.log")
        if rc != 0 or expectations.read_text() != written:
            fail(f"xfail sync should remove the stale entry and keep the other:\n{expectations.read_text()}\n{out[-2000:]}")
        print(f"3. a stale entry: {len(xpassed)} samples xpassed, the run failed; xfail sync removed it")
        print(f"\nops_drill: PASS in {time.monotonic() - started:.0f}s")
        return 0
    finally:
        discard(root, ws, env)


if __name__ == "__main__":
    sys.exit(main())
