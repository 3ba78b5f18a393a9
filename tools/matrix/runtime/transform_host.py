"""What the runtime does around a variant's transforms (the variant's `host`): time them, keep their
evidence (runtime/evidence.py) and run the differential check (runtime/transform_check.py). The
plugin gives its variant one host for the test process and resets it per test; the variant author's
interface (tools/matrix/variants/__init__.py) knows none of this."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tools.matrix.runtime import transform_check
from tools.matrix.runtime.evidence import Recorder
from tools.matrix.variants import CheckedPrograms, Host, VariantNumericsMismatch, VariantTransformError


@dataclass
class TransformHost(Host):
    """One test's ledger of the variant's work (time, calls, checks) plus the evidence recorder."""

    evidence: Recorder = field(default_factory=lambda: Recorder(None))
    check_off: str | None = None  # why the differential check is off for this cell (matrix.yaml transform_check)
    seconds: float = 0.0  # time in the variant's transforms (not the check's, not the evidence's)
    calls: int = 0
    entries: list[str] = field(default_factory=list)
    check_s: float = 0.0  # time in the differential check (not part of `seconds`)
    checks: list[transform_check.Outcome] = field(default_factory=list)  # one per checked call

    def reset(self) -> None:
        self.seconds, self.calls, self.entries, self.check_s, self.checks = 0.0, 0, [], 0.0, []

    def transform_check(self) -> str | None:
        """The test's transform_check: "passed", "skipped: why", "failed: what", "off: why"; None if nothing was checked."""
        return transform_check.summarize(self.checks)

    @contextmanager
    def transform(self, entry: str, program: Any | None) -> Iterator[Callable[[Any], None]]:
        evidence = self.evidence
        evidence_s = evidence.seconds
        start = time.perf_counter()
        if program is not None:
            evidence.begin(entry, program)
        try:
            yield evidence.transformed if program is not None else _ignore
        except VariantTransformError as e:
            if program is not None:
                evidence.failed(str(e))
            raise
        finally:
            self.seconds += time.perf_counter() - start - (evidence.seconds - evidence_s)  # the evidence's time is its own
            self.calls += 1
            self.entries.append(entry)

    def payload(self, name: str, data: bytes | str, what: str) -> None:
        self.evidence.payload(name, data, what)

    def check(self, variant: str, entry: str, programs: Callable[[], CheckedPrograms]) -> None:
        if self.check_off:
            self.checks.append(transform_check.Outcome(transform_check.OFF, self.check_off))
            self.evidence.checked(self.checks[-1].summary(), 0.0)
            return
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():  # what the test sees must not gain warnings (-W error, pytest.warns)
                warnings.simplefilter("ignore")
                original, transformed, args, kwargs, state = programs()
        except Exception as e:  # noqa: BLE001 - not knowing what to run is no verdict on the transform
            outcome = transform_check.Outcome(transform_check.SKIPPED, f"no programs to compare ({type(e).__name__}: {e})"[:500])
        else:
            outcome = transform_check.compare(original, transformed, args, kwargs, state)
        elapsed = time.perf_counter() - start
        self.check_s += elapsed
        self.checks.append(outcome)
        self.evidence.checked(outcome.summary(), elapsed)
        if outcome.verdict == transform_check.FAILED:
            raise VariantNumericsMismatch(f"variant {variant!r} changed what the result of {entry} computes: {outcome.detail}")


def _ignore(program: Any) -> None:
    """What `transform` yields when it records no evidence."""
