"""YAML loading that remembers where every value came from, for `file:line:col` messages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Located:
    """A parsed document plus the (line, column) of every key path, 1-based."""

    data: Any
    marks: dict[Path, tuple[int, int]]
    duplicates: list[tuple[Path, int, int]]

    def where(self, path: Path) -> tuple[int, int]:
        """The position of `path`, or of its closest ancestor that has one."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, (1, 1))


def load_located(text: str) -> Located:
    """Parse `text`; raise yaml.YAMLError on syntax errors."""
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml when present
    marks: dict[Path, tuple[int, int]] = {}
    duplicates: list[tuple[Path, int, int]] = []
    data = _convert(root, (), marks, duplicates) if root is not None else None
    return Located(data, marks, duplicates)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(node: yaml.Node, path: Path, marks: dict, duplicates: list) -> Any:
    marks.setdefault(path, _pos(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else str(_scalar(key_node))
            if key in out:
                duplicates.append((path + (key,), *_pos(key_node)))
            marks[path + (key,)] = _pos(key_node)
            out[key] = _convert(value_node, path + (key,), marks, duplicates)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, path + (i,), marks, duplicates) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        return yaml.safe_load(yaml.serialize(node))
    constructor = yaml.constructor.SafeConstructor()  # cheap; typed by the tag the composer resolved
    return constructor.construct_object(node, deep=True)
