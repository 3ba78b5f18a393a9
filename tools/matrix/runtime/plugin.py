"""The pytest plugin of a matrix cell: variant, device, strict expectations, selection, journal.

Loaded by cell_main in a child pytest process (`-p tools.matrix.runtime.plugin`) and configured by
the file MATRIX_CELL_FILE names, read once. It is the only place with mutable global state
(`_STATE`).

What the test can change in this process must not change what reaches cell_main: the journal binds
its functions at import and reopens its descriptor from cell_main's when a test took it
(journal.Writer); the runtime's descriptors are put back after each phase that broke them
(descriptors.Guard); pytest's capture holds a bounded part of what a test prints (bounded_capture);
a test that destroys the outputs directory is `error` and the directory is made again. Time is kept
by cell_main, not here: each test's `start` and `stop` events frame its clock.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tools.matrix import durations, pytest_args, statuses
from tools.matrix.records import RuntimeDetail, runtime_result
from tools.matrix.runtime import bounded_capture, descriptors, journal, outputs, selection, test_facts
from tools.matrix.runtime.cell_config import CellConfig
from tools.matrix.runtime.evidence import Recorder
from tools.matrix.runtime.install import EntryPointError, Installed, install
from tools.matrix.runtime.transform_host import TransformHost
from tools.matrix.variants import VariantLoadError, load_variant


@dataclass
class _State:
    cell: CellConfig
    config: pytest.Config
    ledger: TransformHost = field(default_factory=TransformHost)  # the variant's host: what it did in this test
    installed: Installed | None = None
    journal: journal.Writer | None = None
    guard: descriptors.Guard | None = None
    outputs_dir: str = ""  # TEST_UNDECLARED_OUTPUTS_DIR as cell_main saw it
    outputs_identity: tuple[int, int] | None = None  # (st_dev, st_ino) of outputs_dir as the last test left it
    stopped: str | None = None  # the last test whose `stop` event was journaled
    tests: test_facts.Gathered = field(init=False)  # each running test's facts, until its teardown is reported

    def __post_init__(self) -> None:
        self.tests = test_facts.Gathered(lambda nodeid: test_facts.expectation(self.cell, nodeid))


_STATE: _State | None = None
_write, _exit, _lstat = os.write, os._exit, os.lstat  # bound before any test module is imported


def _event(**event: Any) -> None:
    if _STATE and _STATE.journal:
        _STATE.journal.append(event)


def _fatal(message: str) -> None:
    _event(event="fatal", message=message)
    pytest.exit(message, returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _STATE
    cell = CellConfig.from_env()
    if cell is None:
        raise pytest.UsageError("tools.matrix.runtime.plugin needs MATRIX_CELL_FILE; run tests through cell_main")
    _STATE = _State(cell, config)
    if cell.journal:
        _STATE.journal = journal.Writer(int(cell.journal), cell.runner_pid or os.getppid())  # the descriptor cell_main passed down
    _die_with_parent()
    # cell_main ends this process with SIGTERM (a test past its timeout, or Bazel ending the target),
    # then SIGKILL: first the faulthandler prints where each thread is (C code, so even while a thread
    # holds the GIL), then, if the interpreter gets to it, what the running test printed.
    signal.signal(signal.SIGTERM, _on_stop_request)
    faulthandler.register(signal.SIGTERM, file=os.dup(2), all_threads=True, chain=True)
    bounded_capture.install(config)
    os.environ.update(MATRIX_VARIANT=cell.variant, MATRIX_DEVICE=cell.device)  # for unittest tests: current_variant()
    import torch

    _event(event="session", torch_version=torch.__version__, pid=os.getpid(), python=sys.version.split()[0])
    if cell.requires_gpu and (absent := _gpu_absent(torch, cell.device)):
        _fatal(
            f"device {cell.device!r} is not available on this machine ({absent}); "
            "run GPU targets on a machine with a GPU (bazel test --config=gpu there), or leave them out "
            "(they are excluded by default)"
        )
    if cell.default_device:
        torch.set_default_device(cell.device)
    _note_ignored_addopts(config)
    _STATE.ledger = TransformHost(evidence=Recorder(cell.evidence_dir or None), check_off=cell.transform_check_off or None)
    try:
        variant = load_variant(cell.variant_impl, cell.variant, _STATE.ledger)
        _STATE.installed = install(variant, cell.applies_to)
    except (VariantLoadError, EntryPointError) as e:
        _fatal(f"{cell.target or cell.suite}: {e}")
    if cell.evidence_dir:
        _STATE.outputs_dir = os.path.dirname(cell.evidence_dir)
        _STATE.outputs_identity = _identity(_STATE.outputs_dir)
    _STATE.guard = descriptors.Guard(cell.runner_pid or os.getppid())  # the last: every descriptor the runtime opened is open now


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = _lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _on_stop_request(signum: int, frame: Any) -> None:
    """SIGTERM's handler, when the interpreter can run it: show the running test's captured output, end."""
    try:
        capman = _STATE.config.pluginmanager.getplugin("capturemanager") if _STATE else None
        if capman is not None and capman.is_globally_capturing():
            capman.suspend_global_capture(in_=True)
            out, err = capman.read_global_capture()
            _write(2, f"{out}{err}".encode(errors="replace"))
    finally:
        _exit(128 + signum)


def _note_ignored_addopts(config: pytest.Config) -> None:
    """cell_main runs pytest with `-o addopts=`: say what the suite's configuration file asked for."""
    if config.inipath is None:
        return
    from _pytest.config.findpaths import load_config_dict_from_file  # pytest's own reader of that file

    try:
        raw = (load_config_dict_from_file(config.inipath) or {}).get("addopts")
    except Exception:  # noqa: BLE001 - only for the note; pytest itself read the file already
        return
    value = getattr(raw, "value", raw)  # a ConfigValue (pytest 9), a string (ini) or a list (pyproject.toml)
    value = " ".join(map(str, value)) if isinstance(value, list) else value
    if value:
        print(f"\n[matrix] note: {config.inipath.name}'s addopts ({value!r:.200}) is ignored: the cell's spec decides which tests run and "
              "how they count; put the options a suite may add in matrix.yaml pytest_args", flush=True)  # fmt: skip


