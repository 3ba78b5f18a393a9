"""Variants: ways of transforming what an API under test returns before the test sees it.

A variant is a `Variant` subclass, referenced from matrix.yaml as `impl: package.module:ClassName`.
It names the entry points it supports (dotted names such as `torch.export.export`) and transforms
each call's arguments (`before`) and/or result (`after`). The runtime installs it for the whole test
process; the base test is unaware. A transform never falls back to the untransformed object: when it
raises, the test fails with a `VariantTransformError` that the report keeps apart from assertion
failures.

A variant whose `after` returns a transformed program (`checks_numerics = True`) is also checked:
on the call's own inputs the transformed program must compute what the untransformed one computes
(tools/matrix/runtime/transform_check.py); a difference fails the test with VariantNumericsMismatch.
Each such transform also leaves evidence for the report (tools/matrix/runtime/evidence.py): the
program before and after it as text, what it serialized (`keep_payload`) and the check's outcome,
kept only when the test fails, xfails or crashes.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from tools.matrix.runtime.evidence import Recorder


class VariantTransformError(Exception):
    """The variant's own transformation failed (not the API under test, not the test's assertion).

    Not a RuntimeError: a test expecting the API's own RuntimeError must not pass on the variant's failure."""


class VariantNumericsMismatch(VariantTransformError):
    """The differential check: on the call's inputs the transformed program computes something else
    than the untransformed one (the message names the output leaf and the difference)."""


# What the differential check runs: (untransformed program, transformed program, example args,
# example kwargs, more objects whose tensors the runs must leave as they were).
CheckedPrograms = tuple[Any, Any, tuple[Any, ...], dict[str, Any], tuple[Any, ...]]


class VariantLoadError(Exception):
    """`impl` does not name an importable Variant subclass."""


@dataclass(frozen=True)
class Call:
    """One call of a wrapped entry point: `fn` is the original, untransformed callable."""

    entry: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def with_kwargs(self, **kwargs: Any) -> Call:
        return replace(self, kwargs={**self.kwargs, **kwargs})

    def invoke(self) -> Any:
        return self.fn(*self.args, **self.kwargs)


@dataclass
class TransformLedger:
    """What the variant did during one test (time, calls, checks, evidence), reset per test by the runtime."""

    seconds: float = 0.0
    calls: int = 0
    entries: list[str] = field(default_factory=list)
    check_s: float = 0.0  # time in the differential check (not part of `seconds`)
    checks: list[Any] = field(default_factory=list)  # one transform_check.Outcome per checked call
    evidence: Recorder = field(default_factory=lambda: Recorder(None))  # the plugin's, in a matrix cell

    def reset(self) -> None:
        self.seconds, self.calls, self.entries, self.check_s, self.checks = 0.0, 0, [], 0.0, []

    def transform_check(self) -> str | None:
        """The test's transform_check: "passed", "skipped: why", "failed: what", "off: why"; None if nothing was checked."""
        from tools.matrix.runtime.transform_check import summarize

        return summarize(self.checks)


class Variant:
    """Base class. Subclasses set `entry_points` and override `before` and/or `after`."""

    entry_points: tuple[str, ...] = ()
    # True: `after` returns a transformed program, which the differential check compares with the
    # untransformed one on the call's inputs (`check_programs` says what to run).
    checks_numerics: bool = False

    def __init__(self, name: str, ledger: TransformLedger | None = None, check_off: str | None = None):
        self.name = name
        self.ledger = ledger or TransformLedger()
        # Why the differential check is off for this process (None: on): the cell's transform_check_off.
        self.check_off = check_off or None

    def before(self, call: Call) -> Call:
        """Change the call's arguments (e.g. force strict=True). Default: unchanged."""
        return call

    def after(self, call: Call, result: Any) -> Any:
        """Transform the entry point's result. Default: unchanged."""
        return result

    def check_programs(self, call: Call, result: Any, transformed: Any) -> CheckedPrograms:
        """What the differential check of this call runs (see CheckedPrograms)."""
        raise NotImplementedError(f"{type(self).__name__} sets checks_numerics but does not say which programs to compare")

    def check_result(self, call: Call, result: Any, transformed: Any) -> None:
        """The differential check of one wrapped call, after `after` (a variant whose programs come
        into being later, e.g. when a returned function is called, overrides this and calls `check`)."""
        self.check(call.entry, lambda: self.check_programs(call, result, transformed))

    def check(self, entry: str, programs: Callable[[], CheckedPrograms]) -> None:
        """Run the differential check on what `programs()` returns (see check_programs); record its
        outcome in the ledger; raise VariantNumericsMismatch when the programs compute different things."""
        from tools.matrix.runtime import transform_check

        if self.check_off:
            self.ledger.checks.append(transform_check.Outcome(transform_check.OFF, self.check_off))
            self.ledger.evidence.checked(self.ledger.checks[-1].summary(), 0.0)
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
        self.ledger.check_s += elapsed
        self.ledger.checks.append(outcome)
        self.ledger.evidence.checked(outcome.summary(), elapsed)
        if outcome.verdict == transform_check.FAILED:
            raise VariantNumericsMismatch(f"variant {self.name!r} changed what the result of {entry} computes: {outcome.detail}")

    def keep_payload(self, name: str, data: bytes | str, what: str) -> None:
        """Keep what this transform serialized as evidence (`name`: a file name, e.g. "program.pt2";
        `what`: what it is). Call it as soon as the bytes exist: a crash later keeps them."""
        self.ledger.evidence.payload(name, data, what)

    def evidence_program(self, result: Any) -> Any | None:
        """The program `after` transforms, for the evidence (None: there is none at the call, e.g. a
        variant whose programs come into being later; it passes them to `transforming` then)."""
        return result if self.checks_numerics else None

    @contextmanager
    def transforming(self, entry: str, program: Any | None = None) -> Iterator[Callable[[Any], None]]:
        """Time a transform and turn its failure into a VariantTransformError. With `program` (what
        it transforms) it also records evidence: the text of `program` now, and of the transformed
        program when the block passes it to the function this yields."""
        evidence = self.ledger.evidence
        evidence_s = evidence.seconds
        start = time.perf_counter()
        if program is not None:
            evidence.begin(entry, program)
        try:
            yield evidence.transformed if program is not None else _ignore
        except Exception as e:
            message = f"variant {self.name!r} failed to transform the result of {entry}: {type(e).__name__}: {e}"
            if program is not None:
                evidence.failed(message)
            raise VariantTransformError(message) from e
        finally:
            self.ledger.seconds += time.perf_counter() - start - (evidence.seconds - evidence_s)  # the evidence's time is its own
            self.ledger.calls += 1
            self.ledger.entries.append(entry)

    def wrap(self, entry: str, original: Any) -> Any:
        """The replacement installed for `entry`. Functions by default; override for classes."""

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = Call(entry, original, args, kwargs)
            with self.transforming(entry):
                call = self.before(call)
            result = call.invoke()  # the API's own errors propagate untouched: tests may expect them
            with self.transforming(entry, program=self.evidence_program(result)) as transformed_into:
                transformed = self.after(call, result)
                transformed_into(transformed)
            if self.checks_numerics:
                self.check_result(call, result, transformed)
            return transformed

        wrapper.__matrix_variant__ = self.name  # type: ignore[attr-defined]
        wrapper.__matrix_original__ = original  # type: ignore[attr-defined]
        return wrapper


