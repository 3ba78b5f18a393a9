"""The cell's outputs: the JSON report (pytest-json-report's format plus matrix metadata), its compact
digest for the collector, and JUnit XML."""

from __future__ import annotations

import json
import os
import re
import stat
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from pytest_jsonreport import serialize

from tools.matrix import statuses
from tools.matrix.records import FIELDS, RUNTIME_FIELDS, SCHEMA_TYPES, default_of

REPORT_NAME = "report.json"
# What the collector reads: per test only the matrix fields, one compact row each. report.json keeps
# pytest's stages and tracebacks (~1 kB per test); parsing those for 100,000 tests took the
# collector ~1.7 s of its 3 s budget, the digest a fraction of that.
DIGEST_NAME = "matrix_results.json"
DIGEST_FIELDS = ("nodeid", *RUNTIME_FIELDS)  # records.Record's fields the runtime writes
# The tests the target collected that this shard has no record of (those --test_filter deselected and
# the other shards'): a report keeps a record of each even when this run did not run it or another
# shard's outputs are lost. In report.json's cell metadata, as a test.xml property, and in a file of
# its own beside the digest (not in it: the collector reads it only for a target that ran filtered or
# lost a shard; an unfiltered 4-shard target lists 3/4 of its tests in every shard).
COLLECTED_NOT_RUN = "collected_not_run"
COLLECTED_NAME = "matrix_collected.json"  # {COLLECTED_NOT_RUN: [node id, ...]}
# A field a test's metadata lacks is written as the Record's default (status is required).
_ROW_FIELDS = tuple(f for f in FIELDS if f.name in RUNTIME_FIELDS)


# Per string of a test's entry (stdout, stderr, traceback, crash message): a test that prints 300 MiB
# keeps its first and last OUTPUT_CAP / 2 characters (runtime/bounded_capture.py cuts while it prints).
OUTPUT_CAP = 64 * 1024
# Of a failure's traceback, what its record keeps as log_tail (records.Record).
TRACEBACK_TAIL_CHARS = 4000


def cut_marker(amount: int, unit: str = "bytes") -> str:
    """The line that stands for what was cut out of the middle of a text."""
    return f"\n... {amount} {unit} cut ...\n"


