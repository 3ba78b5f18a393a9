"""Reading the last report (compat.json) for the commands that start from it (rerun, xfail sync,
durations, report --baseline, xfail import's warnings): a missing, corrupt, foreign, hostile (deeply
nested, huge numbers) or ill-typed file is one clear ReportError, before any of it is used."""

from __future__ import annotations

import json
from pathlib import Path

from tools.matrix.errors import ReportError
from tools.matrix.records import Record, RunInfo
from tools.matrix.report.json_report import NotACompatJson, load_json

MAKE_REPORT = "run `make report` (or `bazel run //tools:matrix -- report`)"


def load(path: Path) -> tuple[RunInfo, list[Record]]:
    if not path.is_file():
        raise ReportError(f"{path}: no report yet; {MAKE_REPORT} first")
    try:
        return load_json(path)
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ReportError(f"{path}: not a compat.json (not UTF-8 text: {e.reason} at byte {e.start}); {MAKE_REPORT} again") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not a compat.json (invalid JSON at line {e.lineno} column {e.colno}: {e.msg}); {MAKE_REPORT} again") from None
    except NotACompatJson as e:
        raise ReportError(f"{path}: not a compat.json ({e}); {MAKE_REPORT} again") from None
    except MemoryError:
        raise ReportError(f"{path}: too large to read into memory; is it a compat.json?") from None
