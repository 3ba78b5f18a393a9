"""The history store (tools/matrix/history/, docs/history.md) with real files and real processes: its tables
derive from Record and RunInfo; a run is stored whole or not at all (a real SIGKILL mid-append, a real
SQLITE_FULL); two real appends at once both land; every store fault (corrupt file, another process's
lock, a read-only file, a newer schema, an unreachable PostgreSQL) is one line, and `report` still writes
the report and exits 3; `history` answers from it with hostile names escaped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest

from tools.matrix import statuses
from tools.matrix.history import queries, schema
from tools.matrix.history.store import StoreError, open_store
from tools.matrix.records import KEY_FIELDS, Record, RunInfo
from tools.matrix.tests.fixtures.history import APPENDER, HOSTILE, ROOT, rec, report, run_info, write_results, ws_fixture  # noqa: F401 (the fixture `ws`)
from tools.matrix.tests.fixtures.toolws import run_cli


def many(run_id: str, n: int) -> list[Record]:
    return [rec(f"test_m.py::test_{k}", statuses.PASSED, run_id, duration_s=0.5, target="//s:s_base_cpu", shard=0) for k in range(n)]


def stored_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT r.run_id, t.test, x.status FROM results x JOIN runs r ON r.seq = x.run_seq "
                          "JOIN tests t ON t.id = x.test_id ORDER BY x.run_seq, t.test").fetchall()  # fmt: skip


def counts(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM runs").fetchone()[0], db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


# -- the schema is the record's ------------------------------------------------------------------------


def test_columns_are_the_record_and_run_fields(tmp_path):
    with open_store(str(tmp_path / "h.sqlite")) as store:
        store.append(run_info(1), [rec("test_a.py::test_a", statuses.PASSED, "run1")])
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        cols = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in ("runs", "tests", "results")}
        assert db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone() == (str(schema.SCHEMA_VERSION),)
    assert cols["runs"] == ["seq", *(f.name for f in fields(RunInfo))]
    assert cols["tests"] == ["id", *KEY_FIELDS]
    assert cols["results"] == ["run_seq", "test_id", *(f.name for f in fields(Record) if f.name not in KEY_FIELDS and f.name != "run_id")]


def test_every_field_round_trips_and_carried_over_records_are_not_stored(tmp_path):
    path = tmp_path / "h.sqlite"
    full = rec(HOSTILE, statuses.FAILED, "run1", duration_s=1.25, message="boom \x1b[31m\u202e", error_type="AssertionError",
               transform_failed=True, target="//s:s_base_cpu", shard=2, attempts=3, cached=True, expectation="xfail: x",
               log_tail="tail\x00", transform_check="failed: mismatch", evidence={"calls": [{"k": [1, None]}]})  # fmt: skip
    carried = rec("test_a.py::test_old", statuses.PASSED, "run0")
    with open_store(str(path)) as store:
        assert store.append(run_info(1), [full, carried]) == 1
        rows = store.query(f"SELECT {', '.join(schema.RESULT_NAMES)} FROM results")
    assert len(rows) == 1
    back = Record(*full.key, **schema.result_fields(rows[0]), run_id="run1")
    assert back == full
    assert stored_rows(path) == [("run1", HOSTILE, statuses.FAILED)]


def test_a_field_missing_from_an_older_store_is_added_and_reads_as_its_default(tmp_path):
    path = tmp_path / "h.sqlite"
    with open_store(str(path)) as store:
        store.append(run_info(1), [rec("test_a.py::test_a", statuses.FAILED, "run1", log_tail="old tail")])
    with sqlite3.connect(path) as db:  # the store as a version without Record.log_tail and RunInfo.host wrote it
        db.execute("ALTER TABLE results DROP COLUMN log_tail")
        db.execute("ALTER TABLE runs DROP COLUMN host")
    with open_store(str(path)) as store:
        store.append(run_info(2), [rec("test_a.py::test_a", statuses.FAILED, "run2", log_tail="new tail")])
        rows = store.query("SELECT run_seq, log_tail FROM results ORDER BY run_seq")
    assert [(seq, schema.from_column(dict(zip(schema.RESULT_NAMES, schema.RESULT_COLUMNS))["log_tail"], v)) for seq, v in rows] == [
        (1, ""), (2, "new tail")]  # fmt: skip


# -- a run is stored whole or not at all ------------------------------------------------------------------

def appender(tmp_path: Path, n: int, path: Path, run_id: str) -> subprocess.Popen:
    script = tmp_path / "append.py"
    script.write_text(APPENDER.format(root=ROOT))
    return subprocess.Popen([sys.executable, str(script), str(n), str(path), run_id], stdout=subprocess.PIPE, text=True)


def test_a_process_killed_mid_append_leaves_no_half_run(tmp_path):
    path = tmp_path / "h.sqlite"
    with open_store(str(path)) as store:
        store.append(run_info(1), many("run1", 10))
    proc = appender(tmp_path, 300_000, path, "killed")
    journal = path.with_name(path.name + "-journal")
    deadline = time.monotonic() + 120
    while not (journal.exists() and journal.stat().st_size > 0):  # the append's transaction is writing
        assert proc.poll() is None and time.monotonic() < deadline, "the append ended before it was seen writing"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert proc.stdout.read() == "appending\n"  # killed before it finished
    assert counts(path) == (1, 10)  # the hot journal is rolled back when the store is next opened
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with open_store(str(path)) as store:
        store.append(run_info(2), many("run2", 10))
    assert counts(path) == (2, 20)


def test_two_appends_at_once_both_land_whole(tmp_path):
    path = tmp_path / "h.sqlite"
    procs = [appender(tmp_path, 20_000, path, f"both{i}") for i in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out == "appending\nstored\n"
    with sqlite3.connect(path) as db:
        per_run = dict(db.execute("SELECT r.run_id, COUNT(*) FROM results x JOIN runs r ON r.seq = x.run_seq GROUP BY r.run_id"))
        assert db.execute("SELECT COUNT(*) FROM tests").fetchone() == (20_000,)  # the names are shared, stored once
    assert per_run == {"both0": 20_000, "both1": 20_000}


def test_a_full_database_is_one_line_and_keeps_what_was_stored(tmp_path):
    path = tmp_path / "h.sqlite"
    with open_store(str(path)) as store:
        store.append(run_info(1), many("run1", 10))
        pages = store.query("PRAGMA page_count")[0][0]
        store.conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # a real SQLITE_FULL a few pages on
        with pytest.raises(StoreError) as e:
            store.append(run_info(2), many("run2", 5_000))
    assert str(e.value).startswith(f"history {path}: the disk or the database is full (sqlite: database or disk is full)")
    assert counts(path) == (1, 10)


def test_another_process_holding_the_lock_is_one_line_after_the_timeout(tmp_path):
    path = tmp_path / "h.sqlite"
    with open_store(str(path)) as store:
        store.append(run_info(1), many("run1", 3))
    holder = subprocess.Popen([sys.executable, "-c", f"import sqlite3, sys, time\ndb = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
                               "db.execute('BEGIN EXCLUSIVE')\nprint('held', flush=True)\ntime.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with open_store(str(path), timeout_s=0.5) as store, pytest.raises(StoreError) as e:
            store.append(run_info(2), many("run2", 3))
    finally:
        holder.kill()
        holder.wait()
    assert str(e.value) == (f"history {path}: locked by another process for more than 0.5 s (sqlite: database is locked); "
                            "run the command again when that process is done")  # fmt: skip
    assert counts(path) == (1, 3)


# -- `report` writes its report whatever the store does ------------------------------------------------------


def test_report_appends_its_run_to_the_default_store(ws, tmp_path):
    proc, out = report(ws, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = json.loads((out / "compat.json").read_text())["run"]["run_id"]
    assert f"history: 2 record(s) of run {run_id} stored in {out / 'history.sqlite'}" in proc.stdout
    assert stored_rows(out / "history.sqlite") == [(run_id, "test_a.py::test_one", "passed"), (run_id, "test_a.py::test_two", "passed")]
    proc, out = report(ws, tmp_path, "--history", "none")
    assert proc.returncode == 0 and "history:" not in proc.stdout and counts(out / "history.sqlite")[0] == 1


def test_matrix_yaml_names_the_store_and_history_wins_over_it(ws, tmp_path):
    """matrix.yaml's `history` (a file relative to the workspace) is where report appends and where the
    history commands read; --history wins over it; `history: none` stores nothing."""
    matrix_yaml = ws[0] / "matrix.yaml"
    plain = matrix_yaml.read_text()
    matrix_yaml.write_text("history: team/history.sqlite\n" + plain)
    proc, out = report(ws, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = json.loads((out / "compat.json").read_text())["run"]["run_id"]
    assert f"history: 2 record(s) of run {run_id} stored in {ws[0] / 'team' / 'history.sqlite'}" in proc.stdout
    assert counts(ws[0] / "team" / "history.sqlite")[0] == 1 and not (out / "history.sqlite").exists()
    runs = run_cli(ws[0], "history", "runs")
    assert runs.returncode == 0 and run_id in runs.stdout, runs.stdout + runs.stderr
    proc, out = report(ws, tmp_path, "--history", str(tmp_path / "other.sqlite"))
    assert proc.returncode == 0 and counts(tmp_path / "other.sqlite")[0] == 1 and counts(ws[0] / "team" / "history.sqlite")[0] == 1
    matrix_yaml.write_text("history: none\n" + plain)
    proc, out = report(ws, tmp_path)
    assert proc.returncode == 0 and "history:" not in proc.stdout and counts(ws[0] / "team" / "history.sqlite")[0] == 1


def _corrupt(path: Path) -> str:
    path.write_bytes(b"this is not a database, it is a text file " * 100)
    return "not a readable history database (sqlite: file is not a database); move it away and the next `report` starts a new history there"


def _newer(path: Path) -> str:
    with open_store(str(path)) as store:
        store.append(run_info(1), [])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    return (f"written by a newer torch-matrix (schema version 99; this one reads up to {schema.SCHEMA_VERSION}); upgrade torch-matrix, "
            "or give --history another store")  # fmt: skip


def _foreign(path: Path) -> str:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    return "not a torch-matrix history (it holds tables notes but no `meta`)"


def _truncated(path: Path) -> str:
    with open_store(str(path)) as store:
        store.append(run_info(1), many("run1", 2000))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    return "not a readable history database (sqlite: database disk image is malformed); move it away and the next `report` starts a new history there"


@pytest.mark.parametrize("fault", [_corrupt, _newer, _foreign, _truncated])
def test_a_store_that_cannot_take_the_run_costs_no_report(ws, tmp_path, fault):
    store = tmp_path / "reports" / "history.sqlite"
    store.parent.mkdir()
    why = fault(store)
    before = store.read_bytes()
    proc, out = report(ws, tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"error: history {store}: {why}; the report was written, this run is not in the history"]
    assert len(json.loads((out / "compat.json").read_text())["records"]) == 2 and (out / "compat.html").exists()
    assert store.read_bytes() == before  # refused, not changed


def test_a_read_only_store_costs_no_report(ws, tmp_path):
    store = tmp_path / "reports" / "history.sqlite"
    store.parent.mkdir()
    with open_store(str(store)) as s:
        s.append(run_info(1), many("run1", 3))
    # root writes a 0444 file anyway: an immutable file is read-only for root too (ext4's chattr +i).
    immutable = os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode == 0
    if not immutable:
        store.chmod(0o444)
        if os.geteuid() == 0:
            pytest.skip("running as root on a file system without chattr +i: no file is read-only")
    try:
        proc, out = report(ws, tmp_path)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(store)], check=True)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [f"error: history {store}: cannot be written (sqlite: attempt to write a readonly database); give --history "
                                        "a location you can write, or --history none; the report was written, this run is not in the history"]  # fmt: skip
    assert (out / "compat.json").exists() and counts(store) == (1, 3)


def test_an_unreachable_postgresql_costs_no_report(ws, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, out = report(ws, tmp_path, "--history", f"postgresql://matrix:secret@127.0.0.1:{port}/history")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"error: history postgresql://matrix:***@127.0.0.1:{port}/history: cannot connect to PostgreSQL (")
    assert line.endswith("; the report was written, this run is not in the history") and "secret" not in line
    assert (out / "compat.json").exists()


def test_failing_tests_still_exit_1_when_the_store_fails_too(ws, tmp_path):
    write_results(ws[1], one=statuses.FAILED)
    store = tmp_path / "reports" / "history.sqlite"
    store.parent.mkdir()
    _corrupt(store)
    proc, _out = report(ws, tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: history {store}: not a readable history database")


def test_report_says_how_many_results_are_new_and_fixed_since_the_history(ws, tmp_path):
    lines, sections = [], []
    for one in (statuses.PASSED, statuses.FAILED, statuses.FAILED, statuses.PASSED):
        write_results(ws[1], one=one)
        proc, out = report(ws, tmp_path)
        assert proc.returncode == (1 if one == statuses.FAILED else 0), proc.stdout + proc.stderr
        lines.append([line for line in proc.stdout.splitlines() if line.startswith("history: ") and "stored in" not in line])
        md = (out / "compat.md").read_text()
        sections.append(md[md.index("## History"):].split("\n## ")[0].splitlines() if "## History" in md else [])
    store = f"`{tmp_path / 'reports' / 'history.sqlite'}`"
    assert sections[0] == []  # no history yet
    ref = [line for line in sections[1] if line.startswith("| s | `test_a.py::test_one`")]
    assert sections[1][2] == f"Against 1 earlier run(s) in {store}: **1 new unexpected** since each test's last verdict, 0 fixed. " \
        "`history failing-since` and `history timeline TEST` say more."
    assert "### New since the previous verdict (1)" in sections[1] and "### Failing since (1)" in sections[1]
    assert ref[0] == "| s | `test_a.py::test_one` | base/cpu | failed |"
    assert ref[1].startswith("| s | `test_a.py::test_one` | base/cpu | failed | this run | #1 ") and ref[1].endswith(" | ✓ ✗ |")
    still = [line for line in sections[2] if line.startswith("| s | `test_a.py::test_one`")][0]
    assert still.startswith("| s | `test_a.py::test_one` | base/cpu | failed | #2 ") and still.endswith(" | ✓ ✗ ✗ |")  # since run 2
    assert "### Fixed since the previous verdict (1)" in sections[3]
    assert lines == [
        [],  # a new store: nothing to compare with
        ["history: 1 new unexpected result(s) since each test's last verdict, 0 fixed: test_a.py::test_one [base/cpu]; "
         "`history failing-since` says since when"],
        ["history: 0 new unexpected result(s) since each test's last verdict, 0 fixed"],
        ["history: 0 new unexpected result(s) since each test's last verdict, 1 fixed; `history failing-since` says since when"],
    ]  # fmt: skip


# -- `history` answers -------------------------------------------------------------------------------------


@pytest.fixture
def three_runs(tmp_path) -> Path:
    """Run 1: all pass. Run 2 (commit c2): a regression, a flaky test, a failure. Run 3 (c2): the regression
    stays, the failure is fixed, the other test flips with the same inputs as run 2."""
    path = tmp_path / "reports" / "history.sqlite"
    path.parent.mkdir()
    plan = {
        1: ("c1", {"test_a.py::test_reg": "passed", "test_a.py::test_flaky": "passed", "test_a.py::test_fixed": "passed", HOSTILE: "passed"}),
        2: ("c2", {"test_a.py::test_reg": "failed", "test_a.py::test_flaky": "flaky", "test_a.py::test_fixed": "failed", HOSTILE: "passed"}),
        3: ("c2", {"test_a.py::test_reg": "failed", "test_a.py::test_flaky": "passed", "test_a.py::test_fixed": "passed", HOSTILE: "failed"}),
    }
    with open_store(str(path)) as store:
        for i, (commit, tests) in plan.items():
            store.append(run_info(i, commit), [rec(t, s, f"run{i}", message="boom\x1b[2J" if s == "failed" else "") for t, s in tests.items()])
    return path


def history(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    return run_cli(tmp_path, "history", *argv, "--out", str(tmp_path / "reports"))


def test_history_failing_since_names_the_first_bad_run_and_the_last_good_one(three_runs, tmp_path):
    proc = history(tmp_path, "failing-since")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "2 failing record(s)"
    reg = next(line for line in lines if "test_reg" in line).split()
    assert reg == ["s", "test_a.py::test_reg", "[base/cpu]", "failed", "#2", "2026-12-02T00:00:00+00:00", "c2", "#1", "2026-12-01T00:00:00+00:00", "c1", "2"]
    hostile = next(line for line in lines if "test_h.py" in line)
    assert "test_h.py::test_x[\\u001b[2J\\u202e'; DROP TABLE results; --\\u0000]" in hostile and "\x1b" not in proc.stdout
    assert "#3" in hostile and "#2 2026-12-02T00:00:00+00:00 c2" in hostile


def test_history_flaky_gives_rates_within_and_across_runs(three_runs, tmp_path):
    found = {f.key[1]: (f.rate, [r.seq for r in f.flaky_runs], [r.seq for r in f.flipped_runs]) for f in _flaky(three_runs)}
    # test_flaky: flaky in run 2 (1 of 3 verdicts); the hostile test failed in run 3 at c2 and passed at c2 in run 2.
    assert found == {"test_a.py::test_flaky": (1 / 3, [2], []), HOSTILE: (1 / 3, [], [3]), "test_a.py::test_fixed": (1 / 3, [], [2])}
    proc = history(tmp_path, "flaky", "--last", "2")
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "3 flaky test(s) in the last 2 run(s)"
    assert [line.split()[1:5] for line in proc.stdout.splitlines() if "test_flaky" in line] == [["test_a.py::test_flaky", "[base/cpu]", "50%", "of"]]


def _flaky(path: Path) -> list[queries.Flaky]:
    with open_store(str(path), create=False) as store:
        return queries.flaky(store, 30)


def test_history_timeline_runs_and_prune(three_runs, tmp_path):
    proc = history(tmp_path, "timeline", "test_reg")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "s test_a.py::test_reg [base/cpu]: ✓ ✗ ✗"
    assert [line.split()[:4] for line in proc.stdout.splitlines()[1:]] == [
        ["#1", "2026-12-01T00:00:00+00:00", "c1", "passed"], ["#2", "2026-12-02T00:00:00+00:00", "c2", "failed"],
        ["#3", "2026-12-03T00:00:00+00:00", "c2", "failed"]]  # fmt: skip
    assert "boom\\u001b[2J" in proc.stdout and "\x1b" not in proc.stdout
    runs = history(tmp_path, "runs").stdout.splitlines()
    assert [line.split()[:6] for line in runs[1:]] == [["#3", "run3", "2026-12-03T00:00:00+00:00", "c2", "2.13.0", "4"],
                                                        ["#2", "run2", "2026-12-02T00:00:00+00:00", "c2", "2.13.0", "4"],
                                                        ["#1", "run1", "2026-12-01T00:00:00+00:00", "c1", "2.13.0", "4"]]  # fmt: skip
    proc = history(tmp_path, "prune", "--keep", "2")
    assert (proc.returncode, proc.stdout) == (0, "pruned 1 run(s); the newest 2 kept\n")
    assert counts(three_runs) == (2, 8)
    proc = history(tmp_path, "timeline", "test_nobody")
    assert (proc.returncode, proc.stderr) == (2, "error: history: no test named 'test_nobody' (a node id, or its name after `::`) in the store\n")


def test_history_on_a_missing_or_newer_store_is_one_line(tmp_path):
    proc = history(tmp_path, "runs")
    store = tmp_path / "reports" / "history.sqlite"
    assert (proc.returncode, proc.stderr) == (2, f"error: history {store}: no such store yet; `report` creates it (or give --history)\n")
    store.parent.mkdir()
    why = _newer(store)
    proc = history(tmp_path, "failing-since")
    assert (proc.returncode, proc.stderr) == (2, f"error: history {store}: {why}\n")
