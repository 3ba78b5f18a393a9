"""torch.export with control-flow higher-order operators.

Covers torch.cond (tensor, shape-derived and constant predicates, several
operands, closures over parameters and buffers, multiple outputs, nested
conds, branches with different output shapes, and the errors export raises
for unsupported branches), plus torch._higher_order_ops.map, while_loop and
scan, all of which export on torch 2.13. Both branches / several iteration
counts are exercised through the exported module and compared with eager.
"""

import pytest
import torch
from torch._higher_order_ops.map import map as hop_map
from torch._higher_order_ops.scan import scan
from torch._higher_order_ops.while_loop import while_loop
from torch.export import Dim, export


def _hop_nodes(ep, op):
    """call_function nodes of the top-level graph that call `op`."""
    return [n for n in ep.graph.nodes if n.op == "call_function" and n.target is op]


# --------------------------------------------------------------------------
# torch.cond
# --------------------------------------------------------------------------


class SignBranch(torch.nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: t.sin() * 2, lambda t: t.cos() - 1, (x,))


def test_cond_takes_both_branches(device):
    mod = SignBranch()
    pos = torch.rand(3, 2, device=device) + 0.1
    neg = -pos

    ep = export(mod, (pos,))

    assert len(_hop_nodes(ep, torch.ops.higher_order.cond)) == 1
    gm = ep.module()
    torch.testing.assert_close(gm(pos), pos.sin() * 2)
    torch.testing.assert_close(gm(neg), neg.cos() - 1)
    torch.testing.assert_close(gm(neg), mod(neg))


def test_cond_exported_with_false_branch_example(device):
    """The branch taken by the example input does not matter."""
    mod = SignBranch()
    neg = -torch.rand(4, device=device) - 0.1

    ep = torch.export.export(mod, (neg,))

    pos = torch.rand(4, device=device) + 0.1
    torch.testing.assert_close(ep.module()(pos), mod(pos))
    torch.testing.assert_close(ep.module()(neg), mod(neg))


class BoolInputPred(torch.nn.Module):
    def forward(self, flag, a, b):
        def true_fn(a, b):
            return a @ b

        def false_fn(a, b):
            # Same values as true_fn's product, computed as (b^T a^T)^T; the
            # branches must agree on layout, hence the contiguous().
            return (b.transpose(0, 1) @ a.transpose(0, 1)).transpose(0, 1).contiguous() + 1

        return torch.cond(flag, true_fn, false_fn, (a, b))


def test_cond_with_boolean_tensor_input_and_two_operands(device):
    torch.manual_seed(0)
    mod = BoolInputPred()
    a, b = torch.randn(3, 4, device=device), torch.randn(4, 3, device=device)
    t = torch.tensor(True, device=device)
    f = torch.tensor(False, device=device)

    ep = export(mod, (t, a, b))

    gm = ep.module()
    torch.testing.assert_close(gm(t, a, b), a @ b)
    torch.testing.assert_close(gm(f, a, b), a @ b + 1)
    assert ep.graph_signature.user_inputs == ("flag", "a", "b")


def test_cond_with_python_bool_is_resolved_at_trace_time(device):
    class Const(torch.nn.Module):
        def __init__(self, flag):
            super().__init__()
            self.flag = flag

        def forward(self, x):
            return torch.cond(self.flag, lambda t: t + 1, lambda t: t - 1, (x,))

    x = torch.randn(3, device=device)
    with pytest.warns(UserWarning, match="Pred is a Python constant"):
        ep_true = export(Const(True), (x,))
    with pytest.warns(UserWarning, match="Pred is a Python constant"):
        ep_false = export(Const(False), (x,))

    torch.testing.assert_close(ep_true.module()(x), x + 1)
    torch.testing.assert_close(ep_false.module()(x), x - 1)
    # A constant predicate is inlined: no cond operator is left in the graph.
    assert _hop_nodes(ep_true, torch.ops.higher_order.cond) == []
    assert _hop_nodes(ep_false, torch.ops.higher_order.cond) == []