def _ignore(program: Any) -> None:
    """What `transforming` yields when it records no evidence."""


# Read once, when the runtime loads the variant (before any test module): a test that changes or
# clears the environment must not make the transform fail.
_SCRATCH_ROOT = os.environ.get("TEST_TMPDIR")


def scratch_dir() -> str:
    """Where variants write files: under TEST_TMPDIR when Bazel runs the test."""
    return tempfile.mkdtemp(prefix="variant-", dir=_SCRATCH_ROOT)


def load_variant(impl: str, name: str, ledger: TransformLedger, check_off: str | None = None) -> Variant:
    """The variant `name` of class `impl` (see load_variant_class), created; any failure to import
    or create it is one VariantLoadError line."""
    cls = load_variant_class(impl)
    try:
        return cls(name, ledger, check_off=check_off)
    except Exception as e:  # noqa: BLE001 - a plug-in's constructor may raise anything
        raise VariantLoadError(f"variant impl {impl!r}: creating {cls.__name__}({name!r}) raised {_raised(e, None)}") from None


def load_variant_class(impl: str) -> type[Variant]:
    """Import `package.module:ClassName` and check it is a Variant subclass. Whatever importing the
    module raises (any exception, sys.exit) is one VariantLoadError line: the exception, its
    message's first line, and where it was raised."""
    module_name, _, class_name = impl.partition(":")
    if not module_name or not class_name:
        raise VariantLoadError(f"variant impl {impl!r} must look like package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        # Under Bazel the module reaches the cell only through the variant's library (matrix.yaml
        # `library`, or the one generate writes): a missing file there is the usual cause.
        raise VariantLoadError(
            f"variant impl {impl!r}: cannot import {module_name!r}: {e} "
            "(is the module in the srcs of the variant's `library` in matrix.yaml?)"
        ) from None
    except (Exception, SystemExit) as e:  # noqa: BLE001 - a plug-in module may raise anything at import
        raise VariantLoadError(f"variant impl {impl!r}: importing {module_name!r} raised {_raised(e, _origin(module_name))}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise VariantLoadError(f"variant impl {impl!r}: {module_name}.{class_name} is not a tools.matrix.variants.Variant subclass")
    return cls


def _raised(error: BaseException, module_file: str | None) -> str:
    """`Type: first line of the message (at file:line[, from module_file:line])`: where it was raised
    (a SyntaxError: the line that does not parse), and the line of the plug-in's module that led there."""
    syntax = isinstance(error, SyntaxError) and error.filename
    lines = str(error.msg if syntax else error).strip().splitlines()  # type: ignore[attr-defined]
    message = (lines[0][:300] + (" ..." if len(lines) > 1 or len(lines[0]) > 300 else "")) if lines else ""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<frozen ")]
    at = (error.filename, error.lineno) if syntax else (frames[-1].filename, frames[-1].lineno) if frames else None  # type: ignore[attr-defined]
    mine = [(f.filename, f.lineno) for f in frames if module_file and os.path.abspath(f.filename) == module_file]
    where = [f"{_shown(at[0])}:{at[1]}"] if at else []
    if mine and mine[-1] != at:
        where.append(f"from {_shown(mine[-1][0])}:{mine[-1][1]}")
    return f"{type(error).__name__}{': ' + message if message else ''}" + (f" (at {', '.join(where)})" if where else "")


def _origin(module_name: str) -> str | None:
    """The file of `module_name` (which failed to import: its parents did), or None."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (Exception, SystemExit):  # noqa: BLE001 - a parent package that raises, again
        return None
    return os.path.abspath(spec.origin) if spec and spec.origin else None


def _shown(path: str) -> str:
    """`path` relative to the working directory (the workspace, or Bazel's runfiles) when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
