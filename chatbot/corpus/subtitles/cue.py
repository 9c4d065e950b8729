"""A subtitle cue, a cleaned cue, and the machinery to put cleaned cues in start-time
order with flat memory."""

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


# A cue after cleaning: (start_ms, end_ms, pieces), a piece being (speaker, text, opens
# with a dash). Plain tuples: they cross from a reader process (subtitles/child.py), and
# a tuple pickles fastest.
Piece = tuple[str | None, str, bool]
CleanCue = tuple[int, int, list[Piece]]


class CuesOutOfOrder(Exception):
    """Internal: the file is too far out of order for the in-memory window; sort externally."""


def _start(cue: CleanCue) -> int:
    return cue[0]


def in_start_order(
    cues: Iterable[CleanCue], window: int = REORDER_WINDOW
) -> Iterator[CleanCue]:
    """Yield cues sorted by start time, holding at most `window` of them in memory.

    Real subtitle files are nearly sorted (a misplaced cue or two), so a small sorted
    window fixes them while streaming. A cue that lands before one already yielded raises
    CuesOutOfOrder, and the caller starts again with `externally_sorted`.
    """
    # A deque kept sorted, not a heap: a cue in order (nearly all of them) is appended
    # at the end in O(1); only a misplaced one is inserted by bisection. Ties keep file
    # order.
    held: deque[CleanCue] = deque()
    last = -1  # start of the cue yielded last
    newest = -1  # start of the last cue held
    for cue in cues:
        start = cue[0]
        if start >= newest:
            held.append(cue)
            newest = start
        elif start < last:
            raise CuesOutOfOrder
        else:
            held.insert(bisect.bisect_right(held, start, key=_start), cue)
        if len(held) > window:
            first = held.popleft()
            last = first[0]
            yield first
    yield from held


def externally_sorted(cues: Iterable[CleanCue]) -> Iterator[CleanCue]:
    """Sort any number of cues by start time through a temporary on-disk SQLite table."""
    with tempfile.TemporaryDirectory(prefix="chatbot-sort-") as tmp:
        conn = sqlite3.connect(f"{tmp}/cues.db")
        try:
            conn.execute("CREATE TABLE cues (start_ms INTEGER, seq INTEGER, rest TEXT)")
            conn.executemany(
                "INSERT INTO cues VALUES (?, ?, ?)",
                ((start, i, json.dumps([end, pieces])) for i, (start, end, pieces) in
                 enumerate(cues)),
            )
            conn.execute("CREATE INDEX cues_order ON cues (start_ms, seq)")
            rows = conn.execute("SELECT start_ms, rest FROM cues ORDER BY start_ms, seq")
            for start, rest in rows:
                end, pieces = json.loads(rest)
                yield start, end, [tuple(piece) for piece in pieces]
        finally:
            conn.close()


def ordered(cues: Iterable[CleanCue], external: bool) -> Iterator[CleanCue]:
    """Cues in start order: streaming by default, externally sorted when asked."""
    return externally_sorted(cues) if external else in_start_order(cues, REORDER_WINDOW)
