"""A subtitle cue and the machinery to put cues in start-time order with flat memory."""

from __future__ import annotations

import heapq
import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import NamedTuple

# Cues this far out of place are reordered in memory; further ones trigger an external sort.
REORDER_WINDOW = 4096


class Cue(NamedTuple):
    """One timed subtitle: start and end in milliseconds, its text lines, where it was read.

    A NamedTuple rather than a frozen dataclass: files hold millions of cues, and a tuple
    is three times cheaper to make.
    """

    start_ms: int
    end_ms: int
    lines: tuple[str, ...]
    line: int  # line number of the timing line, for messages
    speaker: str | None = None  # from the format itself (ASS Name field, VTT <v> span)


class CuesOutOfOrder(Exception):
    """Internal: the file is too far out of order for the in-memory window; sort externally."""


def in_start_order(cues: Iterable[Cue], window: int = REORDER_WINDOW) -> Iterator[Cue]:
    """Yield cues sorted by start time, holding at most `window` of them in memory.

    Real subtitle files are nearly sorted (a misplaced cue or two), so a small heap fixes
    them while streaming. A cue that lands before one already yielded raises
    CuesOutOfOrder, and the caller starts again with `externally_sorted`.
    """
    heap: list[tuple[int, int, Cue]] = []
    last = -1
    for seq, cue in enumerate(cues):
        if cue.start_ms < last:
            raise CuesOutOfOrder
        heapq.heappush(heap, (cue.start_ms, seq, cue))
        if len(heap) > window:
            last, _, first = heapq.heappop(heap)
            yield first
    while heap:
        yield heapq.heappop(heap)[2]


def externally_sorted(cues: Iterable[Cue]) -> Iterator[Cue]:
    """Sort any number of cues by start time through a temporary on-disk SQLite table."""
    with tempfile.TemporaryDirectory(prefix="chatbot-sort-") as tmp:
        conn = sqlite3.connect(f"{tmp}/cues.db")
        try:
            conn.execute("CREATE TABLE cues (start_ms INTEGER, seq INTEGER, rest TEXT)")
            conn.executemany(
                "INSERT INTO cues VALUES (?, ?, ?)",
                (
                    (c.start_ms, i, json.dumps([c.end_ms, c.lines, c.line, c.speaker]))
                    for i, c in enumerate(cues)
                ),
            )
            conn.execute("CREATE INDEX cues_order ON cues (start_ms, seq)")
            rows = conn.execute("SELECT start_ms, rest FROM cues ORDER BY start_ms, seq")
            for start, rest in rows:
                end, lines, line, speaker = json.loads(rest)
                yield Cue(start, end, tuple(lines), line, speaker)
        finally:
            conn.close()


def ordered(cues: Iterable[Cue], external: bool) -> Iterator[Cue]:
    """Cues in start order: streaming by default, externally sorted when asked."""
    return externally_sorted(cues) if external else in_start_order(cues, REORDER_WINDOW)
