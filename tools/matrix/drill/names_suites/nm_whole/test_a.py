import os


def test_one():
    pass


def test_two():
    assert os.environ.get("DRILL_FIX") == "1", "test_two fails until DRILL_FIX=1"


def test_three():
    pass
