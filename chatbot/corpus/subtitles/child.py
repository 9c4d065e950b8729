"""Parsing and cleaning a large subtitle file in a second process.

Parsing and cleaning cues are most of the Python work of an ingest. For a large file they
run in a child process, on another core, while this process orders and segments the
cues it receives and a thread writes them to SQLite (bulk_write).

The child is a fresh interpreter running this module (`python -m`), not a
multiprocessing child: that would import the caller's main script again, or fork a
process that may hold TensorFlow's threads. It reads its job (pickled) from stdin and
writes length-prefixed messages to stdout: (kind, payload, warnings, bytes read), where
"cues" and "end" carry a batch of cleaned cues, "error" a ReaderError's fields and
"crash" a traceback. Messages are in `marshal`'s format: it loads a batch's nested
tuples and lists in half the time `pickle` takes, on the parent's busy core (both ends
are the same interpreter, the one case marshal's format is promised for). A thread here
reads them ahead into a bounded queue, so memory stays flat.
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import CleanCue, Cue
from chatbot.corpus.subtitles.segment import cleaned
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ChatbotError, ReaderError

# Smaller files are read in this process: starting a child costs about 0.1 s, which a
# file this large wins back (measured: 30 MB ingest 10% faster with the child).
CHILD_MIN_BYTES = 16 << 20
_BATCH = 2048  # cleaned cues per message
_QUEUED = 16  # messages read ahead of the consumer

Parser = Callable[[Source], Iterator[Cue]]


def _serve(job: BinaryIO, out: BinaryIO) -> None:
    """The child: read (parse, path, encoding, scan) from `job`, send batches to `out`."""
    # Cues make millions of short-lived tuples and no reference cycles, and this process
    # does nothing else: the cyclic collector would only cost time (a fifth of it).
    gc.disable()
    parse, path, encoding, info = pickle.load(job)
    warnings: list[str] = []
    read = [0]

    def progress(done: int) -> None:
        read[0] = done

    def send(kind: str, payload: object) -> None:
        data = marshal.dumps((kind, payload, warnings, read[0]))
        out.write(len(data).to_bytes(8, "little") + data)
        out.flush()
        warnings.clear()

    options = ReadOptions(encoding=encoding, warn=warnings.append, progress=progress)
    source = Source(Path(path), options, info)
    batch: list[CleanCue] = []
    try:
        try:
            for cue in cleaned(parse(source)):
                batch.append(cue)
                if len(batch) >= _BATCH:
                    send("cues", batch)
                    batch = []
            send("end", batch)
        except ReaderError as e:
            send("error", (e.path, e.reason, e.line))
        except Exception:
            send("crash", traceback.format_exc())
    except OSError:
        pass  # the parent has gone, or stopped reading: nobody to tell


def _start(parse: Parser, source: Source, encoding: str) -> subprocess.Popen | None:
    """Start a child on the file; None where none can start."""
    env = dict(os.environ)
    # The child imports chatbot from wherever this process did.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            # Its errors come back as messages; one that cannot even start is replaced.
            stderr=subprocess.DEVNULL, env=env,
        )
    except OSError:
        return None
    try:
        pickle.dump((parse, str(source.path), encoding, source.info), process.stdin)
        process.stdin.close()
    except OSError:
        process.kill()
        process.wait()
        return None
    return process


def _drain(process: subprocess.Popen, inbox: queue.Queue) -> None:
    """A thread of the parent: read the child's messages as they come, so that the child
    never waits on a full pipe while this process is busy (a pipe holds 64 KB). Each is
    read whole as bytes (the read releases the GIL; unpickling is left to the consumer);
    b"" marks the end of the child's output."""
    stream = process.stdout
    try:
        while True:
            size = int.from_bytes(stream.read(8) or b"\0", "little")
            data = stream.read(size) if size else b""
            inbox.put(data if len(data) == size else b"")
            if not data:
                return
    except (OSError, ValueError):
        inbox.put(b"")


def cleaned_in_child(parse: Parser, source: Source) -> Iterator[CleanCue]:
    """The file's cleaned cues, in file order, parsed by a child process.

    Warnings and progress reach `source.options` as if read here, and a ReaderError in
    the child is raised here. Where no child starts, the file is read in this process.
    """
    encoding = source.encoding  # an unknown encoding fails here, before any child
    process = _start(parse, source, encoding)
    if process is None:
        yield from cleaned(parse(source))
        return
    inbox: queue.Queue = queue.Queue(maxsize=_QUEUED)
    drain = threading.Thread(target=_drain, args=(process, inbox), daemon=True,
                             name="chatbot-reader")
    drain.start()
    finished = received = False
    try:
        while not finished:
            data = inbox.get()
            if not data:
                if received:
                    raise ChatbotError(f"{source.path}: the reader process stopped "
                                       "unexpectedly")
                break  # it did not start (no interpreter, no chatbot there): read here
            kind, payload, warnings, read = marshal.loads(data)
            received = True
            for text in warnings:
                source.options.warn(text)
            if read:
                source.options.progress(read)
            if kind == "error":
                raise ReaderError(*payload)
            if kind == "crash":
                raise RuntimeError(f"the reader process failed:\n{payload}")
            finished = kind == "end"
            yield from payload
    finally:
        if not finished:
            process.kill()  # stopped early (an error, or the caller gave up): no waiting
            while drain.is_alive():  # unblock a drain waiting for room in the queue
                try:
                    inbox.get(timeout=0.1)
                except queue.Empty:
                    pass
        drain.join()
        process.stdout.close()
        process.wait()
    if not received:
        yield from cleaned(parse(source))


if __name__ == "__main__":
    _serve(sys.stdin.buffer, sys.stdout.buffer)
