"""torch.export and module state.

Covers: parameters (trainable and frozen), persistent and non-persistent
buffers, plain tensor attributes and tensors created inside forward (lifted
tensor constants), Python scalar attributes, loading new weights into the
exported module, and in-place mutation of buffers and of user inputs.

For mutations the tests check behaviour against eager (the passed tensor /
the module buffer changes exactly like in eager, across repeated calls) and
the graph facts: the exported graph writes to the right buffer / input, and
after functionalisation (`ep.run_decompositions()`) the graph signature lists
them in `buffers_to_mutate` / `user_inputs_to_mutate`.

ExportedProgram.module() may share tensors with the module that was
exported, so the eager reference is always a deep copy taken before export.
"""

import copy

import torch
from torch.export import export
from torch.export.graph_signature import InputKind, OutputKind


def _written_inputs(ep):
    """Which buffers / user inputs the program writes to.

    Works for both IRs: the default (training) IR keeps in-place ops on the
    placeholders, a functionalised program reports mutations as extra
    outputs in the graph signature.
    """
    sig = ep.graph_signature
    by_placeholder = {}
    for spec in sig.input_specs:
        if spec.kind == InputKind.BUFFER:
            by_placeholder[spec.arg.name] = ("buffer", spec.target)
        elif spec.kind == InputKind.USER_INPUT:
            by_placeholder[spec.arg.name] = ("user_input", spec.arg.name)

    written = {"buffer": set(), "user_input": set()}
    for fqn in sig.buffers_to_mutate.values():
        written["buffer"].add(fqn)
    for name in sig.user_inputs_to_mutate.values():
        written["user_input"].add(name)

    def base(node):
        # Follow views / in-place results back to the tensor they alias.
        while (
            node.op == "call_function"
            and isinstance(node.target, torch._ops.OpOverload)
            and node.target._schema.returns
            and node.target._schema.returns[0].alias_info is not None
            and node.args
            and isinstance(node.args[0], torch.fx.Node)
        ):
            node = node.args[0]
        return node

    for node in ep.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        for i, arg in enumerate(node.target._schema.arguments):
            if arg.alias_info is None or not arg.alias_info.is_write:
                continue
            val = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name)
            if isinstance(val, torch.fx.Node):
                root = base(val)
                if root.op == "placeholder" and root.name in by_placeholder:
                    kind, name = by_placeholder[root.name]
                    written[kind].add(name)
    return written


def _spec_kinds(ep):
    return {spec.arg.name: spec.kind for spec in ep.graph_signature.input_specs}


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------


class TwoLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 6)
        self.fc2 = torch.nn.Linear(6, 2, bias=False)
        self.scale = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) * self.scale


def test_parameters_are_lifted_inputs(device):
    torch.manual_seed(0)
    mod = TwoLayer().to(device)
    x = torch.randn(3, 4, device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    sig = ep.graph_signature
    assert set(sig.parameters) == {"fc1.weight", "fc1.bias", "fc2.weight", "scale"}
    assert set(sig.inputs_to_parameters.values()) == set(sig.parameters)
    # Parameters come first, user inputs last.
    kinds = [s.kind for s in sig.input_specs]
    assert kinds[-1] == InputKind.USER_INPUT
    assert kinds.count(InputKind.PARAMETER) == 4
    assert kinds.index(InputKind.USER_INPUT) > max(i for i, k in enumerate(kinds) if k == InputKind.PARAMETER)
    # Values are the module's values.
    for name, p in mod.named_parameters():
        torch.testing.assert_close(ep.state_dict[name], p.detach())
        assert ep.state_dict[name].device == p.device


def test_frozen_parameter_stays_a_parameter(device):
    torch.manual_seed(1)
    mod = TwoLayer().to(device)
    mod.fc1.weight.requires_grad_(False)
    x = torch.randn(3, 4, device=device)

    ep = torch.export.export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    assert "fc1.weight" in ep.graph_signature.parameters
    gm = ep.module()
    assert gm.get_parameter("fc1.weight").requires_grad is False
    assert gm.get_parameter("fc1.bias").requires_grad is True


def test_load_state_dict_into_exported_module(device):
    torch.manual_seed(2)
    mod = TwoLayer().to(device)
    x = torch.randn(5, 4, device=device)
    gm = export(mod, (x,)).module()

    other = TwoLayer().to(device)  # different random weights
    assert not torch.allclose(other(x), mod(x))
    gm.load_state_dict(other.state_dict())

    # The graph reads its weights from the module attributes.
    torch.testing.assert_close(gm(x), other(x))


def test_exported_parameters_support_autograd(device):
    torch.manual_seed(3)
    mod = TwoLayer().to(device)
    ref = copy.deepcopy(mod)
    x = torch.randn(3, 4, device=device)

    gm = export(mod, (x,)).module()
    gm(x).sum().backward()
    ref(x).sum().backward()

    for name, p in ref.named_parameters():
        torch.testing.assert_close(gm.get_parameter(name).grad, p.grad)


# --------------------------------------------------------------------------
# Buffers and constants
# --------------------------------------------------------------------------


class WithBuffers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, -1.0, 2.0]))
        self.register_buffer("cache", torch.tensor([3.0, 3.0, 3.0]), persistent=False)
        self.offset = torch.tensor([10.0, 20.0, 30.0])  # plain attribute
        self.factor = 0.25  # python scalar

    def forward(self, x):
        return (x - self.mean) * self.cache * self.factor + self.offset


