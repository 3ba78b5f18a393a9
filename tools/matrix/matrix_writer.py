"""Rewriting matrix.yaml's expectations (xfail sync, xfail import): a ruamel.yaml round trip that
keeps comments, order and quoting, and a write that validates the new text with the same loader
(config.parse) before it atomically replaces the file. A rewrite that does not validate is a bug
in the tool: nothing is written."""

from __future__ import annotations

import bisect
import difflib
import io
import os
import re
import shutil
import tempfile
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from tools.matrix import config
from tools.matrix.errors import InvalidRewrite

MAX_REASON = 240
# ANSI/VT escape sequences: CSI (colours, cursor), OSC (titles, hyperlinks), and two-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")


def clean_reason(text: str) -> str:
    """A reason that reads as one line and survives YAML, the generated Starlark and the test's env:
    ANSI escapes dropped, the first non-blank line only, any other invisible or control character
    (bidi overrides, NUL, lone surrogates) written as a visible escape such as `\\u202e`."""
    text = _ANSI.sub("", text)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line.replace("\t", " ")
    line = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in line)
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long reasons
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def child(parent: Any, key: str) -> CommentedMap:
    if parent.get(key) is None:
        parent[key] = CommentedMap()
    return parent[key]


def expectations_of(doc: Any) -> CommentedMap:
    expectations = child(doc, "expectations")
    if hasattr(expectations, "fa"):
        expectations.fa.set_block_style()  # `expectations: {}` grows into a block mapping
    return expectations


def add_xfail(expectations: CommentedMap, suite: str, variant: str, device: str | None, test: str, reason: str) -> None:
    """expectations.<suite>.<variant>[.devices.<device>].xfail.<test> = reason"""
    spec = child(child(expectations, suite), variant)
    target = child(child(child(spec, "devices"), device), "xfail") if device else child(spec, "xfail")
    target[test] = reason


def add_xfails(doc: Any, additions: list[tuple[str, str, str | None, str, str]]) -> None:
    expectations = expectations_of(doc)
    for addition in additions:
        add_xfail(expectations, *addition)


def prune(node: Any) -> None:
    """Drop mappings that removals left empty (so no `xfail: {}` litter remains)."""
    if not isinstance(node, dict):
        return
    for key in list(node):
        prune(node[key])
        if isinstance(node[key], dict) and not node[key]:
            del node[key]


def edit(matrix_path: Path, change: Callable[[Any], None]) -> tuple[str, str]:
    """(old text, new text) of matrix.yaml after `change(doc)` on its round-trip document."""

    def change_matrix(doc: Any) -> None:
        change(doc)
        if doc.get("expectations") is not None and not doc["expectations"]:
            doc["expectations"] = CommentedMap()

    return _edit(matrix_path.read_text(), change_matrix)


def _edit(old: str, change: Callable[[Any], Any]) -> tuple[str, str]:
    """(old, new) text of a YAML mapping after `change(doc)`, which may return a new document."""
    y = _yaml()
    doc = y.load(old)
    if doc is None:  # an empty file (an expectations file before xfail sync fills it)
        doc = CommentedMap()
    detached = _detach_comment_lines(doc)
    doc = change(doc) or doc
    _reattach_comment_lines(doc, detached)
    buffer = io.StringIO()
    y.dump(doc, buffer)
    return old, buffer.getvalue()


@dataclass(frozen=True)
class Edit:
    """One file's text before and after a rewrite of the expectations."""

    path: Path
    display: str  # workspace-relative
    old: str
    new: str


EXPECTATIONS_FILE_HEADER = (
    "Expected failures and skips of suite {suite} (matrix.yaml: suites.{suite}.expectations_file), as matrix.yaml's\n"
    "expectations.{suite} would hold them: variant -> xfail / skip / devices. Written by\n"
    "`bazel run //tools:matrix -- xfail sync` (each reason the real error); each target reads the entries naming its files."
)


class _Expectations(MutableMapping):
    """matrix.yaml's `expectations` as xfail sync and import edit it, except that a suite with an
    expectations file reads and writes that file's document."""

    def __init__(self, inline: Any, files: dict[str, Any]) -> None:
        self.inline, self.files = inline, files

    def __getitem__(self, suite: str) -> Any:
        if suite in self.files:
            return self.files[suite]
        return self.inline[suite]

    def __setitem__(self, suite: str, value: Any) -> None:
        if suite in self.files:
            self.files[suite] = value
        else:
            self.inline[suite] = value

    def __delitem__(self, suite: str) -> None:
        if suite in self.files:
            self.files[suite] = CommentedMap()
        else:
            del self.inline[suite]

    def __iter__(self) -> Any:
        return iter([*self.inline, *(s for s, doc in self.files.items() if doc)])

    def __len__(self) -> int:
        return len(list(iter(self)))


