"""Install a variant's wrappers over the entry points it transforms, for the whole test process."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

from tools.matrix.variants import Variant


class EntryPointError(Exception):
    """An entry point named in matrix.yaml cannot be resolved or is not supported by the variant."""


@dataclass
class Installed:
    """What was patched, so it can be rebound in test modules and undone."""

    variant: Variant
    patches: list[tuple[str, Any, Any, Any]]  # (entry, module, original, replacement)

    def rebind(self, modules: list[Any]) -> int:
        """Point names that modules imported directly (`from torch.export import export`) at the wrapper."""
        count = 0
        for module in modules:
            namespace = getattr(module, "__dict__", {})
            for name, value in list(namespace.items()):
                for _entry, _owner, original, replacement in self.patches:
                    if value is original:
                        namespace[name] = replacement
                        count += 1
        return count

    def uninstall(self) -> None:
        for entry, owner, original, _replacement in reversed(self.patches):
            setattr(owner, entry.rsplit(".", 1)[1], original)
        self.patches.clear()


def resolve(entry: str) -> tuple[Any, Any]:
    """(owning module, current object) for a dotted name like `torch.export.export`."""
    module_name, _, attr = entry.rpartition(".")
    try:
        owner = importlib.import_module(module_name)
    except ImportError as e:
        raise EntryPointError(f"entry point {entry!r}: cannot import {module_name!r}: {e}") from None
    if not hasattr(owner, attr):
        raise EntryPointError(f"entry point {entry!r}: module {module_name!r} has no attribute {attr!r}")
    return owner, getattr(owner, attr)


def install(variant: Variant, applies_to: tuple[str, ...] = ()) -> Installed:
    """Wrap every entry point of `variant` (restricted to `applies_to` when given)."""
    entries = applies_to or variant.entry_points
    unsupported = sorted(set(entries) - set(variant.entry_points))
    if unsupported:
        raise EntryPointError(
            f"variant {variant.name!r} does not support entry point(s) {', '.join(unsupported)}; "
            f"it supports: {', '.join(variant.entry_points) or '(none)'}"
        )
    installed = Installed(variant, [])
    for entry in entries:
        owner, original = resolve(entry)
        original = getattr(original, "__matrix_original__", original)
        replacement = variant.wrap(entry, original)
        setattr(owner, entry.rsplit(".", 1)[1], replacement)
        installed.patches.append((entry, owner, original, replacement))
    # Modules imported before installation (e.g. a conftest) may already hold the originals.
    installed.rebind([m for name, m in list(sys.modules.items()) if not name.startswith(("torch", "tools.matrix"))])
    return installed
