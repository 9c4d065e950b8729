"""Reading inputs on every core: worker processes read, decode and segment whole files
while this process stores them, each as one transaction, in input order.

A worker is a fresh interpreter running this module (see `Pool`); it imports only the
corpus readers. It ignores Ctrl-C, which the parent handles (a worker's traceback would
be noise), and ends when its input closes, so a parent killed with `kill -9` leaves
none behind. What it sends back is one `marshal`ed tuple per input (the cheapest form
for the parent to load, on its busy core):

    ("read", format, encoding, sha256, conversations, sketch, warnings)
    ("known", format, encoding, sha256, warnings)  stored already (the content, or the
                                                    film's IMDb id): nothing was parsed
    ("error", message, warnings)

Conversations travel as lists of (text, speaker, start_ms, end_ms) tuples.
"""

from __future__ import annotations

import gc
import hashlib
import marshal
import os
import pickle
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from chatbot.corpus.blob import Blob, inner_name
from chatbot.corpus.dedup import Sketcher
from chatbot.corpus.formats import Format, detect, format_named
from chatbot.corpus.inputs import layout_of
from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import CuesOutOfOrder
from chatbot.corpus.textfile import scan
from chatbot.corpus.types import WORK_FORMATS, Conversation, ReadOptions
from chatbot.errors import ChatbotError, ReaderError

# Inputs larger than this are read in the parent as a stream (memory stays flat); a
# worker holds a whole input's conversations until the parent takes them.
WORKER_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class ReadJob:
    """What a worker needs besides the blob (picklable: no callbacks)."""

    format_name: str | None
    encoding: str | None
    gap_seconds: float | None  # None: the format's own default
    min_turns: int
    db_path: str | None  # the store, read-only: inputs stored already are not parsed
    keep_duplicates: bool


def read_blob(blob: Blob, job: ReadJob) -> bytes:
    """In a worker: read one input completely; the outcome, marshalled."""
    warnings: list[str] = []
    options = ReadOptions(encoding=job.encoding, gap_seconds=job.gap_seconds,
                          warn=warnings.append)
    try:
        fmt = format_named(job.format_name) if job.format_name else None
        source, fmt, digest = open_source(blob, options, fmt)
        encoding = encoding_of(source, fmt)
        if _stored_already(job, digest, layout_of(blob.name).imdb_id):
            return marshal.dumps(("known", fmt.name, encoding, digest, warnings))
        sketcher = Sketcher() if fmt.name in WORK_FORMATS else None
        conversations = []
        for conversation in read_conversations(source, fmt, options):
            turns = [tuple(turn) for turn in conversation.turns]
            if sketcher is not None and len(turns) >= job.min_turns:  # as the store would
                sketcher.add([turn[0] for turn in turns])
            conversations.append(turns)
        sketch = sketcher.sketch() if sketcher is not None else None
        return marshal.dumps(("read", fmt.name, encoding, digest, conversations, sketch,
                              warnings))
    except ReaderError as e:
        return marshal.dumps(("error", str(e), warnings))
    except ChatbotError as e:
        return marshal.dumps(("error", f"{blob.name}: {e}", warnings))


def open_source(blob: Blob, options: ReadOptions, fmt: Format | None = None
                ) -> tuple[Source, Format, str]:
    """One pass over the bytes: the blob as a source, its format (given, or detected from
    its name, decompressed, and content) and its content digest."""
    info = scan(blob)
    fmt = fmt or detect(Path(inner_name(blob.name)), info.head)
    return Source(blob, options, info), fmt, content_digest(blob, info.sha256, fmt)


def read_conversations(source: Source, fmt: Format, options: ReadOptions
                       ) -> Iterator[Conversation]:
    """The source's conversations; a subtitle file too far out of order for the streaming
    sort is read again through an on-disk sort."""
    try:
        yield from fmt.read(source, options)
    except CuesOutOfOrder:
        sorted_options = replace(options, sort_externally=True)
        yield from fmt.read(Source(source.blob, sorted_options, source.info), sorted_options)


def content_digest(blob: Blob, own: str, fmt: Format) -> str:
    """The content digest of a source: its own, plus its companions' (Cornell's pair)."""
    companions = getattr(fmt.module, "companions", None)
    if companions is None or blob.path is None:
        return own
    parts = [own] + [scan(p).sha256 for p in companions(blob.path)]
    if len(parts) == 1:
        return own
    # Sorted: the pair is the same source whichever of its files was named.
    return hashlib.sha256("".join(sorted(parts)).encode()).hexdigest()


# Formats whose parser decodes the bytes itself (JSON is UTF; XML declares its encoding;
# an EPUB is a zip of XML).
_SELF_DECODING = frozenset({"chitchat", "telegram", "ttml", "opus", "epub"})


def encoding_of(source: Source, fmt: Format) -> str | None:
    """The text encoding to record for a source, None where the parser decodes itself."""
    return None if fmt.name in _SELF_DECODING else source.encoding


_STORE: dict[str, sqlite3.Connection] = {}


