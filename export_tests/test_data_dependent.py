"""torch.export with data-dependent values and shapes.

Covers: Tensor.item() used as a scalar and as a size, unbacked sizes bounded
with torch._check / torch._check_is_size (range_constraints and the runtime
assertions they become), ops with data-dependent output shapes (nonzero,
masked_select, boolean indexing, unique, repeat_interleave, bincount), and
the errors export raises on data-dependent Python control flow (exact
exception types), together with the torch.cond / torch._check rewrites that
make such code exportable.
"""

import math

import pytest
import torch
from torch.export import Dim, export
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode


def _bounds(ep):
    """Distinct (lower, upper) bounds of the range constraints; None = infinite.

    Distinct, because strict export may mint a second unbacked symbol with the
    same range for one .item() call.
    """
    out = set()
    for vr in ep.range_constraints.values():
        lo, hi = float(vr.lower), float(vr.upper)
        out.add((None if math.isinf(lo) else int(lo), None if math.isinf(hi) else int(hi)))
    return sorted(out, key=str)


# --------------------------------------------------------------------------
# .item()
# --------------------------------------------------------------------------


class ScaleByItem(torch.nn.Module):
    def forward(self, x, s):
        return x * s.item() + 1


def test_float_item_as_scalar(device):
    x = torch.randn(3, device=device)

    ep = torch.export.export(ScaleByItem(), (x, torch.tensor(2.0, device=device)))

    for s in (2.0, -3.5, 0.0):
        st = torch.tensor(s, device=device)
        torch.testing.assert_close(ep.module()(x, st), x * s + 1)
    # The value is not specialised: an unbounded unbacked float symbol.
    assert _bounds(ep) == [(None, None)]


class OnesOfLength(torch.nn.Module):
    def forward(self, x, n):
        k = n.item()
        torch._check(k >= 0)
        return torch.ones(k, 2, device=x.device) * x


class OnesOfLengthIsSize(torch.nn.Module):
    def forward(self, x, n):
        k = n.item()
        torch._check_is_size(k)
        return torch.ones(k, 2, device=x.device) * x


@pytest.mark.parametrize("cls", [OnesOfLength, OnesOfLengthIsSize], ids=["check_ge0", "check_is_size"])
def test_item_as_size(device, cls):
    x = torch.randn(2, device=device)

    if cls is OnesOfLengthIsSize:
        # Still works on 2.13 but is deprecated in favour of _check(k >= 0).
        with pytest.warns(FutureWarning, match="_check_is_size will be removed"):
            ep = export(cls(), (x, torch.tensor(4, device=device)))
    else:
        ep = export(cls(), (x, torch.tensor(4, device=device)))

    assert _bounds(ep) == [(0, None)]
    for k in (0, 1, 7):
        out = ep.module()(x, torch.tensor(k, device=device))
        assert out.shape == (k, 2)
        torch.testing.assert_close(out, OnesOfLength()(x, torch.tensor(k, device=device)))


def test_negative_size_fails_runtime_assertion(device):
    ep = export(OnesOfLength(), (torch.randn(2, device=device), torch.tensor(4, device=device)))

    with pytest.raises(RuntimeError, match=r"Runtime assertion failed for expression u\d+ >= 0") as info:
        ep.module()(torch.randn(2, device=device), torch.tensor(-1, device=device))
    assert type(info.value) is RuntimeError


def test_item_as_size_without_explicit_check(device):
    class Arange(torch.nn.Module):
        def forward(self, n, x):
            return torch.arange(n.item(), device=x.device) * x

    x = torch.tensor(3, device=device)
    ep = export(Arange(), (torch.tensor(4, device=device), x))

    for n in (1, 6):
        torch.testing.assert_close(
            ep.module()(torch.tensor(n, device=device), x), torch.arange(n, device=device) * 3
        )
    # Using the value as a size implies it is non-negative.
    assert _bounds(ep) == [(0, None)]


class BoundedZeros(torch.nn.Module):
    def forward(self, x, n):
        k = n.item()
        torch._check(k >= 2)
        torch._check(k <= 6)
        return torch.zeros(k, x.shape[0], device=x.device) + x


def test_torch_check_bounds_become_range_constraints(device):
    x = torch.randn(3, device=device)

    ep = export(BoundedZeros(), (x, torch.tensor(3, device=device)))

    assert _bounds(ep) == [(2, 6)]
    for k in (2, 6):
        torch.testing.assert_close(
            ep.module()(x, torch.tensor(k, device=device)), BoundedZeros()(x, torch.tensor(k, device=device))
        )


