"""The questions the history answers, as SQL both backends run (store.py), each returning plain rows:

- timeline: one test's results under each variant and device, run by run;
- failing_since: every record failing now (statuses.UNEXPECTED in its latest verdict), the first run of
  its streak and the last run before it that was on track, with their commits;
- flaky: over the last N runs, the tests that were `flaky` within a run or whose verdict flipped between
  runs with the same inputs (same commit, clean tree, same torch), with their flake rate;
- runs: the runs stored, newest first, with their counts.

A Bazel cache hit (`cached`) replays an earlier verdict: it is shown, never counted as fresh evidence
of a flip. Records that did not run to a verdict (statuses.DID_NOT_RUN) are in a timeline, never in a
streak or a rate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tools.matrix import statuses
from tools.matrix.history.store import Store
from tools.matrix.records import KEY_FIELDS

_RUN = "r.seq, r.run_id, r.created, r.git_commit, r.git_dirty, r.torch_version"
_TEST = ", ".join(f"t.{name}" for name in KEY_FIELDS)


def _in(values: Iterable[str]) -> str:
    """An SQL list of status literals (from statuses.py's vocabulary: plain words, no quoting needed)."""
    words = sorted(values)
    assert all(w.isidentifier() for w in words)
    return "(" + ", ".join(f"'{w}'" for w in words) + ")"


@dataclass(frozen=True)
class RunRef:
    seq: int
    run_id: str
    created: str
    git_commit: str | None
    git_dirty: bool | None
    torch_version: str | None

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> RunRef:
        seq, run_id, created, commit, dirty, torch = row
        return cls(seq, run_id, created, commit, None if dirty is None else bool(dirty), torch)

    @property
    def inputs(self) -> tuple[str, str | None] | None:
        """What the run's results depend on, as far as the history knows; None: unknown (no commit, dirty tree)."""
        return None if self.git_commit is None or self.git_dirty is not False else (self.git_commit, self.torch_version)

    @property
    def commit(self) -> str:
        return "(no commit)" if self.git_commit is None else self.git_commit[:12] + ("+dirty" if self.git_dirty else "")


@dataclass
class Point:
    """One test's result in one run."""

    run: RunRef
    status: str
    cached: bool
    attempts: int
    message: str


def timeline(store: Store, test: str, limit: int = 30) -> dict[tuple[str, ...], list[Point]]:
    """Per key (suite, test, variant, device) of the tests named `test` (a node id, or its tail after
    `::`), its last `limit` results, oldest first."""
    keys = store.query(f"SELECT id, {', '.join(KEY_FIELDS)} FROM tests WHERE test = ? OR test LIKE ? ESCAPE '!'", (test, "%::" + _like(test)))
    out: dict[tuple[str, ...], list[Point]] = {}
    for test_id, *key in sorted(keys, key=lambda row: row[1:]):
        rows = store.query(f"SELECT {_RUN}, x.status, x.cached, x.attempts, x.message FROM results x JOIN runs r ON r.seq = x.run_seq "
                           "WHERE x.test_id = ? ORDER BY x.run_seq DESC LIMIT ?", (test_id, limit))  # fmt: skip
        out[tuple(key)] = [Point(RunRef.of(row[:6]), row[6], bool(row[7]), row[8], row[9] or "") for row in reversed(rows)]
    return out


def _like(text: str) -> str:
    """`text` as a LIKE pattern matching itself only (ESCAPE '!')."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


@dataclass
class Streak:
    key: tuple[str, ...]
    status: str  # the latest verdict
    message: str
    latest: RunRef
    first_bad: RunRef
    last_good: RunRef | None  # None: never on track in the history kept
    runs_failing: int  # results in the streak (cached ones included)


def failing_since(store: Store) -> list[Streak]:
    """Every record whose latest verdict is unexpected, with the first run of its streak and the last run
    before it that was not (none: failing for as long as the history goes back)."""
    bad, verdict = _in(statuses.UNEXPECTED), _in(set(statuses.ALL) - statuses.DID_NOT_RUN)
    # Each step is a walk of one test's results along the primary key (test_id, run_seq), newest first:
    # a few rows per test, never a scan of the whole table.
    rows = store.query(f"""
        WITH latest AS MATERIALIZED (SELECT t.id AS test_id, (SELECT x.run_seq FROM results x WHERE x.test_id = t.id AND x.status IN {verdict}
                                                ORDER BY x.run_seq DESC LIMIT 1) AS seq FROM tests t),
        failing AS MATERIALIZED (SELECT l.test_id, l.seq, x.status, x.message FROM latest l
                    JOIN results x ON x.test_id = l.test_id AND x.run_seq = l.seq WHERE x.status IN {bad}),
        good AS MATERIALIZED (SELECT f.*, (SELECT x.run_seq FROM results x WHERE x.test_id = f.test_id AND x.status IN {verdict} AND x.status NOT IN {bad}
                              ORDER BY x.run_seq DESC LIMIT 1) AS good FROM failing f)
        SELECT g.test_id, g.seq, g.status, g.message, g.good,
               (SELECT x.run_seq FROM results x WHERE x.test_id = g.test_id AND x.run_seq > COALESCE(g.good, -1) AND x.status IN {bad}
                ORDER BY x.run_seq LIMIT 1),
               (SELECT COUNT(*) FROM results x WHERE x.test_id = g.test_id AND x.run_seq > COALESCE(g.good, -1) AND x.status IN {bad})
        FROM good g""")  # fmt: skip
    if not rows:
        return []
    runs = runs_by_seq(store, {seq for row in rows for seq in (row[1], row[4], row[5]) if seq is not None})
    keys = _keys(store, {row[0] for row in rows})
    out = [Streak(keys[test_id], status, message or "", runs[latest], runs[first], runs[good] if good is not None else None, count)
           for test_id, latest, status, message, good, first, count in rows]  # fmt: skip
    return sorted(out, key=lambda s: (s.first_bad.seq, s.key))


@dataclass
class Flaky:
    key: tuple[str, ...]
    verdicts: int  # fresh (not cached) verdicts in the window
    flaky_runs: list[RunRef] = field(default_factory=list)  # `flaky` within the run
    flipped_runs: list[RunRef] = field(default_factory=list)  # failed where the same inputs passed in another run

    @property
    def rate(self) -> float:
        return (len(self.flaky_runs) + len(self.flipped_runs)) / self.verdicts if self.verdicts else 0.0


def flaky(store: Store, last_runs: int = 30) -> list[Flaky]:
    """Tests flaky within a run, or flipping between runs with the same inputs, over the last `last_runs`
    runs; their flake rate is the share of their fresh verdicts that were either."""
    start = _window_start(store, last_runs)
    if start is None:
        return []
    suspect, verdict = _in(statuses.UNEXPECTED | {statuses.FLAKY}), _in(set(statuses.ALL) - statuses.DID_NOT_RUN)
    window = {row[0]: RunRef.of(row) for row in store.query(f"SELECT {_RUN} FROM runs r WHERE r.seq >= ?", (start,))}
    # The suspects from the (run_seq, status) index; then each one's results along the primary key.
    suspects = sorted(row[0] for row in store.query(f"SELECT DISTINCT test_id FROM results WHERE run_seq >= ? AND status IN {suspect}", (start,)))
    by_test: dict[int, list[tuple[str, RunRef]]] = defaultdict(list)
    for i in range(0, len(suspects), 500):
        chunk = suspects[i : i + 500]
        for test_id, status, seq in store.query(f"SELECT test_id, status, run_seq FROM results WHERE test_id IN ({', '.join('?' * len(chunk))}) "
                                                f"AND run_seq >= ? AND NOT cached AND status IN {verdict}", (*chunk, start)):  # fmt: skip
            by_test[test_id].append((status, window[seq]))
    found = []
    for test_id, results in by_test.items():
        passed_with = {run.inputs for status, run in results if status not in statuses.UNEXPECTED and run.inputs is not None}
        item = Flaky((), len(results))
        for status, run in sorted(results, key=lambda sr: sr[1].seq):
            if status == statuses.FLAKY:
                item.flaky_runs.append(run)
            elif status in statuses.UNEXPECTED and run.inputs is not None and run.inputs in passed_with:
                item.flipped_runs.append(run)
        if item.rate:
            found.append((test_id, item))
    keys = _keys(store, {test_id for test_id, _ in found})
    for test_id, item in found:
        item.key = keys[test_id]
    return sorted((item for _, item in found), key=lambda f: (-f.rate, f.key))


def _window_start(store: Store, last_runs: int) -> int | None:
    rows = store.query("SELECT MIN(seq) FROM (SELECT seq FROM runs ORDER BY seq DESC LIMIT ?) w", (max(last_runs, 1),))
    return rows[0][0] if rows else None


@dataclass
class RunRow:
    run: RunRef
    host: str
    bazel_command: str
    counts: dict[str, int]  # status -> records stored


def runs(store: Store, last: int = 20) -> list[RunRow]:
    """The last `last` runs, newest first, with the count of each status among their stored records."""
    start = _window_start(store, last)
    if start is None:
        return []
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for seq, status, n in store.query("SELECT run_seq, status, COUNT(*) FROM results WHERE run_seq >= ? GROUP BY run_seq, status", (start,)):
        counts[seq][status] = n
    rows = store.query(f"SELECT {_RUN}, r.host, r.bazel_command FROM runs r WHERE r.seq >= ? ORDER BY r.seq DESC", (start,))
    return [RunRow(RunRef.of(row[:6]), row[6] or "", row[7] or "", counts.get(row[0], {})) for row in rows]


def runs_by_seq(store: Store, seqs: set[int]) -> dict[int, RunRef]:
    out = {}
    ordered = sorted(seqs)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        for row in store.query(f"SELECT {_RUN} FROM runs r WHERE r.seq IN ({', '.join('?' * len(chunk))})", chunk):
            out[row[0]] = RunRef.of(row)
    return out


def _keys(store: Store, ids: set[int]) -> dict[int, tuple[str, ...]]:
    out = {}
    ordered = sorted(ids)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        for test_id, *key in store.query(f"SELECT t.id, {_TEST} FROM tests t WHERE t.id IN ({', '.join('?' * len(chunk))})", chunk):
            out[test_id] = tuple(key)
    return out


def latest_verdicts(store: Store) -> dict[tuple[str, ...], tuple[str, int]]:
    """Per key the store knows, its latest verdict (a status not in statuses.DID_NOT_RUN) and that run's
    seq; keys with none are left out."""
    verdict = _in(set(statuses.ALL) - statuses.DID_NOT_RUN)
    # The latest verdict's seq per test first (one walk down its primary key), then that one row.
    rows = store.query(f"""
        WITH l AS MATERIALIZED (SELECT t.id, {_TEST}, (SELECT y.run_seq FROM results y WHERE y.test_id = t.id AND y.status IN {verdict}
                                                       ORDER BY y.run_seq DESC LIMIT 1) AS seq FROM tests t)
        SELECT {", ".join(f"l.{name}" for name in KEY_FIELDS)}, x.status, x.run_seq FROM l JOIN results x ON x.test_id = l.id AND x.run_seq = l.seq""")  # fmt: skip
    n = len(KEY_FIELDS)
    return {tuple(row[:n]): (row[n], row[n + 1]) for row in rows}


def recent_statuses(store: Store, keys: set[tuple[str, ...]], last: int) -> dict[tuple[str, ...], list[str]]:
    """Per key, its statuses in the last `last` runs stored (those it has a result in), oldest first (the report's strip)."""
    start = _window_start(store, last)
    if start is None:
        return {}
    ids = {tuple(row[1:]): row[0] for row in store.query(f"SELECT t.id, {_TEST} FROM tests t")}
    key_of = {ids[k]: k for k in keys if k in ids}
    out: dict[tuple[str, ...], list[str]] = defaultdict(list)
    ordered = sorted(key_of)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        rows = store.query(f"SELECT test_id, status FROM results WHERE test_id IN ({', '.join('?' * len(chunk))}) AND run_seq >= ? "
                           "ORDER BY test_id, run_seq", (*chunk, start))  # fmt: skip
        for test_id, status in rows:
            out[key_of[test_id]].append(status)
    return dict(out)
