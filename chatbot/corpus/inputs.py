"""What `chatbot ingest` reads: files named or found in folders, and the members of the
archives among them (zip, tar, tar.gz), each as a blob; OPUS path layouts decoded.

Archives are read in place: a zip member is streamed from the zip when it is read, a tar
member (a tar can only be read in order) is taken into memory when small and read from
the open archive otherwise. Nothing is extracted to disk.
"""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chatbot.corpus.blob import (
    CORRUPT,
    Blob,
    BytesBlob,
    FileBlob,
    TarMemberBlob,
    ZipMemberBlob,
    inner_name,
    member_name,
    opening,
)
from chatbot.corpus.formats import KNOWN_EXTENSIONS
from chatbot.corpus.readers.cornell import SKIP_NAMES  # companions read through another
from chatbot.errors import ReaderError

# Tar members up to this size travel to a worker in memory; larger ones are read here,
# from the archive, as a stream.
MEMBER_IN_MEMORY_BYTES = 16 << 20

_TAR_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ARCHIVE_SUFFIXES = (".zip", *_TAR_SUFFIXES)
# OPUS: OpenSubtitles/{xml,raw}/LANG/YEAR/IMDBID/SUBID.xml(.gz), under any release folder.
_OPUS_LAYOUT = re.compile(
    r"(?:^|[/\\!])(?:xml|raw)[/\\](?P<language>[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)?)[/\\]"
    r"(?P<year>\d{1,4})[/\\](?P<imdb>\d+)[/\\][^/\\]+$"
)


@dataclass(frozen=True)
class Layout:
    """What an OPUS path says about its film."""

    language: str | None = None
    year: int | None = None
    imdb_id: int | None = None


def layout_of(name: str) -> Layout:
    """The language, year and IMDb id an OPUS path gives ('.../xml/en/1999/133093/1.xml.gz')."""
    match = _OPUS_LAYOUT.search(name)
    if match is None:
        return Layout()
    year = int(match["year"])
    return Layout(match["language"].lower(), year if year > 0 else None, int(match["imdb"]))


@dataclass(frozen=True)
class Input:
    """One thing to read: a blob, or an archive (or member) that could not be opened.
    `done_bytes` is how far into the input files the walk is once this is read (progress)."""

    blob: Blob | None
    done_bytes: int
    error: ReaderError | None = None


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def input_files(paths: Iterable[Path], every_file: bool = False,
                passed_over: Callable[[str, str], None] | None = None) -> Iterator[Path]:
    """The files named, with directories walked recursively in a stable order.

    Walks pass over hidden files and folders, the Cornell companion files and, unless
    `every_file` (as with --format), files of no known extension (a folder's README.md,
    say), which go to `passed_over(folder as named, path inside it)`; a file named
    explicitly is always read.
    """
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith(".") or name in SKIP_NAMES:
                    continue
                if every_file or _known(name) or is_archive(Path(name)):
                    yield Path(root) / name
                elif passed_over is not None:
                    passed_over(str(path), str((Path(root) / name).relative_to(path)))


def _known(name: str) -> bool:
    return Path(inner_name(name)).suffix.lower() in KNOWN_EXTENSIONS


