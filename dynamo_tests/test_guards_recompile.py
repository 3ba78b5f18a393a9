"""Guards: what torch._dynamo.export records in ExportResult.guards, and when
torch.compile reuses or recompiles a graph (counted with CompileCounter).
"""
import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter

SCALE = 3


@pytest.fixture(autouse=True)
def _reset_dynamo():
    global SCALE
    torch._dynamo.reset()
    SCALE = 3
    yield
    torch._dynamo.reset()
    SCALE = 3


def scaled_cos(x):
    return x.cos() * 2


def times_global(x):
    return x * SCALE


def guards_by_kind(guards, kind):
    return [g for g in guards if g.create_fn_name() == kind]


def shape_env_code(guards):
    return [code for g in guards_by_kind(guards, "SHAPE_ENV") for code in (g.code_list or [])]


# --------------------------------------------------------------------------
# ExportResult.guards
# --------------------------------------------------------------------------


def test_export_result_has_tensor_match_guard_for_input(device):
    x = torch.randn(4, 3, device=device, dtype=torch.float64)

    result = torch._dynamo.export(scaled_cos)(x)

    torch.testing.assert_close(result.graph_module(x), scaled_cos(x))
    assert len(result.guards) > 0
    tensor_guards = guards_by_kind(result.guards, "TENSOR_MATCH")
    assert [g.name for g in tensor_guards] == ["L['x']"]
    code = " ".join(tensor_guards[0].code_list)
    assert "torch.float64" in code
    assert "L['x'].ndimension() == 2" in code
    assert "requires_grad == False" in code


def test_export_bakes_guarded_global_into_graph(device):
    global SCALE
    x = torch.randn(3, device=device)

    result = torch._dynamo.export(times_global)(x)
    SCALE = 5  # a compiled function would recompile; the exported graph is fixed

    torch.testing.assert_close(result.graph_module(x), x * 3)
    mul = [n for n in result.graph_module.graph.nodes if n.op == "call_function"]
    assert len(mul) == 1 and 3 in mul[0].args


def test_export_shape_guards_are_symbolic_by_default(device):
    x = torch.randn(4, 3, device=device)

    result = torch._dynamo.export(scaled_cos)(x)

    code = shape_env_code(result.guards)
    assert "2 <= L['x'].size()[0]" in code
    assert not any("L['x'].size()[0] == 4" in c for c in code)
    other = torch.randn(6, 5, device=device)
    torch.testing.assert_close(result.graph_module(other), scaled_cos(other))


def test_export_shape_guards_are_exact_when_static(device):
    x = torch.randn(4, 3, device=device)

    result = torch._dynamo.export(scaled_cos, assume_static_by_default=True)(x)

    torch.testing.assert_close(result.graph_module(x), scaled_cos(x))
    code = shape_env_code(result.guards)
    assert "L['x'].size()[0] == 4" in code
    assert "L['x'].size()[1] == 3" in code


# --------------------------------------------------------------------------
# torch.compile recompilation
# --------------------------------------------------------------------------


def test_compile_reuses_graph_for_same_shape_and_dtype(device):
    counter = CompileCounter()
    compiled = torch.compile(scaled_cos, backend=counter, fullgraph=True)

    for _ in range(3):
        x = torch.randn(4, device=device)
        torch.testing.assert_close(compiled(x), scaled_cos(x))

    assert counter.frame_count == 1
    assert counter.op_count == 2  # cos, mul


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int32])
def test_compile_recompiles_on_dtype_change(device, dtype):
    counter = CompileCounter()
    compiled = torch.compile(scaled_cos, backend=counter, fullgraph=True)
    x = torch.randn(4, device=device)
    compiled(x)

    other = torch.arange(4, device=device).to(dtype)
    torch.testing.assert_close(compiled(other), scaled_cos(other))
    assert counter.frame_count == 2
    compiled(other)
    assert counter.frame_count == 2


@pytest.mark.parametrize(
    "dynamic, expected_frames",
    [(None, 2), (False, 3), (True, 1)],
    ids=["automatic", "static", "dynamic"],
)
def test_compile_recompiles_on_shape_change(device, dynamic, expected_frames):
    counter = CompileCounter()
    compiled = torch.compile(scaled_cos, backend=counter, fullgraph=True, dynamic=dynamic)

    for n in (3, 4, 5):
        x = torch.randn(n, device=device)
        torch.testing.assert_close(compiled(x), scaled_cos(x))

    # automatic: the second size marks the dim dynamic, the third reuses it.
    assert counter.frame_count == expected_frames


def test_compile_recompiles_on_rank_change(device):
    counter = CompileCounter()
    compiled = torch.compile(scaled_cos, backend=counter, fullgraph=True, dynamic=True)

    for shape in [(4,), (4, 2), (4, 2, 2)]:
        x = torch.randn(shape, device=device)
        torch.testing.assert_close(compiled(x), scaled_cos(x))

    assert counter.frame_count == 3


def test_compile_recompiles_on_requires_grad_and_grad_mode(device):
    counter = CompileCounter()
    compiled = torch.compile(scaled_cos, backend=counter, fullgraph=True)

    compiled(torch.randn(4, device=device))
    assert counter.frame_count == 1

    leaf = torch.randn(4, device=device, requires_grad=True)
    out = compiled(leaf)
    assert counter.frame_count == 2
    out.sum().backward()
    torch.testing.assert_close(leaf.grad, -2 * leaf.detach().sin())

    with torch.no_grad():
        compiled(torch.randn(4, device=device))
    assert counter.frame_count == 3


def test_compile_recompiles_when_guarded_global_changes(device):
    global SCALE
    counter = CompileCounter()
    compiled = torch.compile(times_global, backend=counter, fullgraph=True)
    x = torch.randn(3, device=device)

    torch.testing.assert_close(compiled(x), x * 3)
    SCALE = 5
    torch.testing.assert_close(compiled(x), x * 5)
    assert counter.frame_count == 2
    SCALE = 3
    torch.testing.assert_close(compiled(x), x * 3)
    assert counter.frame_count == 2  # the first entry is still cached


def test_compile_recompiles_on_train_eval_switch(device):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).to(device)
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    x = torch.randn(2, 4, device=device)

    compiled(x)  # training mode: random
    model.eval()
    torch.testing.assert_close(compiled(x), model(x))

    assert counter.frame_count == 2


def test_reset_discards_compiled_code(device):
    counter = CompileCounter()
    compiled = torch.compile(scaled_cos, backend=counter, fullgraph=True)
    x = torch.randn(4, device=device)

    compiled(x)
    compiled(x)
    assert counter.frame_count == 1
    torch._dynamo.reset()
    torch.testing.assert_close(compiled(x), scaled_cos(x))
    assert counter.frame_count == 2
