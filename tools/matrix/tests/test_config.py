"""matrix.yaml loading and validation: the real file, the schema, and a table of bad inputs with
the exact `matrix.yaml:LINE:COL: ...` message each must produce."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

import tools.matrix
from tools.matrix import config, variant_library
from tools.matrix.tests.fixtures.toolws import run_cli, write_workspace

TOOLS = Path(tools.matrix.__file__).absolute().parent
# The real matrix.yaml (a runfile under Bazel, pointing into the source tree where the suites are).
REAL_MATRIX = (TOOLS.parents[1] / "matrix.yaml").resolve()

VALID = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base:
    impl: pkg.mod:Base
    description: plain
  other:
    impl: pkg.mod:Other
    description: other
suites:
  s:
    variants: [base, other]
    devices: [cpu, cuda]
expectations: {}
"""


def make_workspace(tmp_path: Path, text: str, files: tuple[str, ...] = ("s/test_a.py",)) -> Path:
    (tmp_path / "ws").mkdir()
    return write_workspace(tmp_path / "ws", textwrap.dedent(text), files, "def test_x():\n    pass\n")


def problems_of(tmp_path: Path, text: str, files: tuple[str, ...] = ("s/test_a.py", "empty/README.md")) -> list[str]:
    ws = make_workspace(tmp_path, text, files)
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# --- the real matrix.yaml and the schema ---------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = json.loads(config.SCHEMA_PATH.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft202012Validator
    jsonschema.Draft202012Validator.check_schema(schema)  # raises SchemaError when invalid


def test_real_matrix_yaml_validates_against_the_schema():
    schema = json.loads(config.SCHEMA_PATH.read_text())
    data = yaml.safe_load(REAL_MATRIX.read_text())
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert errors == []


def test_schema_rejects_what_it_should():
    validator = jsonschema.Draft202012Validator(json.loads(config.SCHEMA_PATH.read_text()))
    good = yaml.safe_load(VALID)
    assert list(validator.iter_errors(good)) == []
    for bad in (
        {**good, "extra": 1},
        {**good, "suites": {"s": {"variants": "base", "devices": ["cpu"]}}},
        {**good, "suites": {"s": {"variants": ["base"], "devices": ["cpu"], "shards": 51}}},
        {**good, "expectations": {"s": {"base": {"xfail": {"test_a.py": " "}}}}},
        {**good, "suites": {"s": {"variants": ["base"], "devices": ["cpu"], "shard_seconds": 0}}},
        {**good, "suites": {"s": {"variants": ["base"], "devices": ["cpu"], "shard_seconds": True}}},
    ):
        assert list(validator.iter_errors(bad)), bad


def test_real_matrix_yaml_loads():
    matrix = config.load(REAL_MATRIX, REAL_MATRIX.parent)
    assert matrix.path == "matrix.yaml"
    suites = {s.name: s for s in matrix.suites}
    assert {"export_tests", "package_tests", "dynamo_tests"} <= set(suites)
    assert {d.name for d in matrix.devices} >= {"cpu", "cuda"}
    assert matrix.device("cuda").requires_gpu and not matrix.device("cpu").requires_gpu
    assert len(matrix.cells()) == sum(len(s.variants) * len(s.devices) for s in matrix.suites)
    for suite in matrix.suites:
        assert "base" in suite.variants
        assert suite.test_files, suite.name
        assert list(suite.test_files) == sorted(suite.test_files)
        for f in suite.test_files:
            assert f.startswith(suite.directory + "/") and Path(f).name.startswith("test_")
            assert (REAL_MATRIX.parent / f).is_file()
    assert "package_tests/conftest.py" in suites["package_tests"].data_files
    assert not set(suites["package_tests"].data_files) & set(suites["package_tests"].test_files)
    labels = [c.label for c in matrix.cells()]
    assert len(labels) == len(set(labels))
    assert "//export_tests:export_tests_base_cuda" in labels


def test_real_matrix_yaml_through_the_cli_list():
    out = run_cli(REAL_MATRIX.parent, "list")
    assert out.returncode == 0, out.stderr
    assert "//export_tests:export_tests_base_cpu" in out.stdout
    assert out.stdout.rstrip().endswith(" cell(s)")


# --- a valid synthetic matrix --------------------------------------------------------------------


def test_valid_synthetic_matrix(tmp_path):
    ws = make_workspace(
        tmp_path,
        VALID.replace("    devices: [cpu, cuda]\n", "    devices: [cpu, cuda]\n    shards: {cuda: 3}\n    tags: [exclusive]\n    data: [conftest.py]\n"),
        files=("s/test_a.py", "s/test_b.py", "s/helper.py", "s/conftest.py"),
    )
    matrix = config.load(ws / "matrix.yaml", ws)
    (suite,) = matrix.suites
    assert suite.test_files == ("s/test_a.py", "s/test_b.py")
    assert suite.data_files == ("s/conftest.py",)
    shard_counts = {c.device.name: c.targets[0].shard_count for c in matrix.cells() if c.suite is suite}
    assert shard_counts == {"cpu": 1, "cuda": 3}
    assert suite.test_timeout_s == config.DEFAULT_TEST_TIMEOUT_S and suite.size == "medium"
    cells = matrix.cells()
    assert [c.target_name for c in cells] == ["s_base_cpu", "s_base_cuda", "s_other_cpu", "s_other_cuda"]
    assert cells[1].tags == ("suite:s", "variant:base", "device:cuda", "requires-gpu", "exclusive")
    assert cells[0].tags == ("suite:s", "variant:base", "device:cpu", "exclusive")


