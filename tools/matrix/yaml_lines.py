"""YAML loading that remembers where every value came from, for `file:line:col` messages.

matrix.yaml is plain data, so the loader refuses what only an attacker or an accident needs, before
it can cost time or memory: aliases (a "billion laughs" expands exponentially), nesting deeper than
MAX_DEPTH (the composer recurses; 100k levels crash the interpreter), merge keys, keys that are not
strings (YAML 1.1 reads `on:`/`yes:`/`off:` as booleans) and non-finite numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[Any, ...]
MAX_DEPTH = 20  # matrix.yaml needs 7 (expectations.s.v.devices.d.xfail.id); 20 leaves room
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(Exception):
    """A problem that stops loading: (line, column) 1-based, and what is wrong."""

    def __init__(self, line: int, col: int, message: str):
        super().__init__(f"{line}:{col}: {message}")
        self.line, self.col, self.message = line, col, message


@dataclass(frozen=True)
class Located:
    """A parsed document plus the (line, column) of every key path, 1-based."""

    data: Any
    marks: dict[Path, tuple[int, int]]
    duplicates: list[tuple[Path, int, int]]
    problems: list[tuple[int, int, str]] = field(default_factory=list)  # found while converting; loading went on

    def where(self, path: Path) -> tuple[int, int]:
        """The position of `path`, or of its closest ancestor that has one."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, (1, 1))


def decode(raw: bytes) -> str:
    """UTF-8 text; raise YamlProblem at the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        col = len(raw[line_start : e.start].decode("utf-8", "replace")) + 1
        raise YamlProblem(raw.count(b"\n", 0, e.start) + 1, col, f"not UTF-8 text (byte 0x{raw[e.start]:02x}: {e.reason}); save the file as UTF-8") from None


def load_located(text: str) -> Located:
    """Parse `text`; raise YamlProblem for refused constructs, yaml.YAMLError on syntax errors."""
    _refuse_aliases_and_depth(text)
    root = yaml.compose(text, Loader=_LOADER)
    marks: dict[Path, tuple[int, int]] = {}
    duplicates: list[tuple[Path, int, int]] = []
    problems: list[tuple[int, int, str]] = []
    data = _convert(root, (), marks, duplicates, problems) if root is not None else None
    return Located(data, marks, duplicates, problems)


def _refuse_aliases_and_depth(text: str) -> None:
    """One pass over the parser's events (no recursion, nothing built) before anything is composed."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise YamlProblem(*_pos(event), f"alias *{event.anchor} is not supported: matrix.yaml takes no anchors or aliases; write the value out")
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlProblem(*_pos(event), f"nested more than {MAX_DEPTH} levels deep; matrix.yaml needs at most 7")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _pos(node: yaml.Node | yaml.Event) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: Path, marks: dict, duplicates: list, problems: list) -> Any:
    marks.setdefault(path, _pos(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, problems)
            if key is None:
                continue
            if key in out:
                duplicates.append((path + (key,), *_pos(key_node)))
            marks[path + (key,)] = _pos(key_node)
            out[key] = _convert(value_node, path + (key,), marks, duplicates, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), marks, duplicates, problems) for i, item in enumerate(node.value)]
    value = _scalar(node)
    if isinstance(value, float) and not math.isfinite(value):
        problems.append((*_pos(node), f"{node.value} is not a finite number; give a number"))
    return value


def _key(node: yaml.Node, problems: list) -> str | None:
    """The key as a string (its text when YAML reads it as something else, reported); None to skip it."""
    if node.tag == _MERGE_TAG:
        problems.append((*_pos(node), "merge keys (<<) are not supported; write the keys out"))
        return None
    if not isinstance(node, yaml.ScalarNode):
        problems.append((*_pos(node), "a key must be a plain string, not a list or mapping"))
        return None
    key = _scalar(node)
    if key is None:
        problems.append((*_pos(node), f"key {node.value!r} is read as null (no key); give a name"))
        return None
    if not isinstance(key, str):
        kind = "the boolean" if isinstance(key, bool) else "the number"
        problems.append((*_pos(node), f"key {node.value!r} is read as {kind} {str(key).lower()}; quote it: '{node.value}':"))
        return str(node.value)  # go on as if quoted, so one problem is reported once
    return key


def _scalar(node: yaml.ScalarNode) -> Any:
    constructor = yaml.constructor.SafeConstructor()  # cheap; typed by the tag the composer resolved
    return constructor.construct_object(node, deep=True)
