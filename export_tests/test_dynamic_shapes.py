"""torch.export with dynamic shapes.

Covers: named Dims with ranges and the range_constraints they produce,
running the exported module on other sizes, the runtime errors when a size
leaves its range or breaks an equality, shared and derived dims (d + 1,
2 * d), Dim.AUTO / Dim.DYNAMIC / Dim.STATIC hints, dynamic_shapes given as a
dict, a tuple, for kwargs and for pytree inputs, ShapesCollection, and the
export-time errors (exact exception types) for specialisation, violated
equalities, narrowed ranges and malformed specs.
"""

import math

import pytest
import torch
from torch._dynamo.exc import UserError
from torch.export import Dim, export
from torch.fx.experimental.symbolic_shapes import ConstraintViolationError


def _ranges(ep):
    """Sorted (lower, upper) bounds of all range constraints; upper None = unbounded."""
    out = []
    for vr in ep.range_constraints.values():
        upper = None if math.isinf(float(vr.upper)) else int(vr.upper)
        out.append((int(vr.lower), upper))
    return sorted(out, key=lambda r: (r[0], -1 if r[1] is None else r[1]))


class Scale(torch.nn.Module):
    def forward(self, x):
        return x * 2 + x.sum(0, keepdim=True)


class Add(torch.nn.Module):
    def forward(self, x, y):
        return x + y


# --------------------------------------------------------------------------
# Named Dims and ranges
# --------------------------------------------------------------------------


def test_dim_with_range_runs_on_other_sizes(device):
    mod = Scale()
    batch = Dim("batch", min=3, max=8)

    ep = export(mod, (torch.randn(4, 3, device=device),), dynamic_shapes={"x": {0: batch}})

    assert _ranges(ep) == [(3, 8)]
    for size in (3, 5, 8):
        x = torch.randn(size, 3, device=device)
        torch.testing.assert_close(ep.module()(x), mod(x))


@pytest.mark.parametrize(
    "size,match",
    [
        pytest.param(9, r"x.size\(\)\[0\] <= 8", id="above_max"),
        pytest.param(2, r"x.size\(\)\[0\] >= 3", id="below_min"),
    ],
)
def test_size_outside_range_is_rejected(device, size, match):
    ep = torch.export.export(
        Scale(), (torch.randn(4, 3, device=device),), dynamic_shapes={"x": {0: Dim("batch", min=3, max=8)}}
    )
    with pytest.raises(AssertionError, match=match):
        ep.module()(torch.randn(size, 3, device=device))
    # The boundary itself is fine.
    edge = torch.randn(8 if size > 8 else 3, 3, device=device)
    torch.testing.assert_close(ep.module()(edge), Scale()(edge))


def test_static_dim_next_to_dynamic_dim_is_checked(device):
    ep = export(Scale(), (torch.randn(4, 3, device=device),), dynamic_shapes={"x": {0: Dim("batch", max=16)}})

    x = torch.randn(7, 3, device=device)
    torch.testing.assert_close(ep.module()(x), Scale()(x))
    with pytest.raises(AssertionError, match=r"x.size\(\)\[1\] == 3"):
        ep.module()(torch.randn(7, 4, device=device))


def test_unbounded_dim_defaults(device):
    ep = export(Scale(), (torch.randn(4, 3, device=device),), dynamic_shapes={"x": {0: Dim("batch")}})

    # A named Dim without bounds is unbounded above.
    ((lower, upper),) = _ranges(ep)
    assert upper is None and lower <= 2
    big = torch.randn(300, 3, device=device)
    torch.testing.assert_close(ep.module()(big), Scale()(big))


def test_two_dynamic_dims_in_one_tensor(device):
    torch.manual_seed(0)

    class Proj(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x).softmax(dim=1)

    mod = Proj().to(device)
    shapes = {"x": {0: Dim("batch", max=8), 1: Dim("seq", max=12)}}

    ep = export(mod, (torch.randn(2, 5, 4, device=device),), dynamic_shapes=shapes)

    assert len(ep.range_constraints) == 2
    for b, s in [(1, 1), (3, 12), (8, 2)]:
        x = torch.randn(b, s, 4, device=device)
        torch.testing.assert_close(ep.module()(x), mod(x))


def test_shared_dim_ties_inputs_together(device):
    n = Dim("n", max=32)
    ep = export(
        Add(),
        (torch.randn(4, 2, device=device), torch.randn(4, 2, device=device)),
        dynamic_shapes={"x": {0: n}, "y": {0: n}},
    )

    assert len(ep.range_constraints) == 1
    x, y = torch.randn(9, 2, device=device), torch.randn(9, 2, device=device)
    torch.testing.assert_close(ep.module()(x, y), x + y)
    with pytest.raises(AssertionError, match=r"y.size\(\)\[0\] == x.size\(\)\[0\]"):
        ep.module()(torch.randn(9, 2, device=device), torch.randn(10, 2, device=device))


