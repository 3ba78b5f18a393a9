"""Variants: ways of transforming what an API under test returns before the test sees it.

A variant is a `Variant` subclass, referenced from matrix.yaml as `impl: package.module:ClassName`.
It names the entry points it supports (dotted names such as `torch.export.export`) and transforms
each call's arguments (`before`) and/or result (`after`). The runtime installs it for the whole test
process; the base test is unaware. A transform never falls back to the untransformed object: when it
raises, the test fails with a `VariantTransformError` that the report keeps apart from assertion
failures.

A variant whose `after` returns a transformed program (`checks_numerics = True`) is also checked:
on the call's own inputs the transformed program must compute what the untransformed one computes;
a difference fails the test with VariantNumericsMismatch. Each such transform also leaves evidence
for the report: the program before and after it as text, what it serialized (`keep_payload`) and the
check's outcome. The variant's `host` does that work: the runtime gives each variant its own
(tools/matrix/runtime/transform_host.py); this module knows nothing of the runtime, and outside it a
variant's transforms simply run.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any


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


class Host:
    """What is done around a variant's transforms. This base does nothing: outside the runtime a
    variant's transforms simply run (their failures still raise VariantTransformError). The runtime's
    host (tools/matrix/runtime/transform_host.py) times them, keeps their evidence and runs the
    differential check."""

    @contextmanager
    def transform(self, entry: str, program: Any | None) -> Iterator[Callable[[Any], None]]:
        """Around one transform of `entry`'s result `program` (None: nothing to keep as evidence);
        yields the function the block passes the transformed program to. A VariantTransformError
        raised in the block passes through it."""
        yield _ignore

    def payload(self, name: str, data: bytes | str, what: str) -> None:
        """Keep what a transform serialized (see Variant.keep_payload)."""

    def check(self, variant: str, entry: str, programs: Callable[[], CheckedPrograms]) -> None:
        """The differential check of one call (see Variant.check): raises VariantNumericsMismatch."""


class Variant:
    """Base class. Subclasses set `entry_points` and override `before` and/or `after`."""

    entry_points: tuple[str, ...] = ()
    # True: `after` returns a transformed program, which the differential check compares with the
    # untransformed one on the call's inputs (`check_programs` says what to run).
    checks_numerics: bool = False

    def __init__(self, name: str, host: Host | None = None):
        self.name = name
        self.host = host or Host()  # the runtime's, in a matrix cell

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
        """Run the differential check on what `programs()` returns (see check_programs); raise
        VariantNumericsMismatch when the programs compute different things."""
        self.host.check(self.name, entry, programs)

    def keep_payload(self, name: str, data: bytes | str, what: str) -> None:
        """Keep what this transform serialized as evidence (`name`: a file name, e.g. "program.pt2";
        `what`: what it is). Call it as soon as the bytes exist: a crash later keeps them."""
        self.host.payload(name, data, what)

    def evidence_program(self, result: Any) -> Any | None:
        """The program `after` transforms, for the evidence (None: there is none at the call, e.g. a
        variant whose programs come into being later; it passes them to `transforming` then)."""
        return result if self.checks_numerics else None

    @contextmanager
    def transforming(self, entry: str, program: Any | None = None) -> Iterator[Callable[[Any], None]]:
        """Run a transform, turning its failure into a VariantTransformError (a transform never falls
        back to the untransformed object). With `program` (what it transforms) the evidence keeps
        its text now, and the transformed program's when the block passes it to the function this
        yields."""
        with self.host.transform(entry, program) as transformed_into:
            try:
                yield transformed_into
            except Exception as e:
                raise VariantTransformError(f"variant {self.name!r} failed to transform the result of {entry}: {type(e).__name__}: {e}") from e

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
    """What a host that keeps no evidence yields from `transform`."""


# Read once, when the runtime loads the variant (before any test module): a test that changes or
# clears the environment must not make the transform fail.
_SCRATCH_ROOT = os.environ.get("TEST_TMPDIR")


def scratch_dir() -> str:
    """Where variants write files: under TEST_TMPDIR when Bazel runs the test."""
    return tempfile.mkdtemp(prefix="variant-", dir=_SCRATCH_ROOT)


def load_variant(impl: str, name: str, host: Host) -> Variant:
    """The variant `name` of class `impl` (see load_variant_class), created with `host`; any failure
    to import or create it is one VariantLoadError line."""
    cls = load_variant_class(impl)
    try:
        return cls(name, host)
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