def test_shard_seconds_plans_the_counts_from_the_recorded_durations(tmp_path):
    ws = make_workspace(tmp_path, VALID.replace("    devices: [cpu, cuda]\n", "    devices: [cpu, cuda]\n    shard_seconds: 100\n"), files=("s/test_a.py", "s/test_b.py"))
    matrix = config.load(ws / "matrix.yaml", ws)
    assert matrix.suites[0].shard_seconds == 100.0 and matrix.suites[0].recorded == {}
    assert {c.target_name: c.targets[0].shard_count for c in matrix.cells()} == dict.fromkeys(["s_base_cpu", "s_base_cuda", "s_other_cpu", "s_other_cuda"], 1)

    recorded = {
        "base/cpu": {"test_a.py::test_x": 200.0, "test_b.py::test_x": 50.0},  # 250 s: 2.5 -> 3 shards
        "other/cpu": {"test_a.py::test_x": 40.0},  # 0.4 -> 1
        "other/cuda": {"test_a.py::test_x": 100.0, "test_b.py::test_x": 49.0},  # 1.49 -> 1
    }
    (ws / "s" / "test_durations.json").write_text(json.dumps({"cells": recorded}))
    matrix = config.load(ws / "matrix.yaml", ws)
    (suite,) = matrix.suites
    assert suite.durations_file == "s/test_durations.json"
    assert suite.recorded == recorded
    cells = {c.target_name: c for c in matrix.cells()}
    assert {name: c.targets[0].shard_count for name, c in cells.items()} == {"s_base_cpu": 3, "s_base_cuda": 3, "s_other_cpu": 1, "s_other_cuda": 1}
    assert cells["s_base_cuda"].recorded_durations == recorded["base/cpu"]  # never ran on a GPU: planned from cpu
    assert cells["s_other_cuda"].recorded_durations == recorded["other/cuda"]

    recorded["other/cuda"]["test_b.py::test_x"] = 51.0  # 1.51 -> 2
    (ws / "s" / "test_durations.json").write_text(json.dumps({"cells": recorded}))
    assert {c.target_name: c.targets[0].shard_count for c in config.load(ws / "matrix.yaml", ws).cells()}["s_other_cuda"] == 2


def test_durations_file_is_read_only_with_shard_seconds(tmp_path):
    ws = make_workspace(tmp_path, VALID.replace("    devices: [cpu, cuda]\n", "    devices: [cpu, cuda]\n    shards: {cuda: 2}\n"))
    (ws / "s" / "test_durations.json").write_text("not json, and nobody reads it")
    matrix = config.load(ws / "matrix.yaml", ws)
    assert matrix.suites[0].shard_seconds is None and matrix.suites[0].recorded == {}
    assert {c.target_name: c.targets[0].shard_count for c in matrix.cells()} == {"s_base_cpu": 1, "s_base_cuda": 2, "s_other_cpu": 1, "s_other_cuda": 2}


def test_directory_is_normalized(tmp_path):
    ws = make_workspace(tmp_path, VALID.replace("  s:\n", "  s:\n    directory: ./sub/../s/\n"))
    matrix = config.load(ws / "matrix.yaml", ws)
    assert matrix.suites[0].directory == "s"
    assert matrix.cells()[0].label == "//s:s_base_cpu"
    assert matrix.suites[0].test_files == ("s/test_a.py",)


def test_expectations_merge_per_device(tmp_path):
    ws = make_workspace(
        tmp_path,
        VALID.replace(
            "expectations: {}\n",
            "expectations:\n"
            "  s:\n"
            "    base:\n"
            "      xfail:\n"
            "        test_a.py::test_x: broken everywhere\n"
            "      devices:\n"
            "        cuda:\n"
            "          xfail:\n"
            "            test_b.py: broken on cuda\n"
            "          skip:\n"
            "            test_a.py::test_y: too slow\n",
        ),
        files=("s/test_a.py", "s/test_b.py"),
    )
    matrix = config.load(ws / "matrix.yaml", ws)
    exp = {(c.variant.name, c.device.name): c.expectations for c in matrix.cells()}
    assert exp["base", "cpu"] == config.Expectations(xfail=(("test_a.py::test_x", "broken everywhere"),))
    assert exp["base", "cuda"] == config.Expectations(
        xfail=(("test_a.py::test_x", "broken everywhere"), ("test_b.py", "broken on cuda")), skip=(("test_a.py::test_y", "too slow"),)
    )
    assert exp["other", "cpu"] == exp["other", "cuda"] == config.Expectations()


def test_unreadable_file(tmp_path):
    with pytest.raises(config.MatrixError) as info:
        config.load(tmp_path / "matrix.yaml", tmp_path)
    assert info.value.problems == ["matrix.yaml: cannot read: No such file or directory"]


# --- bad inputs ------------------------------------------------------------------------------------

SUITE_HEAD = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: true
variants:
  base:
    impl: pkg.mod:Base
    description: plain
  other:
    impl: pkg.mod:Other
    description: other