@pytest.mark.parametrize("k,expr", [(7, "<= 6"), (1, ">= 2")], ids=["above_upper", "below_lower"])
def test_torch_check_violation_at_runtime(device, k, expr):
    ep = export(BoundedZeros(), (torch.randn(3, device=device), torch.tensor(3, device=device)))

    with pytest.raises(RuntimeError, match=f"Runtime assertion failed for expression u\\d+ {expr}"):
        ep.module()(torch.randn(3, device=device), torch.tensor(k, device=device))


class Gather(torch.nn.Module):
    def forward(self, x, i):
        k = i.item()
        torch._check(k >= 0)
        torch._check(k < x.shape[0])
        return x[k] * 2


def test_item_as_index_with_checks(device):
    x = torch.arange(5.0, device=device)

    ep = export(Gather(), (x, torch.tensor(1, device=device)))

    for i in (0, 4):
        torch.testing.assert_close(ep.module()(x, torch.tensor(i, device=device)), x[i] * 2)
    assert _bounds(ep) == [(0, 4)]
    # The user's lambda message is not kept; the failing expression is reported.
    with pytest.raises(RuntimeError, match="Runtime assertion failed"):
        ep.module()(x, torch.tensor(5, device=device))


def test_item_bounded_by_dynamic_dim(device):
    class Head(torch.nn.Module):
        def forward(self, x, n):
            k = n.item()
            torch._check(k >= 0)
            torch._check(k <= x.shape[0])
            return x.narrow(0, 0, k).sum(0)

    ep = export(
        Head(),
        (torch.randn(6, 2, device=device), torch.tensor(3, device=device)),
        dynamic_shapes={"x": {0: Dim("rows", max=20)}, "n": None},
    )

    x = torch.randn(10, 2, device=device)
    for k in (0, 4, 10):
        torch.testing.assert_close(ep.module()(x, torch.tensor(k, device=device)), x[:k].sum(0))
    with pytest.raises(RuntimeError, match="Runtime assertion failed"):
        ep.module()(torch.randn(3, 2, device=device), torch.tensor(4, device=device))


# --------------------------------------------------------------------------
# Ops with data-dependent output shapes
# --------------------------------------------------------------------------


class NonzeroRows(torch.nn.Module):
    def forward(self, x):
        idx = torch.nonzero(x.abs().sum(1) > 1).squeeze(1)
        return idx, x.index_select(0, idx) * 2


def test_nonzero_output_size_varies(device):
    x = torch.tensor([[2.0, 0.0], [0.1, 0.1], [0.0, -3.0], [0.5, 0.2]], device=device)

    ep = export(NonzeroRows(), (x,))

    # The number of hits is bounded by the number of rows.
    assert (0, 4) in _bounds(ep)
    for inp in (x, torch.zeros(4, 2, device=device), torch.full((4, 2), 5.0, device=device)):
        idx, rows = ep.module()(inp)
        ref_idx, ref_rows = NonzeroRows()(inp)
        torch.testing.assert_close(idx, ref_idx)
        torch.testing.assert_close(rows, ref_rows)
    assert ep.module()(torch.zeros(4, 2, device=device))[0].numel() == 0


def test_nonzero_on_dynamic_input(device):
    class Nz(torch.nn.Module):
        def forward(self, x):
            return torch.nonzero(x)

    ep = export(
        Nz(),
        (torch.tensor([0.0, 1.0, 0.0, 2.0], device=device),),
        dynamic_shapes={"x": {0: Dim("n", max=64)}},
    )

    x = (torch.arange(20, device=device) % 3 == 0).float()
    torch.testing.assert_close(ep.module()(x), torch.nonzero(x))
    assert ep.module()(x).shape == (7, 1)


class MaskedSelect(torch.nn.Module):
    def forward(self, x, mask):
        picked = torch.masked_select(x, mask)
        return picked, picked.sum()


def test_masked_select(device):
    torch.manual_seed(0)
    x = torch.randn(2, 3, device=device)
    mask = torch.tensor([[True, False, True], [False, True, True]], device=device)

    ep = export(MaskedSelect(), (x, mask))

    assert (0, 6) in _bounds(ep)
    for m in (mask, ~mask, torch.zeros_like(mask), torch.ones_like(mask)):
        picked, total = ep.module()(x, m)
        torch.testing.assert_close(picked, x[m])
        torch.testing.assert_close(total, x[m].sum())


def test_boolean_mask_indexing_with_broadcast_mask(device):
    class RowMask(torch.nn.Module):
        def forward(self, x, keep):
            return x[keep] + 1

    torch.manual_seed(1)
    x = torch.randn(5, 3, device=device)
    keep = torch.tensor([True, False, True, True, False], device=device)

    ep = export(RowMask(), (x, keep))

    for k in (keep, torch.tensor([False, False, False, False, True], device=device)):
        out = ep.module()(x, k)
        assert out.shape == (int(k.sum()), 3)
        torch.testing.assert_close(out, x[k] + 1)