def edit_expectations(workspace: Path, matrix_path: Path, matrix: config.Matrix | None, change: Callable[[MutableMapping], None]) -> list[Edit]:
    """Apply `change(expectations)` (suite -> variant -> ...) to matrix.yaml and the suites'
    expectations files (`matrix` says which suites have one); the files whose text changed."""
    files = {s.name: s.expectations_file for s in (matrix.suites if matrix else ()) if s.expectations_file}
    docs: dict[str, Any] = {}
    texts: dict[str, tuple[str, str]] = {}

    def change_matrix(doc: Any) -> None:
        y = _yaml()
        for suite, path in files.items():
            docs[suite] = y.load((workspace / path).read_text()) or CommentedMap()
        had = "expectations" in doc
        change(_Expectations(expectations_of(doc), docs))
        if not had and not doc["expectations"]:
            del doc["expectations"]
        for suite, path in files.items():
            old = (workspace / path).read_text()
            if not old.strip() and docs[suite]:
                docs[suite].yaml_set_start_comment(EXPECTATIONS_FILE_HEADER.format(suite=suite))
            buffer = io.StringIO()
            y.dump(docs[suite], buffer)
            texts[path] = (old, buffer.getvalue() if docs[suite] else "")

    old, new = edit(matrix_path, change_matrix)
    edits = [Edit(matrix_path, os.path.relpath(matrix_path, workspace), old, new)]
    edits += [Edit(workspace / path, path, *texts[path]) for path in files.values()]
    return [e for e in edits if e.old != e.new]


def validate(new: str, matrix_path: Path, workspace: Path, overrides: dict[str, str] | None = None) -> config.Matrix:
    """The new text through the loader every command uses (`overrides`: the new text of expectations
    files, by workspace-relative path); InvalidRewrite with its problems if not."""
    try:
        return config.parse(new, os.path.relpath(matrix_path, workspace), workspace, overrides=overrides)
    except config.MatrixError as e:
        raise InvalidRewrite(e.problems) from None


def write_all(edits: list[Edit], matrix_path: Path, workspace: Path) -> config.Matrix:
    """Validate every edited file together, then replace each atomically (matrix.yaml last)."""
    matrix_text = next((e.new for e in edits if e.path == matrix_path), None)
    overrides = {e.display: e.new for e in edits if e.path != matrix_path}
    matrix = validate(matrix_text if matrix_text is not None else matrix_path.read_text(), matrix_path, workspace, overrides)
    for e in sorted(edits, key=lambda e: e.path == matrix_path):
        _replace(e.path, e.new)
    return matrix


def write(matrix_path: Path, new: str, workspace: Path) -> config.Matrix:
    """Validate, then replace matrix.yaml atomically (a temp file in its directory, then os.replace):
    an interrupted or refused write leaves the old file as it was."""
    matrix = validate(new, matrix_path, workspace)
    _replace(matrix_path, new)
    return matrix


def _replace(path: Path, new: str) -> None:
    target = path.resolve()  # a symlinked file stays a symlink; its target is replaced
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
        shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def diff(old: str, new: str, name: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}"))


def _items(node: Any, out: list[tuple[Any, Any, bool]]) -> list[tuple[Any, Any, bool]]:
    """Every (mapping, key, is_leaf) in document order."""
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            leaf = not (isinstance(value, CommentedMap) and value)
            out.append((node, key, leaf))
            if not leaf:
                _items(value, out)
    return out


def _detach_comment_lines(doc: Any) -> tuple[list[tuple[Any, Any, bool]], list[tuple[str, int]]]:
    """Take the whole comment lines (and blank lines) that follow each leaf entry, noting which entry
    they followed. ruamel glues such lines to the last entry before them, so entries added or removed
    there would carry them off; _reattach_comment_lines puts them back before what followed them."""
    items = _items(doc, [])
    moved = []
    for i, (mapping, key, leaf) in enumerate(items):
        comment = mapping.ca.items.get(key) if leaf else None
        token = comment[2] if comment and len(comment) > 2 else None
        if not isinstance(token, CommentToken):
            continue
        first, _, lines = token.value.partition("\n")
        if not lines:
            continue
        if first:
            token.value = first + "\n"  # the end-of-line comment stays on its entry
        else:
            comment[2] = None
        moved.append((lines, i))
    return items, moved


def _reattach_comment_lines(doc: Any, detached: tuple[list[tuple[Any, Any, bool]], list[tuple[str, int]]]) -> None:
    old_items, moved = detached
    items = _items(doc, [])
    position = {(id(m), k): i for i, (m, k, _leaf) in enumerate(items)}
    leaves = [i for i, (_m, _k, leaf) in enumerate(items) if leaf]
    for lines, i in moved:
        # Before the first entry that followed them and is still there (else at the end).
        before = next((position[id(m), k] for m, k, _leaf in old_items[i + 1 :] if (id(m), k) in position), len(items))
        at = bisect.bisect_left(leaves, before)
        if not leaves:
            continue
        mapping, key, _leaf = items[leaves[at - 1] if at else leaves[-1]]
        comment = mapping.ca.items.setdefault(key, [None, None, None, None])
        if isinstance(comment[2], CommentToken):
            comment[2].value += lines
        else:
            comment[2] = CommentToken("\n" + lines, CommentMark(0), None)
