"""Variants: ways of transforming what an API under test returns before the test sees it.

A variant is a `Variant` subclass, referenced from matrix.yaml as `impl: package.module:ClassName`.
It names the entry points it supports (dotted names such as `torch.export.export`) and transforms
each call's arguments (`before`) and/or result (`after`). The runtime installs it for the whole test
process; the base test is unaware. A transform never falls back to the untransformed object: when it
raises, the test fails with a `VariantTransformError` that the report keeps apart from assertion
failures.
"""

from __future__ import annotations

import functools
import importlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any


class VariantTransformError(Exception):
    """The variant's own transformation failed (not the API under test, not the test's assertion).

    Not a RuntimeError: a test expecting the API's own RuntimeError must not pass on the variant's failure."""


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
    """Time spent in transforms, reset per test by the runtime."""

    seconds: float = 0.0
    calls: int = 0
    entries: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.seconds, self.calls, self.entries = 0.0, 0, []


class Variant:
    """Base class. Subclasses set `entry_points` and override `before` and/or `after`."""

    entry_points: tuple[str, ...] = ()

    def __init__(self, name: str, ledger: TransformLedger | None = None):
        self.name = name
        self.ledger = ledger or TransformLedger()

    def before(self, call: Call) -> Call:
        """Change the call's arguments (e.g. force strict=True). Default: unchanged."""
        return call

    def after(self, call: Call, result: Any) -> Any:
        """Transform the entry point's result. Default: unchanged."""
        return result

    @contextmanager
    def transforming(self, entry: str) -> Iterator[None]:
        """Time a transform and turn its failure into a VariantTransformError."""
        start = time.perf_counter()
        try:
            yield
        except Exception as e:
            raise VariantTransformError(f"variant {self.name!r} failed to transform the result of {entry}: {type(e).__name__}: {e}") from e
        finally:
            self.ledger.seconds += time.perf_counter() - start
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
            with self.transforming(entry):
                return self.after(call, result)

        wrapper.__matrix_variant__ = self.name  # type: ignore[attr-defined]
        wrapper.__matrix_original__ = original  # type: ignore[attr-defined]
        return wrapper


def scratch_dir() -> str:
    """Where variants write files: under TEST_TMPDIR when Bazel runs the test."""
    return tempfile.mkdtemp(prefix="variant-", dir=os.environ.get("TEST_TMPDIR"))


def load_variant_class(impl: str) -> type[Variant]:
    """Import `package.module:ClassName` and check it is a Variant subclass."""
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
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Variant)):
        raise VariantLoadError(f"variant impl {impl!r}: {module_name}.{class_name} is not a tools.matrix.variants.Variant subclass")
    return cls
