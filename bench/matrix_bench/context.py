"""What the steps share: the options, the time budget and the summary table; the set-up (the workspace
copy, the @pyenv it reuses, the benchmark's own Bazel); the cells the targets select, at which granularity;
and what one step leaves for the next (the cold run's reports and failures)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from matrix_bench.copy_edits import edit_yaml, matrix_cli, regenerate, set_granularity
from matrix_bench.nested_bazel import COPY_MARKER, Bazel, BazelRun, find_pyenv, lock, make_copy, pyenv_mirror
from matrix_bench.run_outputs import executed_targets, sum_durations, tests_of
from matrix_bench.summary import Results, log

DEFAULT_TARGETS = ("//:device_cpu",)
QUICK_TARGETS = ("//package_tests/...", "//dynamo_tests/...")  # their cuda cells: skipped by Bazel (GPU platform only)


class Context:
    """One benchmark run. setup() sets the paths, the Bazel client, the copy's matrix and the targets;
    resolve_cells() the cells they select; each step reads these and adds rows to `results`."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results = Results()
        self.started = time.time()
        self.deadline = self.started + args.budget_min * 60
        self.owns = False  # True once this run holds the locks on its output base and copy
        self.bazel: Bazel | None = None  # set up by setup()
        self.logs: Path | None = None
        self.cells: list = []  # the matrix cells the targets select (resolve_cells), in matrix.yaml order
        # What the cold step leaves for the later ones.
        self.cold_failed: set[str] = set()  # targets that failed in the cold run: Bazel never caches them
        self.testlogs: Path | None = None
        self.bazel_reports: dict[tuple[str, int], dict[str, Any]] = {}  # run_outputs.cell_reports of the cell targets
        self.incremental_variant: tuple[str, str] | None = None  # (suite, variant) the incremental step edited
        self.warm = False  # the test processes start warm (set_start): a launcher of the copy's runtime serves warm_dir

    def left(self) -> float:
        return self.deadline - time.time()

    def budget_ok(self, step: str, need_s: float = 60) -> bool:
        if self.left() < need_s:
            self.results.missing(f"{step}: the time budget (--budget-min {self.args.budget_min}) ran out")
            return False
        return True

    def setup(self) -> None:
        """Check the paths, take the locks, find the Python environment, copy the workspace, start using
        the benchmark's Bazel there, and load the copy's matrix (exit with a message on bad options)."""
        binary = self._bazel_binary()
        self._claim_paths()
        self.logs = Path(tempfile.mkdtemp(prefix="bench_matrix_"))
        log(f"bench_matrix: workspace {self.workspace}; copy {self.copy}; output base {self.output_base}; logs {self.logs}")
        log(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; time budget {self.args.budget_min} min")
        self._python_env()
        self._copy_workspace(binary)
        self._load_matrix()

    def _bazel_binary(self) -> str:
        from tools.matrix import bazel as matrix_bazel

        try:
            binary = matrix_bazel.bazel_binary()
        except matrix_bazel.BazelNotFound as e:
            sys.exit(f"error: {e}")
        if not shutil.which(binary):
            sys.exit(f"error: bazel {binary!r} (from $BAZEL or PATH) is not an executable; run `make setup` or fix BAZEL")
        return shutil.which(binary) or binary

    def _claim_paths(self) -> None:
        """The workspace, output base and copy, checked; then locked (self.owns)."""
        a = self.args
        self.workspace = Path(a.workspace).resolve()
        if not (self.workspace / "WORKSPACE").is_file() or not (self.workspace / "matrix.yaml").is_file():
            sys.exit(f"error: {self.workspace} is not the matrix workspace (no WORKSPACE / matrix.yaml); pass --workspace")
        self.output_base = Path(a.output_base).resolve()
        default_base = Path.home() / ".cache" / "bazel"
        if default_base in self.output_base.parents or self.output_base == default_base:
            sys.exit(f"error: --output-base {self.output_base} is inside Bazel's default location {default_base}; use a separate one")
        where = [os.environ.get(k, "") for k in ("RUNFILES_DIR", "PYTHON_RUNFILES", "RUNFILES_MANIFEST_FILE")] + [os.getcwd(), sys.argv[0]]
        if any(w and os.path.abspath(w).startswith(str(self.output_base) + os.sep) for w in where):
            sys.exit(f"error: this benchmark runs from the output base {self.output_base} (bazel run --output_base=...); "
                     "pass another --output-base for its own Bazel")  # fmt: skip
        self.copy = Path(a.copy).resolve()
        if self.copy == self.workspace or self.workspace in self.copy.parents:
            sys.exit("error: --copy must not be the workspace or inside it")
        # One run at a time per output base and per copy: a second one would clean / re-copy under the first.
        self.locks = [
            lock(Path(str(self.output_base) + ".lock"), "--output-base", self.output_base),
            lock(Path(str(self.copy) + ".lock"), "--copy", self.copy),
        ]
        self.owns = True

    def _python_env(self) -> None:
        """The @pyenv the benchmark's Bazel reuses (through a mirror) and the interpreter of the plain side."""
        a = self.args
        pyenv = None if a.pyenv == "own" else Path(a.pyenv).resolve() if a.pyenv != "auto" else find_pyenv(self.workspace)
        if a.pyenv not in ("own", "auto") and not (pyenv and (pyenv / "frozen_requirements.txt").is_file()):
            sys.exit(f"error: --pyenv {a.pyenv}: not a python_env repository (no frozen_requirements.txt)")
        if pyenv:
            self.pyenv = pyenv_mirror(pyenv, Path(str(self.output_base) + ".pyenv"))
            self.python = str(pyenv / "venv" / "bin" / "python3")
            self.pyenv_note = f"@pyenv reused from {pyenv} (--override_repository, via {self.pyenv}): not rebuilt, not timed"
        else:
            self.pyenv = None
            self.python = sys.executable
            self.pyenv_note = "@pyenv built in the benchmark's output base (kept by `bazel clean`: not part of the cold time)"
        log(f"  {self.pyenv_note}")

    def _copy_workspace(self, binary: str) -> None:
        """The benchmark's Bazel, the copy it runs in (generated files as the generator writes them), and
        the environment of the matrix CLI there (its nested Bazel calls use the same output base)."""
        self.bazel = Bazel(binary, self.copy, self.output_base, self.pyenv, self.args.jobs, self.logs)
        self.bazel.shutdown()  # a server of an earlier run may hold the old copy
        n = make_copy(self.workspace, self.copy)
        log(f"  copied {n} files (the working tree as it is now, uncommitted changes included) to {self.copy}")
        self.tool_env = {k: v for k, v in self.bazel.env.items()}
        self.tool_env["BAZEL"] = str(self.bazel.wrapper(self.logs / "bazel"))
        # The copy's generated files must be what the generator writes, or the first edit would change more.
        out = matrix_cli(self.copy, self.python, self.tool_env, "generate", timeout=300)
        if out.returncode != 0:
            sys.exit(f"error: `generate` fails in the copy:\n{out.stdout}{out.stderr}")
        if "wrote" in out.stdout:
            log(f"  note: the workspace's generated files were stale; regenerated in the copy: {out.stdout.strip()}")

    def _load_matrix(self) -> None:
        from tools.matrix import config

        a = self.args
        self.matrix = config.load(self.copy / "matrix.yaml", self.copy)
        self.granularity_origin: dict[str, str] = {}
        self.yaml_granularity = {s.name: s.granularity for s in self.matrix.suites}
        self.granularity_runs = a.granularity_runs
        if self.granularity_runs:  # the first setting from the start: the warm-up's loading and analysis use it
            self.set_granularities(self.granularity_runs[0], "--granularity")
        self.targets = [
            t for spec in (a.targets or (QUICK_TARGETS if a.quick else DEFAULT_TARGETS)) for t in re.split(r"[,\s]+", spec) if t
        ]

    def close(self) -> None:
        """Shut the benchmark's Bazel server down and remove the copy: only what this run owns (a run
        refused by the locks must not touch the other run's server or copy)."""
        if self.owns and self.warm:
            self.set_start("cold")  # stops the launcher and its zygotes
        if self.owns and self.bazel is not None:
            self.bazel.shutdown()
        if self.owns and self.copy.exists() and not self.args.keep_copy and (self.copy / COPY_MARKER).exists():
            shutil.rmtree(self.copy, ignore_errors=True)

    # -- the cells the targets select ---------------------------------------------------------------

    def resolve_cells(self) -> None:
        """The tests `bazel test <targets>` runs (query, minus GPU and manual tests), as matrix cells."""
        expr = " + ".join(f"tests({t})" for t in self.targets)
        excluded = f'attr(tags, "requires-gpu|manual", {expr})'  # GPU cells (compatible with --config=gpu only), manual tests
        run = self.bazel.run("query", "query", f"({expr}) except {excluded}", "--output=label", timeout=min(900, self.left()), echo=False)
        if run.rc != 0:
            raise RuntimeError(f"bazel query failed; see {run.log}")
        labels = sorted({line.strip() for line in run.output.splitlines() if line.startswith("//")})
        wanted = set(labels)
        # matrix.yaml order: the plain side's order. A cell is in when Bazel runs any of its py_tests.
        self.cell_targets = [t for t in self.matrix.targets() if t.label in wanted]
        self.cells = list({id(t.cell): t.cell for t in self.cell_targets}.values())
        matrix_labels = {t.label for t in self.cell_targets}
        self.other_tests = [lab for lab in labels if lab not in matrix_labels]
        shards = sum(t.shard_count for t in self.cell_targets)
        log(f"  targets {' '.join(self.targets)}: {len(self.cells)} matrix cells, {len(self.cell_targets)} py_tests ({shards} shards); "
            f"granularity {self.granularity_note()}"
            + (f", plus {len(self.other_tests)} other tests (run by Bazel only): {', '.join(self.other_tests)}" if self.other_tests else ""))  # fmt: skip
        if not self.cells:
            raise RuntimeError(f"{self.targets} select no matrix cell")

    def granularity_note(self) -> str:
        """Each selected suite's granularity and who set it (matrix.yaml, --granularity, or the file-edit step)."""
        suites = list(dict.fromkeys(c.suite for c in self.cells)) if self.cells else list(self.matrix.suites)
        return ", ".join(f"{s.name}={s.granularity} ({self.granularity_origin.get(s.name, 'matrix.yaml')})" for s in suites)

    def set_granularities(self, wanted: dict[str, str], origin: str) -> bool:
        """Set suites' granularity in the copy's matrix.yaml (kept for the rest of the run), regenerate,
        reload the matrix; True when anything changed (the caller resolves the targets again)."""
        from tools.matrix import config

        current = {s.name: s.granularity for s in self.matrix.suites}
        unknown = sorted(set(wanted) - set(current))
        if unknown:
            raise RuntimeError(f"--granularity: matrix.yaml has no suite {', '.join(unknown)} (suites: {', '.join(current)})")
        changes = {s: g for s, g in wanted.items() if current[s] != g}
        # Back to matrix.yaml's own setting (e.g. the last of `--granularity export_tests=cell,file`): say so.
        self.granularity_origin.update({s: "matrix.yaml" if g == self.yaml_granularity[s] else origin for s, g in changes.items()})
        if not changes:
            return False
        path = self.copy / "matrix.yaml"
        text = path.read_text()
        for suite, g in changes.items():
            text = edit_yaml(text, set_granularity(suite, g))
        path.write_text(text)
        changed = regenerate(self.copy, self.python, self.tool_env)
        self.matrix = config.load(self.copy / "matrix.yaml", self.copy)
        log(f"  granularity {', '.join(f'{s}={g}' for s, g in changes.items())} set in the copy's matrix.yaml "
            f"({', '.join(self.granularity_origin[s] for s in changes)}); "
            f"regenerated {len(changed)} file(s)")
        return True

    # -- shared by the steps ------------------------------------------------------------------------

    @property
    def warm_dir(self) -> Path:
        return self.logs / "warm"

    def set_start(self, start: str) -> None:
        """How the next `bazel test`s' processes start: "warm" (a new launcher of the copy's runtime,
        so that a timed run includes its zygote's start) or "cold" (the launcher stopped)."""
        env = {**self.tool_env, "MATRIX_WARM_DIR": str(self.warm_dir)}
        if self.warm_dir.exists():
            matrix_cli(self.copy, self.python, env, "warm", "stop", timeout=120)
        self.warm = start == "warm"
        if self.warm:
            started = matrix_cli(self.copy, self.python, env, "warm", "start", timeout=120)
            if started.returncode != 0:
                raise RuntimeError(f"warm start failed: {started.stdout[-500:]}{started.stderr[-1500:]}")
            log(f"  warm start: {started.stdout.strip()}")

    def start_args(self) -> list[str]:
        """The `bazel test` arguments of set_start's choice."""
        return [f"--test_env=MATRIX_WARM_DIR={self.warm_dir}"] if self.warm else ["--test_env=MATRIX_WARM=off"]

    def bazel_test(self, name: str, timeout: float | None = None, echo: bool = True) -> tuple[BazelRun, Path]:
        """`bazel test --keep_going <targets>`, its log and BEP file named after `name`: (the run, the BEP file).
        By default it may take what is left of the time budget (at least a minute)."""
        bep = self.logs / f"bep_{name}.json"
        run = self.bazel.run(name, "test", "--keep_going", f"--build_event_json_file={bep}", *self.start_args(), *self.targets,
                             timeout=max(self.left(), 60) if timeout is None else timeout, echo=echo)  # fmt: skip
        return run, bep

    def settle(self, before: str) -> None:
        """An untimed `bazel test <targets>`: re-run what earlier edits left out of date, so that the
        next measurement (the step `before`) sees only its own edit (restoring a file is one more change for Bazel)."""
        run, bep = self.bazel_test(f"settle_{before}", echo=False)
        log(f"  settle before {before}: {len(executed_targets(bep))} target(s) re-run in {run.wall_s:.1f}s (untimed)")

    def variants_by_cost(self, with_base: bool = False) -> list[tuple[str, str]]:
        """(suite, variant) among the targets (non-base unless with_base), cheapest first (by the cold run's durations)."""
        cost: dict[tuple[str, str], float] = {}
        for t in self.cell_targets:
            if t.cell.variant.name == "base" and not with_base:
                continue
            key = (t.cell.suite.name, t.cell.variant.name)
            cost[key] = cost.get(key, 0.0) + sum_durations(tests_of(self.bazel_reports, t.label))
        return sorted(cost, key=lambda k: (cost[k], k))

    def expected_labels(self, suite: str, variant: str) -> set[str]:
        """The py_tests (target labels) of that suite and variant among the targets."""
        return {t.label for t in self.cell_targets if t.cell.suite.name == suite and t.cell.variant.name == variant}

    def matrix_now(self):
        from tools.matrix import config

        return config.load(self.copy / "matrix.yaml", self.copy)
