"""A healthy suite: its cells' results must survive everything the fault suite does, and one of its
cells' outputs is corrupted by the drill after the run (only that cell may be affected)."""

import torch


def test_export_mul():
    class M(torch.nn.Module):
        def forward(self, x):
            return x * 3

    ep = torch.export.export(M(), (torch.ones(2),))
    torch.testing.assert_close(ep.module()(torch.ones(2)), torch.full((2,), 3.0))


def test_one():
    assert 1


def test_two():
    assert 2
