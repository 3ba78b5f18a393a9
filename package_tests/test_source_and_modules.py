"""Saving code into a torch.package archive.

Covers save_source_file (single file and whole directory), save_source_string
(plain modules and packages), save_module with dependency discovery, and what
the importer does with the saved code.
"""
import inspect
import io

import pytest
import torch
from torch.package import PackageExporter


def _importer_from_buffer(buf):
    buf.seek(0)
    return torch.package.PackageImporter(buf)


def test_save_source_string_module_is_executed_in_package(pkg_file):
    src = "ANSWER = 6 * 7\n\ndef greet(name):\n    return f'hi {name}'\n"
    with PackageExporter(pkg_file) as exp:
        exp.save_source_string("mtx_src_plain", src)

    imp = torch.package.PackageImporter(pkg_file)
    mod = imp.import_module("mtx_src_plain")
    assert mod.ANSWER == 42
    assert mod.greet("pkg") == "hi pkg"
    assert not hasattr(mod, "__path__"), "a plain module must not be a package"


def test_save_source_string_package_with_relative_import():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string(
            "mtx_src_pkg", "from .leaf import LEAF\nTOP = LEAF + 1\n", is_package=True
        )
        exp.save_source_string("mtx_src_pkg.leaf", "LEAF = 10\n")

    imp = _importer_from_buffer(buf)
    top = imp.import_module("mtx_src_pkg")
    assert top.TOP == 11
    assert hasattr(top, "__path__")
    assert imp.import_module("mtx_src_pkg.leaf") is top.leaf
    assert imp.file_structure().has_file("mtx_src_pkg/__init__.py")
    assert imp.file_structure().has_file("mtx_src_pkg/leaf.py")


def test_save_source_file_single_file(fixtures_dir, pkg_file):
    path = fixtures_dir / "mtx_pkg_helper" / "util.py"
    with PackageExporter(pkg_file) as exp:
        exp.save_source_file("mtx_renamed_util", str(path))

    imp = torch.package.PackageImporter(pkg_file)
    mod = imp.import_module("mtx_renamed_util")
    assert mod.double(21) == 42
    counter = mod.Counter(5)
    assert counter.bump() == 6
    assert imp.file_structure().has_file("mtx_renamed_util.py")


def test_save_source_file_directory_copies_every_python_file(fixtures_dir, pkg_file):
    with PackageExporter(pkg_file) as exp:
        exp.save_source_file("mtx_pkg_helper", str(fixtures_dir / "mtx_pkg_helper"))

    imp = torch.package.PackageImporter(pkg_file)
    structure = imp.file_structure()
    for name in (
        "mtx_pkg_helper/__init__.py",
        "mtx_pkg_helper/util.py",
        "mtx_pkg_helper/sub/__init__.py",
        "mtx_pkg_helper/sub/deep.py",
    ):
        assert structure.has_file(name), name
    assert imp.import_module("mtx_pkg_helper").HELPER_ID == "mtx_pkg_helper"
    assert imp.import_module("mtx_pkg_helper.sub.deep").describe() == "deep at 2"


def test_save_module_interns_discovered_dependencies():
    import mtx_pkg_model.model as sys_model_module

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_module("mtx_pkg_model.model")

    imp = _importer_from_buffer(buf)
    structure = imp.file_structure()
    # model.py imports .config and .layers; both must be pulled in by the scan.
    assert structure.has_file("mtx_pkg_model/model.py")
    assert structure.has_file("mtx_pkg_model/config.py")
    assert structure.has_file("mtx_pkg_model/layers.py")
    # Nothing imported the package itself, so its __init__ is not saved.
    assert not structure.has_file("mtx_pkg_model/__init__.py")

    packaged = imp.import_module("mtx_pkg_model.model")
    assert packaged is not sys_model_module
    assert packaged.TinyNet is not sys_model_module.TinyNet
    assert packaged.ModelConfig().hidden == 8


def test_save_module_without_dependencies_fails_on_import():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_module("mtx_pkg_model.model", dependencies=False)

    imp = _importer_from_buffer(buf)
    assert not imp.file_structure().has_file("mtx_pkg_model/config.py")
    with pytest.raises(ModuleNotFoundError, match="self-contained archive"):
        imp.import_module("mtx_pkg_model.model")


def test_saved_source_is_the_exact_text():
    src = "# a comment that must survive\nVALUE = 'x'  # trailing\n"
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_src_exact", src)

    imp = _importer_from_buffer(buf)
    # inspect reads module source back through the importer's get_source.
    mod = imp.import_module("mtx_src_exact")
    assert inspect.getsource(mod) == src


def test_inspect_getsource_of_packaged_function():
    src = "def add(a, b):\n    return a + b\n"
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_src_inspect", src)

    imp = _importer_from_buffer(buf)
    fn = imp.import_module("mtx_src_inspect").add
    assert fn(2, 3) == 5
    assert inspect.getsource(fn) == src


def test_import_missing_module_raises_module_not_found():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_src_present", "X = 1\n")

    imp = _importer_from_buffer(buf)
    with pytest.raises(ModuleNotFoundError) as info:
        imp.import_module("mtx_src_absent.sub")
    assert 'No module named "mtx_src_absent"' in str(info.value)
    assert "self-contained archive" in str(info.value)


def test_is_from_package_distinguishes_packaged_objects():
    import mtx_pkg_model.config as sys_config

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_module("mtx_pkg_model.config")

    imp = _importer_from_buffer(buf)
    packaged = imp.import_module("mtx_pkg_model.config")
    assert torch.package.is_from_package(packaged)
    assert torch.package.is_from_package(packaged.Point(1, 2))
    assert not torch.package.is_from_package(sys_config)
    assert not torch.package.is_from_package(sys_config.Point(1, 2))
