"""The differential check of a transforming variant: on the inputs of the call the variant wrapped,
does the transformed program compute what the untransformed one computes?

`compare` runs the untransformed program twice and the transformed one once, each on a fresh deep
copy of the call's inputs, with gradients off, under PyTorch's deterministic algorithms and with
uninitialised memory filled (uninitialised.Filled): the untransformed program under (seed, pattern)
(SEEDS[0], 0) then (SEEDS[1], 1), the transformed one under (SEEDS[0], 0). It compares the
parameters and buffers both programs have (by name) before the runs, then the outputs, the inputs'
tensors after the call and those buffers after it (in-place updates are part of what a program
computes): pytree structure, then per leaf dtype, shape, device and values
(torch.testing.assert_close's default tolerances by dtype, exact for integers and bool, NaN equal to
NaN). The state the test sees afterwards is put back: the RNG states, grad mode, the deterministic
settings, and the values of every parameter, buffer and tensor constant of the programs.

The check fails a test only for the transform's doing, never for what the untransformed program
already does on these inputs:
- Results that depend on the RNG or on uninitialised memory (torch.empty read before written, in
  forward) differ between the untransformed program's two runs: such programs are `skipped`, never
  compared, with the reason (which of the two, and the ops that returned uninitialised memory). Two
  plain runs could not tell: a random op gives the same values under the same seed, and the
  allocator often hands back the same garbage twice. Filled memory also makes every run repeatable,
  so the transformed program never differs by the luck of what memory held.
- Values a transform may legitimately compute differently: state or inputs holding NaN, infinities,
  subnormals or magnitudes whose fourth power overflows (what torch.empty at init leaves, or an
  overflow-prone decomposition meets). On a mismatch where the untransformed program's state or
  inputs hold such values, both programs run again with those elements set to 1: if they agree
  there, the test is `skipped` naming the value; if not, the mismatch stands.
Anything that makes the answer unknowable is `skipped` with its reason, never `passed`.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PASSED, SKIPPED, FAILED, OFF = "passed", "skipped", "failed", "off"
SEEDS = (1234, 98765)
PATTERNS = (0, 1)  # uninitialised.Filled's two fill patterns
TAME = 1.0  # what an extreme value of the state or inputs becomes in the second look at a mismatch
# Where a call_function target may come from without side effects the test could observe.
_PURE_MODULES = ("torch", "operator", "math", "builtins", "_operator")


@dataclass(frozen=True)
class Outcome:
    """One call's check: `verdict` is PASSED, SKIPPED, FAILED or OFF; `detail` the reason or mismatch."""

    verdict: str
    detail: str = ""
    seconds: float = 0.0

    def summary(self) -> str:
        return f"{self.verdict}: {self.detail}" if self.detail else self.verdict


def summarize(outcomes: Sequence[Outcome]) -> str | None:
    """A test's transform_check from its calls' outcomes: failed > skipped > off > passed; None: no call checked."""
    for verdict in (FAILED, SKIPPED, OFF, PASSED):
        hits = [o for o in outcomes if o.verdict == verdict]
        if hits:
            of = f" ({len(hits)} of {len(outcomes)} calls)" if len(outcomes) > 1 and verdict != PASSED else ""
            return hits[0].summary() + of
    return None


class _Skip(Exception):
    """The check cannot decide; the message is the reason."""


class Mismatch(Exception):
    """The transformed program computes something else; the message names the leaf and the difference."""


