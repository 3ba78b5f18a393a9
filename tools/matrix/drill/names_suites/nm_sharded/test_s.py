import os
import signal
from pathlib import Path


def test_s1():
    pass


def test_s2():
    raise AssertionError("test_s2 always fails")


def test_s3():
    pass


def test_s4():
    if os.environ.get("DRILL_KILL") == "1":  # SIGKILL the cell runner: this shard leaves no outputs of its own
        assert b"cell_main" in Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        os.kill(os.getppid(), signal.SIGKILL)
