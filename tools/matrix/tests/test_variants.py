"""The variants (tools/matrix/variants) as the runtime installs them: each one, run as a matrix cell
on synthetic suites under fixtures/variants, must hand the test a really transformed object (the
suites assert the variant's own evidence, and none under base), through a name imported at module
top, through attribute lookup and from unittest.TestCase suites; transform failures are reported
apart from assertion failures and from the API's own errors; a user's variant works; a bad impl or
entry point fails the target with one clear message.
"""

from __future__ import annotations

import re
import sys
import types

import pytest
import yaml

from tools.matrix import statuses
from tools.matrix.runtime import install as install_mod
from tools.matrix.runtime.transform_host import TransformHost
from tools.matrix.tests.fixtures.cellrun import FIXTURES, REPO, Cell, pool_fixture, uses
from tools.matrix.variants import Call, Variant, VariantLoadError, VariantTransformError, load_variant_class

EXPORT, DYNAMO, IMPORTER = "torch.export.export", "torch._dynamo.export", "torch.package.PackageImporter"
EXPORT_FILE = "export/test_export_variants.py"
DYNAMO_FILE = "dynamo/test_dynamo_variants.py"
PACKAGE_FILE = "package/test_package_variants.py"
USER_FILE = "user/test_user_variant.py"

# name: (impl, entry point, suite file) -- as matrix.yaml declares them (checked below)
VARIANTS = {
    "run_decomp": ("tools.matrix.variants.export:RunDecomp", EXPORT, EXPORT_FILE),
    "strict": ("tools.matrix.variants.export:Strict", EXPORT, EXPORT_FILE),
    "cpp_serdes": ("tools.matrix.variants.export:CppSerdes", EXPORT, EXPORT_FILE),
    "retrace": ("tools.matrix.variants.export:Retrace", EXPORT, EXPORT_FILE),
    "package": ("tools.matrix.variants.export:Package", EXPORT, EXPORT_FILE),
    "serdes": ("tools.matrix.variants.export:Serdes", EXPORT, EXPORT_FILE),
    "dynamo_package": ("tools.matrix.variants.dynamo:DynamoPackage", DYNAMO, DYNAMO_FILE),
    "dynamo_reexport": ("tools.matrix.variants.dynamo:DynamoReexport", DYNAMO, DYNAMO_FILE),
    "from_directory": ("tools.matrix.variants.package:FromDirectory", IMPORTER, PACKAGE_FILE),
    "from_bytes": ("tools.matrix.variants.package:FromBytes", IMPORTER, PACKAGE_FILE),
}

# Every test of the variant suites, and the ones that call the entry point and check its evidence.
SUITE_TESTS = {
    EXPORT_FILE: ["test_name_imported_at_module_top", "test_attribute_lookup", "test_api_error_propagates",
                  "test_api_type_error_propagates", "test_base_installs_nothing",
                  "TestUnittestStyle::test_name_imported_at_module_top", "TestUnittestStyle::test_api_error_propagates"],
    DYNAMO_FILE: ["test_name_imported_at_module_top", "test_attribute_lookup", "test_api_error_propagates",
                  "TestUnittestStyle::test_name_imported_at_module_top"],
    PACKAGE_FILE: ["test_name_imported_at_module_top", "test_attribute_lookup", "test_reader_source",
                   "test_api_error_propagates", "test_api_error_on_corrupt_archive_propagates",
                   "TestUnittestStyle::test_name_imported_at_module_top"],
}  # fmt: skip
EVIDENCE_TESTS = ["test_name_imported_at_module_top", "test_attribute_lookup", "TestUnittestStyle::test_name_imported_at_module_top"]
BASE_ONLY = f"{EXPORT_FILE}::test_base_installs_nothing"
# The importer variants cannot re-read a PyTorchFileReader object: a transform failure, listed as such.
IMPORTER_XFAIL = {f"{PACKAGE_FILE}::test_reader_source": "the importer variants read paths and buffers, not reader objects"}

USER = {
    "test_tagged": (statuses.PASSED, False, None),
    "test_tagged_through_attribute_lookup": (statuses.PASSED, False, None),
    "TestTagged::test_tagged": (statuses.PASSED, False, None),
    "test_transform_raises_after_export": (statuses.FAILED, True, "VariantTransformError"),
    "test_transform_raises_before_export": (statuses.FAILED, True, "VariantTransformError"),
    "test_transform_failure_not_taken_for_the_api_error": (statuses.FAILED, True, "VariantTransformError"),
    "test_assertion_fails": (statuses.FAILED, False, "AssertionError"),
    "test_api_error_expected": (statuses.PASSED, False, None),
    "test_api_error_unexpected": (statuses.FAILED, False, "UserError"),
}