suites:
  s:
"""  # lines 1-13; the suite's keys start on line 14

BAD = [
    (
        "unknown top-level key",
        VALID + "expectation: {}\n",
        ["matrix.yaml:17:1: unknown top-level key 'expectation': did you mean 'expectations'? valid: devices, expectations, history, suites, variants"],
    ),
    (
        "unknown nested key in a suite",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shard: 2\n",
        ["matrix.yaml:16:5: unknown key 'shard' in suites.s: did you mean 'shards'? valid: data, default_device, devices, directory, env, expectations_file, flaky_attempts, granularity, manual, pytest_args, shard_seconds, shards, size, tags, test_timeout_s, tests, transform_check, variants"],
    ),
    (
        "unknown nested key in a device",
        VALID.replace("    requires_gpu: true", "    requires_gpus: true"),
        ["matrix.yaml:4:5: unknown key 'requires_gpus' in devices.cuda: did you mean 'requires_gpu'? valid: env, exec_properties, requires_gpu, tags"],
    ),
    (
        "unknown nested key in expectations",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfails:\n        test_a.py: broken\n"),
        ["matrix.yaml:19:7: unknown key 'xfails' in expectations.s.base: did you mean 'xfail'? valid: devices, skip, xfail"],
    ),
    (
        "unknown variant in a suite",
        SUITE_HEAD + "    variants: [base, bsae]\n    devices: [cpu]\n",
        ["matrix.yaml:14:22: unknown variant 'bsae': did you mean 'base'? valid: base, other"],
    ),
    (
        "unknown device in a suite",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu, cdua]\n",
        ["matrix.yaml:15:20: unknown device 'cdua': did you mean 'cuda'? valid: cpu, cuda"],
    ),
    (
        "test file glob matching nothing",
        SUITE_HEAD + "    tests: ['check_*.py']\n    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:5: no test file matches ['check_*.py'] in s/"],
    ),
    (
        "default test glob matching nothing",
        SUITE_HEAD.replace("  s:\n", "  empty:\n") + "    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:13:3: no test file matches ['test_*.py'] in empty/"],
    ),
    (
        "suite directory missing",
        SUITE_HEAD + "    directory: nowhere\n    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:5: directory 'nowhere' does not exist"],
    ),
    (
        "xfail entry naming a test file that does not exist",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_b.py::test_x: broken\n"),
        ["matrix.yaml:20:9: test file 'test_b.py' of 'test_b.py::test_x' is not a test file of suite 's': did you mean 'test_a.py'? valid: test_a.py"],
    ),
    (
        "skip entry naming a test file that does not exist (device-specific)",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    other:\n      devices:\n        cuda:\n          skip:\n            nope.py: slow\n"),
        ["matrix.yaml:22:13: test file 'nope.py' of 'nope.py' is not a test file of suite 's': valid: test_a.py"],
    ),
    (
        "duplicate variant name",
        VALID.replace("suites:\n", "  base:\n    impl: pkg.mod:Base2\n    description: again\nsuites:\n"),
        ["matrix.yaml:12:3: duplicate key 'base' in variants"],
    ),
    (
        "duplicate xfail entry",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_a.py::test_x: broken\n        test_a.py::test_x: broken again\n"),
        ["matrix.yaml:21:9: duplicate key 'test_a.py::test_x' in expectations.s.base.xfail"],
    ),
    (
        "variant listed twice in a suite",
        SUITE_HEAD + "    variants: [base, other, base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:29: suites.s.variants: 'base' is listed twice"],
    ),
    (
        "shards and shard_seconds together",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shards: 2\n    shard_seconds: 30\n",
        ["matrix.yaml:17:5: give either shards (fixed counts) or shard_seconds (counts planned from recorded durations), not both"],
    ),
    ("shard_seconds 0", SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shard_seconds: 0\n", ["matrix.yaml:16:5: suites.s.shard_seconds: 0 is less than or equal to the minimum of 0"]),
    (
        "negative shard_seconds",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shard_seconds: -30\n",
        ["matrix.yaml:16:5: suites.s.shard_seconds: -30 is less than or equal to the minimum of 0"],
    ),
    (
        "shard_seconds not a number",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shard_seconds: 2m\n",
        ["matrix.yaml:16:5: suites.s.shard_seconds: must be a number, got '2m'"],
    ),
    ("shard count 0", SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shards: 0\n", ["matrix.yaml:16:5: suites.s.shards: shard count 0 is outside 1..50"]),
    ("shard count 51", SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shards: 51\n", ["matrix.yaml:16:5: suites.s.shards: shard count 51 is outside 1..50"]),
    (
        "non-integer shard count",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shards: two\n",
        ["matrix.yaml:16:5: suites.s.shards: shards must be an integer 1..50 or a mapping device -> integer 1..50, got 'two'"],
    ),
    (
        "fractional shard count",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shards: 2.5\n",
        ["matrix.yaml:16:5: suites.s.shards: shards must be an integer 1..50 or a mapping device -> integer 1..50, got 2.5"],
    ),
    (
        "bad counts in a per-device shard mapping",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu, cuda]\n    shards:\n      cpu: 0\n      cuda: many\n",
        [
            "matrix.yaml:17:7: suites.s.shards.cpu: shard count 0 is outside 1..50",
            "matrix.yaml:18:7: suites.s.shards.cuda: shard count must be an integer 1..50, got 'many'",
        ],
    ),
    (
        "per-device shards for a device the suite does not run on",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shards:\n      cpu: 2\n      cuda: 4\n",
        ["matrix.yaml:18:7: shards for device 'cuda' which the suite does not run on: valid: cpu"],
    ),
    (
        "directory leaving the workspace",
        SUITE_HEAD + "    directory: ../x\n    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:5: directory '../x' leaves the workspace; use a path inside it"],
    ),
    (
        "directory leaving the workspace after normalization",
        SUITE_HEAD + "    directory: s/../../s\n    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:5: directory 's/../../s' leaves the workspace; use a path inside it"],
    ),
    (
        "absolute directory",
        SUITE_HEAD + "    directory: /elsewhere/s\n    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:5: directory '/elsewhere/s' leaves the workspace; use a path inside it"],
    ),
    (
        "the workspace root as directory",
        SUITE_HEAD + "    directory: ./\n    variants: [base]\n    devices: [cpu]\n",
        ["matrix.yaml:14:5: directory './' is the workspace root; give the suite its own directory (its BUILD.bazel is generated)"],
    ),
    (
        "two suites sharing a directory",
        SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n  t:\n    directory: s/\n    variants: [other]\n    devices: [cpu]\n",
        ["matrix.yaml:17:5: directory 's' is already the directory of suite 's'; each suite needs its own (its BUILD.bazel is generated)"],
    ),
    (
        "variants as a string instead of a list",
        SUITE_HEAD + '    variants: "base"\n    devices: [cpu]\n',
        ["matrix.yaml:14:5: suites.s.variants: must be a list, got 'base'"],
    ),
    (
        "requires_gpu not a boolean",
        VALID.replace("requires_gpu: true", "requires_gpu: sometimes"),
        ["matrix.yaml:4:5: devices.cuda.requires_gpu: must be true or false, got 'sometimes'"],
    ),
    (
        "empty reason",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_a.py::test_x: ''\n"),
        ["matrix.yaml:20:9: expectations.s.base.xfail: the reason of 'test_a.py::test_x' is empty; say why (the error you saw)"],
    ),
    (
        "whitespace-only reason",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      skip:\n        test_a.py: '   '\n"),
        ["matrix.yaml:20:9: expectations.s.base.skip: the reason of 'test_a.py' is empty; say why (the error you saw)"],
    ),
    (
        "missing reason",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_a.py::test_x:\n"),
        ["matrix.yaml:20:9: expectations.s.base.xfail: the reason of 'test_a.py::test_x' is empty; say why (the error you saw)"],
    ),
    (
        "entry that is not a test node id",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_a::test_x: broken\n"),
        ["matrix.yaml:20:9: expectations.s.base.xfail: 'test_a::test_x' is not a test: use a test file path relative to the suite directory (ending in .py), optionally followed by ::Class::test"],
    ),
    (
        "invalid impl format",
        VALID.replace("impl: pkg.mod:Other", "impl: pkg.mod.Other"),
        ["matrix.yaml:10:5: variants.other.impl: 'pkg.mod.Other' is not of the form package.module:ClassName"],
    ),
    (
        "missing required key",
        VALID.replace("    description: other\n", ""),
        ["matrix.yaml:9:3: variants.other: 'description' is a required property"],
    ),
    (
        "invalid name",
        VALID.replace("  cpu: {}", "  CPU: {}").replace("[cpu, cuda]", "[CPU, cuda]"),
        ["matrix.yaml:2:3: devices: 'CPU' is not a valid name: use lowercase letters, digits and _, starting with a letter"],
    ),
    (
        "entry both xfail and skip",
        VALID.replace("expectations: {}\n", "expectations:\n  s:\n    base:\n      xfail:\n        test_a.py::test_x: broken\n      skip:\n        test_a.py::test_x: slow\n"),
        ["matrix.yaml:22:9: 'test_a.py::test_x' is both xfail and skip; keep one"],
    ),
    (
        "entry xfail for the variant and skip on one device",
        VALID.replace(
            "expectations: {}\n",
            "expectations:\n  s:\n    base:\n      xfail:\n        test_a.py::test_x: broken\n      devices:\n        cuda:\n          skip:\n            test_a.py::test_x: slow\n",
        ),
        ["matrix.yaml:24:13: 'test_a.py::test_x' is both xfail and skip on device 'cuda'; keep one"],
    ),
    (
        "expectations for an unknown suite, a variant the suite does not run, a device it does not run on",
        VALID.replace(
            "expectations: {}\n",
            "expectations:\n  t:\n    base: {}\n  s:\n    bsae: {}\n    other:\n      devices:\n        tpu: {}\n",
        ),
        [
            "matrix.yaml:17:3: unknown suite 't': valid: s",
            "matrix.yaml:20:5: variant 'bsae' is not run by suite 's': did you mean 'base'? valid: base, other",
            "matrix.yaml:23:9: device 'tpu' is not run by suite 's': did you mean 'cpu'? valid: cpu, cuda",
        ],
    ),
    (
        "invalid YAML syntax",
        VALID.replace("description: other", 'description: "other'),
        ["matrix.yaml:17:1: invalid YAML: found unexpected end of stream (while scanning a quoted scalar started at 11:18)"],
    ),
    ("empty document", "", ["matrix.yaml:1:1: the file is empty; it must be a mapping with keys devices, variants, suites, expectations"]),
    ("a list, not a mapping", "- devices\n", ["matrix.yaml:1:1: the document must be a mapping with keys devices, variants, suites, expectations"]),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD])
def test_bad_input(tmp_path, text, expected):
    assert problems_of(tmp_path, text) == expected


def test_invalid_yaml_points_at_the_problem(tmp_path):
    (problem,) = problems_of(tmp_path, VALID.replace("devices: [cpu, cuda]", "devices: [cpu, cuda\n"))
    # The wording differs between libyaml and the pure-Python parser; the positions do not.
    assert problem.startswith("matrix.yaml:17:13: invalid YAML: ")
    assert problem.endswith(" (while parsing a flow sequence started at 15:14)")


MANY = """\
devices:
  cpu: {}
  cuda:
    requires_gpu: yes please
