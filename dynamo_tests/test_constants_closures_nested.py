"""Constants, closures and nested modules under torch._dynamo.export and
torch.compile(fullgraph=True): what is folded or baked into the graph, what
stays a graph input, and how module hierarchies are flattened.
"""
import copy
import math

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter

OFFSET_TABLE = torch.arange(4.0)
CONFIG = {"scale": 3.0, "layers": [16, 16]}


@pytest.fixture(autouse=True)
def _reset_dynamo():
    global OFFSET_TABLE
    torch._dynamo.reset()
    OFFSET_TABLE = torch.arange(4.0)
    CONFIG.update(scale=3.0, layers=[16, 16])
    yield
    torch._dynamo.reset()
    OFFSET_TABLE = torch.arange(4.0)
    CONFIG.update(scale=3.0, layers=[16, 16])


def call_nodes(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function"]


def placeholders(gm):
    return [n for n in gm.graph.nodes if n.op == "placeholder"]


# --------------------------------------------------------------------------
# Constant folding / baked constants
# --------------------------------------------------------------------------


@pytest.mark.parametrize("aten_graph", [False, True])
def test_python_arithmetic_is_folded_into_one_constant(device, aten_graph):
    def f(x):
        return x * (2**3 + math.sqrt(4))

    x = torch.randn(3, device=device)
    gm = torch._dynamo.export(f, aten_graph=aten_graph)(x).graph_module

    torch.testing.assert_close(gm(x), x * 10.0)
    nodes = call_nodes(gm)
    assert len(nodes) == 1
    assert 10.0 in nodes[0].args


def test_config_dict_values_are_baked_in(device):
    def f(x):
        return x * CONFIG["scale"] + len(CONFIG["layers"])

    x = torch.randn(3, device=device)
    gm = torch._dynamo.export(f, aten_graph=True)(x).graph_module
    CONFIG.update(scale=100.0, layers=[])

    torch.testing.assert_close(gm(x), x * 3.0 + 2)
    constants = [a for n in call_nodes(gm) for a in n.args if not isinstance(a, torch.fx.Node)]
    assert 3.0 in constants and 2 in constants


def test_unrolled_python_loop_produces_one_node_per_iteration(device):
    def f(x):
        for i in range(1, 4):
            x = x * i
        return x

    x = torch.randn(3, device=device)
    gm = torch._dynamo.export(f, aten_graph=True)(x).graph_module

    torch.testing.assert_close(gm(x), x * 6)
    assert [n.target for n in call_nodes(gm)] == [torch.ops.aten.mul.Tensor] * 3


@pytest.mark.parametrize("aten_graph", [False, True])
def test_global_tensor_becomes_graph_attribute_not_input(device, aten_graph):
    def f(x):
        return x + OFFSET_TABLE.to(x.device)

    x = torch.randn(4, device=device)
    gm = torch._dynamo.export(f, aten_graph=aten_graph)(x).graph_module

    torch.testing.assert_close(gm(x), x + torch.arange(4.0, device=device))
    assert len(placeholders(gm)) == 1
    assert any(n.op == "get_attr" for n in gm.graph.nodes)


def test_static_shape_arithmetic_is_baked_in(device):
    def f(x):
        return x * (x.shape[0] * x.shape[1])

    x = torch.randn(4, 3, device=device)
    static = torch._dynamo.export(f, aten_graph=True, assume_static_by_default=True)(x).graph_module
    dynamic = torch._dynamo.export(f, aten_graph=True)(x).graph_module

    torch.testing.assert_close(static(x), x * 12)
    torch.testing.assert_close(dynamic(x), x * 12)
    static_targets = [n.target for n in call_nodes(static)]
    assert static_targets == [torch.ops.aten.mul.Tensor]
    assert 12 in call_nodes(static)[0].args
    assert torch.ops.aten.sym_size.int in [n.target for n in call_nodes(dynamic)]
    # Only the dynamic graph recomputes the factor for another shape.
    other = torch.randn(5, 3, device=device)
    torch.testing.assert_close(dynamic(other), other * 15)
    torch.testing.assert_close(static(other), other * 12)


# --------------------------------------------------------------------------
# Closures
# --------------------------------------------------------------------------


def make_affine(weight, bias):
    def affine(x):
        return x * weight + bias

    return affine


def test_export_bakes_closure_scalars(device):
    affine = make_affine(2.0, 0.5)
    x = torch.randn(3, device=device)

    gm = torch._dynamo.export(affine, aten_graph=True)(x).graph_module

    torch.testing.assert_close(gm(x), affine(x))
    assert len(placeholders(gm)) == 1
    constants = [a for n in call_nodes(gm) for a in n.args if not isinstance(a, torch.fx.Node)]
    assert 2.0 in constants and 0.5 in constants


def test_export_lifts_closure_tensors_to_attributes(device):
    weight = torch.randn(3, device=device)
    bias = torch.randn(3, device=device)
    affine = make_affine(weight, bias)
    x = torch.randn(3, device=device)

    gm = torch._dynamo.export(affine)(x).graph_module

    torch.testing.assert_close(gm(x), x * weight + bias)
    assert len(placeholders(gm)) == 1
    assert sum(1 for n in gm.graph.nodes if n.op == "get_attr") == 2


def test_compile_guards_on_closure_cell_contents(device):
    scale = 2.0

    def f(x):
        return x * scale

    counter = CompileCounter()
    compiled = torch.compile(f, backend=counter, fullgraph=True)
    x = torch.randn(3, device=device)

    torch.testing.assert_close(compiled(x), x * 2.0)
    scale = 7.0
    torch.testing.assert_close(compiled(x), x * 7.0)
    assert counter.frame_count == 2


def test_closure_over_module_is_inlined(device):
    block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.GELU()).to(device)

    def apply_twice(x):
        return block(block(x))

    x = torch.randn(2, 4, device=device)
    gm = torch._dynamo.export(apply_twice, aten_graph=True)(x).graph_module

    torch.testing.assert_close(gm(x), apply_twice(x))
    targets = [n.target for n in call_nodes(gm)]
    assert targets.count(torch.ops.aten.addmm.default) == 2
    assert targets.count(torch.ops.aten.gelu.default) == 2