# The export variants are the slowest (a first torch.export per process): start them first.
# A plug-in variant that fails to load: (impl, the cell's one problem line, a regular expression).
PLUGIN_FAILURES = {
    "raises_in_a_helper": ("synvariants.raising:Never", re.escape(
        "syn: variant impl 'synvariants.raising:Never': importing 'synvariants.raising' raised "
        "RuntimeError: no accelerator found: set VARIANT_DEVICE (at synvariants/raising.py:8)")),
    "exits": ("synvariants.exits:Never", re.escape(
        "syn: variant impl 'synvariants.exits:Never': importing 'synvariants.exits' raised SystemExit: this variant needs Python 9 (at synvariants/exits.py:6)")),
    "helper_syntax_error": ("synvariants.syntax:Never", re.escape(
        "syn: variant impl 'synvariants.syntax:Never': importing 'synvariants.syntax' raised "
        "SyntaxError: invalid syntax (at synvariants/broken_helper.py.txt:4, from synvariants/syntax.py:12)")),
    "raised_inside_torch": ("synvariants.in_torch:Never", re.escape(
        "syn: variant impl 'synvariants.in_torch:Never': importing 'synvariants.in_torch' raised "
        "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/synvariants/weights.pt' (at /") + r"\S+/torch/serialization\.py:\d+" +
        re.escape(", from synvariants/in_torch.py:7)")),
    "constructor_raises": ("synvariants.init_raises:NeedsSetting", re.escape(
        "syn: variant impl 'synvariants.init_raises:NeedsSetting': creating NeedsSetting('plugin') raised "
        "ValueError: invalid literal for int() with base 10: 'high' (at synvariants/init_raises.py:11)")),
    "ten_kilobyte_message": ("synvariants.long_message:Never", re.escape(
        "syn: variant impl 'synvariants.long_message:Never': importing 'synvariants.long_message' raised "
        "ValueError: unsupported configuration: " + "x" * 273 + " ... (at synvariants/long_message.py:3)")),
}  # fmt: skip

CELLS: dict[str, Cell] = {
    **{
        name: Cell("variants", (file,), variant=name, impl=impl, applies_to=(entry,), xfail=IMPORTER_XFAIL if entry == IMPORTER else {})
        for name, (impl, entry, file) in VARIANTS.items()
    },
    "user": Cell("variants", (USER_FILE,), variant="tagged", impl="synvariants.tagging:Tag"),
    "base": Cell("variants", tuple(SUITE_TESTS)),
    "bad_impl": Cell("variants", (USER_FILE,), variant="tagged", impl="synvariants.no_such_module:Tag"),
    "unsupported_entry": Cell("variants", (EXPORT_FILE,), variant="retrace", impl=VARIANTS["retrace"][0], applies_to=(IMPORTER,)),
    # Plug-ins that raise something other than ImportError while loading (fixtures/synvariants).
    **{f"plugin_{case}": Cell("variants", (USER_FILE,), variant="plugin", impl=impl) for case, (impl, _) in PLUGIN_FAILURES.items()},
}


cells = pool_fixture(CELLS, "variants")


def nodeids(file: str) -> list[str]:
    return [f"{file}::{name}" for name in SUITE_TESTS[file]]


# --- every variant transforms ------------------------------------------------------------------


