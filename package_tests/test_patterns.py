"""intern / extern / mock / deny patterns and the errors they produce.

Checks glob matching (including ``exclude=``), implicit externing of torch and
the standard library, mocked modules, the action hooks, and the exact
exception types and message fragments for unhandled, denied, mocked-but-used
and ``allow_empty=False`` patterns.
"""
import io

import pytest
import torch
from torch.package import EmptyMatchError, GlobGroup, PackageExporter, PackagingError


def _load(buf):
    buf.seek(0)
    return torch.package.PackageImporter(buf)


@pytest.mark.parametrize(
    "pattern, name, expected",
    [
        ("mtx_pkg_helper.*", "mtx_pkg_helper.util", True),
        ("mtx_pkg_helper.*", "mtx_pkg_helper.sub.deep", False),
        ("mtx_pkg_helper.*", "mtx_pkg_helper", False),
        ("mtx_pkg_helper.**", "mtx_pkg_helper", True),
        ("mtx_pkg_helper.**", "mtx_pkg_helper.sub.deep", True),
        ("mtx_pkg_*", "mtx_pkg_heavy", True),
        ("mtx_pkg_*", "mtx_pkg_heavy.x", False),
    ],
)
def test_glob_group_matching(pattern, name, expected):
    assert GlobGroup(pattern).matches(name) is expected


def test_glob_group_exclude():
    group = GlobGroup("mtx_pkg_helper.**", exclude=["mtx_pkg_helper.sub.**"])
    assert group.matches("mtx_pkg_helper.util")
    assert not group.matches("mtx_pkg_helper.sub")
    assert not group.matches("mtx_pkg_helper.sub.deep")


