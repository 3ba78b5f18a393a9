"""The input drill: hostile file names and suite configurations through real Bazel and the real
`report`: each either works end to end with exact records, or `generate` refuses it up front with
matrix.yaml:LINE:COL (docs/reliability.md).

    bazel run //tools/matrix/drill:input_drill      # ~2 min on 2 cores; `make test` runs it

In a scratch workspace (tools/scratch_workspace.py, this build's @pyenv, its own output base), with
suites written here so that no odd name is committed to the repository:
1. `generate` refuses, each with its own located line and nothing written, a suite directory holding a
   stray file whose name Bazel 4.2.3 cannot take (a space, a backslash, a tab, a bidi control, a
   symlink loop) and test files that cannot name a target (a quote, a comma, non-ASCII).
2. `report` runs `bazel test //:all_cells --keep_going` over suites whose files have every other printable
   ASCII character (quotes, $, $(x), ]{}, #&;<>|~!@^+=%), at `granularity: file` and `cell`,
   with data files named in UTF-8 and xfail reasons holding $, quotes and UTF-8: every test has the
   status plain pytest gives it (a cell runs exactly its own files: `test_a"b".py` is not `test_ab.py`).
3. A suite whose pytest.ini addopts and conftest.py would hide its failing test, and a run with
   `--test_env=PYTEST_ADDOPTS=...`: the failing test is still `failed`, the deselected one `skipped`.
4. `--test_filter` naming a test of `test_a"b".py` runs exactly that test; a GPU cell stays skipped
   (incompatible without --config=gpu) even under a user's own --test_tag_filters.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NoReturn

from tools.scratch_workspace import discard, nested_env, project_pyenv, scratch_workspace

FAILING = "def test_fails():\n    assert 1 == 2, 'the failure that must not vanish'\n\n\ndef test_passes():\n    pass\n"
PASSING = "def test_passes():\n    pass\n"
# Test files whose names hold every printable ASCII character Bazel takes in a target name, with what
# plain pytest says of each test. `test_a"b".py` fails; `test_ab.py`, which a shell-split argument
# would have turned it into, passes.
ODD_TESTS = {
    'test_a"b".py': FAILING,
    "test_ab.py": PASSING,
    "test_$(x).py": "def test_known_bug():\n    raise ValueError('known')\n\n\ndef test_passes():\n    pass\n",
    "test_$HOME.py": PASSING,
    "test_]{2}.py": PASSING,
    "test_(1)#&;<>|~!@^+=%.py": PASSING,
    "test_*?.py": PASSING,
    "test_reads_data.py": (
        "from pathlib import Path\n\n\ndef test_reads_utf8_named_data():\n"
        "    here = Path(__file__).parent\n"
        "    assert (here / 'données_é.json').read_text() == '{\"ok\": 1}'\n"
        "    assert (here / \"it's.json\").read_text() == '[]'\n"
    ),
}
ODD_TESTS["test_uses_helper.py"] = "import helper_beside\n\n\ndef test_imports_the_module_beside_it():\n    assert helper_beside.VALUE == 42\n"
# A helper module beside the tests, imported by name (as PyTorch's test files import theirs).
ODD_DATA = {"données_é.json": '{"ok": 1}', "it's.json": "[]", "helper_beside.py": "VALUE = 42\n"}
REASON = 'costs $5 and $(HOME): "quoted" café'
EXPECTED_ODD = {
    'test_a"b".py::test_fails': "failed",
    'test_a"b".py::test_passes': "passed",
    "test_ab.py::test_passes": "passed",
    "test_$(x).py::test_known_bug": "xfailed",
    "test_$(x).py::test_passes": "passed",
    "test_$HOME.py::test_passes": "passed",
    "test_]{2}.py::test_passes": "passed",
    "test_(1)#&;<>|~!@^+=%.py::test_passes": "passed",
    "test_*?.py::test_passes": "passed",
    "test_reads_data.py::test_reads_utf8_named_data": "passed",
    "test_uses_helper.py::test_imports_the_module_beside_it": "passed",
}
CONFIG_TEST = FAILING + "\n\ndef test_deselected_by_conftest():\n    assert False, 'hidden by the conftest'\n"
CONFIG_FILES = {
    "test_cfg.py": CONFIG_TEST,
    "pytest.ini": "[pytest]\naddopts = -k passes -p no:skipping --runxfail\n",
    "conftest.py": (
        "def pytest_collection_modifyitems(config, items):\n"
        "    gone = [i for i in items if i.name == 'test_deselected_by_conftest']\n"
        "    items[:] = [i for i in items if i not in gone]\n"
        "    config.hook.pytest_deselected(items=gone)\n"
    ),
}
EXPECTED_CONFIG = {"test_cfg.py::test_fails": "failed", "test_cfg.py::test_passes": "passed", "test_cfg.py::test_deselected_by_conftest": "skipped"}

MATRIX_YAML = f"""\
# The input drill's matrix (written by tools/matrix/drill/input_drill.py).
devices:
  cpu: {{}}
  cuda:
    requires_gpu: true
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: The API untouched.
suites:
  odd_file:
    variants: [base]
    devices: [cpu]
    data: ["*.json", helper_beside.py]
    granularity: file
  odd_cell:
    variants: [base]
    devices: [cpu]
    data: ["*.json", helper_beside.py]
  config_suite:
    variants: [base]
    devices: [cpu, cuda]
    data: [pytest.ini, conftest.py]
