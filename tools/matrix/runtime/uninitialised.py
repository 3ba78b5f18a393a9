"""Uninitialised memory made explicit, for the differential check (transform_check.py).

While `Filled(pattern)` is active, every tensor an op hands back uninitialised (torch.empty and its
kin, the elements resize_ adds) is filled with one of two patterns, and the op is noted. A program's
results then never depend on what the allocator happened to hand back (which is often the same
garbage twice, so two plain runs cannot tell), and two runs under the two patterns show whether they
depend on it at all.

The patterns differ in every way a program could look at a value: NaN against the largest finite
value (floating and complex), the largest against the smallest integer, True against False. Pattern
0 is what PyTorch itself fills with under torch.utils.deterministic.fill_uninitialized_memory.
"""

from __future__ import annotations

import functools
import math
import types
from typing import Any

import torch
from torch._ops import HigherOrderOperator
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

PATTERNS = (0, 1)
# Ops (aten and prims, by overload packet) whose result holds uninitialised memory.
_ALLOCATING = frozenset({"empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted"})
# Ops that may grow their first argument in place: the elements past its old size are uninitialised.
_GROWING = frozenset({"resize_", "resize_as_"})
# The arguments of a higher-order operator that are functions it calls.
_BODIES = (torch.nn.Module, types.FunctionType, types.MethodType, functools.partial)


class Filled(TorchDispatchMode):
    """Fills uninitialised memory with `pattern` (0 or 1); `ops` names the ops that returned some."""

    # torch.cond, while_loop, map, scan...: run here, so that what their bodies allocate is filled too.
    supports_higher_order_operators = True

    def __init__(self, pattern: int) -> None:
        super().__init__()
        self.pattern = pattern
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        if isinstance(func, HigherOrderOperator):
            return self._higher_order(func, args, kwargs or {})
        name = func.overloadpacket.__name__
        grown_from = args[0].numel() if name in _GROWING else None
        out = func(*args, **(kwargs or {}))
        if (name in _ALLOCATING or grown_from is not None) and _fill(out, grown_from, self.pattern):
            self.ops.add(str(func))
        return out

    def _higher_order(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the operator (torch.cond, while_loop, map...) as it is, with this mode active inside the
        functions it calls (its branches and bodies: modules and Python functions, not the ops some
        operators take, as auto_functionalized does): its eager implementation refuses an active mode."""

        def inside(fn: Any) -> Any:
            def filled(*a: Any, **k: Any) -> Any:
                with self:
                    return fn(*a, **k)

            return filled

        args, kwargs = pytree.tree_map(lambda v: inside(v) if isinstance(v, _BODIES) else v, (args, kwargs))
        return func(*args, **kwargs)


def _fill(tensor: Any, grown_from: int | None, pattern: int) -> bool:
    """Fill what `tensor` holds uninitialised with `pattern`'s value: all of it, or the elements past
    `grown_from` (in storage order) when it was grown in place. False when there is nothing a program
    could read (no new elements, no values: meta, sparse, quantized)."""
    if tensor.numel() <= (grown_from or 0) or tensor.is_meta or tensor.layout != torch.strided or tensor.is_quantized:
        return False
    if grown_from is not None:  # resize_ keeps the old elements and leaves the tensor dense in storage order
        tensor = tensor.as_strided((tensor.numel(),), (1,), tensor.storage_offset())[grown_from:]
    with torch.no_grad():
        tensor.fill_(fill_value(tensor.dtype, pattern))
    return True


def fill_value(dtype: Any, pattern: int) -> Any:
    if dtype.is_floating_point or dtype.is_complex:
        return math.nan if pattern == 0 else torch.finfo(dtype).max
    if dtype == torch.bool:
        return pattern == 0
    info = torch.iinfo(dtype)
    return info.max if pattern == 0 else info.min