class Walk:
    """The inputs under some paths, archives opened; records what it passes over: files
    of folders with no known format, by folder (`skipped_files`, leaving out the paths in
    `exclude`), and archive members of no known format, files and members of another
    language, archives inside archives (counted in `skipped`, each also given to
    `on_skip(name, reason)`)."""

    def __init__(self, paths: Iterable[Path], every_file: bool = False,
                 language: str | None = None,
                 on_skip: Callable[[str, str], None] | None = None,
                 exclude: frozenset[Path] = frozenset()) -> None:
        self.paths = list(paths)
        self.every_file = every_file
        self.language = language.lower() if language else None
        self.skipped = 0
        self.skipped_files: dict[str, list[str]] = {}
        self._on_skip = on_skip
        self._exclude = exclude

    def __iter__(self) -> Iterator[Input]:
        done = 0
        for path in input_files(self.paths, self.every_file, self._passed_over):
            size = _size(path)
            if is_archive(path):
                yield from self._members(path, done)
            elif (language := self._other_language(str(path))) is None:
                yield Input(FileBlob(path), done + size)
            else:
                self._skip(str(path), f"language {language}, not {self.language}")
            done += size

    def _passed_over(self, folder: str, name: str) -> None:
        if (Path(folder) / name).resolve() not in self._exclude:
            self.skipped_files.setdefault(folder, []).append(name)

    def _skip(self, name: str, reason: str) -> None:
        self.skipped += 1
        if self._on_skip is not None:
            self._on_skip(name, reason)

    def _other_language(self, name: str) -> str | None:
        """The language of an OPUS path when --language asks for another, else None."""
        if self.language is None:
            return None
        language = layout_of(name).language
        return language if language is not None and language != self.language else None

    def _wanted(self, archive: Path, member: str) -> bool:
        """Whether to read an archive member: of a known format (or --format given) and in
        the language asked for, where its layout tells; else it is skipped and counted."""
        name = member_name(archive, member)
        if is_archive(Path(member)):
            self._skip(name, "an archive inside an archive")
        elif not (self.every_file or _known(member)):
            self._skip(name, "not a known format")
        elif (language := self._other_language(member)) is not None:
            self._skip(name, f"language {language}, not {self.language}")
        else:
            return True
        return False

    def _members(self, path: Path, done: int) -> Iterator[Input]:
        if path.name.lower().endswith(".zip"):
            yield from self._zip_members(path, done)
        else:
            yield from self._tar_members(path, done)

    def _zip_members(self, path: Path, done: int) -> Iterator[Input]:
        try:
            with opening(str(path)):
                archive = zipfile.ZipFile(path)
        except ReaderError as e:
            yield Input(None, done + _size(path), e)
            return
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                if self._wanted(path, info.filename):
                    blob = ZipMemberBlob(path, info.filename, info.file_size)
                    yield Input(blob, done + info.header_offset + info.compress_size)

    def _tar_members(self, path: Path, done: int) -> Iterator[Input]:
        name = str(path)
        try:
            with opening(name):
                archive = tarfile.open(path, "r:*")
        except ReaderError as e:
            yield Input(None, done + _size(path), e)
            return
        except tarfile.TarError as e:
            yield Input(None, done + _size(path), ReaderError(name, f"not a tar archive ({e})"))
            return
        with archive:
            raw = archive.fileobj
            members = iter(archive)
            while True:
                try:
                    member = next(members)
                except StopIteration:
                    break
                except (*CORRUPT, OSError) as e:
                    # The members before were read; nothing after a damaged stretch can be.
                    yield Input(None, done + _size(path), ReaderError(
                        name, f"truncated or corrupt archive after this member "
                        f"({e or type(e).__name__}); the rest of the archive is not read"))
                    return
                if not member.isfile():
                    continue
                name = member_name(path, member.name)
                position = done + _position(raw, path)
                if not self._wanted(path, member.name):
                    continue
                if member.size > MEMBER_IN_MEMORY_BYTES:
                    yield Input(TarMemberBlob(path, archive, member), position)
                    continue
                try:
                    with opening(name):
                        data = archive.extractfile(member).read()
                except ReaderError as e:
                    yield Input(None, position, e)
                    return  # past a damaged stretch, a compressed tar cannot be read on
                blob = BytesBlob(name, data, member_name(path, member.name, absolute=True))
                yield Input(blob, done + _position(raw, path))


def _position(raw: object, path: Path) -> int:
    """How far into the archive file reading has gone (compressed bytes, where known)."""
    inner = getattr(raw, "fileobj", None)  # a compressed tar: the file under the decompressor
    for stream in (inner, raw):
        try:
            return stream.tell()
        except (AttributeError, OSError, ValueError):
            continue
    return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