def _with_buffers(device):
    mod = WithBuffers()
    mod.offset = mod.offset.to(device)
    return mod.to(device)


def test_persistent_buffer(device):
    mod = _with_buffers(device)
    x = torch.randn(2, 3, device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    sig = ep.graph_signature
    assert "mean" in sig.buffers
    assert "mean" not in sig.non_persistent_buffers
    assert "mean" in sig.inputs_to_buffers.values()
    torch.testing.assert_close(ep.state_dict["mean"], mod.mean)


def test_non_persistent_buffer(device):
    mod = _with_buffers(device)
    x = torch.randn(2, 3, device=device)

    ep = export(mod, (x,))

    x2 = torch.randn(2, 3, device=device)
    torch.testing.assert_close(ep.module()(x2), mod(x2))
    sig = ep.graph_signature
    assert "cache" in sig.buffers
    assert sig.non_persistent_buffers == ("cache",)
    # Not part of the state dict, kept with the constants instead.
    assert "cache" not in ep.state_dict
    torch.testing.assert_close(ep.constants["cache"], mod.cache)
    gm = ep.module()
    assert "cache" in dict(gm.named_buffers())
    assert "cache" not in gm.state_dict()
    assert set(gm.state_dict().keys()) == set(mod.state_dict().keys())


def test_plain_tensor_attribute_is_lifted_constant(device):
    mod = _with_buffers(device)
    x = torch.randn(2, 3, device=device)

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    sig = ep.graph_signature
    assert sig.lifted_tensor_constants == ("offset",)
    assert "offset" in sig.inputs_to_lifted_tensor_constants.values()
    assert "offset" not in sig.buffers and "offset" not in ep.state_dict
    torch.testing.assert_close(ep.constants["offset"], mod.offset)
    assert ep.constants["offset"].device.type == torch.device(device).type


def test_python_scalar_attribute_is_inlined(device):
    mod = _with_buffers(device)
    x = torch.randn(2, 3, device=device)

    ep = export(mod, (x,))

    # The float is baked into the graph: no input, no constant for it.
    kinds = _spec_kinds(ep)
    assert len(kinds) == 4  # mean, cache, offset, x
    assert "factor" not in ep.constants
    # Changing the attribute on the eager module afterwards has no effect.
    expected = mod(x)
    mod.factor = 100.0
    torch.testing.assert_close(ep.module()(x), expected)


class FreshConstant(torch.nn.Module):
    def forward(self, x):
        table = torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=x.device)
        return x @ table + torch.arange(2, device=x.device)


def test_tensor_created_in_forward_is_lifted_constant(device):
    x = torch.randn(3, 2, device=device)
    mod = FreshConstant()

    ep = export(mod, (x,))

    torch.testing.assert_close(ep.module()(x), mod(x))
    x2 = torch.randn(3, 2, device=device)
    torch.testing.assert_close(ep.module()(x2), mod(x2))
    sig = ep.graph_signature
    # torch.tensor(<data>) becomes a lifted constant; arange stays an op.
    assert len(sig.lifted_tensor_constants) == 1
    (name,) = sig.lifted_tensor_constants
    torch.testing.assert_close(
        ep.constants[name].to(device), torch.tensor([[1.0, 2.0], [3.0, 4.0]], device=device)
    )
    assert sig.parameters == () and sig.buffers == ()


# --------------------------------------------------------------------------
# Buffer mutation
# --------------------------------------------------------------------------


