"""Ingesting files into the corpus store: walk, fingerprint, detect, read, store.

Inputs (files, and the members of archives) are read by worker processes on every core
(`parallel.py`) and stored here in input order, each as one transaction, so the store
comes out the same whatever the number of workers; an input too large to hold whole is
read here as a stream.
"""

from __future__ import annotations

import gc
import importlib.resources
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.corpus.blob import Blob, FileBlob, TarMemberBlob
from chatbot.corpus.dedup import Sketcher
from chatbot.corpus.formats import Format, format_named
from chatbot.corpus.inputs import Input, Walk, input_files, layout_of
from chatbot.corpus.parallel import (
    Pool,
    ReadJob,
    encoding_of,
    fits_worker,
    open_source,
    read_conversations,
    worker_outcome,
)
from chatbot.corpus.store import CorpusStore, SourceCounts, SourceMeta
from chatbot.corpus.types import WORK_FORMATS, ReadOptions
from chatbot.errors import ChatbotError, ReaderError

__all__ = ["FileResult", "IngestReport", "builtin_inputs", "default_jobs", "ingest",
           "ingest_builtin", "ingest_file", "input_files"]


@dataclass
class FileResult:
    """What happened to one input (a file, or an archive member `ARCHIVE!member`)."""

    path: Path
    format: str | None = None
    conversations: int = 0
    turns: int = 0
    skipped_conversations: int = 0
    duplicate_conversations: int = 0  # left out: stored turn for turn already
    unchanged_as: str | None = None  # the path it was first ingested from, when a no-op
    duplicate_of: str | None = None  # the film it repeats, when stored as a duplicate
    error: str | None = None
    done_bytes: int = 0  # how far through the inputs this is (progress)

    @property
    def found_nothing(self) -> bool:
        """Read without error, yet nothing came of it: no conversation stored, dropped or
        found stored already (a whitespace-only file, a novel read with --format srt)."""
        return (self.error is None and self.unchanged_as is None and self.duplicate_of is None
                and self.conversations == self.skipped_conversations
                == self.duplicate_conversations == 0)

    def count(self, counts: SourceCounts) -> FileResult:
        """Take the counts a store write returned (`CorpusStore.add_source`)."""
        self.conversations = counts.conversations
        self.turns = counts.turns
        self.skipped_conversations = counts.skipped_conversations
        self.duplicate_conversations = counts.duplicate_conversations
        self.unchanged_as = counts.unchanged_as
        self.duplicate_of = counts.duplicate_of
        return self


@dataclass
class IngestReport:
    """Counts for one ingest command (the --json object), plus per-input results."""

    results: list[FileResult] = field(default_factory=list)
    skipped_members: int = 0  # archive members of no known format (or another language)
    # Files a folder walk passed over for having no known format: folder -> names in it.
    skipped_files: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, int]:
        return {
            "files": len(self.results),
            "failed": sum(r.error is not None for r in self.results),
            "conversations": sum(r.conversations for r in self.results),
            "turns": sum(r.turns for r in self.results),
            "skipped_conversations": sum(r.skipped_conversations for r in self.results),
            "unchanged": sum(r.unchanged_as is not None for r in self.results),
            "duplicates": sum(r.duplicate_of is not None for r in self.results),
            "duplicate_conversations": sum(r.duplicate_conversations for r in self.results),
            "skipped_members": self.skipped_members,
            "skipped_files": sum(len(names) for names in self.skipped_files.values()),
            "empty_files": sum(r.found_nothing for r in self.results),
        }

    def nothing_ingested(self) -> bool:
        """Nothing came of the inputs: no conversation stored, and none found stored
        already (an unchanged file, a duplicate film, conversations stored before)."""
        counts = self.as_json()
        return not any(counts[key] for key in (
            "conversations", "unchanged", "duplicates", "duplicate_conversations"))


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def builtin_inputs(name: str) -> tuple[list[Path], Format]:
    """The data files of an installed dataset: 'chitchat' or 'chatterbot[:LANGUAGE]'."""
    key, _, language = name.partition(":")
    if key == "chitchat":
        try:
            data = importlib.resources.files("chitchat_dataset") / "dataset.json"
        except ModuleNotFoundError:
            raise ChatbotError("the chitchat-dataset package is not installed") from None
        return [Path(str(data))], format_named("chitchat")
    if key == "chatterbot":
        try:
            root = Path(str(importlib.resources.files("chatterbot_corpus") / "data"))
        except ModuleNotFoundError:
            raise ChatbotError("the chatterbot-corpus package is not installed") from None
        language = (language or "english").lower()
        folder = root / language
        if not folder.is_dir():
            known = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))
            raise ChatbotError(f"no ChatterBot corpus for {language!r}; languages: {known}")
        return sorted(folder.glob("*.yml")), format_named("chatterbot_yaml")
    raise ChatbotError(f"unknown built-in corpus {name!r}; use chitchat or chatterbot[:LANGUAGE]")