def test_dynamic_shapes_as_tuple_and_for_kwargs(device):
    class Mixed(torch.nn.Module):
        def forward(self, x, *, mask):
            return x.masked_fill(mask, 0.0)

    x = torch.randn(4, 3, device=device)
    mask = torch.rand(4, 3, device=device) > 0.5
    n = Dim("n", max=10)

    ep = export(Mixed(), (x,), {"mask": mask}, dynamic_shapes={"x": {0: n}, "mask": {0: n}})

    x2 = torch.randn(6, 3, device=device)
    m2 = torch.rand(6, 3, device=device) > 0.5
    torch.testing.assert_close(ep.module()(x2, mask=m2), x2.masked_fill(m2, 0.0))

    # Positional form: one entry per positional input, None = all static.
    ep2 = export(Add(), (x, x.clone()), dynamic_shapes=({0: n}, {0: n}))
    torch.testing.assert_close(ep2.module()(x2, x2 * 3), x2 * 4)


def test_dynamic_shapes_for_pytree_input(device):
    class DictIn(torch.nn.Module):
        def forward(self, batch):
            return batch["tokens"].float() @ batch["table"]

    batch = {
        "tokens": torch.randint(0, 3, (2, 5), device=device),
        "table": torch.randn(5, 4, device=device),
    }
    seq = Dim("seq", max=20)
    shapes = {"batch": {"tokens": {1: seq}, "table": {0: seq}}}

    ep = export(DictIn(), (batch,), dynamic_shapes=shapes)

    b2 = {
        "tokens": torch.randint(0, 3, (2, 11), device=device),
        "table": torch.randn(11, 4, device=device),
    }
    torch.testing.assert_close(ep.module()(b2), DictIn()(b2))


def test_shapes_collection(device):
    class MatMul(torch.nn.Module):
        def forward(self, a, b):
            return a @ b

    a, b = torch.randn(3, 4, device=device), torch.randn(4, 5, device=device)
    m, k, n = Dim("m", max=64), Dim("k", max=64), Dim("n", max=64)
    sc = torch.export.ShapesCollection()
    sc[a] = (m, k)
    sc[b] = (k, n)

    ep = export(MatMul(), (a, b), dynamic_shapes=sc.dynamic_shapes(MatMul(), (a, b)))

    assert len(ep.range_constraints) == 3
    a2, b2 = torch.randn(6, 7, device=device), torch.randn(7, 2, device=device)
    torch.testing.assert_close(ep.module()(a2, b2), a2 @ b2)
    with pytest.raises(AssertionError, match=r"b.size\(\)\[0\] == a.size\(\)\[1\]"):
        ep.module()(a2, torch.randn(6, 2, device=device))


# --------------------------------------------------------------------------
# Derived dims
# --------------------------------------------------------------------------


class DropFirst(torch.nn.Module):
    def forward(self, x, y):
        return x[1:] * y


def test_derived_dim_plus_one(device):
    d = Dim("d", min=2, max=10)

    ep = export(
        DropFirst(),
        (torch.randn(5, device=device), torch.randn(4, device=device)),
        dynamic_shapes={"x": {0: d + 1}, "y": {0: d}},
    )

    assert _ranges(ep) == [(2, 10), (3, 11)]
    x, y = torch.randn(8, device=device), torch.randn(7, device=device)
    torch.testing.assert_close(ep.module()(x, y), x[1:] * y)
    with pytest.raises(AssertionError, match=r"x.size\(\)\[0\] == y.size\(\)\[0\]"):
        ep.module()(torch.randn(8, device=device), torch.randn(6, device=device))


class PairSum(torch.nn.Module):
    def forward(self, x, y):
        return x.reshape(-1, 2).sum(1) + y


def test_derived_dim_times_two(device):
    d = Dim("d", min=2, max=10)

    ep = export(
        PairSum(),
        (torch.randn(8, device=device), torch.randn(4, device=device)),
        dynamic_shapes={"x": {0: 2 * d}, "y": {0: d}},
    )

    assert _ranges(ep) == [(2, 10), (4, 20)]
    x, y = torch.randn(12, device=device), torch.randn(6, device=device)
    torch.testing.assert_close(ep.module()(x, y), PairSum()(x, y))
    with pytest.raises(AssertionError, match=r"x.size\(\)\[0\] // 2 == y.size\(\)\[0\]"):
        ep.module()(torch.randn(12, device=device), torch.randn(5, device=device))


