"""The BUILD file generator: deterministic output, one matrix_cell per cell with the right
attributes, root test_suites, `check`, and the `generate [--check]` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import tools.matrix
from tools.matrix import config, generate, target_names
from tools.matrix.runtime import cell_config
from tools.matrix.tests.fixtures.toolws import run_cli as cli
from tools.matrix.tests.fixtures.toolws import write_workspace

TOOLS = Path(tools.matrix.__file__).absolute().parent
# defs.bzl is not a runfile of these tests; under Bazel the package's symlinks lead to the source tree.
DEFS = next((d / "defs.bzl" for d in (TOOLS, Path(tools.matrix.__file__).resolve().parent) if (d / "defs.bzl").is_file()), None)

MATRIX = r"""# A synthetic matrix for the generator's tests.
devices:
  cpu: {}
  cuda:
    requires_gpu: true
    tags: [gpu-exclusive]
    env: {CUDA_VISIBLE_DEVICES: "0"}
    exec_properties: {gpu: "1", container-image: "docker://worker:cuda"}
variants:
  base:
    impl: tools.matrix.variants.base:Base
    description: plain
  other:
    impl: pkg.mod:Other
    description: other
    applies_to: [torch.export.export]
suites:
  s:
    data: [conftest.py]
    variants: [base, other]
    devices: [cpu, cuda]
    shards: {cuda: 2}
    test_timeout_s: 60
    size: large
  t:
    directory: nested/t
    variants: [base]
    devices: [cpu]
    shards: 3
    test_timeout_s: 2.5
    default_device: true
    tags: [exclusive]
    pytest_args: ["-p", "no:logging"]
expectations:
  s:
    base:
      xfail:
        test_a.py::test_x: "broken: \"quoted\" \\ back $HOME é\ttab"
      devices:
        cuda:
          skip:
            test_b.py: needs two GPUs
"""
FILES = ("s/test_a.py", "s/test_b.py", "s/conftest.py", "nested/t/test_c.py")
ALL_CELLS = {"s_base_cpu", "s_base_cuda", "s_other_cpu", "s_other_cuda", "t_base_cpu"}


# The module of `impl: pkg.mod:Other`: generate checks that it defines a Variant subclass.
PKG_MOD = "from tools.matrix.variants import Variant\n\n\nclass Other(Variant):\n    entry_points = ()\n"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    write_workspace(tmp_path, MATRIX, FILES, "def test_x():\n    pass\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(PKG_MOD)
    return tmp_path


def load(ws: Path) -> config.Matrix:
    return config.load(ws / "matrix.yaml", ws)


def evaluate(text: str) -> list[tuple[str, dict]]:
    """Run a generated BUILD file as Python (it is plain Starlark) with recording stubs."""
    calls: list[tuple[str, dict]] = []

    def rule(kind):
        def record(*args, **kwargs):
            assert not args, f"{kind} called with positional arguments {args}"
            calls.append((kind, kwargs))

        return record

    def exports_files(files):
        calls.append(("exports_files", {"srcs": files}))

    env = {
        "load": lambda *labels: None,
        "glob": lambda include, exclude=(): ("glob", tuple(include), tuple(exclude)),
        **{k: rule(k) for k in ("package", "filegroup", "matrix_cell", "matrix_generated_files_test", "py_library", "py_test", "test_suite")},
        "exports_files": exports_files,
    }
    exec(compile(text, "BUILD.bazel", "exec"), env)  # noqa: S102 (our own generated file)
    return calls


def cells_of(text: str) -> dict[str, dict]:
    return {kw["name"]: kw for kind, kw in evaluate(text) if kind == "matrix_cell"}


def blocks_of(text: str) -> dict[str, str]:
    """The text of each matrix_cell(...) block, by target name."""
    blocks = re.findall(r"^matrix_cell\(\n.*?^\)\n", text, flags=re.MULTILINE | re.DOTALL)
    return {re.search(r'^    name = "([^"]+)",$', b, flags=re.MULTILINE).group(1): b for b in blocks}


def outside_cells(text: str) -> str:
    return re.sub(r"^matrix_cell\(\n.*?^\)\n", "", text, flags=re.MULTILINE | re.DOTALL)


# --- determinism and header ------------------------------------------------------------------------


def test_render_is_deterministic(ws):
    first = generate.render(load(ws))
    assert set(first) == {"BUILD.bazel", "s/BUILD.bazel", "nested/t/BUILD.bazel", "flaky_attempts.bazelrc"}
    assert generate.render(load(ws)) == first
    matrix = load(ws)
    assert generate.render(matrix) == generate.render(matrix)


def test_write_twice_writes_nothing_the_second_time(ws):
    matrix = load(ws)
    assert sorted(generate.write(matrix, ws)) == ["BUILD.bazel", "flaky_attempts.bazelrc", "nested/t/BUILD.bazel", "s/BUILD.bazel"]
    written = {p: (ws / p).read_bytes() for p in generate.render(matrix)}
    assert generate.write(load(ws), ws) == []
    assert {p: (ws / p).read_bytes() for p in written} == written
    assert written == {p: t.encode() for p, t in generate.render(matrix).items()}


def test_write_rewrites_only_the_stale_file(ws):
    matrix = load(ws)
    generate.write(matrix, ws)
    (ws / "nested/t/BUILD.bazel").write_text("# edited by hand\n")
    assert generate.write(matrix, ws) == ["nested/t/BUILD.bazel"]
    assert (ws / "nested/t/BUILD.bazel").read_text() == generate.render(matrix)["nested/t/BUILD.bazel"]


def test_header_says_generated_and_how_to_regenerate(ws):
    for path, text in generate.render(load(ws)).items():
        header = text.split("\n\n", 1)[0]
        assert header.startswith("# GENERATED FILE from matrix.yaml"), path
        assert "do not edit" in header
        assert f"Regenerate with `{generate.REGENERATE}`" in header
        assert generate.REGENERATE == "bazel run //tools:matrix -- generate"
        assert text.count("GENERATED FILE") == 1


# --- the cells: what each py_test gets, evaluated through the real defs.bzl ---------------------------


def _defs_bzl(made: list[tuple[str, dict]], package: list[str]) -> dict:
    """The real defs.bzl's functions, run as Python with a `native` that records (kind, kwargs)."""

    class Native:
        @staticmethod
        def package_name():
            return package[0]

        @staticmethod
        def py_test(**kwargs):
            made.append(("py_test", kwargs))

        @staticmethod
        def test_suite(**kwargs):
            made.append(("test_suite", kwargs))

    class Json:
        @staticmethod
        def encode(value):
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def fail(message):
        raise AssertionError(f"defs.bzl fail(): {message}")

    class Attr:  # attr.label(...) and the like: only declarations, at load time
        def __getattr__(self, name):
            return lambda **kwargs: (name, kwargs)

    def rule(implementation, attrs):
        return lambda **kwargs: made.append((f"rule:{implementation.__name__}", kwargs))

    env = {"native": Native, "json": Json, "fail": fail, "rule": rule, "attr": Attr()}
    exec(compile(DEFS.read_text(), "defs.bzl", "exec"), env)  # noqa: S102 (the repository's own defs.bzl)
    return env


