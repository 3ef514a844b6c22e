"""Errors that the CLI turns into one located line and an exit code."""
from __future__ import annotations

import unicodedata

# Unicode categories that print as nothing or break a line: controls (NUL, ESC), format
# characters (zero-width space, BOM), separators, unassigned and private-use code points.
INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def visible(text: str) -> str:
    """``text`` with every invisible character written as an escape (``\u200b``, ``\x00``),
    so that a key with a zero-width space or a column name behind a BOM reads as what it is."""
    out = []
    for char in text:
        if char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char != " " and unicodedata.category(char) in INVISIBLE | {"Zs"} and char != "\t":
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000
                       else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


class RegbenchError(Exception):
    """A user-facing error: printed as one line, exit code 2."""

    exit_code = 2

    def __str__(self) -> str:
        # One line whatever went into the message (a key typed with a newline, a parser's
        # multi-line complaint), and nothing invisible in it: a log line must stay a log line.
        return visible(super().__str__().strip())


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