def test_derived_dim_bounds_follow_root(device):
    d = Dim("d", min=2, max=10)
    assert ((d + 1).min, (d + 1).max) == (3, 11)
    assert ((2 * d).min, (2 * d).max) == (4, 20)

    class Cat(torch.nn.Module):
        def forward(self, x, y):
            return torch.cat([x, y])

    ep = export(
        Cat(),
        (torch.randn(3, device=device), torch.randn(7, device=device)),
        dynamic_shapes={"x": {0: d}, "y": {0: 2 * d + 1}},
    )

    assert _ranges(ep) == [(2, 10), (5, 21)]
    x, y = torch.randn(4, device=device), torch.randn(9, device=device)
    torch.testing.assert_close(ep.module()(x, y), torch.cat([x, y]))


def test_example_inputs_must_satisfy_derived_dim(device):
    class Cat(torch.nn.Module):
        def forward(self, x, y):
            return torch.cat([x, y])

    d = Dim("d", min=2, max=10)
    # Eager would accept these inputs; only the spec (x = d + 1) is violated.
    x, y = torch.randn(6, device=device), torch.randn(4, device=device)
    torch.testing.assert_close(Cat()(x, y)[:6], x)
    with pytest.raises(UserError, match=r"to be equal to d \+ 1, where d = 4, but got 6"):
        export(Cat(), (x, y), dynamic_shapes={"x": {0: d + 1}, "y": {0: d}})


def test_only_linear_derived_dims_are_supported(device):
    d = Dim("d", min=1, max=8)
    with pytest.raises(NotImplementedError, match="linear operations"):
        d * Dim("e")

    # An integer-coefficient expression is fine.
    class Triple(torch.nn.Module):
        def forward(self, x, y):
            return x.reshape(-1, 3).mean(1) - y

    ep = export(
        Triple(),
        (torch.randn(6, device=device), torch.randn(2, device=device)),
        dynamic_shapes={"x": {0: 3 * d}, "y": {0: d}},
    )
    x, y = torch.randn(15, device=device), torch.randn(5, device=device)
    torch.testing.assert_close(ep.module()(x, y), Triple()(x, y))


# --------------------------------------------------------------------------
# Dim.AUTO / Dim.DYNAMIC / Dim.STATIC
# --------------------------------------------------------------------------


def test_dim_auto_infers_dynamic_dims_and_relations(device):
    auto = {0: Dim.AUTO, 1: Dim.AUTO}

    ep = export(
        Add(),
        (torch.randn(4, 3, device=device), torch.randn(4, 3, device=device)),
        dynamic_shapes=(auto, auto),
    )

    # x and y are unified by the add: two symbols, not four.
    assert len(ep.range_constraints) == 2
    x, y = torch.randn(5, 2, device=device), torch.randn(5, 2, device=device)
    torch.testing.assert_close(ep.module()(x, y), x + y)
    with pytest.raises(AssertionError, match="Guard failed"):
        ep.module()(torch.randn(5, 2, device=device), torch.randn(6, 2, device=device))


class ViewPairs(torch.nn.Module):
    def forward(self, x):
        return x.view(-1, 2).sum(1)


def test_dim_auto_picks_up_divisibility_guard(device):
    ep = export(ViewPairs(), (torch.randn(8, device=device),), dynamic_shapes={"x": {0: Dim.AUTO}})

    x = torch.randn(6, device=device)
    torch.testing.assert_close(ep.module()(x), ViewPairs()(x))
    with pytest.raises(AssertionError, match=r"% 2 == 0"):
        ep.module()(torch.randn(7, device=device))


class ShapeIf(torch.nn.Module):
    def forward(self, x):
        if x.shape[0] > 5:
            return x * 2
        return x


@pytest.mark.parametrize("hint", [Dim.AUTO, Dim.DYNAMIC], ids=["auto", "dynamic"])
def test_hint_range_is_refined_by_python_branch(device, hint):
    ep = export(ShapeIf(), (torch.randn(8, device=device),), dynamic_shapes={"x": {0: hint}})

    # Only the traced branch is valid, so the range becomes [6, inf).
    assert _ranges(ep) == [(6, None)]
    x = torch.randn(11, device=device)
    torch.testing.assert_close(ep.module()(x), x * 2)
    with pytest.raises(AssertionError, match=r"x.size\(\)\[0\] >= 6"):
        ep.module()(torch.randn(3, device=device))


def test_named_dim_range_narrowed_by_branch_is_an_error(device):
    with pytest.raises(UserError, match=r"Dim\('n', min=6, max=10\)"):
        export(ShapeIf(), (torch.randn(8, device=device),), dynamic_shapes={"x": {0: Dim("n", max=10)}})


