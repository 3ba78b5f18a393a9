"""torch.export on plain modules and functions.

Covers: plain nn.Modules, free functions wrapped in a Module, positional /
keyword / pytree (dict, tuple, list) inputs, multiple and nested outputs,
forward methods that call helper methods and submodules (including shared
submodules), Python-scalar inputs that export specialises, and the public
pieces of the ExportedProgram that describe the calling convention
(graph_signature user inputs/outputs, call_spec, module_call_graph).
"""

import pytest
import torch
import torch.nn.functional as F
from torch.export import export


def _fn_module(fn):
    """Wrap a free function in an nn.Module so that it can be exported."""

    class FnModule(torch.nn.Module):
        def forward(self, *args, **kwargs):
            return fn(*args, **kwargs)

    return FnModule()


def _user_input_specs(ep):
    kinds = torch.export.graph_signature.InputKind
    return [s for s in ep.graph_signature.input_specs if s.kind == kinds.USER_INPUT]


# --------------------------------------------------------------------------
# Plain modules and wrapped free functions
# --------------------------------------------------------------------------


class AffineTanh(torch.nn.Module):
    def forward(self, x):
        return torch.tanh(x * 3.0 - 1.0)


def test_plain_module_single_input(device):
    torch.manual_seed(0)
    mod = AffineTanh()
    x = torch.randn(4, 5, device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    x2 = torch.randn(4, 5, device=device)
    torch.testing.assert_close(ep.module()(x2), mod(x2))
    assert ep.graph_signature.user_inputs == ("x",)
    assert len(ep.graph_signature.user_outputs) == 1
    # No state at all: nothing lifted.
    assert ep.graph_signature.parameters == ()
    assert ep.graph_signature.buffers == ()
    assert len(ep.state_dict) == 0


@pytest.mark.parametrize(
    "fn",
    [
        pytest.param(lambda x: torch.sin(x) * torch.cos(x), id="trig"),
        pytest.param(lambda x: x.clamp(-0.5, 0.5).abs().sqrt(), id="clamp_abs_sqrt"),
        pytest.param(lambda x: x @ x.transpose(0, 1), id="matmul_transpose"),
        pytest.param(lambda x: torch.cumsum(x, dim=1).flip(0), id="cumsum_flip"),
        pytest.param(lambda x: torch.where(x > 0, x, x.exp() - 1), id="where_elu"),
        pytest.param(lambda x: x.reshape(2, -1).softmax(-1).sum(0), id="reshape_softmax_reduce"),
        pytest.param(lambda x: torch.cat([x, -x], dim=0)[1::2], id="cat_strided_slice"),
        pytest.param(lambda x: x.masked_fill(x < -0.5, float("-inf")).softmax(-1), id="neg_inf_constant"),
    ],
)
def test_wrapped_free_function(device, fn):
    torch.manual_seed(1)
    x = torch.randn(4, 6, device=device)
    mod = _fn_module(fn)

    ep = torch.export.export(mod, (x,))

    expected = fn(x)
    out = ep.module()(x)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)
    x2 = torch.randn(4, 6, device=device)
    torch.testing.assert_close(ep.module()(x2), fn(x2))


def test_integer_and_bool_outputs(device):
    def fn(x):
        idx = torch.argmax(x, dim=1)
        positive = x > 0
        return idx, positive, positive.sum(dtype=torch.int64)

    x = torch.tensor([[1.0, -3.0, 2.0], [-1.0, 5.0, 0.5]], device=device)
    ep = export(_fn_module(fn), (x,))

    idx, positive, count = ep.module()(x)
    assert idx.dtype == torch.int64
    assert positive.dtype == torch.bool
    assert count.dtype == torch.int64
    torch.testing.assert_close(idx, torch.tensor([2, 1], device=device))
    torch.testing.assert_close(positive, x > 0)
    assert count.item() == 4


def test_dtype_conversion_inside_graph(device):
    def fn(x):
        return (x * 100).to(torch.int32).to(torch.float64) / 7

    x = torch.randn(3, 3, device=device)
    ep = export(_fn_module(fn), (x,))
    out = ep.module()(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, fn(x))


# --------------------------------------------------------------------------
# Inputs: several positional, keyword, pytrees, python scalars, None
# --------------------------------------------------------------------------


