"""Recorded durations (tools/matrix/durations.py): the shard plan (deal), the shard counts, which
cell's durations a cell uses, the file (load / render / update), and the `durations` command that
refreshes it from the last report and regenerates the BUILD files."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest

from tools.matrix import config, durations, shard_plan, statuses
from tools.matrix.records import Record
from tools.matrix.report import COMPAT_JSON
from tools.matrix.runtime import selection
from tools.matrix.tests.fixtures.toolws import run_cli as cli
from tools.matrix.tests.fixtures.toolws import write_compat, write_workspace


def ids(n: int, prefix: str = "t.py::test_") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def loads(shards: list[list[str]], seconds: dict[str, float]) -> list[float]:
    return [sum(seconds[n] for n in shard) for shard in shards]


def round_robin(nodeids: list[str], total: int) -> list[list[str]]:
    return [selection.shard(nodeids, index, total) for index in range(total)]


# --- deal ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("count", [0, 1, 4, 13])
def test_deal_puts_every_test_in_exactly_one_shard(total, count):
    nodeids = ids(count)
    rng = random.Random(count * 100 + total)
    recorded = {n: rng.uniform(0.01, 5) for n in nodeids[: count // 2]}  # half of them unknown
    recorded["t.py::test_removed_long_ago"] = 100.0  # recorded, but no longer collected
    shards = durations.deal(nodeids, total, recorded)
    assert len(shards) == total
    everything = [n for shard in shards for n in shard]
    assert sorted(everything) == sorted(nodeids), "not every test exactly once"
    assert all(shard == sorted(shard) for shard in shards)


def test_deal_is_deterministic_whatever_the_input_order():
    nodeids = ids(20)
    recorded = {n: float(i % 4) + 0.5 for i, n in enumerate(nodeids)}  # many ties: broken by node id
    plan = durations.deal(nodeids, 3, recorded)
    for seed in range(5):
        shuffled = nodeids[:]
        random.Random(seed).shuffle(shuffled)
        assert durations.deal(shuffled, 3, dict(reversed(list(recorded.items())))) == plan
    # Every shard computes the plan on its own: selection.shard(index) is the plan's index-th shard.
    assert [selection.shard(nodeids, i, 3, recorded) for i in range(3)] == plan


def test_deal_longest_first_to_the_least_loaded_shard():
    """[9..1] into 3: 9, 8, 7 open the shards; 6, 5, 4 go to the then-lightest (13/13/13); 3, 2, 1
    follow in shard order. LPT, not an optimal partition (that would be 15/15/15), but within the
    shortest test of it."""
    seconds = {f"t.py::test_{s}": float(s) for s in range(1, 10)}
    shards = durations.deal(list(seconds), 3, seconds)
    assert shards == [
        ["t.py::test_3", "t.py::test_4", "t.py::test_9"],
        ["t.py::test_2", "t.py::test_5", "t.py::test_8"],
        ["t.py::test_1", "t.py::test_6", "t.py::test_7"],
    ]
    assert loads(shards, seconds) == [16, 15, 14]


def test_deal_balances_exactly_when_it_can():
    seconds = {f"t.py::test_{s}": float(s) for s in range(1, 7)}  # 6+1, 5+2, 4+3
    shards = durations.deal(list(seconds), 3, seconds)
    assert loads(shards, seconds) == [7, 7, 7]
    assert shards == [["t.py::test_1", "t.py::test_6"], ["t.py::test_2", "t.py::test_5"], ["t.py::test_3", "t.py::test_4"]]


def test_deal_evens_out_what_round_robin_piles_up():
    """Every other test (in sorted order) is heavy: round-robin puts all of them in shard 0."""
    nodeids = ids(12)
    seconds = {n: (10.0 if i % 2 == 0 else 0.1) for i, n in enumerate(nodeids)}
    rr = loads(round_robin(nodeids, 2), seconds)
    assert rr == [pytest.approx(60.0), pytest.approx(0.6)]
    planned = loads(durations.deal(nodeids, 2, seconds), seconds)
    mean = sum(seconds.values()) / 2
    assert all(abs(load - mean) <= max(seconds.values()) for load in planned), planned
    assert max(planned) - min(planned) <= 0.1 + 1e-9, planned  # six heavy and six light on each side


@pytest.mark.parametrize("seed", range(20))
def test_deal_every_shard_within_the_longest_test_of_the_others(seed):
    """Greedy least-loaded placement: the fullest shard was the emptiest when it got its last test,
    so no two shards differ by more than the longest test, and each is within it of the mean."""
    rng = random.Random(seed)
    nodeids = ids(rng.randint(5, 60))
    seconds = {n: rng.choice([rng.uniform(0, 1), rng.uniform(0, 30), rng.expovariate(0.2)]) for n in nodeids}
    total = rng.randint(2, 7)
    planned = loads(durations.deal(nodeids, total, seconds), seconds)
    longest, mean = max(seconds.values()), sum(seconds.values()) / total
    assert max(planned) - min(planned) <= longest + 1e-9, (planned, longest)
    assert all(abs(load - mean) <= longest + 1e-9 for load in planned), (planned, mean, longest)


def test_deal_unknown_tests_count_as_the_median():
    known = {"t.py::a": 10.0, "t.py::b": 2.0, "t.py::c": 2.0, "t.py::d": 2.0}  # median 2, mean 4
    unknown = ["t.py::u1", "t.py::u2", "t.py::u3", "t.py::u4"]
    nodeids = [*known, *unknown]
    plan = durations.deal(nodeids, 2, known)
    # a (10) alone until the 2-second tests b, c, d, u1, u2 fill shard 1 to 10; then u3, u4 alternate.
    assert plan == [["t.py::a", "t.py::u3"], ["t.py::b", "t.py::c", "t.py::d", "t.py::u1", "t.py::u2", "t.py::u4"]]
    assert plan == durations.deal(nodeids, 2, {**known, **dict.fromkeys(unknown, statistics.median(known.values()))})
    assert plan != durations.deal(nodeids, 2, {**known, **dict.fromkeys(unknown, durations.UNKNOWN_TEST_S)})
    assert plan != durations.deal(nodeids, 2, {**known, **dict.fromkeys(unknown, statistics.mean(known.values()))})
    # The median of the tests being dealt: a recorded test that is gone does not move it.
    assert durations.deal(nodeids, 2, {**known, "t.py::gone1": 50.0, "t.py::gone2": 50.0}) == plan


def test_deal_with_nothing_recorded_is_round_robin():
    nodeids = ids(11)
    assert durations.deal(list(reversed(nodeids)), 3, {}) == round_robin(nodeids, 3)


def test_deal_one_shard_and_more_shards_than_tests():
    nodeids = ["t.py::b", "t.py::c", "t.py::a"]
    seconds = {"t.py::a": 1.0, "t.py::b": 3.0, "t.py::c": 2.0}
    assert durations.deal(nodeids, 1, seconds) == [["t.py::a", "t.py::b", "t.py::c"]]
    assert durations.deal(nodeids, 5, seconds) == [["t.py::b"], ["t.py::c"], ["t.py::a"], [], []]
    assert durations.deal([], 2, seconds) == [[], []]


def test_selection_shard_uses_the_plan_only_with_recorded_durations():
    nodeids = ids(12)
    seconds = {n: (10.0 if i % 2 == 0 else 0.1) for i, n in enumerate(nodeids)}
    planned = [selection.shard(nodeids, i, 2, seconds) for i in range(2)]
    assert planned == durations.deal(nodeids, 2, seconds) != round_robin(nodeids, 2)
    assert [selection.shard(nodeids, i, 2, {}) for i in range(2)] == round_robin(nodeids, 2)
    assert [selection.shard(nodeids, i, 2, None) for i in range(2)] == [nodeids[0::2], nodeids[1::2]]
    assert selection.shard(list(reversed(nodeids)), 0, 1, seconds) == nodeids
    with pytest.raises(ValueError, match="shard index 2 outside 0..1"):
        selection.shard(nodeids, 2, 2, seconds)


# --- shard_count, for_cell -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, 1),
        (40.0, 1),  # 0.4 shards: at least one
        (140.0, 1),  # 1.4
        (150.0, 2),  # 1.5: half rounds up
        (250.0, 3),  # 2.5: up too (not to even, as round() would)
        (349.0, 3),
        (351.0, 4),
        (50 * 100.0, 50),
        (50.6 * 100.0, 50),
        (1e9, 50),
        (float("inf"), 50),
    ],
)
def test_shard_count_rounds_to_the_nearest_count_within_1_to_50(seconds, expected):
    assert shard_plan.shard_count(seconds, 100.0) == expected


def test_shard_count_of_a_tiny_shard_seconds():
    assert shard_plan.shard_count(1e300, 1e-300) == shard_plan.MAX_SHARDS  # the ratio overflows to inf
    assert shard_plan.shard_count(0.3, 0.1) == 3


RECORDED = {
    "base/cpu": {"t.py::a": 1.0},
    "base/cuda": {"t.py::a": 0.5},
    "retrace/cpu": {"t.py::a": 2.0},
    "serdes/cpu": {},
    "serdes/mps": {"t.py::a": 4.0},
    "serdes/xpu": {"t.py::a": 5.0},
}


@pytest.mark.parametrize(
    ("variant", "device", "expected"),
    [
        ("base", "cpu", {"t.py::a": 1.0}),  # its own
        ("base", "cuda", {"t.py::a": 0.5}),
        ("retrace", "cuda", {"t.py::a": 2.0}),  # a cuda cell planned from its cpu run
        ("serdes", "cpu", {"t.py::a": 4.0}),  # its own is empty: another device's, the first by name
        ("serdes", "cuda", {"t.py::a": 4.0}),
        ("strict", "cpu", {}),  # nothing for the variant: never another variant's
        ("base_x", "cpu", {}),
    ],
)
def test_for_cell(variant, device, expected):
    assert durations.for_cell(RECORDED, variant, device) == expected


# --- the file: load, render ----------------------------------------------------------------------


def test_load_missing_file_is_nothing_recorded(tmp_path):
    assert durations.load(tmp_path / "test_durations.json") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"cells": {\n "base/cpu": {"t.py::a": 1.0,}\n}}',
            "s/test_durations.json:2:30: invalid JSON: Expecting property name enclosed in double quotes; regenerate it with `bazel run //tools:matrix -- durations`",
        ),
        ("", "s/test_durations.json:1:1: invalid JSON: Expecting value; regenerate it with `bazel run //tools:matrix -- durations`"),
        (
            '{"cells": {}}\n{}',
            "s/test_durations.json:2:1: invalid JSON: Extra data; regenerate it with `bazel run //tools:matrix -- durations`",
        ),
    ],
)
def test_load_invalid_json_says_where(tmp_path, text, expected):
    path = tmp_path / "test_durations.json"
    path.write_text(text)
    with pytest.raises(durations.DurationsError) as info:
        durations.load(path, "s/test_durations.json")
    assert str(info.value) == expected


SHAPE = 's/test_durations.json: expected {"cells": {"variant/device": {"test id": seconds}}}; regenerate it with `bazel run //tools:matrix -- durations`'


@pytest.mark.parametrize(
    "data",
    [
        [],
        {},
        {"cells": []},
        {"cells": {"base/cpu": [1.0]}},
        {"cells": {"base/cpu": {"t.py::a": "1.0"}}},
        {"cells": {"base/cpu": {"t.py::a": -1}}},
        {"cells": {"base/cpu": {"t.py::a": True}}},
        {"cells": {"base/cpu": {"t.py::a": None}}},
        {"cells": {"base/cpu": {"t.py::a": 1.0}, "base/cuda": {"t.py::a": float("nan")}}},
        {"cells": {"base/cpu": {"t.py::a": float("inf")}}},
    ],
)
def test_load_wrong_shape(tmp_path, data):
    path = tmp_path / "test_durations.json"
    path.write_text(json.dumps(data))  # NaN / Infinity: Python's JSON extensions, which json.loads accepts
    with pytest.raises(durations.DurationsError) as info:
        durations.load(path, "s/test_durations.json")
    assert str(info.value) == SHAPE


def test_load_not_utf8(tmp_path):
    path = tmp_path / "test_durations.json"
    path.write_bytes(b'{"cells": {"base/cpu": {"t.py::\xff": 1}}}')
    with pytest.raises(durations.DurationsError) as info:
        durations.load(path, "s/test_durations.json")
    assert str(info.value) == "s/test_durations.json: not UTF-8 text (invalid start byte at byte 31); regenerate it with `bazel run //tools:matrix -- durations`"


def test_load_names_the_path_when_not_told_how(tmp_path):
    path = tmp_path / "test_durations.json"
    path.write_text("[]")
    with pytest.raises(durations.DurationsError, match=f"^{path}: expected "):
        durations.load(path)


def test_load_accepts_integers_and_zero(tmp_path):
    path = tmp_path / "test_durations.json"
    path.write_text('{"cells": {"base/cpu": {"t.py::a": 2, "t.py::b": 0}, "base/cuda": {}}, "generated": "anything"}')
    loaded = durations.load(path)
    assert loaded == {"base/cpu": {"t.py::a": 2.0, "t.py::b": 0.0}, "base/cuda": {}}
    assert all(isinstance(s, float) for s in loaded["base/cpu"].values())


def test_render_load_round_trip(tmp_path):
    recorded = {
        "retrace/cpu": {"t.py::z": 0.25, 'q.py::test_p[a"b]': 12.3456789, "t.py::K::test_é": 3.0},
        "base/cpu": {"t.py::a": 1.0004, "t.py::b": 0.0},
    }
    text = durations.render(recorded, "s")
    path = tmp_path / "test_durations.json"
    path.write_text(text)
    assert durations.load(path) == {
        "base/cpu": {"t.py::a": 1.0, "t.py::b": 0.0},
        "retrace/cpu": {"t.py::z": 0.25, 'q.py::test_p[a"b]': 12.346, "t.py::K::test_é": 3.0},
    }  # milliseconds are enough
    assert json.loads(text)["cells"] == durations.load(path)
    # Sorted, whatever the order it was given in: regenerating reorders nothing.
    shuffled = {key: dict(reversed(list(tests.items()))) for key, tests in reversed(list(recorded.items()))}
    assert durations.render(shuffled, "s") == text
    assert text.index('"base/cpu"') < text.index('"retrace/cpu"') and text.index('"t.py::a"') < text.index('"t.py::b"')
    assert durations.render({}, "s").endswith('"cells": {}}\n')


def test_render_first_line_says_generated_and_how_to_regenerate():
    text = durations.render({"base/cpu": {"t.py::a": 1.0}}, "export_tests")
    first = text.splitlines()[0]
    assert "Generated" in first
    assert "`bazel run //tools:matrix -- durations`" in first and durations.REGENERATE == "bazel run //tools:matrix -- durations"
    assert "export_tests" in first
    assert json.loads(text)["generated"] in first


# --- update ----------------------------------------------------------------------------------------


def rec(test: str, variant: str, device: str, status: str, seconds: float, suite: str = "s") -> Record:
    return Record(suite=suite, test=test, variant=variant, device=device, status=status, duration_s=seconds, target=f"//{suite}:{suite}_{variant}_{device}")


def test_update_replaces_the_cells_that_ran_and_keeps_the_others():
    old = {
        "base/cpu": {"t.py::a": 1.0, "t.py::gone": 7.0},
        "base/cuda": {"t.py::a": 0.5},  # did not run this time (no GPU): kept
        "other/cpu": {"t.py::a": 3.0},  # every test not_run or skipped: kept
    }
    records = [
        rec("t.py::a", "base", "cpu", statuses.PASSED, 2.0),
        rec("t.py::b", "base", "cpu", statuses.FAILED, 4.0),
        rec("t.py::c", "base", "cpu", statuses.XFAILED, 0.5),
        rec("t.py::d", "base", "cpu", statuses.TIMEOUT, 120.0),
        rec("t.py::e", "base", "cpu", statuses.SKIPPED, 0.01),
        rec("t.py::f", "base", "cpu", statuses.NOT_RUN, 9.0),
        rec("t.py::g", "base", "cpu", statuses.PASSED, 0.0),  # no duration measured
        rec("t.py::a", "base", "cuda", statuses.NOT_RUN, 0.0),
        rec("t.py::a", "other", "cpu", statuses.NOT_RUN, 0.0),
        rec("t.py::b", "other", "cpu", statuses.SKIPPED, 0.2),
        rec("t.py::a", "retrace", "cpu", statuses.CRASHED, 1.5),  # a new cell
    ]
    assert durations.update(old, records) == {
        "base/cpu": {"t.py::a": 2.0, "t.py::b": 4.0, "t.py::c": 0.5, "t.py::d": 120.0},  # t.py::gone is gone
        "base/cuda": {"t.py::a": 0.5},
        "other/cpu": {"t.py::a": 3.0},
        "retrace/cpu": {"t.py::a": 1.5},
    }
    assert old["base/cpu"] == {"t.py::a": 1.0, "t.py::gone": 7.0}  # not modified in place


def test_update_with_nothing_run_changes_nothing():
    old = {"base/cpu": {"t.py::a": 1.0}}
    assert durations.update(old, []) == old
    assert durations.update({}, [rec("t.py::a", "base", "cpu", statuses.SKIPPED, 1.0)]) == {}


# --- the `durations` command -----------------------------------------------------------------------

MATRIX = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base: {impl: tools.matrix.variants.base:Base, description: plain}
  other: {impl: tools.matrix.variants.export:Retrace, description: other}
suites:
  s:
    variants: [base, other]
    devices: [cpu, cuda]
    shard_seconds: 10
  t:
    variants: [base]
    devices: [cpu]
    shards: 2
"""
S_TESTS = ["test_a.py::test_one", "test_a.py::test_two", "test_b.py::test_three", "test_b.py::test_four"]


