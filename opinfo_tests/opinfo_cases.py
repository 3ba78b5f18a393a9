"""Tests generated at collection time from PyTorch's own description of its operators: the OpInfo
database of the installed torch (torch.testing._internal.common_methods_invocations.op_db). No test
code is copied: each test file of this suite names a range of operators (RANGES) and gets one test
function per operator, `test_<OpInfo.formatted_name>` (the name PyTorch's own OpInfo tests use),
parametrized by its sample inputs.

Each test builds a small module that calls the operator on one sample (the sample's tensors are the
module's inputs, everything else is baked in), exports it with torch.export.export (the entry point
the variants wrap: under a variant the test gets the transformed program, and the differential check
and the evidence apply as in any suite), runs the program and compares it with eager: exact for
integers and bool, torch.testing.assert_close's tolerances otherwise. Outputs that depend on the RNG
or on uninitialised memory cannot be compared and are skipped with the reason, never passed (the
runtime's comparison, tools/matrix/runtime/transform_check.py, decides that, not one lucky run).

A test's id is stable: `<dtype>-<sample index>-<digest of the sample's shapes, dtypes and other
arguments>`, so an entry in expectations.yaml names the same sample until the sample itself changes;
an entry for `test_<operator>` covers all its samples.

Configured by the suite's environment (matrix.yaml: suites.opinfo_tests.env):
  OPINFO_DTYPES   the dtypes to take samples in, comma-separated (default: float32)
  OPINFO_SAMPLES  the first N samples of each operator and dtype (default: 10)
  OPINFO_OPS      only these operators (formatted names, comma-separated; default: all), each in its file
The device is the cell's (MATRIX_DEVICE, set by the runtime before collection; cpu outside it).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils import _pytree as pytree

from tools.matrix.runtime.transform_check import FAILED, SKIPPED, compare

DTYPES = tuple(getattr(torch, name.strip()) for name in os.environ.get("OPINFO_DTYPES", "float32").split(",") if name.strip())
SAMPLES = int(os.environ.get("OPINFO_SAMPLES", "10"))
DEVICE = os.environ.get("MATRIX_DEVICE", "cpu")
ONLY = tuple(name.strip() for name in os.environ.get("OPINFO_OPS", "").split(",") if name.strip())

# The operators `bazel test //...` runs (test_slice.py): every variant of CI sees these few dozen,
# chosen to cover what breaks transforms: elementwise math, reductions, views and shape ops,
# indexing and scatter, linear algebra, nn layers, factories, data-dependent shapes, the RNG,
# uninitialised memory, scalar outputs.
SLICE = (
    "abs", "add", "mul", "div_no_rounding_mode", "sin", "exp", "clamp", "where", "pow",
    "sum", "mean", "amax", "argmax", "cumsum", "topk", "sort",
    "reshape", "transpose", "cat", "stack", "split", "squeeze", "expand", "flip", "narrow",
    "index_select", "gather", "scatter_add", "masked_fill", "index_put",
    "mm", "addmm", "bmm", "matmul",
    "nn_functional_relu", "nn_functional_linear", "nn_functional_conv2d", "nn_functional_layer_norm", "softmax",
    "nn_functional_max_pool2d", "nn_functional_embedding",
    "full", "arange", "rand_like", "empty_like", "nonzero", "unique", "item",
)  # fmt: skip

# Every other operator, by the range of its formatted name: test file -> [first, next) in Python's
# string order (upper case, then `_`, then lower case). The ranges cover every name; a new operator
# lands in the file whose range holds its name, so no other file's tests change.
RANGES = {
    "test_ops_underscore.py": ("", "a"),
    "test_ops_a.py": ("a", "b"),
    "test_ops_b_ck.py": ("b", "cl"),
    "test_ops_cl_cz.py": ("cl", "d"),
    "test_ops_d.py": ("d", "e"),
    "test_ops_e.py": ("e", "f"),
    "test_ops_f.py": ("f", "g"),
    "test_ops_g_h.py": ("g", "i"),
    "test_ops_i.py": ("i", "j"),
    "test_ops_j_lin.py": ("j", "linalg"),
    "test_ops_linalg_a_l.py": ("linalg", "linalg_m"),
    "test_ops_linalg_m_z.py": ("linalg_m", "linb"),
    "test_ops_linb_lz.py": ("linb", "m"),
    "test_ops_m_mas.py": ("m", "mat"),
    "test_ops_mat_mz.py": ("mat", "n"),
    "test_ops_n_nn.py": ("n", "nn_functional"),
    "test_ops_nn_functional_a_c.py": ("nn_functional", "nn_functional_d"),
    "test_ops_nn_functional_d_i.py": ("nn_functional_d", "nn_functional_j"),
    "test_ops_nn_functional_j_o.py": ("nn_functional_j", "nn_functional_p"),
    "test_ops_nn_functional_p_r.py": ("nn_functional_p", "nn_functional_s"),
    "test_ops_nn_functional_s_z.py": ("nn_functional_s", "no"),
    "test_ops_no_q.py": ("no", "r"),
    "test_ops_r.py": ("r", "s"),
    "test_ops_s_sparse.py": ("s", "special"),
    "test_ops_special.py": ("special", "spl"),
    "test_ops_spl_sz.py": ("spl", "t"),
    "test_ops_t.py": ("t", "u"),
    "test_ops_u_z.py": ("u", "\U0010ffff"),
}


def operators() -> list[Any]:
    """The OpInfos with samples on this device in one of DTYPES, by formatted name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_methods_invocations import op_db
    device_type = torch.device(DEVICE).type
    ops = sorted((op for op in op_db if set(DTYPES) & set(op.supported_dtypes(device_type))), key=lambda op: op.formatted_name)
    if not ONLY:
        return ops
    if missing := sorted(set(ONLY) - {op.formatted_name for op in ops}):
        raise ValueError(f"OPINFO_OPS names operators op_db has no samples of: {', '.join(missing)} (on {DEVICE} in {DTYPES})")
    return [op for op in ops if op.formatted_name in ONLY]


