"""write_reports: all three report files, rendering compat.json in a forked child where that is safe."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from tools.matrix.records import Record, RunInfo
from tools.matrix.report.baseline import Comparison, compare
from tools.matrix.report.history_view import HistoryView
from tools.matrix.report.html_report import render_html
from tools.matrix.report.json_report import load_json, render_json, write_text
from tools.matrix.report.markdown import render_markdown
from tools.matrix.report.summary import prepare

COMPAT_JSON, COMPAT_MD, COMPAT_HTML = FILES = ("compat.json", "compat.md", "compat.html")
# Below this many records forking costs more than it saves.
PARALLEL_MIN_RECORDS = 20_000
Baseline = Sequence[Record] | Comparison | str | Path | None


def _comparison(records: Sequence[Record], baseline: Baseline) -> Comparison | None:
    if baseline is None or isinstance(baseline, Comparison):
        return baseline
    if isinstance(baseline, (str, Path)):  # a previous run's compat.json
        baseline = load_json(baseline)[1]
    return compare(baseline, records)


def _can_fork() -> bool:
    # Forking a process with other threads running can deadlock the child on a lock one of them held.
    return hasattr(os, "fork") and threading.active_count() == 1


def _write_in_child(path: Path, render: Callable[[], str]) -> int | None:
    """Fork a child that renders and writes `path`; its pid, or None when forking failed."""
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # child: never returns into the caller's code
        code = 1
        try:
            write_text(path, render())
            code = 0
        finally:
            os._exit(code)
    return pid


def write_reports(records: Sequence[Record], run: RunInfo, out_dir: str | Path, baseline: Baseline = None,
                  history: HistoryView | None = None) -> list[Path]:  # fmt: skip
    """Write compat.json, compat.md and compat.html into out_dir; return their paths.

    baseline: the previous run's records, its compat.json path, or a ready Comparison.
    history: what the history store says of these records (compat.md's History section).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prep = prepare(records)  # sorted and counted once, for all three formats
    comparison = _comparison(prep.records, baseline)
    json_path, md_path, html_path = (out / name for name in FILES)

    def render_json_now() -> str:
        return render_json(prep, run, comparison)

    # compat.json costs about as much as the other two together: on a second core it comes for free.
    pid = _write_in_child(json_path, render_json_now) if len(prep.records) >= PARALLEL_MIN_RECORDS and _can_fork() else None
    try:
        write_text(md_path, render_markdown(prep, run, comparison, history))
        write_text(html_path, render_html(prep, run, comparison, history))
    finally:
        ok = pid is not None and os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    if not ok:  # no child, or it failed: render here, where an error surfaces with its traceback
        write_text(json_path, render_json_now())
    return [json_path, md_path, html_path]