def test_compile_closure_factory_functions_share_code(device):
    counter = CompileCounter()
    x = torch.randn(3, device=device)

    for w in (1.0, 2.0, 3.0):
        affine = make_affine(w, 0.0)
        torch.testing.assert_close(torch.compile(affine, backend=counter, fullgraph=True)(x), x * w)

    # Same code object: the first new weight recompiles and the cell value is
    # then treated as dynamic, so the third closure reuses that graph.
    assert counter.frame_count == 2


# --------------------------------------------------------------------------
# Nested modules
# --------------------------------------------------------------------------


class Block(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.ff = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU())

    def forward(self, x):
        return x + self.ff(x)


class Tower(torch.nn.Module):
    def __init__(self, dim=8, depth=2):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(dim) for _ in range(depth)])
        self.heads = torch.nn.ModuleDict({"mean": torch.nn.Linear(dim, 1), "logvar": torch.nn.Linear(dim, 1)})

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return {name: head(x) for name, head in self.heads.items()}


@pytest.mark.parametrize("aten_graph", [False, True])
def test_nested_module_tree_is_flattened(device, aten_graph):
    model = Tower().to(device).eval()
    x = torch.randn(5, 8, device=device)

    gm = torch._dynamo.export(model, aten_graph=aten_graph)(x).graph_module

    torch.testing.assert_close(gm(x), model(x))
    # No calls into the user's module hierarchy remain: everything is inlined.
    user_submodules = {name for name, _ in model.named_modules() if name}
    called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert not called & user_submodules
    assert not any(isinstance(m, (torch.nn.Linear, torch.nn.ReLU)) for m in gm.modules())
    # All parameters were captured, once each.
    assert sum(p.numel() for p in gm.parameters()) == sum(p.numel() for p in model.parameters())
    if aten_graph:
        targets = [n.target for n in call_nodes(gm)]
        assert targets.count(torch.ops.aten.addmm.default) == 2 + 2


def test_exported_graph_keeps_the_exported_modules_weights(device):
    model = Tower().to(device).eval()
    exported_from = copy.deepcopy(model)
    x = torch.randn(5, 8, device=device)

    gm = torch._dynamo.export(exported_from)(x).graph_module
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)

    # The exported graph is tied to exported_from's weights, not model's.
    torch.testing.assert_close(gm(x), exported_from(x))
    assert not torch.allclose(gm(x)["mean"], model(x)["mean"])


def test_compile_nested_module_matches_eager(device):
    model = Tower().to(device)
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    x = torch.randn(5, 8, device=device)

    torch.testing.assert_close(compiled(x), model(x))
    assert counter.frame_count == 1
    # 2 blocks x (linear, relu, add) + 2 heads
    assert counter.op_count == 2 * 3 + 2