class Fixed(torch.nn.Module):
    def forward(self, x):
        return x.reshape(4, 3)


def test_dim_auto_silently_specializes(device):
    ep = export(Fixed(), (torch.randn(12, device=device),), dynamic_shapes={"x": {0: Dim.AUTO}})

    assert ep.range_constraints == {}
    x = torch.randn(12, device=device)
    torch.testing.assert_close(ep.module()(x), x.reshape(4, 3))
    with pytest.raises(AssertionError, match=r"x.size\(\)\[0\] == 12"):
        ep.module()(torch.randn(6, device=device))


@pytest.mark.parametrize(
    "spec",
    [pytest.param(Dim("n"), id="named_dim"), pytest.param(Dim.DYNAMIC, id="dim_dynamic")],
)
def test_dynamic_dim_that_specializes_is_an_error(device, spec):
    with pytest.raises(UserError, match="specialized it to be a constant \\(12\\)"):
        export(Fixed(), (torch.randn(12, device=device),), dynamic_shapes={"x": {0: spec}})


def test_dim_dynamic_with_bounds(device):
    ep = export(
        Scale(), (torch.randn(4, 3, device=device),), dynamic_shapes={"x": {0: Dim.DYNAMIC(min=3, max=9)}}
    )

    assert _ranges(ep) == [(3, 9)]
    x = torch.randn(9, 3, device=device)
    torch.testing.assert_close(ep.module()(x), Scale()(x))
    with pytest.raises(AssertionError, match=r"<= 9"):
        ep.module()(torch.randn(10, 3, device=device))


def test_dim_static_keeps_dimension_fixed(device):
    spec = {"x": {0: Dim.STATIC, 1: Dim("cols", max=16)}}

    ep = export(Scale(), (torch.randn(4, 3, device=device),), dynamic_shapes=spec)

    assert len(ep.range_constraints) == 1
    x = torch.randn(4, 10, device=device)
    torch.testing.assert_close(ep.module()(x), Scale()(x))
    with pytest.raises(AssertionError, match=r"x.size\(\)\[0\] == 4"):
        ep.module()(torch.randn(5, 3, device=device))


# --------------------------------------------------------------------------
# Export-time errors
# --------------------------------------------------------------------------


def test_parameter_shape_specializes_feature_dim(device):
    mod = torch.nn.Linear(3, 2).to(device)
    with pytest.raises(UserError, match=r"specialized it to be a constant \(3\)") as info:
        export(mod, (torch.randn(4, 3, device=device),), dynamic_shapes={"input": {1: Dim("f")}})
    assert "f = 3" in str(info.value)  # suggested fix


def test_separate_dims_that_must_be_equal(device):
    with pytest.raises(UserError, match="must always be equal") as info:
        export(
            Add(),
            (torch.randn(4, device=device), torch.randn(4, device=device)),
            dynamic_shapes={"x": {0: Dim("a")}, "y": {0: Dim("b")}},
        )
    assert "b = a" in str(info.value)


def test_example_outside_declared_range(device):
    with pytest.raises(ConstraintViolationError, match=r"10 not in range \[2, 5\]"):
        export(
            Scale(), (torch.randn(10, 3, device=device),), dynamic_shapes={"x": {0: Dim("n", min=2, max=5)}}
        )


def test_named_dim_with_size_one_example_specializes(device):
    with pytest.raises(UserError, match=r"specialized it to be a constant \(1\)"):
        export(Scale(), (torch.randn(1, 3, device=device),), dynamic_shapes={"x": {0: Dim("n")}})


def test_dim_dynamic_with_size_one_example_conflicts(device):
    with pytest.raises(ValueError, match="0/1 specialized") as info:
        export(Scale(), (torch.randn(1, 3, device=device),), dynamic_shapes={"x": {0: Dim.DYNAMIC}})
    assert type(info.value) is ValueError


@pytest.mark.parametrize(
    "shapes,match",
    [
        pytest.param({"y": {0: Dim("n")}}, "top-level keys must be the arg names", id="wrong_key"),
        pytest.param(({0: Dim("n")},), "has 2 elements, but `dynamic_shapes` has 1", id="wrong_length"),
    ],
)
def test_malformed_dynamic_shapes_spec(device, shapes, match):
    args = (torch.randn(4, device=device), torch.randn(4, device=device))
    if isinstance(shapes, dict):
        # The dict form for a one-input module with a misspelt name.
        with pytest.raises(UserError, match=match):
            export(Scale(), args[:1], dynamic_shapes=shapes)
    else:
        with pytest.raises(UserError, match=match):
            export(Add(), args, dynamic_shapes=shapes)