def _gpu_absent(torch: Any, device: str) -> str:
    """Why a requires_gpu device cannot run here ("" when it can): its torch backend module
    (torch.cuda, torch.xpu, ...; ROCm builds answer through torch.cuda) says it is not available."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        return f"torch.device({device!r}) is not a device type this torch knows"
    backend = getattr(torch, kind, None)
    if backend is None or not callable(getattr(backend, "is_available", None)):
        return f"torch has no torch.{kind}.is_available() to ask"
    return "" if backend.is_available() else f"torch.{kind}.is_available() is False"


def _die_with_parent() -> None:
    """The child runs in its own session, out of reach of a kill aimed at cell_main's process group:
    ask the kernel to SIGKILL it if cell_main dies first (SIGKILLed itself, say)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STATE and _STATE.installed:
        _STATE.installed.uninstall()


@pytest.hookimpl(tryfirst=True, specname="pytest_unconfigure")
def pytest_unconfigure_first(config: pytest.Config) -> None:
    """Every result is journaled by now: nothing after this needs torch's object graph walked again.
    pytest's unraisableexception plug-in collects twice as it unconfigures (0.5-0.7 s, to warn about
    exceptions in finalizers, which no record holds) and the interpreter's exit collects again
    (~1 s): freezing the objects first makes those collections skip them (startup_profile.py).
    atexit handlers and the finalizers of objects freed by reference counting still run."""
    gc.freeze()


@pytest.fixture
def device() -> str:
    """The device of this matrix cell ("cpu", "cuda", ...)."""
    assert _STATE is not None
    return _STATE.cell.device


