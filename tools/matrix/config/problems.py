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
    def __init__(self, display: str, doc: Located):
        self.display, self.doc = display, doc
        self._found: list[tuple[int, int, str]] = []

    def add(self, path: tuple, message: str) -> None:
        self.at_pos(*self.doc.where(path), message)

    def at_pos(self, line: int, col: int, message: str) -> None:
        self._found.append((line, col, message))

    @property
    def found(self) -> list[tuple[int, int, str]]:
        return list(self._found)

    @property
    def lines(self) -> list[str]:
        """Every problem once, in file order."""
        found = sorted(dict.fromkeys(self._found), key=lambda p: (p[0], p[1]))
        return [f"{self.display}:{line}:{col}: {message}" for line, col, message in found]
