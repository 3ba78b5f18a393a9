"""Where a package can be loaded from, and what the importer reports about it.

Covers loading from an in-memory buffer, an open file, a ``str`` or
``pathlib.Path`` file name and an extracted directory; ``file_structure()`` /
``has_file``; ``PackageImporter.id()``; ``python_version()``; and the
``torch.package.sys_importer`` that exporters use by default.
"""
import io
import platform
import sys
import zipfile

import pytest
import torch
from torch.package import ObjMismatchError, ObjNotFoundError, PackageExporter, sys_importer


def _write_demo(target):
    from mtx_pkg_model.config import Point

    with PackageExporter(target) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_module("mtx_pkg_model.config")
        exp.save_source_string("mtx_load_only", "class OnlyHere:\n    pass\n")
        exp.save_text("mtx_load.res", "note.txt", "a note")
        exp.save_binary("mtx_load.res", "raw.bin", b"\x00\x01\x02")
        exp.save_pickle("mtx_load.res", "point.pkl", {"p": Point(2, -5), "n": 3})


def _check_demo(imp):
    assert imp.load_text("mtx_load.res", "note.txt") == "a note"
    assert imp.load_binary("mtx_load.res", "raw.bin") == b"\x00\x01\x02"
    data = imp.load_pickle("mtx_load.res", "point.pkl")
    config = imp.import_module("mtx_pkg_model.config")
    assert type(data["p"]) is config.Point
    assert data["p"].norm1() == 7 and data["n"] == 3


def test_load_from_bytes_buffer():
    buf = io.BytesIO()
    _write_demo(buf)
    _check_demo(torch.package.PackageImporter(io.BytesIO(buf.getvalue())))


def test_load_from_str_path(pkg_file):
    _write_demo(str(pkg_file))
    assert pkg_file.is_file()
    _check_demo(torch.package.PackageImporter(str(pkg_file)))


def test_load_from_pathlib_path(pkg_file):
    _write_demo(pkg_file)
    _check_demo(torch.package.PackageImporter(pkg_file))


def test_load_from_open_file(pkg_file):
    with open(pkg_file, "wb") as f:
        _write_demo(f)
    with open(pkg_file, "rb") as f:
        _check_demo(torch.package.PackageImporter(f))


def test_archive_is_a_zip_with_a_single_top_level_folder(pkg_file):
    _write_demo(pkg_file)
    names = zipfile.ZipFile(pkg_file).namelist()
    assert {name.split("/", 1)[0] for name in names} == {"package"}
    assert "package/mtx_pkg_model/config.py" in names
    assert "package/mtx_load/res/note.txt" in names
    assert "package/.data/extern_modules" in names


def test_load_from_extracted_directory(pkg_file, tmp_path):
    _write_demo(pkg_file)
    out = tmp_path / "extracted"
    with zipfile.ZipFile(pkg_file) as zf:
        zf.extractall(out)
    root = out / "package"
    assert (root / "mtx_pkg_model" / "config.py").is_file()

    imp = torch.package.PackageImporter(str(root))
    _check_demo(imp)
    assert imp.file_structure().has_file("mtx_pkg_model/config.py")
    assert imp.file_structure().has_file("mtx_load/res/point.pkl")


def test_extracted_directory_sees_edited_source(pkg_file, tmp_path):
    """Unzipped packages can be edited in place before loading."""
    _write_demo(pkg_file)
    with zipfile.ZipFile(pkg_file) as zf:
        zf.extractall(tmp_path / "x")
    root = tmp_path / "x" / "package"
    config_py = root / "mtx_pkg_model" / "config.py"
    config_py.write_text(config_py.read_text() + "\nEDITED = True\n")

    imp = torch.package.PackageImporter(root)
    assert imp.import_module("mtx_pkg_model.config").EDITED is True


def test_file_structure_include_and_exclude():
    buf = io.BytesIO()
    _write_demo(buf)
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)

    full = imp.file_structure()
    assert full.has_file("mtx_pkg_model/config.py")
    assert full.has_file("mtx_load/res/note.txt")
    assert full.has_file("mtx_load")  # directories count as present
    assert not full.has_file("mtx_load/res/missing.txt")
    assert not full.has_file("mtx_pkg_model/model.py")

    only_code = imp.file_structure(include="**/*.py")
    assert only_code.has_file("mtx_pkg_model/config.py")
    assert not only_code.has_file("mtx_load/res/note.txt")

    no_pickles = imp.file_structure(exclude="**/*.pkl")
    assert no_pickles.has_file("mtx_load/res/note.txt")
    assert not no_pickles.has_file("mtx_load/res/point.pkl")

    rendered = str(full)
    for fragment in ("mtx_pkg_model", "config.py", "note.txt", "raw.bin"):
        assert fragment in rendered


def test_python_version_is_recorded():
    buf = io.BytesIO()
    _write_demo(buf)
    buf.seek(0)
    assert torch.package.PackageImporter(buf).python_version() == platform.python_version()


def test_importer_id_is_stable_per_importer():
    buf = io.BytesIO()
    _write_demo(buf)
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)
    assert imp.id() == imp.id()
    assert imp.id().startswith("<torch_package_") and imp.id().endswith(">")
    assert imp.import_module("mtx_pkg_model.config").__name__.startswith(imp.id() + ".")


def test_explicit_close_finalizes_the_buffer():
    buf = io.BytesIO()
    exp = PackageExporter(buf)
    exp.save_text("mtx_load", "a.txt", "x")
    exp.close()
    assert torch.package.PackageImporter(io.BytesIO(buf.getvalue())).load_text("mtx_load", "a.txt") == "x"


def test_sys_importer_imports_from_the_environment():
    import mtx_pkg_helper.util as util

    assert sys_importer.import_module("mtx_pkg_helper.util") is util
    assert sys_importer.import_module("mtx_pkg_helper.util") is sys.modules["mtx_pkg_helper.util"]
    assert sys_importer.get_name(util.Counter) == ("mtx_pkg_helper.util", "Counter")
    assert sys_importer.get_name(util.double) == ("mtx_pkg_helper.util", "double")
    assert sys_importer.whichmodule(util.double, "double") == "mtx_pkg_helper.util"


def test_sys_importer_cannot_name_packaged_objects():
    buf = io.BytesIO()
    _write_demo(buf)
    buf.seek(0)
    imp = torch.package.PackageImporter(buf)
    packaged_point = imp.import_module("mtx_pkg_model.config").Point

    # The demangled name resolves to the environment's own, different class.
    with pytest.raises(ObjMismatchError) as info:
        sys_importer.get_name(packaged_point)
    assert f"The object provided is from '{imp.id()}.mtx_pkg_model.config'" in str(info.value)
    assert "it's coming from the current Python environment" in str(info.value)

    # A class that exists nowhere but in the package cannot be found at all.
    only_here = imp.import_module("mtx_load_only").OnlyHere
    with pytest.raises(ObjNotFoundError, match="was not found as mtx_load_only.OnlyHere"):
        sys_importer.get_name(only_here)
    assert imp.get_name(only_here) == ("mtx_load_only", "OnlyHere")
    # The package's own importer names it with the plain module name.
    assert imp.get_name(packaged_point) == ("mtx_pkg_model.config", "Point")


def test_default_exporter_importer_is_sys_importer():
    exp = PackageExporter(io.BytesIO())
    assert exp.importer is sys_importer