def test_unhandled_dependencies_raise_packaging_error():
    with pytest.raises(PackagingError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            exp.intern("mtx_pkg_deps.**")
            exp.save_module("mtx_pkg_deps.extras")
    msg = str(info.value)
    assert type(info.value) is PackagingError
    assert "Module did not match against any action pattern. Extern, mock, or intern it." in msg
    assert "    mtx_pkg_heavy\n" in msg
    assert "    mtx_pkg_helper.util\n" in msg
    assert "Set debug=True" in msg


def test_debug_mode_reports_dependency_path():
    with pytest.raises(PackagingError) as info:
        with PackageExporter(io.BytesIO(), debug=True) as exp:
            exp.intern("mtx_pkg_deps.**")
            exp.extern("mtx_pkg_heavy")
            exp.save_module("mtx_pkg_deps.extras")
    msg = str(info.value)
    assert (
        "A path to mtx_pkg_helper.util: "
        "mtx_pkg_deps.extras -> mtx_pkg_deps.core -> mtx_pkg_helper.util"
    ) in msg
    assert "mtx_pkg_heavy" not in msg
    assert "Set debug=True" not in msg


def test_denied_dependency_raises_packaging_error():
    with pytest.raises(PackagingError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            exp.intern("mtx_pkg_deps.**")
            exp.deny("mtx_pkg_secret")
            exp.save_module("mtx_pkg_deps.leaky")
    msg = str(info.value)
    assert "* Module was denied by a pattern." in msg
    assert "    mtx_pkg_secret\n" in msg


def test_first_matching_pattern_wins():
    """deny() is registered first, so it beats the later, broader extern()."""
    with pytest.raises(PackagingError, match="denied by a pattern"):
        with PackageExporter(io.BytesIO()) as exp:
            exp.deny("mtx_pkg_secret")
            exp.extern("mtx_pkg_*")
            exp.intern("mtx_pkg_deps.**")
            exp.save_module("mtx_pkg_deps.leaky")


@pytest.mark.parametrize("action", ["intern", "extern", "mock"])
def test_allow_empty_false_raises_empty_match_error(action):
    with pytest.raises(EmptyMatchError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            getattr(exp, action)("mtx_pkg_never_used.**", allow_empty=False)
            exp.save_source_string("mtx_pat_empty", "X = 1\n")
    assert type(info.value) is EmptyMatchError
    assert "mtx_pkg_never_used.**" in str(info.value)
    assert "allow_empty=False" in str(info.value)


def test_allow_empty_false_is_satisfied_by_a_match():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.extern("mtx_pkg_helper.**", allow_empty=False)
        exp.intern("mtx_pkg_deps.**")
        exp.save_module("mtx_pkg_deps.core")
    assert _load(buf).import_module("mtx_pkg_deps.core").compute(4) == 9


def test_extern_uses_the_real_module():
    import mtx_pkg_helper.util as real_util

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.extern("mtx_pkg_helper.**")
        exp.intern("mtx_pkg_deps.**")
        exp.save_module("mtx_pkg_deps.core")

    imp = _load(buf)
    assert not imp.file_structure().has_file("mtx_pkg_helper/util.py")
    assert imp.import_module("mtx_pkg_helper.util") is real_util
    core = imp.import_module("mtx_pkg_deps.core")
    assert core.double is real_util.double
    assert core.compute(20) == 41


def test_intern_with_exclude_leaves_excluded_modules_to_other_patterns():
    buf = io.BytesIO()
    src = (
        "from mtx_pkg_helper.util import double\n"
        "from mtx_pkg_helper.sub.deep import describe\n"
    )
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_helper.**", exclude=["mtx_pkg_helper.sub.**"])
        exp.extern("mtx_pkg_helper.sub.**")
        exp.save_source_string("mtx_pat_entry", src)

    imp = _load(buf)
    structure = imp.file_structure()
    assert structure.has_file("mtx_pkg_helper/util.py")
    assert not structure.has_file("mtx_pkg_helper/sub/deep.py")
    entry = imp.import_module("mtx_pat_entry")
    assert entry.double.__module__ == imp.id() + ".mtx_pkg_helper.util"
    assert entry.describe.__module__ == "mtx_pkg_helper.sub.deep"
    assert entry.describe() == "deep at 2"


def test_excluded_module_without_other_pattern_is_unhandled():
    with pytest.raises(PackagingError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            exp.intern("mtx_pkg_helper.**", exclude="mtx_pkg_helper.sub.*")
            exp.save_source_string(
                "mtx_pat_entry2", "import mtx_pkg_helper.util\nimport mtx_pkg_helper.sub.deep\n"
            )
    msg = str(info.value)
    assert "    mtx_pkg_helper.sub.deep\n" in msg
    assert "mtx_pkg_helper.util" not in msg


def test_mocked_module_is_replaced_by_stubs():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_deps.**")
        exp.extern("mtx_pkg_helper.**")
        exp.mock("mtx_pkg_heavy")
        exp.save_module("mtx_pkg_deps.extras")

    imp = _load(buf)
    assert imp.file_structure().has_file("_mock.py")
    assert imp.file_structure().has_file("mtx_pkg_heavy/__init__.py")
    extras = imp.import_module("mtx_pkg_deps.extras")
    # Code paths that never touch the mocked module keep working.
    assert extras.inference(3) == 70
    with pytest.raises(NotImplementedError) as info:
        extras.train_only()
    assert "mtx_pkg_heavy.expensive_setup' was mocked out during packaging" in str(info.value)


def test_pickling_an_object_from_a_mocked_module_is_an_error():
    import mtx_pkg_heavy

    with pytest.raises(PackagingError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            exp.mock("mtx_pkg_heavy")
            exp.save_pickle("mtx_pat", "heavy.pkl", mtx_pkg_heavy.HeavyThing())
    msg = str(info.value)
    assert "Module was mocked out, but is still being used in the package." in msg
    assert "'['HeavyThing']' from module `mtx_pkg_heavy`" in msg
    assert "resource - `heavy.pkl` in package `mtx_pat`" in msg


def test_torch_and_stdlib_are_externed_implicitly():
    buf = io.BytesIO()
    src = "import json\nimport torch\n\ndef dump(x):\n    return json.dumps(torch.tensor(x).tolist())\n"
    with PackageExporter(buf) as exp:
        exp.save_source_string("mtx_pat_std", src)

    imp = _load(buf)
    mod = imp.import_module("mtx_pat_std")
    assert mod.dump([1, 2]) == "[1, 2]"
    assert mod.torch is torch
    assert not imp.file_structure().has_file("json/__init__.py")


def test_disallowed_stdlib_module_needs_explicit_extern():
    with pytest.raises(PackagingError) as info:
        with PackageExporter(io.BytesIO()) as exp:
            exp.save_source_string("mtx_pat_sys", "import sys\n")
    msg = str(info.value)
    assert "    sys\n" in msg
    assert "`sys` has a lot of system level access" in msg

    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.extern("sys")
        exp.save_source_string("mtx_pat_sys", "import sys\nPLATFORM = sys.platform\n")
    import sys

    assert _load(buf).import_module("mtx_pat_sys").PLATFORM == sys.platform


def test_module_allowed_rejects_extern_at_load_time():
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.extern("mtx_pkg_helper.**")
        exp.intern("mtx_pkg_deps.**")
        exp.save_module("mtx_pkg_deps.core")

    buf.seek(0)
    with pytest.raises(ImportError) as info:
        torch.package.PackageImporter(
            buf, module_allowed=lambda name: not name.startswith("mtx_pkg_helper")
        )
    assert type(info.value) is ImportError
    assert "needs the external module 'mtx_pkg_helper.util'" in str(info.value)
    assert "has been disallowed" in str(info.value)


def test_action_hooks_see_each_module_once():
    seen = {"intern": [], "extern": [], "mock": []}
    buf = io.BytesIO()
    with PackageExporter(buf) as exp:
        exp.intern("mtx_pkg_deps.**")
        exp.extern("mtx_pkg_helper.**")
        exp.mock("mtx_pkg_heavy")
        exp.register_intern_hook(lambda e, name: seen["intern"].append(name))
        exp.register_extern_hook(lambda e, name: seen["extern"].append(name))
        handle = exp.register_mock_hook(lambda e, name: seen["mock"].append("first"))
        exp.register_mock_hook(lambda e, name: seen["mock"].append(name))
        handle.remove()
        exp.save_module("mtx_pkg_deps.extras")

    assert sorted(seen["intern"]) == ["mtx_pkg_deps.core", "mtx_pkg_deps.extras"]
    assert seen["extern"] == ["mtx_pkg_helper.util"]
    assert seen["mock"] == ["mtx_pkg_heavy"]
