"""compat.html: one self-contained page, a filterable heatmap of tests × variant/device."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from itertools import chain
from math import isfinite
from operator import attrgetter
from typing import Any

from tools.matrix import statuses
from tools.matrix.records import FIELDS, SCHEMA_TYPES, Record, RunInfo
from tools.matrix.report.baseline import Comparison
from tools.matrix.report.commands import (
    device_part,
    filter_part,
    gpu_devices,
    label_for,
    target_part,
)
from tools.matrix.report.evidence import EvidenceView, evidence_view
from tools.matrix.report.history_view import HistoryView
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


# Everything about a record but what the page shows from its own columns (the row: suite and test; the
# column: variant and device; the target's rerun command; the duration and evidence arrays): records.Record's
# fields, by name. Few distinct values (every passed record of a cell shares one), so records carry one
# index into a deduplicated table of these.
_ELSEWHERE = ("suite", "test", "variant", "device", "target", "duration_s", "evidence")
DETAIL_FIELDS = tuple(f.name for f in FIELDS if f.name not in _ELSEWHERE)
_PLACE = ("suite", "variant", "device", "target")  # in a detail's key too: its column and target come from them
_DETAIL = attrgetter(*DETAIL_FIELDS, *_PLACE)
# A list or dict value is a detail as its JSON text (hashable; the page shows it as that text).
_AS_JSON = [k for k, name in enumerate(DETAIL_FIELDS) if {"array", "object"} & set(SCHEMA_TYPES[name])]
# What the page adds to each detail: its column (variant, device) and its target's rerun command.
PAGE_FIELDS = ("col", "tgt")


def _details(ordered: Sequence[Record]) -> Iterable[tuple[Any, ...]]:
    if not _AS_JSON:
        return map(_DETAIL, ordered)
    as_json = {k: _json_text for k in _AS_JSON}
    return (tuple(as_json.get(k, _same)(v) for k, v in enumerate(_DETAIL(r))) for r in ordered)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _same(value: Any) -> Any:
    return value


_BOOLEAN = {True: 1, False: 0, None: None}


def _encoded(columns: list[list[Any]], status_names: list[str]) -> tuple[list[list[Any]], list[str]]:
    """Per field of DETAIL_FIELDS, its column of distinct details as data["det"] writes it: a status as
    its index in data["statuses"], a string (a list or dict: its JSON) as its index in the returned
    string table (-1: null), a bool as 1/0, a number as it is. Column by column, at C speed."""
    texts = [column for name, column in zip(DETAIL_FIELDS, columns) if name != "status" and {"string", "array", "object"} & set(SCHEMA_TYPES[name])]
    unique = dict.fromkeys(chain([""], *texts))
    unique.pop(None, None)
    strings = list(unique)
    index: dict[str | None, int] = dict(zip(strings, range(len(strings))))
    index[None] = -1
    status_index = {s: i for i, s in enumerate(status_names)}
    encoded = []
    for name, column in zip(DETAIL_FIELDS, columns):
        kinds = set(SCHEMA_TYPES[name])
        if name == "status":
            encoded.append(list(map(status_index.__getitem__, column)))
        elif kinds & {"string", "array", "object"}:
            encoded.append(list(map(index.__getitem__, column)))
        elif "boolean" in kinds:
            encoded.append(list(map(_BOOLEAN.__getitem__, column)))
        else:
            encoded.append(list(column))
    return encoded, strings


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


def _history_data(ordered: Sequence[Record], view: HistoryView) -> dict[str, Any]:
    """The page's History: record indices of the new and fixed ones; per failing record its streak and strip."""
    index = {r.key: i for i, r in enumerate(ordered)}
    return {
        "store": visible(view.store), "runs": view.runs,
        "new": [index[r.key] for r in view.new if r.key in index], "fixed": [index[r.key] for r in view.fixed if r.key in index],
        "since": {index[k]: [visible(s.first_bad), visible(s.last_good), view.strip.get(k, [])] for k, s in view.since.items() if k in index},
    }  # fmt: skip



