"""The public ExportedProgram API.

Covers ``preserve_module_call_signature`` together with
``torch.export.unflatten`` (including swapping a submodule), run_decompositions
with the default table and with custom tables (core ATen checks), state_dict
round-trips, repeated use of ``ep.module()``, ``ExportedProgram.constants``,
graph-signature input/output specs, ``range_constraints`` and
``example_inputs``.
"""

import torch
from torch.export import Dim, default_decompositions, export, unflatten
from torch.export.graph_signature import InputKind, OutputKind
from torch.testing import assert_close

aten = torch.ops.aten


# --- a custom op with a user-supplied decomposition (registered at import) ---


@torch.library.custom_op("mtx_p2_api::quick_gelu", mutates_args=())
def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(1.702 * x)


@quick_gelu.register_fake
def _(x):
    return torch.empty_like(x)


def _quick_gelu_decomp(x):
    return x * torch.sigmoid(1.702 * x)


# --- modules -----------------------------------------------------------------


class Block(torch.nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        self.lin = torch.nn.Linear(dim, dim)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x, gate):
        self.calls.add_(1)
        return torch.relu(self.lin(x)) * gate


class DoubleBlock(torch.nn.Module):
    """Same call signature as Block, different computation."""

    def __init__(self, dim=4):
        super().__init__()
        self.lin = torch.nn.Linear(dim, dim)

    def forward(self, x, gate):
        return 2 * torch.tanh(self.lin(x)) + gate


class Net(torch.nn.Module):
    def __init__(self, dim=4):
        super().__init__()
        self.block = Block(dim)
        self.head = torch.nn.Linear(dim, 2)

    def forward(self, x):
        gate = torch.sigmoid(x.mean(dim=-1, keepdim=True))
        return self.head(self.block(x, gate))


class WithState(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 3))
        self.register_buffer("scale", torch.full((3,), 2.0))
        self.register_buffer("scratch", torch.ones(3), persistent=False)
        self.offset = torch.tensor([1.0, -1.0, 0.5])  # plain tensor attribute -> constant

    def forward(self, x):
        return (x @ self.weight) * self.scale + self.scratch + self.offset


# --- helpers -------------------------------------------------------------------

# Ops that are allowed in a core-ATen graph even without the `core` tag.
_NON_CORE_ALLOWED = {"aten.sym_size.int", "aten._assert_scalar.default"}


def _aten_ops(ep):
    return [n.target for n in ep.graph.nodes if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)]


def _non_core_ops(ep):
    return {
        str(op) for op in _aten_ops(ep) if op.namespace == "aten" and torch.Tag.core not in op.tags and str(op) not in _NON_CORE_ALLOWED
    }


def _fresh_copy(mod_cls, src, device, *args):
    mod = mod_cls(*args).to(device)
    mod.load_state_dict(src.state_dict())
    return mod


# --- unflatten / preserve_module_call_signature ------------------------------


def test_preserve_signature_records_submodule_specs(device):
    torch.manual_seed(0)
    mod = Net().to(device)
    x = torch.randn(3, 4, device=device)
    ep = export(_fresh_copy(Net, mod, device), (x,), preserve_module_call_signature=("block",))

    entries = {e.fqn: e for e in ep.module_call_graph}
    assert "block" in entries
    sig = entries["block"].signature
    assert sig is not None
    # Block.forward(x, gate) -> one tensor
    assert sig.in_spec.child(0).num_children == 2
    assert sig.out_spec.num_leaves == 1
    assert len(sig.inputs) == 2 and len(sig.outputs) == 1

    x2 = torch.randn(3, 4, device=device)
    assert_close(ep.module()(x2), mod(x2))


def test_unflatten_keeps_hierarchy_and_matches_eager(device):
    torch.manual_seed(0)
    mod = Net().to(device)
    x = torch.randn(2, 4, device=device)
    ep = torch.export.export(_fresh_copy(Net, mod, device), (x,), preserve_module_call_signature=("block",))

    flat = unflatten(ep)
    assert isinstance(flat.block, torch.nn.Module)
    assert isinstance(flat.head, torch.nn.Module)
    assert set(dict(flat.named_parameters())) == {n for n, _ in mod.named_parameters()}
    assert_close(flat.block.lin.weight, mod.block.lin.weight)

    x2 = torch.randn(2, 4, device=device)
    assert_close(flat(x2), mod(x2))


