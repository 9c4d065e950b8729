"""A file handed to a reader: its path, its fingerprint and a lazily detected encoding."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from chatbot.corpus.textfile import FileScan, TextFile, resolve_encoding, scan
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError


class Source:
    """One input file. Readers call `text()` for decoded lines or `binary()` for raw bytes."""

    def __init__(self, path: Path, options: ReadOptions, info: FileScan | None = None) -> None:
        self.path = Path(path)
        self.options = options
        self.info = info if info is not None else scan(self.path)
        self._encoding: str | None = None

    @property
    def encoding(self) -> str:
        """The encoding given with --encoding, else the detected one."""
        if self._encoding is None:
            self._encoding = resolve_encoding(self.path, self.info, self.options.encoding)
        return self._encoding

    def text(self) -> TextFile:
        """The file as decoded lines (streaming), reporting byte progress."""
        return TextFile(self.path, self.encoding, self.options.progress)

    def binary(self) -> BinaryIO:
        """The raw bytes, for readers whose parser decodes itself (JSON)."""
        if self.info.size == 0:
            raise ReaderError(self.path, "empty file")
        return open(self.path, "rb")

    def warn(self, message: str, line: int | None = None) -> None:
        """A non-fatal problem, reported as 'file:line: message'."""
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        self.options.warn(f"{where}: {message}")
