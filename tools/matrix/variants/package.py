"""Variants of torch.package.PackageImporter: the same package, read another way."""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

from tools.matrix.variants import Call, Variant, scratch_dir

IMPORTER = "torch.package.PackageImporter"


class _ImporterVariant(Variant):
    """Replaces PackageImporter with a subclass whose constructor argument is transformed first.

    Not differentially checked (checks_numerics stays False): the result is an importer, not a
    program, and there are no example inputs: what the test loads from it, and calls with what, is
    the test's own business."""

    entry_points = (IMPORTER,)

    def wrap(self, entry: str, original: Any) -> Any:
        variant = self

        class VariantPackageImporter(original):  # type: ignore[misc, valid-type]
            __doc__ = original.__doc__

            def __init__(self, file_or_buffer: Any, *args: Any, **kwargs: Any) -> None:
                call = Call(entry, original, (file_or_buffer, *args), kwargs)
                with variant.transforming(entry):
                    call = variant.before(call)
                super().__init__(*call.args, **call.kwargs)

        VariantPackageImporter.__name__ = VariantPackageImporter.__qualname__ = original.__name__
        VariantPackageImporter.__module__ = original.__module__
        VariantPackageImporter.__matrix_variant__ = self.name  # type: ignore[attr-defined]
        VariantPackageImporter.__matrix_original__ = original  # type: ignore[attr-defined]
        return VariantPackageImporter


def _missing(source: Any) -> bool:
    """A path that does not exist: PackageImporter raises its own error for it, so leave it alone."""
    return isinstance(source, (str, os.PathLike)) and not os.path.exists(source)


def _zip_directory(root: str) -> bytes:
    """An extracted package directory zipped back into an archive (its folder name as the top level)."""
    top = os.path.basename(os.path.normpath(root))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for folder, subfolders, files in os.walk(root):
            subfolders.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                archive.write(path, os.path.join(top, os.path.relpath(path, root)))
    return buffer.getvalue()


def _archive_bytes(source: Any, zip_directories: bool = False) -> bytes | None:
    """The zip archive's bytes for a path or a binary buffer (or, if asked, a directory); None otherwise."""
    if isinstance(source, (str, os.PathLike)):
        if os.path.isdir(source):
            return _zip_directory(os.fspath(source)) if zip_directories else None
        return open(source, "rb").read()
    if hasattr(source, "read"):
        start = source.tell()
        data = source.read()
        source.seek(start)
        return data
    return None


class FromDirectory(_ImporterVariant):
    """Extract the archive into a directory and load the package from the directory."""

    def before(self, call: Call) -> Call:
        source = call.args[0]
        if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
            return call  # the test already reads from a directory: that is this variant's form
        if _missing(source):
            return call
        data = _archive_bytes(source)
        if data is None:
            raise ValueError(f"cannot extract {type(call.args[0]).__name__} {call.args[0]!r} into a directory")
        if not zipfile.is_zipfile(io.BytesIO(data)):
            return call  # not an archive at all: PackageImporter rejects it with its own error
        target = os.path.join(scratch_dir(), "package")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(target)
        # torch.package's directory reader expects the archive's top-level folder as the root.
        (top,) = {name.split("/", 1)[0] for name in zipfile.ZipFile(io.BytesIO(data)).namelist()}
        return Call(call.entry, call.fn, (os.path.join(target, top), *call.args[1:]), call.kwargs)


class FromBytes(_ImporterVariant):
    """Read the archive into memory (zipping an extracted directory) and load it from a buffer."""

    def before(self, call: Call) -> Call:
        if _missing(call.args[0]):
            return call
        data = _archive_bytes(call.args[0], zip_directories=True)
        if data is None:
            raise ValueError(f"cannot read {type(call.args[0]).__name__} {call.args[0]!r} as a zip archive")
        return Call(call.entry, call.fn, (io.BytesIO(data), *call.args[1:]), call.kwargs)
