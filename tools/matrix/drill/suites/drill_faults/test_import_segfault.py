"""Crashes the collecting process while pytest imports it."""

import ctypes

ctypes.string_at(0)


def test_never_collected():
    pass