@pytest.fixture
def ws(tmp_path) -> Path:
    return write_workspace(tmp_path, MATRIX, ("s/test_a.py", "s/test_b.py", "t/test_c.py"))


def shard_counts(ws: Path) -> dict[str, int]:
    return {c.label: c.targets[0].shard_count for c in config.load(ws / "matrix.yaml", ws).cells()}


def cell_block(ws: Path, suite: str, name: str) -> str:
    text = (ws / suite / "BUILD.bazel").read_text()
    start = text.index(f'    name = "{name}",\n')
    return text[start : text.index("\n)\n", start)]


def test_cli_durations_records_replans_and_regenerates(ws):
    assert cli(ws, "generate").returncode == 0
    before = shard_counts(ws)
    assert before == {"//s:s_base_cpu": 1, "//s:s_base_cuda": 1, "//s:s_other_cpu": 1, "//s:s_other_cuda": 1, "//t:t_base_cpu": 2}
    assert "durations" not in (ws / "s" / "BUILD.bazel").read_text()
    records = [
        *(rec(test, "base", "cpu", statuses.PASSED, 8.0) for test in S_TESTS),  # 32 s: 3 shards
        *(rec(test, "other", "cpu", statuses.PASSED, 1.0) for test in S_TESTS),  # 4 s: 1
        *(rec(test, "base", "cuda", statuses.NOT_RUN, 0.0) for test in S_TESTS),  # no GPU: planned from cpu
        rec("test_c.py::test_c", "base", "cpu", statuses.PASSED, 50.0, suite="t"),  # t has no shard_seconds
    ]
    write_compat(ws / "reports" / COMPAT_JSON, records)
    out = cli(ws, "durations")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:4] == [
        "//s:s_base_cpu: 32 s recorded, 1 -> 3 shard(s)",
        "//s:s_base_cuda: 32 s recorded, 1 -> 3 shard(s)",
        "//s:s_other_cpu: 4 s recorded, 1 shard(s)",
        "//s:s_other_cuda: 4 s recorded, 1 shard(s)",
    ]
    assert out.stdout.splitlines()[4] == "wrote 1 file(s): s/BUILD.bazel"
    assert "//t:" not in out.stdout and not (ws / "t" / durations.FILE_NAME).exists()

    written = (ws / "s" / durations.FILE_NAME).read_text()
    assert written == durations.render({"base/cpu": dict.fromkeys(S_TESTS, 8.0), "other/cpu": dict.fromkeys(S_TESTS, 1.0)}, "s")
    assert shard_counts(ws) == {**before, "//s:s_base_cpu": 3, "//s:s_base_cuda": 3}
    for name, count in (("s_base_cpu", 3), ("s_base_cuda", 3), ("s_other_cpu", 1)):
        block = cell_block(ws, "s", name)
        assert (f'        "{name}": {count},\n' in block) == (count > 1), block  # shard_counts holds the sharded targets
        assert ('    durations = "test_durations.json",' in block) == (count > 1), block
    assert cli(ws, "generate", "--check").returncode == 0

    again = cli(ws, "durations")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "//s:s_base_cpu: 32 s recorded, 3 shard(s)",
        "//s:s_base_cuda: 32 s recorded, 3 shard(s)",
        "//s:s_other_cpu: 4 s recorded, 1 shard(s)",
        "//s:s_other_cuda: 4 s recorded, 1 shard(s)",
        "generated files already up to date",
    ]
    assert (ws / "s" / durations.FILE_NAME).read_text() == written


