"""Ingesting files into the corpus store: walk, fingerprint, detect, read, store."""

from __future__ import annotations

import gc
import hashlib
import importlib.resources
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from chatbot.corpus.formats import KNOWN_EXTENSIONS, Format, detect, format_named
from chatbot.corpus.readers.cornell import SKIP_NAMES  # companions read through another
from chatbot.corpus.source import Source
from chatbot.corpus.store import CorpusStore, SourceCounts
from chatbot.corpus.subtitles.cue import CuesOutOfOrder
from chatbot.corpus.textfile import scan
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ChatbotError, ReaderError


@dataclass
class FileResult:
    """What happened to one input file."""

    path: Path
    format: str | None = None
    conversations: int = 0
    turns: int = 0
    skipped_conversations: int = 0
    unchanged_as: str | None = None  # the path it was first ingested from, when a no-op
    error: str | None = None

    def count(self, counts: SourceCounts) -> FileResult:
        """Take the counts a store write returned (`CorpusStore.add_source`)."""
        self.conversations = counts.conversations
        self.turns = counts.turns
        self.skipped_conversations = counts.skipped_conversations
        return self


@dataclass
class IngestReport:
    """Counts for one ingest command (the --json object), plus per-file results."""

    results: list[FileResult] = field(default_factory=list)

    def as_json(self) -> dict[str, int]:
        return {
            "files": len(self.results),
            "failed": sum(r.error is not None for r in self.results),
            "conversations": sum(r.conversations for r in self.results),
            "turns": sum(r.turns for r in self.results),
            "skipped_conversations": sum(r.skipped_conversations for r in self.results),
            "unchanged": sum(r.unchanged_as is not None for r in self.results),
        }


def input_files(paths: Iterable[Path], every_file: bool = False) -> Iterator[Path]:
    """The files named, with directories walked recursively in a stable order.

    Walks pass over hidden files and folders, the Cornell companion files and, unless
    `every_file` (as with --format), files of no known extension (a folder's README.md,
    say); a file named explicitly is always read.
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
                if every_file or Path(name).suffix.lower() in KNOWN_EXTENSIONS:
                    yield Path(root) / name


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


def _digest(path: Path, own: str, fmt: Format) -> str:
    """The content digest of a source: its own, plus its companions' (Cornell's pair)."""
    companions = getattr(fmt.module, "companions", None)
    if companions is None:
        return own
    parts = [own] + [scan(p).sha256 for p in companions(path)]
    if len(parts) == 1:
        return own
    # Sorted: the pair is the same source whichever of its files was named.
    return hashlib.sha256("".join(sorted(parts)).encode()).hexdigest()


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


def ingest_file(
    store: CorpusStore, path: Path, options: ReadOptions, fmt: Format | None = None
) -> FileResult:
    """Read one file into the store as one transaction; errors go into the result."""
    result = FileResult(path)
    try:
        info = scan(path)
        fmt = fmt or detect(path, info.head)
        result.format = fmt.name
        digest = _digest(path, info.sha256, fmt)
        known = store.source_with_digest(digest)
        if known is not None:
            result.unchanged_as = known["path"]
            return result

        def store_with(opts: ReadOptions):
            source = Source(path, opts, info)
            return store.add_source(
                str(path.resolve()), digest, fmt.name, _encoding_of(source, fmt),
                fmt.read(source, opts), opts.min_turns,
            )

        with _rare_collections():
            try:
                counts = store_with(options)
            except CuesOutOfOrder:
                # Too disordered to sort while streaming: read again through an on-disk sort.
                counts = store_with(replace(options, sort_externally=True))
    except ReaderError as e:
        result.error = str(e)
        return result
    except ChatbotError as e:
        result.error = f"{path}: {e}"
        return result
    return result.count(counts)


# Formats whose parser decodes the bytes itself (JSON is UTF; XML declares its encoding).
_SELF_DECODING = frozenset({"chitchat", "ttml"})


def _encoding_of(source: Source, fmt: Format) -> str | None:
    """The text encoding to record for a source, None where the parser decodes itself."""
    return None if fmt.name in _SELF_DECODING else source.encoding


def ingest(
    store: CorpusStore,
    paths: Iterable[Path],
    options: ReadOptions,
    fmt: Format | None = None,
    on_file: Callable[[FileResult], None] | None = None,
) -> IngestReport:
    """Ingest every file under `paths`; one file failing never stops the others."""
    report = IngestReport()
    own = {store.path.resolve().with_name(store.path.name + suffix)
           for suffix in ("", "-wal", "-shm", "-journal")}
    for path in input_files(paths):
        if path.resolve() in own:
            continue  # never read the store into itself
        result = ingest_file(store, path, options, fmt)
        report.results.append(result)
        if on_file is not None:
            on_file(result)
    return report


def ingest_builtin(db: Path, name: str) -> Path:
    """Ingest an installed dataset (see `builtin_inputs`) into the store at `db`, with
    the default options; a no-op when it is already there. Returns `db`."""
    files, fmt = builtin_inputs(name)
    with CorpusStore(db) as store:
        ingest(store, files, ReadOptions(), fmt)
    return db
