"""`xfail import`: the expected-failure markers a suite already carries (PyTorch's
`@expectedFailureCppSerDes` and friends, a pytest mark, `@unittest.expectedFailure`) become matrix.yaml
xfails of one variant, written through the same validated, comment-preserving writer as `xfail sync`.

The tests are found by `pytest --collect-only` in a child process with the project's Python and
the marker_probe plugin, not by parsing the files with `ast`: collection sees what the runtime will
run, with the same node ids (class-level decorators, inherited tests, generated and parametrized
tests), at the cost of importing the suite (torch) in the child; the CLI itself never imports torch.

An entry for a test that fails under `base` too (in the last report, when there is one) is imported
as marked, with a warning: its failure is the suite's, not the variant's, and the variant's xfail
would hide it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.matrix import last_report, marker_probe, statuses
from tools.matrix.config import Matrix, Suite, did_you_mean
from tools.matrix.errors import ReportError, UserError
from tools.matrix.records import Record
from tools.matrix.report.signatures import signature
from tools.matrix.runtime.selection import expectation_for

BASE = "base"  # the variant that runs the suite untransformed
TOOLS_ROOT = Path(__file__).absolute().parents[2]  # holds the tools package (the workspace, or Bazel's runfiles)
COLLECT_TIMEOUT_S = 900  # export_tests collects in ~7 s; only a file hanging at import gets near this


@dataclass(frozen=True)
class Probe:
    collected: list[str]  # every node id pytest collected
    found: dict[str, str]  # node id -> "@decorator (file:line)"
    seen: list[str]  # marker-like names seen on the tests, for a did-you-mean


def suite_and_variant(matrix: Matrix, suite_name: str, variant: str) -> Suite:
    suites = {s.name: s for s in matrix.suites}
    if suite_name not in suites:
        raise UserError(f"--suite {suite_name}: no such suite in {matrix.path}; {did_you_mean(suite_name, list(suites))}")
    suite = suites[suite_name]
    if variant not in suite.variants:
        raise UserError(f"--variant {variant}: suite {suite_name!r} does not run it; {did_you_mean(variant, suite.variants)}")
    return suite


def probe(workspace: Path, suite: Suite, marker: str) -> Probe:
    """Collect the suite (no test runs) and find the tests carrying `marker`."""
    with tempfile.TemporaryDirectory(prefix="matrix-import-") as tmp:
        out = Path(tmp) / "markers.json"
        env = {
            **os.environ,
            marker_probe.OUT_ENV: str(out),
            marker_probe.MARKER_ENV: marker,
            "PYTHONPATH": os.pathsep.join(p for p in (str(workspace), str(TOOLS_ROOT), os.environ.get("PYTHONPATH", "")) if p),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        command = [
            sys.executable, "-m", "pytest", "--collect-only", "-q",
            "-p", "tools.matrix.marker_probe", "-p", "no:cacheprovider",
            f"--rootdir={suite.directory}",
            *suite.pytest_args,  # collected as the runtime collects it (import mode, plugins, warnings)
            *suite.test_files,
        ]  # fmt: skip
        try:
            done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=COLLECT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"collecting suite {suite.name!r} took over {COLLECT_TIMEOUT_S} s (a test file hangs at import?); nothing written") from None
        if not out.is_file():
            raise UserError(f"collecting suite {suite.name!r} failed ({_ended(done.returncode)}); nothing written:\n{_excerpt(done)}")
        data = _marker_list(out, suite.name)
    if data["errors"]:
        problems = "\n".join(f"  {e['nodeid']}: {e['message']}" for e in data["errors"])
        raise UserError(f"suite {suite.name!r} has files that fail to collect, so their markers are unknown; nothing written:\n{problems}")
    return Probe(data["collected"], data["found"], data["seen"])


def _marker_list(path: Path, suite: str) -> dict[str, Any]:
    """What marker_probe wrote, checked: a test module can still reach the file (its path is in the
    environment); what is not the probe's shape is refused, never used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        data, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "not the shape marker_probe writes"

    def strings(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    found, errors = (data.get("found"), data.get("errors")) if isinstance(data, dict) else (None, None)
    if not (
        isinstance(data, dict)
        and strings(data.get("collected"))
        and strings(data.get("seen"))
        and isinstance(found, dict)
        and strings([*found.keys(), *found.values()])
        and isinstance(errors, list)
        and all(isinstance(e, dict) and strings([e.get("nodeid"), e.get("message")]) for e in errors)
    ):
        raise UserError(
            f"collecting suite {suite!r} wrote an unreadable marker list ({why[:200]}): did a test module change json, open or "
            "that file?; nothing written"
        )
    return data


def _ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"pytest died of {signal.Signals(-returncode).name}"
        except ValueError:
            return f"pytest died of signal {-returncode}"
    return f"pytest exit status {returncode}"


def _excerpt(done: subprocess.CompletedProcess) -> str:
    """What says why: a crash's report starts with the fault and the innermost frame (faulthandler),
    anything else ends with its error."""
    lines = (done.stderr if done.returncode < 0 else done.stdout + done.stderr).strip().splitlines()
    return "\n".join(lines[:8] if done.returncode < 0 else lines[-15:])


def plan(matrix: Matrix, suite: str, variant: str, found: Probe) -> tuple[list[tuple[str, str, None, str, str]], list[str]]:
    """(suite, variant, None, entry, reason) to add, and the tests already listed (xfail or skip).
    Parametrizations of one function that all carry the marker become one entry (their base id)."""
    cells = [c for c in matrix.cells() if (c.suite.name, c.variant.name) == (suite, variant)]
    listed = sorted(t for t in found.found if any(expectation_for(t, dict(c.expectations.xfail + c.expectations.skip)) for c in cells))
    entries: dict[str, str] = {}
    for test, where in sorted(found.found.items()):
        if test in listed:
            continue
        base = test.split("[", 1)[0]
        siblings = [t for t in found.collected if t.split("[", 1)[0] == base]
        whole = all(t in found.found and t not in listed for t in siblings)
        entries.setdefault(base if whole else test, f"imported: {where}")
    return [(suite, variant, None, entry, reason) for entry, reason in entries.items()], listed


def base_failures(report: Path, suite: str, variant: str, entries: list[str]) -> list[str]:
    """Warnings for the `entries` (node ids, or a parametrized function's base id) of `variant`
    whose test fails under base in the last report at `report`, unless the variant's own record
    there fails differently (then the variant has a failure of its own). One line each; a note when
    there is no report to tell, a warning when it cannot be read."""
    if variant == BASE:
        return []
    unknown = "could not check whether the imported tests fail under base too"
    if not report.is_file():
        return [f"note: no last report ({report}): {unknown}"]
    try:
        records = last_report.load(report)[1]
    except ReportError as e:
        return [f"warning: {e}; {unknown}"]
    mine = [r for r in records if r.suite == suite and r.variant in (BASE, variant)]
    warnings = []
    for entry in entries:
        for base in [r for r in mine if r.variant == BASE and r.status in statuses.FAILURE_MESSAGE and _covers(entry, r.test)]:
            own = next((r for r in mine if r.variant == variant and r.key[1:] == (base.test, variant, base.device)), None)
            if own is not None and own.status in statuses.FAILURE_MESSAGE and signature(own) != signature(base):
                continue
            warnings.append(
                f"warning: {entry}: fails under base too in {report} ({_failure(base)}): that failure is the suite's, "
                f"not {variant}'s, and this xfail would hide it; imported as marked"
            )
            break
    return warnings


def _covers(entry: str, test: str) -> bool:
    return test == entry or test.startswith(entry + "[")


def _failure(record: Record) -> str:
    message = record.message.splitlines()[0] if record.message else ""
    return f"{record.test} on {record.device}: {record.status}" + (f": {message[:160]}" if message else "")
