def test_four():
    pass


def test_five():
    raise AssertionError("test_five always fails")
