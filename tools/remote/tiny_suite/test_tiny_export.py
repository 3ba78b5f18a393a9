"""Two tiny torch.export tests: the suite of the workspace //tools/remote:integration_test builds and
runs on its workers (a real matrix cell takes minutes on a small machine). Its cells are generated
like every cell, so a worker needs exactly what a real cell needs."""

import torch
from torch.export import export


def test_linear_relu(device):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).to(device)
    x = torch.randn(2, 4, device=device)
    torch.testing.assert_close(export(model, (x,)).module()(x), model(x))


def test_add_mul(device):
    class M(torch.nn.Module):
        def forward(self, a, b):
            return a + b * 2

    a, b = torch.randn(3, device=device), torch.randn(3, device=device)
    torch.testing.assert_close(export(M(), (a, b)).module()(a, b), a + b * 2)