@pytest.fixture
def matrix_variant() -> str:
    """The name of the variant this cell runs under (for tests that must know, e.g. to explain)."""
    assert _STATE is not None
    return _STATE.cell.variant


# Options that select tests or change how outcomes count, with their defaults: whatever set them (a
# conftest.py changing config.option, a plugin), the runtime alone decides selection and statuses.
_SELECTION_OPTIONS = (("keyword", "-k", ""), ("markexpr", "-m", ""), ("deselect", "--deselect", None), ("runxfail", "--runxfail", False),
                      ("exitfirst", "-x", False), ("maxfail", "--maxfail", 0), ("collectonly", "--collect-only", False),
                      ("stepwise", "--stepwise", False), ("stepwise_skip", "--stepwise-skip", False))  # fmt: skip


def _changed_machinery(config: pytest.Config) -> list[str]:
    """What the suite's configuration disabled or set that statuses or selection depend on."""
    off = [name for name in (*pytest_args.STATUS_PLUGINS, "pytest_jsonreport") if not config.pluginmanager.has_plugin(name)]
    found = [f"pytest's {name} plugin is not active" for name in off]
    for attr, flag, default in _SELECTION_OPTIONS:
        value = getattr(config.option, attr, default)
        if value not in (default, None, [], ()):
            found.append(f"{flag} is set ({value!r:.80})")
    return found


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    changed = _changed_machinery(session.config)
    if changed:
        _fatal(
            f"the suite's pytest configuration changes what the statuses depend on: {'; '.join(changed)}. The matrix decides "
            "which tests run and how they count (matrix.yaml: pytest_args, expectations, --test_filter): remove it from conftest.py or the plugin that sets it"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]):
    """Runs around every other plugin's modifyitems (a conftest.py's included): a test one of them
    deselected stays, skipped with the reason, so that nothing collected vanishes from the report."""
    collected = list(items)
    yield
    kept = {id(item) for item in items}
    for item in collected:
        if id(item) not in kept:
            item.add_marker(pytest.mark.skip(reason="deselected by the suite's pytest configuration (a conftest.py or plugin's "
                                                    "pytest_collection_modifyitems); use a matrix.yaml skip entry instead"))  # fmt: skip
    items[:] = [item for item in collected if id(item) in kept] + [item for item in collected if id(item) not in kept]
    _select(config, items)


