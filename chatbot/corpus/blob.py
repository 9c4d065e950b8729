"""Bytes to read: a file on disk, a member of an archive, or either behind gzip.

Readers never open paths themselves: they ask their source for a stream, which a blob
makes afresh each time (a source is read twice: once to fingerprint it, once to parse).
Archive members are streamed from the archive, never extracted to disk.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from chatbot.errors import ReaderError

# What separates an archive's path from a member's in a source name: ARCHIVE!member/path.
MEMBER_SEPARATOR = "!"

# Errors a damaged compressed stream raises part way through reading it.
CORRUPT = (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile, tarfile.TarError,
           lzma.LZMAError)


def is_gzip_name(name: str) -> bool:
    """A single gzip-compressed file (`x.xml.gz`), not a compressed tar (`x.tar.gz`)."""
    lower = name.lower()
    return lower.endswith(".gz") and not lower.endswith(".tar.gz")


def inner_name(name: str) -> str:
    """The name the content goes by once decompressed: 'a/b.xml.gz' -> 'a/b.xml'."""
    return name[:-3] if is_gzip_name(name) else name


class Blob:
    """A source of bytes. `name` is what messages and the store call it; `path` is the file
    on disk when the bytes are exactly that file's (so another process may open it)."""

    name: str
    path: Path | None = None
    size: int | None = None  # stored bytes, when known (compressed, for gzip)

    @property
    def stored_name(self) -> str:
        """What the store calls it: the name with the file's (or archive's) absolute path."""
        return self.name

    def open(self) -> BinaryIO:
        """A fresh stream of the (decompressed) bytes, from the start."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _gunzipped(raw: BinaryIO, name: str) -> BinaryIO:
    return gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip_name(name) else raw


class FileBlob(Blob):
    """A file on disk; `x.gz` is read decompressed."""

    def __init__(self, path: Path | str) -> None:
        self.file = Path(path)
        self.name = str(path)
        self.path = None if is_gzip_name(self.name) else self.file
        try:
            self.size = self.file.stat().st_size
        except OSError:
            self.size = None

    @property
    def stored_name(self) -> str:
        return str(self.file.resolve())

    def open(self) -> BinaryIO:
        with opening(self.name):
            return _gunzipped(open(self.file, "rb"), self.name)


def member_name(archive: Path, member: str, absolute: bool = False) -> str:
    """ARCHIVE!member/path, with the archive's absolute path when `absolute`."""
    return f"{archive.resolve() if absolute else archive}{MEMBER_SEPARATOR}{member}"


class BytesBlob(Blob):
    """An archive member read into memory (compressed, if it is `.gz`): small members of a
    tar, which can only be read in order, travel to a worker process this way."""

    def __init__(self, name: str, data: bytes, stored_name: str | None = None) -> None:
        self.name = name
        self.data = data
        self.size = len(data)
        self._stored_name = stored_name or name

    @property
    def stored_name(self) -> str:
        return self._stored_name

    def open(self) -> BinaryIO:
        return _gunzipped(io.BytesIO(self.data), self.name)


# One open ZipFile per archive and process: opening one reads its whole central
# directory, which for an archive of 100,000 films is megabytes.
_ZIPS: dict[Path, zipfile.ZipFile] = {}


def open_zip(path: Path) -> zipfile.ZipFile:
    """The archive, opened once per process."""
    found = _ZIPS.get(path)
    if found is None:
        if len(_ZIPS) >= 4:
            _ZIPS.pop(next(iter(_ZIPS))).close()
        with opening(str(path)):
            found = _ZIPS[path] = zipfile.ZipFile(path)
    return found


class ZipMemberBlob(Blob):
    """A member of a zip archive, streamed from it (random access: each open starts anew)."""

    def __init__(self, archive: Path, member: str, size: int | None = None) -> None:
        self.archive = Path(archive)
        self.member = member
        self.name = member_name(self.archive, member)
        self.size = size

    @property
    def stored_name(self) -> str:
        return member_name(self.archive, self.member, absolute=True)

    def open(self) -> BinaryIO:
        with opening(self.name):
            return _gunzipped(open_zip(self.archive).open(self.member), self.member)


class TarMemberBlob(Blob):
    """A member of a tar archive too large to hold in memory: read from the open archive
    (opening it again seeks back, which in a compressed tar means decompressing again)."""

    def __init__(self, archive: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.archive = Path(archive)
        self.tar = tar
        self.member = member
        self.name = member_name(self.archive, member.name)
        self.size = member.size

    @property
    def stored_name(self) -> str:
        return member_name(self.archive, self.member.name, absolute=True)

    def open(self) -> BinaryIO:
        with opening(self.name):
            stream = self.tar.extractfile(self.member)
            if stream is None:
                raise ReaderError(self.name, "not a regular file")
            return _gunzipped(stream, self.member.name)


@contextmanager
def opening(name: str) -> Iterator[None]:
    """Turn the errors of opening or reading a file or archive into one-line ReaderErrors."""
    try:
        yield
    except ReaderError:
        raise
    except IsADirectoryError:
        raise ReaderError(name, "is a directory, not a file") from None
    except FileNotFoundError:
        raise ReaderError(name, "no such file") from None
    except PermissionError:
        raise ReaderError(name, "permission denied") from None
    except CORRUPT as e:
        raise ReaderError(name, f"truncated or corrupt compressed data ({e or type(e).__name__})"
                          ) from None
    except OSError as e:
        raise ReaderError(name, f"cannot read: {e.strerror or e}") from None


class Guarded:
    """A binary stream whose reads fail as one-line ReaderErrors naming `name`: for
    parsers that pull the bytes themselves (XML, JSON, zip), which would pass a cut
    .gz's EOFError on as it is. Everything else is the wrapped stream's."""

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self._stream = stream
        self._name = name

    def read(self, size: int = -1) -> bytes:
        with opening(self._name):
            return self._stream.read(size)

    def readinto(self, buffer: bytearray) -> int:
        with opening(self._name):
            return self._stream.readinto(buffer)

    def __getattr__(self, attribute: str):
        return getattr(self._stream, attribute)

    def __enter__(self) -> Guarded:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
