"""Which pytest options a suite may add (`pytest_args` in matrix.yaml), and why the others not.

The runtime owns the pytest command: it chooses the test files and the shard, loads its plugin and
the JSON report, and reads the results from both. An option may change how tests run (plugins,
warnings, logging, assertion rewriting, output detail), never which tests run, where results are
written, or how statuses are decided. An allow list: an option not known to be harmless is refused,
and a value pytest itself would refuse at start (so every cell would fail) is refused here first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

PLUGIN = "tools.matrix.runtime.plugin"
# Plugins the runtime needs: neither loaded twice nor disabled.
NEEDED_PLUGINS = (PLUGIN, "pytest_jsonreport", "json-report", "jsonreport", "cacheprovider")
# pytest's own plugins that collect tests, run them and decide their outcomes: `-p no:skipping` makes
# skip and xfail marks ineffective (what --runxfail does), `-p no:python` collects no test at all.
STATUS_PLUGINS = ("python", "unittest", "skipping", "runner", "main", "mark", "fixtures", "subtests", "reports", "helpconfig", "terminal")

# Flags without a value.
FLAGS = {
    "-v", "-vv", "-vvv", "--verbose", "-q", "--quiet", "-l", "--showlocals", "--full-trace",
    "-s", "--disable-warnings", "--disable-pytest-warnings", "--strict-markers", "--strict-config",
    "--no-header", "--no-summary",
}  # fmt: skip
# Options with a value (`--name=value`, or `-p value` / `-W value` as two items), and the values allowed.
VALUED = {
    "-p": re.compile(r".+"),
    "-W": re.compile(r".+"),
    "--pythonwarnings": re.compile(r".+"),
    "--import-mode": re.compile(r"prepend|append|importlib"),
    "--assert": re.compile(r"plain|rewrite"),
    "--capture": re.compile(r"fd|sys|no|tee-sys"),
    "--tb": re.compile(r"auto|long|short|line|native"),  # not `no`: a failure's message comes from its traceback
    "--log-level": re.compile(r"[A-Za-z]+|[0-9]+"),
    "--log-cli-level": re.compile(r"[A-Za-z]+|[0-9]+"),
    "--durations": re.compile(r"[0-9]+"),
    "--durations-min": re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+"),
    "--color": re.compile(r"yes|no|auto"),
    "--code-highlight": re.compile(r"yes|no"),
}
SHORT_VALUED = ("-p", "-W")  # also written joined: -pno:logging, -Werror
# Why common options are refused: the runtime's contract.
WHY = {
    **dict.fromkeys(["-k", "-m", "--deselect", "--ignore", "--ignore-glob", "--lf", "--last-failed", "--ff", "--failed-first", "--nf", "--new-first", "--sw", "--stepwise", "--stepwise-skip", "-x", "--exitfirst", "--maxfail", "--co", "--collect-only", "--collectonly", "--pyargs", "--doctest-modules", "--doctest-glob", "--runxfail"], "selects or changes which tests run and how xfails count; the matrix decides that (tests, shards, expectations, --test_filter)"),
    **dict.fromkeys(["-n", "--numprocesses", "--dist", "--tx", "-f", "--looponfail", "--timeout", "--count", "--reruns"], "changes how tests are scheduled, repeated or timed out; the runtime runs each test once under its own timeout (test_timeout_s)"),
    **dict.fromkeys(["--junitxml", "--junit-xml", "--junit-prefix", "--json-report", "--json-report-file", "--json-report-omit", "--json-report-summary", "--json-report-indent", "--json-report-verbosity", "--resultlog", "--result-log", "--basetemp", "--debug", "--log-file", "--pastebin", "--report-log"], "writes results or files where the runtime does not look; the runtime writes the results"),
    **dict.fromkeys(["-c", "--config-file", "--rootdir", "--inifile", "-o", "--override-ini", "--confcutdir", "--noconftest", "-h", "--help", "--version", "--fixtures", "--markers", "--setup-plan", "--setup-only"], "changes the configuration or the mode the runtime relies on; set options in the suite's own conftest.py instead"),
}


def problems(args: list[str], plugin_problem: Callable[[str], str] | None = None) -> list[tuple[int, str]]:
    """(index in `args`, what is wrong) for each refused item; `plugin_problem(module)` says why a
    `-p module` could not be imported by the tests ("" when it can)."""
    found: list[tuple[int, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=")
        if name in SHORT_VALUED and not eq:  # `-p NAME`: the value is the next item
            if i + 1 == len(args):
                found.append((i, f"{arg} needs a value: add it as the next item"))
                break
            value, eq, i = args[i + 1], "=", i + 1
        elif arg[:2] in SHORT_VALUED and len(arg) > 2 and not eq:
            name, value, eq = arg[:2], arg[2:], "="
        message = _why(arg, name, eq, value) or _value_problem(name, value, plugin_problem)
        if message:
            found.append((i, message))
            if name in WHY and not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                i += 1  # `-k EXPR`: its value is part of the refused option, not a second problem
        i += 1
    return found


def _why(arg: str, name: str, eq: str, value: str) -> str:
    if arg.startswith(SHORT_VALUED) and arg[2:3] == "=":
        return f"{arg!r}: pytest reads {arg[:2]}= as {arg[:2]} with a value starting with =; write {arg[:2]} and the value as two items"
    if not arg.startswith("-"):
        return f"{arg!r} is not an option: the runtime chooses the test files (tests:, data:); pytest_args takes options only"
    if name in WHY:
        return f"{name} is not allowed in pytest_args: it {WHY[name]}"
    if name == "-p" and value.removeprefix("no:") in NEEDED_PLUGINS:
        return f"-p {value} is not allowed in pytest_args: the runtime loads {value.removeprefix('no:')} itself and reads its results"
    if name == "-p" and value.startswith("no:") and value[3:] in STATUS_PLUGINS:
        return f"-p {value} is not allowed in pytest_args: pytest's {value[3:]} plugin collects, runs or decides the outcome of tests, which the statuses depend on"
    if name in FLAGS and not eq:
        return ""
    if name in VALUED:
        if not eq:
            return f"{name} needs a value: write {name}=VALUE"
        if not VALUED[name].fullmatch(value):
            return f"{name}={value}: the value must match {VALUED[name].pattern}"
        return ""
    allowed = ", ".join(sorted(FLAGS | set(VALUED)))
    return f"{name} is not among the pytest options a suite may add ({allowed}); ask for it to be added if the runtime can take it"


def _value_problem(name: str, value: str, plugin_problem: Callable[[str], str] | None) -> str:
    """Why pytest would refuse `value` of an allowed option at start, failing every cell ("" when it takes it)."""
    if name in ("-W", "--pythonwarnings"):
        from _pytest.config import parse_warning_filter  # pytest's own parser: what it refuses at start

        try:
            parse_warning_filter(value, escape=False)
        except Exception as e:  # noqa: BLE001 - UsageError, or the category's import failing
            detail = str(e).strip().splitlines()[-1].strip()
            return f"{name} {value}: pytest refuses this warning filter at start ({detail})"
    if name in ("--log-level", "--log-cli-level") and not value.isdigit() and not isinstance(logging.getLevelName(value.upper()), int):
        return f"{name}={value}: not a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number)"
    if name == "-p" and not value.startswith("no:") and plugin_problem is not None:
        why = plugin_problem(value)
        if why:
            return f"-p {value}: {why}"
    return ""
