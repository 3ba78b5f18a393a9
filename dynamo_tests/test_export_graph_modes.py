"""torch._dynamo.export graph flavours: Torch-level vs ATen graphs, pre_dispatch,
decomposition tables, tracing modes and pytree inputs/outputs.

Every test checks the exported GraphModule against eager with
torch.testing.assert_close and then checks a fact about the graph itself.
"""
import pytest
import torch
import torch._dynamo
from torch._decomp import get_decompositions


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def call_targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def placeholders(gm):
    return [n for n in gm.graph.nodes if n.op == "placeholder"]


def matmul_relu_sin(x, y):
    return (x @ y).relu() + x.sum().sin()


def test_torch_level_graph_contains_no_aten_overloads(device):
    x = torch.randn(4, 3, device=device)
    y = torch.randn(3, 5, device=device)

    result = torch._dynamo.export(matmul_relu_sin, aten_graph=False)(x, y)
    gm = result.graph_module

    torch.testing.assert_close(gm(x, y), matmul_relu_sin(x, y))
    assert len(placeholders(gm)) == 2
    assert not any(isinstance(t, torch._ops.OpOverload) for t in call_targets(gm))
    # relu/sin/sum are recorded as Tensor method calls at the Torch level.
    methods = {n.target for n in gm.graph.nodes if n.op == "call_method"}
    assert {"relu", "sum", "sin"} <= methods


def test_aten_graph_contains_only_aten_overloads(device):
    x = torch.randn(4, 3, device=device)
    y = torch.randn(3, 5, device=device)

    result = torch._dynamo.export(matmul_relu_sin, aten_graph=True)(x, y)
    gm = result.graph_module

    torch.testing.assert_close(gm(x, y), matmul_relu_sin(x, y))
    targets = call_targets(gm)
    assert targets, "graph should not be empty"
    assert all(isinstance(t, torch._ops.OpOverload) for t in targets)
    assert torch.ops.aten.mm.default in targets
    assert torch.ops.aten.relu.default in targets
    assert not [n for n in gm.graph.nodes if n.op == "call_method"]


@pytest.mark.parametrize(
    "pre_dispatch, expected, absent",
    [
        (False, torch.ops.aten.mm.default, torch.ops.aten.linear.default),
        (True, torch.ops.aten.linear.default, torch.ops.aten.mm.default),
    ],
)
def test_pre_dispatch_keeps_composite_linear(device, pre_dispatch, expected, absent):
    def f(x, w):
        return torch.nn.functional.linear(x, w)

    x = torch.randn(2, 3, device=device)
    w = torch.randn(4, 3, device=device)

    result = torch._dynamo.export(f, aten_graph=True, pre_dispatch=pre_dispatch)(x, w)
    gm = result.graph_module

    torch.testing.assert_close(gm(x, w), f(x, w))
    targets = call_targets(gm)
    assert expected in targets
    assert absent not in targets


@pytest.mark.parametrize("pre_dispatch", [False, True])
def test_pre_dispatch_keeps_dropout_undecomposed(device, pre_dispatch):
    def f(x):
        # training=False keeps the result deterministic (dropout is the identity).
        return torch.nn.functional.dropout(x, p=0.5, training=False) * 3

    x = torch.randn(5, 2, device=device)

    result = torch._dynamo.export(f, aten_graph=True, pre_dispatch=pre_dispatch)(x)

    torch.testing.assert_close(result.graph_module(x), f(x))
    has_dropout = torch.ops.aten.dropout.default in call_targets(result.graph_module)
    assert has_dropout == pre_dispatch


def test_pre_dispatch_without_aten_graph_is_rejected(device):
    x = torch.randn(3, device=device)
    with pytest.raises(AssertionError, match="pre_dispatch=True can only be used when aten_graph=True"):
        torch._dynamo.export(lambda t: t + 1, pre_dispatch=True)(x)


def test_decomposition_table_rewrites_ops(device):
    def f(x):
        return torch.nn.functional.silu(x)

    x = torch.randn(3, 4, device=device)
    table = get_decompositions([torch.ops.aten.silu.default])

    plain = torch._dynamo.export(f, aten_graph=True)(x).graph_module
    decomposed = torch._dynamo.export(f, aten_graph=True, decomposition_table=table)(x).graph_module

    torch.testing.assert_close(plain(x), f(x))
    torch.testing.assert_close(decomposed(x), f(x))
    assert torch.ops.aten.silu.default in call_targets(plain)
    assert torch.ops.aten.silu.default not in call_targets(decomposed)
    assert torch.ops.aten.sigmoid.default in call_targets(decomposed)


def flatten_rows(x):
    return x.reshape(x.shape[0], -1).sum(1)


def test_symbolic_tracing_mode_keeps_sizes_symbolic(device):
    x = torch.randn(4, 2, 3, device=device)

    result = torch._dynamo.export(flatten_rows, aten_graph=True, tracing_mode="symbolic")(x)
    gm = result.graph_module

    torch.testing.assert_close(gm(x), flatten_rows(x))
    assert torch.ops.aten.sym_size.int in call_targets(gm)
    # The same graph serves another batch size.
    other = torch.randn(7, 2, 3, device=device)
    torch.testing.assert_close(gm(other), flatten_rows(other))


def test_fake_tracing_mode_specializes_sizes(device):
    x = torch.randn(4, 2, 3, device=device)

    result = torch._dynamo.export(flatten_rows, aten_graph=True, tracing_mode="fake")(x)
    gm = result.graph_module

    torch.testing.assert_close(gm(x), flatten_rows(x))
    assert torch.ops.aten.sym_size.int not in call_targets(gm)
    view = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.view.default)
    assert list(view.args[1]) == [4, -1]
    # The baked-in [4, -1] view cannot serve a different batch size.
    with pytest.raises(RuntimeError, match="invalid for input of size"):
        gm(torch.randn(7, 2, 3, device=device))


@pytest.mark.parametrize("aten_graph", [False, True])
def test_pytree_inputs_and_outputs_round_trip(device, aten_graph):
    def f(inputs, scale):
        a, b = inputs["a"], inputs["b"]
        return {"sum": a + b * scale[0], "pair": (a * b, b - scale[1])}

    inputs = {"a": torch.randn(3, device=device), "b": torch.randn(3, device=device)}
    scale = [torch.randn(3, device=device), torch.randn(3, device=device)]

    result = torch._dynamo.export(f, aten_graph=aten_graph)(inputs, scale)
    gm = result.graph_module
    out = gm(inputs, scale)

    torch.testing.assert_close(out, f(inputs, scale))
    assert isinstance(out, dict) and isinstance(out["pair"], tuple)
    # Every leaf is a real graph input, not a baked-in constant.
    new_inputs = {k: torch.randn(3, device=device) for k in inputs}
    new_scale = [torch.randn(3, device=device) for _ in scale]
    torch.testing.assert_close(gm(new_inputs, new_scale), f(new_inputs, new_scale))


def test_kwargs_are_accepted(device):
    def f(x, *, bias, alpha=2.0):
        return x * alpha + bias

    x = torch.randn(3, device=device)
    bias = torch.randn(3, device=device)

    result = torch._dynamo.export(f, aten_graph=True)(x, bias=bias)
    gm = result.graph_module

    torch.testing.assert_close(gm(x, bias=bias), f(x, bias=bias))
    assert len(placeholders(gm)) == 2
    mul = next(n for n in gm.graph.nodes if n.target == torch.ops.aten.mul.Tensor)
    assert 2.0 in mul.args
