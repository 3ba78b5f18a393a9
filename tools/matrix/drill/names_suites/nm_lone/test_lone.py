def test_l1():
    pass


def test_l2():
    raise AssertionError("test_l2 always fails")
