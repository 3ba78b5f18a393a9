"""The compatibility report: compat.json, compat.md, compat.html and the terminal summary.

    paths = write_reports(records, run, out_dir, baseline=old_records)
    print(terminal_summary(records, compare(old_records, records)))
"""

from __future__ import annotations

from tools.matrix.report.baseline import Change, Comparison, compare
from tools.matrix.report.commands import rerun_command
from tools.matrix.report.html_report import render_html
from tools.matrix.report.json_report import load_json, render_json, write_json
from tools.matrix.report.markdown import render_markdown
from tools.matrix.report.schema import SCHEMA_PATH
from tools.matrix.report.signatures import failure_causes, normalise
from tools.matrix.report.summary import unexpected
from tools.matrix.report.terminal import terminal_summary
from tools.matrix.report.writer import (
    COMPAT_HTML,
    COMPAT_JSON,
    COMPAT_MD,
    FILES,
    write_reports,
)

__all__ = [
    "COMPAT_HTML",
    "COMPAT_JSON",
    "COMPAT_MD",
    "FILES",
    "SCHEMA_PATH",
    "Change",
    "Comparison",
    "compare",
    "failure_causes",
    "load_json",
    "normalise",
    "render_html",
    "render_json",
    "render_markdown",
    "rerun_command",
    "terminal_summary",
    "unexpected",
    "write_json",
    "write_reports",
]