class ClosesOverState(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(3, 3)
        self.down = torch.nn.Linear(3, 3)
        self.register_buffer("bias", torch.tensor([1.0, -2.0, 0.5]))

    def forward(self, x):
        def true_fn(x):
            return self.up(x) + self.bias

        def false_fn(x):
            return self.down(x) - self.bias

        return torch.cond(x.mean() > 0, true_fn, false_fn, (x,))


def test_cond_branches_use_parameters_and_buffers(device):
    torch.manual_seed(1)
    mod = ClosesOverState().to(device)
    x = torch.randn(2, 3, device=device).abs()

    ep = export(mod, (x,))

    gm = ep.module()
    torch.testing.assert_close(gm(x), mod(x))
    torch.testing.assert_close(gm(-x), mod(-x))
    sig = ep.graph_signature
    assert set(sig.parameters) == {"up.weight", "up.bias", "down.weight", "down.bias"}
    assert sig.buffers == ("bias",)


class MultiOutputCond(torch.nn.Module):
    def forward(self, x, y):
        def true_fn(x, y):
            return x + y, (x * y).sum(), x.max(dim=0).values

        def false_fn(x, y):
            return x - y, (x / (y.abs() + 1)).sum(), x.min(dim=0).values

        return torch.cond(x[0, 0] > y[0, 0], true_fn, false_fn, (x, y))


def test_cond_with_multiple_outputs(device):
    torch.manual_seed(2)
    mod = MultiOutputCond()
    x, y = torch.randn(3, 4, device=device), torch.randn(3, 4, device=device)
    x[0, 0], y[0, 0] = 1.0, 0.0

    ep = export(mod, (x, y))

    assert len(ep.graph_signature.user_outputs) == 3
    out = ep.module()(x, y)
    assert isinstance(out, tuple) and len(out) == 3
    torch.testing.assert_close(out, mod(x, y))
    x2, y2 = x.clone(), y.clone()
    x2[0, 0], y2[0, 0] = -1.0, 0.0
    torch.testing.assert_close(ep.module()(x2, y2), mod(x2, y2))
    torch.testing.assert_close(ep.module()(x2, y2)[0], x2 - y2)


class NestedCond(torch.nn.Module):
    def forward(self, x, y):
        def inner_true(x, y):
            return x * 10

        def inner_false(x, y):
            return y * 10

        def outer_true(x, y):
            return torch.cond(y.sum() > 0, inner_true, inner_false, (x, y))

        def outer_false(x, y):
            return x + y

        return torch.cond(x.sum() > 0, outer_true, outer_false, (x, y))


@pytest.mark.parametrize(
    "sx,sy,expected",
    [
        pytest.param(1.0, 1.0, "x*10", id="outer_true_inner_true"),
        pytest.param(1.0, -1.0, "y*10", id="outer_true_inner_false"),
        pytest.param(-1.0, 1.0, "x+y", id="outer_false"),
    ],
)
def test_nested_cond_paths(device, sx, sy, expected):
    base = torch.arange(1.0, 4.0, device=device)
    # Distinct tensors: export treats one tensor passed twice as one input.
    ep = export(NestedCond(), (base.clone(), base.clone()))

    x, y = base * sx, base * sy
    ref = {"x*10": x * 10, "y*10": y * 10, "x+y": x + y}[expected]
    torch.testing.assert_close(ep.module()(x, y), ref)
    torch.testing.assert_close(ep.module()(x, y), NestedCond()(x, y))


class ShapePred(torch.nn.Module):
    def forward(self, x):
        return torch.cond(x.shape[0] > 4, lambda t: t[:2] * 2, lambda t: t[-2:] + 1, (x,))


def test_cond_on_dynamic_shape_predicate(device):
    mod = ShapePred()
    x = torch.randn(6, 2, device=device)
    n = Dim("n", min=2, max=10)

    ep = export(mod, (x,), dynamic_shapes={"x": {0: n}})

    assert len(_hop_nodes(ep, torch.ops.higher_order.cond)) == 1
    gm = ep.module()
    for size in (2, 3, 4, 5, 9):
        inp = torch.randn(size, 2, device=device)
        out = gm(inp)
        assert out.shape == (2, 2)
        torch.testing.assert_close(out, inp[:2] * 2 if size > 4 else inp[-2:] + 1)


def test_cond_branches_may_return_different_shapes(device):
    class Ragged(torch.nn.Module):
        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda t: t[:2].clone(), lambda t: t * 3, (x,))

    mod = Ragged()
    x = torch.tensor([1.0, 2.0, 3.0], device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), x[:2])
    torch.testing.assert_close(ep.module()(-x), -x * 3)
    # The output length is data dependent: an unbacked symbol bounded by the
    # two branches' lengths ends up in the range constraints.
    bounds = {(int(vr.lower), int(vr.upper)) for vr in ep.range_constraints.values()}
    assert (2, 3) in bounds


