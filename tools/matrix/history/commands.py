"""`history`: the questions of queries.py as commands, printed as plain aligned text. Every name, message
and command from the store goes through report.text.visible (and line breaks become spaces): a hostile
test name prints as its escapes, never as a terminal control sequence."""

from __future__ import annotations

import argparse
import re

from tools.matrix import statuses
from tools.matrix.history import queries
from tools.matrix.history.store import StoreError, open_store
from tools.matrix.report.markdown import SYMBOLS
from tools.matrix.report.text import visible

_BREAKS = re.compile(r"[\t\n\r]")
MAX_MESSAGE = 100


def _clean(text: str | None, width: int | None = None) -> str:
    text = _BREAKS.sub(" ", visible(text or ""))
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _run(ref: queries.RunRef | None) -> str:
    if ref is None:
        return "-"
    return f"#{ref.seq} {_clean(ref.created)} {_clean(ref.commit)}"


def _key(key: tuple[str, ...]) -> str:
    suite, test, variant, device = key
    return f"{_clean(suite)} {_clean(test)} [{_clean(variant)}/{_clean(device)}]"


def _table(rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]


def strip(points: list[queries.Point]) -> str:
    """A test's results as one symbol per run, oldest first (compat.md's symbols; `c` after a cache hit)."""
    return " ".join(SYMBOLS[p.status] + ("c" if p.cached else "") for p in points)


def cmd_timeline(store: queries.Store, args: argparse.Namespace) -> list[str]:
    found = queries.timeline(store, args.test, args.last)
    if not found:
        raise StoreError(f"history: no test named {visible(args.test)!r} (a node id, or its name after `::`) in the store")
    lines = []
    for key, points in found.items():
        lines += [f"{_key(key)}: {strip(points)}"]
        rows = [[f"  #{p.run.seq}", _clean(p.run.created), _clean(p.run.commit), p.status + (" (cached)" if p.cached else ""),
                 f"attempts {p.attempts}" if p.attempts > 1 else "", _clean(p.message, MAX_MESSAGE)] for p in points]  # fmt: skip
        lines += _table(rows)
    return lines


def cmd_failing_since(store: queries.Store, args: argparse.Namespace) -> list[str]:
    streaks = queries.failing_since(store)
    if not streaks:
        return ["nothing is failing in the latest verdict of any stored test"]
    rows = [["test", "status", "failing since", "last on track", "runs"]]
    rows += [[_key(s.key), s.status, _run(s.first_bad), _run(s.last_good) if s.last_good else "never (in the history kept)", str(s.runs_failing)]
             for s in streaks]  # fmt: skip
    return [*_table(rows), f"{len(streaks)} failing record(s)"]


def cmd_flaky(store: queries.Store, args: argparse.Namespace) -> list[str]:
    found = queries.flaky(store, args.last)
    if not found:
        return [f"no flaky test in the last {args.last} run(s)"]
    rows = [["test", "rate", "flaky in run", "failed where the same inputs passed"]]
    rows += [[_key(f.key), f"{f.rate:.0%} of {f.verdicts}", " ".join(f"#{r.seq}" for r in f.flaky_runs) or "-",
              " ".join(f"#{r.seq}" for r in f.flipped_runs) or "-"] for f in found]  # fmt: skip
    return [*_table(rows), f"{len(found)} flaky test(s) in the last {args.last} run(s)"]


def cmd_runs(store: queries.Store, args: argparse.Namespace) -> list[str]:
    rows = [["run", "created", "commit", "torch", "records", "unexpected", "flaky", "host", "command"]]
    for r in queries.runs(store, args.last):
        total = sum(r.counts.values())
        bad = sum(n for s, n in r.counts.items() if s in statuses.UNEXPECTED)
        rows.append([f"#{r.run.seq} {_clean(r.run.run_id)}", _clean(r.run.created), _clean(r.run.commit), _clean(r.run.torch_version or "?"),
                     str(total), str(bad), str(r.counts.get(statuses.FLAKY, 0)), _clean(r.host), _clean(r.bazel_command, 80)])  # fmt: skip
    return _table(rows) if len(rows) > 1 else ["no run stored yet"]


def cmd_prune(store: queries.Store, args: argparse.Namespace) -> list[str]:
    if args.keep < 1:
        raise StoreError("history prune: --keep must be at least 1")
    removed = store.prune(args.keep)
    return [f"pruned {removed} run(s); the newest {args.keep} kept"]


COMMANDS = {"timeline": cmd_timeline, "failing-since": cmd_failing_since, "flaky": cmd_flaky, "runs": cmd_runs, "prune": cmd_prune}


def run(location: str, args: argparse.Namespace) -> int:
    with open_store(location, create=False) as store:
        if args.history_command != "prune":
            store.check_readable()
        for line in COMMANDS[args.history_command](store, args):
            print(line)
    return 0


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    h = sub.add_parser("history", parents=[common], help="ask the history store: timeline, failing-since, flaky, runs, prune (docs/history.md)")
    hsub = h.add_subparsers(dest="history_command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = hsub.add_parser(name, parents=[common], help=help)
        p.add_argument("--out", default="reports", help="report directory, where the default store is (default: reports/)")
        p.add_argument("--history", help="the store: an SQLite file or a postgresql:// URL (default: history.sqlite in --out)")
        return p

    timeline = add("timeline", "one test's results under each variant and device, run by run")
    timeline.add_argument("test", help="a node id, or the test's name after `::`")
    timeline.add_argument("--last", type=int, default=30, help="how many runs back (default 30)")
    add("failing-since", "every record failing now: the first run of its streak and the last run on track, with their commits")
    add("flaky", "tests flaky within a run or flipping between runs with the same inputs, with their flake rate").add_argument(
        "--last", type=int, default=30, help="over the last N runs (default 30)")  # fmt: skip
    add("runs", "the runs stored, newest first").add_argument("--last", type=int, default=20, help="how many (default 20)")
    add("prune", "delete all but the newest runs").add_argument("--keep", type=int, required=True, help="how many runs to keep")
