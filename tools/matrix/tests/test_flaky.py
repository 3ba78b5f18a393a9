"""`flaky` within one run (collect/flaky.py): Bazel retried a shard (--flaky_test_attempts), its last attempt
passed, and the test.xml Bazel kept of the earlier attempt (test_attempts/attempt_1.xml, the layout Bazel
4.2.3 writes) says which test failed. The real `report --no-run` reads testlogs laid out that way with the
runtime's own writers and a BEP that says attempt 2; `flaky` is reported and stored, never a failure."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tools.matrix import statuses
from tools.matrix.runtime import outputs
from tools.matrix.tests.fixtures.history import MATRIX
from tools.matrix.tests.fixtures.toolws import report_cli, write_workspace

ONE, TWO = "test_a.py::test_one", "test_a.py::test_two"
META = {"suite": "s", "variant": "base", "device": "cpu", "target": "//s:s_base_cpu", "shard_index": 0, "total_shards": 1,
        "test_filter": "", "torch_version": "2.13.0+cpu", "problems": []}  # fmt: skip


def entry(nodeid: str, status: str, message: str = "") -> dict:
    m = {"status": status, "duration_s": 0.1, "message": message, "error_type": "AssertionError" if message else None}
    return {"nodeid": nodeid, "outcome": "passed" if status == statuses.PASSED else "failed", "metadata": {"matrix": m}}


def lay_out(tmp_path: Path, attempt_xml: bool, cached: bool = False) -> tuple[Path, Path, Path]:
    ws = write_workspace(tmp_path / "ws", MATRIX, ("s/test_a.py",))
    shard = tmp_path / "bazel-testlogs" / "s" / "s_base_cpu"
    (shard / "test.outputs").mkdir(parents=True)
    final = [entry(ONE, statuses.PASSED), entry(TWO, statuses.PASSED)]
    outputs.write_outputs(str(shard / "test.outputs"), final, META, time.time(), 0, "s")
    (shard / "test.xml").write_bytes(outputs.junit_xml(final, META))
    (shard / "test.log").write_text("collected 2 items\n")
    if attempt_xml:
        (shard / "test_attempts").mkdir()
        first = [entry(ONE, statuses.FAILED, "AssertionError: first attempt"), entry(TWO, statuses.PASSED)]
        (shard / "test_attempts" / "attempt_1.xml").write_bytes(outputs.junit_xml(first, META))
    out = tmp_path / "reports"
    out.mkdir()
    events = [{"id": {"testResult": {"label": "//s:s_base_cpu", "run": 1, "shard": 1, "attempt": a}},
               "testResult": {"status": "FAILED" if a == 1 else "PASSED", "cachedLocally": cached}} for a in (1, 2)]  # fmt: skip
    events.append({"id": {"testSummary": {"label": "//s:s_base_cpu"}}, "testSummary": {"overallStatus": "FLAKY"}})
    (out / "bep.json").write_text("".join(json.dumps(e) + "\n" for e in events))  # written after the testlogs, as Bazel does
    return ws, shard.parent.parent, out


def statuses_of(out: Path) -> dict[str, tuple[str, int, str]]:
    return {r["test"]: (r["status"], r["attempts"], r["message"]) for r in json.loads((out / "compat.json").read_text())["records"]}


def test_the_test_that_failed_in_the_earlier_attempt_is_flaky_the_other_passed(tmp_path):
    ws, logs, out = lay_out(tmp_path, attempt_xml=True)
    proc = report_cli(ws, logs, tmp_path, "--no-run", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr  # flaky is reported, not a gate failure
    assert statuses_of(out) == {
        ONE: (statuses.FLAKY, 2, "passed on attempt 2; failed in an earlier attempt (attempt 1): AssertionError: first attempt"),
        TWO: (statuses.PASSED, 2, ""),
    }
    assert "Bazel says" not in proc.stdout  # Bazel's FLAKY agrees with records that are not unexpected
    with sqlite3.connect(out / "history.sqlite") as db:
        assert db.execute("SELECT t.test, x.status, x.attempts FROM results x JOIN tests t ON t.id = x.test_id ORDER BY t.test").fetchall() == [
            (ONE, statuses.FLAKY, 2), (TWO, statuses.PASSED, 2)]  # fmt: skip
    assert "~ flaky" in (out / "compat.md").read_text()
    # Again, now with a history to compare with: compat.md's History section lists the flaky test.
    assert report_cli(ws, logs, tmp_path, "--no-run", "--out", str(out)).returncode == 0
    md = (out / "compat.md").read_text()
    assert "### Flaky in this run (1)" in md
    assert "| s | `test_a.py::test_one` | base/cpu | flaky | passed on attempt 2; failed in an earlier attempt (attempt 1): AssertionError: first attempt |" in md


def test_without_an_earlier_test_xml_every_passing_test_of_the_retried_shard_is_flaky(tmp_path):
    ws, logs, out = lay_out(tmp_path, attempt_xml=False)
    proc = report_cli(ws, logs, tmp_path, "--no-run", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unknown = "its shard failed, then passed on attempt 2; which of its tests failed is unknown (no earlier test.xml kept)"
    assert statuses_of(out) == {ONE: (statuses.FLAKY, 2, unknown), TWO: (statuses.FLAKY, 2, unknown)}


@pytest.mark.parametrize("strict", [False, True])
def test_strict_flaky_makes_flaky_a_failure_when_asked(tmp_path, strict):
    ws, logs, out = lay_out(tmp_path, attempt_xml=True)
    proc = report_cli(ws, logs, tmp_path, "--no-run", "--out", str(out), *(["--strict-flaky"] if strict else []))
    assert proc.returncode == (1 if strict else 0), proc.stdout + proc.stderr
