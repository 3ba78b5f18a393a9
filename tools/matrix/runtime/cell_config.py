"""A matrix target's configuration, in one encoding from the generator to the test process.

CellSpec is everything a target's run needs that is fixed when the BUILD files are generated:
config.Target.spec() builds it, generate writes its fields into the BUILD file, defs.bzl hands them
to the test as one JSON environment value (SPEC_ENV) and cell_main reads it with CellSpec.from_json.
The environment, not `args`: Bazel 4 splits a target's args like a shell (quotes, spaces) but leaves
env values as written (only `$` is expanded, which defs.bzl escapes), so any file name, reason or
option arrives exactly as matrix.yaml and the suite directory have it.

CellConfig is the spec plus what only the run knows (Bazel's shard and --test_filter, the journal,
crash resume); cell_main hands it to the pytest child in a file, in the same encoding, named by
ENV_KEY: never in the environment itself, because what the child is told grows with the tests (the
ids already recorded when it resumes after a crash, a target's expectations) and Linux caps one
environment string at 128 KiB (MAX_ARG_STRLEN): past it the child cannot even start. Nothing reads
matrix.yaml at test time.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

SPEC_ENV = "MATRIX_CELL_SPEC"  # set by defs.bzl on every matrix target
ENV_KEY = "MATRIX_CELL_FILE"  # set by cell_main for its pytest child: the path of its CellConfig's JSON


class CellSpecError(Exception):
    """The target's spec is missing or not a cell spec (a target not written by generate, or a bug)."""


@dataclass(frozen=True)
class CellSpec:
    suite: str
    suite_dir: str  # workspace-relative: the suite's Bazel package
    variant: str
    variant_impl: str
    device: str
    target: str = ""  # the py_test's label
    test_files: tuple[str, ...] = ()  # relative to suite_dir
    cell_files: tuple[str, ...] = ()  # every test file of the cell when its targets split them (granularity: file)
    applies_to: tuple[str, ...] = ()
    test_timeout_s: float = 120.0
    default_device: bool = False
    requires_gpu: bool = False  # the device's matrix.yaml requires_gpu
    xfail: dict[str, str] = field(default_factory=dict)
    skip: dict[str, str] = field(default_factory=dict)
    durations_file: str = ""  # workspace-relative recorded durations that plan the shards (empty: round-robin)
    pytest_args: tuple[str, ...] = ()  # the suite's extra pytest options (matrix.yaml pytest_args), checked by generate
    transform_check_off: str = ""  # why the differential check is off for this cell ("": on)
    # The suite's expectations file's entries for this target, one JSON file per test file (runfiles
    # paths; split from the file at build time: expectations_split.py); cell_main adds them to xfail/skip.
    expectations: tuple[str, ...] = ()
    expectations_source: str = "matrix.yaml"  # where xfail/skip's entries are written (for the messages that name it)

    @property
    def sibling_files(self) -> tuple[str, ...]:
        """The cell's test files that other targets run (granularity: file): their names only."""
        return tuple(f for f in self.cell_files if f not in self.test_files)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def entries_key(self) -> str:
        """The key of this cell's xfail and skip entries in expectations_source."""
        return f"expectations.{self.suite}.{self.variant}" if self.expectations_source == "matrix.yaml" else self.variant

    def entries_at(self) -> str:
        """Where this cell's xfail and skip entries are, for messages that ask to edit one."""
        return f"{self.entries_key()} in {self.expectations_source}"

    def written_fields(self) -> dict[str, Any]:
        """The fields that differ from their defaults: what generate writes (from_json fills the rest)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != _default(f)}

    def env_bytes(self) -> int:
        """The size of the environment string the target's spec becomes (`MATRIX_CELL_SPEC=` + JSON +
        NUL, as defs.bzl encodes it; non-ASCII counted escaped, as the most it can take)."""
        return len(SPEC_ENV) + 2 + len(json.dumps(self.written_fields(), separators=(",", ":")))

    @classmethod
    def from_json(cls, text: str) -> Any:
        """An instance of `cls` from to_json's text (lists back to tuples); CellSpecError when it is not one."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise CellSpecError(f"not JSON ({e})") from None
        known = {f.name: f for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - set(known):
            raise CellSpecError(f"unknown fields {sorted(set(data) - set(known)) if isinstance(data, dict) else data!r:.200}")
        try:
            return cls(**{k: tuple(v) if str(known[k].type).startswith("tuple") else v for k, v in data.items()})
        except TypeError as e:
            raise CellSpecError(str(e)) from None


def _default(f: Any) -> Any:
    return f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING else None)


# Linux's limit on one environment string, its NUL included (MAX_ARG_STRLEN): a longer one and the
# process cannot start.
MAX_ENV_STRING = 128 * 1024


@dataclass(frozen=True)
class CellConfig(CellSpec):
    shard_index: int = 0
    total_shards: int = 1
    test_filter: str = ""
    journal: str = ""  # the inherited descriptor (a number) the plugin appends JSON-line events to (journal.py)
    done: tuple[str, ...] = ()  # node ids already recorded by an earlier process (crash resume)
    evidence_dir: str = ""  # where the plugin writes evidence (runtime/evidence.py); "": none
    runner_pid: int = 0  # cell_main's pid (a warm child's parent is not cell_main); 0: the parent's

    def save(self, path: str) -> str:
        """Write the config for a child (ENV_KEY names `path`); returns `path`."""
        Path(path).write_text(self.to_json())
        return path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CellConfig | None:
        path = (environ if environ is not None else os.environ).get(ENV_KEY)
        return cls.from_json(Path(path).read_text()) if path else None

    def with_expectations_files(self) -> CellConfig:
        """The config with the entries of its expectations files (CellSpec.expectations) in xfail
        and skip; CellSpecError when one is missing or not what expectations_split.py writes."""
        if not self.expectations:
            return self
        xfail, skip, source = dict(self.xfail), dict(self.skip), self.expectations_source
        for path in self.expectations:
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
                xfail.update(data["xfail"])
                skip.update(data["skip"])
                source = data["source"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise CellSpecError(f"its expectations file {path} is unreadable ({type(e).__name__}: {e})") from None
        return replace(self, xfail=xfail, skip=skip, expectations_source=source)

    @classmethod
    def from_bazel(cls, environ: dict[str, str]) -> CellConfig:
        """The target's spec (SPEC_ENV) plus Bazel's test environment: shard and --test_filter."""
        raw = environ.get(SPEC_ENV)
        if not raw:
            raise CellSpecError(f"${SPEC_ENV} is not set: matrix targets are written by `bazel run //tools:matrix -- generate`")
        spec = CellSpec.from_json(raw)
        return cls(
            **asdict(spec),
            shard_index=int(environ.get("TEST_SHARD_INDEX", "0")),
            total_shards=int(environ.get("TEST_TOTAL_SHARDS", "1")),
            test_filter=environ.get("TESTBRIDGE_TEST_ONLY", ""),
        ).with_expectations_files()
