"""Text, binary and pickled resources inside a package.

Resources are addressed by (package, resource) pairs.  Pickles of objects whose
classes live in interned packages are re-created with the packaged classes.
"""
import io
import pickle

import pytest
import torch
from torch.package import PackageExporter


def _load(buf):
    buf.seek(0)
    return torch.package.PackageImporter(buf)


def test_text_round_trip_with_unicode():
    text = "héllo wörld ✓\nsecond line\n"
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_text("mtx_res.docs", "readme.txt", text)
    imp = _load(buf)
    assert imp.load_text("mtx_res.docs", "readme.txt") == text
    assert imp.load_binary("mtx_res.docs", "readme.txt") == text.encode("utf-8")
    assert imp.file_structure().has_file("mtx_res/docs/readme.txt")


def test_load_text_custom_encoding_and_errors():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_binary("mtx_res", "latin.txt", "café".encode("latin-1"))
    imp = _load(buf)
    assert imp.load_text("mtx_res", "latin.txt", encoding="latin-1") == "café"
    with pytest.raises(UnicodeDecodeError):
        imp.load_text("mtx_res", "latin.txt")
    assert imp.load_text("mtx_res", "latin.txt", errors="replace") == "caf\ufffd"


def test_binary_round_trip_all_byte_values(pkg_file):
    payload = bytes(range(256)) * 3
    with PackageExporter(pkg_file) as exp:
        exp.save_binary("mtx_res.bin", "blob.dat", payload)
    imp = torch.package.PackageImporter(pkg_file)
    assert imp.load_binary("mtx_res.bin", "blob.dat") == payload


def test_resource_names_must_be_plain_file_names():
    """Nesting is expressed through the dotted package name, not the resource name."""
    exp = PackageExporter(io.BytesIO())
    with pytest.raises(ValueError, match="'nested/note.txt' must be only a file name"):
        exp.save_text("mtx_res", "nested/note.txt", "deep")

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_text("mtx_res.nested", "note.txt", "deep")
    imp = _load(buf)
    assert imp.load_text("mtx_res.nested", "note.txt") == "deep"
    assert imp.file_structure().has_file("mtx_res/nested/note.txt")


def test_resource_next_to_packaged_code_is_readable_from_the_code():
    src = (
        "def read(name):\n"
        "    import torch_package_importer\n"
        "    return torch_package_importer.load_text(__name__, name)\n"
    )
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_res_code", src, is_package=True)
        exp.save_text("mtx_res_code", "greeting.txt", "hello from inside")
    imp = _load(buf)
    assert imp.import_module("mtx_res_code").read("greeting.txt") == "hello from inside"


def test_writing_the_same_resource_twice_is_rejected():
    exp = PackageExporter(io.BytesIO())
    exp.save_text("mtx_res", "dup.txt", "one")
    with pytest.raises(AssertionError, match="Tried to write file 'mtx_res/dup.txt', but it already exists"):
        exp.save_text("mtx_res", "dup.txt", "two")


def test_pickle_of_builtin_containers():
    data = {"ints": [1, 2, 3], "nested": {"t": (1, "a"), "s": {3, 4}}, "none": None, "b": b"\x00\xff"}
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.save_pickle("mtx_res", "data.pkl", data)
    assert _load(buf).load_pickle("mtx_res", "data.pkl") == data


@pytest.mark.parametrize("protocol", [3, 4])
def test_pickle_of_interned_classes_uses_packaged_classes(protocol):
    from mtx_pkg_model.config import ModelConfig, Point

    obj = {"cfg": ModelConfig(hidden=16, tags=["a"]), "points": [Point(1, -2), Point(3, 4)]}
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_pickle("mtx_res", "obj.pkl", obj, pickle_protocol=protocol)

    imp = _load(buf)
    assert imp.file_structure().has_file("mtx_pkg_model/config.py")
    loaded = imp.load_pickle("mtx_res", "obj.pkl")
    packaged = imp.import_module("mtx_pkg_model.config")
    assert type(loaded["cfg"]) is packaged.ModelConfig
    assert type(loaded["cfg"]) is not ModelConfig
    assert loaded["cfg"].hidden == 16 and loaded["cfg"].tags == ["a"]
    assert [type(p) for p in loaded["points"]] == [packaged.Point, packaged.Point]
    assert [p.norm1() for p in loaded["points"]] == [3, 7]


def test_pickle_memo_keeps_shared_references():
    from mtx_pkg_model.config import Point

    shared = Point(0, 0)
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_pickle("mtx_res", "shared.pkl", [shared, shared, Point(0, 0)])
    a, b, c = _load(buf).load_pickle("mtx_res", "shared.pkl")
    assert a is b
    assert a is not c and a == c


def test_pickle_of_class_from_unhandled_module_is_packaging_error():
    from mtx_pkg_model.config import Point

    with pytest.raises(torch.package.PackagingError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            exp.save_pickle("mtx_res", "p.pkl", Point(1, 1))
    assert "    mtx_pkg_model.config\n" in str(info.value)


def test_load_pickle_twice_returns_fresh_objects_with_same_classes():
    from mtx_pkg_model.config import Point

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_model.**")
        exp.save_pickle("mtx_res", "p.pkl", Point(5, 6))
    imp = _load(buf)
    first = imp.load_pickle("mtx_res", "p.pkl")
    second = imp.load_pickle("mtx_res", "p.pkl")
    assert first is not second
    assert type(first) is type(second)
    assert first == second == type(first)(5, 6)


def test_unsupported_pickle_protocol_is_rejected():
    exp = PackageExporter(io.BytesIO())
    with pytest.raises(AssertionError, match="only supports pickle protocols 3 and 4, got 2"):
        exp.save_pickle("mtx_res", "p.pkl", [1], pickle_protocol=2)


def test_unpicklable_lambda_raises_pickling_error():
    exp = PackageExporter(io.BytesIO())
    with pytest.raises(pickle.PicklingError) as info:
        exp.save_pickle("mtx_res", "fn.pkl", lambda: 1)
    assert type(info.value) is pickle.PicklingError
    assert str(info.value).startswith("Can't pickle <function ")
    assert "<lambda>" in str(info.value)