def test_cond_branch_mutating_operand_is_rejected(device):
    class Mutating(torch.nn.Module):
        def forward(self, x):
            def true_fn(t):
                t.add_(1)
                return t.clone()

            return torch.cond(x.sum() > 0, true_fn, lambda t: t - 1, (x,))

    with pytest.raises(torch._dynamo.exc.UncapturedHigherOrderOpError, match="mutation"):
        export(Mutating(), (torch.randn(3, device=device),))


def test_cond_branches_with_different_dtypes_are_rejected(device):
    class DtypeMismatch(torch.nn.Module):
        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda t: t.sin(), lambda t: t.double(), (x,))

    with pytest.raises(torch._dynamo.exc.TorchRuntimeError, match="merging two branches"):
        export(DtypeMismatch(), (torch.randn(3, device=device),))


def test_cond_with_multi_element_predicate_is_rejected(device):
    class BadPred(torch.nn.Module):
        def forward(self, x):
            return torch.cond(x > 0, lambda t: t.sin(), lambda t: t.cos(), (x,))

    with pytest.raises(RuntimeError, match="single-element tensor") as info:
        export(BadPred(), (torch.randn(3, device=device),))
    assert type(info.value) is RuntimeError


# --------------------------------------------------------------------------
# map
# --------------------------------------------------------------------------


class MapRows(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 2)

    def forward(self, xs, bias):
        def body(row, bias):
            return self.proj(row.sin()) + bias

        return hop_map(body, xs, bias)


def test_map_over_leading_dim_with_extra_argument(device):
    torch.manual_seed(3)
    mod = MapRows().to(device)
    xs, bias = torch.randn(5, 4, device=device), torch.randn(2, device=device)

    ep = export(mod, (xs, bias))

    expected = torch.stack([mod.proj(r.sin()) + bias for r in xs])
    torch.testing.assert_close(ep.module()(xs, bias), expected)
    xs2, bias2 = torch.randn(5, 4, device=device), torch.randn(2, device=device)
    torch.testing.assert_close(ep.module()(xs2, bias2), mod(xs2, bias2))
    assert set(ep.graph_signature.parameters) == {"proj.weight", "proj.bias"}


def test_map_with_dynamic_number_of_rows(device):
    torch.manual_seed(4)
    mod = MapRows().to(device)
    xs, bias = torch.randn(5, 4, device=device), torch.randn(2, device=device)

    ep = export(mod, (xs, bias), dynamic_shapes={"xs": {0: Dim("rows", min=2, max=32)}, "bias": None})

    for rows in (2, 7, 32):
        inp = torch.randn(rows, 4, device=device)
        out = ep.module()(inp, bias)
        assert out.shape == (rows, 2)
        torch.testing.assert_close(out, mod(inp, bias))


def test_map_over_a_pytree_of_inputs(device):
    class PairMap(torch.nn.Module):
        def forward(self, a, b):
            def body(pair):
                x, y = pair
                return x * y, x + y

            return hop_map(body, (a, b))

    torch.manual_seed(5)
    a, b = torch.randn(3, 2, device=device), torch.randn(3, 2, device=device)

    ep = export(PairMap(), (a, b))

    prod, total = ep.module()(a, b)
    torch.testing.assert_close(prod, a * b)
    torch.testing.assert_close(total, a + b)


# --------------------------------------------------------------------------
# while_loop
# --------------------------------------------------------------------------


