"""torch.export with user-defined operators.

Covers ``torch.library.custom_op`` + ``register_fake`` (functional ops, scalar
and optional arguments, multiple / list outputs, data-dependent output sizes,
dynamic shapes), mutating custom ops (``mutates_args``) on buffers and user
inputs, ops with ``register_autograd``, and ``torch.autograd.Function`` used
inside ``forward``. The custom ops must survive in the exported graph and the
exported module must match eager.
"""

import pytest
import torch
from torch.export import Dim, export
from torch.testing import assert_close

NS = "mtx_p2_ops"


# --- custom op definitions (registered once, at import time) ---------------


@torch.library.custom_op(f"{NS}::scaled_tanh", mutates_args=())
def scaled_tanh(x: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.tanh(x) * scale


@scaled_tanh.register_fake
def _(x, scale):
    return torch.empty_like(x)


@torch.library.custom_op(f"{NS}::row_norms", mutates_args=())
def row_norms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).sum(dim=-1).sqrt()


@row_norms.register_fake
def _(x):
    return x.new_empty(x.shape[:-1])


@torch.library.custom_op(f"{NS}::min_max", mutates_args=())
def min_max(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    return x.amin(dim=dim), x.amax(dim=dim)


@min_max.register_fake
def _(x, dim):
    shape = list(x.shape)
    del shape[dim]
    return x.new_empty(shape), x.new_empty(shape)


@torch.library.custom_op(f"{NS}::chunk3", mutates_args=())
def chunk3(x: torch.Tensor) -> list[torch.Tensor]:
    return [c.clone() for c in x.chunk(3, dim=0)]


@chunk3.register_fake
def _(x):
    return [c.new_empty(c.shape) for c in x.chunk(3, dim=0)]


@torch.library.custom_op(f"{NS}::argmax_rows", mutates_args=())
def argmax_rows(x: torch.Tensor) -> torch.Tensor:
    return x.argmax(dim=1)


@argmax_rows.register_fake
def _(x):
    return x.new_empty(x.shape[0], dtype=torch.int64)


@torch.library.custom_op(f"{NS}::affine", mutates_args=())
def affine(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    out = x * weight
    if bias is not None:
        out = out + bias
    return out.relu() if relu else out


@affine.register_fake
def _(x, weight, bias, relu):
    return torch.empty_like(x)


@torch.library.custom_op(f"{NS}::positive_values", mutates_args=())
def positive_values(x: torch.Tensor) -> torch.Tensor:
    return x[x > 0].clone()


@positive_values.register_fake
def _(x):
    n = torch.library.get_ctx().new_dynamic_size()
    return x.new_empty(n)


@torch.library.custom_op(f"{NS}::accumulate_", mutates_args=("acc",))
def accumulate_(acc: torch.Tensor, x: torch.Tensor) -> None:
    acc.add_(x)


@accumulate_.register_fake
def _(acc, x):
    return None


@torch.library.custom_op(f"{NS}::swap_into_", mutates_args=("a", "b"))
def swap_into_(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    total = a + b
    tmp = a.clone()
    a.copy_(b)
    b.copy_(tmp)
    return total


@swap_into_.register_fake
def _(a, b):
    return torch.empty_like(a)


@torch.library.custom_op(f"{NS}::cube", mutates_args=())
def cube(x: torch.Tensor) -> torch.Tensor:
    return x * x * x


@cube.register_fake
def _(x):
    return torch.empty_like(x)


def _cube_setup_context(ctx, inputs, output):
    (x,) = inputs
    ctx.save_for_backward(x)


def _cube_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return grad * 3 * x * x


cube.register_autograd(_cube_backward, setup_context=_cube_setup_context)


class ClampGradScale(torch.autograd.Function):
    """Forward: relu(x) * k. Backward is hand written (not used by export)."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.k = k
        return x.clamp(min=0) * k

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * ctx.k, None


class SplitSigns(torch.autograd.Function):
    """An autograd.Function with two outputs."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0), x.clamp(max=0)

    @staticmethod
    def backward(ctx, g_pos, g_neg):
        return g_pos + g_neg


# --- helpers -----------------------------------------------------------------


def _custom_op_calls(ep):
    """Names of our custom ops called in the graph, in order.

    Mutating ops may appear wrapped by a functionalization higher-order op
    (e.g. after ``run_decompositions``), in which case the op is an argument.
    """
    names = []
    for node in ep.graph.nodes:
        if node.op != "call_function":
            continue
        candidates = [node.target, *node.args]
        for c in candidates:
            if isinstance(c, torch._ops.OpOverload) and c.namespace == NS:
                names.append(c.name().split("::", 1)[1])  # "mtx_p2_ops::row_norms" -> "row_norms"
                break
    return names


# --- functional custom ops ---------------------------------------------------


def test_functional_custom_op_is_kept_in_graph(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return scaled_tanh(x, 3.0) + 1

    mod = M().to(device)
    x = torch.randn(4, 4, device=device)
    ep = export(mod, (x,))

    assert _custom_op_calls(ep) == ["scaled_tanh"]
    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.scaled_tanh.default)
    assert node.args[1] == 3.0
    assert node.meta["val"].shape == (4, 4)

    x2 = torch.randn(4, 4, device=device)
    assert_close(ep.module()(x2), torch.tanh(x2) * 3.0 + 1)
    assert_close(ep.module()(x2), mod(x2))


def test_custom_op_called_via_torch_ops_namespace(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.ops.mtx_p2_ops.scaled_tanh(x, 0.5) - torch.ops.mtx_p2_ops.scaled_tanh.default(x, 2.0)

    mod = M().to(device)
    x = torch.randn(6, device=device)
    ep = torch.export.export(mod, (x,))

    assert _custom_op_calls(ep) == ["scaled_tanh", "scaled_tanh"]
    scales = sorted(n.args[1] for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.scaled_tanh.default)
    assert scales == [0.5, 2.0]
    assert_close(ep.module()(x), mod(x))


def test_fake_impl_shape_with_dynamic_batch(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return row_norms(x) * 2

    mod = M().to(device)
    batch = Dim("batch", min=1, max=128)
    x = torch.randn(5, 8, device=device)
    ep = export(mod, (x,), dynamic_shapes={"x": {0: batch}})

    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.row_norms.default)
    (out_len,) = node.meta["val"].shape
    assert isinstance(out_len, torch.SymInt)

    for n in (1, 5, 17):
        xn = torch.randn(n, 8, device=device)
        out = ep.module()(xn)
        assert out.shape == (n,)
        assert_close(out, mod(xn))


@pytest.mark.parametrize("dim", [0, 1])
def test_multi_output_custom_op(device, dim):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            lo, hi = min_max(x, dim)
            return hi - lo, lo

    mod = M().to(device)
    x = torch.randn(3, 5, device=device)
    ep = torch.export.export(mod, (x,))

    assert _custom_op_calls(ep) == ["min_max"]
    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.min_max.default)
    assert node.args[1] == dim
    assert [tuple(v.shape) for v in node.meta["val"]] == [tuple(mod(x)[1].shape)] * 2

    x2 = torch.randn(3, 5, device=device)
    assert_close(ep.module()(x2), mod(x2))


def test_list_output_custom_op(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            a, b, c = chunk3(x)
            return a + c, b

    mod = M().to(device)
    x = torch.randn(6, 2, device=device)
    ep = export(mod, (x,))

    assert _custom_op_calls(ep) == ["chunk3"]
    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.chunk3.default)
    assert len(node.meta["val"]) == 3
    x2 = torch.randn(6, 2, device=device)
    assert_close(ep.module()(x2), mod(x2))


def test_custom_op_output_dtype_from_fake(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            idx = argmax_rows(x)
            return idx, x.gather(1, idx.unsqueeze(1))

    mod = M().to(device)
    x = torch.randn(4, 7, device=device)
    ep = torch.export.export(mod, (x,))

    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.argmax_rows.default)
    assert node.meta["val"].dtype == torch.int64
    idx, vals = ep.module()(x)
    assert idx.dtype == torch.int64
    assert_close((idx, vals), mod(x))


@pytest.mark.parametrize("with_bias,relu", [(True, True), (False, True), (True, False)])
def test_optional_tensor_and_bool_args(device, with_bias, relu):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4))
            self.bias = torch.nn.Parameter(torch.randn(4)) if with_bias else None

        def forward(self, x):
            return affine(x, self.weight, self.bias, relu)

    mod = M().to(device)
    x = torch.randn(2, 4, device=device)
    ep = export(mod, (x,))

    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.affine.default)
    assert node.args[3] is relu
    assert (node.args[2] is None) is (not with_bias)
    n_params = sum(1 for s in ep.graph_signature.input_specs if s.kind.name == "PARAMETER")
    assert n_params == (2 if with_bias else 1)

    x2 = torch.randn(2, 4, device=device)
    expected = mod(x2)
    assert_close(ep.module()(x2), expected)
    if relu:
        assert (ep.module()(x2) >= 0).all()


