"""Writing conversations to the store in large batches, overlapped with reading.

Each batch goes to SQLite as one JSON parameter and three INSERT ... SELECT statements
(conversations, turns, full-text index). A statement runs entirely inside SQLite, which
releases the GIL while it works, so a worker thread writes one batch while the caller's
thread parses the next: on two or more cores, storing costs the reader almost nothing
but `json.dumps`. Statements never overlap: a batch is handed over only when the
previous one is done, and the connection's transaction belongs to the caller throughout.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from chatbot.corpus.types import Turn
from chatbot.errors import ChatbotError

# Turns per batch: large, because each statement costs one hand-over of the GIL back to
# the worker (up to the 5 ms switch interval while the reader is busy); small enough
# that a batch's JSON stays a few megabytes.
BATCH_TURNS = 16384

# A batch is a JSON array of [digest, turns] per conversation, and a turn is
# [text, speaker, start_ms, end_ms] (Turn is a NamedTuple: json writes it as an array).
# Conversation ids and positions run on from the batch's first ones, by array index;
# a conversation already stored (by digest) is left out, leaving a gap in the ids.
_CONVERSATIONS = (
    "INSERT INTO conversations (id, source_id, position, digest) "
    "SELECT ? + c.key, ?, ? + c.key, json_extract(c.value, '$[0]') FROM json_each(?) AS c"
)
_NEW_ONLY = (" WHERE NOT EXISTS (SELECT 1 FROM conversations o "
             "WHERE o.digest = json_extract(c.value, '$[0]'))")
_TURNS = (
    "INSERT INTO turns (conversation_id, position, text, speaker, start_ms, end_ms) "
    "SELECT ? + c.key, t.key, json_extract(t.value, '$[0]'), json_extract(t.value, '$[1]'), "
    "json_extract(t.value, '$[2]'), json_extract(t.value, '$[3]') "
    "FROM json_each(?) AS c, json_each(c.value, '$[1]') AS t"
)
# Where some conversations of the batch were left out: only the turns of those stored.
_TURNS_OF_KEPT = _TURNS + " WHERE EXISTS (SELECT 1 FROM conversations WHERE id = ? + c.key)"
_FTS = "INSERT INTO turns_fts (rowid, text) SELECT id, text FROM turns WHERE id > ?"


class BatchWriter:
    """Queue conversations of one source; a worker thread inserts them batch by batch.

    Use as a context manager inside the caller's transaction: leaving it waits for the
    last batch, and re-raises any error the worker met (the caller then rolls back).
    """

    def __init__(self, conn: sqlite3.Connection, source_id: int, first_id: int,
                 dedup: bool = True) -> None:
        try:
            conn.execute("SELECT json_valid('[]')")
        except sqlite3.OperationalError:
            raise ChatbotError(f"this Python's SQLite ({sqlite3.sqlite_version}) has no JSON "
                               "functions, which storing needs (SQLite 3.38 and later have "
                               "them built in)") from None
        self._conn = conn
        self._source_id = source_id
        self._next_id = first_id  # id of the first conversation queued now
        self._position = 0  # its position in the source
        self._queued: list[list] = []  # [digest, turns] of each conversation queued
        self._digests: set[int] = set()  # of this batch: a repeat within it is dropped here
        self._turns = 0
        self._conversations_sql = _CONVERSATIONS + (_NEW_ONLY if dedup else "")
        self._dedup = dedup
        self.queued = 0  # conversations handed to add()
        self.kept_conversations = 0  # ... and stored (the worker's counts)
        self.kept_turns = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatbot-store")
        self._pending: Future[None] | None = None

    def add(self, turns: Sequence[Turn], digest: int) -> None:
        """Queue one conversation's turns (Turns, or tuples of the same fields) with its
        digest; hands a full batch to the worker."""
        self.queued += 1
        if self._dedup:
            if digest in self._digests:
                return
            self._digests.add(digest)
        self._queued.append([digest, turns])
        self._turns += len(turns)
        if self._turns >= BATCH_TURNS:
            self.flush()

    def flush(self) -> None:
        """Hand the queued conversations to the worker (after the batch before them)."""
        if not self._queued:
            return
        payload = json.dumps(self._queued, ensure_ascii=False, check_circular=False)
        first_id, position, count = self._next_id, self._position, len(self._queued)
        self._next_id += count
        self._position += count
        self._queued = []
        self._digests = set()
        self._turns = 0
        self._wait()
        self._pending = self._pool.submit(self._write, payload, first_id, position, count)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()  # re-raises the worker's error here, in the caller's thread

    def _write(self, payload: str, first_id: int, position: int, count: int) -> None:
        conn = self._conn
        last = conn.execute("SELECT COALESCE(MAX(id), 0) FROM turns").fetchone()[0]
        kept = conn.execute(self._conversations_sql,
                            (first_id, self._source_id, position, payload)).rowcount
        if kept:
            self.kept_conversations += kept
            turns = (conn.execute(_TURNS, (first_id, payload)) if kept == count else
                     conn.execute(_TURNS_OF_KEPT, (first_id, payload, first_id)))
            self.kept_turns += turns.rowcount
            conn.execute(_FTS, (last,))

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        try:
            if kind is None:
                self.flush()
                self._wait()
            elif self._pending is not None:
                # Already failing: let the running batch end before the caller rolls back,
                # and keep the first error.
                self._pending.exception()
        finally:
            self._pool.shutdown(wait=True)
