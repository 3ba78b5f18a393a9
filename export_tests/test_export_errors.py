"""What torch.export must reject, and with which exception.

Covers unsupported Python / graph breaks in strict mode, data-dependent control
flow without ``torch.cond`` (strict and non-strict), dynamic-shape constraint
violations, malformed ``export`` arguments, unsupported input / output types,
custom ops without a fake implementation, ``torch.cond`` branch mismatches,
calling ``ep.module()`` with inputs that do not match the exported
structure / shapes / specialised scalars, and mutating module state that is
not a buffer. Every rejection is checked for its exact exception type and
message; where a fixed variant of the program exists it is exported and
compared with eager too.
"""

import contextlib
import random

import pytest
import torch
from torch._dynamo.exc import TorchRuntimeError, Unsupported, UserError
from torch.export import Dim, export
from torch.fx.experimental.symbolic_shapes import ConstraintViolationError, GuardOnDataDependentSymNode
from torch.testing import assert_close


@torch.library.custom_op("mtx_p2_err::no_fake", mutates_args=())
def no_fake(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@contextlib.contextmanager
def raises_exactly(exc_type, match):
    """pytest.raises that also rejects subclasses of ``exc_type``."""
    with pytest.raises(exc_type, match=match) as info:
        yield info
    assert type(info.value) is exc_type, f"expected exactly {exc_type}, got {type(info.value)}"


class Opaque:
    """A class that is not registered as a pytree node."""

    def __init__(self, t):
        self.t = t


class AddMul(torch.nn.Module):
    def forward(self, x, y):
        return x + y, x * y


# --- strict mode: unsupported Python -------------------------------------------


def _graph_break(x):
    torch._dynamo.graph_break()
    return x + 1


def _python_random(x):
    return x * random.random()


def _float_tolist(x):
    return x + sum(x.tolist())


@pytest.mark.filterwarnings("ignore:Dynamo does not know how to trace the builtin")
@pytest.mark.parametrize(
    "fn,match",
    [
        (_graph_break, r"graph_break\(\)"),
        (_python_random, r"Dynamo does not know how to trace the builtin .*random"),
        (_float_tolist, r"tolist\(\) with non-integer tensor"),
    ],
    ids=["graph_break", "random_builtin", "float_tolist"],
)
def test_strict_mode_rejects_untraceable_python(device, fn, match):
    class M(torch.nn.Module):
        def forward(self, x):
            return fn(x)

    x = torch.randn(4, device=device)
    with raises_exactly(Unsupported, match):
        export(M().to(device), (x,), strict=True)


def test_non_strict_mode_traces_through_graph_break(device):
    """Contrast: the non-strict tracer runs Python, so a graph break is fine."""

    class M(torch.nn.Module):
        def forward(self, x):
            return _graph_break(x) * 2

    mod = M().to(device)
    x = torch.randn(4, device=device)
    ep = export(mod, (x,), strict=False)
    assert_close(ep.module()(x), mod(x))


# --- data-dependent control flow -----------------------------------------------


class DataDependentBranch(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x.sin()
        return x.cos()


class CondBranch(torch.nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: t.sin(), lambda t: t.cos(), (x,))


def test_data_dependent_branch_strict(device):
    x = torch.randn(5, device=device)
    with raises_exactly(Unsupported, r"Data-dependent branching"):
        torch.export.export(DataDependentBranch().to(device), (x,), strict=True)


@pytest.mark.parametrize(
    "branch,match",
    [
        (lambda x: x.sum() > 0, r"Could not guard on data-dependent expression"),
        (lambda x: x.max().item() > 0, r"Could not guard on data-dependent expression .* > 0"),
        (lambda x: x.nonzero().shape[0] > 2, r"Could not guard on data-dependent expression u\d+ > 2"),
    ],
    ids=["tensor_bool", "item_compare", "nonzero_size"],
)
def test_data_dependent_branch_non_strict(device, branch, match):
    class M(torch.nn.Module):
        def forward(self, x):
            return x.sin() if branch(x) else x.cos()

    x = torch.randn(5, device=device)
    with raises_exactly(GuardOnDataDependentSymNode, match):
        export(M().to(device), (x,))


def test_data_dependent_loop_bound_non_strict(device):
    class M(torch.nn.Module):
        def forward(self, x, k):
            for _ in range(k.item()):
                x = x * 2
            return x

    args = (torch.randn(3, device=device), torch.tensor(2, device=device))
    with raises_exactly(GuardOnDataDependentSymNode, r"Could not extract specialized integer"):
        torch.export.export(M().to(device), args)


def test_cond_is_the_accepted_fix_for_data_dependent_branch(device):
    mod = CondBranch().to(device)
    ep = export(mod, (torch.ones(5, device=device),))
    # Both branches are captured: positive and negative inputs take different paths.
    for x in (torch.ones(5, device=device), -torch.ones(5, device=device), torch.randn(5, device=device)):
        assert_close(ep.module()(x), DataDependentBranch().to(device)(x))
        assert_close(ep.module()(x), mod(x))


def test_cond_branches_with_different_dtypes(device):
    class M(torch.nn.Module):
        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda t: t + 1, lambda t: t.double(), (x,))

    x = torch.randn(3, device=device)
    with raises_exactly(TorchRuntimeError, r"(?s)When merging two branches' output.*dtype"):
        torch.export.export(M().to(device), (x,))


# --- dynamic shape constraint violations -------------------------------------


def test_dim_range_narrowed_by_code(device):
    class M(torch.nn.Module):
        def forward(self, x):
            if x.shape[0] > 5:
                return x + 1
            return x - 1

    x = torch.randn(8, device=device)
    n = Dim("n", min=2, max=10)
    with raises_exactly(UserError, r"(?s)Not all values of n .* satisfy the generated guard.*Suggested fixes"):
        export(M().to(device), (x,), dynamic_shapes=({0: n},))


@pytest.mark.parametrize("dim", [Dim("n"), Dim.DYNAMIC], ids=["named_dim", "Dim.DYNAMIC"])
def test_dynamic_dim_specialised_to_constant(device, dim):
    class M(torch.nn.Module):
        def forward(self, x):
            return x.view(4, 2)

    x = torch.randn(8, device=device)
    with raises_exactly(UserError, r"specialized it to be a constant \(8\)"):
        torch.export.export(M().to(device), (x,), dynamic_shapes=({0: dim},))


def test_dynamic_dim_forced_equal_to_static_dim(device):
    x, y = torch.randn(4, device=device), torch.randn(4, device=device)
    with raises_exactly(UserError, r"marked a as dynamic but your code specialized it"):
        export(AddMul().to(device), (x, y), dynamic_shapes=({0: Dim("a")}, None))
    # Marking both sides dynamic with the same Dim is the valid spelling.
    a = Dim("a")
    ep = export(AddMul().to(device), (x, y), dynamic_shapes=({0: a}, {0: a}))
    x7, y7 = torch.randn(7, device=device), torch.randn(7, device=device)
    assert_close(ep.module()(x7, y7), AddMul()(x7, y7))


def test_shared_dim_with_unequal_example_sizes(device):
    class M(torch.nn.Module):
        def forward(self, x, y):
            return x.sum() + y.sum()

    n = Dim("n")
    args = (torch.randn(3, device=device), torch.randn(4, device=device))
    with raises_exactly(UserError, r"L\['y'\].size\(\)\[0\] = 4 is not equal to L\['x'\].size\(\)\[0\] = 3"):
        torch.export.export(M().to(device), args, dynamic_shapes=({0: n}, {0: n}))


def test_example_input_outside_dim_range(device):
    args = (torch.randn(30, device=device), torch.randn(30, device=device))
    m = Dim("m", min=2, max=10)
    with raises_exactly(ConstraintViolationError, r"30 not in range \[2, 10\]"):
        export(AddMul().to(device), args, dynamic_shapes=({0: m}, {0: m}))


@pytest.mark.parametrize(
    "dynamic_shapes,match",
    [
        (({0: Dim("a")},), r"`inputs` has 2 elements, but `dynamic_shapes` has 1 elements"),
        ({"x": {0: Dim("a")}, "z": None}, r"top-level keys must be the arg names \['x', 'y'\]"),
    ],
    ids=["too_few_entries", "wrong_arg_name"],
)
def test_malformed_dynamic_shapes_spec(device, dynamic_shapes, match):
    args = (torch.randn(3, device=device), torch.randn(3, device=device))
    with raises_exactly(UserError, match):
        torch.export.export(AddMul().to(device), args, dynamic_shapes=dynamic_shapes)


# --- malformed export() calls and unsupported types ---------------------------


def test_args_must_be_a_tuple(device):
    args = [torch.randn(3, device=device), torch.randn(3, device=device)]
    with raises_exactly(UserError, r"Expecting `args` to be a tuple of example positional inputs"):
        export(AddMul().to(device), args)


def test_mod_must_be_an_nn_module(device):
    with raises_exactly(ValueError, r"Expected `mod` to be an instance of `torch.nn.Module`"):
        torch.export.export(lambda x: x + 1, (torch.randn(3, device=device),))


def test_unregistered_class_as_input(device):
    class M(torch.nn.Module):
        def forward(self, obj, y):
            return obj.t + y

    args = (Opaque(torch.randn(3, device=device)), torch.randn(3, device=device))
    with raises_exactly(ValueError, r"Unsupported input type .*Opaque"):
        export(M().to(device), args)


def test_unregistered_class_as_output(device):
    class M(torch.nn.Module):
        def forward(self, x):
            return Opaque(x * 2)

    with raises_exactly(RuntimeError, r"Found .*Opaque.* in output, which is not a known type"):
        torch.export.export(M().to(device), (torch.randn(3, device=device),))


def test_custom_op_without_fake_impl(device):
    class M(torch.nn.Module):
        def forward(self, x):
            return no_fake(x) + 1

    x = torch.randn(3, device=device)
    assert_close(M()(x), x + 1)  # fine in eager
    with raises_exactly(RuntimeError, r"no fake impl registered for .*mtx_p2_err::no_fake"):
        export(M().to(device), (x,))


# --- calling ep.module() with the wrong inputs -------------------------------


@pytest.mark.parametrize(
    "bad_call,match",
    [
        (lambda m, x: m(x), r"Trying to flatten user inputs with exported input tree spec"),
        (lambda m, x: m(x, x, x), r"Trying to flatten user inputs with exported input tree spec"),
        (lambda m, x: m(x, y=x), r"kwarg keyword mismatch: Got the following keywords \['y'\]"),
        (lambda m, x: m([x, x]), r"Trying to flatten user inputs with exported input tree spec"),
    ],
    ids=["missing_arg", "extra_arg", "unexpected_kwarg", "list_instead_of_args"],
)
def test_module_rejects_wrong_input_structure(device, bad_call, match):
    mod = AddMul().to(device)
    x = torch.randn(3, device=device)
    ep = torch.export.export(mod, (x, x))
    m = ep.module()
    assert_close(m(x, x), mod(x, x))
    with raises_exactly(ValueError, match):
        bad_call(m, x)


def test_module_rejects_wrong_dict_keys(device):
    class M(torch.nn.Module):
        def forward(self, d):
            return d["a"] - d["b"]

    mod = M().to(device)
    d = {"a": torch.randn(2, device=device), "b": torch.randn(2, device=device)}
    ep = export(mod, (d,))
    assert_close(ep.module()(d), mod(d))
    with raises_exactly(ValueError, r"Trying to flatten user inputs"):
        ep.module()({"a": d["a"], "c": d["b"]})


def test_module_rejects_static_shape_mismatch(device):
    mod = AddMul().to(device)
    x = torch.randn(3, device=device)
    ep = torch.export.export(mod, (x, x))
    assert_close(ep.module()(x, x), mod(x, x))
    x4 = torch.randn(4, device=device)
    with raises_exactly(AssertionError, r"Guard failed: x.size\(\)\[0\] == 3"):
        ep.module()(x4, x4)


def test_module_rejects_dynamic_dim_out_of_range_and_unequal(device):
    mod = AddMul().to(device)
    a = Dim("a", min=2, max=8)
    x = torch.randn(4, device=device)
    ep = export(mod, (x, x), dynamic_shapes=({0: a}, {0: a}))
    x8 = torch.randn(8, device=device)
    assert_close(ep.module()(x8, x8), mod(x8, x8))
    x9 = torch.randn(9, device=device)
    with raises_exactly(AssertionError, r"Guard failed: x.size\(\)\[0\] <= 8"):
        ep.module()(x9, x9)
    with raises_exactly(AssertionError, r"Guard failed: y.size\(\)\[0\] == x.size\(\)\[0\]"):
        ep.module()(torch.randn(5, device=device), torch.randn(6, device=device))


def test_module_rejects_different_specialised_int(device):
    class M(torch.nn.Module):
        def forward(self, x, n: int):
            return x * n

    mod = M().to(device)
    x = torch.randn(3, device=device)
    ep = torch.export.export(mod, (x, 3))
    assert_close(ep.module()(x, 3), mod(x, 3))
    with raises_exactly(AssertionError, r"Guard failed: n == 3"):
        ep.module()(x, 4)


def test_runtime_assert_from_torch_check(device):
    class M(torch.nn.Module):
        def forward(self, x, k):
            n = k.item()
            torch._check(n >= 0)
            torch._check(n <= x.shape[0])
            return x[:n] + 1

    mod = M().to(device)
    x = torch.arange(6.0, device=device)
    ep = export(mod, (x, torch.tensor(2, device=device)))
    assert_close(ep.module()(x, torch.tensor(4, device=device)), mod(x, torch.tensor(4, device=device)))
    with raises_exactly(RuntimeError, r"Runtime assertion failed for expression u\d+ <= 6"):
        ep.module()(x, torch.tensor(7, device=device))


@pytest.mark.parametrize("method", ["train", "eval"])
def test_exported_module_train_eval_not_supported(device, method):
    mod = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.5)).to(device).eval()
    x = torch.randn(2, 3, device=device)
    ep = torch.export.export(mod, (x,))
    m = ep.module()
    assert_close(m(x), mod(x))
    with raises_exactly(NotImplementedError, rf"Calling {method}\(\) is not supported yet"):
        getattr(m, method)()


