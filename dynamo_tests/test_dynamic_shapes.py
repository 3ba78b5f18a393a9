"""Dynamic shapes with torch._dynamo.export(..., dynamic_shapes=..., aten_graph=True):
Dim specs (dict and tuple form), shared and derived dims, ranges, and the
errors raised when the traced code contradicts the spec.
"""
import pytest
import torch
import torch._dynamo
from torch._dynamo.exc import UserError
from torch.export import Dim
from torch.fx.experimental.symbolic_shapes import ConstraintViolationError


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def call_targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def shape_env_code(guards):
    return [c for g in guards if g.create_fn_name() == "SHAPE_ENV" for c in (g.code_list or [])]


def project(x, w):
    return (x @ w).relu().reshape(x.shape[0], -1)


@pytest.mark.parametrize("spec_form", ["dict", "tuple"])
def test_dynamic_batch_dim_serves_other_sizes(device, spec_form):
    batch = Dim("batch")
    x = torch.randn(4, 3, device=device)
    w = torch.randn(3, 5, device=device)
    spec = {"x": {0: batch}, "w": None} if spec_form == "dict" else ({0: batch}, None)

    result = torch._dynamo.export(project, dynamic_shapes=spec, aten_graph=True)(x, w)
    gm = result.graph_module

    torch.testing.assert_close(gm(x, w), project(x, w))
    for n in (2, 9):
        other = torch.randn(n, 3, device=device)
        torch.testing.assert_close(gm(other, w), project(other, w))
    assert torch.ops.aten.sym_size.int in call_targets(gm)
    code = shape_env_code(result.guards)
    assert "2 <= L['x'].size()[0]" in code
    assert "L['w'].size()[0] == 3" in code  # w stays static


def test_dynamic_export_without_aten_graph(device):
    batch = Dim("batch")
    x = torch.randn(4, 3, device=device)
    w = torch.randn(3, 5, device=device)

    gm = torch._dynamo.export(project, dynamic_shapes={"x": {0: batch}, "w": None})(x, w).graph_module

    other = torch.randn(11, 3, device=device)
    torch.testing.assert_close(gm(other, w), project(other, w))
    # Even a Torch-level graph reads dynamic sizes through aten.sym_size; that
    # is the only ATen overload in it.
    overloads = {t for t in call_targets(gm) if isinstance(t, torch._ops.OpOverload)}
    assert overloads == {torch.ops.aten.sym_size.int}


def test_bounded_dim_records_range_guard(device):
    def f(x):
        return x.cumsum(0) * x.shape[0]

    x = torch.randn(4, 2, device=device)
    spec = {"x": {0: Dim("n", min=3, max=64)}}

    result = torch._dynamo.export(f, dynamic_shapes=spec, aten_graph=True)(x)

    for n in (3, 4, 64):
        other = torch.randn(n, 2, device=device)
        torch.testing.assert_close(result.graph_module(other), f(other))
    assert "3 <= L['x'].size()[0] and L['x'].size()[0] <= 64" in shape_env_code(result.guards)


def test_shared_dim_ties_inputs_together(device):
    def f(x, y):
        return x * y.sum(1)

    n = Dim("n")
    x = torch.randn(4, device=device)
    y = torch.randn(4, 3, device=device)

    result = torch._dynamo.export(f, dynamic_shapes={"x": {0: n}, "y": {0: n}}, aten_graph=True)(x, y)

    assert "L['y'].size()[0] == L['x'].size()[0]" in shape_env_code(result.guards)
    x2, y2 = torch.randn(7, device=device), torch.randn(7, 3, device=device)
    torch.testing.assert_close(result.graph_module(x2, y2), f(x2, y2))


