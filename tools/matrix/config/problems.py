"""What is wrong with a matrix.yaml, each as `matrix.yaml:LINE:COL: what is wrong`."""

from __future__ import annotations

import difflib
from typing import Any

from tools.matrix.yaml_lines import Located


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}valid: {', '.join(sorted(map(str, choices))) or '(none)'}"


def dotted(path: Any) -> str:
    return ".".join(str(p) for p in path) or "top level"


class Problems:
    """The problems of one file; those at key paths under a routed prefix belong to another file
    (a suite's expectations file: its entries are checked as expectations.<suite> of matrix.yaml)."""

    def __init__(self, display: str, doc: Located):
        self.display, self.doc = display, doc
        self._found: list[tuple[int, int, str]] = []
        self._routes: dict[tuple, Problems] = {}

    def route(self, prefix: tuple, other: Problems) -> None:
        """Key paths under `prefix` are `other`'s, at the rest of the path."""
        self._routes[prefix] = other

    def _owner(self, path: tuple) -> tuple[Problems, tuple]:
        for prefix, other in self._routes.items():
            if tuple(path[: len(prefix)]) == prefix:
                return other, tuple(path[len(prefix) :])
        return self, tuple(path)

    def add(self, path: tuple, message: str) -> None:
        owner, path = self._owner(path)
        owner.at_pos(*owner.doc.where(path), message)

    def where(self, path: tuple) -> tuple[str, int, int]:
        """(file, line, column) of `path`: comparable within one file."""
        owner, path = self._owner(path)
        return (owner.display, *owner.doc.where(path))

    def at_pos(self, line: int, col: int, message: str) -> None:
        self._found.append((line, col, message))

    @property
    def found(self) -> list[tuple[int, int, str]]:
        return list(self._found)

    @property
    def lines(self) -> list[str]:
        """Every problem once, in file order (this file's, then each routed file's)."""
        found = sorted(dict.fromkeys(self._found), key=lambda p: (p[0], p[1]))
        return [f"{self.display}:{line}:{col}: {message}" for line, col, message in found] + [
            line for other in self._routes.values() for line in other.lines
        ]
