"""What only Bazel knows, from its Build Event Protocol file (--build_event_json_file): per target, the
cache hits and attempts of each shard, Bazel's own status, and whether the command ran its test at all
(a target it configured but did not build, or skipped, has only an earlier command's testlogs)."""

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
    attempts: dict[int, int] = field(default_factory=dict)  # a shard is here when the command tested it (cached or run)
    overall: str = ""  # Bazel's testSummary.overallStatus (PASSED, FAILED, FLAKY, ...)
    configured: bool = False  # the command meant to test it
    not_built: str = ""  # its build failed: Bazel's reason
    aborted: str = ""  # Bazel did not build it: its reason (SKIPPED: incompatible with the platform; INCOMPLETE, ...)
    aborted_why: str = ""  # and its description

    @property
    def untested(self) -> bool:
        """The command configured the target and tested no shard of it: the testlogs on disk are an
        earlier command's (Bazel leaves them), not this one's results."""
        return self.configured and not self.attempts


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
    elif "targetConfigured" in ident:
        results.setdefault(ident["targetConfigured"]["label"], BazelResult()).configured = True
    elif "targetCompleted" in ident:
        entry = results.setdefault(ident["targetCompleted"]["label"], BazelResult())
        if "aborted" in event:
            entry.aborted = str(event["aborted"].get("reason") or "UNKNOWN")
            entry.aborted_why = str(event["aborted"].get("description") or "")
        elif not event.get("completed", {}).get("success", False):
            detail = event.get("completed", {}).get("failureDetail", {})
            entry.not_built = str(detail.get("message") or "the build failed")
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
