"""Graph patterns whose exported GraphModule must keep behaving like eager wherever it goes: torch.cond
subgraphs, index assignment into an input, arithmetic on buffers alone, grad-mode regions, and
BatchNorm's running-statistics bookkeeping."""

import pytest
import torch
import torch._dynamo


@pytest.fixture(autouse=True)
def _reset_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_cond_subgraphs_follow_the_predicate(device):
    def f(x):
        return torch.cond(x.sum() > 0, lambda t: t.sin(), lambda t: t.cos(), (x,))

    x = torch.randn(3, 4, device=device).abs()
    gm = torch._dynamo.export(f, aten_graph=True)(x).graph_module
    for sample in (x, -x):
        torch.testing.assert_close(gm(sample), f(sample))


def test_index_assignment_into_input_matches_eager(device):
    def f(x):
        x[:, 0] = 0
        return x * 2

    x = torch.randn(3, 4, device=device)
    gm = torch._dynamo.export(f, aten_graph=True)(x.clone()).graph_module
    expected_input, actual_input = x.clone(), x.clone()
    expected = f(expected_input)
    torch.testing.assert_close(gm(actual_input), expected)
    torch.testing.assert_close(actual_input, expected_input)


class BufferOnlyArithmetic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.tensor([2.0, 3.0]))

    def forward(self, x):
        factor = self.scale * self.scale + 1  # involves no input
        return x * factor


def test_buffer_only_arithmetic_follows_buffer_updates(device):
    model = BufferOnlyArithmetic().to(device)
    x = torch.randn(4, 2, device=device)
    gm = torch._dynamo.export(model, aten_graph=True)(x).graph_module
    torch.testing.assert_close(gm(x), model(x))
    # The graph module's own tensor holding the buffer's value (dynamo lifts it as a constant).
    (scale,) = [b for b in gm.buffers() if b.shape == (2,) and torch.equal(b, model.scale)]
    with torch.no_grad():
        scale.fill_(5.0)
    torch.testing.assert_close(gm(x), x * 26)


def test_no_grad_region_stays_without_grad(device):
    def f(x):
        y = x * 2
        with torch.no_grad():
            z = y * 3
        return y + z, z.requires_grad

    x = torch.randn(3, device=device, requires_grad=True)
    gm = torch._dynamo.export(f)(x).graph_module
    out, z_requires_grad = gm(x)
    expected, expected_flag = f(x)
    torch.testing.assert_close(out, expected)
    assert z_requires_grad == expected_flag is False


def test_batchnorm_training_counts_batches(device):
    model = torch.nn.BatchNorm1d(3).to(device).train()
    x = torch.randn(8, 3, device=device)
    gm = torch._dynamo.export(model, aten_graph=True)(x).graph_module
    # The graph module's own int64 scalar holding num_batches_tracked (lifted as a constant).
    (counter,) = [b for b in gm.buffers() if b.dtype == torch.long and b.dim() == 0]
    before = int(counter)
    gm(x)
    gm(x)
    assert int(counter) == before + 2
