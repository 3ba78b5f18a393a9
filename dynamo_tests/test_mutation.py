"""Mutation under torch._dynamo.export and torch.compile(fullgraph=True):
module attributes (allowed and rejected cases), buffers, and user inputs.

Mutating tests run eager on one copy of the state and the exported/compiled
code on an identical copy, then check the outputs and the resulting
tensors/buffers against each other.
"""
import copy

import pytest
import torch
import torch._dynamo
from torch._dynamo.exc import TorchRuntimeError, Unsupported
from torch._dynamo.testing import CompileCounter


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def call_targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


# --------------------------------------------------------------------------
# Module attribute mutation
# --------------------------------------------------------------------------


class CallCounter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        self.calls += 1
        return self.lin(x) * self.calls


def test_export_int_attribute_mutation_is_applied_once_and_baked_in(device):
    eager = CallCounter().to(device)
    exported = copy.deepcopy(eager)
    x = torch.randn(2, 3, device=device)

    gm = torch._dynamo.export(exported)(x).graph_module

    # Tracing ran the Python side effect exactly once ...
    assert exported.calls == 1
    expected_first = eager(x)
    torch.testing.assert_close(gm(x), expected_first)
    # ... and froze calls == 1 into the graph: later calls neither read nor
    # bump the counter, unlike eager.
    torch.testing.assert_close(gm(x), expected_first)
    assert exported.calls == 1
    assert any(n.op == "call_function" and 1 in n.args for n in gm.graph.nodes)


def test_compile_int_attribute_mutation_replays_every_call(device):
    eager = CallCounter().to(device)
    compiled_mod = copy.deepcopy(eager)
    counter = CompileCounter()
    compiled = torch.compile(compiled_mod, backend=counter, fullgraph=True)
    x = torch.randn(2, 3, device=device)

    for step in range(1, 4):
        torch.testing.assert_close(compiled(x), eager(x))
        assert compiled_mod.calls == eager.calls == step
    # The int attribute is guarded as a constant, so every new value recompiles.
    assert counter.frame_count == 3


