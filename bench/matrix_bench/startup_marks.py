"""A pytest plugin for the start-up profile (startup_profile.py), loaded with `-p matrix_bench.startup_marks`
into the child cell_main would start: it appends (mark, time.time()) lines to $BENCH_STARTUP_MARKS at
each step of the process's start (its own import, the configure phase with `import torch` timed on
its own, collection of each file, each test) and at its end. Measures only; changes no result."""

from __future__ import annotations

import atexit
import os
import sys
import time

import pytest

_PATH = os.environ.get("BENCH_STARTUP_MARKS", "")


def mark(name: str) -> None:
    if _PATH:
        with open(_PATH, "a") as f:
            f.write(f"{time.time():.6f}\t{name}\n")
        if "importtime" in sys._xoptions:  # in `-X importtime`'s output too (written unbuffered, like it), to split it by phase
            os.write(2, f"startup_marks: {name.split(chr(9))[0]}\n".encode())


mark("plugin_import")  # the interpreter, site, pytest and its arguments so far
atexit.register(mark, "atexit")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before the matrix plugin's own (tryfirst too, registered earlier: called after this one)."""
    mark("configure_start")  # entry-point plugins and the suite's conftest are loaded by now
    if "torch" not in sys.modules:
        import torch  # noqa: F401 - timed on its own; the matrix plugin imports it next
    mark("torch_imported")


@pytest.hookimpl(trylast=True, specname="pytest_configure")
def pytest_configure_end(config: pytest.Config) -> None:
    mark("configure_end")  # the matrix plugin (variant loaded and installed) and every other plugin


def pytest_sessionstart(session: pytest.Session) -> None:
    mark("session_start")


def pytest_collectstart(collector: pytest.Collector) -> None:
    if isinstance(collector, pytest.Module):
        mark(f"collect_start\t{collector.nodeid}")


def pytest_collection_finish(session: pytest.Session) -> None:
    mark("collection_end")


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    mark(f"test_start\t{nodeid}")


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    mark(f"test_end\t{nodeid}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    mark("session_finish")
