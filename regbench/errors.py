"""Errors that the CLI turns into one located line and an exit code."""
from __future__ import annotations


class RegbenchError(Exception):
    """A user-facing error: printed as one line, exit code 2."""

    exit_code = 2

    def __str__(self) -> str:
        # One line whatever went into the message (a key typed with a newline, a parser's
        # multi-line complaint): a log line must stay a log line.
        return super().__str__().strip().replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(RegbenchError):
    """A bad config value, located as ``file:line:col: key.path: message``."""

    def __init__(self, message: str, *, path: str = "", source: str = "",
                 line: int | None = None, column: int | None = None):
        self.message = message
        self.path = path
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self.located())

    def located(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class DataError(RegbenchError):
    """Missing or malformed dataset files."""


class OutputError(RegbenchError):
    """A results file could not be written (disk full, read-only folder) while running: exit 1.

    Files written before are intact (writes are atomic); rerunning the command resumes.
    """

    exit_code = 1
