"""The corpus store: sources, conversations and turns in SQLite, with full-text search.

The schema is created and changed only by the migrations below. Each source file goes in
as one transaction, so an error or a kill halfway through a file leaves nothing of it.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from chatbot.corpus.bulk_write import BatchWriter
from chatbot.corpus.types import Conversation, Turn
from chatbot.errors import ChatbotError

migrations = Migrations("chatbot.corpus")

_SQLITE_MAGIC = b"SQLite format 3\x00"
_OUR_TABLES = {"sources", "conversations", "turns"}


@migrations()
def m001_create_tables(db: Database) -> None:
    db["sources"].create(
        {
            "id": int,
            "path": str,
            "sha256": str,
            "format": str,
            "encoding": str,
            "ingested_at": str,
            "conversations": int,
            "turns": int,
            "skipped_conversations": int,
        },
        pk="id",
        not_null={"path", "sha256", "format"},
    )
    db["sources"].create_index(["sha256"], unique=True)
    db["conversations"].create(
        {"id": int, "source_id": int, "position": int},
        pk="id",
        foreign_keys=[("source_id", "sources", "id")],
        not_null={"source_id", "position"},
    )
    db["conversations"].create_index(["source_id", "position"], unique=True)
    db["turns"].create(
        {
            "id": int,
            "conversation_id": int,
            "position": int,
            "speaker": str,
            "text": str,
            "start_ms": int,
            "end_ms": int,
        },
        pk="id",
        foreign_keys=[("conversation_id", "conversations", "id")],
        not_null={"conversation_id", "position", "text"},
    )
    db["turns"].create_index(["conversation_id", "position"], unique=True)
    db["turns"].enable_fts(["text"], create_triggers=True, tokenize="unicode61")
    # Rows are indexed per source in one statement (see add_source): a trigger per
    # inserted row costs four times as much, and the statement runs in the same
    # transaction, so the index never disagrees with the table.
    db.execute("DROP TRIGGER turns_ai")


@migrations()
def m002_fts_without_column_sizes(db: Database) -> None:
    """The full-text index without its per-row column sizes (`columnsize=0`): indexing
    costs 40% less (a table insert per turn fewer), search ranks the same (bm25 measures
    the matched rows when it needs to) and measured no slower on 420,000 turns. The
    delete and update triggers of m001 name the index by name and go on working."""
    db.execute("DROP TABLE turns_fts")
    db.execute("CREATE VIRTUAL TABLE turns_fts USING FTS5 (text, tokenize='unicode61', "
               "content='turns', columnsize=0)")
    db.execute("INSERT INTO turns_fts (turns_fts) VALUES ('rebuild')")


@dataclass(frozen=True)
class SourceCounts:
    """What one source added: conversations and turns kept, conversations dropped."""

    conversations: int = 0
    turns: int = 0
    skipped_conversations: int = 0


def _check_file(path: Path) -> None:
    """Refuse, with one clear line, a file that is not SQLite (never overwrite it)."""
    if path.is_dir():
        raise ChatbotError(f"{path}: is a directory, not a corpus database")
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            if f.read(16) != _SQLITE_MAGIC:
                raise ChatbotError(f"{path}: not a SQLite database; refusing to touch it")


class CorpusStore:
    """A corpus database file. Opening it applies pending migrations."""

    def __init__(self, path: Path | str) -> None:
        """Open (or create) the store."""
        self.path = Path(path)
        _check_file(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Not tied to the opening thread: add_source writes through a worker thread
            # (bulk_write), and tf.data runs its generator on whichever thread is free.
            # The store is still used by one thread at a time.
            self.db = Database(sqlite3.connect(self.path, check_same_thread=False))
            self.db.conn.execute("PRAGMA busy_timeout = 10000")
            self.db.conn.execute("PRAGMA foreign_keys = ON")
            tables = set(self.db.table_names())
            if tables and not tables & _OUR_TABLES and "_sqlite_migrations" not in tables:
                raise ChatbotError(f"{self.path}: a SQLite database of something else, not a "
                                   "chatbot corpus; refusing to change it")
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            migrations.apply(self.db)
        except sqlite3.DatabaseError as e:
            raise ChatbotError(f"{self.path}: cannot open the corpus database: {e}") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CorpusStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Writing

    def source_with_digest(self, sha256: str) -> dict[str, Any] | None:
        """The source already ingested with this content, if any."""
        rows = list(self.db["sources"].rows_where("sha256 = ?", [sha256], limit=1))
        return rows[0] if rows else None

    def remove_source(self, path: str) -> None:
        """Delete the sources named `path` with their conversations and turns (inside the
        caller's transaction). Write statements only: the first takes the write lock at
        once, where a read first could not upgrade after another process had written. The
        turn delete trigger keeps the full-text index in step."""
        conn = self.db.conn
        conn.execute(
            "DELETE FROM turns WHERE conversation_id IN (SELECT c.id FROM conversations c "
            "JOIN sources s ON s.id = c.source_id WHERE s.path = ?)", [path])
        conn.execute("DELETE FROM conversations WHERE source_id IN "
                     "(SELECT id FROM sources WHERE path = ?)", [path])
        conn.execute("DELETE FROM sources WHERE path = ?", [path])

    def add_source(
        self,
        path: str,
        sha256: str,
        fmt: str,
        encoding: str | None,
        conversations: Iterable[Conversation],
        min_turns: int,
    ) -> SourceCounts:
        """Store one source and its conversations in a single transaction.

        Conversations with fewer than `min_turns` turns are counted, not stored. If the
        iterable raises, the transaction is rolled back and the error propagates.
        """
        conn = self.db.conn
        kept = turns = skipped = 0
        try:
            with self.db.atomic():
                # The first write takes the write lock, so the ids read next are ours to
                # continue from: rows are then inserted in large batches, not one by one.
                source_id = conn.execute(
                    "INSERT INTO sources (path, sha256, format, encoding, ingested_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (path, sha256, fmt, encoding, datetime.now(UTC).isoformat(timespec="seconds")),
                ).lastrowid
                first_id = conn.execute(
                    "SELECT COALESCE(MAX(id), 0) + 1 FROM conversations"
                ).fetchone()[0]
                with BatchWriter(conn, source_id, first_id) as writer:
                    for conversation in conversations:
                        if len(conversation.turns) < min_turns:
                            skipped += 1
                            continue
                        writer.add(conversation)
                        kept += 1
                        turns += len(conversation.turns)
                conn.execute(
                    "UPDATE sources SET conversations = ?, turns = ?, skipped_conversations = ? "
                    "WHERE id = ?",
                    (kept, turns, skipped, source_id),
                )
        except sqlite3.OperationalError as e:
            raise ChatbotError(f"{self.path}: cannot write the corpus database: {e}") from None
        return SourceCounts(kept, turns, skipped)

    # Reading

    def stats(self) -> dict[str, int]:
        """Counts for the whole store."""
        return {
            "sources": self.db["sources"].count,
            "conversations": self.db["conversations"].count,
            "turns": self.db["turns"].count,
        }

    def stats_by_format(self) -> list[dict[str, Any]]:
        """Sources, conversations and turns per input format."""
        return list(
            self.db.query(
                "SELECT format, COUNT(*) AS sources, SUM(conversations) AS conversations, "
                "SUM(turns) AS turns FROM sources GROUP BY format ORDER BY format"
            )
        )

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        """One conversation with its source path and turns; ChatbotError if there is none."""
        rows = list(
            self.db.query(
                "SELECT c.id, c.position, s.path AS source FROM conversations c "
                "JOIN sources s ON s.id = c.source_id WHERE c.id = ?",
                [conversation_id],
            )
        )
        if not rows:
            raise ChatbotError(f"no conversation with id {conversation_id} in {self.path}")
        turns = list(
            self.db.query(
                "SELECT speaker, text, start_ms, end_ms FROM turns WHERE conversation_id = ? "
                "ORDER BY position",
                [conversation_id],
            )
        )
        return {**rows[0], "turns": turns}

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Turns matching a full-text query (FTS5 syntax), best first."""
        sql = (
            "SELECT t.conversation_id, t.position, t.speaker, t.text, "
            "snippet(turns_fts, 0, '[', ']', '…', 12) AS snippet "
            "FROM turns_fts JOIN turns t ON t.rowid = turns_fts.rowid "
            "WHERE turns_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        try:
            return list(self.db.query(sql, [query, limit]))
        except sqlite3.OperationalError as e:
            raise ChatbotError(f"invalid search query {query!r}: {e}") from None

    def iter_conversations(self) -> Iterator[tuple[int, str, Conversation]]:
        """(id, source path, conversation) for every conversation, streamed in id order."""
        rows = self.db.conn.execute(
            "SELECT c.id, s.path, t.text, t.speaker, t.start_ms, t.end_ms "
            "FROM conversations c JOIN sources s ON s.id = c.source_id "
            "JOIN turns t ON t.conversation_id = c.id ORDER BY c.id, t.position"
        )
        for (conversation_id, source), group in itertools.groupby(rows, key=lambda r: r[:2]):
            yield conversation_id, source, Conversation([Turn(*r[2:]) for r in group])

    def iter_turn_texts(self) -> Iterator[tuple[str, list[str]]]:
        """(stable key, turn texts) per conversation, streamed in id order.

        The key (source digest and position) names a conversation the same way in any
        store built from the same files, so train/validation splits by hash are stable.
        """
        rows = self.db.conn.execute(
            "SELECT s.sha256 || ':' || c.position, t.text FROM conversations c "
            "JOIN sources s ON s.id = c.source_id JOIN turns t ON t.conversation_id = c.id "
            "ORDER BY c.id, t.position"
        )
        for key, group in itertools.groupby(rows, key=lambda r: r[0]):
            yield key, [text for _, text in group]