expectations:
  odd_file:
    base:
      xfail:
        'test_$(x).py::test_known_bug': {json.dumps(REASON)}
  odd_cell:
    base:
      xfail:
        'test_$(x).py::test_known_bug': {json.dumps(REASON)}
"""
# A stray path in a suite's directory that Bazel cannot take, and the line `generate` must print.
REFUSED = {
    "notes draft.txt": "'odd_cell/notes draft.txt' has a space, which Bazel's runfiles refuse",
    "data\\x.bin": "'odd_cell/data\\\\x.bin' has '\\\\', which Bazel refuses in a label",
    "a\tb.json": "'odd_cell/a\\tb.json' has the non-printable character '\\t'",
    "readme\u202e.txt": "'odd_cell/readme\\u202e.txt' has the non-printable character '\\u202e'",
    "test_it's.py": "test file \"test_it's.py\" would name a target (granularity: file) that has \"'\"",
    "test_a,b.py": "test file 'test_a,b.py' has ',', which separates --test_filter patterns",
    "test_[1].py": "test file 'test_[1].py' has '[', which pytest refuses in the path of a test file",
    "test_café.py": "test file 'test_café.py' would name a target (granularity: file) that has the non-ASCII character 'é'",
    "loop": "directory 'odd_cell' cannot be globbed by Bazel: the symlink 'loop' leads back to '.' above it",
}


def fail(message: str) -> NoReturn:
    print(f"\ninput_drill: FAIL: {message}", flush=True)
    sys.exit(1)


def run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    print(f"$ {' '.join(argv)}", flush=True)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    log.write_text(proc.stdout)
    print(f"  exit {proc.returncode} in {time.monotonic() - started:.0f}s (log: {log})", flush=True)
    if "Traceback (most recent call last)" in proc.stdout and "bazel" not in argv[0]:
        fail(f"a traceback reached the user:\n{proc.stdout[-4000:]}")
    return proc.returncode, proc.stdout


def write_suites(ws: Path) -> None:
    for suite in ("odd_file", "odd_cell"):
        for name, text in {**ODD_TESTS, **ODD_DATA}.items():
            (ws / suite).mkdir(exist_ok=True)
            (ws / suite / name).write_text(text, encoding="utf-8")
        # A subpackage's files are not the suite's: Bazel's glob stops at its BUILD file.
        (ws / suite / "vendored").mkdir()
        (ws / suite / "vendored" / "BUILD.bazel").write_text("")
        (ws / suite / "vendored" / "not ours.txt").write_text("x")
    (ws / "config_suite").mkdir()
    for name, text in CONFIG_FILES.items():
        (ws / "config_suite" / name).write_text(text)


def statuses_of(report_dir: Path, suite: str) -> dict[str, str]:
    data = json.loads((report_dir / "compat.json").read_text(encoding="utf-8"))
    return {r["test"]: r["status"] for r in data["records"] if r["suite"] == suite}


def check_refusals(ws: Path, cli: list[str], env: dict[str, str], logs: Path) -> int:
    """Step 1: each stray path alone makes `generate` refuse with its line; nothing is written."""
    suite = ws / "odd_cell"
    for i, (name, line) in enumerate(REFUSED.items()):
        path = suite / name
        if name == "loop":
            path.symlink_to(".")
        else:
            path.write_text(PASSING)
        before = (suite / "BUILD.bazel").read_text()
        rc, out = run([*cli, "generate"], ws, env, logs / f"refuse-{i}.log")
        path.unlink()
        if rc != 2 or line not in out or (suite / "BUILD.bazel").read_text() != before:
            fail(f"generate with {name!r} in odd_cell/: exit {rc}, expected 2 and a line containing {line!r}:\n{out[-2000:]}")
    return len(REFUSED)


def main() -> int:
    started = time.monotonic()
    source = Path(os.environ.get("BUILD_WORKSPACE_DIRECTORY") or fail("run me with `bazel run //tools/matrix/drill:input_drill`"))
    env = nested_env()
    pyenv = project_pyenv()
    python = str(pyenv / "venv" / "bin" / "python3")
    root = Path(tempfile.mkdtemp(prefix="matrix-input-drill-"))
    own_output_base = f"startup --output_base={root / 'ob'}\nstartup --max_idle_secs=300\n"
    ws = scratch_workspace(source, root / "ws", pyenv, MATRIX_YAML, (), own_output_base)
    cli = [python, str(ws / "tools" / "matrix" / "cli.py"), "--workspace", str(ws)]
    try:
        write_suites(ws)
        rc, out = run([*cli, "generate"], ws, env, root / "generate.log")
        if rc != 0:
            fail(f"generate refused names Bazel takes:\n{out[-3000:]}")
        refused = check_refusals(ws, cli, env, root)
        print(f"1. generate refused {refused} hostile paths, each with its own line, writing nothing")
        rc, out = run([*cli, "report", "--out", "reports"], ws, env, root / "report.log")
        if rc != 1:
            fail(f"report should exit 1 (each suite has a failing test), got {rc}:\n{out[-3000:]}")
        wrong = []
        for suite in ("odd_file", "odd_cell"):
            got = statuses_of(ws / "reports", suite)
            if got != EXPECTED_ODD:
                wrong.append(f"{suite}: {json.dumps(got, ensure_ascii=False, indent=1)}")
        records = json.loads((ws / "reports" / "compat.json").read_text(encoding="utf-8"))["records"]
        reasons = {r["expectation"] for r in records if r["status"] == "xfailed"}
        if reasons != {"test_$(x).py::test_known_bug"}:
            wrong.append(f"the xfail entry with $ in its node id did not apply: {reasons}")
        data = json.loads((ws / "reports" / "compat.json").read_text(encoding="utf-8"))
        got = {r["test"]: r["status"] for r in data["records"] if r["suite"] == "config_suite" and r["device"] == "cpu"}
        cuda = {r["status"] for r in data["records"] if r["device"] == "cuda"}
        if cuda != {"not_run"}:
            wrong.append(f"the GPU cell ran on a machine without --config=gpu: {cuda}")
        if got != EXPECTED_CONFIG:
            wrong.append(f"config_suite: {got}")
        if wrong:
            fail("records differ from plain pytest:\n" + "\n".join(wrong))
        print(f"2. report: {len(EXPECTED_ODD)} tests x 2 suites with odd names, exact statuses; 3. config_suite: addopts ignored, deselection visible")
        # A user's own tag filter does not bring the GPU cell back: it is incompatible without --config=gpu.
        rc, out = run(["bazel", "test", "//...", "--test_tag_filters=suite:config_suite"], ws, env, root / "tag_filter.log")
        if "//config_suite:config_suite_base_cuda" not in out or "SKIPPED" not in out.split("//config_suite:config_suite_base_cuda", 1)[1].split("\n", 1)[0]:
            fail(f"--test_tag_filters=suite:config_suite ran or dropped the GPU cell instead of skipping it:\n{out[-3000:]}")
        target = '//odd_file:odd_file_base_cpu/test_a"b"'
        rc, out = run(["bazel", "test", target, '--test_filter=test_a"b".py::test_fails', "--test_env=PYTEST_ADDOPTS=-k passes"], ws, env, root / "filter.log")
        xml = next((ws / "bazel-testlogs" / "odd_file" / "odd_file_base_cpu").glob('test_a"b"/test.xml'))
        names = sorted(case.get("name", "") for case in ET.parse(xml).getroot().iter("testcase"))
        if rc != 3 or names != ["test_fails"] or "$PYTEST_ADDOPTS='-k passes' is ignored" not in out:
            fail(f"--test_filter on {target}: exit {rc} (expected 3), tests {names} (expected only test_fails):\n{out[-3000:]}")
        print(f"4. {target} --test_filter=test_a\"b\".py::test_fails ran exactly that test, PYTEST_ADDOPTS ignored")
        print(f"\ninput_drill: PASS in {time.monotonic() - started:.0f}s: {refused} refused up front, {2 * len(EXPECTED_ODD) + len(EXPECTED_CONFIG)} exact records")
        return 0
    finally:
        discard(root, ws, env)


if __name__ == "__main__":
    sys.exit(main())
