"""The shell command that reruns one record's test: `bazel test <target> --test_filter=<node id>`."""

from __future__ import annotations

import shlex
from collections.abc import Collection

from tools.matrix.records import Record, RunInfo

# RunInfo.extra key: the matrix's requires_gpu devices (run_report.new_run), whose cells are tagged
# requires-gpu and only run under `--config=gpu` (.bazelrc).
GPU_DEVICES_KEY = "gpu_devices"
# A report written before the key existed: the one requires_gpu device matrix.yaml had then.
_UNRECORDED_GPU_DEVICES = frozenset({"cuda"})
# The runtime splits --test_filter on commas and matches globs with fnmatch (runtime/selection.py). A comma
# cannot be written, so it becomes the class [+--] (the range + to -: "+", "," or "-"); the glob
# characters become classes matching only themselves.
_AS_GLOB = str.maketrans({",": "[+--]", "[": "[[]", "]": "[]]", "*": "[*]", "?": "[?]"})


def target_label(record: Record) -> str:
    """The record's Bazel label: the collector's config.Cell.label (no label is guessed here)."""
    return label_for(record.suite, record.variant, record.device, record.target)


def label_for(suite: str, variant: str, device: str, target: str) -> str:
    """`target`; the rest names the cell when a record has none. A label guessed from the suite's name
    would be wrong when the suite's directory differs, so there is no rerun command without one."""
    if not target:
        raise ValueError(f"a {suite} record ({variant}, {device}) has no target: no rerun command can name its cell")
    return target


def test_filter(nodeid: str) -> str:
    """A --test_filter value selecting `nodeid` (and, for an id with a comma, at most ids that differ
    only in having + or - there): ids without a comma are used as they are, the readable spelling."""
    return nodeid.translate(_AS_GLOB) if "," in nodeid else nodeid


# The three pieces are exposed separately so compat.html can embed each once and join them in JS.
def target_part(label: str) -> str:
    return "bazel test " + shlex.quote(label)


def filter_part(nodeid: str) -> str:
    return "--test_filter=" + shlex.quote(test_filter(nodeid))


def gpu_devices(run: RunInfo | None) -> frozenset[str]:
    """The devices of `run`'s matrix that require a GPU (matrix.yaml requires_gpu)."""
    if run is None or GPU_DEVICES_KEY not in run.extra:
        return _UNRECORDED_GPU_DEVICES
    return frozenset(run.extra[GPU_DEVICES_KEY])


def device_part(device: str, gpu: Collection[str]) -> str:
    return " --config=gpu" if device in gpu else ""


def rerun_command(record: Record, run: RunInfo | None = None) -> str:
    """E.g. `bazel test //export_tests:export_tests_retrace_cuda --test_filter='t.py::test_a[x]' --config=gpu`;
    `run` is the report's run (its matrix's GPU devices)."""
    return f"{target_part(target_label(record))} {filter_part(record.test)}{device_part(record.device, gpu_devices(run))}"
