"""The start-up profile of one matrix target: where a test process's time goes before its first test and
after its last, part by part.

The target runs as the pytest child cell_main would start (plain_pytest.plain_command: its command, its
environment, its journal; no Bazel) with one more plugin, startup_marks.py, which marks the time at each
step; a second run with `python -X importtime` attributes the imports to their top-level packages
(pytest's plugins, torch, the test files, ...). cell_main's own parts (its start, writing the outputs)
are timed on their own. Runs standalone too:

    <pyenv>/venv/bin/python3 bench/matrix_bench/startup_profile.py [--target LABEL] [--repeat N] [--warm]

(--warm: the same target through the warm start, runtime/warm/, when one is available)."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_TARGET = "//export_tests:export_tests_base_cpu/test_dtypes"

# (part, first mark, last mark): consecutive spans of the child's life, in order.
SPANS = (
    ("interpreter, site, import pytest, its options", "spawn", "plugin_import"),
    ("pytest's plug-ins (entry points), conftest, config", "plugin_import", "configure_start"),
    ("import torch", "configure_start", "torch_imported"),
    ("matrix plugin configure (variant load + install)", "torch_imported", "configure_end"),
    ("configure end to session start", "configure_end", "session_start"),
    ("collection (importing the test files)", "session_start", "collection_end"),
    ("the tests", "collection_end", "session_finish"),
    ("after the last test: pytest's summary, unconfigure, atexit", "session_finish", "atexit"),
    ("interpreter shutdown (module teardown, garbage collection)", "atexit", "exited"),
)


@dataclass
class Profile:
    """One run's marks (name -> seconds since the spawn) and its tests' (start, end)."""

    marks: dict[str, float] = field(default_factory=dict)
    tests: list[tuple[str, float, float]] = field(default_factory=list)
    imports: dict[str, float] = field(default_factory=dict)  # top-level package -> seconds (importtime run)
    results: list[dict] = field(default_factory=list)  # the journal's results

    def span(self, first: str, last: str) -> float | None:
        if first in self.marks and last in self.marks:
            return self.marks[last] - self.marks[first]
        return None


def read_marks(path: Path, spawned: float, exited: float) -> Profile:
    profile = Profile(marks={"spawn": 0.0, "exited": exited - spawned})
    started: dict[str, float] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        when, name, *detail = line.split("\t")
        t = float(when) - spawned
        if name == "test_start":
            started[detail[0]] = t
        elif name == "test_end" and detail[0] in started:
            profile.tests.append((detail[0], started[detail[0]], t))
        elif name != "collect_start":
            profile.marks.setdefault(name, t)
    return profile


IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$|^startup_marks: (\S+)$", re.MULTILINE)
# The phase an import happens in, by the last mark before it (the marks of startup_marks.py).
PHASES = {"spawn": "start", "plugin_import": "start", "configure_start": "configure", "torch_imported": "configure",
          "configure_end": "collection", "session_start": "collection", "collection_end": "first test",
          "test_end": "later tests", "session_finish": "exit"}  # fmt: skip


def import_times(log: str) -> dict[str, float]:
    """`-X importtime` output (with startup_marks' lines) -> seconds per (phase, top-level package):
    each top-level import counted once (its cumulative time includes what it imported)."""
    per: dict[str, float] = {}
    phase = "start"
    for m in IMPORT_LINE.finditer(log):
        _self_us, cumulative_us, indent, name, marked = m.groups()
        if marked:
            phase = PHASES.get(marked, phase)
        elif len(indent) == 1:  # a top-level import (not one done by another module's import)
            key = f"{phase}: {name.split('.')[0]}"
            per[key] = per.get(key, 0.0) + int(cumulative_us) / 1e6
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def run_child(target, python: str, workspace: Path, tmp: Path, importtime: bool = False, warm: bool = False) -> Profile:
    """One run of `target` as cell_main's pytest child, with startup_marks loaded."""
    from matrix_bench.plain_pytest import plain_command
    from tools.matrix.runtime import journal as journal_mod

    tmp.mkdir(parents=True, exist_ok=True)
    argv, env, events = plain_command(target, python, workspace, tmp)
    argv[1:1] = ["-X", "importtime"] if importtime else []
    if importtime:  # pytest's capture would swallow what the tests' imports print to stderr
        argv.append("--capture=no")
    at = argv.index("tools.matrix.runtime.plugin")
    argv[at + 1 : at + 1] = ["-p", "matrix_bench.startup_marks"]
    marks = tmp.parent / "marks.tsv"  # one path for every run: the environment (a zygote's key) stays the same
    marks.unlink(missing_ok=True)
    env["BENCH_STARTUP_MARKS"] = str(marks)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    spawned = time.time()
    if warm:
        proc = _warm_run(argv, env, workspace, events)
    else:
        proc = subprocess.run(
            argv, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=(events.fd,), timeout=1800
        )
    exited = time.time()
    profile = read_marks(marks, spawned, exited)
    output = proc.stdout.decode(errors="replace")
    (tmp / "log.txt").write_text(output)
    if importtime:
        profile.imports = import_times(output)
    profile.results = [e["test"] for e in events.read_new(lambda m: None) if e["event"] == "result"]
    events.close()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{target.label}: the child exited {proc.returncode}; see {tmp / 'log.txt'}")
    del journal_mod
    return profile


def _warm_run(argv: list[str], env: dict[str, str], workspace: Path, events) -> subprocess.CompletedProcess:
    """The same child forked by the zygote of its key (a warm launcher must run: `warm start`)."""
    from tools.matrix.runtime import warm_start

    proc = warm_start.start(argv, env, events.fd, cwd=str(workspace))
    output = bytearray()
    while chunk := os.read(proc.stdout.fileno(), 1 << 16):
        output += chunk
    return subprocess.CompletedProcess(argv, proc.wait(), bytes(output))


def cell_main_start(python: str, workspace: Path, repeat: int) -> float:
    """cell_main's own start: the interpreter and the runtime modules it imports (a whole process)."""

    def wall(code: str) -> float:
        t = time.perf_counter()
        subprocess.run([python, "-c", code], cwd=workspace, check=True, timeout=300)
        return time.perf_counter() - t

    return statistics.median(wall("import tools.matrix.runtime.cell_main") for _ in range(repeat))


def writing_outputs(results: list[dict], target, workspace: Path, tmp: Path) -> float:
    """cell_main's last part: report.json, its digest and the JUnit XML for `results`."""
    from tools.matrix.runtime import outputs

    metadata = {"suite": target.cell.suite.name, "variant": target.cell.variant.name, "device": target.cell.device.name,
                "target": target.label, "shard_index": 0, "total_shards": 1, "test_filter": "", "torch_version": None,
                "python": None, "restarts": 0, "transform_s": 0.0, "problems": [], outputs.COLLECTED_NOT_RUN: []}  # fmt: skip
    out = tmp / "outputs"
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    outputs.write_outputs(str(out), results, metadata, time.time(), 0, target.cell.suite.directory)
    (tmp / "test.xml").write_bytes(outputs.junit_xml(results, metadata))
    return time.perf_counter() - t


def profile_target(target, python: str, workspace: Path, root: Path, repeat: int = 3, warm: bool = False) -> list[tuple[str, str, str]]:
    """The rows of the profile: (part, seconds, note); each part the median of `repeat` runs."""
    rows: list[tuple[str, str, str]] = []
    if warm:  # the first warm run waits for its zygote's start: timed on its own
        first = run_child(target, python, workspace, root / "zygote_start", warm=True)
        rows.append(("warm: the first child, with its zygote's start", f"{first.span('spawn', 'collection_end'):.2f} s", "once per key"))
    runs = [run_child(target, python, workspace, root / f"run{i}", warm=warm) for i in range(repeat)]
    # (a warm child is forked, not started: no -X importtime; its imports were the zygote's)
    imports = {} if warm else run_child(target, python, workspace, root / "importtime", importtime=True).imports

    def median(values: list[float | None]) -> float:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else float("nan")

    start = median([r.span("spawn", "collection_end") for r in runs])
    rows.append((f"start-up of {target.label} (spawn to first test)", f"{start:.2f} s", f"median of {repeat}" + (", warm" if warm else "")))
    for part, first, last in SPANS:
        rows.append((f"  {part}", f"{median([r.span(first, last) for r in runs]):.2f} s", ""))
    first_test = median([r.tests[0][2] - r.tests[0][1] if r.tests else None for r in runs])
    typical = median([statistics.median(e - s for _n, s, e in r.tests[1:]) if len(r.tests) > 1 else None for r in runs])
    rows.append(
        ("  first test (its first-call warm-ups)", f"{first_test:.2f} s", f"the others: median {typical:.3f} s; {len(runs[0].tests)} tests")
    )
    for package, seconds in list(imports.items())[:12]:
        rows.append((f"  imports, {package}", f"{seconds:.2f} s", "-X importtime (one run): phase, top-level package, cumulative"))
    rows.append(("cell_main: its own start (python + runtime imports)", f"{cell_main_start(python, workspace, repeat):.2f} s", ""))
    rows.append(("cell_main: writing the outputs (report.json, digest, test.xml)",
                 f"{writing_outputs(runs[0].results, target, workspace, root / 'outputs'):.3f} s", f"{len(runs[0].results)} records"))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", default=str(HERE.parents[1]))
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warm", action="store_true")
    args = p.parse_args(argv)
    workspace = Path(args.workspace).resolve()
    sys.path[:0] = [str(workspace), str(HERE.parent)]
    from tools.matrix import config

    matrix = config.load(workspace / "matrix.yaml", workspace)
    target = next((t for t in matrix.targets() if t.label == args.target), None)
    if target is None:
        sys.exit(f"error: no matrix target {args.target}")
    with tempfile.TemporaryDirectory(prefix="startup_profile_") as root:
        rows = profile_target(target, sys.executable, workspace, Path(root), args.repeat, args.warm)
    for what, value, note in rows:
        print(f"{what:<66} {value:>9}  {note}")
    print(json.dumps({"load": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