class ThreeInputs(torch.nn.Module):
    def forward(self, a, b, c):
        return a * b - c


def test_multiple_positional_inputs(device):
    torch.manual_seed(2)
    args = tuple(torch.randn(3, 4, device=device) for _ in range(3))
    mod = ThreeInputs()

    ep = export(mod, args)

    assert ep.graph_signature.user_inputs == ("a", "b", "c")
    assert [s.arg.name for s in _user_input_specs(ep)] == ["a", "b", "c"]
    torch.testing.assert_close(ep.module()(*args), mod(*args))
    # Argument order matters: swapping inputs must change the result like eager.
    swapped = (args[2], args[0], args[1])
    torch.testing.assert_close(ep.module()(*swapped), mod(*swapped))


def test_broadcasting_inputs(device):
    torch.manual_seed(3)
    a = torch.randn(4, 1, 3, device=device)
    b = torch.randn(5, 1, device=device)
    c = torch.randn(3, device=device)
    mod = ThreeInputs()

    ep = torch.export.export(mod, (a, b, c))

    out = ep.module()(a, b, c)
    assert out.shape == (4, 5, 3)
    torch.testing.assert_close(out, mod(a, b, c))


class KwargModule(torch.nn.Module):
    def forward(self, x, *, scale, shift=None):
        out = x * scale
        if shift is not None:
            out = out + shift
        return out


def test_keyword_inputs(device):
    torch.manual_seed(4)
    x = torch.randn(2, 3, device=device)
    scale = torch.randn(2, 3, device=device)
    shift = torch.randn(3, device=device)
    mod = KwargModule()

    ep = export(mod, (x,), {"scale": scale, "shift": shift})

    assert ep.graph_signature.user_inputs == ("x", "scale", "shift")
    torch.testing.assert_close(ep.module()(x, scale=scale, shift=shift), mod(x, scale=scale, shift=shift))
    x2, s2, sh2 = (
        torch.randn(2, 3, device=device),
        torch.randn(2, 3, device=device),
        torch.randn(3, device=device),
    )
    torch.testing.assert_close(ep.module()(x2, scale=s2, shift=sh2), mod(x2, scale=s2, shift=sh2))


def test_omitted_optional_input_is_traced_out(device):
    x = torch.randn(2, 3, device=device)
    scale = torch.full((2, 3), 2.0, device=device)
    mod = KwargModule()

    ep = export(mod, (x,), {"scale": scale})

    # `shift` was None at export time, so it is not a graph input at all.
    assert ep.graph_signature.user_inputs == ("x", "scale")
    torch.testing.assert_close(ep.module()(x, scale=scale), x * 2.0)


def test_calling_with_different_pytree_structure_raises(device):
    args = tuple(torch.randn(2, 3, device=device) for _ in range(3))
    ep = export(ThreeInputs(), args)
    torch.testing.assert_close(ep.module()(*args), ThreeInputs()(*args))
    with pytest.raises(ValueError, match="tree spec"):
        ep.module()(*args, args[0])


class DictInput(torch.nn.Module):
    def forward(self, inputs):
        return inputs["a"] @ inputs["pair"][0] + inputs["pair"][1]


def test_dict_and_tuple_pytree_input(device):
    torch.manual_seed(5)
    inp = {
        "a": torch.randn(2, 3, device=device),
        "pair": (torch.randn(3, 4, device=device), torch.randn(4, device=device)),
    }
    mod = DictInput()

    ep = export(mod, (inp,))

    # Each pytree leaf becomes one flat user input.
    assert len(ep.graph_signature.user_inputs) == 3
    assert ep.call_spec.in_spec is not None
    torch.testing.assert_close(ep.module()(inp), mod(inp))
    inp2 = {
        "a": torch.randn(2, 3, device=device),
        "pair": (torch.randn(3, 4, device=device), torch.randn(4, device=device)),
    }
    torch.testing.assert_close(ep.module()(inp2), mod(inp2))


class ListInput(torch.nn.Module):
    def forward(self, xs):
        acc = xs[0]
        for t in xs[1:]:
            acc = acc * t + 1
        return acc


