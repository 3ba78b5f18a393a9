"""Python side effects (list append, global / nonlocal mutation, print, logging)
under torch._dynamo.export and torch.compile(fullgraph=True).

torch.compile replays side effects after every call; export applies them once,
while tracing, and the graph it returns carries no side effects at all.
"""
import logging

import pytest
import torch
import torch._dynamo
from torch._dynamo.exc import Unsupported
from torch._dynamo.testing import CompileCounter

_LOG = logging.getLogger("dynamo_tests.side_effects")

EVENTS = []
CALLS = 0


@pytest.fixture(autouse=True)
def _reset_dynamo():
    global CALLS
    torch._dynamo.reset()
    EVENTS.clear()
    CALLS = 0
    yield
    torch._dynamo.reset()
    EVENTS.clear()
    CALLS = 0


def call_targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def log_event(x):
    EVENTS.append("called")
    return x + 1


def count_calls(x):
    global CALLS
    CALLS += 1
    return x * CALLS


def make_nonlocal_counter():
    count = 0

    def step(x):
        nonlocal count
        count += 1
        return x + count

    return step, lambda: count


# --------------------------------------------------------------------------
# list append
# --------------------------------------------------------------------------


def test_export_applies_list_append_once_at_trace_time(device):
    x = torch.randn(3, device=device)

    gm = torch._dynamo.export(log_event)(x).graph_module
    assert EVENTS == ["called"]

    for _ in range(3):
        torch.testing.assert_close(gm(x), x + 1)
    assert EVENTS == ["called"]  # the graph itself has no side effect


def test_compile_replays_list_append_every_call(device):
    counter = CompileCounter()
    compiled = torch.compile(log_event, backend=counter, fullgraph=True)
    x = torch.randn(3, device=device)

    for _ in range(3):
        torch.testing.assert_close(compiled(x), x + 1)

    assert EVENTS == ["called"] * 3
    # Dynamo guards on the list's length ("not G['EVENTS']" on the first
    # call), so every append invalidates the previous compilation.
    assert counter.frame_count == 3


def test_export_leaks_fake_tensors_into_mutated_lists(device):
    stash = []

    def f(x):
        stash.append(x * 2)
        return x + 1

    x = torch.randn(3, device=device)
    gm = torch._dynamo.export(f)(x).graph_module

    torch.testing.assert_close(gm(x), x + 1)
    # The value appended during tracing is the traced (fake) tensor, not data.
    assert len(stash) == 1
    assert isinstance(stash[0], torch._subclasses.fake_tensor.FakeTensor)


def test_compile_appends_real_tensors(device):
    stash = []

    def f(x):
        stash.append(x * 2)
        return x + 1

    x = torch.randn(3, device=device)
    out = torch.compile(f, backend="eager", fullgraph=True)(x)

    torch.testing.assert_close(out, x + 1)
    assert len(stash) == 1
    assert type(stash[0]) is torch.Tensor
    torch.testing.assert_close(stash[0], x * 2)


# --------------------------------------------------------------------------
# global / nonlocal mutation
# --------------------------------------------------------------------------


def test_export_global_mutation_happens_once_and_value_is_baked(device):
    x = torch.randn(3, device=device)

    gm = torch._dynamo.export(count_calls)(x).graph_module
    assert CALLS == 1

    torch.testing.assert_close(gm(x), x * 1)
    torch.testing.assert_close(gm(x), x * 1)
    assert CALLS == 1
    assert any(n.op == "call_function" and 1 in n.args for n in gm.graph.nodes)


def test_compile_global_mutation_matches_eager(device):
    global CALLS
    x = torch.randn(3, device=device)
    expected = [count_calls(x) for _ in range(3)]
    assert CALLS == 3
    CALLS = 0

    compiled = torch.compile(count_calls, backend="eager", fullgraph=True)
    actual = [compiled(x) for _ in range(3)]

    torch.testing.assert_close(actual, expected)
    assert CALLS == 3


