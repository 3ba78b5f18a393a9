"""Reading the last report (compat.json) for the commands that start from it (rerun, xfail sync,
durations, report --baseline): a missing, corrupt or foreign file is one clear ReportError."""

from __future__ import annotations

from pathlib import Path

from tools.matrix import statuses
from tools.matrix.errors import ReportError
from tools.matrix.records import Record, RunInfo
from tools.matrix.report import load_json

MAKE_REPORT = "run `make report` (or `bazel run //tools:matrix -- report`)"


def load(path: Path) -> tuple[RunInfo, list[Record]]:
    if not path.is_file():
        raise ReportError(f"{path}: no report yet; {MAKE_REPORT} first")
    try:
        run, records = load_json(path)
    except OSError as e:
        raise ReportError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ReportError(f"{path}: not a compat.json (not UTF-8 text: {e.reason} at byte {e.start}); {MAKE_REPORT} again") from None
    except ValueError as e:  # json.JSONDecodeError included; load_json's own message names the path
        detail = f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}" if hasattr(e, "lineno") else str(e).removeprefix(f"{path}: ")
        raise ReportError(f"{path}: not a compat.json ({detail}); {MAKE_REPORT} again") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ReportError(f"{path}: not a compat.json (unexpected shape: {type(e).__name__}: {e}); {MAKE_REPORT} again") from None
    for i, record in enumerate(records):
        bad = [name for name in ("suite", "test", "variant", "device", "status") if not isinstance(getattr(record, name, None), str)]
        if bad or record.status not in statuses.ALL:
            what = f"{', '.join(bad)} not a string" if bad else f"unknown status {record.status!r}"
            raise ReportError(f"{path}: not a compat.json (record {i + 1}: {what}); {MAKE_REPORT} again")
    return run, records
