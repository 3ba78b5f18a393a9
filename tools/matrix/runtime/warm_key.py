"""What a warm zygote is keyed by: exactly the inputs of what it preloads.

A zygote (zygote.py) is an interpreter that imported torch, pytest and the export stack under some
environment; what those imports did depends on the interpreter, every file of the Python environment,
the environment variables, and the zygote's own code (its preload list). The key digests all of
these, plus the rest of the runtime's files (the //tools/matrix:runtime library: an edit to the
runtime starts a new zygote, as the lead's rule for staleness asks, though a child imports the
runtime from its own runfiles anyway). A child is forked only from the zygote of its own key: an
edit to any input gives a new key, so a new zygote, never an old one.

Not in the key, because the zygote never imports them: the suites, their conftest.py, and the variant
modules (each child imports its own from its runfiles, as a cold child does).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent  # runtime/, in the target's runfiles (not resolved: what the child imports)
MATRIX = HERE.parent
# The //tools/matrix:runtime library (tools/matrix/BUILD.bazel): the files every cell depends on.
RUNTIME_FILES = ("__init__.py", "durations.py", "pytest_args.py", "records.py", "statuses.py", "variants/__init__.py")

# Variables that differ per target or per run and that cell_main sets for each child (Bazel's test
# protocol, the cell's spec, the scratch directories, the working directory's): a zygote is shared by
# every target, so it starts without them and they are not in its key. A module that reads one of
# them at import time sees the zygote's value (docs/architecture.md lists what the warm path does not
# guarantee).
PER_RUN_PREFIXES = ("TEST_", "TESTBRIDGE_", "RUNFILES_", "BUILD_", "GTEST_", "COVERAGE", "BAZEL_", "MATRIX_")
PER_RUN_NAMES = frozenset({
    "XML_OUTPUT_FILE", "PWD", "OLDPWD", "SHLVL", "_", "HOME", "TMPDIR", "TEMP", "TMP", "XDG_CACHE_HOME",
    "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "PYTHONPATH", "PYTHON_RUNFILES", "JAVA_RUNFILES",
})  # fmt: skip


def zygote_env(env: dict[str, str]) -> dict[str, str]:
    """The environment a zygote for a child with environment `env` starts with (and is keyed by)."""
    return {k: v for k, v in env.items() if k not in PER_RUN_NAMES and not k.startswith(PER_RUN_PREFIXES)}


def runtime_files() -> list[Path]:
    return sorted([*(MATRIX / f for f in RUNTIME_FILES), *HERE.glob("*.py")])


@functools.cache
def environment_digest() -> str:
    """Every installed distribution's RECORD (the sha256 of each of its files, as pip wrote them)."""
    h = hashlib.sha256()
    records = []
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        records.append((name.lower(), dist.version, dist.read_text("RECORD") or ""))
    for name, version, record in sorted(records):
        h.update(f"{name}=={version}\n{record}\n".encode())
    return h.hexdigest()


@functools.cache
def runtime_digest() -> str:
    """The runtime's files as this process found them first (the launcher's: those it started with)."""
    h = hashlib.sha256()
    for path in runtime_files():
        h.update(f"file {path.relative_to(MATRIX).as_posix()}\n".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def key(python: str, env: dict[str, str], runtime: str | None = None) -> str:
    """The zygote key of a child run by `python` (this interpreter) with environment `env`. The
    interpreter and its environment by their real paths: the same virtual environment reached through
    a link (an output base whose external/pyenv links to another's, as the drills' and the bench's do)
    is the same, and its files are digested anyway."""
    h = hashlib.sha256()
    where = f"{os.path.realpath(python)}\n{os.path.realpath(sys.prefix)}\n{sys.version}"
    h.update(f"{where}\n{environment_digest()}\n{runtime or runtime_digest()}\n".encode())
    for name, value in sorted(zygote_env(env).items()):
        h.update(f"env {name}={value}\0".encode())
    return h.hexdigest()[:32]
