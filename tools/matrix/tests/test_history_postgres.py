"""The history store on a real PostgreSQL (127.0.0.1, started by fixtures/postgres.py as the remote
integration test starts one): the same tables and the same answers as SQLite for the same runs, hostile
names included; `report --history postgresql://...` appends; two appends at once both land; a process
killed mid-append leaves no half run; a newer schema is refused with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from tools.matrix.history import queries
from tools.matrix.history.store import StoreError, open_store
from tools.matrix.report.text import visible
from tools.matrix.tests.fixtures import postgres
from tools.matrix.tests.fixtures.history import APPENDER, HOSTILE, ROOT, rec, report, run_info, ws_fixture  # noqa: F401 (the fixture `ws`)

if postgres.initdb() is None and not os.environ.get("CI"):
    pytest.skip(f"no PostgreSQL installed; {postgres.SETUP_HINT}", allow_module_level=True)


@pytest.fixture(scope="module")
def server() -> str:
    with postgres.postgres() as url:
        yield url


@pytest.fixture
def url(server: str) -> str:
    """The server's database, emptied: each test starts with no store."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return server


PLAN = {
    1: ("c1", {"test_a.py::test_reg": "passed", "test_a.py::test_flaky": "passed", "test_a.py::test_fixed": "passed", HOSTILE: "passed"}),
    2: ("c2", {"test_a.py::test_reg": "failed", "test_a.py::test_flaky": "flaky", "test_a.py::test_fixed": "failed", HOSTILE: "passed"}),
    3: ("c2", {"test_a.py::test_reg": "failed", "test_a.py::test_flaky": "passed", "test_a.py::test_fixed": "passed", HOSTILE: "failed"}),
}


def answers(location: str) -> tuple:
    """Every query's answer over PLAN's three runs, names as shown (PostgreSQL stores NUL as its escape)."""
    with open_store(location) as store:
        for i, (commit, tests) in PLAN.items():
            store.append(run_info(i, commit), [rec(t, s, f"run{i}", message="boom\x1b" if s == "failed" else "") for t, s in tests.items()])
        shown = lambda key: tuple(visible(k) for k in key)  # noqa: E731
        since = [(shown(s.key), s.status, s.first_bad.seq, s.first_bad.git_commit, s.last_good and s.last_good.seq, s.runs_failing)
                 for s in queries.failing_since(store)]  # fmt: skip
        flaky = [(shown(f.key), f.rate, [r.seq for r in f.flaky_runs], [r.seq for r in f.flipped_runs]) for f in queries.flaky(store, 30)]
        timeline = {shown(k): [(p.run.seq, p.status, p.message) for p in points] for k, points in queries.timeline(store, "test_reg").items()}
        runs = [(r.run.seq, r.run.run_id, r.run.git_commit, r.counts) for r in queries.runs(store)]
        pruned = store.prune(2)
        return since, flaky, timeline, runs, pruned, len(queries.runs(store))


def test_the_same_runs_give_the_same_answers_on_sqlite_and_postgresql(url, tmp_path):
    on_pg, on_sqlite = answers(url), answers(str(tmp_path / "h.sqlite"))
    assert on_pg == on_sqlite
    since = on_pg[0]
    assert [(key[1], first, commit, good) for key, _s, first, commit, good, _n in since] == [
        ("test_a.py::test_reg", 2, "c2", 1), (visible(HOSTILE), 3, "c2", 2)]  # fmt: skip


def test_report_appends_to_postgresql(url, ws, tmp_path):
    for _ in range(2):
        proc, out = report(ws, tmp_path, "--history", url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "history: 2 record(s) of run " in proc.stdout and f"stored in {url}" in proc.stdout
    with open_store(url) as store:
        assert [sum(r.counts.values()) for r in queries.runs(store)] == [2, 2]


def _appender(tmp_path, n: int, url: str, run_id: str) -> subprocess.Popen:
    script = tmp_path / "append.py"
    script.write_text(APPENDER.format(root=ROOT))
    return subprocess.Popen([sys.executable, str(script), str(n), url, run_id], stdout=subprocess.PIPE, text=True)


def test_two_appends_at_once_both_land_and_a_killed_one_leaves_nothing(url, tmp_path):
    procs = [_appender(tmp_path, 20_000, url, f"both{i}") for i in range(2)]
    for proc in procs:
        assert proc.communicate(timeout=300)[0] == "appending\nstored\n" and proc.returncode == 0
    killed = _appender(tmp_path, 300_000, url, "killed")
    assert killed.stdout.readline() == "appending\n"
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 120
        while not conn.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY results%'").fetchall():
            assert killed.poll() is None and time.monotonic() < deadline, "the append ended before it was seen copying"
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        assert killed.wait() == -signal.SIGKILL
        per_run = dict(conn.execute("SELECT r.run_id, COUNT(x.test_id) FROM runs r LEFT JOIN results x ON x.run_seq = r.seq GROUP BY r.run_id"))
    assert per_run == {"both0": 20_000, "both1": 20_000}


def test_a_newer_schema_on_postgresql_is_refused_with_one_line(url):
    with open_store(url) as store:
        store.append(run_info(1), [])
        store.conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with open_store(url) as store, pytest.raises(StoreError) as e:
        store.append(run_info(2), [])
    assert str(e.value) == ("history postgresql://matrix@127.0.0.1:" + url.rsplit(":", 1)[1] + ": written by a newer torch-matrix (schema "
                            "version 99; this one reads up to 1); upgrade torch-matrix, or give --history another store")  # fmt: skip