def _select(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The runtime's selection: --test_filter, the shard, crash resume; skip entries as marks."""
    assert _STATE is not None
    cell = _STATE.cell
    if _STATE.installed:
        modules = {id(m): m for m in (getattr(item.getparent(pytest.Module), "obj", None) for item in items) if m}
        _STATE.installed.rebind(list(modules.values()))
    all_ids = [item.nodeid for item in items]
    if not items:
        _event(event="nothing_collected", files=[Path(f).as_posix() for f in cell.test_files if Path(f).as_posix() not in cell.done],
               why=_why_nothing_collected(config))  # fmt: skip
    for kind, entries in (("xfail", cell.xfail), ("skip", cell.skip)):
        for entry in entries:
            if not any(selection.covers(entry, n) for n in all_ids):
                _event(event="unmatched", kind=kind, entry=entry)
    patterns = selection.parse_filter(cell.test_filter)
    chosen = selection.select(all_ids, patterns)
    # Decided before sharding: every shard sees the whole target.
    if patterns and not chosen and selection.decidable_here(patterns, cell.sibling_files):
        _event(event="filter_unmatched", filter=cell.test_filter, near=selection.near_matches(patterns, all_ids))
    recorded = _recorded_durations(cell) if cell.total_shards > 1 else None
    chosen = set(selection.shard(chosen, cell.shard_index, cell.total_shards, recorded)) - set(cell.done)
    keep = [item for item in items if item.nodeid in chosen]
    deselected = [item for item in items if item.nodeid not in chosen]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
    items[:] = keep
    for item in keep:
        hit = selection.expectation_for(item.nodeid, cell.skip)
        if hit:
            item.add_marker(pytest.mark.skip(reason=f"matrix.yaml skip ({hit[0]}): {hit[1]}"))
    # every_nodeid: all the target collected, before the filter and the shard split (what the outputs
    # name when this shard did not run them: collect.py keeps every known test's record).
    _event(event="collected", nodeids=[item.nodeid for item in keep], every_nodeid=all_ids)


def _why_nothing_collected(config: pytest.Config) -> str:
    """What pytest looks for in a test file (and the suite's own options), for a file where it found nothing."""
    assert _STATE is not None
    why = (
        f"pytest collects functions matching python_functions {config.getini('python_functions')}, classes matching "
        f"python_classes {config.getini('python_classes')} (without an __init__) in files matching python_files {config.getini('python_files')}"
    )
    return why + (f"; the suite's pytest_args: {' '.join(_STATE.cell.pytest_args)}" if _STATE.cell.pytest_args else "")


def _recorded_durations(cell: CellConfig) -> dict[str, float] | None:
    if not cell.durations_file:
        return None
    return durations.for_cell(durations.load(Path(cell.durations_file)), cell.variant, cell.device)


def pytest_collectstart(collector: pytest.Collector) -> None:
    # Importing a test file can kill the process (a segfault in an extension): say which file first.
    if isinstance(collector, pytest.Module):
        _event(event="collecting", nodeid=collector.nodeid)


def _collect_error_message(longrepr: str) -> str:
    """The exception that broke the import (pytest's last `E   Type: text` line), not pytest's
    preamble, which names the file by its absolute path (a sandbox path that differs each run)."""
    raised = [line[1:].strip() for line in longrepr.splitlines() if line.startswith("E ")]
    return raised[-1][:500] if raised and raised[-1] else test_facts.first_line(longrepr)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        text = str(report.longrepr)
        _event(event="collect_error", nodeid=report.nodeid, message=_collect_error_message(text), longrepr=text[-4000:])
    elif "::" not in report.nodeid and report.nodeid.endswith(".py"):  # a test file, imported
        _event(event="collecting_done", nodeid=report.nodeid)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    assert _STATE is not None
    _STATE.ledger.reset()
    _STATE.ledger.evidence.start(item.nodeid)
    _event(event="start", nodeid=item.nodeid)  # cell_main's clock for this test starts
    try:
        return (yield)
    finally:
        if _STATE.stopped != item.nodeid:  # no teardown report (pytest.exit(), an internal error): stop it here
            _stop(item.nodeid)


def _stop(nodeid: str) -> None:
    """The test is over: recording it (and anything after) is off its clock."""
    assert _STATE is not None
    _STATE.stopped = nodeid
    _event(event="stop", nodeid=nodeid)


def _guarded(name: str, item: pytest.Item | None = None):
    """One phase (innermost of the wrappers: inside pytest's capture and logging): the runtime's
    descriptors that the phase closed or replaced are put back before pytest uses them again."""
    assert _STATE is not None and _STATE.guard is not None
    watched = _STATE.guard.before()
    if item is not None:
        bounded_capture.bound_logs(item)
    try:
        return (yield)
    finally:
        try:
            put_back = _STATE.guard.restore(watched)
        except OSError as e:
            put_back, why = [], f"could not put back the descriptors the runtime uses: {e}"
        else:
            why = f"closed or replaced descriptors the runtime uses ({', '.join(map(str, put_back))}); put back"
        if put_back or why.startswith("could not"):
            _write(2, f"\n[matrix] {name}: {why}\n".encode(errors="replace"))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item):
    return (yield from _guarded(item.nodeid, item))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item):
    return (yield from _guarded(item.nodeid, item))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    return (yield from _guarded(item.nodeid, item))


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_make_collect_report(collector: pytest.Collector):
    if not isinstance(collector, pytest.File) or _STATE is None or _STATE.guard is None:
        return (yield)
    return (yield from _guarded(collector.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    assert _STATE is not None
    outcome = yield
    _STATE.tests.raised(item, call, outcome.get_result())


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Gathers each report's facts before any other plugin sees it, and shows a matrix.yaml xfail
    entry's effect in pytest's own output (terminal, JUnit) the way pytest shows its own xfails."""
    assert _STATE is not None
    if report.when == "teardown" and not isinstance(report, pytest.SubtestReport):
        _stop(report.nodeid)
    test = _STATE.tests.take(report)
    if isinstance(report, pytest.SubtestReport) or report.when != "call" or test.xfail is None or test.judged is None:
        return
    if test.judged.status == statuses.XFAILED and not report.skipped:
        report.outcome = "skipped"
        report.wasxfail = f"matrix.yaml xfail ({test.xfail.entry}): {test.xfail.reason}"
    elif test.judged.status == statuses.XPASSED and report.passed:
        report.outcome = "failed"
        report.longrepr = test.judged.message


@pytest.hookimpl(trylast=True, specname="pytest_runtest_logreport")
def pytest_runtest_logreport_result(report: pytest.TestReport) -> None:
    """After every other plugin (pytest-json-report's entry is complete): journal the test's result."""
    assert _STATE is not None
    if report.when != "teardown" or isinstance(report, pytest.SubtestReport):
        return
    test = _STATE.tests.pop(report.nodeid)
    test.outputs_destroyed = _outputs_destroyed()
    decided = test.decided()
    entry = _json_entry(report)
    keep = decided.status in statuses.KEEPS_EVIDENCE
    evidence = _STATE.ledger.evidence
    evidence.finish(keep)
    entry["metadata"] = {
        **entry.get("metadata", {}),
        "matrix": runtime_result(
            decided.status,
            RuntimeDetail(
                transform_s=round(_STATE.ledger.seconds, 6),
                transform_calls=_STATE.ledger.calls,
                subtests_run=decided.subtests_run,
                subtests_failed=decided.subtests_failed,
                check_s=round(_STATE.ledger.check_s, 6) if _STATE.ledger.checks else None,
                evidence_s=round(evidence.seconds, 6) if evidence.recorded else None,
            ),
            duration_s=round(test.duration_s, 6),
            message=decided.message,
            error_type=decided.error_type,
            transform_failed=decided.transform_failed,
            expectation=decided.expectation,
            transform_check=_STATE.ledger.transform_check(),
            log_tail=(outputs.tail(outputs.failure_text(entry)) or "") if keep else "",
        ),
    }
    try:
        _event(event="result", test=entry)
    except journal.EventTooLarge:  # thousands of user properties, say: the record without pytest's details
        _event(event="result", test={"nodeid": entry["nodeid"], "outcome": entry.get("outcome"), "metadata": entry["metadata"]})


def _json_entry(report: pytest.TestReport) -> dict[str, Any]:
    """A copy of pytest-json-report's entry for the test, complete once its teardown report is logged,
    every string cut to OUTPUT_CAP (a 16 MiB assertion message too) before it is serialised. That
    plugin keeps its entries in config._json_report._json_tests, its only per-test view: read here,
    never written (cap_strings copies every dict and list before the matrix block is added)."""
    assert _STATE is not None
    json_tests = getattr(getattr(_STATE.config, "_json_report", None), "_json_tests", {})
    return outputs.cap_strings(json_tests.get(report.nodeid) or {"nodeid": report.nodeid, "outcome": report.outcome})


def _outputs_destroyed() -> str:
    """What the test that just ended did to the outputs directory the runtime writes to ("" if
    nothing); the directory is made usable again at once, for the tests that follow."""
    assert _STATE is not None
    if not _STATE.outputs_dir:
        return ""
    try:
        what, repair = outputs.reclaim_dir(_STATE.outputs_dir, _STATE.outputs_identity)
    except OSError as e:
        what, repair = "broke {}", f"could not make it again ({e})"
    _STATE.outputs_identity = _identity(_STATE.outputs_dir)
    return f"this test {what.format(outputs.OUTPUTS_DIR)}; the runtime {repair}" if what else ""
