"""torch.export with pytree-structured inputs and outputs.

Covers dict / list / tuple / namedtuple / registered-dataclass inputs and
outputs, nested containers, ``None`` leaves, keyword and default arguments.
Each test checks that ``ep.module()`` accepts the same structure and matches
eager, and checks the facts recorded in ``ep.call_spec`` and
``ep.module_call_graph`` (the in/out TreeSpecs).
"""

import collections
import dataclasses

import pytest
import torch
import torch.utils._pytree as pytree
from torch.export import Dim, export
from torch.testing import assert_close

# --- global pytree registrations (import time only) -------------------------

Pair = collections.namedtuple("Pair", ["first", "second"])
# Namedtuples need a serialized type name so that the program can be saved.
pytree._register_namedtuple(Pair, serialized_type_name="mtx_p2.test_pytree_io.Pair")


@dataclasses.dataclass
class Batch:
    features: torch.Tensor
    mask: torch.Tensor


torch.export.register_dataclass(Batch, serialized_type_name="mtx_p2.test_pytree_io.Batch")


@dataclasses.dataclass
class Stats:
    mean: torch.Tensor
    total: torch.Tensor


torch.export.register_dataclass(Stats, serialized_type_name="mtx_p2.test_pytree_io.Stats")

# A saved ExportedProgram pickles its example inputs; allow-list our container
# types so that they load with ``weights_only=True``.
torch.serialization.add_safe_globals([Pair, Batch, Stats])


# --- helpers -----------------------------------------------------------------


def _in_args_spec(ep):
    """Spec of the positional-args tuple (child 0 of the (args, kwargs) spec)."""
    return ep.call_spec.in_spec.child(0)


def _in_kwargs_spec(ep):
    return ep.call_spec.in_spec.child(1)


def _root_signature(ep):
    roots = [entry for entry in ep.module_call_graph if entry.fqn == ""]
    assert len(roots) == 1
    return roots[0].signature


# --- tests -------------------------------------------------------------------


def test_dict_input_spec_and_module_roundtrip(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, inputs):
            return inputs["a"] * 2 + inputs["b"].sum()

    mod = M().to(device)
    inp = {"a": torch.randn(4, device=device), "b": torch.randn(2, device=device)}
    ep = torch.export.export(mod, (inp,))

    dict_spec = _in_args_spec(ep).child(0)
    assert dict_spec.type is dict
    assert sorted(dict_spec.context) == ["a", "b"]
    assert ep.call_spec.in_spec.num_leaves == 2

    other = {"a": torch.randn(4, device=device), "b": torch.randn(2, device=device)}
    for x in (inp, other):
        assert_close(ep.module()(x), mod(x))


def test_list_input_length_is_baked_into_spec(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, xs):
            out = xs[0]
            for t in xs[1:]:
                out = out + t
            return out

    mod = M().to(device)
    xs = [torch.randn(3, device=device) for _ in range(3)]
    ep = export(mod, (xs,))

    list_spec = _in_args_spec(ep).child(0)
    assert list_spec.type is list
    assert list_spec.num_children == 3
    # Three tensors summed -> exactly two additions in the graph.
    adds = [n for n in ep.graph.nodes if n.op == "call_function" and "add" in str(n.target)]
    assert len(adds) == 2

    ys = [torch.randn(3, device=device) for _ in range(3)]
    assert_close(ep.module()(ys), mod(ys))


def test_nested_tuple_input_and_tuple_output(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, pair):
            (a, b), c = pair
            return (a + c, (b - c, a * b))

    mod = M().to(device)
    args = (((torch.randn(2, 2, device=device), torch.randn(2, 2, device=device)), torch.randn(2, 2, device=device)),)
    ep = torch.export.export(mod, args)

    assert ep.call_spec.in_spec == pytree.tree_structure((args, {}))
    out_spec = ep.call_spec.out_spec
    assert out_spec.type is tuple and out_spec.num_children == 2
    assert out_spec.child(1).type is tuple
    assert out_spec.num_leaves == 3

    out = ep.module()(*args)
    assert isinstance(out, tuple) and isinstance(out[1], tuple)
    assert_close(out, mod(*args))


def test_namedtuple_input_and_output(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, p):
            return Pair(first=p.second + 1, second=p.first * p.second)

    mod = M().to(device)
    p = Pair(torch.randn(3, device=device), torch.randn(3, device=device))
    ep = export(mod, (p,))

    # Namedtuple specs record the concrete class as their context.
    assert _in_args_spec(ep).child(0).context is Pair
    assert ep.call_spec.out_spec.context is Pair
    assert ep.call_spec.out_spec.num_children == 2

    q = Pair(torch.randn(3, device=device), torch.randn(3, device=device))
    out = ep.module()(q)
    assert type(out) is Pair
    assert_close(out.first, mod(q).first)
    assert_close(out.second, mod(q).second)


