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
from chatbot.corpus.dedup import (
    NEAR_DUPLICATE_JACCARD,
    Sketcher,
    candidates_needed,
    conversation_digest,
    jaccard,
)
from chatbot.corpus.split import in_split
from chatbot.corpus.types import WORK_FORMATS, Conversation, Turn
from chatbot.errors import ChatbotError
from chatbot.sqlite import make_private, open_database

migrations = Migrations("chatbot.corpus")


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


@migrations()
def m003_works_and_duplicates(db: Database) -> None:
    """What splits and deduplication need: each source's work (the split key of films and
    books), its OPUS layout (language, year, IMDb id), whether it duplicates another
    source; each conversation's digest; each film's sketch. Existing stores upgrade in
    place: their films and books become works of their own, their conversations get
    digests."""
    sources = db["sources"]
    sources.add_column("work", str)
    sources.add_column("language", str)
    sources.add_column("year", int)
    sources.add_column("imdb_id", int)
    sources.add_column("duplicate_of", int)
    sources.add_column("duplicate_conversations", int)
    sources.create_index(["imdb_id"])
    sources.create_index(["duplicate_of"])
    marks = ", ".join("?" for _ in WORK_FORMATS)
    db.execute(f"UPDATE sources SET work = 'sha256:' || sha256 WHERE format IN ({marks})",
               sorted(WORK_FORMATS))
    db["conversations"].add_column("digest", int)
    rows = db.execute("SELECT conversation_id, text FROM turns ORDER BY conversation_id, "
                      "position")
    digests = (
        (conversation_digest(text for _, text in group), conversation_id)
        for conversation_id, group in itertools.groupby(rows, key=lambda r: r[0])
    )
    db.conn.executemany("UPDATE conversations SET digest = ? WHERE id = ?", digests)
    db["conversations"].create_index(["digest"])
    db["sketches"].create({"source_id": int, "hash": int}, foreign_keys=[
        ("source_id", "sources", "id")], not_null={"source_id", "hash"})
    db["sketches"].create_index(["hash"])
    db["sketches"].create_index(["source_id"])


@dataclass(frozen=True)
class SourceMeta:
    """What a source says about itself beyond its content: the work it belongs to (None:
    a dialogue set, split by conversation) and the OPUS layout's language, year and IMDb
    id, where its path follows that layout."""

    work: str | None = None
    language: str | None = None
    year: int | None = None
    imdb_id: int | None = None


@dataclass(frozen=True)
class SourceCounts:
    """What one source added: conversations and turns kept, conversations dropped (too
    short, or already stored turn for turn); for a source already stored, or stored as a
    duplicate of another, that one's path."""

    conversations: int = 0
    turns: int = 0
    skipped_conversations: int = 0
    duplicate_conversations: int = 0
    unchanged_as: str | None = None
    duplicate_of: str | None = None


class _Duplicate(Exception):
    """Internal: the source turned out to be a near-duplicate; undo its conversations."""


class _Nothing(Exception):
    """Internal: the source gave no conversation at all; keep no record of it."""