class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.register_buffer("total", torch.zeros(3))

    def forward(self, x):
        self.count.add_(1)
        self.total.add_(x.sum(0))
        return self.total / self.count


def test_buffer_inplace_mutation_accumulates_like_eager(device):
    torch.manual_seed(4)
    mod = Counter().to(device)
    ref = copy.deepcopy(mod)
    xs = [torch.randn(2, 3, device=device) for _ in range(3)]

    ep = export(mod, (xs[0],))
    gm = ep.module()

    for x in xs:
        torch.testing.assert_close(gm(x), ref(x))
    assert gm.count.item() == 3
    torch.testing.assert_close(gm.total, ref.total)
    assert _written_inputs(ep) == {"buffer": {"count", "total"}, "user_input": set()}


def test_export_itself_does_not_mutate_state(device):
    mod = Counter().to(device)
    x = torch.ones(2, 3, device=device)

    export(mod, (x,))

    # Tracing runs on fake tensors: the real buffers and input are untouched.
    assert mod.count.item() == 0
    torch.testing.assert_close(mod.total, torch.zeros(3, device=device))
    torch.testing.assert_close(x, torch.ones(2, 3, device=device))


def test_buffers_to_mutate_after_functionalization(device):
    mod = Counter().to(device)
    ref = copy.deepcopy(mod)
    x = torch.randn(2, 3, device=device)

    ep = export(mod, (x,)).run_decompositions()

    sig = ep.graph_signature
    assert sorted(sig.buffers_to_mutate.values()) == ["count", "total"]
    assert sig.user_inputs_to_mutate == {}
    out_kinds = [s.kind for s in sig.output_specs]
    assert out_kinds.count(OutputKind.BUFFER_MUTATION) == 2
    assert out_kinds[-1] == OutputKind.USER_OUTPUT
    # The functional program still updates the buffers when run as a module.
    gm = ep.module()
    torch.testing.assert_close(gm(x), ref(x))
    torch.testing.assert_close(gm(x), ref(x))
    torch.testing.assert_close(gm.total, ref.total)
    assert gm.count.item() == 2


