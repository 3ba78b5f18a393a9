"""Healthy tests in a file collected after the crashing ones: all must be reported."""

import unittest

import torch


def test_export_add():
    class M(torch.nn.Module):
        def forward(self, x):
            return x + 1

    ep = torch.export.export(M(), (torch.ones(2),))
    torch.testing.assert_close(ep.module()(torch.ones(2)), torch.full((2,), 2.0))


def test_plain():
    assert [1, 2] == [1, 2]


class TestSub(unittest.TestCase):
    def test_subtest_fails(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertEqual(i, 0)
