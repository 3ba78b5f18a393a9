"""The OpInfo suite (opinfo_tests/opinfo_cases.py) as pytest collects and runs it, in real child
processes on the installed torch's op_db: stable ids, every operator in exactly one test file, the
operators OPINFO_OPS names, and the ops whose eager values come from a seed of their own."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SUITE = Path("opinfo_tests")


def pytest_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPINFO_")}
    environ["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *sys.path])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:logging", "-q", *args],
        capture_output=True, text=True, env={**environ, **env}, timeout=600,
    )  # fmt: skip


def collected(*args: str, **env: str) -> list[str]:
    done = pytest_run("--collect-only", *args, **env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def cases():
    sys.path.insert(0, str(SUITE))
    spec = importlib.util.spec_from_file_location("opinfo_cases", SUITE / "opinfo_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_operator_is_in_exactly_one_file_that_exists(cases):
    names = [op.formatted_name for op in cases.operators()]
    assert len(names) == len(set(names)) > 600
    files = {cases.file_of(name) for name in names}
    assert files == {*cases.RANGES, "test_slice.py"}, "a range file holds no operator, or a file is missing"
    assert all((SUITE / file).is_file() for file in files)
    assert set(cases.SLICE) <= set(names), f"slice operators op_db lacks: {sorted(set(cases.SLICE) - set(names))}"
    assert cases.file_of("sin") == "test_slice.py" and cases.file_of("sinh") == "test_ops_s_sparse.py"
    assert cases.file_of("nn_functional_gelu") == "test_ops_nn_functional_d_i.py"


def test_ids_are_the_sample_index_and_a_digest_and_do_not_move_with_the_sample_count():
    ten = collected(str(SUITE / "test_slice.py"), OPINFO_OPS="add,index_select")
    three = collected(str(SUITE / "test_slice.py"), OPINFO_OPS="add,index_select", OPINFO_SAMPLES="3")
    again = collected(str(SUITE / "test_slice.py"), OPINFO_OPS="add,index_select")
    assert ten == again, "the ids differ between two processes"
    assert all(re.fullmatch(r"opinfo_tests/test_slice\.py::test_(add|index_select)\[float32-\d+-[0-9a-f]{6}\]", i) for i in ten), ten
    assert {i.split("::")[1].split("[")[0] for i in ten} == {"test_add", "test_index_select"}
    assert set(three) < set(ten) and len(three) == 6, "the first 3 samples' ids are not those they had among 10"


def test_opinfo_ops_refuses_an_operator_op_db_lacks():
    done = pytest_run("--collect-only", str(SUITE / "test_slice.py"), OPINFO_OPS="add,no_such_op")
    assert done.returncode != 0
    assert "OPINFO_OPS names operators op_db has no samples of: no_such_op" in done.stdout + done.stderr


def test_an_op_that_seeds_the_rng_itself_is_skipped_saying_so_never_failed():
    # rand_like is OpInfo's wrapper_set_seed(torch.randn_like): eager always draws from seed 42, the
    # exported program from the caller's RNG (export does not capture torch.manual_seed). Before,
    # every sample failed with "does not compute what eager rand_like does".
    done = pytest_run("-rs", str(SUITE / "test_slice.py"), OPINFO_OPS="rand_like", OPINFO_SAMPLES="2")
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 skipped" in done.stdout
    assert "eager rand_like seeds the RNG itself (torch.manual_seed, OpInfo's wrapper_set_seed)" in done.stdout


def test_integers_compare_exactly_and_a_real_export_failure_fails_with_its_error():
    done = pytest_run("-rfs", "--tb=line", str(SUITE / "test_slice.py"), OPINFO_OPS="argmax,narrow", OPINFO_SAMPLES="2")
    # narrow's second sample passes its start as a tensor: export meets a data-dependent size.
    assert "1 failed, 3 passed" in done.stdout, done.stdout[-3000:]
    assert re.search(r"FAILED opinfo_tests/test_slice.py::test_narrow\[float32-1-[0-9a-f]{6}\]", done.stdout)
    assert "torch.fx.experimental.symbolic_shapes.PendingUnbackedSymbolNotFound: Pending unbacked symbols" in done.stdout
