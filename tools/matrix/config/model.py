"""The matrix as the tools see it: immutable, typed, validated (matrix.yaml's devices, variants,
suites, expectations; the cells and the Bazel targets that run them). Built by build.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from tools.matrix import durations, shard_plan, target_names, variant_library
from tools.matrix.expectations import naming, test_file_of
from tools.matrix.runtime.cell_config import CellSpec
from tools.matrix.yaml_lines import Located

DEFAULT_TEST_TIMEOUT_S = 120.0


class MatrixError(Exception):
    """matrix.yaml is invalid; `problems` holds one `file:line:col: message` line each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Device:
    """One row of the device table (matrix.yaml devices): what every target of the device gets."""

    name: str
    tags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    requires_gpu: bool = False  # the one answer to "is this device a GPU" (target_compatible_with, the runtime's check, rerun)
    exec_properties: tuple[tuple[str, str], ...] = ()  # remote execution platform properties (e.g. route to GPU workers)


@dataclass(frozen=True)
class Variant:
    name: str
    impl: str
    description: str
    applies_to: tuple[str, ...] = ()  # empty: every entry point the class supports
    library: str = ""  # the Bazel label of the py_library holding impl's module (variant_library.py)
    generated_library: variant_library.GeneratedLibrary | None = None  # when generate writes that library
    transform_check_off: str = ""  # matrix.yaml transform_check.disabled: why its cells skip the differential check
    flaky_attempts: int = 1  # Bazel's attempts for each of its targets (a fail then pass in one run: flaky)


@dataclass(frozen=True)
class Expectations:
    """Node id -> reason, for one (suite, variant, device) cell."""

    xfail: tuple[tuple[str, str], ...] = ()
    skip: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Suite:
    name: str
    directory: str
    test_files: tuple[str, ...]  # workspace-relative, sorted
    data_files: tuple[str, ...]  # workspace-relative, sorted
    variants: tuple[str, ...]
    devices: tuple[str, ...]
    shards: tuple[tuple[str, int], ...]  # device -> fixed shard count (unless shard_seconds)
    size: str = "medium"
    test_timeout_s: float = DEFAULT_TEST_TIMEOUT_S
    tags: tuple[str, ...] = ()
    default_device: bool = False
    shard_seconds: float | None = None  # shard by recorded durations, about this long per shard
    recorded: durations.Recorded = field(default_factory=dict, compare=False, hash=False)
    durations_problem: str = ""  # why test_durations.json is unreadable (see Matrix.plan_problems)
    pytest_args: tuple[str, ...] = ()  # extra pytest options (checked by tools/matrix/pytest_args.py)
    granularity: str = "cell"  # GRANULARITIES: "cell", one target per cell; "file", one per (cell, test file) (Cell.targets)
    transform_check_off: str = ""  # matrix.yaml transform_check.disabled: why its cells skip the differential check
    expectations_file: str = ""  # workspace-relative: where the suite's expectations are ("": in matrix.yaml)
    manual: tuple[str, ...] = ()  # test files (relative to the directory) whose targets are tagged manual (granularity: file)
    env: tuple[tuple[str, str], ...] = ()  # the environment of every target of the suite (a device's env wins)
    flaky_attempts: int = 1  # Bazel's attempts for each of its targets (a fail then pass in one run: flaky)

    @property
    def durations_file(self) -> str:
        return f"{self.directory}/{durations.FILE_NAME}"


GRANULARITIES = ("cell", "file")  # matrix.schema.json's enum for suites.*.granularity


@dataclass(frozen=True)
class Cell:
    """One (suite, variant, device): one column of the report. Bazel runs it as one target, or one
    target per test file (`granularity: file`) grouped by a test_suite of the cell's name, so
    `cell.label` selects the whole cell either way."""

    suite: Suite
    variant: Variant
    device: Device
    expectations: Expectations

    @property
    def target_name(self) -> str:
        return target_names.cell(self.suite.name, self.variant.name, self.device.name)

    @property
    def label(self) -> str:
        return f"//{self.suite.directory}:{self.target_name}"

    @property
    def transform_check_off(self) -> str:
        """Why the cell's differential check is off ("": on): the variant's reason, else the suite's."""
        if self.variant.transform_check_off:
            return f"variants.{self.variant.name}: {self.variant.transform_check_off}"
        return f"suites.{self.suite.name}: {self.suite.transform_check_off}" if self.suite.transform_check_off else ""

    @property
    def flaky_attempts(self) -> int:
        """Bazel's attempts for each of the cell's targets: the suite's or the variant's, the larger."""
        return max(self.suite.flaky_attempts, self.variant.flaky_attempts)

    @cached_property
    def recorded_durations(self) -> dict[str, float]:
        return durations.for_cell(self.suite.recorded, self.variant.name, self.device.name)

    @cached_property
    def targets(self) -> tuple[Target, ...]:
        """The py_tests that run the cell (see Target)."""
        if self.suite.granularity == "file":
            return tuple(Target(self, target_names.file_target(self.target_name, file), (file,))
                         for file in relative(self.suite.test_files, self.suite.directory))  # fmt: skip
        return (Target(self, self.target_name, relative(self.suite.test_files, self.suite.directory)),)

    @cached_property
    def _target_by_file(self) -> dict[str, Target]:
        return {file: target for target in self.targets for file in target.test_files}

    def target_of(self, test_id: str) -> Target:
        """The target that runs `test_id` (the cell's first one for an id of no known file)."""
        return self._target_by_file.get(test_file_of(test_id), self.targets[0])

    @property
    def tags(self) -> tuple[str, ...]:
        tags = [f"suite:{self.suite.name}", f"variant:{self.variant.name}", f"device:{self.device.name}"]
        if self.device.requires_gpu:
            tags.append("requires-gpu")
        tags += [*self.device.tags, *self.suite.tags]
        return tuple(dict.fromkeys(tags))


