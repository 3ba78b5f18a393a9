"""Shared setup for the torch.package tests.

Puts ``fixtures/`` on ``sys.path`` so the ``mtx_pkg_*`` fixture packages can be
imported (and therefore packaged) by the tests, and provides small helpers.
"""
import sys
from pathlib import Path

import pytest
import torch

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"

if str(FIXTURES_DIR) not in sys.path:
    sys.path.insert(0, str(FIXTURES_DIR))

# torch.testing.assert_close lazily imports a large part of torch (~2 s) on its
# first call.  Pay that once at collection time so per-test timings reflect
# the tests themselves.
torch.testing.assert_close(torch.zeros(1), torch.zeros(1))


@pytest.fixture
def fixtures_dir():
    """Directory holding the fixture packages' sources."""
    return FIXTURES_DIR


@pytest.fixture
def pkg_file(tmp_path):
    """A fresh archive path inside pytest's tmp_path."""
    return tmp_path / "package.pt"