def test_list_input_is_unrolled(device):
    torch.manual_seed(6)
    xs = [torch.randn(3, device=device) for _ in range(4)]
    mod = ListInput()

    ep = export(mod, (xs,))

    assert len(ep.graph_signature.user_inputs) == 4
    torch.testing.assert_close(ep.module()(xs), mod(xs))
    xs2 = [torch.randn(3, device=device) for _ in range(4)]
    torch.testing.assert_close(ep.module()(xs2), mod(xs2))


class IntArg(torch.nn.Module):
    def forward(self, x, n: int):
        return x.repeat(n, 1) * n


def test_python_int_input_is_specialized(device):
    x = torch.randn(2, 3, device=device)
    mod = IntArg()

    ep = export(mod, (x, 3))

    out = ep.module()(x, 3)
    assert out.shape == (6, 3)
    torch.testing.assert_close(out, mod(x, 3))
    # The int was burned into the graph; another value violates the guard.
    with pytest.raises(AssertionError, match="n == 3"):
        ep.module()(x, 4)


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------


class MultiOut(torch.nn.Module):
    def forward(self, x, y):
        s = x + y
        return s, s * y, (x - y).abs().max()


def test_multiple_outputs(device):
    torch.manual_seed(7)
    x, y = torch.randn(3, 2, device=device), torch.randn(3, 2, device=device)
    mod = MultiOut()

    ep = export(mod, (x, y))

    assert len(ep.graph_signature.user_outputs) == 3
    out = ep.module()(x, y)
    assert isinstance(out, tuple) and len(out) == 3
    torch.testing.assert_close(out, mod(x, y))
    assert out[2].shape == ()


class NestedOut(torch.nn.Module):
    def forward(self, x):
        return {"sum": x.sum(0), "parts": [x[0], (x[1], x[2] * 2)]}


def test_nested_dict_list_tuple_outputs(device):
    torch.manual_seed(8)
    x = torch.randn(3, 4, device=device)
    mod = NestedOut()

    ep = torch.export.export(mod, (x,))

    out = ep.module()(x)
    assert set(out.keys()) == {"sum", "parts"}
    assert isinstance(out["parts"], list) and isinstance(out["parts"][1], tuple)
    torch.testing.assert_close(out, mod(x))
    assert len(ep.graph_signature.user_outputs) == 4
    assert ep.call_spec.out_spec.num_leaves == 4


class ReturnsInput(torch.nn.Module):
    def forward(self, x, y):
        return x, y * 2, x


def test_output_aliasing_an_input(device):
    x, y = torch.randn(3, device=device), torch.randn(3, device=device)
    ep = export(ReturnsInput(), (x, y))

    a, b, c = ep.module()(x, y)
    torch.testing.assert_close(a, x)
    torch.testing.assert_close(b, y * 2)
    torch.testing.assert_close(c, x)
    assert len(ep.graph_signature.user_outputs) == 3
    # The graph output for `x` is the user input placeholder itself.
    assert ep.graph_signature.user_outputs[0] == ep.graph_signature.user_inputs[0]


# --------------------------------------------------------------------------
# Methods and submodules
# --------------------------------------------------------------------------