def compare(
    original: Callable[..., Any], transformed: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], state: Sequence[Any] = ()
) -> Outcome:
    """Check `transformed(*args, **kwargs)` against `original(*args, **kwargs)`. `state`: more objects
    (modules, ExportedPrograms, tensors) whose tensors the runs may change and the test will see again."""
    import torch

    start = time.perf_counter()

    def done(verdict: str, detail: str = "") -> Outcome:
        return Outcome(verdict, detail, time.perf_counter() - start)

    try:
        _refuse_uncomparable(torch, original, transformed, (args, kwargs))
        with _preserved(torch, [original, transformed, *state]) as restore, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _compare_state(torch, original, transformed)

            untransformed, transformed_ = (original, "the untransformed program"), (transformed, "the transformed program")

            def run(program: tuple[Any, str], seed: int, pattern: int, tame: bool = False) -> _Result:
                return _run(torch, program[0], args, kwargs, seed, pattern, restore, program[1], tame)

            first = run(untransformed, SEEDS[0], PATTERNS[0])
            try:
                _compare_results(torch, first, run(untransformed, SEEDS[1], PATTERNS[1]))
            except Mismatch as e:
                raise _Skip(_why_it_varies(torch, first, lambda: run(untransformed, SEEDS[0], PATTERNS[1]), e)) from None
            try:
                second = run(transformed_, SEEDS[0], PATTERNS[0])
            except _Skip as e:  # the untransformed program ran on these inputs: failing now is the transform's doing
                raise Mismatch(str(e).replace("cannot be compared: ", "", 1)) from None
            try:
                _compare_results(torch, first, second)
            except Mismatch as e:
                extreme = _extreme_value(torch, original, (args, kwargs))
                if extreme:
                    _unless_only_there(torch, extreme, e, lambda: [run(p, SEEDS[0], PATTERNS[0], tame=True) for p in (untransformed, transformed_)])
                raise
    except _Skip as e:
        return done(SKIPPED, str(e))
    except Mismatch as e:
        return done(FAILED, str(e))
    except Exception as e:  # noqa: BLE001 - a fault of the check itself must never fail the test
        return done(SKIPPED, f"the check itself failed ({type(e).__name__}: {e})"[:500])
    return done(PASSED)


def _refuse_uncomparable(torch: Any, original: Any, transformed: Any, inputs: Any) -> None:
    from torch.utils import _pytree as pytree
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    if _get_current_dispatch_mode() is not None:
        raise _Skip(f"a dispatch mode ({type(_get_current_dispatch_mode()).__name__}) is active at the call")
    for leaf in pytree.tree_leaves(inputs):
        if isinstance(leaf, torch.Tensor) and (leaf.is_meta or type(leaf).__name__ == "FakeTensor"):
            raise _Skip("the call's inputs are fake or meta tensors (no values to compare)")
    for program in (original, transformed):
        impure = _python_callable(torch, program)
        if impure:
            raise _Skip(f"the program calls the Python function {impure} (side effects the test could see)")


def _python_callable(torch: Any, program: Any) -> str | None:
    """The name of a plain Python function a graph of `program` calls, if any (its side effects would
    happen once per run of the check)."""
    if not isinstance(program, torch.nn.Module):
        return None
    for module in program.modules():
        graph = getattr(module, "graph", None)
        if not isinstance(graph, torch.fx.Graph):
            continue
        for node in graph.nodes:
            if node.op != "call_function":
                continue
            target = node.target
            if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket, torch._ops.HigherOrderOperator)):
                continue
            where = getattr(target, "__module__", None) or type(target).__module__ or ""
            if where.split(".")[0] not in _PURE_MODULES:
                return f"{where}.{getattr(target, '__qualname__', target)}"
    return None


def _state_tensors(torch: Any, objects: Sequence[Any]) -> list[Any]:
    from torch.export import ExportedProgram

    found: dict[int, Any] = {}
    for obj in objects:
        if isinstance(obj, torch.Tensor):
            found[id(obj)] = obj
        elif isinstance(obj, ExportedProgram):
            for value in (*obj.state_dict.values(), *obj.constants.values()):
                if isinstance(value, torch.Tensor):
                    found[id(value)] = value
        elif isinstance(obj, torch.nn.Module):
            for module in obj.modules():
                for value in (*module._parameters.values(), *module._buffers.values(), *vars(module).values()):
                    if isinstance(value, torch.Tensor):
                        found[id(value)] = value
    return list(found.values())