def made_by_defs_bzl(rendered: dict[str, str]) -> dict[str, tuple[str, dict]]:
    """Label -> (kind, kwargs) of every py_test and test_suite the generated suite BUILD files make."""
    if DEFS is None:
        pytest.skip("defs.bzl is not reachable from here")
    out = {}
    for path, text in rendered.items():
        if "/" not in path:
            continue
        made: list[tuple[str, dict]] = []
        package = [path.rsplit("/", 1)[0]]
        defs = _defs_bzl(made, package)
        for cell in cells_of(text).values():
            defs["matrix_cell"](**cell)
        out.update({f"//{package[0]}:{kw['name']}": (kind, kw) for kind, kw in made})
    return out


def py_tests(ws: Path) -> dict[str, dict]:
    return {label: kw for label, (kind, kw) in made_by_defs_bzl(generate.render(load(ws))).items() if kind == "py_test"}


def spec_of(py_test: dict) -> cell_config.CellSpec:
    """The cell spec a py_test carries, as Bazel hands it to cell_main (`$$` is Bazel's escaped `$`)."""
    return cell_config.CellSpec.from_json(py_test["env"][cell_config.SPEC_ENV].replace("$$", "$"))


def test_every_target_carries_exactly_its_config_targets_spec(ws):
    """The one encoding: what a py_test gets is config.Target.spec(), for a matrix using every feature
    (durations, default_device, pytest_args, applies_to, requires_gpu, granularity: file, `$` in text)."""
    _shard_by_seconds(ws, RECORDED)
    _with_expectations(ws, "    shard_seconds: 10\n", "    shard_seconds: 10\n    granularity: file\n    pytest_args: [-W, error]\n")
    _with_expectations(ws, "    default_device: true\n", "    default_device: true\n    transform_check: {disabled: costs $5 a run}\n")
    made = py_tests(ws)
    targets = {t.label: t for t in load(ws).targets()}
    assert set(made) == set(targets)
    for label, target in targets.items():
        assert spec_of(made[label]) == target.spec(), label
        assert made[label]["shard_count"] == target.shard_count
        assert "args" not in made[label]  # args are split like a shell by Bazel: nothing travels there
    assert "$$5" in made["//nested/t:t_base_cpu"]["env"][cell_config.SPEC_ENV]  # Bazel expands `$`: escaped


def test_one_matrix_cell_per_suite_variant_device(ws):
    files = generate.render(load(ws))
    s, t = cells_of(files["s/BUILD.bazel"]), cells_of(files["nested/t/BUILD.bazel"])
    assert set(s) == {"s_base_cpu", "s_base_cuda", "s_other_cpu", "s_other_cuda"}
    assert set(t) == {"t_base_cpu"}
    assert files["s/BUILD.bazel"].count("matrix_cell(") == 4
    for name, cell in {**s, **t}.items():
        suite, variant, device = name.split("_")
        assert (cell["spec"]["suite"], cell["spec"]["variant"], cell["spec"]["device"]) == (suite, variant, device)
    assert s["s_base_cpu"]["spec"]["variant_impl"] == "tools.matrix.variants.base:Base"
    assert s["s_other_cpu"]["spec"]["variant_impl"] == "pkg.mod:Other"


