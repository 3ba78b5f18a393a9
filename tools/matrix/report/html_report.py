"""compat.html: one self-contained page, a filterable heatmap of tests × variant/device."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from math import isfinite
from operator import attrgetter
from typing import Any

from tools.matrix import statuses
from tools.matrix.records import Record, RunInfo
from tools.matrix.report.baseline import Comparison
from tools.matrix.report.commands import (
    device_part,
    filter_part,
    gpu_devices,
    label_for,
    target_part,
)
from tools.matrix.report.evidence import EvidenceView, evidence_view
from tools.matrix.report.html_assets import BODY, SCRIPT, STYLE
from tools.matrix.report.markdown import SYMBOLS, TRANSFORM_MARK
from tools.matrix.report.operators import STATES, operator_table
from tools.matrix.report.summary import COLUMNS, Prepared, carried_over, prepare, variant_order
from tools.matrix.report.text import visible

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Defence in depth: even markup that escaped the JSON could neither run script nor load anything.
CSP = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'"
_CHANGE_KINDS = ("regression", "fix", "changed xfail", "other change")


def embed_json(value: Any) -> str:
    """JSON that is inert inside <script type="application/json">: no `<`, `>` or `&` can close the element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _shown(value: Any) -> Any:
    """`value` with every string made visible (text.visible): the page shows them as they are, and a bidi
    override in a message would reorder what the reader sees. Few strings: the table is deduplicated."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


# Everything about a record except its test and duration. Few distinct values (every passed record of a
# cell shares one), so records carry one index into a deduplicated table of these.
_DETAIL = attrgetter(
    "variant", "device", "status", "transform_failed", "message", "error_type", "expectation", "log_tail",
    "run_id", "suite", "target", "attempts", "cached", "shard", "transform_check",
)
# Field order of each entry of data["det"] (a flat list, DETAIL_FIELDS ints per entry); the script reads it.
DETAIL_FIELDS = ("col", "st", "tf", "msg", "et", "exp", "log", "rid", "tgt", "att", "cached", "shard", "chk")


def _durations_ms(ordered: Sequence[Record]) -> list[int]:
    try:
        return [round(d * 1000) for d in map(attrgetter("duration_s"), ordered)]
    except (OverflowError, ValueError):  # inf / nan: no JSON for them
        return [round(d * 1000) if isfinite(d) else 0 for d in map(attrgetter("duration_s"), ordered)]


def _evidence_data(ordered: Sequence[Record]) -> dict[str, Any]:
    """data["ev"]: record index -> its evidence as report/evidence.py shows it, only for records that
    have some; data["evText"]: the program texts they refer to by index (a test's `before` is the same
    under every variant: kept once)."""
    texts: dict[str, int] = {}
    ev: dict[str, Any] = {}
    for i, record in enumerate(ordered):
        if record.evidence:
            view = evidence_view(record)
            assert view is not None
            ev[str(i)] = _evidence_json(view, texts)
    return {"ev": ev, "evText": list(texts)}


def _evidence_json(view: EvidenceView, texts: dict[str, int]) -> dict[str, Any]:
    """The page's form of an EvidenceView (its strings are visible already; texts interned)."""
    calls = [
        {"n": c.number, "entry": c.entry, "check": c.check, "note": c.note, "diff": c.diff, "kinds": c.kinds, "error": c.error,
         "cuts": c.cuts, "before": texts.setdefault(c.before, len(texts)),
         "after": -1 if c.after is None else texts.setdefault(c.after, len(texts)),
         "payloads": [[p.line, p.command] for p in c.payloads]}
        for c in view.calls
    ]
    return {"where": view.where, "problem": view.problem, "notKept": view.not_kept, "calls": calls}


def _operators_data(ordered: Sequence[Record], col_i: dict[tuple[str, str], int], suite_i: dict[str, int],
                    strings: dict[str, int]) -> dict[str, Any] | None:
    """data["ops"]: the per-operator table (report/operators.py), None when no test is an OpInfo test.
    A row is [suite, operator, cells]; a cell (one per column of `cols`, 0 where the operator has no
    record) is [passed, total, state, signature string, the record index of its first failing sample or -1]."""
    table = operator_table(ordered)
    if not table.rows:
        return None
    index = {id(r): i for i, r in enumerate(ordered)}
    rows = []
    for row in table.rows:
        cells: list[Any] = []
        for column in table.columns:
            cell = row.cells.get(column)
            cells.append(0 if cell is None else [cell.passed, cell.total, STATES.index(cell.state), strings.setdefault(cell.signature, len(strings)),
                                                  index[id(cell.failing[0])] if cell.failing else -1])
        rows.append([suite_i[row.suite], visible(row.operator), cells])
    return {"cols": [col_i[c] for c in table.columns], "states": list(STATES), "rows": rows}


