def test_fb1():
    pass


def test_fb2():
    raise AssertionError("test_fb2 always fails")
