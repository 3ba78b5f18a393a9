import os
import signal
from pathlib import Path


def test_x1():
    pass


def test_x2():
    raise AssertionError("test_x2 always fails")


def test_x3():
    if os.environ.get("DRILL_KILL") == "1":  # SIGKILL the cell runner: the target leaves no outputs of its own
        assert b"cell_main" in Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        os.kill(os.getppid(), signal.SIGKILL)