def html_data(ordered: Sequence[Record], run: RunInfo, baseline: Comparison | None) -> dict[str, Any]:
    """The page's data. Per record only two ints (detail index, duration in ms); rows are runs of
    consecutive records (same suite and test); strings are indices into one deduplicated table."""
    details: dict[tuple[Any, ...], int] = {}
    det = [details.setdefault(k, len(details)) for k in map(_DETAIL, ordered)]

    tests = list(map(attrgetter("test"), ordered))
    suite_of = list(map(attrgetter("suite"), ordered))
    starts = [i for i, (t, prev, s, prev_s) in enumerate(zip(tests, [None, *tests], suite_of, [None, *suite_of]))
              if t != prev or s != prev_s]
    suites = list(dict.fromkeys(suite_of))
    suite_i = {s: i for i, s in enumerate(suites)}
    row_tests = [tests[i] for i in starts]

    pairs = {(k[0], k[1]) for k in details}
    variants = variant_order(v for v, _ in pairs)
    devices = sorted({d for _, d in pairs})
    v_rank = {v: i for i, v in enumerate(variants)}
    d_rank = {d: i for i, d in enumerate(devices)}
    cols = sorted(pairs, key=lambda p: (v_rank[p[0]], d_rank[p[1]]))
    gpu = gpu_devices(run)
    col_i = {p: i for i, p in enumerate(cols)}
    # The vocabulary's statuses, then any other a collector produced (shown uncoloured rather than hidden).
    status_names = [*COLUMNS, *sorted({k[2] for k in details} - set(COLUMNS))]
    st_i = {s: i for i, s in enumerate(status_names)}

    strings: dict[str, int] = {"": 0}
    intern = strings.setdefault  # intern(s, len(strings)) -> index, adding s if new
    targets: dict[str, int] = {}
    flat: list[int] = []
    for variant, device, status, tf, msg, et, exp, log, rid, suite, target, att, cached, shard, chk in details:
        label = label_for(suite, variant, device, target)
        flat += (
            col_i[(variant, device)], st_i[status], 1 if tf else 0,
            intern(msg, len(strings)), intern(et or "", len(strings)), intern(exp or "", len(strings)),
            intern(log, len(strings)), intern(rid, len(strings)), targets.setdefault(label, len(targets)),
            att, 1 if cached else 0, -1 if shard is None else shard, intern(chk or "", len(strings)),
        )
    ops = _operators_data(ordered, col_i, suite_i, strings)
    data: dict[str, Any] = {
        "run": _shown(asdict(run)),
        "statuses": status_names,
        "unexpected": sorted(statuses.UNEXPECTED),
        "symbols": SYMBOLS,
        "transformMark": TRANSFORM_MARK,
        "suites": _shown(suites),
        "variants": _shown(variants),
        "devices": _shown(devices),
        "cols": [[v_rank[v], d_rank[d], device_part(d, gpu)] for v, d in cols],
        "rows": {"start": starts, "suite": [suite_i[suite_of[i]] for i in starts], "test": list(map(visible, row_tests)),
                 "filter": [visible(filter_part(t)) for t in row_tests]},
        "targets": [[visible(label), visible(target_part(label))] for label in targets],
        "str": list(map(visible, strings)),
        "detFields": list(DETAIL_FIELDS),
        "det": flat,
        "rec": {"det": det, "ms": _durations_ms(ordered)},
        "changes": None,
        "baseline": None,
        "carried": visible(carried_over(ordered, run.run_id)),
        "ops": ops,
        **_evidence_data(ordered),
    }

    if baseline is not None:
        index = {r.key: i for i, r in enumerate(ordered)}
        lists = (baseline.regressions, baseline.fixes, baseline.changed_xfails, baseline.other)
        data["changes"] = [[index[c.key], c.old.status, kind] for kind, changes in zip(_CHANGE_KINDS, lists)
                           for c in changes if c.key in index]
        data["baseline"] = baseline.counts()
    return data


def render_html(records: Sequence[Record] | Prepared, run: RunInfo, baseline: Comparison | None = None) -> str:
    ordered = prepare(records).records
    return "".join([
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<title>Compatibility report</title>\n<style>", STYLE, "</style>\n</head>\n<body>\n", BODY,
        '<script type="application/json" id="report-data">', embed_json(html_data(ordered, run, baseline)), "</script>\n",
        "<script>", SCRIPT, "</script>\n</body>\n</html>\n",
    ])