class History(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.history = []

    def forward(self, x):
        self.history.append(x.sum())
        return x * len(self.history)


def test_compile_list_attribute_append_matches_eager(device):
    eager = History()
    compiled_mod = History()
    compiled = torch.compile(compiled_mod, backend="eager", fullgraph=True)
    xs = [torch.randn(4, device=device) for _ in range(3)]

    for x in xs:
        torch.testing.assert_close(compiled(x), eager(x))

    assert len(compiled_mod.history) == len(eager.history) == 3
    torch.testing.assert_close(compiled_mod.history, eager.history)


class SwapSubmodule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.active = torch.nn.Linear(3, 2)
        self.spare = torch.nn.Linear(3, 2)

    def forward(self, x):
        self.active = self.spare
        return self.active(x)


def test_export_reassigning_existing_submodule_is_allowed(device):
    mod = SwapSubmodule().to(device)
    spare_reference = copy.deepcopy(mod.spare)
    x = torch.randn(5, 3, device=device)

    gm = torch._dynamo.export(mod)(x).graph_module

    assert mod.active is mod.spare  # the attribute store was applied
    torch.testing.assert_close(gm(x), spare_reference(x))
    # Only the spare Linear's weight and bias were captured.
    captured = sorted((tuple(p.shape) for p in gm.parameters()), key=len)
    assert captured == [(2,), (2, 3)]


class NewParameterInForward(torch.nn.Module):
    def forward(self, x):
        self.weight = torch.nn.Parameter(torch.ones_like(x))
        return x * self.weight


class NewSubmoduleInForward(torch.nn.Module):
    def forward(self, x):
        self.proj = torch.nn.Linear(x.shape[-1], 2, device=x.device)
        return self.proj(x)


@pytest.mark.parametrize("module_cls", [NewParameterInForward, NewSubmoduleInForward])
def test_creating_parameters_in_forward_is_rejected(device, module_cls):
    x = torch.randn(2, 3, device=device)
    module_cls()(x)  # fine in eager

    with pytest.raises(Unsupported, match=r"torch\.nn\.Parameter\(\)"):
        torch._dynamo.export(module_cls())(x)
    torch._dynamo.reset()
    with pytest.raises(Unsupported, match=r"torch\.nn\.Parameter\(\)"):
        torch.compile(module_cls(), backend="eager", fullgraph=True)(x)


class AssignTensorToParameter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        self.lin.weight = x
        return x + 1


def test_assigning_plain_tensor_over_parameter_is_rejected(device):
    x = torch.randn(3, 3, device=device)
    # Eager raises a TypeError from nn.Module.__setattr__ ...
    with pytest.raises(TypeError, match="cannot assign"):
        AssignTensorToParameter().to(device)(x)
    # ... whereas Dynamo refuses to trace into __setattr__ at all.
    with pytest.raises(Unsupported, match="marked as skipped"):
        torch._dynamo.export(AssignTensorToParameter().to(device))(x)
    torch._dynamo.reset()
    with pytest.raises(Unsupported, match="marked as skipped"):
        torch.compile(AssignTensorToParameter().to(device), backend="eager", fullgraph=True)(x)


def test_in_place_update_of_grad_requiring_parameter_is_rejected(device):
    weight = torch.nn.Parameter(torch.ones(3, device=device))
    x = torch.randn(3, device=device)

    def f(t):
        return weight.add_(t)

    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        f(x)
    with pytest.raises(TorchRuntimeError, match="leaf Variable that requires grad"):
        torch._dynamo.export(f)(x)
    torch.testing.assert_close(weight.detach(), torch.ones(3, device=device))


# --------------------------------------------------------------------------
# Buffer mutation
# --------------------------------------------------------------------------


class RunningSum(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("total", torch.zeros(4))

    def forward(self, x):
        self.total.add_(x)
        return x * self.total


@pytest.mark.parametrize("aten_graph", [False, True])
def test_export_buffer_mutation_matches_eager(device, aten_graph):
    eager = RunningSum().to(device)
    exported = RunningSum().to(device)
    xs = [torch.randn(4, device=device) for _ in range(3)]

    gm = torch._dynamo.export(exported, aten_graph=aten_graph)(xs[0]).graph_module
    # Export traces with fake tensors: the real buffer is untouched.
    torch.testing.assert_close(exported.total, torch.zeros(4, device=device))

    for x in xs:
        torch.testing.assert_close(gm(x), eager(x))

    # The graph owns exactly one buffer, and it tracked the same state as eager.
    buffers = [b for _, b in gm.named_buffers()]
    assert len(buffers) == 1
    torch.testing.assert_close(buffers[0], eager.total)
    if aten_graph:
        assert torch.ops.aten.add_.Tensor in call_targets(gm)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compile_buffer_mutation_matches_eager(device, backend):
    eager = RunningSum().to(device)
    compiled_mod = RunningSum().to(device)
    compiled = torch.compile(compiled_mod, backend=backend, fullgraph=True)

    for _ in range(3):
        x = torch.randn(4, device=device)
        torch.testing.assert_close(compiled(x), eager(x))

    torch.testing.assert_close(compiled_mod.total, eager.total)


def test_compile_batchnorm_running_stats_match_eager(device):
    eager = torch.nn.BatchNorm1d(3).to(device).train()
    compiled_mod = copy.deepcopy(eager)
    counter = CompileCounter()
    compiled = torch.compile(compiled_mod, backend=counter, fullgraph=True)

    for _ in range(2):
        x = torch.randn(8, 3, device=device)
        torch.testing.assert_close(compiled(x), eager(x))

    assert counter.frame_count == 1
    torch.testing.assert_close(compiled_mod.running_mean, eager.running_mean)
    torch.testing.assert_close(compiled_mod.running_var, eager.running_var)
    assert compiled_mod.num_batches_tracked.item() == eager.num_batches_tracked.item() == 2


def test_export_batchnorm_running_stats_match_eager(device):
    eager = torch.nn.BatchNorm1d(3).to(device).train()
    exported = copy.deepcopy(eager)
    x = torch.randn(8, 3, device=device)

    gm = torch._dynamo.export(exported)(x).graph_module
    for _ in range(2):
        batch = torch.randn(8, 3, device=device)
        torch.testing.assert_close(gm(batch), eager(batch))

    # Compare the running statistics by value: the graph only holds buffers.
    gm_buffers = [b for _, b in gm.named_buffers() if b.is_floating_point()]
    assert len(gm_buffers) == 2
    for expected in (eager.running_mean, eager.running_var):
        assert any(torch.allclose(b, expected) for b in gm_buffers)


# --------------------------------------------------------------------------
# User-input mutation
# --------------------------------------------------------------------------


def scale_in_place(x):
    x.mul_(2)
    return x + 1


@pytest.mark.parametrize("aten_graph", [False, True])
def test_export_input_mutation_matches_eager(device, aten_graph):
    x = torch.randn(3, device=device)
    x_eager, x_export = x.clone(), x.clone()

    gm = torch._dynamo.export(scale_in_place, aten_graph=aten_graph)(x_export).graph_module
    torch.testing.assert_close(x_export, x)  # tracing did not mutate the input

    torch.testing.assert_close(gm(x_export), scale_in_place(x_eager))
    torch.testing.assert_close(x_export, x_eager)
    torch.testing.assert_close(x_export, x * 2)
    if aten_graph:
        assert torch.ops.aten.mul_.Tensor in call_targets(gm)
    else:
        assert "mul_" in {n.target for n in gm.graph.nodes if n.op == "call_method"}


def zero_first_column_and_fill(x, y):
    x[:, 0].zero_()  # in-place through a view of the input
    y.copy_(x.sum(1))
    return x * 2


@pytest.mark.parametrize("aten_graph", [False, True])
def test_export_view_and_copy_mutation_of_inputs(device, aten_graph):
    x = torch.randn(4, 3, device=device)
    y = torch.randn(4, device=device)
    x_eager, y_eager = x.clone(), y.clone()
    x_exp, y_exp = x.clone(), y.clone()

    gm = torch._dynamo.export(zero_first_column_and_fill, aten_graph=aten_graph)(x_exp, y_exp).graph_module
    out = gm(x_exp, y_exp)

    torch.testing.assert_close(out, zero_first_column_and_fill(x_eager, y_eager))
    torch.testing.assert_close(x_exp, x_eager)
    torch.testing.assert_close(y_exp, y_eager)
    assert torch.all(x_exp[:, 0] == 0)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compile_input_mutation_matches_eager(device, backend):
    counter = CompileCounter() if backend == "eager" else backend
    compiled = torch.compile(zero_first_column_and_fill, backend=counter, fullgraph=True)

    x = torch.randn(4, 3, device=device)
    y = torch.randn(4, device=device)
    x_eager, y_eager = x.clone(), y.clone()

    torch.testing.assert_close(compiled(x, y), zero_first_column_and_fill(x_eager, y_eager))
    torch.testing.assert_close(x, x_eager)
    torch.testing.assert_close(y, y_eager)
    if isinstance(counter, CompileCounter):
        assert counter.frame_count == 1