def _operators_data(ordered: Sequence[Record], col_i: dict[tuple[str, str], int], suite_i: dict[str, int],
                    strings: list[str]) -> dict[str, Any] | None:
    """data["ops"]: the per-operator table (report/operators.py), None when no test is an OpInfo test.
    A row is [suite, operator, cells]; a cell (one per column of `cols`, 0 where the operator has no
    record) is [passed, total, state, signature (index into `strings`, extended), the record index of its
    first failing sample or -1]."""
    table = operator_table(ordered)
    if not table.rows:
        return None
    at = {text: i for i, text in enumerate(strings)}

    def intern(text: str) -> int:
        if text not in at:
            at[text] = len(strings)
            strings.append(text)
        return at[text]

    index = {id(r): i for i, r in enumerate(ordered)}
    rows = []
    for row in table.rows:
        cells: list[Any] = []
        for column in table.columns:
            cell = row.cells.get(column)
            cells.append(0 if cell is None else [cell.passed, cell.total, STATES.index(cell.state), intern(cell.signature),
                                                  index[id(cell.failing[0])] if cell.failing else -1])
        rows.append([suite_i[row.suite], visible(row.operator), cells])
    return {"cols": [col_i[c] for c in table.columns], "states": list(STATES), "rows": rows}


def html_data(ordered: Sequence[Record], run: RunInfo, baseline: Comparison | None, history: HistoryView | None = None) -> dict[str, Any]:
    """The page's data. Per record only two ints (detail index, duration in ms); rows are runs of
    consecutive records (same suite and test); strings are indices into one deduplicated table;
    data["detFields"] names each value of a detail (DETAIL_FIELDS, then PAGE_FIELDS) and data["detKinds"]
    its JSON types, by which the script shows a field it has no rendering of its own for."""
    details: dict[tuple[Any, ...], int] = {}
    det = [details.setdefault(k, len(details)) for k in _details(ordered)]

    tests = list(map(attrgetter("test"), ordered))
    suite_of = list(map(attrgetter("suite"), ordered))
    starts = [i for i, (t, prev, s, prev_s) in enumerate(zip(tests, [None, *tests], suite_of, [None, *suite_of]))
              if t != prev or s != prev_s]
    suites = list(dict.fromkeys(suite_of))
    suite_i = {s: i for i, s in enumerate(suites)}
    row_tests = [tests[i] for i in starts]

    at = {name: k for k, name in enumerate((*DETAIL_FIELDS, *_PLACE))}
    v_at, d_at, s_at, st_at, t_at = at["variant"], at["device"], at["suite"], at["status"], at["target"]
    pairs = {(k[v_at], k[d_at]) for k in details}
    variants = variant_order(v for v, _ in pairs)
    devices = sorted({d for _, d in pairs})
    v_rank = {v: i for i, v in enumerate(variants)}
    d_rank = {d: i for i, d in enumerate(devices)}
    cols = sorted(pairs, key=lambda p: (v_rank[p[0]], d_rank[p[1]]))
    gpu = gpu_devices(run)
    col_i = {p: i for i, p in enumerate(cols)}
    # The vocabulary's statuses, then any other a collector produced (shown uncoloured rather than hidden).
    status_names = [*COLUMNS, *sorted({k[st_at] for k in details} - set(COLUMNS))]

    columns = list(zip(*details)) or [() for _ in at]  # the distinct details, column by column
    encoded, strings = _encoded(columns, status_names)
    # The page's own columns: the detail's (variant, device) column and its target's label.
    for k, target in enumerate(columns[t_at]):
        if not target:  # label_for says why there is no rerun command
            label_for(columns[s_at][k], columns[v_at][k], columns[d_at][k], target)
    targets = {label: i for i, label in enumerate(dict.fromkeys(columns[t_at]))}
    encoded += [list(map(col_i.__getitem__, zip(columns[v_at], columns[d_at]))), list(map(targets.__getitem__, columns[t_at]))]
    flat = list(chain.from_iterable(zip(*encoded)))
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
        "detFields": [*DETAIL_FIELDS, *PAGE_FIELDS],
        "detKinds": {name: list(SCHEMA_TYPES[name]) for name in DETAIL_FIELDS},
        "det": flat,
        "rec": {"det": det, "ms": _durations_ms(ordered)},
        "changes": None,
        "baseline": None,
        "carried": visible(carried_over(ordered, run.run_id)),
        "history": _history_data(ordered, history) if history is not None else None,
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


def render_html(records: Sequence[Record] | Prepared, run: RunInfo, baseline: Comparison | None = None, history: HistoryView | None = None) -> str:
    ordered = prepare(records).records
    return "".join([
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<title>Compatibility report</title>\n<style>", STYLE, "</style>\n</head>\n<body>\n", BODY,
        '<script type="application/json" id="report-data">', embed_json(html_data(ordered, run, baseline, history)), "</script>\n",
        "<script>", SCRIPT, "</script>\n</body>\n</html>\n",
    ])
