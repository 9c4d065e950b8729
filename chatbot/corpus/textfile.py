"""Opening real-world text files: fingerprint, encoding detection, streaming line reading.

Files are read in fixed-size chunks, never whole, so memory stays flat for any size.
"""

from __future__ import annotations

import codecs
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from chatbot.corpus.blob import Blob, FileBlob, opening
from chatbot.errors import ReaderError

CHUNK = 1 << 20
SAMPLE = 1 << 16

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes tells: its digest, size, and how it is encoded."""

    sha256: str
    size: int
    head: bytes  # the first SAMPLE bytes
    bom_encoding: str | None
    utf8_valid: bool
    first_bad_offset: int | None  # where UTF-8 decoding first failed
    bad_sample: bytes  # bytes around that place, for charset detection


def as_blob(file: Blob | Path | str) -> Blob:
    """A blob for a path (callers may still pass plain paths)."""
    return file if isinstance(file, Blob) else FileBlob(file)


def scan(file: Blob | Path) -> FileScan:
    """Hash the (decompressed) bytes and check UTF-8 validity in one streaming pass."""
    blob = as_blob(file)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    head = b""
    bad_at: int | None = None
    bad_sample = b""
    with opening(blob.name), blob.open() as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if not head:
                head = chunk[:SAMPLE]
            if bad_at is None:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as e:
                    bad_at = size + e.start
                    bad_sample = chunk[max(0, e.start - SAMPLE // 2) : e.start + SAMPLE // 2]
            size += len(chunk)
        if bad_at is None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                bad_at = size
    bom = next((enc for mark, enc in _BOMS if head.startswith(mark)), None)
    return FileScan(digest.hexdigest(), size, head, bom, bad_at is None, bad_at, bad_sample)


def resolve_encoding(path: Path, info: FileScan, override: str | None = None) -> str:
    """The encoding to read the file with; raises ReaderError for binary or empty files."""
    if override:
        try:
            return codecs.lookup(override).name
        except LookupError:
            raise ReaderError(path, f"unknown encoding {override!r}") from None
    if info.size == 0:
        raise ReaderError(path, "empty file")
    if info.bom_encoding:
        return info.bom_encoding
    if b"\x00" in info.head:
        # Text in UTF-16/32 without a byte-order mark is rare; NUL bytes mean binary.
        raise ReaderError(path, "binary file, not text (pass --encoding if it is UTF-16/32)")
    if info.utf8_valid:
        return "utf-8"
    return _detect_legacy(path, info)


def _detect_legacy(path: Path, info: FileScan) -> str:
    """charset-normalizer's guess for non-UTF-8 text, else Windows-1252 or Latin-1.

    The detector gives up on some real files (Cornell's ` +++$+++ ` separators read as
    noise); the single-byte Western encodings are then by far the likeliest, and Latin-1
    decodes any byte, so the file is read and --encoding can still correct it.
    """
    from charset_normalizer import from_bytes

    sample = info.head + b"\n" + info.bad_sample
    best = from_bytes(sample).best()
    if best is not None:
        return codecs.lookup(best.encoding).name
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _byte_oriented(encoding: str) -> bool:
    """True for encodings where b"\\n" is always a line end (UTF-8, cp1252, Latin-1...)."""
    try:
        return "a\n".encode(encoding) == b"a\n" and not encoding.startswith(("utf-16", "utf-32"))
    except (LookupError, UnicodeError):
        return False


class TextFile:
    """A text file opened for streaming: decoded lines with their numbers and byte progress."""

    def __init__(self, file: Blob | Path, encoding: str, progress=None) -> None:
        self.blob = as_blob(file)
        self.path = self.blob.name  # for messages
        self.encoding = encoding
        self.line = 0  # number of the line last yielded (1-based)
        self._progress = progress

    def lines(self) -> Iterator[str]:
        """Yield lines without their line ending (LF or CRLF), streaming; `self.line` is
        the number of the line last yielded."""
        number = 0
        for chunk in self.chunks():
            # Every chunk but the last ends with a line end, so the line count at each
            # chunk boundary agrees with the one chunks() keeps for its own messages.
            parts = chunk.split("\n")
            if not parts[-1]:
                parts.pop()
            for part in parts:
                number += 1
                self.line = number
                yield part

    def chunks(self, size: int = CHUNK) -> Iterator[str]:
        """Yield the text in large pieces that end at a line end, with LF line ends only.

        For parsers that work on many lines at once (a regex over a chunk runs in C).
        `self.line` counts the lines yielded so far.
        """
        self.line = 0
        with opening(self.path), self.blob.open() as raw:
            if _byte_oriented(self.encoding):
                pieces = self._byte_chunks(raw, size)
            else:
                pieces = self._wide_chunks(raw, size)
            try:
                for piece in pieces:
                    yield piece
                    # Reported once the piece is processed: progress means work done.
                    if self._progress is not None:
                        self._progress(raw.tell())
            finally:
                pieces.close()  # before `raw` closes: the decoder still refers to it

    def _byte_chunks(self, raw: BinaryIO, size: int) -> Iterator[str]:
        encoding = "utf-8" if self.encoding == "utf-8-sig" else self.encoding
        rest = b""
        first = True
        while True:
            data = raw.read(size)
            block = rest + data
            if data:
                cut = block.rfind(b"\n") + 1
                if cut == 0:
                    rest = block
                    continue
                block, rest = block[:cut], block[cut:]
            elif not block:
                return
            try:
                text = block.decode(encoding)
            except UnicodeDecodeError as e:
                line = self.line + block.count(b"\n", 0, e.start) + 1
                raise ReaderError(
                    self.path, f"cannot decode as {self.encoding}; pass --encoding", line
                ) from None
            if first:
                text, first = text.lstrip("\ufeff"), False
            self.line += text.count("\n")
            yield text.replace("\r\n", "\n") if "\r" in text else text
            if not data:
                return

    def _wide_chunks(self, raw: BinaryIO, size: int) -> Iterator[str]:
        text = io.TextIOWrapper(raw, encoding=self.encoding, errors="strict", newline=None)
        rest = ""
        first = True
        try:
            while True:
                data = text.read(size)
                block = rest + data
                cut = block.rfind("\n") + 1 if data else len(block)
                block, rest = block[:cut], block[cut:]
                if block:
                    self.line += block.count("\n")
                    yield block.lstrip("\ufeff") if first else block
                    first = False
                if not data and not rest:
                    return
        except UnicodeDecodeError:
            raise ReaderError(
                self.path, f"cannot decode as {self.encoding}; pass --encoding", self.line + 1
            ) from None
        finally:
            text.detach()  # the caller owns (and closes) the raw file

    def error(self, reason: str, line: int | None = None) -> ReaderError:
        """A ReaderError at the current (or given) line of this file."""
        return ReaderError(self.path, reason, self.line if line is None else line)
