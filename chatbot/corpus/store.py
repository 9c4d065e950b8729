"""The corpus store: sources, conversations and turns in SQLite, with full-text search.

The schema is created and changed only by the migrations below. Each source file goes in
as one transaction, so an error or a kill halfway through a file leaves nothing of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database, Migrations

from chatbot.corpus.blob import MEMBER_SEPARATOR
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


# The formats that held private chats when m004 was written: their sources in an
# existing store are private data (the ingester marks new ones from their Format).
_PRIVATE_FORMATS_AT_M004 = ("transcripts", "whatsapp", "telegram")


@migrations()
def m004_private_sources(db: Database) -> None:
    """Whether each source is private data (chat transcripts, chat exports): `corpus
    stats` names those, and a store holding any is kept readable by its owner only.
    Existing stores upgrade in place: their transcripts are private data."""
    db["sources"].add_column("private", int, not_null_default=0)
    marks = ", ".join("?" for _ in _PRIVATE_FORMATS_AT_M004)
    db.execute(f"UPDATE sources SET private = 1 WHERE format IN ({marks})",
               _PRIVATE_FORMATS_AT_M004)
    # Partial: finding whether a store holds private data costs nothing on opening it.
    db.execute("CREATE INDEX sources_private ON sources (id) WHERE private = 1")


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


@dataclass(frozen=True)
class RemovedSources:
    """What `CorpusStore.remove` took out: the sources named (id, path, format,
    private, conversations, turns), the duplicate records of them removed with them,
    and the rows deleted."""

    sources: list[dict[str, Any]]
    duplicates: int = 0
    conversations: int = 0
    turns: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"sources": self.sources, "duplicates": self.duplicates,
                "conversations": self.conversations, "turns": self.turns}


class _Duplicate(Exception):
    """Internal: the source turned out to be a near-duplicate; undo its conversations."""


class _Nothing(Exception):
    """Internal: the source gave no conversation at all; keep no record of it."""


class CorpusStore:
    """A corpus database file. Opening it applies pending migrations.

    `private=True` makes the file (and its -wal and -shm files) readable by its owner
    only, as a corpus that holds chat transcripts or exports must be (`make_private`
    does the same later; storing a private source does it first, and so does opening
    a store that holds one, where the file is this user's). Another program's
    database, or a transcripts file, is refused unchanged.
    """

    def __init__(self, path: Path | str, *, private: bool = False) -> None:
        """Open (or create) the store."""
        self.path = Path(path)
        self.db = open_database(self.path, migrations, noun="corpus database",
                                private=private)
        if not private and self.holds_private_data():
            with contextlib.suppress(ChatbotError):  # another user's file: theirs to mind
                self.make_private()

    def holds_private_data(self) -> bool:
        """Whether any source is private data (chat transcripts, chat exports)."""
        return self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM sources WHERE private = 1)").fetchone()[0] == 1

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
        """Delete the sources named `path` with their conversations, turns and sketches
        (inside the caller's transaction). Write statements only: the first takes the
        write lock at once, where a read first could not upgrade after another process
        had written. The turn delete trigger keeps the full-text index in step."""
        conn = self.db.conn
        conn.execute(
            "DELETE FROM turns WHERE conversation_id IN (SELECT c.id FROM conversations c "
            "JOIN sources s ON s.id = c.source_id WHERE s.path = ?)", [path])
        conn.execute("DELETE FROM conversations WHERE source_id IN "
                     "(SELECT id FROM sources WHERE path = ?)", [path])
        conn.execute("DELETE FROM sketches WHERE source_id IN "
                     "(SELECT id FROM sources WHERE path = ?)", [path])
        conn.execute("DELETE FROM sources WHERE path = ?", [path])

    def remove(self, name: str) -> RemovedSources:
        """Delete the sources `name` names (see `_named`) with their conversations,
        turns, full-text index entries and sketches, and the records of the films
        stored as their duplicates, in one transaction; ChatbotError if it names none.

        What is deleted does not linger in the file: deleted content is overwritten
        (`secure_delete`), the write-ahead log is emptied afterwards (once no other
        connection reads an older snapshot of it), and where private data goes the
        full-text index is merged, so that no entry of a removed turn stays behind in an
        old segment of it.
        """
        conn = self.db.conn
        (secure,) = conn.execute("PRAGMA secure_delete").fetchone()
        conn.execute("PRAGMA secure_delete = ON")
        try:
            # The write lock first: what is read next stays true until the commit.
            conn.execute("BEGIN IMMEDIATE")
            try:
                sources = self._named(name)
                if not sources:
                    raise ChatbotError(f"no source {name!r} in {self.path}: give its path "
                                       "as the store records it, or its id")
                removed = self._delete_sources([s["id"] for s in sources])
                if any(s["private"] for s in sources):
                    # Merged into one segment, the index keeps no entry of a removed turn
                    # (about 2 s a million turns of the store: only for private data).
                    conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('optimize')")
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.OperationalError as e:
            raise ChatbotError(f"{self.path}: cannot write the corpus database: {e}") from None
        finally:
            conn.execute(f"PRAGMA secure_delete = {int(secure)}")
        self._empty_wal()
        # The default token caches hold the removed turns as token ids: gone too (they
        # are rebuilt from what is left when next needed).
        shutil.rmtree(token_caches(self.path), ignore_errors=True)
        for source in sources:
            source["private"] = bool(source["private"])
        return RemovedSources(sources, *removed)

    def _empty_wal(self) -> None:
        """Copy the write-ahead log into the file and cut it to nothing, without waiting:
        where another connection reads an older snapshot, its closing does it later."""
        conn = self.db.conn
        (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout)}")

    def _named(self, name: str) -> list[dict[str, Any]]:
        """The sources `name` names: those stored under that path (as `corpus stats`
        shows it), else the source of that id, else those stored under the path it
        names from here (a relative path, a transcripts file, ARCHIVE!member), else
        the members of the archive it names, else those read from within the folder it
        names."""
        columns = "id, path, format, private, conversations, turns"
        found = self.db.execute(f"SELECT {columns} FROM sources WHERE path = ? ORDER BY id",
                                [name]).fetchall()
        if not found and name.isdigit():
            found = self.db.execute(f"SELECT {columns} FROM sources WHERE id = ?",
                                    [int(name)]).fetchall()
        if not found:
            names = _stored_names(name)
            marks = ", ".join("?" for _ in names)
            found = self.db.execute(f"SELECT {columns} FROM sources WHERE path IN ({marks}) "
                                    "ORDER BY id", names).fetchall()
        if not found and MEMBER_SEPARATOR not in name:
            archive = _stored_names(name)[0] + MEMBER_SEPARATOR
            found = self.db.execute(f"SELECT {columns} FROM sources WHERE substr(path, 1, ?) "
                                    "= ? ORDER BY id", [len(archive), archive]).fetchall()
        if not found and Path(name).expanduser().is_dir():
            folder = os.path.join(_stored_names(name)[0], "")  # with its final separator
            found = self.db.execute(f"SELECT {columns} FROM sources WHERE substr(path, 1, ?) "
                                    "= ? ORDER BY id", [len(folder), folder]).fetchall()
        keys = columns.split(", ")
        return [dict(zip(keys, row, strict=True)) for row in found]

    def _delete_sources(self, ids: list[int]) -> tuple[int, int, int]:
        """Delete these sources, their rows and their duplicates' records (inside the
        caller's transaction): (duplicate records, conversations, turns) deleted."""
        conn = self.db.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS removing (id INTEGER PRIMARY KEY)")
        conn.execute("DELETE FROM temp.removing")
        conn.executemany("INSERT OR IGNORE INTO temp.removing (id) VALUES (?)", ((i,) for i in ids))
        duplicates = conn.execute(
            "INSERT OR IGNORE INTO temp.removing (id) SELECT id FROM sources WHERE "
            "duplicate_of IN "
            "(SELECT id FROM temp.removing)").rowcount
        turns = conn.execute(
            "DELETE FROM turns WHERE conversation_id IN (SELECT id FROM conversations WHERE "
            "source_id IN (SELECT id FROM temp.removing))").rowcount
        conversations = conn.execute(
            "DELETE FROM conversations WHERE source_id IN (SELECT id FROM temp.removing)"
        ).rowcount
        conn.execute("DELETE FROM sketches WHERE source_id IN (SELECT id FROM temp.removing)")
        conn.execute("DELETE FROM sources WHERE id IN (SELECT id FROM temp.removing)")
        conn.execute("DELETE FROM temp.removing")
        return duplicates, conversations, turns

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
        private: bool = False,
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
        error propagates. A `private` source (chat transcripts, a chat export) is recorded
        as private data, and the file is made readable by its owner only before it goes in.
        """
        conn = self.db.conn
        if private:
            self.make_private()
        try:
            with self.db.atomic():
                try:
                    # The first write takes the write lock: what is read next is settled,
                    # and ids read next are ours to continue from.
                    source_id = conn.execute(
                        "INSERT INTO sources (path, sha256, format, encoding, ingested_at, "
                        "work, language, year, imdb_id, private) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (path, sha256, fmt, encoding,
                         datetime.now(UTC).isoformat(timespec="seconds"), meta.work,
                         meta.language, meta.year, meta.imdb_id, int(private)),
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

    def private_sources(self) -> list[dict[str, Any]]:
        """The sources that are private data (chat transcripts, chat exports), by id:
        id, path, format, conversations, turns."""
        return list(self.db.query(
            "SELECT id, path, format, COALESCE(conversations, 0) AS conversations, "
            "COALESCE(turns, 0) AS turns FROM sources WHERE private = 1 ORDER BY id"))

    def speakers(self) -> tuple[list[dict[str, Any]], int]:
        """Every speaker named in the store with their turns and the conversations they
        speak in, most turns first (ties by name); and the turns with no speaker."""
        speakers, unnamed = [], 0
        for row in self.db.query(  # one pass over the turns
                "SELECT speaker, COUNT(*) AS turns, COUNT(DISTINCT conversation_id) AS "
                "conversations FROM turns GROUP BY speaker ORDER BY turns DESC, speaker"):
            if row["speaker"]:
                speakers.append(row)
            else:  # NULL, or an empty name
                unnamed += row["turns"]
        return speakers, unnamed

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

    def iter_turn_rows(self) -> Iterator[tuple[int, str, str, str, str | None]]:
        """(conversation id, work split key, conversation split key, text, speaker) for
        every turn, streamed in conversation id and position order: what the token
        cache is built from (both split keys, so either split can be taken there)."""
        yield from self.db.conn.execute(
            f"SELECT c.id, {_SPLIT_KEYS['work']}, {_SPLIT_KEYS['conversation']}, t.text, "
            "t.speaker FROM conversations c JOIN sources s ON s.id = c.source_id "
            "JOIN turns t ON t.conversation_id = c.id ORDER BY c.id, t.position")

    def content_digest(self) -> str:
        """A digest that changes when the conversations change: the sources (each with
        its content's sha256 and work), and the count and last id of the conversations
        and of the turns (an ingest, `corpus rm` and duplicate removal all move those).
        Cheap: no turn text is read."""
        digest = hashlib.sha256()
        for row in self.db.conn.execute(
                "SELECT id, sha256, COALESCE(work, ''), COALESCE(duplicate_of, 0), "
                "COALESCE(conversations, 0), COALESCE(turns, 0) FROM sources ORDER BY id"):
            digest.update(repr(row).encode())
        for table in ("conversations", "turns"):
            row = self.db.conn.execute(
                f"SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM {table}").fetchone()
            digest.update(f"{table}:{row!r}".encode())
        return digest.hexdigest()


def token_caches(db: Path | str) -> Path:
    """Where the corpus' token caches live by default (chatbot.train.token_cache):
    CORPUS.tokens/ beside the corpus file."""
    db = Path(db)
    return db.with_name(db.name + ".tokens")


_CONVERSATION_KEY = "s.sha256 || ':' || c.position"
_SPLIT_KEYS = {
    "work": f"COALESCE(s.work, {_CONVERSATION_KEY})",
    "conversation": _CONVERSATION_KEY,
}


def _stored_names(name: str) -> list[str]:
    """The names the store may record for a path given from here: the absolute path
    (of the archive, for ARCHIVE!member), and a transcripts file's source name."""
    archive, separator, member = name.partition(MEMBER_SEPARATOR)
    if separator and not Path(name).exists():
        absolute = str(Path(archive).expanduser().resolve()) + separator + member
    else:
        absolute = str(Path(name).expanduser().resolve())
    return [absolute, f"transcripts:{absolute}"]


def _split_key(split_by: str) -> str:
    """The SQL expression of a conversation's split key (see iter_turn_texts)."""
    if split_by not in _SPLIT_KEYS:
        raise ChatbotError(f"unknown split key {split_by!r}; choose one of "
                           f"{', '.join(_SPLIT_KEYS)}")
    return _SPLIT_KEYS[split_by]