variants:
  base:
    impl: pkg.mod:Base
    description: plain
  other:
    impl: pkg.mod.Other
    description: other
suites:
  s:
    variants: [base, othr]
    devices: [cpu, cuda]
    shards: {cpu: 2, tpu: 3}
  t:
    directory: s
    variants: [base]
    devices: [cpu]
    shards: 0
  u:
    directory: ../u
    variants: [base]
    devices: [cpu]
bogus: 1
expectations:
  s:
    base:
      xfail:
        test_a.py::test_x: ' '
        test_nope.py::test_y: broken
"""
MANY_PROBLEMS = [
    "matrix.yaml:4:5: devices.cuda.requires_gpu: must be true or false, got 'yes please'",
    "matrix.yaml:10:5: variants.other.impl: 'pkg.mod.Other' is not of the form package.module:ClassName",
    "matrix.yaml:14:22: unknown variant 'othr': did you mean 'other'? valid: base, other",
    "matrix.yaml:16:22: shards for device 'tpu' which the suite does not run on: did you mean 'cpu'? valid: cpu, cuda",
    "matrix.yaml:21:5: suites.t.shards: shard count 0 is outside 1..50",
    "matrix.yaml:23:5: directory '../u' leaves the workspace; use a path inside it",
    "matrix.yaml:26:1: unknown top-level key 'bogus': valid: devices, expectations, history, suites, variants",
    "matrix.yaml:31:9: expectations.s.base.xfail: the reason of 'test_a.py::test_x' is empty; say why (the error you saw)",
    "matrix.yaml:32:9: test file 'test_nope.py' of 'test_nope.py::test_y' is not a test file of suite 's': did you mean 'test_a.py'? valid: test_a.py",
]


def test_every_problem_is_reported_at_once_in_line_order(tmp_path):
    """Schema problems and cross-reference/file-system problems together, sorted by position."""
    assert problems_of(tmp_path, MANY) == MANY_PROBLEMS


def test_cli_reports_problems_and_exits_2_without_traceback(tmp_path):
    ws = make_workspace(tmp_path, MANY)
    out = run_cli(ws, "list")
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.splitlines() == [*MANY_PROBLEMS, f"error: {len(MANY_PROBLEMS)} problem(s) in matrix.yaml; fix them and run the command again"]
    assert "Traceback" not in out.stderr


def test_cli_invalid_yaml_exits_2(tmp_path):
    ws = make_workspace(tmp_path, "devices: [\n")
    out = run_cli(ws, "generate", "--check")
    assert out.returncode == 2
    assert out.stderr.startswith("matrix.yaml:2:1: invalid YAML: ")
    assert "Traceback" not in out.stderr


# --- recorded durations (shard_seconds) -----------------------------------------------------------

DURATIONS_HEAD = SUITE_HEAD + "    variants: [base]\n    devices: [cpu]\n    shard_seconds: 30\n"  # shard_seconds on line 16
REGENERATE = "regenerate it with `bazel run //tools:matrix -- durations`"
BAD_DURATIONS = [
    (
        "invalid JSON",
        '{"cells": {\n  "base/cpu": {"test_a.py::test_x": 1.0\n}',
        [f"matrix.yaml:16:5: s/test_durations.json:3:2: invalid JSON: Expecting ',' delimiter; {REGENERATE}"],
    ),
    ("empty file", "", [f"matrix.yaml:16:5: s/test_durations.json:1:1: invalid JSON: Expecting value; {REGENERATE}"]),
    (
        "cells not a mapping",
        '{"cells": []}',
        [f'matrix.yaml:16:5: s/test_durations.json: expected {{"cells": {{"variant/device": {{"test id": seconds}}}}}}; {REGENERATE}'],
    ),
    (
        "negative seconds",
        '{"cells": {"base/cpu": {"test_a.py::test_x": -1}}}',
        [f'matrix.yaml:16:5: s/test_durations.json: expected {{"cells": {{"variant/device": {{"test id": seconds}}}}}}; {REGENERATE}'],
    ),
    (
        "infinite seconds",
        '{"cells": {"base/cpu": {"test_a.py::test_x": Infinity}}}',
        [f'matrix.yaml:16:5: s/test_durations.json: expected {{"cells": {{"variant/device": {{"test id": seconds}}}}}}; {REGENERATE}'],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD_DURATIONS])
def test_malformed_durations_file_is_a_matrix_problem(tmp_path, text, expected):
    ws = make_workspace(tmp_path, DURATIONS_HEAD)
    (ws / "s" / "test_durations.json").write_text(text)
    matrix = config.load(ws / "matrix.yaml", ws)
    assert list(matrix.plan_problems) == expected  # an error for every command but `durations` (cli.load_matrix)
    # `durations`, which rewrites the file, reads it as nothing recorded.
    (suite,) = matrix.suites
    assert suite.recorded == {} and suite.durations_problem == expected[0].split(": ", 1)[1]
    assert [c.targets[0].shard_count for c in matrix.cells()] == [1]


def test_malformed_durations_file_is_listed_with_the_other_problems_in_file_order(tmp_path):
    ws = make_workspace(tmp_path, DURATIONS_HEAD.replace("    devices: [cpu]\n", "    devices: [cpu, nope]\n"))
    (ws / "s" / "test_durations.json").write_text("")
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert info.value.problems == ["matrix.yaml:15:20: unknown device 'nope': valid: cpu, cuda", f"matrix.yaml:16:5: s/test_durations.json:1:1: invalid JSON: Expecting value; {REGENERATE}"]


def test_cli_malformed_durations_file_exits_2_without_traceback(tmp_path):
    ws = make_workspace(tmp_path, DURATIONS_HEAD)
    (ws / "s" / "test_durations.json").write_bytes(b"\xff\xfe{}")
    out = run_cli(ws, "generate")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"matrix.yaml:16:5: s/test_durations.json: not UTF-8 text (invalid start byte at byte 0); {REGENERATE}",
        "error: 1 problem(s) in matrix.yaml; fix them and run the command again",
    ]
    assert not (ws / "BUILD.bazel").exists()


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path):
    ws = make_workspace(tmp_path, VALID + "# " + "x" * config.MAX_BYTES + "\n")
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert info.value.problems == [f"matrix.yaml:1:1: the file is {config.MAX_BYTES + len(VALID) + 3} bytes; matrix.yaml may have at most {config.MAX_BYTES} (1 MiB)"]


# --- variant libraries (variant_library.py) and granularity ------------------------------------------

PLUGIN_HEAD = """\
devices:
  cpu: {}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: plain
  mine:
    impl: %s
    description: mine