def test_dataclass_input(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, batch: Batch):
            return (batch.features * batch.mask).sum(dim=-1)

    mod = M().to(device)
    b = Batch(torch.randn(2, 5, device=device), (torch.rand(2, 5, device=device) > 0.5).float())
    ep = torch.export.export(mod, (b,))

    spec = _in_args_spec(ep).child(0)
    assert spec.type is Batch
    assert spec.num_leaves == 2
    assert len(ep.graph_signature.user_inputs) == 2

    b2 = Batch(torch.randn(2, 5, device=device), torch.ones(2, 5, device=device))
    assert_close(ep.module()(b2), mod(b2))


def test_dataclass_output(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return Stats(mean=x.mean(dim=0), total=x.sum())

    mod = M().to(device)
    x = torch.randn(4, 3, device=device)
    ep = export(mod, (x,))

    assert ep.call_spec.out_spec.type is Stats
    out = ep.module()(x)
    assert isinstance(out, Stats)
    expected = mod(x)
    assert_close(out.mean, expected.mean)
    assert_close(out.total, expected.total)


def test_dict_output_preserves_key_order(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return {"zeta": x + 1, "alpha": x - 1, "mid": x * x}

    mod = M().to(device)
    x = torch.randn(3, device=device)
    ep = torch.export.export(mod, (x,))

    assert ep.call_spec.out_spec.type is dict
    assert list(ep.call_spec.out_spec.context) == ["zeta", "alpha", "mid"]
    out = ep.module()(x)
    assert list(out.keys()) == ["zeta", "alpha", "mid"]
    assert_close(out, mod(x))


def test_deeply_nested_mixed_containers(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, tree):
            enc = tree["encoder"]
            h = enc["layers"][0] @ enc["layers"][1]
            p = tree["pair"]
            return [h + p.first, {"res": (p.second.relu(), h.t())}]

    mod = M().to(device)
    tree = {
        "encoder": {"layers": [torch.randn(3, 3, device=device), torch.randn(3, 3, device=device)]},
        "pair": Pair(torch.randn(3, 3, device=device), torch.randn(3, 3, device=device)),
    }
    ep = export(mod, (tree,))

    assert ep.call_spec.in_spec == pytree.tree_structure(((tree,), {}))
    assert ep.call_spec.in_spec.num_leaves == 4
    assert ep.call_spec.out_spec == pytree.tree_structure(mod(tree))
    assert len(ep.graph_signature.user_outputs) == 3

    tree2 = pytree.tree_map(lambda t: torch.randn_like(t), tree)
    out = ep.module()(tree2)
    assert type(out[1]["res"][1]) is torch.Tensor
    assert_close(out, mod(tree2))


def test_none_positional_input(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, maybe_bias):
            if maybe_bias is None:
                return x * 3
            return x + maybe_bias

    mod = M().to(device)
    x = torch.randn(4, device=device)
    ep = torch.export.export(mod, (x, None))

    # The None branch was specialised: no add in the graph, only the multiply.
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert any("mul" in t for t in targets)
    assert not any("add" in t for t in targets)
    assert len(ep.graph_signature.user_inputs) == 2

    y = torch.randn(4, device=device)
    assert_close(ep.module()(y, None), mod(y, None))


def test_none_in_outputs(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return x.sin(), None, {"aux": None, "val": x.cos()}

    mod = M().to(device)
    x = torch.randn(5, device=device)
    ep = export(mod, (x,))

    assert ep.call_spec.out_spec == pytree.tree_structure(mod(x))
    out = ep.module()(x)
    assert out[1] is None
    assert out[2]["aux"] is None
    assert_close(out[0], x.sin())
    assert_close(out[2]["val"], x.cos())


def test_keyword_only_arguments_any_order(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, *, weight, offset):
            return x * weight - offset

    mod = M().to(device)
    x, w, o = (torch.randn(3, device=device) for _ in range(3))
    ep = torch.export.export(mod, (x,), {"weight": w, "offset": o})

    kw_spec = _in_kwargs_spec(ep)
    assert kw_spec.type is dict
    assert sorted(kw_spec.context) == ["offset", "weight"]
    assert _in_args_spec(ep).num_children == 1

    m = ep.module()
    expected = mod(x, weight=w, offset=o)
    assert_close(m(x, weight=w, offset=o), expected)
    # Keyword order at call time must not matter.
    assert_close(m(x, offset=o, weight=w), expected)


def test_default_python_arg_is_specialised(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, scale=2.5, shift=None):
            out = x * scale
            if shift is not None:
                out = out + shift
            return out

    mod = M().to(device)
    x = torch.randn(3, device=device)
    ep = export(mod, (x,))

    # Only the tensor argument actually passed is part of the spec.
    assert ep.call_spec.in_spec.num_leaves == 1
    assert len(ep.graph_signature.user_inputs) == 1
    x2 = torch.randn(3, device=device)
    assert_close(ep.module()(x2), x2 * 2.5)
    assert_close(ep.module()(x2), mod(x2))


def test_kwarg_tensor_overrides_default(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x, shift=None):
            return x if shift is None else x + shift

    mod = M().to(device)
    x, s = torch.randn(3, device=device), torch.randn(3, device=device)
    ep = torch.export.export(mod, (x,), {"shift": s})

    assert list(_in_kwargs_spec(ep).context) == ["shift"]
    s2 = torch.randn(3, device=device)
    assert_close(ep.module()(x, shift=s2), mod(x, shift=s2))
    assert not torch.equal(ep.module()(x, shift=s2), x)


def test_module_call_graph_root_matches_call_spec(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, a, b, *, c):
            return {"sum": a + b + c, "pair": (a, b * c)}

    mod = M().to(device)
    a, b, c = (torch.randn(2, device=device) for _ in range(3))
    ep = export(mod, (a, b), {"c": c})

    sig = _root_signature(ep)
    assert sig.in_spec == ep.call_spec.in_spec
    assert sig.out_spec == ep.call_spec.out_spec
    assert sig.out_spec.type is dict
    assert sig.in_spec.num_leaves == 3
    assert sig.out_spec.num_leaves == 3

    assert_close(ep.module()(a, b, c=c), mod(a, b, c=c))


def test_dynamic_shapes_on_pytree_input(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, inputs):
            x, y = inputs["x"], inputs["ys"][0]
            return x.sum(dim=0) + y

    mod = M().to(device)
    batch = Dim("batch", min=2, max=64)
    inp = {"x": torch.randn(4, 3, device=device), "ys": [torch.randn(3, device=device)]}
    dynamic_shapes = {"inputs": {"x": {0: batch}, "ys": [None]}}
    ep = torch.export.export(mod, (inp,), dynamic_shapes=dynamic_shapes)

    x_node = [n for n in ep.graph.nodes if n.op == "placeholder"][0]
    assert isinstance(x_node.meta["val"].shape[0], torch.SymInt)

    for n in (2, 7, 33):
        other = {"x": torch.randn(n, 3, device=device), "ys": [torch.randn(3, device=device)]}
        assert_close(ep.module()(other), mod(other))


def test_list_output_of_varying_pieces(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return list(torch.split(x, 2))

    mod = M().to(device)
    x = torch.randn(7, device=device)
    ep = export(mod, (x,))

    assert ep.call_spec.out_spec.type is list
    assert ep.call_spec.out_spec.num_children == 4
    out = ep.module()(x)
    assert isinstance(out, list) and [t.shape[0] for t in out] == [2, 2, 2, 1]
    assert_close(out, mod(x))


def test_constant_leaf_in_output(device):
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, x):
            return x + 1, 7, 2.5

    mod = M().to(device)
    x = torch.randn(2, device=device)
    ep = torch.export.export(mod, (x,))

    assert ep.call_spec.out_spec.num_leaves == 3
    out = ep.module()(torch.zeros(2, device=device))
    assert out[1] == 7 and out[2] == 2.5
    assert_close(out[0], torch.ones(2, device=device))


@pytest.mark.parametrize("container", ["list", "tuple", "dict"])
def test_same_leaves_different_container_types(device, container):
    """The container type is part of the spec; module() honours it."""
    torch.manual_seed(0)

    class M(torch.nn.Module):
        def forward(self, c):
            vals = list(c.values()) if isinstance(c, dict) else list(c)
            return vals[0] * vals[1]

    mod = M().to(device)
    a, b = torch.randn(3, device=device), torch.randn(3, device=device)
    make = {"list": lambda: [a, b], "tuple": lambda: (a, b), "dict": lambda: {"p": a, "q": b}}[container]
    ep = export(mod, (make(),))

    expected_type = {"list": list, "tuple": tuple, "dict": dict}[container]
    assert _in_args_spec(ep).child(0).type is expected_type
    assert_close(ep.module()(make()), a * b)
