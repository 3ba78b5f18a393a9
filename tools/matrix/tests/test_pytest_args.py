"""A suite's own pytest options (matrix.yaml `pytest_args`, issue #13): which are refused and why,
and a real cell that passes them through to pytest (`-p no:logging` makes a test pass whose log call
has a malformed format string, as it does outside pytest)."""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tools.matrix import config, pytest_args
from tools.matrix.runtime import cell_config
from tools.matrix.tests.fixtures.cellrun import Cell, run_cell
from tools.matrix.tests.fixtures.toolws import write_workspace

MATRIX = """\
devices:
  cpu: {}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: plain
suites:
  s:
    variants: [base]
    devices: [cpu]
    pytest_args: ARGS
"""


def load_with(tmp_path: Path, args: str) -> config.Matrix:
    ws = write_workspace(tmp_path, MATRIX.replace("ARGS", args), ("s/test_a.py",), "def test_x():\n    pass\n")
    return config.load(ws / "matrix.yaml", ws)


def test_allowed_options_reach_the_suite(tmp_path):
    matrix = load_with(tmp_path, '["-p", "no:logging", "-pno:warnings", "-W", "error::DeprecationWarning", "--tb=short", "-v", "--import-mode=importlib"]')
    assert matrix.suites[0].pytest_args == ("-p", "no:logging", "-pno:warnings", "-W", "error::DeprecationWarning", "--tb=short", "-v", "--import-mode=importlib")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["-k", "test_x"], [(0, "-k is not allowed in pytest_args: it selects or changes which tests run and how xfails count; the matrix decides that (tests, shards, expectations, --test_filter)")]),
        (["--deselect=test_a.py::test_x"], [(0, "--deselect is not allowed in pytest_args: it selects or changes which tests run and how xfails count; the matrix decides that (tests, shards, expectations, --test_filter)")]),
        (["--runxfail"], [(0, "--runxfail is not allowed in pytest_args: it selects or changes which tests run and how xfails count; the matrix decides that (tests, shards, expectations, --test_filter)")]),
        (["-x"], [(0, "-x is not allowed in pytest_args: it selects or changes which tests run and how xfails count; the matrix decides that (tests, shards, expectations, --test_filter)")]),
        (["-n=4"], [(0, "-n is not allowed in pytest_args: it changes how tests are scheduled, repeated or timed out; the runtime runs each test once under its own timeout (test_timeout_s)")]),
        (["--junitxml=out.xml"], [(0, "--junitxml is not allowed in pytest_args: it writes results or files where the runtime does not look; the runtime writes the results")]),
        (["--json-report-file=x.json"], [(0, "--json-report-file is not allowed in pytest_args: it writes results or files where the runtime does not look; the runtime writes the results")]),
        (["--basetemp=/tmp/x"], [(0, "--basetemp is not allowed in pytest_args: it writes results or files where the runtime does not look; the runtime writes the results")]),
        (["--rootdir=/"], [(0, "--rootdir is not allowed in pytest_args: it changes the configuration or the mode the runtime relies on; set options in the suite's own conftest.py instead")]),
        (["-c", "other.ini"], [(0, "-c is not allowed in pytest_args: it changes the configuration or the mode the runtime relies on; set options in the suite's own conftest.py instead")]),
        (["-p", "no:tools.matrix.runtime.plugin"], [(1, "-p no:tools.matrix.runtime.plugin is not allowed in pytest_args: the runtime loads tools.matrix.runtime.plugin itself and reads its results")]),
        (["-pno:json-report"], [(0, "-p no:json-report is not allowed in pytest_args: the runtime loads json-report itself and reads its results")]),
        (["-p"], [(0, "-p needs a value: add it as the next item")]),
        (["-p=no:logging"], [(0, "'-p=no:logging': pytest reads -p= as -p with a value starting with =; write -p and the value as two items")]),
        (["test_a.py::test_x"], [(0, "'test_a.py::test_x' is not an option: the runtime chooses the test files (tests:, data:); pytest_args takes options only")]),
        (["-W", "error:: Deprecation"], [(1, "-W error:: Deprecation: pytest refuses this warning filter at start (AttributeError: module 'builtins' has no attribute 'Deprecation')")]),
        # Each of these made pytest exit at start in every cell of the suite, or decide statuses otherwise.
        (["-W", "foo"], [(1, "-W foo: pytest refuses this warning filter at start (invalid action: 'foo')")]),
        (["-Werror::NoSuchWarning"], [(0, "-W error::NoSuchWarning: pytest refuses this warning filter at start (AttributeError: module 'builtins' has no attribute 'NoSuchWarning')")]),
        (["--log-level=LOUD"], [(0, "--log-level=LOUD: not a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)")]),
        (["--durations-min=1.2.3"], [(0, "--durations-min=1.2.3: the value must match [0-9]+(\\.[0-9]*)?|\\.[0-9]+")]),
        *[(["-p", f"no:{name}"], [(1, f"-p no:{name} is not allowed in pytest_args: pytest's {name} plugin collects, runs or decides the outcome of tests, which the statuses depend on")])
          for name in ("skipping", "python", "unittest", "subtests", "runner", "mark")],
        (["--tb=no"], [(0, "--tb=no: the value must match auto|long|short|line|native")]),
        (["--tb"], [(0, "--tb needs a value: write --tb=VALUE")]),
        (["--log-file=$(location x)"], [(0, "--log-file is not allowed in pytest_args: it writes results or files where the runtime does not look; the runtime writes the results")]),
    ],
)
def test_refused_options(args, expected):
    assert pytest_args.problems(args) == expected