def test_unflatten_swap_submodule(device):
    torch.manual_seed(0)
    mod = Net().to(device)
    x = torch.randn(3, 4, device=device)
    ep = export(_fresh_copy(Net, mod, device), (x,), preserve_module_call_signature=("block",))

    replacement = DoubleBlock().to(device)
    flat = unflatten(ep)
    flat.block = replacement

    # Eager reference: the same network with the block replaced.
    mod.block = replacement
    x2 = torch.randn(3, 4, device=device)
    assert_close(flat(x2), mod(x2))
    # And the swap really changed the computation.
    assert not torch.allclose(flat(x2), ep.module()(x2))


def test_unflatten_swapped_submodule_keeps_its_own_state(device):
    torch.manual_seed(0)
    mod = Net().to(device)
    x = torch.randn(3, 4, device=device)
    ep = torch.export.export(_fresh_copy(Net, mod, device), (x,), preserve_module_call_signature=("block",))

    new_block = Block().to(device)
    flat = unflatten(ep)
    flat.block = new_block
    mod.block = _fresh_copy(Block, new_block, device)
    for _ in range(3):
        x2 = torch.randn(3, 4, device=device)
        assert_close(flat(x2), mod(x2))
    # The eager replacement's forward ran (and mutated its buffer) each call.
    assert new_block.calls.item() == 3


# --- run_decompositions --------------------------------------------------------


def test_run_decompositions_default_table_gives_core_aten(device):
    torch.manual_seed(0)
    mod = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3), torch.nn.Softmax(dim=-1)
    ).to(device)
    x = torch.randn(4, 6, device=device)
    ep = export(mod, (x,))
    core = ep.run_decompositions()

    assert _non_core_ops(core) == set()
    names = {str(op) for op in _aten_ops(core)}
    assert "aten.linear.default" not in names and "aten.layer_norm.default" not in names
    assert "aten.addmm.default" in names
    x2 = torch.randn(4, 6, device=device)
    assert_close(core.module()(x2), mod(x2))
    assert_close(ep.module()(x2), mod(x2))


def test_run_decompositions_keep_op_by_removing_from_table(device):
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)).to(device)
    x = torch.randn(2, 4, device=device)
    ep = torch.export.export(mod, (x,))
    had_linear = aten.linear.default in _aten_ops(ep)

    table = default_decompositions()
    del table[aten.linear.default]
    partial = ep.run_decompositions(table)

    # linear survives (if the program still had it); everything else is core.
    assert (aten.linear.default in _aten_ops(partial)) is had_linear
    assert _non_core_ops(partial) <= {"aten.linear.default"}
    assert aten.layer_norm.default not in _aten_ops(partial)
    x2 = torch.randn(2, 4, device=device)
    assert_close(partial.module()(x2), mod(x2))