@contextmanager
def _preserved(torch: Any, objects: Sequence[Any]) -> Iterator[Callable[[bool], None]]:
    """Yields `restore(tame)` (puts the programs' tensors back, called before each run; `tame`: with
    their extreme values set to TAME); runs the block under deterministic algorithms; on exit
    restores the tensors, the RNG states, grad mode and the deterministic settings."""
    from torch.utils import deterministic

    saved = [(t, t.detach().clone()) for t in _state_tensors(torch, objects) if not t.is_meta]
    grad = torch.is_grad_enabled()
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    settings = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    fill = deterministic.fill_uninitialized_memory

    def restore(tame: bool = False) -> None:
        for tensor, value in saved:
            with torch.inference_mode() if tensor.is_inference() else torch.no_grad():
                if tensor.shape == value.shape and tensor.dtype == value.dtype:
                    tensor.copy_(value)
                else:  # resized in place: give it back its old storage's copy
                    tensor.set_(value.clone())
                if tame:
                    _tame(torch, tensor)

    # Repeatable runs where PyTorch can make them so (CUDA's atomics, memory allocated inside kernels);
    # warn_only: an op without a deterministic implementation still runs (its warning is ignored).
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    try:
        yield restore
    finally:
        restore()
        torch.set_grad_enabled(grad)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        torch.use_deterministic_algorithms(settings[0], warn_only=settings[1])
        deterministic.fill_uninitialized_memory = fill


@dataclass(frozen=True)
class _Result:
    """What one run computed (copies), and the ops that returned uninitialised memory during it."""

    outputs: Any
    inputs: Any  # (args, kwargs) after the call
    buffers: dict[str, Any]
    uninitialised: frozenset[str]