def test_cli_durations_keeps_cells_that_did_not_run_and_shrinks(ws):
    (ws / "s" / durations.FILE_NAME).write_text(
        durations.render({"base/cpu": dict.fromkeys(S_TESTS, 8.0), "base/cuda": dict.fromkeys(S_TESTS, 5.0)}, "s")
    )
    assert shard_counts(ws)["//s:s_base_cpu"] == 3 and shard_counts(ws)["//s:s_base_cuda"] == 2
    write_compat(ws / "out" / COMPAT_JSON, [rec(test, "base", "cpu", statuses.PASSED, 2.0) for test in S_TESTS])
    out = cli(ws, "durations", "--out", "out")
    assert out.returncode == 0, out.stderr
    assert "//s:s_base_cpu: 8 s recorded, 3 -> 1 shard(s)" in out.stdout.splitlines()
    assert "//s:s_base_cuda: 20 s recorded, 2 shard(s)" in out.stdout.splitlines()  # the old cuda run is kept
    assert durations.load(ws / "s" / durations.FILE_NAME) == {"base/cpu": dict.fromkeys(S_TESTS, 2.0), "base/cuda": dict.fromkeys(S_TESTS, 5.0)}
    assert "durations" not in cell_block(ws, "s", "s_base_cpu")
    assert '    durations = "test_durations.json",' in cell_block(ws, "s", "s_base_cuda")