def _stored_already(job: ReadJob, sha256: str, imdb_id: int | None) -> bool:
    """Whether the store holds this content already, or (unless duplicates are kept) the
    film of this IMDb id: a read-only look that saves parsing; the parent decides for
    good inside its write transaction."""
    if job.db_path is None:
        return False
    conn = _STORE.get(job.db_path)
    if conn is None:
        try:
            conn = sqlite3.connect(f"file:{job.db_path}?mode=ro", uri=True)
            conn.execute("PRAGMA busy_timeout = 10000")
        except sqlite3.Error:
            return False
        _STORE[job.db_path] = conn
    try:
        if conn.execute("SELECT 1 FROM sources WHERE sha256 = ? LIMIT 1",
                        [sha256]).fetchone() is not None:
            return True
        return imdb_id is not None and not job.keep_duplicates and conn.execute(
            "SELECT 1 FROM sources WHERE imdb_id = ? AND duplicate_of IS NULL LIMIT 1",
            [imdb_id]).fetchone() is not None
    except sqlite3.Error:
        return False


class _Worker:
    """One worker process: tasks go down its stdin, outcomes come up its stdout, read
    ahead by a thread into a queue (so that the worker never waits on a full pipe while
    this process stores something else), in the order the tasks were sent."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The worker imports chatbot from wherever this process did.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env)
        self.outcomes: queue.Queue[bytes] = queue.Queue()
        self.in_flight = 0
        self.alive = True
        self._drain = threading.Thread(target=self._read, daemon=True, name="chatbot-worker")
        self._drain.start()

    def send(self, blob: Blob, job: ReadJob) -> None:
        data = pickle.dumps((blob, job))
        self.process.stdin.write(len(data).to_bytes(8, "little") + data)
        self.process.stdin.flush()
        self.in_flight += 1

    def receive(self) -> bytes:
        """The next outcome; b"" when the worker died before sending it."""
        data = self.outcomes.get() if self.alive else b""
        self.in_flight -= 1
        if not data:
            self.alive = False
        return data

    def _read(self) -> None:
        stream = self.process.stdout
        try:
            while True:
                size = int.from_bytes(stream.read(8) or b"\0", "little")
                data = stream.read(size) if size else b""
                self.outcomes.put(data if len(data) == size else b"")
                if not data:
                    return
        except (OSError, ValueError):
            self.outcomes.put(b"")

    def stop(self, kill: bool = False) -> None:
        try:
            if kill:
                self.process.kill()
            else:
                self.process.stdin.write((0).to_bytes(8, "little"))
            self.process.stdin.close()
        except OSError:
            pass
        self.process.wait()
        self._drain.join()
        self.process.stdout.close()


def _serve(tasks: BinaryIO, out: BinaryIO) -> None:
    """A worker: read (blob, job) tasks from `tasks`, write each outcome to `out`."""
    # Ctrl-C at a terminal reaches the whole process group; the parent handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Reading makes millions of short-lived tuples and no reference cycles.
    gc.set_threshold(1_000_000, 50, 50)
    try:
        while size := int.from_bytes(tasks.read(8) or b"\0", "little"):
            blob, job = pickle.loads(tasks.read(size))
            data = read_blob(blob, job)
            out.write(len(data).to_bytes(8, "little") + data)
            out.flush()
    except (OSError, EOFError):
        pass  # the parent has gone: nobody to tell


class Pool:
    """Worker processes, started on first use. Each is a fresh interpreter running this
    module (`python -m`), not a multiprocessing child: that would import the caller's
    main script again (a script without a `__main__` guard would start over), or fork
    a process that may hold TensorFlow's threads."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._workers: list[_Worker] = []
        self._failed = False  # no worker could start: everything is read here

    @property
    def started(self) -> bool:
        return bool(self._workers)

    def submit(self, blob: Blob, job: ReadJob) -> _Worker | None:
        """Hand `blob` to the least busy worker, whose `receive()` gives its outcome after
        those of the blobs handed to it before; None where no worker can take it."""
        if not self._workers:
            if self._failed:
                return None
            try:
                self._workers = [_Worker() for _ in range(self.jobs)]
            except OSError:
                self._failed = True
                return None
        alive = [w for w in self._workers if w.alive]
        if not alive:
            return None
        worker = min(alive, key=lambda w: w.in_flight)
        try:
            worker.send(blob, job)
        except OSError:
            worker.alive = False
            return None
        return worker

    def close(self, cancel: bool = False) -> None:
        for worker in self._workers:
            worker.stop(kill=cancel)
        self._workers = []


def worker_outcome(data: bytes) -> tuple:
    """A worker's outcome, with conversations as Conversation objects."""
    outcome = marshal.loads(data)
    if outcome[0] == "read":
        kind, fmt, encoding, sha256, conversations, sketch, warnings = outcome
        return (kind, fmt, encoding, sha256, [Conversation(c) for c in conversations], sketch,
                warnings)
    return outcome


def fits_worker(blob: Blob) -> bool:
    """Whether a worker may read this input whole."""
    return blob.size is not None and blob.size <= WORKER_MAX_BYTES




if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