def test_export_nonlocal_mutation_happens_once_and_value_is_baked(device):
    step, current = make_nonlocal_counter()
    x = torch.randn(3, device=device)

    gm = torch._dynamo.export(step)(x).graph_module

    assert current() == 1
    torch.testing.assert_close(gm(x), x + 1)
    torch.testing.assert_close(gm(x), x + 1)
    assert current() == 1


def test_compile_nonlocal_mutation_matches_eager(device):
    eager_step, eager_count = make_nonlocal_counter()
    step, current = make_nonlocal_counter()
    compiled = torch.compile(step, backend="eager", fullgraph=True)
    x = torch.randn(3, device=device)

    for _ in range(3):
        torch.testing.assert_close(compiled(x), eager_step(x))

    assert current() == eager_count() == 3


def test_compile_global_dict_update_matches_eager(device):
    registry = {}

    def f(x):
        registry["last_norm"] = x.norm()
        registry["seen"] = registry.get("seen", 0) + 1
        return x / registry["last_norm"]

    compiled = torch.compile(f, backend="eager", fullgraph=True)
    x = torch.randn(4, device=device)

    out = compiled(x)

    torch.testing.assert_close(out, x / x.norm())
    assert registry["seen"] == 1
    torch.testing.assert_close(registry["last_norm"], x.norm())


# --------------------------------------------------------------------------
# print and logging
# --------------------------------------------------------------------------


def chatty(x):
    print("side effect!")
    return x.cos()


def test_print_is_rejected_by_default(device, capsys):
    x = torch.randn(3, device=device)

    with pytest.raises(Unsupported, match="Failed to trace builtin operator"):
        torch._dynamo.export(chatty)(x)
    torch._dynamo.reset()
    with pytest.raises(Unsupported, match="Failed to trace builtin operator"):
        torch.compile(chatty, backend="eager", fullgraph=True)(x)
    assert "side effect!" not in capsys.readouterr().out


def test_reorderable_print_runs_under_compile(device, capsys):
    x = torch.randn(3, device=device)
    with torch._dynamo.config.patch(reorderable_logging_functions={print}):
        compiled = torch.compile(chatty, backend="eager", fullgraph=True)
        out1 = compiled(x)
        out2 = compiled(x)

    torch.testing.assert_close(out1, x.cos())
    torch.testing.assert_close(out2, x.cos())
    assert capsys.readouterr().out.count("side effect!") == 2


def test_reorderable_print_is_dropped_by_export(device, capsys):
    x = torch.randn(3, device=device)
    with torch._dynamo.config.patch(reorderable_logging_functions={print}):
        gm = torch._dynamo.export(chatty, aten_graph=True)(x).graph_module
    out = gm(x)

    torch.testing.assert_close(out, x.cos())
    assert "side effect!" not in capsys.readouterr().out
    assert call_targets(gm) == [torch.ops.aten.cos.default]


def logs_a_warning(x):
    _LOG.warning("about to add")
    return x + 2


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def captured_log():
    handler = _ListHandler()
    _LOG.addHandler(handler)
    yield handler.messages
    _LOG.removeHandler(handler)


def test_export_drops_logger_calls(device, captured_log):
    x = torch.randn(3, device=device)
    logs_a_warning(x)
    assert captured_log == ["about to add"]  # the handler works in eager
    captured_log.clear()

    gm = torch._dynamo.export(logs_a_warning, aten_graph=True)(x).graph_module
    out = gm(x)

    torch.testing.assert_close(out, x + 2)
    assert captured_log == []
    assert call_targets(gm) == [torch.ops.aten.add.Tensor]


def test_compile_fullgraph_rejects_logger_calls(device):
    x = torch.randn(3, device=device)
    with pytest.raises(Unsupported, match="logging.Logger method not supported"):
        torch.compile(logs_a_warning, backend="eager", fullgraph=True)(x)