class CorpusStore:
    """A corpus database file. Opening it applies pending migrations.

    `private=True` makes the file (and its -wal and -shm files) readable by its owner
    only, as a corpus that holds chat transcripts must be (`make_private` does the same
    later). Another program's database, or a transcripts file, is refused unchanged.
    """

    def __init__(self, path: Path | str, *, private: bool = False) -> None:
        """Open (or create) the store."""
        self.path = Path(path)
        self.db = open_database(self.path, migrations, noun="corpus database",
                                private=private)

    def make_private(self) -> None:
        """Narrow the file and its -wal and -shm files to mode 0600 (before private
        conversations go in)."""
        make_private(self.path)

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

    def film_with_imdb_id(self, imdb_id: int) -> dict[str, Any] | None:
        """The stored film (not a duplicate) of this IMDb id, if any."""
        rows = list(self.db.query("SELECT id, path, work FROM sources WHERE imdb_id = ? AND "
                                  "duplicate_of IS NULL ORDER BY id LIMIT 1", [imdb_id]))
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
        *,
        meta: SourceMeta = SourceMeta(),
        keep_duplicates: bool = False,
        sketch: list[int] | Sketcher | None = None,
    ) -> SourceCounts:
        """Store one source and its conversations in a single transaction.

        Conversations with fewer than `min_turns` turns are counted, not stored, and so
        are conversations already stored turn for turn. Content stored before (the same
        digest) is not stored again; a source that gives no conversation at all is not
        recorded (so that reading it again, with the right format, is no no-op). A film
        whose IMDb id is stored already, or whose sketch (given, or a Sketcher fed while
        the conversations stream) is a near-duplicate of a stored film's, is recorded as
        a duplicate of it with no conversations. `keep_duplicates` stores everything; a
        near-duplicate then joins the work of the film it repeats, so that the two never
        straddle a split. If the iterable raises, the transaction is rolled back and the
        error propagates.
        """
        conn = self.db.conn
        try:
            with self.db.atomic():
                try:
                    # The first write takes the write lock: what is read next is settled,
                    # and ids read next are ours to continue from.
                    source_id = conn.execute(
                        "INSERT INTO sources (path, sha256, format, encoding, ingested_at, "
                        "work, language, year, imdb_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (path, sha256, fmt, encoding,
                         datetime.now(UTC).isoformat(timespec="seconds"), meta.work,
                         meta.language, meta.year, meta.imdb_id),
                    ).lastrowid
                except sqlite3.IntegrityError:
                    known = self.source_with_digest(sha256)
                    if known is None:
                        raise
                    return SourceCounts(unchanged_as=known["path"])
                original = self._original_of(source_id, meta, sketch)
                if original is not None and not keep_duplicates:
                    return self._mark_duplicate(source_id, original)
                if original is not None:
                    self._join_work(source_id, original)
                try:
                    with self.db.atomic():  # a savepoint: a late near-duplicate undoes it
                        counts = self._add_conversations(
                            source_id, conversations, min_turns, not keep_duplicates,
                            sketch if isinstance(sketch, Sketcher) else None)
                        if isinstance(sketch, Sketcher):
                            sketch = sketch.sketch()
                            original = self._near_duplicate(source_id, sketch)
                            if original is not None and not keep_duplicates:
                                raise _Duplicate
                            if original is not None:
                                self._join_work(source_id, original)
                except _Duplicate:
                    return self._mark_duplicate(source_id, original)
                if not (counts.conversations or counts.duplicate_conversations):
                    # Read with the wrong --format, say: recording it would make reading
                    # it again the right way a no-op ("unchanged").
                    raise _Nothing
                if sketch:
                    conn.executemany("INSERT INTO sketches (source_id, hash) VALUES (?, ?)",
                                     ((source_id, h) for h in sketch))
                conn.execute(
                    "UPDATE sources SET conversations = ?, turns = ?, skipped_conversations = ?, "
                    "duplicate_conversations = ? WHERE id = ?",
                    (counts.conversations, counts.turns, counts.skipped_conversations,
                     counts.duplicate_conversations, source_id),
                )
        except _Nothing:
            return counts
        except sqlite3.OperationalError as e:
            raise ChatbotError(f"{self.path}: cannot write the corpus database: {e}") from None
        return counts

    def _add_conversations(
        self, source_id: int, conversations: Iterable[Conversation], min_turns: int,
        dedup: bool, sketcher: Sketcher | None,
    ) -> SourceCounts:
        conn = self.db.conn
        skipped = 0
        first_id = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM conversations").fetchone()[0]
        with BatchWriter(conn, source_id, first_id, dedup) as writer:
            for conversation in conversations:
                if len(conversation.turns) < min_turns:
                    skipped += 1
                    continue
                texts = [turn[0] for turn in conversation.turns]
                if sketcher is not None:
                    sketcher.add(texts)
                writer.add(conversation.turns, conversation_digest(texts))
        return SourceCounts(writer.kept_conversations, writer.kept_turns, skipped,
                            writer.queued - writer.kept_conversations)

    def _original_of(self, source_id: int, meta: SourceMeta,
                     sketch: list[int] | Sketcher | None) -> dict[str, Any] | None:
        """The stored film this one repeats, by IMDb id or by a given sketch, if any."""
        if meta.imdb_id is not None:
            film = self.film_with_imdb_id(meta.imdb_id)
            if film is not None and film["id"] != source_id:
                return film
        if isinstance(sketch, list):
            return self._near_duplicate(source_id, sketch)
        return None

    def _near_duplicate(self, source_id: int, sketch: list[int] | None) -> dict[str, Any] | None:
        """The stored film whose sketch is most like `sketch`, if at least the threshold."""
        if not sketch:
            return None
        marks = ", ".join("?" for _ in sketch)
        candidates = self.db.execute(
            f"SELECT source_id FROM sketches WHERE hash IN ({marks}) AND source_id != ? "
            "GROUP BY source_id HAVING COUNT(*) >= ? ORDER BY COUNT(*) DESC LIMIT 8",
            [*sketch, source_id, candidates_needed()]).fetchall()
        best, best_score = None, NEAR_DUPLICATE_JACCARD
        for (candidate,) in candidates:
            theirs = [h for (h,) in self.db.execute(
                "SELECT hash FROM sketches WHERE source_id = ?", [candidate])]
            score = jaccard(sketch, theirs)
            if score >= best_score:
                best, best_score = candidate, score
        if best is None:
            return None
        return next(self.db.query("SELECT id, path, work FROM sources WHERE id = ?", [best]))

    def _mark_duplicate(self, source_id: int, original: dict[str, Any]) -> SourceCounts:
        self.db.conn.execute(
            "UPDATE sources SET duplicate_of = ?, work = ?, conversations = 0, turns = 0, "
            "skipped_conversations = 0 WHERE id = ?", (original["id"], original["work"], source_id))
        return SourceCounts(duplicate_of=original["path"])

    def _join_work(self, source_id: int, original: dict[str, Any]) -> None:
        if original["work"] is not None:
            self.db.conn.execute("UPDATE sources SET work = ? WHERE id = ?",
                                 (original["work"], source_id))

    # Reading

    def stats(self) -> dict[str, int]:
        """Counts for the whole store: sources (those stored, not as duplicates),
        conversations, turns, duplicates (sources recorded as another's repeat) and
        duplicate conversations (left out as stored already)."""
        sources, duplicates, repeated = self.db.execute(
            "SELECT COUNT(*) - COUNT(duplicate_of), COUNT(duplicate_of), "
            "COALESCE(SUM(duplicate_conversations), 0) FROM sources").fetchone()
        return {
            "sources": sources,
            "conversations": self.db["conversations"].count,
            "turns": self.db["turns"].count,
            "duplicates": duplicates,
            "duplicate_conversations": repeated,
        }

    def stats_by_format(self) -> list[dict[str, Any]]:
        """Sources, conversations, turns and duplicates per input format."""
        return list(
            self.db.query(
                "SELECT format, COUNT(*) - COUNT(duplicate_of) AS sources, "
                "SUM(conversations) AS conversations, SUM(turns) AS turns, "
                "COUNT(duplicate_of) AS duplicates FROM sources GROUP BY format ORDER BY format"
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

    def iter_conversations(
        self, split: str = "all", valid_fraction: float = 0.05, split_by: str = "work"
    ) -> Iterator[tuple[int, str, Conversation]]:
        """(id, source path, conversation) for every conversation of `split` (as training
        splits them, see chatbot.corpus.split), streamed in id order."""
        key = _split_key(split_by)
        rows = self.db.conn.execute(
            f"SELECT c.id, s.path, {key}, t.text, t.speaker, t.start_ms, t.end_ms "
            "FROM conversations c JOIN sources s ON s.id = c.source_id "
            "JOIN turns t ON t.conversation_id = c.id ORDER BY c.id, t.position"
        )
        for (conversation_id, source, split_key), group in itertools.groupby(
                rows, key=lambda r: r[:3]):
            if split == "all" or in_split(split_key, split, valid_fraction):
                yield conversation_id, source, Conversation([Turn(*r[3:]) for r in group])

    def iter_turn_texts(self, split_by: str = "work") -> Iterator[tuple[str, list[str]]]:
        """(split key, turn texts) per conversation, streamed in id order.

        The key names what a train/validation split keeps together, the same way in any
        store built from the same files, so splits by its hash are stable: with
        `split_by="work"`, a film's or book's work (its IMDb id, else its content
        digest) for works and the conversation (source digest and position) for
        dialogue sets; with "conversation" (how models trained before works existed
        were split), always the conversation.
        """
        key = _split_key(split_by)
        rows = self.db.conn.execute(
            f"SELECT {key}, c.id, t.text FROM conversations c "
            "JOIN sources s ON s.id = c.source_id JOIN turns t ON t.conversation_id = c.id "
            "ORDER BY c.id, t.position"
        )
        for (split_key, _), group in itertools.groupby(rows, key=lambda r: r[:2]):
            yield split_key, [text for _, _, text in group]


_CONVERSATION_KEY = "s.sha256 || ':' || c.position"
_SPLIT_KEYS = {
    "work": f"COALESCE(s.work, {_CONVERSATION_KEY})",
    "conversation": _CONVERSATION_KEY,
}


def _split_key(split_by: str) -> str:
    """The SQL expression of a conversation's split key (see iter_turn_texts)."""
    if split_by not in _SPLIT_KEYS:
        raise ChatbotError(f"unknown split key {split_by!r}; choose one of "
                           f"{', '.join(_SPLIT_KEYS)}")
    return _SPLIT_KEYS[split_by]
