"""Raises while pytest imports it: a collection error of this file only."""

raise ImportError("drill: this module cannot be imported")


def test_never_collected():
    pass