def file_of(name: str) -> str:
    """The test file that holds the operator `name` (a formatted name)."""
    if name in SLICE:
        return "test_slice.py"
    starts = sorted((first, file) for file, (first, _next) in RANGES.items())
    return starts[bisect.bisect_right([s for s, _ in starts], name) - 1][1]


def generated_tests(test_file: str) -> dict[str, Callable[..., None]]:
    """`test_<operator>` -> its parametrized test, for every operator `test_file` holds."""
    name = Path(test_file).name
    return {f"test_{op.formatted_name}": _test_of(op) for op in operators() if file_of(op.formatted_name) == name}


def _describe(value: Any) -> str:
    """What identifies a sample's argument: a tensor's shape and dtype, a plain value's repr, a
    container's items; an object's type only (its repr may hold an address)."""
    if isinstance(value, torch.Tensor):
        return f"T{list(value.shape)}{str(value.dtype).removeprefix('torch.')}"
    if isinstance(value, (bool, int, float, str, type(None), torch.dtype, torch.memory_format, torch.layout, torch.device, slice)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "(" + ",".join(_describe(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_describe(v)}" for k, v in sorted(value.items())) + "}"
    return type(value).__name__


def _samples(op: Any) -> list[Any]:
    """(id, sample) for the first SAMPLES samples of `op` in each dtype, generated from a seed of the
    operator's own (the values are the same in every process)."""
    found = []
    device_type = torch.device(DEVICE).type
    for dtype in DTYPES:
        if dtype not in op.supported_dtypes(device_type):
            continue
        torch.manual_seed(zlib.crc32(f"{op.formatted_name}/{dtype}".encode()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = op.sample_inputs(DEVICE, dtype, requires_grad=False)
            for index, sample in zip(range(SAMPLES), samples):
                digest = hashlib.sha1(_describe((sample.input, sample.args, sample.kwargs)).encode()).hexdigest()[:6]
                found.append(pytest.param(sample, id=f"{str(dtype).removeprefix('torch.')}-{index}-{digest}"))
    return found


class OperatorCall(torch.nn.Module):
    """`op(*sample)` as a module whose inputs are the sample's tensors (the rest is baked in)."""

    def __init__(self, op: Callable[..., Any], spec: Any, constants: list[tuple[Any] | None]) -> None:
        super().__init__()
        self.op, self.spec, self.constants = op, spec, constants

    def forward(self, *tensors: torch.Tensor) -> Any:
        given = iter(tensors)
        leaves = [next(given) if constant is None else constant[0] for constant in self.constants]
        sample_input, args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return self.op(sample_input, *args, **kwargs)


def program_of(op: Any, sample: Any) -> tuple[OperatorCall, tuple[torch.Tensor, ...]]:
    leaves, spec = pytree.tree_flatten((sample.input, sample.args, sample.kwargs))
    constants = [None if isinstance(leaf, torch.Tensor) else (leaf,) for leaf in leaves]
    return OperatorCall(op.op, spec, constants), tuple(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))


def _reseeds(module: OperatorCall, inputs: tuple[torch.Tensor, ...]) -> bool:
    """Whether calling `module` calls torch.manual_seed: the op's eager values are then those of its
    own seed, while export does not capture the call and the program draws from the caller's RNG."""
    calls = []
    seed = torch.manual_seed
    torch.manual_seed = lambda *a, **k: (calls.append(a), seed(*a, **k))[1]
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module(*inputs)
    except Exception:  # noqa: BLE001 - an op that fails in eager fails the test in export, with its error
        pass
    finally:
        torch.manual_seed = seed
    return bool(calls)


def _test_of(op: Any) -> Callable[..., None]:
    @pytest.mark.parametrize("sample", _samples(op))
    def test(sample: Any) -> None:
        module, inputs = program_of(op, sample)
        if _reseeds(module, inputs):
            pytest.skip(
                f"eager {op.name} seeds the RNG itself (torch.manual_seed, OpInfo's wrapper_set_seed), which no exported program does: its values cannot be compared"
            )
        program = torch.export.export(module, inputs)
        outcome = compare(module, program.module(), inputs, {})
        if outcome.verdict == FAILED:
            raise AssertionError(f"the exported program does not compute what eager {op.name} does: {outcome.detail}")
        if outcome.verdict == SKIPPED:
            pytest.skip(f"eager and exported {op.name} cannot be compared: {outcome.detail}")

    test.__doc__ = f"torch.export of {op.name}{'.' + op.variant_test_name if op.variant_test_name else ''} on its OpInfo samples."
    return test
