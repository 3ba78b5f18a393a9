"""Dynamic imports inside packaged code.

``__import__`` calls are both discovered by the exporter's dependency scan and
routed to the package at run time (packaged modules get a patched
``__builtins__``).  ``importlib.import_module`` is *not* patched: inside a
package it still reaches the normal Python import system, while the
``torch_package_importer`` pseudo-module gives packaged code its own importer.
"""
import io
import sys

import pytest
import torch
from torch.package import PackageExporter


@pytest.fixture
def dunder_importer():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_dunder.**")
        exp.save_module("mtx_pkg_dunder.dunder_user")
        exp.save_module("mtx_pkg_dunder.lazy")
    buf.seek(0)
    return torch.package.PackageImporter(buf)


def test_dunder_import_call_is_found_by_dependency_scan(dunder_importer):
    structure = dunder_importer.file_structure()
    # target.py is only referenced through __import__("mtx_pkg_dunder.target", ...).
    assert structure.has_file("mtx_pkg_dunder/target.py")
    # __import__ without a fromlist returns the parent package, so it is saved too.
    assert structure.has_file("mtx_pkg_dunder/__init__.py")


def test_dunder_import_runs_against_the_package(dunder_importer):
    user = dunder_importer.import_module("mtx_pkg_dunder.dunder_user")
    prefix = dunder_importer.id()
    assert user.value() == 42
    # Without a fromlist __import__ returns the top-level package ...
    assert user.top_module_name() == f"{prefix}.mtx_pkg_dunder"
    # ... with one it returns the named submodule, loaded from the package.
    assert user.target_module_name() == f"{prefix}.mtx_pkg_dunder.target"


def test_importer_dunder_import_matches_builtin_semantics(dunder_importer):
    top = dunder_importer.__import__("mtx_pkg_dunder.target")
    leaf = dunder_importer.__import__("mtx_pkg_dunder.target", fromlist=["VALUE"])
    assert top is dunder_importer.import_module("mtx_pkg_dunder")
    assert leaf is dunder_importer.import_module("mtx_pkg_dunder.target")
    assert top.target is leaf


def test_dunder_import_inside_package_code_at_runtime(dunder_importer):
    lazy = dunder_importer.import_module("mtx_pkg_dunder.lazy")
    mod = lazy.via_dunder("mtx_pkg_dunder.target")
    assert mod is dunder_importer.import_module("mtx_pkg_dunder.target")
    assert mod.VALUE == 42


def test_torch_package_importer_gives_code_its_importer(dunder_importer):
    lazy = dunder_importer.import_module("mtx_pkg_dunder.lazy")
    mod = lazy.via_package_importer("mtx_pkg_dunder.target")
    assert mod is dunder_importer.import_module("mtx_pkg_dunder.target")
    assert mod.where() == dunder_importer.id() + ".mtx_pkg_dunder.target"
    with pytest.raises(ModuleNotFoundError, match='No module named "mtx_pkg_helper"'):
        lazy.via_package_importer("mtx_pkg_helper")


def test_importlib_import_module_inside_package_bypasses_the_package(dunder_importer):
    import mtx_pkg_dunder.target as sys_target

    lazy = dunder_importer.import_module("mtx_pkg_dunder.lazy")
    mod = lazy.via_importlib("mtx_pkg_dunder.target")
    assert mod is sys_target
    assert mod is sys.modules["mtx_pkg_dunder.target"]
    assert mod is not dunder_importer.import_module("mtx_pkg_dunder.target")
    assert not getattr(mod, "__torch_package__", False)


def test_importer_import_module_accepts_its_own_mangled_names(dunder_importer):
    target = dunder_importer.import_module("mtx_pkg_dunder.target")
    assert dunder_importer.import_module(target.__name__) is target


def test_dunder_import_relative_level_in_source_string():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_dyn_rel", "", is_package=True)
        exp.save_source_string("mtx_dyn_rel.values", "V = 'relative'\n")
        exp.save_source_string(
            "mtx_dyn_rel.user",
            "_m = __import__('values', globals(), None, ['V'], 1)\nRESULT = _m.V\n",
        )
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)
    assert imp.import_module("mtx_dyn_rel.user").RESULT == "relative"
