"""What only Bazel knows, from its Build Event Protocol file (--build_event_json_file): per target, the
cache hits and attempts of each shard and Bazel's own status."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BazelResult:
    """What the BEP says about one target: per shard, whether it was cached and how many attempts."""

    cached: dict[int, bool] = field(default_factory=dict)
    attempts: dict[int, int] = field(default_factory=dict)
    overall: str = ""  # Bazel's testSummary.overallStatus (PASSED, FAILED, FLAKY, ...)


def read_bep(path: str | os.PathLike[str], problems: list[str] | None = None) -> dict[str, BazelResult]:
    """Per target label, what the BEP file says. A truncated or corrupt file: the events before the first
    bad line are used and, when `problems` is given, one line saying so is appended to it."""
    results: dict[str, BazelResult] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                _read_event(json.loads(line), results)
            except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as e:
                if problems is not None:
                    problems.append(f"{path}:{lineno}: the BEP file is truncated or corrupt ({type(e).__name__}: {e}); "
                                    f"only the events before this line were used")  # fmt: skip
                break
    return results


def _read_event(event: dict[str, Any], results: dict[str, BazelResult]) -> None:
    ident = event.get("id", {})
    if "testResult" in ident:
        label = ident["testResult"]["label"]
        shard = max(int(ident["testResult"].get("shard", 1)) - 1, 0)
        attempt = int(ident["testResult"].get("attempt", 1))
        result = event.get("testResult", {})
        cached = bool(result.get("cachedLocally")) or bool(result.get("executionInfo", {}).get("cachedRemotely"))
        entry = results.setdefault(label, BazelResult())
        entry.attempts[shard] = max(entry.attempts.get(shard, 0), attempt)
        entry.cached[shard] = cached
    elif "testSummary" in ident:
        label = ident["testSummary"]["label"]
        results.setdefault(label, BazelResult()).overall = str(event.get("testSummary", {}).get("overallStatus", ""))


def fresh_bep(bazel: dict[str, BazelResult], bep: Path, newest: dict[str, float]) -> tuple[dict[str, BazelResult], list[str]]:
    """The BEP's entries for the targets whose testlogs it describes. Bazel writes the BEP file until the
    end of its command, after every test output of that run; a target whose outputs are newer than the
    file was rewritten by a later Bazel command (a plain `bazel test`, a rerun), so for it the file's cache
    hits, attempts and status are another run's: dropped, with a note."""
    written = bep.stat().st_mtime
    stale = sorted(label for label in bazel if newest.get(label, 0.0) > written)
    if not stale:
        return bazel, []
    note = (f"{bep} is older than the testlogs of {len(stale)} target(s), rewritten by a later Bazel command: its cache hits, "
            f"attempts and status are not used for them ({', '.join(stale[:5])}{', ...' if len(stale) > 5 else ''})")  # fmt: skip
    return {label: r for label, r in bazel.items() if label not in stale}, [note]


def read_beps(beps: str | os.PathLike[str] | list[str | os.PathLike[str]], newest: dict[str, float],
              problems: list[str]) -> tuple[dict[str, BazelResult], list[str]]:  # fmt: skip
    """What the BEP file(s) say about the targets whose testlogs they describe (each label is in one
    file), and the notes on what was dropped as stale; `newest`: label -> its outputs' newest mtime."""
    results: dict[str, BazelResult] = {}
    notes: list[str] = []
    for bep in beps if isinstance(beps, list) else [beps]:
        fresh, stale = fresh_bep(read_bep(bep, problems), Path(bep), newest)
        results.update(fresh)
        notes += stale
    return results, notes
