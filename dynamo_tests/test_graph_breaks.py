"""Graph breaks: code that torch._dynamo.export and torch.compile(fullgraph=True)
must reject, the exact exception they raise, and what works instead
(torch.where instead of a Python branch, or a non-fullgraph compile that
splits the graph).
"""
import time
import warnings

import pytest
import torch
import torch._dynamo
from torch._dynamo.exc import Unsupported, UserError
from torch._dynamo.testing import CompileCounter


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def explicit_break(x):
    y = x.sin()
    torch._dynamo.graph_break()
    return y.cos()


def branch_on_tensor(x):
    if x.sum() > 0:
        return x + 1
    return x - 1


def branch_on_item(x):
    if x.sum().item() > 0:
        return x + 1
    return x - 1


def call_time_time(x):
    return x + time.time()


def call_warnings_warn(x):
    warnings.warn("careful", stacklevel=1)
    return x * 2


def open_a_file(x):
    with open(__file__):
        pass
    return x + 1


def float_tolist(x):
    return torch.tensor(x.tolist()) + 1


UNSUPPORTED_CASES = [
    pytest.param(explicit_break, r"torch\._dynamo\.graph_break\(\)", id="graph_break"),
    pytest.param(branch_on_tensor, "Data-dependent branching", id="tensor_bool"),
    pytest.param(call_time_time, "marked as skipped", id="time.time"),
    pytest.param(call_warnings_warn, "marked as skipped", id="warnings.warn"),
    pytest.param(open_a_file, "Failed to trace builtin operator", id="open"),
    pytest.param(float_tolist, r"tolist\(\) with non-integer tensor", id="float_tolist"),
]


@pytest.mark.parametrize("fn, match", UNSUPPORTED_CASES)
def test_export_rejects_graph_break(device, fn, match):
    x = torch.randn(4, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(x)  # every case runs fine in eager
        with pytest.raises(Unsupported, match=match):
            torch._dynamo.export(fn)(x)


@pytest.mark.parametrize("fn, match", UNSUPPORTED_CASES)
def test_compile_fullgraph_rejects_graph_break(device, fn, match):
    x = torch.randn(4, device=device)
    compiled = torch.compile(fn, backend="eager", fullgraph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Unsupported, match=match):
            compiled(x)


def test_data_dependent_guard_on_item_is_a_user_error(device):
    x = torch.randn(4, device=device)
    with pytest.raises(UserError, match="Could not guard on data-dependent expression"):
        torch._dynamo.export(branch_on_item)(x)
    torch._dynamo.reset()
    with pytest.raises(UserError, match="Could not guard on data-dependent expression"):
        torch.compile(branch_on_item, backend="eager", fullgraph=True)(x)


@pytest.mark.parametrize(
    "fn, frames", [(explicit_break, 2), (branch_on_tensor, 2)], ids=["graph_break", "tensor_bool"]
)
def test_compile_without_fullgraph_splits_the_graph(device, fn, frames):
    counter = CompileCounter()
    compiled = torch.compile(fn, backend=counter)
    x = torch.randn(4, device=device)

    torch.testing.assert_close(compiled(x), fn(x))
    assert counter.frame_count == frames


def where_instead_of_branch(x):
    return torch.where(x.sum() > 0, x + 1, x - 1)


@pytest.mark.parametrize("aten_graph", [False, True])
def test_where_makes_data_dependent_branch_exportable(device, aten_graph):
    x = torch.randn(4, device=device)

    gm = torch._dynamo.export(where_instead_of_branch, aten_graph=aten_graph)(x).graph_module

    positive = torch.ones(4, device=device)
    negative = -torch.ones(4, device=device)
    # One graph serves both outcomes of the former Python branch.
    for inp in (positive, negative, x):
        torch.testing.assert_close(gm(inp), branch_on_tensor(inp))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    expected = torch.ops.aten.where.self if aten_graph else torch.where
    assert expected in targets


def test_fullgraph_captures_item_that_plain_compile_breaks_on(device):
    def scale_by_sum(x):
        return x * x.sum().item()

    x = torch.randn(4, device=device)

    full = CompileCounter()
    torch.testing.assert_close(torch.compile(scale_by_sum, backend=full, fullgraph=True)(x), scale_by_sum(x))
    torch._dynamo.reset()
    split = CompileCounter()
    torch.testing.assert_close(torch.compile(scale_by_sum, backend=split)(x), scale_by_sum(x))

    # fullgraph=True captures the scalar in one graph; without it the
    # .item() call is a graph break that yields two graphs.
    assert full.frame_count == 1
    assert split.frame_count == 2


def test_export_captures_item_as_local_scalar_dense(device):
    def scale_by_sum(x):
        return x * x.sum().item()

    x = torch.randn(4, device=device)
    gm = torch._dynamo.export(scale_by_sum, aten_graph=True)(x).graph_module

    torch.testing.assert_close(gm(x), scale_by_sum(x))
    other = torch.randn(4, device=device)
    torch.testing.assert_close(gm(other), scale_by_sum(other))
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten._local_scalar_dense.default in targets