def test_cell_tags(ws):
    made = py_tests(ws)
    assert made["//s:s_base_cpu"]["tags"] == ["suite:s", "variant:base", "device:cpu"]
    assert made["//s:s_other_cuda"]["tags"] == ["suite:s", "variant:other", "device:cuda", "requires-gpu", "gpu-exclusive"]
    assert made["//nested/t:t_base_cpu"]["tags"] == ["suite:t", "variant:base", "device:cpu", "exclusive"]
    for label, target in made.items():
        assert ("requires-gpu" in target["tags"]) == label.endswith("_cuda") == spec_of(target).requires_gpu


def test_the_device_table_reaches_each_target_and_gpu_cells_need_the_gpu_platform(ws):
    """A GPU device's targets are compatible only with `--config=gpu`'s platform, so `bazel test //...`
    skips them whatever --test_tag_filters a user gives (tools/matrix/drill/input_drill.py runs that
    through real Bazel); its exec_properties route them remotely."""
    for label, target in py_tests(ws).items():
        gpu = label.endswith("_cuda")
        assert target.get("target_compatible_with", []) == (["//tools/bazel:gpu"] if gpu else []), label
        assert target.get("exec_properties", {}) == ({"container-image": "docker://worker:cuda", "gpu": "1"} if gpu else {}), label


def test_cell_attributes(ws):
    made = py_tests(ws)
    s, t = made["//s:s_base_cpu"], made["//nested/t:t_base_cpu"]
    assert spec_of(s).test_files == ("test_a.py", "test_b.py") and spec_of(t).test_files == ("test_c.py",)
    assert s["data"] == ["test_a.py", "test_b.py", "conftest.py"] and t["data"] == ["test_c.py"]
    assert spec_of(s).applies_to == () and spec_of(made["//s:s_other_cpu"]).applies_to == ("torch.export.export",)
    assert [made[f"//s:{n}"]["shard_count"] for n in ("s_base_cpu", "s_base_cuda", "s_other_cpu", "s_other_cuda")] == [1, 2, 1, 2]
    assert t["shard_count"] == 3
    assert s["size"] == "large" and t["size"] == "medium"
    assert spec_of(s).test_timeout_s == 60 and spec_of(t).test_timeout_s == 2.5
    assert spec_of(t).default_device is True and spec_of(s).default_device is False
    assert spec_of(t).pytest_args == ("-p", "no:logging") and spec_of(s).pytest_args == ()
    assert made["//s:s_base_cuda"]["env"]["CUDA_VISIBLE_DEVICES"] == "0" and "CUDA_VISIBLE_DEVICES" not in s["env"]
    assert (s["srcs"], s["main"]) == (["//tools/matrix:runtime/cell_main.py"], "//tools/matrix:runtime/cell_main.py")


def test_expectations_are_rendered_into_the_target(ws):
    made = py_tests(ws)
    reason = 'broken: "quoted" \\ back $HOME é\ttab'
    assert spec_of(made["//s:s_base_cpu"]).xfail == {"test_a.py::test_x": reason}
    assert spec_of(made["//s:s_base_cpu"]).skip == {}
    assert spec_of(made["//s:s_base_cuda"]).xfail == {"test_a.py::test_x": reason}
    assert spec_of(made["//s:s_base_cuda"]).skip == {"test_b.py": "needs two GPUs"}
    assert (spec_of(made["//s:s_other_cpu"]).xfail, spec_of(made["//s:s_other_cuda"]).skip) == ({}, {})
    assert "$$HOME" in made["//s:s_base_cpu"]["env"][cell_config.SPEC_ENV]  # Bazel expands `$`: escaped


def _shard_by_seconds(ws: Path, recorded: dict[str, dict[str, float]] | None) -> None:
    """Suite s planned from recorded durations (10 s a shard) instead of `shards: {cuda: 2}`."""
    _with_expectations(ws, "    shards: {cuda: 2}\n", "    shard_seconds: 10\n")
    if recorded is not None:
        (ws / "s" / "test_durations.json").write_text(json.dumps({"cells": recorded}))


# base/cpu 30 s: 3 shards; base/cuda never ran: planned from base/cpu; other/cpu 4 s: 1 shard, other/cuda 16 s: 2.
RECORDED = {
    "base/cpu": {"test_a.py::test_x": 20.0, "test_b.py::test_x": 10.0},
    "other/cpu": {"test_a.py::test_x": 4.0},
    "other/cuda": {"test_a.py::test_x": 8.0, "test_b.py::test_x": 8.0},
}


def test_durations_only_on_cells_with_more_than_one_shard(ws):
    _shard_by_seconds(ws, RECORDED)
    made = py_tests(ws)
    s = {label: target for label, target in made.items() if label.startswith("//s:")}
    assert {label: target["shard_count"] for label, target in s.items()} == {"//s:s_base_cpu": 3, "//s:s_base_cuda": 3, "//s:s_other_cpu": 1, "//s:s_other_cuda": 2}
    assert {label: spec_of(target).durations_file for label, target in s.items()} == {
        "//s:s_base_cpu": "s/test_durations.json", "//s:s_base_cuda": "s/test_durations.json", "//s:s_other_cpu": "", "//s:s_other_cuda": "s/test_durations.json",
    }  # fmt: skip
    assert made["//s:s_base_cuda"]["data"] == ["test_a.py", "test_b.py", "conftest.py", "test_durations.json"]
    assert made["//s:s_other_cpu"]["data"] == ["test_a.py", "test_b.py", "conftest.py"]  # unsharded: refreshing durations reruns nothing
    t = made["//nested/t:t_base_cpu"]
    assert t["shard_count"] == 3 and spec_of(t).durations_file == ""  # fixed `shards`: nothing recorded is read
    assert "durations" not in generate.render(load(ws))["nested/t/BUILD.bazel"]