%ssuites:
  s:
    variants: [base, mine]
    devices: [cpu]
"""  # the plug-in variant's impl is on line 8, its `library` (when given) on line 10
PLUGIN = "from tools.matrix.variants import Variant\n\n\nclass Mine(Variant):\n    entry_points = ()\n"
SUITE_FILE = {"s/test_a.py": "def test_x():\n    pass\n"}


def plugin_workspace(tmp_path: Path, impl: str, library: str | None, files: dict[str, str]) -> Path:
    ws = tmp_path / "ws"
    for name, text in {**SUITE_FILE, **files}.items():
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(text)
    (ws / "matrix.yaml").write_text(PLUGIN_HEAD % (impl, f"    library: {library}\n" if library is not None else ""))
    return ws


BAD_LIBRARIES = [
    (
        "plug-in module in a directory with a BUILD file, no library",
        "proj.variants:Mine", None, {"proj/variants.py": PLUGIN, "proj/BUILD.bazel": ""},
        ["matrix.yaml:8:5: variants.mine.impl: module proj/variants.py is in Bazel package //proj: name the py_library that provides it, "
         "`library: //proj:<target>`, or move the module out of that package"],
    ),
    (
        "plug-in module in a nested directory below a BUILD file",
        "proj.sub.variants:Mine", None, {"proj/sub/variants.py": PLUGIN, "proj/BUILD": ""},
        ["matrix.yaml:8:5: variants.mine.impl: module proj/sub/variants.py is in Bazel package //proj: name the py_library that provides it, "
         "`library: //proj:<target>`, or move the module out of that package"],
    ),
    (
        "plug-in module in a suite's directory",
        "s.variants:Mine", None, {"s/variants.py": PLUGIN},
        ["matrix.yaml:8:5: variants.mine.impl: module s/variants.py is in suite directory s, whose BUILD.bazel generate writes: move the module out of it"],
    ),
    (
        "library that is not a label",
        "proj.variants:Mine", "proj:lib", {"proj/variants.py": PLUGIN},
        ["matrix.yaml:10:5: variants.mine.library: 'proj:lib' is not a label of this workspace: use //package:target"],
    ),
    (
        "library of an external repository",
        "proj.variants:Mine", "'@other//proj:lib'", {"proj/variants.py": PLUGIN},
        ["matrix.yaml:10:5: variants.mine.library: '@other//proj:lib' is not a label of this workspace: use //package:target"],
    ),
    (
        "library in a package that does not exist",
        "proj.variants:Mine", "//nope:x", {"proj/variants.py": PLUGIN},
        ["matrix.yaml:10:5: variants.mine.library: '//nope:x': there is no package //nope (no nope/BUILD.bazel or nope/BUILD)"],
    ),
    (
        "library whose package does not own the module",
        "proj.variants:Mine", "//other:lib", {"proj/variants.py": PLUGIN, "proj/BUILD.bazel": "", "other/BUILD.bazel": ""},
        ["matrix.yaml:10:5: variants.mine.library: '//other:lib' cannot provide 'proj.variants': its file proj/variants.py is in package //proj, not //other"],
    ),
    (
        "library for a module in no package but the root",
        "proj.variants:Mine", "//other:lib", {"proj/variants.py": PLUGIN, "other/BUILD.bazel": ""},
        ["matrix.yaml:10:5: variants.mine.library: '//other:lib' cannot provide 'proj.variants': its file proj/variants.py is in package //, not //other"],
    ),
    (
        "library in the root package",
        "proj.variants:Mine", "//:x", {"proj/variants.py": PLUGIN},
        ["matrix.yaml:10:5: variants.mine.library: '//:x' is in the root package, whose BUILD.bazel generate writes: leave `library` out to have "
         "generate write the library, or put yours in a package of its own"],
    ),
    (
        "library in a suite's package",
        "proj.variants:Mine", "//s:lib", {"proj/variants.py": PLUGIN},
        ["matrix.yaml:10:5: variants.mine.library: '//s:lib' is in a suite's package, whose BUILD.bazel generate writes: put the library in a package of its own"],
    ),
    (
        "generated library named like the root test_suite of a variant",
        "variant_base.variants:Mine", None, {"variant_base/variants.py": PLUGIN},
        ["matrix.yaml:8:5: the library generate writes for 'variant_base.variants:Mine', //:variant_base, would have the name of the test suite of "
         "variant 'base'; rename the module's directory or give the variant a `library`"],
    ),
    (
        "generated library of a top-level module named like the root test_suite of a suite",
        "suite_s:Mine", None, {"suite_s.py": PLUGIN},
        ["matrix.yaml:8:5: the library generate writes for 'suite_s:Mine', //:suite_s, would have the name of the test suite of suite 's'; "
         "rename the module's directory or give the variant a `library`"],
    ),
    (
        "generated library named like the generated-files check",
        "generated_files_test:Mine", None, {"generated_files_test.py": PLUGIN},
        ["matrix.yaml:8:5: the library generate writes for 'generated_files_test:Mine', //:generated_files_test, would have the name of "
         "the generated-files check; rename the module's directory or give the variant a `library`"],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("impl", "library", "files", "expected"), [pytest.param(*case[1:], id=case[0]) for case in BAD_LIBRARIES])
def test_bad_variant_library(tmp_path, impl, library, files, expected):
    ws = plugin_workspace(tmp_path, impl, library, files)
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert info.value.problems == expected


def test_two_plugin_directories_one_library_name_apart(tmp_path):
    """`proj.py` and `proj/x.py` would both be //:proj: the second variant is told."""
    ws = plugin_workspace(tmp_path, "proj:Mine", None, {"proj.py": PLUGIN, "proj_dir/x.py": ""})
    text = (ws / "matrix.yaml").read_text().replace("suites:\n", "  again:\n    impl: proj.x:Mine\n    description: again\nsuites:\n")
    (ws / "matrix.yaml").write_text(text)
    (ws / "proj").mkdir()
    (ws / "proj" / "x.py").write_text(PLUGIN)
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert info.value.problems == [
        "matrix.yaml:11:5: the library generate writes for 'proj.x:Mine', //:proj, would have the name of the library of variant 'mine'; "
        "rename the module's directory or give the variant a `library`"
    ]