def source_meta(name: str, fmt: str, sha256: str) -> SourceMeta:
    """The work and OPUS layout of a source: films and books are works (by IMDb id where
    the layout gives one, else by content), dialogue sets are not."""
    layout = layout_of(name)
    work = None
    if fmt in WORK_FORMATS:
        work = f"imdb:{layout.imdb_id}" if layout.imdb_id is not None else f"sha256:{sha256}"
    return SourceMeta(work, layout.language, layout.year, layout.imdb_id)


def is_private(fmt: Format | str) -> bool:
    """Whether a format's sources are private data (chat exports): the store records
    them as such and is made readable by its owner only before they go in."""
    if isinstance(fmt, str):
        fmt = format_named(fmt)
    return bool(getattr(fmt, "private", False))


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Run the cyclic garbage collector rarely for a while: reading makes millions of
    short-lived tuples and no reference cycles, and at the default pace (a collection
    every 700 allocations) the collector cost about 7% of an SRT file's ingest."""
    threshold = gc.get_threshold()
    gc.set_threshold(1_000_000, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def _read_here(store: CorpusStore, blob: Blob, options: ReadOptions, fmt: Format | None,
               keep_duplicates: bool) -> FileResult:
    """Read one input in this process, streaming it into the store as one transaction."""
    result = FileResult(Path(blob.name))
    try:
        source, fmt, digest = open_source(blob, options, fmt)
        result.format = fmt.name
        known = store.source_with_digest(digest)
        if known is not None:
            result.unchanged_as = known["path"]
            return result
        with _rare_collections():
            counts = store.add_source(
                blob.stored_name, digest, fmt.name, encoding_of(source, fmt),
                read_conversations(source, fmt, options), options.min_turns,
                meta=source_meta(blob.name, fmt.name, digest), keep_duplicates=keep_duplicates,
                sketch=Sketcher() if fmt.name in WORK_FORMATS else None, private=is_private(fmt),
            )
    except ReaderError as e:
        result.error = str(e)
        return result
    except ChatbotError as e:
        result.error = f"{blob.name}: {e}"
        return result
    return result.count(counts)


def _store_read(store: CorpusStore, blob: Blob, data: bytes, options: ReadOptions,
                keep_duplicates: bool) -> FileResult:
    """Store what a worker read."""
    outcome = worker_outcome(data)
    for warning in outcome[-1]:
        options.warn(warning)
    result = FileResult(Path(blob.name))
    if outcome[0] == "error":
        result.error = outcome[1]
        return result
    kind, fmt, encoding, digest = outcome[:4]
    result.format = fmt
    if kind == "known":  # the worker found it stored: nothing was parsed
        known = store.source_with_digest(digest)
        if known is not None:
            result.unchanged_as = known["path"]
            return result
        meta = source_meta(blob.name, fmt, digest)
        if meta.imdb_id is None or store.film_with_imdb_id(meta.imdb_id) is None:
            return _read_here(store, blob, options, format_named(fmt), keep_duplicates)
        # Another release of a stored film: recorded as its duplicate, with nothing to read.
        return result.count(store.add_source(
            blob.stored_name, digest, fmt, encoding, [], options.min_turns, meta=meta,
            private=is_private(fmt)))
    conversations, sketch = outcome[4], outcome[5]
    try:
        counts = store.add_source(
            blob.stored_name, digest, fmt, encoding, conversations, options.min_turns,
            meta=source_meta(blob.name, fmt, digest), keep_duplicates=keep_duplicates,
            sketch=sketch, private=is_private(fmt))
    except ChatbotError as e:
        result.error = str(e)
        return result
    return result.count(counts)


def ingest_file(store: CorpusStore, path: Path | Blob, options: ReadOptions,
                fmt: Format | None = None, keep_duplicates: bool = False) -> FileResult:
    """Read one file (or blob) into the store, here, as one transaction; errors go into
    the result."""
    blob = path if isinstance(path, Blob) else FileBlob(path)
    return _read_here(store, blob, options, fmt, keep_duplicates)


class _Pending:
    """An input in the window: the worker reading it, once handed to one."""

    __slots__ = ("item", "worker")

    def __init__(self, item: Input) -> None:
        self.item = item
        self.worker: Any = None  # a parallel worker: its next outcome is this input's


def ingest(
    store: CorpusStore,
    paths: Iterable[Path],
    options: ReadOptions,
    fmt: Format | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    *,
    jobs: int = 1,
    language: str | None = None,
    keep_duplicates: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
) -> IngestReport:
    """Ingest every file under `paths` (archives read member by member); one input failing
    never stops the others. `jobs` worker processes read while this one stores, in input
    order. Ctrl-C stops it: the inputs stored before stay, the one being stored does not.
    """
    report = IngestReport()
    own = frozenset(store.path.resolve().with_name(store.path.name + suffix)
                    for suffix in ("", "-wal", "-shm", "-journal"))
    walk = Walk(paths, every_file=fmt is not None, language=language, on_skip=on_skip,
                exclude=own)
    inputs = (item for item in walk
              if item.blob is None or item.blob.path is None or item.blob.path.resolve() not in own)
    job = ReadJob(fmt.name if fmt else None, options.encoding, options.gap_seconds,
                  options.min_turns, str(store.path), keep_duplicates)
    pool = Pool(jobs) if jobs > 1 else None
    window: deque[_Pending] = deque()
    ahead = 2 * jobs + 2  # inputs read ahead of the one being stored
    try:
        while True:
            _fill(window, inputs, ahead)
            if not window:
                break
            if pool is not None and (len(window) > 1 or pool.started):
                for pending in window:
                    if pending.worker is None and pending.item.blob is not None and \
                            fits_worker(pending.item.blob):
                        pending.worker = pool.submit(pending.item.blob, job)
            result = _finish(store, window.popleft(), options, fmt, keep_duplicates)
            report.results.append(result)
            if on_file is not None:
                on_file(result)
    except BaseException:
        if pool is not None:
            pool.close(cancel=True)
        raise
    finally:
        report.skipped_members = walk.skipped
        report.skipped_files = walk.skipped_files
    if pool is not None:
        pool.close()
    return report


def _fill(window: deque[_Pending], inputs: Iterator[Input], ahead: int) -> None:
    """Read ahead up to `ahead` inputs; never past a large tar member, which must be read
    from the archive before the walk moves the archive on."""
    while len(window) < ahead:
        if window and isinstance(window[-1].item.blob, TarMemberBlob):
            return
        item = next(inputs, None)
        if item is None:
            return
        window.append(_Pending(item))


def _finish(store: CorpusStore, pending: _Pending, options: ReadOptions, fmt: Format | None,
            keep_duplicates: bool) -> FileResult:
    item = pending.item
    if item.blob is None:
        result = FileResult(Path(item.error.path), error=str(item.error))
    elif pending.worker is not None and (data := pending.worker.receive()):
        result = _store_read(store, item.blob, data, options, keep_duplicates)
    else:  # not for a worker, or its worker died: read here
        result = _read_here(store, item.blob, options, fmt, keep_duplicates)
    result.done_bytes = item.done_bytes
    return result


def ingest_builtin(db: Path, name: str) -> Path:
    """Ingest an installed dataset (see `builtin_inputs`) into the store at `db`, with
    the default options; a no-op when it is already there. Returns `db`."""
    files, fmt = builtin_inputs(name)
    with CorpusStore(db) as store:
        ingest(store, files, ReadOptions(), fmt)
    return db