def test_without_recorded_durations_every_cell_has_one_shard_and_no_durations(ws):
    _shard_by_seconds(ws, None)
    s = {label: target for label, target in py_tests(ws).items() if label.startswith("//s:")}
    assert {label: (target["shard_count"], spec_of(target).durations_file) for label, target in s.items()} == dict.fromkeys(s, (1, ""))


def test_new_durations_change_only_the_cells_whose_shard_count_changes(ws):
    _shard_by_seconds(ws, RECORDED)
    before = generate.render(load(ws))
    (ws / "s" / "test_durations.json").write_text(json.dumps({"cells": {**RECORDED, "base/cpu": {"test_a.py::test_x": 25.0, "test_b.py::test_x": 9.0}}}))
    assert generate.render(load(ws)) == before  # 34 s is still 3 shards: the BUILD files stay as they are
    (ws / "s" / "test_durations.json").write_text(json.dumps({"cells": {**RECORDED, "other/cpu": {"test_a.py::test_x": 26.0}}}))
    after = generate.render(load(ws))
    assert changed_cells(before, after) == {"s_other_cpu"}
    target = py_tests(ws)["//s:s_other_cpu"]
    assert (target["shard_count"], spec_of(target).durations_file) == (3, "s/test_durations.json")


def test_transform_check_off_reaches_the_cells_spec(ws):
    """matrix.yaml `transform_check: {disabled: reason}` (a variant's wins over its suite's) reaches the
    cell's spec, which the runtime hands to the variant; cells without it get none."""
    text = MATRIX.replace("    applies_to: [torch.export.export]\n", "    applies_to: [torch.export.export]\n    transform_check: {disabled: compared by hand}\n")
    text = text.replace("    default_device: true\n", "    default_device: true\n    transform_check: {disabled: costs $5 a run}\n")
    (ws / "matrix.yaml").write_text(text)
    made = py_tests(ws)
    assert spec_of(made["//s:s_other_cpu"]).transform_check_off == "variants.other: compared by hand"
    assert spec_of(made["//nested/t:t_base_cpu"]).transform_check_off == "suites.t: costs $5 a run"
    assert spec_of(made["//s:s_base_cpu"]).transform_check_off == ""
    (ws / "matrix.yaml").write_text(MATRIX.replace("    default_device: true\n", "    default_device: true\n    transform_check: {disabled: ' '}\n"))
    with pytest.raises(config.MatrixError, match="transform_check"):
        load(ws)


# --- the root BUILD ----------------------------------------------------------------------------------


def test_root_test_suites_per_variant_device_and_suite(ws):
    calls = evaluate(generate.render(load(ws))["BUILD.bazel"])
    suites = {kw["name"]: kw["tests"] for kind, kw in calls if kind == "test_suite"}
    assert suites == {
        "all_cells": ["//nested/t:t_base_cpu", "//s:s_base_cpu", "//s:s_base_cuda", "//s:s_other_cpu", "//s:s_other_cuda"],
        "variant_base": ["//nested/t:t_base_cpu", "//s:s_base_cpu", "//s:s_base_cuda"],
        "variant_other": ["//s:s_other_cpu", "//s:s_other_cuda"],
        "device_cpu": ["//nested/t:t_base_cpu", "//s:s_base_cpu", "//s:s_other_cpu"],
        "device_cuda": ["//s:s_base_cuda", "//s:s_other_cuda"],
        "suite_s": ["//s:s_base_cpu", "//s:s_base_cuda", "//s:s_other_cpu", "//s:s_other_cuda"],
        "suite_t": ["//nested/t:t_base_cpu"],
    }
    (check,) = [kw for kind, kw in calls if kind == "matrix_generated_files_test"]
    assert check == {"name": target_names.CHECK_TARGET, "data": ["BUILD.bazel", "flaky_attempts.bazelrc", "matrix.yaml", "//nested/t:suite_files", "//s:suite_files", ":pkg"]}
    assert not [kind for kind, _ in calls if kind == "py_test"]  # every test target comes from defs.bzl
    assert ("exports_files", {"srcs": ["matrix.yaml", "requirements.txt", "BUILD.bazel", "flaky_attempts.bazelrc"]}) in calls


def test_suite_build_has_the_suite_files_filegroup(ws):
    calls = evaluate(generate.render(load(ws))["s/BUILD.bazel"])
    (group,) = [kw for kind, kw in calls if kind == "filegroup"]
    assert group["name"] == "suite_files"
    kind, include, exclude = group["srcs"]
    assert (kind, include) == ("glob", ("**",)) and "**/__pycache__/**" in exclude
    assert ("package", {"default_visibility": ["//visibility:public"]}) in calls


# --- check and stable diffs ---------------------------------------------------------------------------