def test_an_unknown_option_is_refused_with_the_allowed_list():
    ((index, message),) = pytest_args.problems(["--reruns-delay=3"])
    assert index == 0
    assert message.startswith("--reruns-delay is not among the pytest options a suite may add (--assert, --capture, ")


def test_refusals_are_matrix_problems_at_the_item(tmp_path):
    with pytest.raises(config.MatrixError) as info:
        load_with(tmp_path, '["-v", "-k", "slow", "tests/"]')
    assert info.value.problems == [
        "matrix.yaml:11:25: suites.s.pytest_args.1: -k is not allowed in pytest_args: it selects or changes which tests run and how xfails count; the matrix decides that (tests, shards, expectations, --test_filter)",
        "matrix.yaml:11:39: suites.s.pytest_args.3: 'tests/' is not an option: the runtime chooses the test files (tests:, data:); pytest_args takes options only",
    ]


@pytest.mark.parametrize(
    "plugin, data, problem",
    [
        ("no_such_plugin_xyz", "[]", "no such module in the Python environment or among the suite's files (tests:, data:), the only ones its tests can import"),
        ("s.my_plugin", "[]", "no such module in the Python environment or among the suite's files (tests:, data:), the only ones its tests can import"),
        ("s.my_plugin", "[my_plugin.py]", ""),  # in the suite's data: in the targets' runfiles
        ("s.helpers.plugin", "[helpers/**]", ""),
        ("numpy", "[]", ""),  # installed in the environment
        ("1bad", "[]", "not a module name"),
    ],
)
def test_a_plugin_must_be_importable_by_the_tests(tmp_path, plugin, data, problem):
    """`-p module` that the cells' processes cannot import made every cell of the suite fail at start."""
    text = MATRIX.replace("ARGS", f'["-p", "{plugin}"]') + f"    data: {data}\n"
    ws = write_workspace(tmp_path, text, ("s/test_a.py", "s/my_plugin.py", "s/helpers/__init__.py", "s/helpers/plugin.py"), "def test_x():\n    pass\n")
    if not problem:
        assert config.load(ws / "matrix.yaml", ws).suites[0].pytest_args == ("-p", plugin)
        return
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert info.value.problems == [f"matrix.yaml:11:25: suites.s.pytest_args.1: -p {plugin}: {problem}"]


def test_cell_config_reads_them_from_the_target_spec(tmp_path):
    spec = cell_config.CellSpec(suite="s", suite_dir="s", variant="base", variant_impl="x:Y", device="cpu", test_files=("test_a.py",), pytest_args=("-p", "no:logging"))
    cell = cell_config.CellConfig.from_bazel({cell_config.SPEC_ENV: spec.to_json()})
    assert cell.pytest_args == ("-p", "no:logging")
    assert cell_config.CellConfig.from_env({cell_config.ENV_KEY: cell.save(str(tmp_path / "cell.json"))}) == cell


# A torch-style log call whose format string has more placeholders than arguments: pytest's logging
# plugin raises from its handler (the test fails), Python's own last-resort handler prints and goes on.
LOG_TEST = textwrap.dedent(
    """\
    import logging


    def test_malformed_log_call_is_not_the_test_s_failure():
        logging.getLogger("torch._export").warning("graph %s has %s nodes", "g")
    """
)


def test_a_real_cell_runs_pytest_with_the_suite_s_options(tmp_path):
    (tmp_path / "suites" / "logs").mkdir(parents=True)
    (tmp_path / "suites" / "logs" / "test_logs.py").write_text(LOG_TEST)
    cells = {
        "plain": Cell("logs", ("test_logs.py",)),
        "no_logging": Cell("logs", ("test_logs.py",), pytest_args=("-p", "no:logging")),
    }
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(cells, pool.map(lambda n: run_cell(cells[n], tmp_path / "suites", tmp_path / "runs" / n), cells)))
    node = "test_logs.py::test_malformed_log_call_is_not_the_test_s_failure"
    assert runs["plain"].statuses == {node: "failed"}, runs["plain"].explain()
    assert "not enough arguments for format string" in runs["plain"].matrix(node)["message"], runs["plain"].explain()
    assert runs["no_logging"].statuses == {node: "passed"}, runs["no_logging"].explain()
    assert runs["no_logging"].returncode == 0, runs["no_logging"].explain()
