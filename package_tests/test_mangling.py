"""Name mangling of packaged modules.

Every PackageImporter gets a unique ``<torch_package_N>`` prefix; module
``__name__``, class ``__module__`` and ``__file__`` carry it, while
``import_module`` and the module spec use the plain name.  The helpers in
``torch.package._mangling`` strip it again.
"""
import io
import re

import pytest
import torch
from torch.package import PackageExporter
from torch.package._mangling import PackageMangler, demangle, get_mangle_prefix, is_mangled

PREFIX_RE = re.compile(r"^<torch_package_(\d+)>$")


def _package_point_module():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_module("mtx_pkg_model.config")
    buf.seek(0)
    return buf


def test_importer_id_has_torch_package_prefix_form():
    imp = torch.package.PackageImporter(_package_point_module())
    assert PREFIX_RE.match(imp.id())


def test_each_importer_gets_a_distinct_id():
    buf = _package_point_module()
    first = torch.package.PackageImporter(buf)
    buf.seek(0)
    second = torch.package.PackageImporter(buf)
    assert first.id() != second.id()
    a = first.import_module("mtx_pkg_model.config")
    b = second.import_module("mtx_pkg_model.config")
    assert a is not b
    assert a.Point is not b.Point
    assert not isinstance(b.Point(1, 2), a.Point)


def test_module_and_class_names_carry_the_mangle_prefix():
    imp = torch.package.PackageImporter(_package_point_module())
    mod = imp.import_module("mtx_pkg_model.config")
    expected = f"{imp.id()}.mtx_pkg_model.config"
    assert mod.__name__ == expected
    assert mod.Point.__module__ == expected
    assert mod.Point(0, 1).__class__.__module__ == expected
    assert mod.__file__ == f"{imp.id()}.mtx_pkg_model/config.py"
    # The spec keeps the unmangled name.
    assert mod.__spec__.name == "mtx_pkg_model.config"


def test_loaded_pickle_class_module_is_mangled_and_demangles():
    from mtx_pkg_model.config import Point

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_pickle("mtx_mangle", "p.pkl", Point(3, 4))
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)
    loaded = imp.load_pickle("mtx_mangle", "p.pkl")
    module_name = type(loaded).__module__
    assert is_mangled(module_name)
    assert get_mangle_prefix(module_name) == imp.id()
    assert demangle(module_name) == Point.__module__ == "mtx_pkg_model.config"
    # The mangled name can be fed straight back to the importer.
    assert imp.import_module(module_name).Point is type(loaded)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("<torch_package_0>.foo.bar", "foo.bar"),
        ("<torch_package_123>.foo", "foo"),
        ("<torch_package_7>", ""),
        ("foo.bar", "foo.bar"),
        ("<torch_package_x>.foo", "<torch_package_x>.foo"),
    ],
)
def test_demangle(name, expected):
    assert demangle(name) == expected


@pytest.mark.parametrize(
    "name, mangled, prefix",
    [
        ("<torch_package_4>.a.b", True, "<torch_package_4>"),
        ("<torch_package_4>", True, "<torch_package_4>"),
        ("a.b", False, "a.b"),
        ("<torch_package_>.a", False, "<torch_package_>.a"),
    ],
)
def test_is_mangled_and_prefix(name, mangled, prefix):
    assert is_mangled(name) is mangled
    assert get_mangle_prefix(name) == prefix


def test_package_mangler_only_demangles_its_own_names():
    first, second = PackageMangler(), PackageMangler()
    assert first.parent_name() != second.parent_name()
    mangled = first.mangle("pkg.mod")
    assert mangled == first.parent_name() + ".pkg.mod"
    assert first.demangle(mangled) == "pkg.mod"
    assert second.demangle(mangled) == mangled
    assert demangle(mangled) == "pkg.mod"
    with pytest.raises(AssertionError, match="name must not be empty"):
        first.mangle("")


def test_importer_does_not_demangle_another_importers_names():
    buf = _package_point_module()
    first = torch.package.PackageImporter(buf)
    buf.seek(0)
    second = torch.package.PackageImporter(buf)
    foreign_name = first.import_module("mtx_pkg_model.config").__name__
    with pytest.raises(ModuleNotFoundError):
        second.import_module(foreign_name)


def test_packaged_modules_are_not_in_sys_modules():
    import sys

    imp = torch.package.PackageImporter(_package_point_module())
    mod = imp.import_module("mtx_pkg_model.config")
    assert mod.__name__ not in sys.modules
    assert sys.modules.get("mtx_pkg_model.config") is not mod