def test_check_is_empty_when_current_and_a_diff_after_a_hand_edit(ws):
    matrix = load(ws)
    generate.write(matrix, ws)
    assert generate.check(matrix, ws) == ""
    path = ws / "s/BUILD.bazel"
    path.write_text(path.read_text().replace('        "s_base_cuda": 2,\n', '        "s_base_cuda": 7,\n', 1))
    diff = generate.check(matrix, ws)
    assert diff.startswith("--- a/s/BUILD.bazel\n+++ b/s/BUILD.bazel (generated)\n@@ ")
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("---", "+++"))]
    assert changed == ['-        "s_base_cuda": 7,', '+        "s_base_cuda": 2,']
    assert generate.check(matrix, ws) == diff  # check writes nothing
    assert '"s_base_cuda": 7' in path.read_text()


def test_check_reports_a_missing_file(ws):
    matrix = load(ws)
    generate.write(matrix, ws)
    (ws / "nested/t/BUILD.bazel").unlink()
    diff = generate.check(matrix, ws)
    assert diff.startswith("--- a/nested/t/BUILD.bazel\n+++ b/nested/t/BUILD.bazel (generated)\n")
    assert "a/s/BUILD.bazel" not in diff and "a/BUILD.bazel" not in diff


def _with_expectations(ws: Path, old: str, new: str) -> None:
    text = (ws / "matrix.yaml").read_text()
    assert text.count(old) == 1
    (ws / "matrix.yaml").write_text(text.replace(old, new))