def test_cli_durations_rewrites_a_malformed_file(ws):
    """The file's own error message says to run `durations`: that must work on the broken file (a
    merge conflict, say), where every other command refuses the matrix."""
    (ws / "s" / durations.FILE_NAME).write_text('{"cells": {\n<<<<<<< HEAD\n "base/cpu": {}\n}}\n')
    broken = cli(ws, "generate")
    assert broken.returncode == 2
    assert broken.stderr.splitlines()[0] == (
        "matrix.yaml:12:5: s/test_durations.json:2:1: invalid JSON: Expecting property name enclosed in double quotes; "
        "regenerate it with `bazel run //tools:matrix -- durations`"
    )
    write_compat(ws / "reports" / COMPAT_JSON, [rec(test, "base", "cpu", statuses.PASSED, 8.0) for test in S_TESTS])
    out = cli(ws, "durations")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [
        "s/test_durations.json: malformed; recording it anew from the last report alone",
        "//s:s_base_cpu: 32 s recorded, 1 -> 3 shard(s)",
    ]
    assert durations.load(ws / "s" / durations.FILE_NAME) == {"base/cpu": dict.fromkeys(S_TESTS, 8.0)}
    assert shard_counts(ws)["//s:s_base_cpu"] == 3
    assert cli(ws, "generate", "--check").returncode == 0

def test_cli_durations_without_a_report_exits_2(ws):
    out = cli(ws, "durations", "--out", "nowhere")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr == f"error: {ws / 'nowhere' / 'compat.json'}: no report yet; run `make report` (or `bazel run //tools:matrix -- report`) first\n"
    assert not (ws / "s" / durations.FILE_NAME).exists() and not (ws / "s" / "BUILD.bazel").exists()


def test_cli_durations_without_shard_seconds_writes_nothing(ws):
    (ws / "matrix.yaml").write_text(MATRIX.replace("    shard_seconds: 10\n", ""))
    write_compat(ws / "reports" / COMPAT_JSON, [rec(test, "base", "cpu", statuses.PASSED, 8.0) for test in S_TESTS])
    out = cli(ws, "durations")
    assert (out.returncode, out.stdout) == (0, "no suite in matrix.yaml has shard_seconds; nothing to record\n"), out.stderr
    assert not (ws / "s" / durations.FILE_NAME).exists() and not (ws / "s" / "BUILD.bazel").exists()