@pytest.mark.parametrize(
    "op,example,other",
    [
        pytest.param(
            lambda x: torch.unique(x, sorted=True),
            [1, 2, 2, 3, 3, 3],
            [7, 7, 7, 7, 7, 0],
            id="unique",
        ),
        pytest.param(
            lambda x: torch.bincount(x),
            [0, 1, 1, 3],
            [5, 5, 0, 1],
            id="bincount",
        ),
        pytest.param(
            lambda x: torch.repeat_interleave(x),
            [1, 0, 2],
            [3, 1, 0],
            id="repeat_interleave",
        ),
    ],
)
def test_ops_with_data_dependent_output_size(device, op, example, other):
    class Op(torch.nn.Module):
        def forward(self, x):
            return op(x)

    ex = torch.tensor(example, device=device)
    oth = torch.tensor(other, device=device)

    ep = export(Op(), (ex,))

    torch.testing.assert_close(ep.module()(ex), op(ex))
    out = ep.module()(oth)
    torch.testing.assert_close(out, op(oth))
    assert out.shape != op(ex).shape  # a genuinely different output size


def test_reshape_of_unbacked_size_asserts_divisibility(device):
    class Pairs(torch.nn.Module):
        def forward(self, x):
            return torch.nonzero(x).view(2, -1)

    ep = export(Pairs(), (torch.tensor([0.0, 1.0, 0.0, 2.0], device=device),))

    ok = torch.tensor([1.0, 0.0, 0.0, 3.0], device=device)
    torch.testing.assert_close(ep.module()(ok), torch.nonzero(ok).view(2, -1))
    with pytest.raises(
        RuntimeError, match=r"Runtime assertion failed for expression Eq\(Mod\(u\d+, 2\), 0\)"
    ):
        ep.module()(torch.tensor([1.0, 1.0, 1.0, 0.0], device=device))


# --------------------------------------------------------------------------
# Data-dependent control flow
# --------------------------------------------------------------------------


class BranchOnValue(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


def test_python_branch_on_tensor_value_raises(device):
    with pytest.raises(GuardOnDataDependentSymNode, match="Could not guard on data-dependent expression"):
        export(BranchOnValue(), (torch.randn(3, device=device),))


def test_torch_cond_rewrite_of_value_branch(device):
    class WithCond(torch.nn.Module):
        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda t: t * 2, lambda t: t - 1, (x,))

    ep = export(WithCond(), (torch.randn(3, device=device),))

    for x in (torch.ones(3, device=device), -torch.ones(3, device=device)):
        torch.testing.assert_close(ep.module()(x), BranchOnValue()(x))


class BranchOnCount(torch.nn.Module):
    def forward(self, x):
        n = torch.nonzero(x).shape[0]
        if n > 1:
            return x * n
        return x


def test_python_branch_on_unbacked_size_raises(device):
    with pytest.raises(GuardOnDataDependentSymNode, match=r"u\d+ > 1"):
        export(BranchOnCount(), (torch.tensor([0.0, 1.0, 2.0], device=device),))


def test_torch_check_resolves_branch_on_unbacked_size(device):
    class Checked(torch.nn.Module):
        def forward(self, x):
            n = torch.nonzero(x).shape[0]
            torch._check(n > 1)  # tells export which branch is valid
            if n > 1:
                return x * n
            return x

    x = torch.tensor([0.0, 1.0, 2.0], device=device)
    ep = export(Checked(), (x,))

    torch.testing.assert_close(ep.module()(x), BranchOnCount()(x))
    x2 = torch.tensor([4.0, 1.0, 2.0], device=device)
    torch.testing.assert_close(ep.module()(x2), x2 * 3)
    # An input that would take the other branch trips the runtime assertion.
    with pytest.raises(RuntimeError, match="Runtime assertion failed"):
        ep.module()(torch.tensor([0.0, 0.0, 2.0], device=device))


def test_python_loop_over_item_raises(device):
    class Loop(torch.nn.Module):
        def forward(self, x, n):
            out = x
            for _ in range(n.item()):
                out = out * 2
            return out

    with pytest.raises(GuardOnDataDependentSymNode, match="data-dependent expression"):
        export(Loop(), (torch.randn(2, device=device), torch.tensor(3, device=device)))


def test_tolist_outputs_python_numbers(device):
    class ToList(torch.nn.Module):
        def forward(self, x):
            a, b = x.tolist()
            return x * a, b

    x = torch.tensor([1.5, -2.0], device=device)
    ep = export(ToList(), (x,))

    y = torch.tensor([3.0, 0.25], device=device)
    scaled, b = ep.module()(y)
    torch.testing.assert_close(scaled, y * 3.0)
    assert isinstance(b, float) and b == 0.25