# --- mutating module state that is not a buffer --------------------------------


def test_in_place_update_of_parameter_non_strict(device):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

        def forward(self, x):
            self.w.add_(x)
            return self.w * 2

    with raises_exactly(RuntimeError, r"a leaf Variable that requires grad is being used in an in-place operation"):
        export(M().to(device), (torch.ones(3, device=device),))


def test_in_place_update_of_parameter_strict(device):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(3))

        def forward(self, x):
            self.w.add_(x)
            return self.w * 2

    with raises_exactly(TorchRuntimeError, r"(?s)call_method add_.*leaf Variable that requires grad"):
        torch.export.export(M().to(device), (torch.ones(3, device=device),), strict=True)


def test_mutating_plain_tensor_attribute_rejected_by_decomposition(device):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.total = torch.zeros(3)  # not registered as a buffer

        def forward(self, x):
            self.total.add_(x)
            return x + self.total

    mod = M()
    mod.total = mod.total.to(device)
    with raises_exactly(RuntimeError, r"Constant total is mutated in the forward method. Pls register it as buffer"):
        export(mod, (torch.ones(3, device=device),)).run_decompositions()


def test_assigning_plain_tensor_attribute_warns_and_is_dropped(device):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.last = torch.zeros(3)

        def forward(self, x):
            self.last = x * 2
            return x + 1

    mod = M()
    mod.last = mod.last.to(device)
    with pytest.warns(UserWarning, match=r"tensor attribute self.last was assigned during export.*register_buffer"):
        ep = torch.export.export(mod, (torch.ones(3, device=device),))
    # The assignment is not part of the program and the original attribute is untouched.
    assert_close(mod.last, torch.zeros(3, device=device))
    x = torch.randn(3, device=device)
    assert_close(ep.module()(x), x + 1)
    assert not any(s.kind.name == "BUFFER" for s in ep.graph_signature.input_specs)