def cut(text: str, cap: int = OUTPUT_CAP) -> str:
    """`text` with its middle replaced by "... N bytes cut ..." when it is longer than `cap`."""
    if len(text) <= cap:
        return text
    middle = text[cap // 2 : len(text) - cap // 2]
    return f"{text[: cap // 2]}{cut_marker(len(middle.encode(errors='replace')))}{text[len(text) - cap // 2 :]}"


def cap_strings(value: Any) -> Any:
    """`value` (a pytest-json-report test entry) with every string cut to OUTPUT_CAP: its captured
    output, traceback, crash message, user properties alike. Lists and dicts are copied."""
    if isinstance(value, str):
        return cut(value)
    if isinstance(value, dict):
        return {key: cap_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cap_strings(item) for item in value]
    return value


def status_of(test: dict[str, Any]) -> str:
    return test["metadata"]["matrix"]["status"]


def json_report(tests: list[dict[str, Any]], metadata: dict[str, Any], started: float, exitcode: int, root: str) -> dict[str, Any]:
    report = serialize.make_report(
        created=time.time(),
        duration=time.time() - started,
        exitcode=exitcode,
        root=root,
        environment={},
        summary=serialize.make_summary({t["nodeid"]: {"outcome": status_of(t)} for t in tests}, collected=len(tests)),
    )
    report["tests"] = tests
    report["matrix"] = metadata
    return report


def digest(tests: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """The collector's view of a report: the cell metadata and one row of DIGEST_FIELDS per test."""
    rows = []
    for t in tests:
        m = t["metadata"]["matrix"]
        rows.append([t["nodeid"], *(m[f.name] if f.name in m else default_of(f) for f in _ROW_FIELDS)])
    return {"matrix": metadata, "fields": list(DIGEST_FIELDS), "tests": rows}


def not_run_here(collected: Iterable[str], tests: list[dict[str, Any]]) -> list[str]:
    """The COLLECTED_NOT_RUN list: of the target's `collected` node ids, those `tests` have no record of."""
    here = {t["nodeid"] for t in tests}
    return sorted(n for n in collected if n not in here)


def write_json(path: str, report: dict[str, Any], indent: int | None = 1) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=indent, default=str)
    os.replace(tmp, path)


def write_outputs(out_dir: str, tests: list[dict[str, Any]], metadata: dict[str, Any], started: float, exitcode: int, root: str) -> None:
    """report.json, its digest and the COLLECTED_NOT_RUN list into the target's undeclared outputs (Bazel zips them)."""
    write_json(os.path.join(out_dir, REPORT_NAME), json_report(tests, metadata, started, exitcode, root))
    not_run = metadata.get(COLLECTED_NOT_RUN)
    write_json(os.path.join(out_dir, DIGEST_NAME), digest(tests, {k: v for k, v in metadata.items() if k != COLLECTED_NOT_RUN}), indent=None)
    if not_run is not None:
        write_json(os.path.join(out_dir, COLLECTED_NAME), {COLLECTED_NOT_RUN: not_run}, indent=None)


OUTPUTS_DIR = "the target's outputs directory (TEST_UNDECLARED_OUTPUTS_DIR), where the runtime writes the results"
_MADE_ANEW = "made a new one (what earlier tests kept there is lost)"
# Bound at import (the plugin imports this module before any test module): reclaim_dir runs right
# after a test, whatever it did to `os`.
_lstat, _makedirs, _unlink, _chmod = os.lstat, os.makedirs, os.unlink, os.chmod


def reclaim_dir(path: str, identity: tuple[int, int] | None = None) -> tuple[str, str]:
    """Make `path` a directory its owner may write again (it was `identity` = (st_dev, st_ino), when
    given): (what had been done to it, with {} for the directory; what was done about it), ("", "")
    when it was intact."""
    try:
        st = _lstat(path)
    except FileNotFoundError:
        _makedirs(path)
        return "removed {}", _MADE_ANEW
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        _unlink(path)
        _makedirs(path)
        return ("replaced {} with a symbolic link" if stat.S_ISLNK(st.st_mode) else "replaced {} with a file"), _MADE_ANEW
    if st.st_mode & stat.S_IRWXU != stat.S_IRWXU:
        _chmod(path, st.st_mode | stat.S_IRWXU)
        return "made {} unwritable", "made it writable again"
    if identity is not None and (st.st_dev, st.st_ino) != identity:
        return "replaced {} with another directory", "uses the new one (what earlier tests kept there is lost)"
    return "", ""


def failure_text(test: dict[str, Any]) -> str:
    """The failure text pytest-json-report kept for a test (its traceback), "" when none."""
    for stage in ("call", "setup", "teardown"):
        longrepr = (test.get(stage) or {}).get("longrepr")
        if longrepr:
            return str(longrepr)
    return ""


def tail(text: str, chars: int = TRACEBACK_TAIL_CHARS) -> str | None:
    """The end of `text` (from a line start, saying how much was cut); None for no text."""
    if not text:
        return None
    if len(text) <= chars:
        return text
    end = text[len(text) - chars :]
    end = end[end.find("\n") + 1 :] if "\n" in end[:200] else end
    return f"... {len(text) - len(end)} characters cut ...\n{end}"


def _text(test: dict[str, Any]) -> str:
    """The traceback, or the dead process's output, or the one-line message."""
    return _xml_text(failure_text(test) or test["metadata"]["matrix"].get("log_tail") or test["metadata"]["matrix"]["message"])


# What XML 1.0 cannot carry, even escaped: most control characters, lone surrogates, U+FFFE/U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def junit_property(value: Any) -> str | None:
    """A record field's value as a test.xml property, as pytest's record_property writes one: a string as
    it is, any other value as JSON, None as no property (every field that may be None defaults to it).
    A string XML cannot carry as it is, or that starts with a quote, is written as JSON (its escapes are)."""
    if value is None:
        return None
    if isinstance(value, str) and not value.startswith('"') and not _NOT_XML.search(value):
        return value
    return json.dumps(value)


def from_junit_property(name: str, text: str) -> Any:
    """The value of record field `name` (or "nodeid") from its test.xml property: junit_property's
    inverse. ValueError when the text is not the JSON it must be."""
    if name == "nodeid" or "string" in SCHEMA_TYPES[name]:
        return json.loads(text) if text.startswith('"') else text
    return json.loads(text)


def _xml_text(text: str) -> str:
    """`text` with what XML cannot carry shown as an escape (\\x1b): for the parts of test.xml people read."""
    return _NOT_XML.sub(lambda m: m[0].encode("unicode_escape", "backslashreplace").decode(), text)


def junit_xml(tests: list[dict[str, Any]], metadata: dict[str, Any]) -> bytes:
    """One <testcase> per test; xfailed and skipped map to <skipped>, the rest of the failures to
    <failure>/<error>. Every field of the test's record travels as a property (junit_property), so
    nothing is lost in the mapping."""
    counts = {"tests": len(tests), "failures": 0, "errors": 0, "skipped": 0}
    suite = ET.Element("testsuite", name=metadata.get("target") or metadata.get("suite", "matrix"))
    props = ET.SubElement(suite, "properties")
    for key in ("suite", "variant", "device", "target", "shard_index", "total_shards", "torch_version"):
        ET.SubElement(props, "property", name=key, value=str(metadata.get(key, "")))
    # What the collector needs when report.json and the digest are lost: the filter and the tests not
    # run here (only when the writer knows them: an absent one is unknown, not empty).
    if metadata.get("test_filter") is not None:
        ET.SubElement(props, "property", name="test_filter", value=metadata["test_filter"])
    if metadata.get(COLLECTED_NOT_RUN) is not None:
        ET.SubElement(props, "property", name=COLLECTED_NOT_RUN, value=json.dumps(metadata[COLLECTED_NOT_RUN]))
    total_time = 0.0
    for test in tests:
        m = test["metadata"]["matrix"]
        file, _, name = test["nodeid"].partition("::")
        case = ET.SubElement(suite, "testcase", classname=_xml_text(f"{metadata.get('suite', '')}.{file}"), name=_xml_text(name or file),
                             time=f"{m['duration_s']:.3f}")
        total_time += m["duration_s"]
        case_props = ET.SubElement(case, "properties")
        for field_name, value in (("nodeid", test["nodeid"]), *((f, m.get(f)) for f in RUNTIME_FIELDS)):
            text = junit_property(value)
            if text is not None:
                ET.SubElement(case_props, "property", name=field_name, value=text)
        status = m["status"]
        if status in statuses.JUNIT_SKIPPED:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_xml_text(f"{status}: {m['message']}"))
        elif status in statuses.JUNIT_ERROR:
            counts["errors"] += 1
            ET.SubElement(case, "error", message=_xml_text(f"{status}: {m['message']}"), type=_xml_text(m.get("error_type") or status)).text = _text(test)
        elif status in statuses.JUNIT_FAILURE:
            counts["failures"] += 1
            ET.SubElement(case, "failure", message=_xml_text(f"{status}: {m['message']}"), type=_xml_text(m.get("error_type") or status)).text = _text(test)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total_time:.3f}")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