def test_cli_refuses_a_bad_library_with_exit_2_and_writes_nothing(tmp_path):
    ws = plugin_workspace(tmp_path, "proj.variants:Mine", "//other:lib", {"proj/variants.py": PLUGIN, "proj/BUILD.bazel": "", "other/BUILD.bazel": ""})
    before = sorted(p.relative_to(ws) for p in ws.rglob("*"))
    out = run_cli(ws, "generate")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "matrix.yaml:10:5: variants.mine.library: '//other:lib' cannot provide 'proj.variants': its file proj/variants.py is in package //proj, not //other",
        "error: 1 problem(s) in matrix.yaml; fix them and run the command again",
    ]
    assert out.stdout == ""
    assert sorted(p.relative_to(ws) for p in ws.rglob("*")) == before  # no BUILD.bazel written anywhere


def test_variant_libraries(tmp_path):
    ws = plugin_workspace(tmp_path, "proj.variants:Mine", None, {"proj/variants.py": PLUGIN, "proj/sub/helpers.py": "from tools.matrix.variants.export import Retrace\n"})
    text = (ws / "matrix.yaml").read_text().replace(
        "suites:\n",
        "  top:\n    impl: my_variant:Mine\n    description: one file\n"
        "  declared:\n    impl: lib.variants:Mine\n    description: declared\n    library: //lib\n"
        "  exported:\n    impl: tools.matrix.variants.export:Retrace\n    description: built-in\n"
        "suites:\n",
    )
    (ws / "matrix.yaml").write_text(text)
    for name in ("my_variant.py", "lib/variants.py"):
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(PLUGIN)
    (ws / "lib" / "BUILD.bazel").write_text("")
    variants = {v.name: v for v in config.load(ws / "matrix.yaml", ws).variants}
    assert {n: (v.library, v.generated_library) for n, v in variants.items()} == {
        "base": ("//tools/matrix:variants_base", None),
        "mine": ("//:proj", variant_library.GeneratedLibrary("proj", "proj/**/*.py", ("//tools/matrix:runtime", "//tools/matrix:variants_export"))),
        "top": ("//:my_variant", variant_library.GeneratedLibrary("my_variant", "my_variant.py", ("//tools/matrix:runtime",))),
        "declared": ("//lib:lib", None),  # `//lib` as Bazel reads it
        "exported": ("//tools/matrix:variants_export", None),
    }