@dataclass(frozen=True)
class Target:
    """One py_test of a cell: the whole cell, or one test file of it (`granularity: file`, named
    `<cell>/<file without .py>`). Shards and expectations are per target, so editing one file's tests
    or entries reruns only its targets."""

    cell: Cell
    name: str
    test_files: tuple[str, ...]  # relative to the suite directory

    @property
    def label(self) -> str:
        return f"//{self.cell.suite.directory}:{self.name}"

    @property
    def manual(self) -> bool:
        """Tagged manual: `bazel test //...` leaves it out (the suite's tags, or its file in suites.<s>.manual)."""
        return "manual" in self.cell.tags or any(f in self.cell.suite.manual for f in self.test_files)

    def _mine(self, test_id: str) -> bool:
        return len(self.cell.targets) == 1 or test_file_of(test_id) in self.test_files

    @cached_property
    def recorded_durations(self) -> dict[str, float]:
        return {t: s for t, s in self.cell.recorded_durations.items() if self._mine(t)}

    @cached_property
    def shard_count(self) -> int:
        """Fixed by `shards`, or planned from the recorded durations with `shard_seconds`."""
        fixed = dict(self.cell.suite.shards).get(self.cell.device.name, 1)
        return shard_plan.cell_shard_count(fixed, self.cell.suite.shard_seconds, self.recorded_durations)

    @cached_property
    def expectations(self) -> Expectations:
        """The cell's entries that name this target's files: an entry matching no test of a target
        fails that target, so each target gets only its own."""
        xfail, skip = self.cell.expectations.xfail, self.cell.expectations.skip
        if len(self.cell.targets) == 1:
            return Expectations(xfail, skip)
        return Expectations(tuple(naming(dict(xfail), self.test_files).items()), tuple(naming(dict(skip), self.test_files).items()))

    def spec(self) -> CellSpec:
        """Everything this target's run needs (runtime/cell_config.py): generate writes it, cell_main reads it."""
        cell, suite = self.cell, self.cell.suite
        sharded = suite.shard_seconds is not None and self.shard_count > 1  # only sharded targets read (and depend on) the durations
        # From an expectations file, the entries reach the target as a data file each of its test
        # files (split at build time), not in its spec: thousands would not fit an environment string.
        in_file = bool(suite.expectations_file)
        return CellSpec(
            suite=suite.name,
            suite_dir=suite.directory,
            variant=cell.variant.name,
            variant_impl=cell.variant.impl,
            device=cell.device.name,
            target=self.label,
            test_files=self.test_files,
            cell_files=tuple(f for t in cell.targets for f in t.test_files) if len(cell.targets) > 1 else (),
            applies_to=cell.variant.applies_to,
            test_timeout_s=suite.test_timeout_s,
            default_device=suite.default_device,
            requires_gpu=cell.device.requires_gpu,
            xfail={} if in_file else dict(self.expectations.xfail),
            skip={} if in_file else dict(self.expectations.skip),
            durations_file=suite.durations_file if sharded else "",
            pytest_args=suite.pytest_args,
            transform_check_off=cell.transform_check_off,
            expectations=tuple(f"{suite.directory}/{target_names.expectations_part(cell.target_name, f)}" for f in self.test_files) if in_file else (),
        )


@dataclass(frozen=True)
class Matrix:
    path: str
    devices: tuple[Device, ...]
    variants: tuple[Variant, ...]
    suites: tuple[Suite, ...]
    expectations: dict[tuple[str, str, str], Expectations] = field(default_factory=dict, compare=False, hash=False)
    history: str = ""  # matrix.yaml history: the store runs are appended to (a file, a postgresql:// URL, none); --history wins
    located: Located | None = field(default=None, compare=False, hash=False, repr=False)  # where each key is
    # `matrix.yaml:L:C: ...` for each unreadable test_durations.json, planned as if nothing were
    # recorded: an error for every command but `durations`, which rewrites the file (cli.load_matrix).
    plan_problems: tuple[str, ...] = field(default=(), compare=False, hash=False)

    def at(self, path: tuple, message: str) -> str:
        """`matrix.yaml:LINE:COL: message`, pointing at key `path`: for checks made after loading."""
        line, col = self.located.where(path) if self.located else (1, 1)
        return f"{self.path}:{line}:{col}: {message}"

    @cached_property
    def _devices(self) -> dict[str, Device]:
        return {d.name: d for d in self.devices}

    @cached_property
    def _variants(self) -> dict[str, Variant]:
        return {v.name: v for v in self.variants}

    def device(self, name: str) -> Device:
        return self._devices[name]

    def variant(self, name: str) -> Variant:
        return self._variants[name]

    @cached_property
    def _cells(self) -> tuple[Cell, ...]:
        devices, variants = self._devices, self._variants
        return tuple(
            Cell(suite, variants[v], devices[d], self.expectations.get((suite.name, v, d), Expectations()))
            for suite in self.suites
            for v in suite.variants
            for d in suite.devices
        )

    def cells(self) -> list[Cell]:
        """Every (suite, variant, device) in matrix.yaml order."""
        return list(self._cells)

    def targets(self) -> list[Target]:
        """Every py_test of every cell, in matrix.yaml order."""
        return [target for cell in self._cells for target in cell.targets]


def relative(paths: tuple[str, ...], directory: str) -> tuple[str, ...]:
    """Workspace-relative paths of a suite's files, relative to its directory."""
    return tuple(p[len(directory) + 1 :] for p in paths)