def test_derived_dim(device):
    def drop_first(x, y):
        return x[1:] + y

    n = Dim("n")
    x = torch.randn(5, device=device)
    y = torch.randn(4, device=device)

    gm = torch._dynamo.export(drop_first, dynamic_shapes={"x": {0: n + 1}, "y": {0: n}}, aten_graph=True)(
        x, y
    ).graph_module

    torch.testing.assert_close(gm(x, y), drop_first(x, y))
    x2, y2 = torch.randn(9, device=device), torch.randn(8, device=device)
    torch.testing.assert_close(gm(x2, y2), drop_first(x2, y2))
    assert torch.ops.aten.slice.Tensor in call_targets(gm)


def test_assume_static_keeps_unlisted_dims_static(device):
    def f(x):
        return x.reshape(x.shape[0] * x.shape[1])

    x = torch.randn(4, 3, device=device)
    spec = {"x": {0: Dim("rows")}}

    result = torch._dynamo.export(f, dynamic_shapes=spec, aten_graph=True, assume_static_by_default=True)(x)

    code = shape_env_code(result.guards)
    assert "L['x'].size()[1] == 3" in code
    assert not any("L['x'].size()[0] ==" in c for c in code)
    other = torch.randn(6, 3, device=device)
    torch.testing.assert_close(result.graph_module(other), f(other))


def branch_on_size(x):
    if x.shape[0] == 4:
        return x + 1
    return x - 1


def positive_only(x):
    if x.shape[0] > 2:
        return x + 1
    return x - 1


def test_specialization_of_dynamic_dim_is_rejected(device):
    x = torch.randn(4, device=device)
    with pytest.raises(ConstraintViolationError, match=r"Constraints violated \(n\)"):
        torch._dynamo.export(branch_on_size, dynamic_shapes={"x": {0: Dim("n")}}, aten_graph=True)(x)


def test_guard_narrowing_dim_range_is_rejected(device):
    x = torch.randn(4, device=device)
    with pytest.raises(ConstraintViolationError, match=r"Constraints violated \(n\)"):
        torch._dynamo.export(positive_only, dynamic_shapes={"x": {0: Dim("n")}}, aten_graph=True)(x)


def test_narrowed_range_is_accepted_when_declared(device):
    x = torch.randn(4, device=device)
    spec = {"x": {0: Dim("n", min=3, max=32)}}

    gm = torch._dynamo.export(positive_only, dynamic_shapes=spec, aten_graph=True)(x).graph_module

    for n in (3, 4, 32):
        other = torch.randn(n, device=device)
        torch.testing.assert_close(gm(other), positive_only(other))
    # Only the taken branch was traced.
    assert call_targets(gm) == [torch.ops.aten.add.Tensor]


def test_independent_dims_that_must_be_equal_are_rejected(device):
    def add(x, y):
        return x + y

    x, y = torch.randn(4, device=device), torch.randn(4, device=device)
    spec = {"x": {0: Dim("a")}, "y": {0: Dim("b")}}
    with pytest.raises(ConstraintViolationError, match="must always be equal"):
        torch._dynamo.export(add, dynamic_shapes=spec, aten_graph=True)(x, y)


def test_example_outside_declared_range_is_rejected(device):
    x = torch.randn(4, device=device)
    spec = {"x": {0: Dim("n", min=5, max=10)}}
    def double(x):
        return x * 2

    with pytest.raises(ConstraintViolationError, match=r"4 not in range \[5, 10\]"):
        torch._dynamo.export(double, dynamic_shapes=spec, aten_graph=True)(x)


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"z": {0: Dim("n")}}, "has keys \\['x'\\], but `dynamic_shapes` has keys \\['z'\\]"),
        (({0: Dim("n")}, None), "has 1 elements, but `dynamic_shapes` has 2 elements"),
    ],
    ids=["wrong_name", "wrong_arity"],
)
def test_malformed_dynamic_shapes_spec_is_a_user_error(device, spec, match):
    def double(x):
        return x * 2

    x = torch.randn(4, device=device)
    with pytest.raises(UserError, match=match):
        torch._dynamo.export(double, dynamic_shapes=spec, aten_graph=True)(x)