def test_in_runfiles_a_declared_library_is_taken_as_written(tmp_path):
    """//:generated_files_test's runfiles hold no BUILD file of the library's package."""
    ws = plugin_workspace(tmp_path, "proj.variants:Mine", "//proj:lib", {"proj/variants.py": PLUGIN})
    with pytest.raises(config.MatrixError) as info:
        config.load(ws / "matrix.yaml", ws)
    assert info.value.problems == ["matrix.yaml:10:5: variants.mine.library: '//proj:lib': there is no package //proj (no proj/BUILD.bazel or proj/BUILD)"]
    matrix = config.load(ws / "matrix.yaml", ws, packages_visible=False)
    assert [(v.name, v.library, v.generated_library) for v in matrix.variants] == [("base", "//tools/matrix:variants_base", None), ("mine", "//proj:lib", None)]


FILE_SUITE = SUITE_HEAD + "    variants: [base]\n    devices: [cpu, cuda]\n    granularity: file\n"  # granularity on line 16


def test_granularity_file_gives_one_target_per_test_file(tmp_path):
    suite = FILE_SUITE + "    shards: {cuda: 2}\n    tests: ['test_*.py', 'sub/test_*.py']\n"
    ws = make_workspace(tmp_path, suite, files=("s/test_a.py", "s/sub/test_b.py", "s/conftest.py"))
    matrix = config.load(ws / "matrix.yaml", ws)
    assert matrix.suites[0].granularity == "file"
    cpu, cuda = matrix.cells()
    assert [(t.name, t.label, t.test_files, t.shard_count) for t in cuda.targets] == [
        ("s_base_cuda/sub/test_b", "//s:s_base_cuda/sub/test_b", ("sub/test_b.py",), 2),
        ("s_base_cuda/test_a", "//s:s_base_cuda/test_a", ("test_a.py",), 2),
    ]
    assert cpu.label == "//s:s_base_cpu"  # the test_suite of the cell's targets
    assert [t.label for t in matrix.targets()] == ["//s:s_base_cpu/sub/test_b", "//s:s_base_cpu/test_a", "//s:s_base_cuda/sub/test_b", "//s:s_base_cuda/test_a"]
    assert cpu.target_of("sub/test_b.py::TestK::test_y[1]").label == "//s:s_base_cpu/sub/test_b"
    assert cpu.target_of("test_a.py").label == "//s:s_base_cpu/test_a"
    assert cpu.target_of("gone.py::test_z").label == "//s:s_base_cpu/sub/test_b"  # no such file: the cell's first target
    # The default: one target per cell, holding every file.
    (tmp_path / "cell").mkdir()
    ws = make_workspace(tmp_path / "cell", suite.replace("    granularity: file\n", ""), files=("s/test_a.py", "s/sub/test_b.py"))
    whole = config.load(ws / "matrix.yaml", ws).cells()[0]
    assert [(t.name, t.label, t.test_files) for t in whole.targets] == [("s_base_cpu", "//s:s_base_cpu", ("sub/test_b.py", "test_a.py"))]
    assert whole.target_of("test_a.py::test_x") is whole.targets[0]


