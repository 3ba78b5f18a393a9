"""Reading a shard's output files within bounds: each file or zip member is read whole into memory by
name, at most MAX_OUTPUT_BYTES (a zip bomb or a runaway file costs neither the memory nor the time),
nothing is extracted, and whatever cannot be used is an `Unreadable` naming the file and what is wrong."""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOG_TAIL_CHARS = 4000
LOG_TAIL_READ = 64 * 1024  # bytes read from the end of a test.log: logs can be gigabytes
# Largest output file read (digest, report.json, test.xml, a zip member uncompressed): larger is refused unread.
MAX_OUTPUT_BYTES = 512 * 1024 * 1024


class Unreadable(Exception):
    """An output of a shard that cannot be used: `path` and what is wrong with it."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"{path}: {what}")
        self.path, self.what = path, what


def complaint(path: Path, name: str = "") -> Callable[[str], Unreadable]:
    """Builds the Unreadable for what is wrong inside `path` (inside its member `name`, if given)."""
    return lambda what: Unreadable(path, f"{name}: {what}" if name else what)


def shown(testlogs: Path, path: Path) -> str:
    """`path` as a report names it: relative to the testlogs when it is inside them."""
    return str(path.relative_to(testlogs) if path.is_relative_to(testlogs) else path)


def read_bounded(path: Path, limit: int = MAX_OUTPUT_BYTES) -> bytes:
    size = path.stat().st_size
    if size > limit:
        raise Unreadable(path, f"{size:,} bytes, over the {limit:,}-byte limit; not read")
    return path.read_bytes()


# What zipfile raises for a corrupt archive or member.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError)


def not_a_zip(archive: Path, e: Exception) -> Unreadable:
    return Unreadable(archive, f"not a readable zip file ({type(e).__name__}: {e})")


def read_member(archive: Path, name: str, limit: int = MAX_OUTPUT_BYTES) -> bytes | None:
    """Member `name` of the zip, read into memory by name (nothing is extracted), at most `limit` bytes."""
    try:
        with zipfile.ZipFile(archive) as z:
            return member_bytes(z, archive, name, limit)
    except ZIP_ERRORS as e:
        raise not_a_zip(archive, e) from None


def member_bytes(z: zipfile.ZipFile, archive: Path, name: str, limit: int) -> bytes | None:
    """Member `name` of the open zip `z` (None: not there), at most `limit` bytes: Unreadable over it;
    one of ZIP_ERRORS when the member is corrupt."""
    try:
        info = z.getinfo(name)
    except KeyError:
        return None
    if info.file_size > limit:
        raise Unreadable(archive, f"{name} is {info.file_size:,} bytes uncompressed ({info.compress_size:,} compressed), "
                                  f"over the {limit:,}-byte limit; not read")  # fmt: skip
    # zipfile stops at the declared size and then checks the CRC, so a member whose header
    # understates its size fails here; read(limit + 1) bounds it even so.
    with z.open(info) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Unreadable(archive, f"{name} is over the {limit:,}-byte limit uncompressed; not read")
    return data


def parse_json(data: bytes, path: Path, name: str = "") -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Unreadable(path, f"{name + ': ' if name else ''}invalid JSON ({type(e).__name__}: {e})") from None


def read_output(shard_dir: Path, name: str) -> tuple[Any, Path, str] | None:
    """A JSON file of the shard's undeclared outputs, unzipped or inside outputs.zip (Bazel's default):
    (value, the file it came from, the member name inside it or "")."""
    outputs = shard_dir / "test.outputs"
    plain = outputs / name
    if plain.is_file():
        return parse_json(read_bounded(plain), plain), plain, ""
    archive = outputs / "outputs.zip"
    if archive.is_file():
        data = read_member(archive, name)
        if data is not None:
            return parse_json(data, archive, name), archive, name
    return None


def log_tail(path: Path) -> str:
    """The end of a test.log (at most LOG_TAIL_CHARS, less Bazel's sandbox debug lines)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - LOG_TAIL_READ, 0))
            data = f.read()
    except OSError as e:
        return f"(test.log unreadable: {e})"
    text = data.decode(errors="replace")
    if size > LOG_TAIL_READ:
        text = text.partition("\n")[2]  # the first line read is likely cut
    lines = [ln for ln in text.splitlines() if "linux-sandbox" not in ln]  # Bazel's sandbox debug lines
    return "\n".join(lines)[-LOG_TAIL_CHARS:]
