"""The runtime alone decides selection and statuses (issue #22): a suite's own pytest configuration
may add options, never hide a test or change how outcomes count. Real cells (cell_main, pytest, the
plugin) on fixtures/suite_config, each holding the same four tests (a failure, a pass, a skip mark, a
strict xfail mark) and one way a suite configures pytest: the statuses stay plain pytest's, and what
the configuration asked for is ignored with a note, skipped with the reason, or refused.
"""

from __future__ import annotations

import pytest

from tools.matrix.tests.fixtures.cellrun import Cell, pool_fixture, uses

FILE = "test_cfg.py"
PLAIN = {  # what plain pytest says of test_cfg.py without any configuration
    f"{FILE}::test_a_fails": "failed",
    f"{FILE}::test_b_passes": "passed",
    f"{FILE}::test_c_skip_mark": "skipped",
    f"{FILE}::test_d_xfail_mark": "xfailed",
}
CELLS = {
    name: Cell(f"suite_config/{name}", (FILE,), env=env)
    for name, env in {
        "addopts_ini": {},
        "addopts_toml": {},
        "conftest_deselects": {},
        "conftest_runxfail": {},
        "conftest_unregisters": {},
        "env_addopts": {"PYTEST_ADDOPTS": "-x -k fails -p no:skipping", "PYTEST_PLUGINS": "no_such_plugin", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    }.items()
}
cells = pool_fixture(CELLS, "suite_config")


def statuses_of(run) -> dict[str, str]:
    return {nodeid: t["metadata"]["matrix"]["status"] for nodeid, t in run.tests.items()}


@uses("addopts_ini", "addopts_toml")
@pytest.mark.parametrize("name, source, value", [
    ("addopts_ini", "pytest.ini", "'-k \"not fails\" -p no:skipping -x --runxfail'"),
    ("addopts_toml", "pyproject.toml", "'--deselect test_cfg.py::test_a_fails -m not slow --maxfail=1'"),
])  # fmt: skip
def test_a_configuration_files_addopts_is_ignored_and_named(cells, name, source, value):
    """Honoured, these addopts hid the failing test (-k, --deselect, -m) or changed how marks count
    (-p no:skipping, --runxfail): a green cell with a failing test in it."""
    run = cells[name]
    assert statuses_of(run) == PLAIN, run.explain()
    assert run.returncode == 1  # the failing test fails the target
    assert f"[matrix] note: {source}'s addopts ({value}) is ignored: the cell's spec decides which tests run" in run.output


@uses("conftest_deselects")
def test_a_test_its_conftest_deselects_is_skipped_with_the_reason(cells):
    run = cells["conftest_deselects"]
    assert statuses_of(run) == {**PLAIN, f"{FILE}::test_a_fails": "skipped"}, run.explain()
    assert run.matrix(f"{FILE}::test_a_fails")["message"] == (
        "Skipped: deselected by the suite's pytest configuration (a conftest.py or plugin's pytest_collection_modifyitems); use a matrix.yaml skip entry instead"
    )


@uses("conftest_runxfail", "conftest_unregisters")
@pytest.mark.parametrize("name, changed", [
    ("conftest_runxfail", "--runxfail is set (True)"),
    ("conftest_unregisters", "pytest's skipping plugin is not active"),
])  # fmt: skip
def test_a_conftest_that_changes_the_machinery_fails_the_cell_saying_what(cells, name, changed):
    run = cells[name]
    assert run.returncode == 1 and run.tests == {}, run.explain()
    (problem,) = run.problems
    assert problem.startswith(f"the suite's pytest configuration changes what the statuses depend on: {changed}. The matrix decides"), problem


@uses("env_addopts")
def test_pytests_environment_settings_are_ignored_and_named(cells):
    """`bazel test --test_env=PYTEST_ADDOPTS=...` would have stopped at the first failure and selected only it."""
    run = cells["env_addopts"]
    assert statuses_of(run) == PLAIN, run.explain()
    for key, value in (("PYTEST_ADDOPTS", "-x -k fails -p no:skipping"), ("PYTEST_PLUGINS", "no_such_plugin"), ("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")):
        assert f"[matrix] note: ${key}={value!r} is ignored: the cell's spec" in run.output
