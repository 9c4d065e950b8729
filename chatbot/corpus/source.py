"""A file handed to a reader: its bytes, its fingerprint and a lazily detected encoding."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from chatbot.corpus.blob import Blob, Guarded, opening
from chatbot.corpus.textfile import FileScan, TextFile, as_blob, resolve_encoding, scan
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError


class Source:
    """One input: a file, or a member of an archive. Readers call `text()` for decoded
    lines or `binary()` for raw bytes; `path` names it in messages (for a member,
    `ARCHIVE!member`, which is no path on disk)."""

    def __init__(self, file: Blob | Path, options: ReadOptions, info: FileScan | None = None
                 ) -> None:
        self.blob = as_blob(file)
        self.path = Path(self.blob.name)
        self.options = options
        self.info = info if info is not None else scan(self.blob)
        self._encoding: str | None = None

    @property
    def encoding(self) -> str:
        """The encoding given with --encoding, else the detected one."""
        if self._encoding is None:
            self._encoding = resolve_encoding(self.path, self.info, self.options.encoding)
        return self._encoding

    def text(self) -> TextFile:
        """The file as decoded lines (streaming), reporting byte progress."""
        return TextFile(self.blob, self.encoding, self.options.progress)

    def binary(self) -> BinaryIO:
        """The raw bytes, for readers whose parser decodes itself (JSON, XML, zip); a
        damaged compressed stream fails as this source's one-line ReaderError."""
        if self.info.size == 0:
            raise ReaderError(self.path, "empty file")
        return Guarded(self.blob.open(), str(self.path))

    def reading(self):
        """A context in which errors of a damaged stream become this source's ReaderError
        (for a reader whose library raises them outside `binary()`'s reads: zipfile)."""
        return opening(str(self.path))

    def warn(self, message: str, line: int | None = None) -> None:
        """A non-fatal problem, reported as 'file:line: message'."""
        where = f"{self.path}:{line}" if line is not None else str(self.path)
        self.options.warn(f"{where}: {message}")