class Block(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = torch.nn.Linear(dim, dim)
        self.norm = torch.nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(x + torch.relu(self.fc(x)))


class Net(torch.nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.inp = torch.nn.Linear(4, dim)
        self.blocks = torch.nn.ModuleList([Block(dim) for _ in range(2)])
        self.head = torch.nn.Sequential(torch.nn.Linear(dim, 3), torch.nn.Softplus())

    def encode(self, x):
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h)
        return h

    def decode(self, h):
        return self.head(h)

    def forward(self, x):
        return self.decode(self.encode(x))


def test_forward_calls_helper_methods_and_submodules(device):
    torch.manual_seed(9)
    mod = Net().to(device).eval()
    x = torch.randn(5, 4, device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    x2 = torch.randn(5, 4, device=device)
    torch.testing.assert_close(ep.module()(x2), mod(x2))
    expected_params = {name for name, _ in mod.named_parameters()}
    assert set(ep.graph_signature.parameters) == expected_params
    assert set(ep.state_dict.keys()) == set(mod.state_dict().keys())
    for name, value in mod.state_dict().items():
        torch.testing.assert_close(ep.state_dict[name], value)


def test_unflatten_restores_submodule_hierarchy(device):
    torch.manual_seed(10)
    mod = Net().to(device).eval()
    x = torch.randn(2, 4, device=device)

    ep = export(mod, (x,))
    unflat = torch.export.unflatten(ep)

    torch.testing.assert_close(unflat(x), mod(x))
    names = {name for name, _ in unflat.named_modules()}
    assert {"inp", "blocks.0", "blocks.1.fc", "head.0"} <= names
    # The unflattened Block can be called on its own and matches eager.
    h = torch.randn(2, 8, device=device)
    torch.testing.assert_close(unflat.get_submodule("blocks.1")(h), mod.blocks[1](h))


class SharedSubmodule(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = torch.nn.Linear(4, 4)
        self.alias = self.shared  # same module under a second name

    def forward(self, x):
        return self.alias(torch.sigmoid(self.shared(x)))


def test_shared_submodule_called_twice(device):
    torch.manual_seed(11)
    mod = SharedSubmodule().to(device)
    x = torch.randn(3, 4, device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    x2 = torch.randn(3, 4, device=device)
    torch.testing.assert_close(ep.module()(x2), mod(x2))
    params = set(ep.graph_signature.parameters)
    # Strict and non-strict export may also list the alias names, but every
    # lifted name must be a real state_dict key and the shared ones are there.
    assert {"shared.weight", "shared.bias"} <= params
    assert params <= set(mod.state_dict().keys())


def test_shared_submodule_weights_stay_tied(device):
    torch.manual_seed(14)
    mod = SharedSubmodule().to(device)
    x = torch.randn(3, 4, device=device)

    gm = export(mod, (x,)).module()

    # One Parameter reachable under two names, like in the eager module.
    assert gm.shared.weight is gm.alias.weight
    assert len(list(gm.parameters())) == 2
    with torch.no_grad():
        gm.shared.weight.mul_(-1)
        mod.shared.weight.mul_(-1)
    torch.testing.assert_close(gm(x), mod(x))


class ShapeBranch(torch.nn.Module):
    """Python control flow on static shapes is resolved at trace time."""

    def forward(self, x):
        if x.shape[0] > 2:
            return x[:2].sum(0)
        return x.mean(0)


def test_python_branch_on_static_shape(device):
    x = torch.randn(4, 3, device=device)
    mod = ShapeBranch()

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), x[:2].sum(0))
    x2 = torch.randn(4, 3, device=device)
    torch.testing.assert_close(ep.module()(x2), mod(x2))
    # The shape is static, so another size is rejected rather than re-branched.
    with pytest.raises(AssertionError, match="Guard failed"):
        ep.module()(torch.randn(2, 3, device=device))


def test_module_call_graph_records_forward_signature(device):
    args = tuple(torch.randn(2, 3, device=device) for _ in range(3))
    ep = export(ThreeInputs(), args)
    torch.testing.assert_close(ep.module()(*args), ThreeInputs()(*args))

    entries = ep.module_call_graph
    assert entries[0].fqn == ""
    sig = entries[0].signature
    assert sig is not None
    assert sig.in_spec == ep.call_spec.in_spec
    assert sig.out_spec == ep.call_spec.out_spec


def test_exported_module_is_reusable_and_deterministic(device):
    torch.manual_seed(12)
    mod = torch.nn.Linear(3, 2).to(device)
    x = torch.randn(4, 3, device=device)
    ep = export(mod, (x,))
    gm = ep.module()
    expected = mod(x).detach().clone()

    # Calling the exported module many times is deterministic and stateless.
    torch.testing.assert_close(gm(x), expected)
    torch.testing.assert_close(gm(x), expected)
    torch.testing.assert_close(ep.module()(x), expected)


def test_functional_ops_with_parameters_passed_in(device):
    torch.manual_seed(13)

    def fn(x, w, b):
        return F.gelu(F.linear(x, w, b)).sum(-1)

    x = torch.randn(5, 3, device=device)
    w = torch.randn(4, 3, device=device)
    b = torch.randn(4, device=device)

    ep = export(_fn_module(fn), (x, w, b))

    # Tensors passed as arguments are user inputs, not parameters.
    assert ep.graph_signature.parameters == ()
    assert len(ep.graph_signature.user_inputs) == 3
    torch.testing.assert_close(ep.module()(x, w, b), fn(x, w, b))
    w2 = torch.randn(4, 3, device=device)
    torch.testing.assert_close(ep.module()(x, w2, b), fn(x, w2, b))
