"""Re-packaging modules and objects that were loaded from a package.

A PackageExporter resolves modules and pickled globals through its
``importer``; passing ``(pkg_importer, sys_importer)`` makes the packaged code
win over the code in the current Python environment.  When an object's class
cannot be resolved to the *same* object, pickling fails with
``pickle.PicklingError``.
"""
import io
import pickle

import pytest
import torch
from torch.package import PackageExporter, sys_importer

# A patched version of mtx_pkg_helper/util.py: it only exists inside packages.
PATCHED_UTIL = "def double(x):\n    return 3 * x\n\nclass Counter:\n    def __init__(self, start=0):\n        self.value = start\n"


def _load(buf):
    buf.seek(0)
    return torch.package.PackageImporter(buf)


def _patched_helper_importer():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_pkg_helper", "HELPER_ID = 'patched'\n", is_package=True)
        exp.save_source_string("mtx_pkg_helper.util", PATCHED_UTIL)
    return _load(buf)


def _model_importer():
    from mtx_pkg_model.config import Point

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_pickle("mtx_rp", "point.pkl", Point(1, 2))
    return _load(buf)


def test_importer_order_decides_which_source_is_repackaged():
    first = _patched_helper_importer()

    def repackage(importers):
        buf = io.BytesIO()
        with PackageExporter(buf, importer=importers) as exp:
            exp.save_module("mtx_pkg_helper.util")
        return _load(buf).import_module("mtx_pkg_helper.util")

    assert repackage((first, sys_importer)).double(5) == 15
    assert repackage((sys_importer, first)).double(5) == 10
    assert repackage(sys_importer).double(5) == 10


def test_module_only_in_a_package_needs_its_importer():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_rp_only", "ORIGIN = 'package'\n")
    first = _load(buf)
    first.import_module("mtx_rp_only")

    with pytest.raises(ModuleNotFoundError):
        with PackageExporter(io.BytesIO()) as exp:
            exp.save_module("mtx_rp_only")

    buf2 = io.BytesIO()
    with PackageExporter(buf2, importer=(first, sys_importer)) as exp:
        exp.save_module("mtx_rp_only")
    assert _load(buf2).import_module("mtx_rp_only").ORIGIN == "package"


def test_repackage_loaded_object_with_ordered_importers():
    first = _model_importer()
    point = first.load_pickle("mtx_rp", "point.pkl")

    buf = io.BytesIO()
    with PackageExporter(buf, importer=(first, sys_importer)) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_pickle("mtx_rp", "again.pkl", point)
    second = _load(buf)
    again = second.load_pickle("mtx_rp", "again.pkl")

    assert second.file_structure().has_file("mtx_pkg_model/config.py")
    assert (again.x, again.y) == (1, 2)
    assert again.norm1() == 3
    assert type(again).__module__ == f"{second.id()}.mtx_pkg_model.config"
    assert type(again) is not type(point)


def test_repackaged_code_comes_from_the_first_package():
    first = _patched_helper_importer()
    counter = first.import_module("mtx_pkg_helper.util").Counter(7)

    buf = io.BytesIO()
    with PackageExporter(buf, importer=(first, sys_importer)) as exp:
        exp.intern("mtx_pkg_helper.**")
        exp.save_pickle("mtx_rp", "counter.pkl", counter)
    second = _load(buf)
    loaded = second.load_pickle("mtx_rp", "counter.pkl")
    assert loaded.value == 7
    # The patched Counter has no bump(); the sys version does.
    assert not hasattr(loaded, "bump")
    assert second.import_module("mtx_pkg_helper.util").double(2) == 6


def test_packaged_object_with_only_sys_importer_is_pickling_error():
    first = _model_importer()
    point = first.load_pickle("mtx_rp", "point.pkl")
    with pytest.raises(pickle.PicklingError) as info:
        PackageExporter(io.BytesIO()).save_pickle("mtx_rp", "bad.pkl", point)
    assert type(info.value) is pickle.PicklingError
    assert f"{first.id()}.mtx_pkg_model.config.Point" in str(info.value)


def test_object_from_another_importer_is_a_code_mismatch():
    first = _model_importer()
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_module("mtx_pkg_model.config")
    other = _load(buf)
    point = first.load_pickle("mtx_rp", "point.pkl")

    with pytest.raises(pickle.PicklingError) as info:
        PackageExporter(io.BytesIO(), importer=other).save_pickle("mtx_rp", "bad.pkl", point)
    msg = str(info.value)
    assert type(info.value) is pickle.PicklingError
    assert f"The object provided is from '{first.id()}.mtx_pkg_model.config'" in msg
    assert f"when we import '{other.id()}.mtx_pkg_model.config', it's coming from {other.id()}" in msg
    assert f"lists the importer for {first.id()} before the importer for {other.id()}" in msg


def test_sys_object_with_only_package_importer_is_a_code_mismatch():
    from mtx_pkg_model.config import Point

    first = _model_importer()
    with pytest.raises(pickle.PicklingError) as info:
        PackageExporter(io.BytesIO(), importer=first).save_pickle("mtx_rp", "bad.pkl", Point(0, 0))
    msg = str(info.value)
    assert "The object provided is from 'mtx_pkg_model.config'" in msg
    assert "which is coming from the current Python environment" in msg
    assert f"lists 'sys_importer' before the importer for {first.id()}" in msg


def test_no_importer_in_the_list_can_find_the_object():
    first = _model_importer()
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_module("mtx_pkg_model.config")
    other = _load(buf)
    point = first.load_pickle("mtx_rp", "point.pkl")

    with pytest.raises(pickle.PicklingError) as info:
        PackageExporter(io.BytesIO(), importer=(other, sys_importer)).save_pickle(
            "mtx_rp", "bad.pkl", point
        )
    assert type(info.value) is pickle.PicklingError
    assert "Could not find obj" in str(info.value)


def test_class_replaced_in_its_module_is_pickling_error(monkeypatch):
    import mtx_pkg_model.config as config

    stale = config.Point(1, 1)
    monkeypatch.setattr(config, "Point", type("Point", (), {"__module__": config.__name__}))
    with pytest.raises(pickle.PicklingError) as info:
        PackageExporter(io.BytesIO()).save_pickle("mtx_rp", "stale.pkl", stale)
    assert type(info.value) is pickle.PicklingError
    assert "mtx_pkg_model.config.Point" in str(info.value)


def test_importer_must_be_an_importer_or_sequence():
    with pytest.raises(TypeError, match="importer arg should be an Importer or a sequence of Importers"):
        PackageExporter(io.BytesIO(), importer=object())