def test_data_dependent_output_size(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return positive_values(x) * 10

    mod = M().to(device)
    x = torch.randn(8, device=device)
    ep = torch.export.export(mod, (x,))

    node = next(n for n in ep.graph.nodes if n.target is torch.ops.mtx_p2_ops.positive_values.default)
    assert isinstance(node.meta["val"].shape[0], torch.SymInt)

    for values in ([1.0, -1, 2, 3, -4, -5, -6, 7], [-1.0] * 8, [0.5] * 8):
        xi = torch.tensor(values, device=device)
        out = ep.module()(xi)
        assert out.shape[0] == int((xi > 0).sum())
        assert_close(out, mod(xi))


# --- mutating custom ops -----------------------------------------------------


def test_mutating_custom_op_on_buffer(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("running", torch.zeros(3))

        def forward(self, x):
            accumulate_(self.running, x)
            return self.running * 2

    eager = M().to(device)
    ep = export(M().to(device), (torch.randn(3, device=device),))
    assert _custom_op_calls(ep) == ["accumulate_"]
    assert "running" in ep.graph_signature.buffers

    exported = ep.module()
    for _ in range(3):
        x = torch.randn(3, device=device)
        assert_close(exported(x), eager(x))
        assert_close(exported.running, eager.running)
    assert not torch.equal(exported.running, torch.zeros(3, device=device))


def test_mutating_custom_op_on_user_input(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, acc, x):
            accumulate_(acc, x)
            return acc.sum()

    mod = M().to(device)
    ep = torch.export.export(mod, (torch.zeros(4, device=device), torch.ones(4, device=device)))
    assert _custom_op_calls(ep) == ["accumulate_"]

    x = torch.randn(4, device=device)
    acc_eager = torch.arange(4.0, device=device)
    acc_exported = acc_eager.clone()
    expected = mod(acc_eager, x)
    out = ep.module()(acc_exported, x)
    assert_close(out, expected)
    # The caller's tensor must be mutated exactly like in eager.
    assert_close(acc_exported, acc_eager)
    assert_close(acc_exported, torch.arange(4.0, device=device) + x)


def test_custom_op_mutating_two_args_and_returning(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("state", torch.full((2,), 5.0))

        def forward(self, x):
            total = swap_into_(self.state, x)
            return total + self.state

    eager = M().to(device)
    ep = export(M().to(device), (torch.randn(2, device=device),))
    assert _custom_op_calls(ep) == ["swap_into_"]

    exported = ep.module()
    x_eager = torch.tensor([1.0, 2.0], device=device)
    x_exp = x_eager.clone()
    assert_close(exported(x_exp), eager(x_eager))
    assert_close(exported.state, torch.tensor([1.0, 2.0], device=device))
    assert_close(x_exp, x_eager)
    assert_close(x_exp, torch.full((2,), 5.0, device=device))


# --- autograd ------------------------------------------------------------------


def test_custom_op_with_registered_autograd(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return cube(x).sum()

    mod = M().to(device)
    x = torch.randn(5, device=device)
    ep = torch.export.export(mod, (x,))
    assert _custom_op_calls(ep) == ["cube"]

    x_eager = torch.randn(5, device=device, requires_grad=True)
    x_exp = x_eager.detach().clone().requires_grad_(True)
    out_eager = mod(x_eager)
    out_exp = ep.module()(x_exp)
    assert_close(out_exp, out_eager)
    out_eager.backward()
    out_exp.backward()
    assert_close(x_exp.grad, x_eager.grad)
    assert_close(x_exp.grad, 3 * x_eager.detach() ** 2)


def test_autograd_function_in_forward(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return ClampGradScale.apply(x, 4.0) + x

    mod = M().to(device)
    x = torch.randn(10, device=device)
    ep = export(mod, (x,))

    # The Function's forward is traced through into ordinary ATen ops.
    assert not any(isinstance(n.target, torch._ops.HigherOrderOperator) for n in ep.graph.nodes if n.op == "call_function")
    assert any("clamp" in str(n.target) for n in ep.graph.nodes)

    x2 = torch.randn(10, device=device)
    assert_close(ep.module()(x2), mod(x2))
    assert_close(ep.module()(x2), x2.clamp(min=0) * 4.0 + x2)


def test_autograd_function_with_two_outputs_and_dynamic_dim(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            pos, neg = SplitSigns.apply(x)
            return pos * 2 + neg

    mod = M().to(device)
    n = Dim("n", min=2, max=256)
    ep = torch.export.export(mod, (torch.randn(8, device=device),), dynamic_shapes=({0: n},))

    for size in (2, 8, 31):
        xs = torch.randn(size, device=device)
        assert_close(ep.module()(xs), mod(xs))


def test_autograd_function_strict_mode(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x):
            return ClampGradScale.apply(self.lin(x), 0.5)

    mod = M().to(device)
    x = torch.randn(2, 3, device=device)
    ep = export(mod, (x,), strict=True)

    assert set(ep.state_dict) == {"lin.weight", "lin.bias"}
    x2 = torch.randn(2, 3, device=device)
    assert_close(ep.module()(x2), mod(x2))


def test_custom_op_inside_submodule_with_params(device):
    torch.manual_seed(0)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

        def forward(self, x):
            return scaled_tanh(self.proj(x), 1.5)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block(), Block()])

        def forward(self, x):
            for b in self.blocks:
                x = b(x)
            return row_norms(x)

    mod = M().to(device)
    x = torch.randn(3, 4, device=device)
    ep = export(mod, (x,))

    assert _custom_op_calls(ep) == ["scaled_tanh", "scaled_tanh", "row_norms"]
    assert set(ep.state_dict) == set(mod.state_dict())
    x2 = torch.randn(3, 4, device=device)
    assert_close(ep.module()(x2), mod(x2))