def changed_cells(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    out = set()
    for path, text in before.items():
        b, a = blocks_of(text), blocks_of(after[path])
        assert b.keys() == a.keys()
        out |= {name for name, block in b.items() if block != a[name]}
        # Nothing outside the matrix_cell blocks changed either.
        assert outside_cells(text) == outside_cells(after[path])
    return out


def test_editing_one_variants_xfails_changes_only_its_cells(ws):
    before = generate.render(load(ws))
    assert set().union(*(blocks_of(t) for t in before.values())) == ALL_CELLS
    _with_expectations(ws, "expectations:\n", "expectations:\n  t: {}\n")  # noise: no change
    assert generate.render(load(ws)) == before
    _with_expectations(ws, "  s:\n    base:\n", "  s:\n    other:\n      xfail:\n        test_b.py::test_y: new failure\n    base:\n")
    after = generate.render(load(ws))
    assert changed_cells(before, after) == {"s_other_cpu", "s_other_cuda"}
    assert cells_of(after["s/BUILD.bazel"])["s_other_cpu"]["targets"]["s_other_cpu"]["xfail"] == {"test_b.py::test_y": "new failure"}


def test_editing_a_device_specific_entry_changes_only_that_cell(ws):
    before = generate.render(load(ws))
    _with_expectations(ws, "            test_b.py: needs two GPUs\n", "            test_b.py: needs two GPUs\n            test_a.py::test_z: flaky on cuda\n")
    after = generate.render(load(ws))
    assert changed_cells(before, after) == {"s_base_cuda"}
    assert cells_of(after["s/BUILD.bazel"])["s_base_cuda"]["targets"]["s_base_cuda"]["skip"] == {"test_a.py::test_z": "flaky on cuda", "test_b.py": "needs two GPUs"}


def test_editing_a_reason_changes_only_the_cells_it_applies_to(ws):
    before = generate.render(load(ws))
    _with_expectations(ws, "needs two GPUs", "needs 2 GPUs")
    assert changed_cells(before, generate.render(load(ws))) == {"s_base_cuda"}


# --- the command line --------------------------------------------------------------------------------


def test_cli_generate_and_check(ws):
    out = cli(ws, "generate")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("wrote 4 file(s): ")
    again = cli(ws, "generate")
    assert (again.returncode, again.stdout) == (0, "generated files already up to date\n")

    current = cli(ws, "generate", "--check")
    assert current.returncode == 0, current.stdout + current.stderr
    assert current.stdout == "generated files are up to date (4 files)\n"

    path = ws / "s/BUILD.bazel"
    edited = path.read_text().replace('    size = "large",\n', '    size = "small",\n', 1)
    path.write_text(edited)
    stale = cli(ws, "generate", "--check")
    assert stale.returncode == 1
    assert stale.stdout.startswith("--- a/s/BUILD.bazel\n+++ b/s/BUILD.bazel (generated)\n")
    assert '\n-    size = "small",\n+    size = "large",\n' in stale.stdout
    assert stale.stderr.strip() == f"error: generated BUILD files are stale; run `{generate.REGENERATE}`"
    assert path.read_text() == edited  # --check writes nothing
    assert "Traceback" not in stale.stderr


# --- what only generate checks: impl modules (read, never imported) and where it writes ----------


@pytest.mark.parametrize(
    "module",
    [
        "from tools.matrix.variants.export import Retrace\n\n\nclass Other(Retrace):\n    pass\n",  # a built-in variant's subclass
        "import tools.matrix.variants as v\n\n\nclass Mid(v.Variant):\n    pass\n\n\nclass Other(Mid):\n    pass\n",  # through a class of its module
    ],
)
def test_impl_may_derive_from_a_builtin_variant_or_a_local_subclass(ws, module):
    (ws / "pkg" / "mod.py").write_text(module)
    assert generate.check(load(ws), ws) != ""  # stale (nothing written yet), but accepted


def test_impl_is_checked_by_check_too_and_by_the_cli(ws):
    (ws / "pkg" / "mod.py").write_text("class Other:\n    pass\n")
    with pytest.raises(config.MatrixError) as info:
        generate.check(load(ws), ws)
    assert info.value.problems == [
        "matrix.yaml:14:5: variants.other.impl: 'pkg.mod:Other': class 'Other' is not a Variant subclass (its bases: none); derive it from tools.matrix.variants.Variant"
    ]
    out = cli(ws, "generate", "--check")
    assert (out.returncode, out.stderr.splitlines()[0]) == (2, info.value.problems[0])
    assert not (ws / "s" / "BUILD.bazel").exists()


def test_write_refuses_before_writing_any_file(ws, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "BUILD.bazel"
    outside.write_text("# someone else's\n")
    (ws / "nested" / "t" / "BUILD.bazel").symlink_to(outside)
    with pytest.raises(config.MatrixError) as info:
        generate.write(load(ws), ws)
    assert info.value.problems == [
        f"matrix.yaml:26:5: nested/t/BUILD.bazel resolves to {str(outside.resolve())!r}, outside the workspace; generate writes only inside it: replace the symlink with a real file"
    ]
    assert not (ws / "BUILD.bazel").exists() and not (ws / "s" / "BUILD.bazel").exists()
    assert outside.read_text() == "# someone else's\n"


# --- variant libraries: what the cells depend on, and the plug-in library generate writes ------------


def libraries_of(text: str) -> dict[str, dict]:
    return {kw["name"]: kw for kind, kw in evaluate(text) if kind == "py_library"}


def check_data(text: str) -> list[str]:
    (check,) = [kw for kind, kw in evaluate(text) if kind == "matrix_generated_files_test"]
    return check["data"]


def test_cells_depend_on_their_variants_library(ws):
    made = py_tests(ws)
    assert {label: target["deps"] for label, target in made.items()} == {
        "//s:s_base_cpu": ["//tools/matrix:runtime", "//tools/matrix:variants_base"],
        "//s:s_base_cuda": ["//tools/matrix:runtime", "//tools/matrix:variants_base"],
        "//nested/t:t_base_cpu": ["//tools/matrix:runtime", "//tools/matrix:variants_base"],
        "//s:s_other_cpu": ["//tools/matrix:runtime", "//:pkg"], "//s:s_other_cuda": ["//tools/matrix:runtime", "//:pkg"],
    }  # fmt: skip


def test_root_build_writes_the_library_of_a_plugin_directory(ws):
    """pkg/mod.py beside matrix.yaml, no BUILD file in pkg/: generate writes //:pkg with every .py of
    pkg/ and the built-in variant libraries any of them imports."""
    root = generate.render(load(ws))["BUILD.bazel"]
    assert libraries_of(root) == {"pkg": {"name": "pkg", "srcs": ("glob", ("pkg/**/*.py",), ()), "deps": ["//tools/matrix:runtime"], "visibility": ["//visibility:public"]}}
    assert "# The code of plug-in variant(s) other (matrix.yaml): a dependency of exactly their cells.\npy_library(\n" in root
    (ws / "pkg" / "sub").mkdir()
    (ws / "pkg" / "sub" / "helpers.py").write_text("from tools.matrix.variants.export import Retrace\nimport tools.matrix.variants.package\n")
    (ws / "pkg" / "broken.py").write_text("def (:\n")  # unparsable, and not the impl: not the generator's business
    assert libraries_of(generate.render(load(ws))["BUILD.bazel"])["pkg"]["deps"] == [
        "//tools/matrix:runtime", "//tools/matrix:variants_export", "//tools/matrix:variants_package",
    ]  # fmt: skip
    # The Variant API (tools.matrix.variants itself) is in the runtime: no library of its own.
    (ws / "pkg" / "sub" / "helpers.py").write_text("from tools.matrix.variants import Call, Variant\n")
    assert libraries_of(generate.render(load(ws))["BUILD.bazel"])["pkg"]["deps"] == ["//tools/matrix:runtime"]


def test_root_build_writes_the_library_of_a_single_module(ws):
    _with_expectations(ws, "impl: pkg.mod:Other", "impl: my_variant:Other")
    (ws / "my_variant.py").write_text(PKG_MOD.replace("from tools.matrix.variants import Variant", "from tools.matrix.variants.export import Retrace as Variant"))
    files = generate.render(load(ws))
    assert libraries_of(files["BUILD.bazel"]) == {
        "my_variant": {"name": "my_variant", "srcs": ["my_variant.py"], "deps": ["//tools/matrix:runtime", "//tools/matrix:variants_export"],
                       "visibility": ["//visibility:public"]}
    }
    assert cells_of(files["s/BUILD.bazel"])["s_other_cpu"]["library"] == "//:my_variant"
    assert check_data(files["BUILD.bazel"]) == ["BUILD.bazel", "flaky_attempts.bazelrc", "matrix.yaml", "//nested/t:suite_files", "//s:suite_files", ":my_variant"]


def test_a_declared_library_is_used_as_written_and_nothing_is_generated(ws):
    _with_expectations(ws, "    impl: pkg.mod:Other\n", "    impl: pkg.mod:Other\n    library: //pkg:variants\n")
    (ws / "pkg" / "BUILD.bazel").write_text("py_library(name = 'variants', srcs = ['mod.py'])\n")
    files = generate.render(load(ws))
    assert libraries_of(files["BUILD.bazel"]) == {}
    assert {cells_of(files["s/BUILD.bazel"])[n]["library"] for n in ("s_other_cpu", "s_other_cuda")} == {"//pkg:variants"}
    # The check target reads the plug-in's files from its runfiles: the declared library is in its data.
    assert check_data(files["BUILD.bazel"]) == ["BUILD.bazel", "flaky_attempts.bazelrc", "matrix.yaml", "//nested/t:suite_files", "//s:suite_files", "//pkg:variants"]


def test_two_variants_of_one_plugin_directory_share_its_library(ws):
    _with_expectations(ws, "suites:\n", "  third:\n    impl: pkg.other:Third\n    description: third\nsuites:\n")
    _with_expectations(ws, "    variants: [base, other]\n", "    variants: [base, other, third]\n")
    (ws / "pkg" / "other.py").write_text(PKG_MOD.replace("Other", "Third"))
    files = generate.render(load(ws))
    assert list(libraries_of(files["BUILD.bazel"])) == ["pkg"]
    assert "# The code of plug-in variant(s) other, third (matrix.yaml)" in files["BUILD.bazel"]
    assert cells_of(files["s/BUILD.bazel"])["s_third_cpu"]["library"] == "//:pkg"
    assert check_data(files["BUILD.bazel"]).count(":pkg") == 1


def test_editing_the_plugin_module_changes_no_generated_file(ws):
    """Its edits rerun its cells through Bazel's dependency on //:pkg, not through the BUILD text."""
    before = generate.render(load(ws))
    (ws / "pkg" / "mod.py").write_text(PKG_MOD + "\n# a new comment\n")
    (ws / "pkg" / "new_helper.py").write_text("X = 1\n")
    assert generate.render(load(ws)) == before


def test_cli_generate_check_in_runfiles_takes_a_declared_library_as_written(ws):
    """//:generated_files_test runs `generate --check --runfiles` in its runfiles, which hold the
    library's files but not its package's BUILD file."""
    assert cli(ws, "generate").returncode == 0
    undeclared = cli(ws, "generate", "--check", "--runfiles")  # the generated //:pkg: the same library there
    assert (undeclared.returncode, undeclared.stdout) == (0, "generated files are up to date (4 files)\n")
    _with_expectations(ws, "    impl: pkg.mod:Other\n", "    impl: pkg.mod:Other\n    library: //pkg:variants\n")
    (ws / "pkg" / "BUILD.bazel").write_text("py_library(name = 'variants', srcs = ['mod.py'])\n")
    assert cli(ws, "generate").returncode == 0
    (ws / "pkg" / "BUILD.bazel").unlink()
    assert cli(ws, "generate", "--check").returncode == 2
    current = cli(ws, "generate", "--check", "--runfiles")
    assert (current.returncode, current.stdout, current.stderr) == (0, "generated files are up to date (4 files)\n", "")


# --- granularity: file ----------------------------------------------------------------------------------


def _by_file(ws: Path) -> None:
    _with_expectations(ws, "    shards: {cuda: 2}\n", "    shards: {cuda: 2}\n    granularity: file\n")


def test_granularity_file_makes_one_target_per_file_with_its_own_shard_count(ws):
    _by_file(ws)
    made = py_tests(ws)
    assert set(made) == {f"//s:{cell}/{stem}" for cell in ALL_CELLS - {"t_base_cpu"} for stem in ("test_a", "test_b")} | {"//nested/t:t_base_cpu"}
    assert {label: target["shard_count"] for label, target in made.items() if label.startswith("//s:s_base")} == {
        "//s:s_base_cpu/test_a": 1, "//s:s_base_cpu/test_b": 1, "//s:s_base_cuda/test_a": 2, "//s:s_base_cuda/test_b": 2,
    }  # fmt: skip
    assert spec_of(made["//s:s_base_cpu/test_a"]).test_files == ("test_a.py",)
    assert spec_of(made["//s:s_base_cpu/test_a"]).sibling_files == ("test_b.py",)  # names only: no data, no cache key of theirs
    assert made["//s:s_base_cpu/test_a"]["data"] == ["test_a.py", "conftest.py"]
    t = made["//nested/t:t_base_cpu"]
    assert (spec_of(t).sibling_files, t["shard_count"]) == ((), 3)


def test_granularity_file_with_shard_seconds_shards_only_the_long_files(ws):
    _by_file(ws)
    # base/cpu: test_a.py 20 s (2 shards), test_b.py 10 s (1); other/cuda: test_a.py 8 s, test_b.py 8 s (1 each).
    _shard_by_seconds(ws, RECORDED)
    made = py_tests(ws)
    sharded = {label: (target["shard_count"], spec_of(target).durations_file) for label, target in made.items() if target["shard_count"] > 1}
    assert sharded == {
        "//s:s_base_cpu/test_a": (2, "s/test_durations.json"),
        "//s:s_base_cuda/test_a": (2, "s/test_durations.json"),  # never ran on a GPU: planned from cpu
        "//nested/t:t_base_cpu": (3, ""),
    }
    assert made["//s:s_base_cpu/test_a"]["data"] == ["test_a.py", "conftest.py", "test_durations.json"]
    assert made["//s:s_base_cpu/test_b"]["data"] == ["test_b.py", "conftest.py"]
    assert '        "s_base_cpu/test_a": 2,\n' in generate.render(load(ws))["s/BUILD.bazel"]  # an int, not a string


def test_granularity_file_root_test_suites_name_the_cells(ws):
    """`//:variant_base` holds the cell's test_suite, which holds its per-file targets."""
    _by_file(ws)
    before = generate.render(load(ws))
    calls = evaluate(before["BUILD.bazel"])
    suites = {kw["name"]: kw["tests"] for kind, kw in calls if kind == "test_suite"}
    assert suites["variant_other"] == ["//s:s_other_cpu", "//s:s_other_cuda"]
    assert suites["suite_s"] == ["//s:s_base_cpu", "//s:s_base_cuda", "//s:s_other_cpu", "//s:s_other_cuda"]


def test_defs_bzl_makes_a_test_suite_of_the_cells_name_holding_its_file_targets(ws):
    _by_file(ws)
    _with_expectations(ws, "            test_b.py: needs two GPUs\n", "            test_b.py: needs two GPUs\n            test_a.py::test_z: flaky\n")
    made = made_by_defs_bzl(generate.render(load(ws)))
    assert made["//s:s_base_cuda"] == ("test_suite", {"name": "s_base_cuda", "tests": [":s_base_cuda/test_a", ":s_base_cuda/test_b"], "tags": []})
    assert made["//nested/t:t_base_cpu"][0] == "py_test"  # one target: no test_suite
    a, b = (made[f"//s:s_base_cuda/{stem}"][1] for stem in ("test_a", "test_b"))
    # Each file's target holds only the expectations naming that file: editing one reruns only it.
    assert (spec_of(a).skip, spec_of(a).xfail) == ({"test_a.py::test_z": "flaky"}, {"test_a.py::test_x": 'broken: "quoted" \\ back $HOME é\ttab'})
    assert (spec_of(b).skip, spec_of(b).xfail) == ({"test_b.py": "needs two GPUs"}, {})


def test_defs_bzl_keeps_only_manual_on_the_cells_test_suite(ws):
    """A test_suite's tags filter the tests it holds: any tag but `manual` would drop them all."""
    _by_file(ws)
    rendered = generate.render(load(ws))
    rendered["s/BUILD.bazel"] = rendered["s/BUILD.bazel"].replace('"gpu-exclusive",\n', '"gpu-exclusive",\n        "manual",\n')
    made = made_by_defs_bzl(rendered)
    assert made["//s:s_other_cuda"][1]["tags"] == ["manual"]
    assert made["//s:s_other_cuda/test_a"][1]["tags"] == ["suite:s", "variant:other", "device:cuda", "requires-gpu", "gpu-exclusive", "manual"]


def test_granularity_file_editing_one_files_entry_changes_one_line_of_one_cell(ws):
    _by_file(ws)
    before = generate.render(load(ws))
    _with_expectations(ws, "            test_b.py: needs two GPUs\n", "            test_b.py: needs 2 GPUs\n")
    assert changed_cells(before, generate.render(load(ws))) == {"s_base_cuda"}


def test_flaky_attempts_reach_bazel_per_cell(ws):
    """matrix.yaml's flaky_attempts (suite or variant, the larger) become Bazel's --flaky_test_attempts
    for exactly that cell's targets, in the generated rc file .bazelrc imports (a py_test attribute can
    only say `flaky`, i.e. 3)."""
    text = (ws / "matrix.yaml").read_text()
    text = text.replace("    applies_to: [torch.export.export]\n", "    applies_to: [torch.export.export]\n    flaky_attempts: 4\n")
    text = text.replace("    test_timeout_s: 60\n", "    test_timeout_s: 60\n    flaky_attempts: 2\n")
    (ws / "matrix.yaml").write_text(text)
    rc = generate.render(load(ws))["flaky_attempts.bazelrc"]
    lines = [line for line in rc.splitlines() if not line.startswith("#")]
    assert lines == [
        "test --flaky_test_attempts=^//s:s_base_cpu(/.*)?$@2",
        "test --flaky_test_attempts=^//s:s_base_cuda(/.*)?$@2",
        "test --flaky_test_attempts=^//s:s_other_cpu(/.*)?$@4",
        "test --flaky_test_attempts=^//s:s_other_cuda(/.*)?$@4",
    ]
    pattern = re.compile(lines[0].split("=", 1)[1].rsplit("@", 1)[0])
    assert [bool(pattern.search(label)) for label in ("//s:s_base_cpu", "//s:s_base_cpu/test_a", "//s:s_base_cpu2", "//s:s_base_cuda")] == [True, True, False, False]


@pytest.mark.parametrize("value", [0, 11, "3", 1.5])
def test_flaky_attempts_out_of_range_is_refused_at_its_line(ws, value):
    text = (ws / "matrix.yaml").read_text().replace("    test_timeout_s: 60\n", f"    test_timeout_s: 60\n    flaky_attempts: {value!r}\n")
    (ws / "matrix.yaml").write_text(text)
    out = cli(ws, "generate")
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if "flaky_attempts" in text_line)
    assert out.returncode == 2 and f"matrix.yaml:{line}:" in out.stderr and "flaky_attempts" in out.stderr, out.stderr
