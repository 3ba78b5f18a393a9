"""The errors the command line turns into one line and exit status 2 (see cli.main)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (an option, a file): the message says what is wrong and what to do."""


class ReportError(UserError):
    """The last report (compat.json) is missing or unreadable."""


class InvalidRewrite(Exception):
    """A rewrite of matrix.yaml did not validate: a bug in the tool, nothing was written."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems
