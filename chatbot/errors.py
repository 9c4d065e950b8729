"""The project's one error type for user mistakes: bad files, bad options, missing data."""

from __future__ import annotations

from pathlib import Path


class ChatbotError(Exception):
    """A problem the user can fix; the CLI prints it as one line, without a traceback."""


class ReaderError(ChatbotError):
    """A file could not be read: names the file, the line when known, and the reason."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")
