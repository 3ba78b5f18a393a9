"""Which collected tests this process runs: Bazel's --test_filter, sharding, and expectation matching."""

from __future__ import annotations

import difflib
from fnmatch import fnmatchcase

from tools.matrix import durations

_GLOB_CHARS = set("*?[")


def _candidates(nodeid: str) -> list[str]:
    """The spellings a user may filter by: node id, `Class::test`, `Class.test`, `test`, the file."""
    file, *names = nodeid.split("::")
    if not names:
        return [nodeid]
    last = names[-1]
    return [nodeid, "::".join(names), ".".join(names), last, last.split("[", 1)[0], file]


def matches_filter(nodeid: str, pattern: str) -> bool:
    """True when `pattern` (a node id, `Class.test`, a test name or a glob) selects `nodeid`."""
    for candidate in _candidates(nodeid):
        if candidate == pattern or any(candidate.startswith(pattern + sep) for sep in ("::", ".", "[")):
            return True
        if _GLOB_CHARS & set(pattern) and fnmatchcase(candidate, pattern):
            return True
    return False


def parse_filter(value: str | None) -> list[str]:
    """TESTBRIDGE_TEST_ONLY: one pattern, or several separated by commas."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def select(nodeids: list[str], patterns: list[str]) -> list[str]:
    if not patterns:
        return list(nodeids)
    return [n for n in nodeids if any(matches_filter(n, p) for p in patterns)]


def decidable_here(patterns: list[str], sibling_files: tuple[str, ...]) -> bool:
    """Whether a filter that selects nothing of this target's files selects nothing of the cell:
    always for a whole cell; for one file's target (granularity: file), only when every pattern
    names a file (`test_x.py::...`) that is not another target's. A bare name or a glob may be
    another file's test, whose contents this target does not have."""
    if not sibling_files:
        return True
    for pattern in patterns:
        file = pattern.split("::", 1)[0]
        if not file.endswith(".py") or _GLOB_CHARS & set(file) or file in sibling_files:
            return False
    return True


def near_matches(patterns: list[str], nodeids: list[str], limit: int = 5) -> list[str]:
    """The node ids closest to what a filter that matched nothing may have meant (a typo'd name, a
    renamed file), by any spelling the filter accepts."""
    spellings: dict[str, str] = {}  # spelling -> the node id it names (the first, for shared names)
    for nodeid in sorted(nodeids):
        for candidate in _candidates(nodeid):
            spellings.setdefault(candidate, nodeid)
    near: list[str] = []
    for pattern in patterns:
        for spelling in difflib.get_close_matches(pattern, list(spellings), n=limit, cutoff=0.6):
            if spellings[spelling] not in near:
                near.append(spellings[spelling])
    return near[:limit]


def shard(nodeids: list[str], index: int, total: int, recorded: dict[str, float] | None = None) -> list[str]:
    """This shard's tests; each test is in exactly one shard. With recorded durations, shards of
    nearly equal time (durations.deal); without, round-robin over the sorted ids (sizes differ by ≤ 1)."""
    if total <= 1:
        return sorted(nodeids)
    if not 0 <= index < total:
        raise ValueError(f"shard index {index} outside 0..{total - 1}")
    if recorded:
        return durations.deal(nodeids, total, recorded)[index]
    return [n for i, n in enumerate(sorted(nodeids)) if i % total == index]


def expectation_for(nodeid: str, entries: dict[str, str]) -> tuple[str, str] | None:
    """The most specific entry covering `nodeid` (exact id, a file, a class, or a parametrized base)."""
    best: tuple[str, str] | None = None
    for entry, reason in entries.items():
        if covers(entry, nodeid) and (best is None or len(entry) > len(best[0])):
            best = (entry, reason)
    return best


def covers(entry: str, nodeid: str) -> bool:
    return nodeid == entry or nodeid.startswith(entry + "::") or nodeid.startswith(entry + "[")
