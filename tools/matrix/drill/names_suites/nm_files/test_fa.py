def test_fa1():
    pass


def test_fa2():
    raise AssertionError("test_fa2 always fails")