def test_run_decompositions_custom_decomp_for_custom_op(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return quick_gelu(x) + 1

    mod = M().to(device)
    x = torch.randn(5, device=device)
    ep = export(mod, (x,))
    assert torch.ops.mtx_p2_api.quick_gelu.default in _aten_ops(ep)

    table = default_decompositions()
    table[torch.ops.mtx_p2_api.quick_gelu.default] = _quick_gelu_decomp
    dec = ep.run_decompositions(table)

    ops = _aten_ops(dec)
    assert torch.ops.mtx_p2_api.quick_gelu.default not in ops
    assert aten.sigmoid.default in ops
    x2 = torch.randn(5, device=device)
    assert_close(dec.module()(x2), mod(x2))


def test_run_decompositions_override_core_op(device):
    torch.manual_seed(0)
    mod = torch.nn.ReLU().to(device)
    x = torch.randn(7, device=device)
    ep = torch.export.export(mod, (x,))

    table = default_decompositions()
    table[aten.relu.default] = lambda t: torch.clamp(t, min=0)
    dec = ep.run_decompositions(table)

    names = {str(op) for op in _aten_ops(dec)}
    assert "aten.relu.default" not in names
    assert any(n.startswith("aten.clamp") for n in names)
    x2 = torch.randn(7, device=device)
    assert_close(dec.module()(x2), mod(x2))


def test_run_decompositions_functionalizes_buffer_mutation(device):
    torch.manual_seed(0)
    eager = Block().to(device)
    ep = export(_fresh_copy(Block, eager, device), (torch.randn(2, 4, device=device), torch.ones(2, 1, device=device)))
    dec = ep.run_decompositions()

    mutations = [s for s in dec.graph_signature.output_specs if s.kind == OutputKind.BUFFER_MUTATION]
    assert [s.target for s in mutations] == ["calls"]
    assert not any(str(op).endswith("_.Tensor") for op in _aten_ops(dec))

    m = dec.module()
    for _ in range(2):
        x, g = torch.randn(2, 4, device=device), torch.rand(2, 1, device=device)
        assert_close(m(x, g), eager(x, g))
    assert m.calls.item() == eager.calls.item() == 2


# --- state_dict / constants / signature ------------------------------------


def test_state_dict_matches_module_and_round_trips(device):
    torch.manual_seed(0)
    mod = WithState().to(device)
    mod.offset = mod.offset.to(device)
    ep = torch.export.export(mod, (torch.randn(2, 3, device=device),))

    # Parameters and persistent buffers only.
    assert set(ep.state_dict) == set(mod.state_dict()) == {"weight", "scale"}
    for k, v in mod.state_dict().items():
        assert_close(ep.state_dict[k], v)

    restored = WithState().to(device)
    restored.offset = mod.offset
    restored.load_state_dict(ep.state_dict)
    x = torch.randn(2, 3, device=device)
    assert_close(restored(x), mod(x))
    assert_close(ep.module()(x), mod(x))
    assert set(ep.module().state_dict()) >= {"weight", "scale"}


def test_constants_hold_tensor_attributes_and_non_persistent_buffers(device):
    torch.manual_seed(0)
    mod = WithState().to(device)
    mod.offset = mod.offset.to(device)
    ep = export(mod, (torch.randn(2, 3, device=device),))

    assert "offset" in ep.constants
    assert "offset" not in ep.state_dict
    assert_close(ep.constants["offset"], mod.offset)
    const_specs = [s for s in ep.graph_signature.input_specs if s.kind == InputKind.CONSTANT_TENSOR]
    assert [s.target for s in const_specs] == ["offset"]
    # The non-persistent buffer is a BUFFER input that is not in the state_dict.
    scratch = next(s for s in ep.graph_signature.input_specs if s.target == "scratch")
    assert scratch.kind == InputKind.BUFFER and scratch.persistent is False
    assert_close(ep.constants["scratch"], mod.scratch)

    x = torch.randn(2, 3, device=device)
    assert_close(ep.module()(x), mod(x))


def test_graph_signature_input_and_output_specs(device):
    torch.manual_seed(0)
    mod = Net().to(device)
    x = torch.randn(2, 4, device=device)
    ep = torch.export.export(_fresh_copy(Net, mod, device), (x,))
    sig = ep.graph_signature

    kinds = [s.kind for s in sig.input_specs]
    assert kinds == [InputKind.PARAMETER] * 4 + [InputKind.BUFFER, InputKind.USER_INPUT]
    assert set(sig.parameters) == {"block.lin.weight", "block.lin.bias", "head.weight", "head.bias"}
    assert list(sig.buffers) == ["block.calls"]
    assert set(sig.inputs_to_parameters.values()) == set(sig.parameters)
    assert list(sig.inputs_to_buffers.values()) == ["block.calls"]
    assert len(sig.user_inputs) == 1 and len(sig.user_outputs) == 1

    # Buffer mutations, if functionalized, must point at the mutated buffer.
    mutated = [s.target for s in sig.output_specs if s.kind == OutputKind.BUFFER_MUTATION]
    assert mutated in ([], ["block.calls"])

    x2 = torch.randn(2, 4, device=device)
    assert_close(ep.module()(x2), mod(x2))


def test_module_can_be_created_and_called_repeatedly(device):
    torch.manual_seed(0)
    mod = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh()).to(device)
    ep = export(mod, (torch.randn(1, 3, device=device),))

    first, second = ep.module(), ep.module()
    assert first is not second
    for _ in range(3):
        x = torch.randn(1, 3, device=device)
        expected = mod(x)
        assert_close(first(x), expected)
        assert_close(second(x), expected)
        assert_close(ep.module()(x), expected)


def test_range_constraints_and_example_inputs(device):
    torch.manual_seed(0)
    mod = torch.nn.Linear(4, 2).to(device)
    x = torch.randn(6, 4, device=device)
    batch = Dim("batch", min=3, max=50)
    ep = torch.export.export(mod, (x,), dynamic_shapes={"input": {0: batch}})

    assert len(ep.range_constraints) == 1
    (vr,) = ep.range_constraints.values()
    assert (int(vr.lower), int(vr.upper)) == (3, 50)
    args, kwargs = ep.example_inputs
    assert kwargs == {} and len(args) == 1
    assert args[0].shape == x.shape

    for n in (3, 17, 50):
        xn = torch.randn(n, 4, device=device)
        assert_close(ep.module()(xn), mod(xn))