class Doubling(torch.nn.Module):
    """Double x until its sum exceeds `limit`; also count the steps."""

    def forward(self, x, limit):
        def cond_fn(i, x):
            return x.sum() <= limit

        def body_fn(i, x):
            return i + 1, x * 2

        return while_loop(cond_fn, body_fn, (torch.zeros((), dtype=torch.int64, device=x.device), x))


def _doubling_eager(x, limit):
    i = 0
    while x.sum() <= limit:
        i, x = i + 1, x * 2
    return i, x


@pytest.mark.parametrize("limit,steps", [(0.5, 0), (3.0, 2), (100.0, 7)])
def test_while_loop_data_dependent_trip_count(device, limit, steps):
    x = torch.full((2,), 0.5, device=device)
    # Exported once with a different limit; the trip count is a runtime value.
    ep = export(Doubling(), (x, torch.tensor(10.0, device=device)))

    i, out = ep.module()(x, torch.tensor(limit, device=device))

    ref_i, ref_out = _doubling_eager(x, limit)
    assert ref_i == steps
    assert i.item() == steps
    torch.testing.assert_close(out, ref_out)
    assert len(_hop_nodes(ep, torch.ops.higher_order.while_loop)) == 1


def test_while_loop_body_uses_parameter(device):
    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rate = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, n, x):
            def cond_fn(i, x):
                return i < n

            def body_fn(i, x):
                return i + 1, x * self.rate + 1

            return while_loop(cond_fn, body_fn, (torch.zeros_like(n), x))

    mod = Decay().to(device)
    x = torch.randn(3, device=device)
    ep = export(mod, (torch.tensor(2, device=device), x))

    for n in (0, 1, 5):
        i, out = ep.module()(torch.tensor(n, device=device), x)
        ref = x.clone()
        for _ in range(n):
            ref = ref * 0.5 + 1
        assert i.item() == n
        torch.testing.assert_close(out, ref)
    assert ep.graph_signature.parameters == ("rate",)


# --------------------------------------------------------------------------
# scan
# --------------------------------------------------------------------------


class CumSum(torch.nn.Module):
    def forward(self, init, xs):
        def combine(carry, x):
            new = carry + x
            return new, new.clone()

        return scan(combine, init, xs)


def test_scan_cumulative_sum(device):
    torch.manual_seed(6)
    init, xs = torch.zeros(3, device=device), torch.randn(5, 3, device=device)

    ep = export(CumSum(), (init, xs))

    final, ys = ep.module()(init, xs)
    torch.testing.assert_close(ys, torch.cumsum(xs, 0))
    torch.testing.assert_close(final, xs.sum(0))
    init2 = torch.ones(3, device=device)
    torch.testing.assert_close(ep.module()(init2, xs), CumSum()(init2, xs))
    assert len(_hop_nodes(ep, torch.ops.higher_order.scan)) == 1


def test_scan_reverse_along_dim1(device):
    class RevScan(torch.nn.Module):
        def forward(self, init, xs):
            def combine(carry, x):
                new = carry * 0.5 + x
                return new, new * 2

            return scan(combine, init, xs, dim=1, reverse=True)

    torch.manual_seed(7)
    init, xs = torch.randn(2, device=device), torch.randn(2, 4, device=device)

    ep = export(RevScan(), (init, xs))

    carry, ys = ep.module()(init, xs)
    ref_carry, ref_ys = init.clone(), torch.empty_like(xs)
    for t in reversed(range(4)):
        ref_carry = ref_carry * 0.5 + xs[:, t]
        ref_ys[:, t] = ref_carry * 2
    torch.testing.assert_close(carry, ref_carry)
    torch.testing.assert_close(ys, ref_ys)


def test_scan_with_dynamic_length(device):
    torch.manual_seed(8)
    init, xs = torch.zeros(2, device=device), torch.randn(4, 2, device=device)

    ep = export(CumSum(), (init, xs), dynamic_shapes={"init": None, "xs": {0: Dim("steps", min=2, max=16)}})

    for steps in (2, 9, 16):
        seq = torch.randn(steps, 2, device=device)
        final, ys = ep.module()(init, seq)
        assert ys.shape == (steps, 2)
        torch.testing.assert_close(ys, torch.cumsum(seq, 0))
        torch.testing.assert_close(final, seq.sum(0))