def test_granularity_file_plans_shards_per_file_from_that_files_durations(tmp_path):
    ws = make_workspace(tmp_path, FILE_SUITE.replace("devices: [cpu, cuda]", "devices: [cpu]") + "    shard_seconds: 10\n", files=("s/test_a.py", "s/test_b.py"))
    recorded = {"base/cpu": {"test_a.py::test_x": 25.0, "test_a.py::test_y": 5.0, "test_b.py::test_x": 4.0}}
    (ws / "s" / "test_durations.json").write_text(json.dumps({"cells": recorded}))
    (cell,) = config.load(ws / "matrix.yaml", ws).cells()
    a, b = cell.targets
    assert (a.name, a.recorded_durations, a.shard_count) == ("s_base_cpu/test_a", {"test_a.py::test_x": 25.0, "test_a.py::test_y": 5.0}, 3)
    assert (b.name, b.recorded_durations, b.shard_count) == ("s_base_cpu/test_b", {"test_b.py::test_x": 4.0}, 1)


def test_granularity_file_refuses_a_file_beside_a_directory_of_its_name(tmp_path):
    problems = problems_of(tmp_path, FILE_SUITE + "    tests: ['test_a.py', 'test_a/test_b.py']\n", files=("s/test_a.py", "s/test_a/test_b.py"))
    assert problems == ["matrix.yaml:16:5: granularity file: s/test_a.py and s/test_a/test_b.py would give one target inside another's name; rename one"]


def test_granularity_must_be_cell_or_file(tmp_path):
    assert problems_of(tmp_path, FILE_SUITE.replace("granularity: file", "granularity: test")) == [
        "matrix.yaml:16:5: suites.s.granularity: 'test' is not one of ['cell', 'file']"
    ]