class ViewMutation(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("state", torch.arange(6, dtype=torch.float32).reshape(2, 3))

    def forward(self, x):
        self.state[1].mul_(x)  # write through a view
        self.state[:, 0] = -1.0  # index assignment
        return self.state.sum(1)


def test_buffer_mutation_through_views(device):
    torch.manual_seed(5)
    mod = ViewMutation().to(device)
    ref = copy.deepcopy(mod)
    x = torch.randn(3, device=device)

    ep = export(mod, (x,))
    gm = ep.module()

    torch.testing.assert_close(gm(x), ref(x))
    x2 = torch.randn(3, device=device)
    torch.testing.assert_close(gm(x2), ref(x2))
    torch.testing.assert_close(gm.state, ref.state)
    assert _written_inputs(ep)["buffer"] == {"state"}


class AssignBuffer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("ema", torch.zeros(4))

    def forward(self, x):
        self.ema = 0.9 * self.ema + 0.1 * x  # attribute re-assignment, not in-place
        return self.ema.clone()


def test_buffer_reassignment_is_a_mutation(device):
    torch.manual_seed(6)
    mod = AssignBuffer().to(device)
    ref = copy.deepcopy(mod)
    x = torch.randn(4, device=device)

    ep = export(mod, (x,))
    gm = ep.module()

    for _ in range(3):
        torch.testing.assert_close(gm(x), ref(x))
    torch.testing.assert_close(gm.ema, ref.ema)
    assert _written_inputs(ep)["buffer"] == {"ema"}


class NonPersistentMutation(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("steps", torch.zeros(1), persistent=False)

    def forward(self, x):
        self.steps += 1
        return x * self.steps


def test_non_persistent_buffer_mutation(device):
    mod = NonPersistentMutation().to(device)
    ref = copy.deepcopy(mod)
    x = torch.randn(3, device=device)

    ep = export(mod, (x,))
    gm = ep.module()

    torch.testing.assert_close(gm(x), ref(x))
    torch.testing.assert_close(gm(x), ref(x))
    torch.testing.assert_close(gm.steps, torch.full((1,), 2.0, device=device))
    assert ep.graph_signature.non_persistent_buffers == ("steps",)
    assert _written_inputs(ep)["buffer"] == {"steps"}


def test_batchnorm_training_updates_running_stats(device):
    torch.manual_seed(7)
    mod = torch.nn.BatchNorm1d(3, momentum=0.3).to(device).train()
    ref = copy.deepcopy(mod)
    x = torch.randn(8, 3, device=device) * 2 + 1

    ep = export(mod, (x,))
    gm = ep.module()

    torch.testing.assert_close(gm(x), ref(x))
    torch.testing.assert_close(gm.running_mean, ref.running_mean)
    torch.testing.assert_close(gm.running_var, ref.running_var)
    assert gm.num_batches_tracked.item() == 1
    # Stats moved away from their initial values.
    assert not torch.allclose(gm.running_mean, torch.zeros(3, device=device))
    # num_batches_tracked is bumped by an explicit in-place add. The running
    # stats are updated inside aten.batch_norm, whose schema carries no
    # mutation annotation in the default IR, so only a functionalised graph
    # lists them; either way nothing else is written.
    written = _written_inputs(ep)["buffer"]
    assert "num_batches_tracked" in written
    assert written <= {"running_mean", "running_var", "num_batches_tracked"}


# --------------------------------------------------------------------------
# User-input mutation
# --------------------------------------------------------------------------


class MutateInputs(torch.nn.Module):
    def forward(self, x, y, z):
        x.add_(1)  # in-place op
        y[0] = 7.0  # index assignment
        out = x * z  # sees the updated x
        z.clamp_(min=0)  # z is mutated after its use
        return out


def test_user_input_mutation_happens_on_passed_tensors(device):
    torch.manual_seed(8)
    args = [torch.randn(4, device=device) for _ in range(3)]
    ref_args = [a.clone() for a in args]

    ep = export(MutateInputs(), tuple(a.clone() for a in args))
    out = ep.module()(*args)

    expected = MutateInputs()(*ref_args)
    torch.testing.assert_close(out, expected)
    for got, want in zip(args, ref_args):
        torch.testing.assert_close(got, want)
    assert args[1][0].item() == 7.0
    assert (args[2] >= 0).all()
    assert _written_inputs(ep) == {"buffer": set(), "user_input": {"x", "y", "z"}}


def test_user_inputs_to_mutate_after_functionalization(device):
    torch.manual_seed(9)
    args = tuple(torch.randn(4, device=device) for _ in range(3))

    ep = export(MutateInputs(), tuple(a.clone() for a in args)).run_decompositions()

    sig = ep.graph_signature
    assert sorted(sig.user_inputs_to_mutate.values()) == ["x", "y", "z"]
    assert sig.buffers_to_mutate == {}
    assert [s.kind for s in sig.output_specs].count(OutputKind.USER_INPUT_MUTATION) == 3
    # Running the functional program still writes back into the inputs.
    got = [a.clone() for a in args]
    want = [a.clone() for a in args]
    torch.testing.assert_close(ep.module()(*got), MutateInputs()(*want))
    torch.testing.assert_close(got, want)


def test_unmutated_input_is_left_alone(device):
    class ReadOnly(torch.nn.Module):
        def forward(self, x, y):
            y.mul_(2)
            return x + y

    x, y = torch.randn(3, device=device), torch.randn(3, device=device)
    x_before, y_before = x.clone(), y.clone()
    ep = export(ReadOnly(), (x.clone(), y.clone()))

    torch.testing.assert_close(ep.module()(x, y), x_before + 2 * y_before)
    torch.testing.assert_close(x, x_before)
    torch.testing.assert_close(y, y_before * 2)
    assert _written_inputs(ep)["user_input"] == {"y"}


class BufferAndInput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("last", torch.zeros(3))

    def forward(self, x):
        self.last.copy_(x)  # buffer takes the old x
        x.mul_(-1)  # then the input is negated
        return self.last, x


def test_buffer_and_input_mutated_in_one_call(device):
    torch.manual_seed(10)
    mod = BufferAndInput().to(device)
    ref = copy.deepcopy(mod)
    x = torch.randn(3, device=device)
    x_ref = x.clone()

    ep = export(mod, (x.clone(),))
    gm = ep.module()
    last, neg = gm(x)

    ref_last, ref_neg = ref(x_ref)
    torch.testing.assert_close(last, ref_last)
    torch.testing.assert_close(neg, ref_neg)
    torch.testing.assert_close(x, x_ref)
    torch.testing.assert_close(gm.last, ref.last)
    torch.testing.assert_close(gm.last, -x)
    assert _written_inputs(ep) == {"buffer": {"last"}, "user_input": {"x"}}
