"""torch.export with Python scalars and symbolic integers.

Covers int / float / bool arguments (specialised by default, or dynamic with
``Dim.DYNAMIC``), 0-dim tensor inputs, scalar outputs, SymInt outputs such as
``x.shape[0]``, SymInts used in view / factory / slicing computations with
dynamic dims, related dims, and unbacked SymInts from ``.item()``.
"""

import pytest
import torch
from torch.export import Dim, export
from torch.testing import assert_close


def _placeholders(ep):
    return {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}


def _user_output_kinds(ep):
    """Argument class name of each user output, e.g. 'TensorArgument'."""
    return [type(s.arg).__name__ for s in ep.graph_signature.output_specs if s.kind.name == "USER_OUTPUT"]


# --- scalar inputs -----------------------------------------------------------


def test_int_arg_is_specialised_into_graph(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, repeats: int):
            return x.repeat(repeats) * repeats

    mod = M().to(device)
    x = torch.randn(3, device=device)
    ep = export(mod, (x, 4))

    mul = next(n for n in ep.graph.nodes if "mul" in str(n.target))
    assert 4 in mul.args
    assert ep.call_spec.in_spec.num_leaves == 2
    x2 = torch.randn(3, device=device)
    out = ep.module()(x2, 4)
    assert out.shape == (12,)
    assert_close(out, mod(x2, 4))


def test_float_arg_is_specialised_into_graph(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, alpha: float):
            return torch.nn.functional.leaky_relu(x, alpha)

    mod = M().to(device)
    x = torch.randn(10, device=device)
    ep = torch.export.export(mod, (x, 0.25))

    constants = [a for n in ep.graph.nodes if n.op == "call_function" for a in n.args if isinstance(a, float)]
    assert 0.25 in constants
    x2 = torch.randn(10, device=device)
    assert_close(ep.module()(x2, 0.25), mod(x2, 0.25))


@pytest.mark.parametrize("flag", [True, False])
def test_bool_arg_selects_branch_at_export_time(device, flag):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, use_exp: bool):
            return x.exp() if use_exp else x.neg()

    mod = M().to(device)
    x = torch.randn(4, device=device)
    ep = export(mod, (x, flag))

    targets = " ".join(str(n.target) for n in ep.graph.nodes if n.op == "call_function")
    assert ("exp" in targets) is flag
    assert ("neg" in targets) is (not flag)
    x2 = torch.randn(4, device=device)
    assert_close(ep.module()(x2, flag), mod(x2, flag))


def test_dynamic_int_arg(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, k: int):
            return x * k + k

    mod = M().to(device)
    x = torch.randn(3, device=device)
    ep = torch.export.export(mod, (x, 3), dynamic_shapes={"x": None, "k": Dim.DYNAMIC})

    k_node = _placeholders(ep)["k"]
    assert isinstance(k_node.meta["val"], torch.SymInt)
    # The multiply consumes the placeholder, not a baked-in constant.
    assert any(k_node in n.args for n in ep.graph.nodes if n.op == "call_function")
    for k in (3, -2, 11):
        assert_close(ep.module()(x, k), mod(x, k))


def test_zero_dim_tensor_is_not_specialised(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, temperature):
            return torch.softmax(x / temperature, dim=-1)

    mod = M().to(device)
    x = torch.randn(2, 5, device=device)
    ep = export(mod, (x, torch.tensor(1.0, device=device)))

    assert isinstance(_placeholders(ep)["temperature"].meta["val"], torch.Tensor)
    for t in (0.5, 1.0, 4.0):
        temp = torch.tensor(t, device=device)
        assert_close(ep.module()(x, temp), mod(x, temp))
    assert not torch.allclose(ep.module()(x, torch.tensor(0.5, device=device)), ep.module()(x, torch.tensor(4.0, device=device)))


def test_scalar_kwarg_with_tensor_args(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, *, eps: float = 1e-5, dim: int = -1):
            return x / (x.norm(dim=dim, keepdim=True) + eps)

    mod = M().to(device)
    x = torch.randn(3, 4, device=device)
    ep = torch.export.export(mod, (x,), {"eps": 0.1, "dim": 0})

    assert sorted(ep.call_spec.in_spec.child(1).context) == ["dim", "eps"]
    x2 = torch.randn(3, 4, device=device)
    assert_close(ep.module()(x2, eps=0.1, dim=0), mod(x2, eps=0.1, dim=0))


