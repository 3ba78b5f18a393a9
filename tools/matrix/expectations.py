"""Which expectation entries hold where: one definition for the loader (config/build.py), the
targets' specs (config/model.py) and the build-time split of a suite's expectations file
(expectations_split.py).

A variant's entries (`xfail:` / `skip:`, node id -> reason) hold on every device; its `devices:`
section adds or overrides entries on one device. A target gets the entries that name its test files
(an entry matching no test of a target fails that target).
"""

from __future__ import annotations

from typing import Any

KINDS = ("xfail", "skip")


def on_device(variant_spec: dict[str, Any], device: str) -> dict[str, dict[str, str]]:
    """kind -> {node id: reason} of one variant on one device (the device's own entries win)."""
    specific = (variant_spec.get("devices") or {}).get(device) or {}
    return {kind: {**(variant_spec.get(kind) or {}), **(specific.get(kind) or {})} for kind in KINDS}


def test_file_of(test_id: str) -> str:
    """The suite-relative file of a node id (`test_x.py::Class::test` -> `test_x.py`)."""
    return test_id.split("::", 1)[0]


def naming(entries: dict[str, str], files: set[str] | frozenset[str] | tuple[str, ...]) -> dict[str, str]:
    """The entries whose node id is in one of `files`."""
    return {entry: reason for entry, reason in entries.items() if test_file_of(entry) in files}