@uses(*VARIANTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_transforms_what_the_test_sees(cells, variant):
    """The suite's evidence checks pass only when the program / result / importer went through this
    variant's transformation (and through no other), whichever way the test reached the entry point."""
    run = cells[variant]
    file = VARIANTS[variant][2]
    assert run.returncode == 0, run.explain()
    expected = {nodeid: statuses.PASSED for nodeid in nodeids(file)}
    if file == EXPORT_FILE:
        expected[BASE_ONLY] = statuses.SKIPPED
    if VARIANTS[variant][1] == IMPORTER:
        expected.update(dict.fromkeys(IMPORTER_XFAIL, statuses.XFAILED))
    assert run.statuses == expected, run.explain()
    for name in EVIDENCE_TESTS:
        m = run.matrix(f"{file}::{name}")
        assert m["transform_calls"] >= 1 and m["transform_s"] > 0 and not m["transform_failed"], (name, m)
    top = run.report["matrix"]
    assert top["variant"] == variant and top["transform_s"] > 0 and top["problems"] == []


@uses("base")
def test_base_installs_nothing(cells):
    """Under base every suite passes with *no* evidence of a transformation: the evidence checks are
    not vacuous, and base wraps none of the entry points."""
    run = cells["base"]
    assert run.returncode == 0, run.explain()
    assert run.statuses == {n: statuses.PASSED for file in SUITE_TESTS for n in nodeids(file)}, run.explain()
    assert all(t["metadata"]["matrix"]["transform_calls"] == 0 for t in run.tests.values())
    assert run.report["matrix"]["transform_s"] == 0.0


@uses("from_bytes")
def test_transform_failure_of_a_builtin_variant_is_reported_as_such(cells):
    m = cells["from_bytes"].matrix(f"{PACKAGE_FILE}::test_reader_source")
    assert m["status"] == statuses.XFAILED and m["transform_failed"] is True
    assert m["error_type"] == "VariantTransformError"
    assert "variant 'from_bytes' failed to transform" in m["message"] and "as a zip archive" in m["message"]


# --- a user's variant; transform failures vs assertion failures vs the API's errors -------------


@uses("user")
def test_user_variant_from_a_fixture_module(cells):
    run = cells["user"]
    assert run.returncode == 1, run.explain()  # the suite has failures on purpose
    assert run.statuses == {f"{USER_FILE}::{name}": status for name, (status, _, _) in USER.items()}, run.explain()
    assert run.problems == []
    assert run.matrix(f"{USER_FILE}::test_tagged")["transform_calls"] >= 1


@uses("user")
@pytest.mark.parametrize("name", [n for n, (status, _, _) in USER.items() if status == statuses.FAILED])
def test_transform_failures_are_told_apart(cells, name):
    """transform_failed is True exactly when the variant's transform raised: not for an assertion
    failure, not for the API's own error (which reaches the test unchanged)."""
    run = cells["user"]
    _, transform_failed, error_type = USER[name]
    m = run.matrix(f"{USER_FILE}::{name}")
    assert (m["status"], m["transform_failed"], m["error_type"]) == (statuses.FAILED, transform_failed, error_type), m
    if transform_failed:
        assert m["message"].startswith("tools.matrix.variants.VariantTransformError: variant 'tagged' failed to transform the result of torch.export.export")
        assert "Tag refuses" in m["message"]
    elif error_type == "UserError":
        assert "Expecting `args` to be a tuple" in m["message"]
    case = next(c for c in run.xml.iter("testcase") if c.get("name") == name)
    props = {p.get("name"): p.get("value") for p in case.find("properties")}
    assert props["transform_failed"] == ("true" if transform_failed else "false")  # every field is a property
    assert case.find("failure") is not None


# --- bad configuration fails the target, once and clearly ----------------------------------------


@uses("bad_impl", "unsupported_entry")
@pytest.mark.parametrize(
    "name, message",
    [
        ("bad_impl", "syn: variant impl 'synvariants.no_such_module:Tag': cannot import 'synvariants.no_such_module'"),
        ("unsupported_entry", "syn: variant 'retrace' does not support entry point(s) torch.package.PackageImporter; it supports: torch.export.export"),
    ],
)
def test_bad_variant_configuration_fails_the_target(cells, name, message):
    run = cells[name]
    assert run.returncode != 0, run.explain()
    (problem,) = run.problems
    assert problem.startswith(message), run.explain()
    assert run.tests == {}
    assert run.output.count("[matrix] ERROR") == 1 and f"[matrix] ERROR: {problem}" in run.output


@pytest.mark.parametrize("case", PLUGIN_FAILURES)
@uses(*(f"plugin_{case}" for case in PLUGIN_FAILURES))
def test_a_plugin_that_raises_while_loading_is_one_line_naming_where(cells, case):
    """Not ImportError: any exception (or sys.exit) while importing or creating the plug-in is the
    cell's one problem line: the exception, its message's first line (at most 300 characters), the
    file:line it was raised at and the plug-in module's line that led there; no test runs. Before:
    pytest's INTERNALERROR traceback (3.5 kB) as the problem."""
    run = cells[f"plugin_{case}"]
    assert run.returncode != 0 and run.tests == {}, run.explain()
    (problem,) = run.problems
    assert re.fullmatch(PLUGIN_FAILURES[case][1], problem), problem
    assert "INTERNALERROR" not in run.output and "Traceback" not in run.output, run.output[-3000:]


@pytest.mark.parametrize(
    "impl, message",
    [
        ("synvariants.tagging", "must look like package.module:ClassName"),
        ("synvariants.tagging:NotAVariant", "synvariants.tagging.NotAVariant is not a tools.matrix.variants.Variant subclass"),
        ("synvariants.tagging:Missing", "synvariants.tagging.Missing is not a tools.matrix.variants.Variant subclass"),
        ("synvariants.no_such_module:Tag", "cannot import 'synvariants.no_such_module'"),
    ],
)
def test_load_variant_class_errors(monkeypatch, impl, message):
    monkeypatch.syspath_prepend(str(FIXTURES))
    with pytest.raises(VariantLoadError, match=re.escape(message)):
        load_variant_class(impl)


def test_load_variant_class_finds_a_user_variant(monkeypatch):
    monkeypatch.syspath_prepend(str(FIXTURES))
    cls = load_variant_class("synvariants.tagging:Tag")
    assert issubclass(cls, Variant) and cls.entry_points == (EXPORT,)


# --- install / wrap, in-process on a stand-in module (no torch needed) ---------------------------


class Doubling(Variant):
    entry_points = ("matrix_fake_api.compute", "matrix_fake_api.missing")

    def before(self, call: Call) -> Call:
        if call.kwargs.get("refuse_before"):
            raise KeyError("refused before")
        return call

    def after(self, call: Call, result):
        if result == "refuse":
            raise ValueError("refused after")
        return result * 2


@pytest.fixture
def fake_api(monkeypatch):
    module = types.ModuleType("matrix_fake_api")

    def compute(value, refuse_before=False):
        if value is None:
            raise LookupError("the API's own error")
        return value

    module.compute = compute
    monkeypatch.setitem(sys.modules, "matrix_fake_api", module)
    return module


def test_install_wraps_rebinds_and_uninstalls(fake_api):
    original = fake_api.compute
    user = types.ModuleType("user_module")
    user.compute = original  # `from matrix_fake_api import compute`, done before installation
    installed = install_mod.install(Doubling("doubling"), ("matrix_fake_api.compute",))
    try:
        assert fake_api.compute is not original and fake_api.compute(3) == 6
        assert installed.rebind([user]) == 1 and user.compute(4) == 8
        again = install_mod.install(Doubling("twice"), ("matrix_fake_api.compute",))  # wraps the original, not the wrapper
        assert fake_api.compute(3) == 6
        again.uninstall()
    finally:
        installed.uninstall()
    assert fake_api.compute is original


def test_wrapper_errors(fake_api):
    ledger = TransformHost()
    wrapped = Doubling("doubling", ledger).wrap("matrix_fake_api.compute", fake_api.compute)
    with pytest.raises(LookupError, match="the API's own error") as api_error:
        wrapped(None)
    assert api_error.type is LookupError  # unchanged, not wrapped
    for args, kwargs, cause in [(("refuse",), {}, ValueError), ((1,), {"refuse_before": True}, KeyError)]:
        with pytest.raises(VariantTransformError, match="variant 'doubling' failed to transform the result of matrix_fake_api.compute") as info:
            wrapped(*args, **kwargs)
        assert isinstance(info.value.__cause__, cause)
    assert ledger.calls >= 4 and ledger.entries[0] == "matrix_fake_api.compute"


@pytest.mark.parametrize(
    "entries, message",
    [
        (("matrix_fake_api.other",), "variant 'doubling' does not support entry point(s) matrix_fake_api.other"),
        (("matrix_fake_api.missing",), "module 'matrix_fake_api' has no attribute 'missing'"),
    ],
)
def test_install_entry_point_errors(fake_api, entries, message):
    with pytest.raises(install_mod.EntryPointError, match=re.escape(message)):
        install_mod.install(Doubling("doubling"), entries)


def test_install_unimportable_entry_point():
    class Nowhere(Variant):
        entry_points = ("matrix_no_such_module.f",)

    with pytest.raises(install_mod.EntryPointError, match="cannot import 'matrix_no_such_module'"):
        install_mod.install(Nowhere("nowhere"))


def test_the_variants_tested_here_are_matrix_yaml_s():
    declared = yaml.safe_load((REPO / "matrix.yaml").read_text())["variants"]
    for name, (impl, entry, _file) in VARIANTS.items():
        assert name in declared, f"{name} is no longer in matrix.yaml"
        assert (declared[name]["impl"], declared[name].get("applies_to")) == (impl, [entry]), name
    assert declared["base"]["impl"] == "tools.matrix.variants.base:Base" and not declared["base"].get("applies_to")