# --- scalar outputs ------------------------------------------------------------


def test_static_shape_output_is_constant(device):
    class M(torch.nn.Module):
        def forward(self, x):
            return x + 1, x.shape[0], x.numel()

    mod = M().to(device)
    x = torch.randn(3, 2, device=device)
    ep = export(mod, (x,))

    out = ep.module()(x)
    assert out[1:] == (3, 6)
    assert all(type(v) is int for v in out[1:])
    assert_close(out[0], mod(x)[0])


def test_symbolic_shape_output(device):
    class M(torch.nn.Module):
        def forward(self, x):
            return x.shape[0], x.shape[0] * x.shape[1], x.sum(dim=1)

    mod = M().to(device)
    rows, cols = Dim("rows", min=2, max=64), Dim("cols", min=2, max=64)
    x = torch.randn(3, 4, device=device)
    ep = torch.export.export(mod, (x,), dynamic_shapes={"x": {0: rows, 1: cols}})

    assert _user_output_kinds(ep) == ["SymIntArgument", "SymIntArgument", "TensorArgument"]
    for shape in ((3, 4), (7, 2), (2, 30)):
        xs = torch.randn(*shape, device=device)
        n, total, s = ep.module()(xs)
        assert (n, total) == (shape[0], shape[0] * shape[1])
        assert_close(s, mod(xs)[2])


def test_item_output_is_unbacked_scalar(device):
    class M(torch.nn.Module):
        def forward(self, counts):
            total = counts.sum().item()
            return total, counts * 2

    mod = M().to(device)
    c = torch.tensor([1, 2, 3], device=device)
    ep = export(mod, (c,))

    assert _user_output_kinds(ep)[0] == "SymIntArgument"
    c2 = torch.tensor([10, 20, 5], device=device)
    total, doubled = ep.module()(c2)
    assert total == 35
    assert_close(doubled, mod(c2)[1])


# --- symbolic ints in computations -------------------------------------------