def _run(
    torch: Any,
    program: Callable[..., Any],
    args: Sequence[Any],
    kwargs: dict[str, Any],
    seed: int,
    pattern: int,
    restore: Callable[[bool], None],
    what: str,
    tame: bool = False,
) -> _Result:
    """One run on fresh copies of the inputs (the programs' tensors put back first), under `seed`,
    with uninitialised memory filled with `pattern`; `tame`: the state's and inputs' extreme values set to TAME."""
    from torch.utils import _pytree as pytree

    from tools.matrix.runtime.uninitialised import Filled

    try:
        args, kwargs = copy.deepcopy((tuple(args), dict(kwargs)))
    except Exception as e:  # noqa: BLE001
        raise _Skip(f"the call's inputs cannot be deep-copied ({type(e).__name__}: {e})"[:300]) from None
    restore(tame)
    if tame:
        for leaf in pytree.tree_leaves((args, kwargs)):
            if isinstance(leaf, torch.Tensor):
                with torch.no_grad():
                    _tame(torch, leaf)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)
    filled = Filled(pattern)
    try:
        with torch.no_grad(), filled:
            outputs = program(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        raise _Skip(f"cannot be compared: {what} raised {type(e).__name__}: {_first_line(str(e))}"[:500]) from None
    # Copies: an output may alias a buffer, which `restore` puts back before the next run.
    outputs = pytree.tree_map(lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v, outputs)
    buffers = {name: b.detach().clone() for name, b in program.named_buffers()} if isinstance(program, torch.nn.Module) else {}
    return _Result(outputs, (args, kwargs), buffers, frozenset(filled.ops))


def _why_it_varies(torch: Any, first: _Result, under_other_pattern: Callable[[], _Result], mismatch: Mismatch) -> str:
    """Why the untransformed program's two runs differ: the memory it reads uninitialised (the same
    seed, the other fill pattern, still differs), else the RNG or something else that varies."""
    if first.uninitialised:
        try:
            _compare_results(torch, first, under_other_pattern())
        except Mismatch as e:
            ops = ", ".join(sorted(first.uninitialised))
            return f"the untransformed program's results depend on uninitialised memory (from {ops}: read before written) ({e})"
    return f"the untransformed program's results depend on the RNG or vary between runs ({mismatch})"


def _extreme(torch: Any, tensor: Any) -> Any:
    """The mask of `tensor`'s extreme values (NaN, infinities, subnormals, magnitudes whose fourth
    power overflows its dtype: where transforms may legitimately compute differently), or None."""
    if not (isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.layout == torch.strided) or tensor.is_meta:
        return None
    info, magnitude = torch.finfo(tensor.dtype), tensor.detach().abs()
    return ~torch.isfinite(magnitude) | (magnitude > info.max**0.25) | ((magnitude > 0) & (magnitude < info.tiny))


def _tame(torch: Any, tensor: Any) -> None:
    mask = _extreme(torch, tensor)
    if mask is not None:
        tensor.masked_fill_(mask, TAME)


def _extreme_value(torch: Any, program: Any, inputs: Any) -> str | None:
    """The first extreme value of `program`'s parameters, buffers and tensor constants, or of the
    inputs, as `buffer b[0, 1] = 1e+20`; None if there is none."""
    from torch.utils import _pytree as pytree

    named: list[tuple[str, Any]] = [(f"input{pytree.keystr(path)}", leaf) for path, leaf in pytree.tree_flatten_with_path(inputs)[0]]
    if isinstance(program, torch.nn.Module):
        named += [(f"parameter {n}", t) for n, t in program.named_parameters()] + [(f"buffer {n}", t) for n, t in program.named_buffers()]
        for prefix, module in program.named_modules():
            named += [(f"constant {prefix + '.' if prefix else ''}{n}", t) for n, t in vars(module).items() if isinstance(t, torch.Tensor)]
    for name, tensor in named:
        mask = _extreme(torch, tensor)
        if mask is not None and bool(mask.any()):
            at = [int(i) for i in mask.nonzero()[0]]
            return f"{name}{at if at else ''} = {float(tensor.detach()[tuple(at)]):.6g}"
    return None


def _unless_only_there(torch: Any, extreme: str, mismatch: Mismatch, tame: Callable[[], list[_Result]]) -> None:
    """Raise _Skip when the programs agree once the extreme values of the state and inputs are tamed
    (`tame()`: both programs' runs so): they differ only where a transform may legitimately compute differently."""
    try:
        _compare_results(torch, *tame())
    except Mismatch:
        return  # they differ on tame values too: the transform's doing
    except _Skip as e:
        raise _Skip(f"the programs differ where the state or inputs hold extreme values ({extreme}): {mismatch}; on tame values {e}") from None
    raise _Skip(
        f"the programs differ only where the state or inputs hold extreme values ({extreme}: uninitialised memory? "
        f"transforms may legitimately compute differently there): {mismatch}"
    )


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _compare_results(torch: Any, expected: _Result, actual: _Result) -> None:
    """Raise Mismatch naming the first leaf where `actual` differs from `expected`."""
    from torch.utils import _pytree as pytree

    out_e, inputs_e, buffers_e = expected.outputs, expected.inputs, expected.buffers
    out_a, inputs_a, buffers_a = actual.outputs, actual.inputs, actual.buffers
    leaves_e, spec_e = pytree.tree_flatten_with_path(out_e)
    leaves_a, spec_a = pytree.tree_flatten_with_path(out_a)
    if spec_e != spec_a:
        raise Mismatch(f"the outputs' structure differs: {_short(spec_a)} instead of {_short(spec_e)}")
    for (path, e), (_, a) in zip(leaves_e, leaves_a):
        _compare_leaf(torch, f"output{pytree.keystr(path)}", e, a)
    # In-place updates of the inputs are part of what the program computes.
    for (path, e), (_, a) in zip(pytree.tree_flatten_with_path(inputs_e)[0], pytree.tree_flatten_with_path(inputs_a)[0]):
        if isinstance(e, torch.Tensor):
            _compare_leaf(torch, f"input{pytree.keystr(path)} after the call", e, a)
    # So are buffer updates (BatchNorm's running stats): compared by name where both programs have it.
    for name in buffers_e.keys() & buffers_a.keys():
        _compare_leaf(torch, f"buffer {name} after the call", buffers_e[name], buffers_a[name])


def _compare_state(torch: Any, original: Any, transformed: Any) -> None:
    """The parameters and buffers both programs have (by name) hold the same values before any run."""
    if not (isinstance(original, torch.nn.Module) and isinstance(transformed, torch.nn.Module)):
        return
    for kind, named in (("parameter", "named_parameters"), ("buffer", "named_buffers")):
        mine, theirs = dict(getattr(original, named)()), dict(getattr(transformed, named)())
        for name in sorted(mine.keys() & theirs.keys()):
            _compare_leaf(torch, f"{kind} {name} before the call", mine[name].detach(), theirs[name].detach())


def _short(spec: Any) -> str:
    text = str(spec).replace("\n", " ")
    return text if len(text) <= 200 else text[:200] + "..."


def _compare_leaf(torch: Any, name: str, expected: Any, actual: Any) -> None:
    if isinstance(expected, torch.Tensor) != isinstance(actual, torch.Tensor):
        raise Mismatch(f"{name}: {type(actual).__name__} instead of {type(expected).__name__}")
    if not isinstance(expected, torch.Tensor):
        _compare_scalar(name, expected, actual)
        return
    for what in ("dtype", "shape", "layout"):
        if getattr(expected, what) != getattr(actual, what):
            raise Mismatch(f"{name}: {what} {getattr(actual, what)} instead of {getattr(expected, what)}")
    if expected.device.type != actual.device.type:
        raise Mismatch(f"{name}: device {actual.device} instead of {expected.device}")
    try:
        torch.testing.assert_close(actual, expected, equal_nan=True, check_device=False)
    except AssertionError:
        raise Mismatch(f"{name}: {_difference(torch, expected, actual)}") from None
    except Exception as e:  # noqa: BLE001 - e.g. a tensor subclass assert_close does not know
        raise _Skip(f"{name} cannot be compared ({type(e).__name__}: {_first_line(str(e))})"[:300]) from None


def _difference(torch: Any, expected: Any, actual: Any) -> str:
    """Max absolute / relative difference, and where (NaN against a number counts as infinite)."""
    e, a = expected.detach().cpu(), actual.detach().cpu()
    if e.is_sparse or a.is_sparse:
        e, a = e.to_dense(), a.to_dense()
    wide = torch.complex128 if e.is_complex() else torch.float64
    e, a = e.to(wide), a.to(wide)
    diff = (a - e).abs()
    both_nan = torch.isnan(e) & torch.isnan(a)
    diff = torch.where(both_nan, torch.zeros_like(diff), torch.nan_to_num(diff, nan=math.inf))
    rel = torch.where(diff == 0, torch.zeros_like(diff), diff / e.abs())
    index = int(diff.argmax()) if diff.numel() else 0
    at = tuple(int(i) for i in torch.unravel_index(torch.tensor(index), e.shape)) if e.dim() else ()
    exact = "" if expected.is_floating_point() or expected.is_complex() else " (exact comparison for integer and bool)"
    return (
        f"max abs difference {float(diff.max()):.6g} at index {list(at)} "
        f"({_item(actual, at)} instead of {_item(expected, at)}), max rel difference {float(rel.max()):.6g}{exact}"
    )


def _item(tensor: Any, at: tuple[int, ...]) -> str:
    value = tensor.detach().cpu()
    value = value.to_dense() if value.is_sparse else value
    return f"{value[at].item():.6g}" if value.is_floating_point() else str(value[at].item())


def _compare_scalar(name: str, expected: Any, actual: Any) -> None:
    if type(expected) is not type(actual):
        raise Mismatch(f"{name}: {type(actual).__name__} {actual!r:.80} instead of {type(expected).__name__} {expected!r:.80}")
    if isinstance(expected, float):
        if not (
            expected == actual
            or math.isclose(expected, actual, rel_tol=1.3e-6, abs_tol=1e-5)
            or (math.isnan(expected) and math.isnan(actual))
        ):
            raise Mismatch(f"{name}: {actual!r} instead of {expected!r}")
        return
    try:
        equal = bool(expected == actual)
    except Exception:  # noqa: BLE001 - an object without a usable ==: nothing to compare
        return
    if not equal and isinstance(expected, (int, bool, str, bytes, complex, type(None))):
        raise Mismatch(f"{name}: {actual!r:.80} instead of {expected!r:.80}")
