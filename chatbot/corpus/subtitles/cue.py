"""A subtitle cue and the machinery to put cues in start-time order with flat memory."""

from __future__ import annotations

import bisect
import json
import sqlite3
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from typing import NamedTuple

# Cues this far out of place are reordered in memory; further ones trigger an external sort.
REORDER_WINDOW = 4096


class Cue(NamedTuple):
    """One timed subtitle: start and end in milliseconds, its text (lines separated by
    "\n", not yet cleaned), where it was read.

    A NamedTuple rather than a frozen dataclass: files hold millions of cues, and a tuple
    is three times cheaper to make.
    """

    start_ms: int
    end_ms: int
    text: str
    line: int  # line number of the timing line, for messages
    speaker: str | None = None  # from the format itself (ASS Name field, VTT <v> span)


class CuesOutOfOrder(Exception):
    """Internal: the file is too far out of order for the in-memory window; sort externally."""


def _start(cue: Cue) -> int:
    return cue.start_ms


def in_start_order(cues: Iterable[Cue], window: int = REORDER_WINDOW) -> Iterator[Cue]:
    """Yield cues sorted by start time, holding at most `window` of them in memory.

    Real subtitle files are nearly sorted (a misplaced cue or two), so a small sorted
    window fixes them while streaming. A cue that lands before one already yielded raises
    CuesOutOfOrder, and the caller starts again with `externally_sorted`.
    """
    # A deque kept sorted, not a heap: a cue in order (nearly all of them) is appended
    # at the end in O(1); only a misplaced one is inserted by bisection. Ties keep file
    # order.
    held: deque[Cue] = deque()
    last = -1  # start of the cue yielded last
    newest = -1  # start of the last cue held
    for cue in cues:
        start = cue.start_ms
        if start >= newest:
            held.append(cue)
            newest = start
        elif start < last:
            raise CuesOutOfOrder
        else:
            held.insert(bisect.bisect_right(held, start, key=_start), cue)
        if len(held) > window:
            first = held.popleft()
            last = first.start_ms
            yield first
    yield from held


def externally_sorted(cues: Iterable[Cue]) -> Iterator[Cue]:
    """Sort any number of cues by start time through a temporary on-disk SQLite table."""
    with tempfile.TemporaryDirectory(prefix="chatbot-sort-") as tmp:
        conn = sqlite3.connect(f"{tmp}/cues.db")
        try:
            conn.execute("CREATE TABLE cues (start_ms INTEGER, seq INTEGER, rest TEXT)")
            conn.executemany(
                "INSERT INTO cues VALUES (?, ?, ?)",
                (
                    (c.start_ms, i, json.dumps([c.end_ms, c.text, c.line, c.speaker]))
                    for i, c in enumerate(cues)
                ),
            )
            conn.execute("CREATE INDEX cues_order ON cues (start_ms, seq)")
            rows = conn.execute("SELECT start_ms, rest FROM cues ORDER BY start_ms, seq")
            for start, rest in rows:
                end, text, line, speaker = json.loads(rest)
                yield Cue(start, end, text, line, speaker)
        finally:
            conn.close()


def ordered(cues: Iterable[Cue], external: bool) -> Iterator[Cue]:
    """Cues in start order: streaming by default, externally sorted when asked."""
    return externally_sorted(cues) if external else in_start_order(cues, REORDER_WINDOW)