def test_symint_view_and_reshape(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            b, t, d = x.shape
            merged = x.reshape(b * t, d)
            return merged.view(b, t * d).sum(dim=1)

    mod = M().to(device)
    # Dim.DYNAMIC rather than named Dims: with named Dims torch 2.13's range
    # solver cannot prove the guard min(4, 4*t) * t == 4 * t and rejects export.
    dyn = Dim.DYNAMIC(min=1, max=16)
    x = torch.randn(2, 3, 4, device=device)
    ep = torch.export.export(mod, (x,), dynamic_shapes=({0: dyn, 1: dyn},))

    x_val = _placeholders(ep)["x"].meta["val"]
    assert isinstance(x_val.shape[0], torch.SymInt) and isinstance(x_val.shape[1], torch.SymInt)
    assert x_val.shape[2] == 4
    for shape in ((1, 2, 4), (5, 7, 4), (16, 16, 4)):
        xs = torch.randn(*shape, device=device)
        assert_close(ep.module()(xs), mod(xs))


def test_symint_in_factory_functions(device):
    class M(torch.nn.Module):
        def forward(self, x):
            n = x.shape[0]
            positions = torch.arange(n, device=x.device, dtype=x.dtype)
            # float(n) would specialise n; pass the SymInt itself as fill value.
            return x + positions, torch.full((n + 1,), n, device=x.device, dtype=x.dtype)

    mod = M().to(device)
    n = Dim("n", min=2, max=100)
    ep = export(mod, (torch.zeros(4, device=device),), dynamic_shapes={"x": {0: n}})

    for size in (2, 9, 100):
        xs = torch.randn(size, device=device)
        a, b = ep.module()(xs)
        assert b.shape == (size + 1,)
        assert_close(b, torch.full((size + 1,), float(size), device=device))
        assert_close((a, b), mod(xs))


def test_symint_floordiv_and_mod_in_slicing(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            half = x.shape[0] // 2
            rem = x.shape[0] % 2
            return x[:half] - x[half : 2 * half], rem

    mod = M().to(device)
    # A named Dim would be rejected here: the constraint solver cannot prove
    # n // 2 <= n and suggests n = 2*_n instead. Dim.DYNAMIC accepts the guard.
    # min=4 keeps n // 2 >= 2, so no size-1 specialisation guard is added.
    n = Dim.DYNAMIC(min=4, max=64)
    ep = torch.export.export(mod, (torch.randn(6, device=device),), dynamic_shapes=({0: n},))

    for size in (4, 7, 10, 63):
        xs = torch.randn(size, device=device)
        diff, rem = ep.module()(xs)
        assert diff.shape == (size // 2,)
        assert rem == size % 2
        assert_close(diff, mod(xs)[0])


def test_derived_dim_relation_between_inputs(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, y):
            # y has exactly one more row than x.
            return torch.cat([x, y[1:]], dim=0), y[0]

    mod = M().to(device)
    n = Dim("n", min=2, max=32)
    x, y = torch.randn(4, 3, device=device), torch.randn(5, 3, device=device)
    ep = export(mod, (x, y), dynamic_shapes={"x": {0: n}, "y": {0: n + 1}})

    y_dim = _placeholders(ep)["y"].meta["val"].shape[0]
    x_dim = _placeholders(ep)["x"].meta["val"].shape[0]
    assert str(y_dim) == f"{x_dim} + 1"
    for rows in (2, 6, 32):
        xs, ys = torch.randn(rows, 3, device=device), torch.randn(rows + 1, 3, device=device)
        out = ep.module()(xs, ys)
        assert out[0].shape == (2 * rows, 3)
        assert_close(out, mod(xs, ys))


def test_shared_dim_between_inputs(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, a, b):
            return a @ b.t(), a.shape[0] + b.shape[0]

    mod = M().to(device)
    n = Dim("n", min=2, max=32)
    a, b = torch.randn(3, 4, device=device), torch.randn(3, 4, device=device)
    ep = torch.export.export(mod, (a, b), dynamic_shapes=({0: n}, {0: n}))

    a_dim = _placeholders(ep)["a"].meta["val"].shape[0]
    b_dim = _placeholders(ep)["b"].meta["val"].shape[0]
    assert str(a_dim) == str(b_dim)
    for rows in (2, 5, 20):
        an, bn = torch.randn(rows, 4, device=device), torch.randn(rows, 4, device=device)
        prod, total = ep.module()(an, bn)
        assert total == 2 * rows
        assert_close(prod, mod(an, bn)[0])


def test_unbacked_symint_from_item_used_for_slicing(device):
    class M(torch.nn.Module):
        def forward(self, x, k):
            n = k.item()
            torch._check(n >= 0)
            torch._check(n <= x.shape[0])
            return x[:n] * 2, n

    mod = M().to(device)
    x = torch.arange(6.0, device=device)
    ep = export(mod, (x, torch.tensor(3, device=device)))

    # aten.item (or its decomposition _local_scalar_dense) reads the value.
    assert any(("item" in str(n.target) or "local_scalar_dense" in str(n.target)) for n in ep.graph.nodes)
    for k in (0, 3, 6):
        kt = torch.tensor(k, device=device)
        out, n = ep.module()(x, kt)
        assert n == k and out.shape == (k,)
        assert_close(out, mod(x, kt)[0])


def test_dynamic_int_and_dynamic_dim_combined(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, pad: int):
            out = torch.nn.functional.pad(x, (pad, pad))
            return out, out.shape[-1]

    mod = M().to(device)
    n = Dim("n", min=2, max=64)
    ep = torch.export.export(mod, (torch.randn(2, 5, device=device), 1), dynamic_shapes={"x": {1: n}, "pad": Dim.DYNAMIC})

    assert isinstance(_placeholders(ep)["pad"].meta["val"], torch.SymInt)
    for width, pad in ((5, 1), (9, 3), (2, 0)):
        xs = torch.randn(2, width, device=device)
        out, w = ep.module()(xs, pad)
        assert w == width + 2 * pad
        assert_close(out, mod(xs, pad)[0])
