"""The fault drill's hostile tests: each does something that, unguarded, loses the cell's results.
Healthy tests sit before and after every fault (sorted order is the run order)."""

import ctypes
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path


def test_a_ok_first():
    assert 1 + 1 == 2


def test_b_segfault():
    ctypes.string_at(0)  # SIGSEGV


def test_c_ok():
    assert True


def test_d_abort():
    os.abort()  # SIGABRT


def test_e_hang():
    time.sleep(600)  # past the suite's test_timeout_s


def test_f_exit0():
    os._exit(0)  # a "clean" exit in the middle of a test


def test_g_killpg():
    os.killpg(os.getpgid(0), signal.SIGKILL)  # kills everything in this process group


def test_h_wipe_tmp():
    # Everything under the test's temporary directory: the runtime must keep nothing it needs there.
    for child in Path(tempfile.gettempdir()).glob("*"):
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def test_i_junk_journal():
    # Junk appended to every file under the temporary directory that looks like runtime state.
    for path in Path(tempfile.gettempdir()).rglob("*"):
        if path.is_file() and path.suffix in (".jsonl", ".json", ".txt", ""):
            with open(path, "a") as f:
                f.write('{"event": "result", "test": \x00garbage\n{not json\n')


def test_j_loud():
    print("x" * (10 * 1024 * 1024))  # 10 MB of output, then a pass


def test_k_xfail_crash():
    ctypes.string_at(0)  # an expected crash: listed as xfail in the drill's matrix.yaml


def test_l_export_then_segfault():
    """Under retrace the export is transformed (evidence: the program before and after), then the
    process dies: the crashed record must still carry that evidence."""
    import torch

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x) * 2

    torch.export.export(M(), (torch.ones(2),))
    ctypes.string_at(0)  # SIGSEGV


def test_z_ok_last():
    assert "still" + " here"
