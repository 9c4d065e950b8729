"""The transcripts store: conversations with the bot and their turns, in SQLite.

The chat writes one turn at a time, each in its own transaction committed before the
reply is shown, so a crash or `kill -9` loses nothing the user saw. Several chats may
write one file at once: WAL lets readers and a writer work side by side, the busy timeout
makes writers queue instead of failing, and BEGIN IMMEDIATE makes "find the next
position" and "insert there" one step. Transcripts are private: the file is created with
mode 0600, an existing one is narrowed to 0600 with its -wal and -shm files, and SQLite
gives the -wal and -shm files it creates the mode of the database file. Opening is
chatbot.sqlite's, as for the corpus store.

The schema is created and changed only by the migrations below.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from sqlite_utils import Database, Migrations

from chatbot.errors import ChatbotError
from chatbot.sqlite import open_database

Role = Literal["user", "bot"]
Rating = Literal["good", "bad"]
Origin = Literal["terminal", "api", "web"]
ROLES: tuple[str, ...] = get_args(Role)
RATINGS: tuple[str, ...] = get_args(Rating)
ORIGINS: tuple[str, ...] = get_args(Origin)

MIGRATION_SET = "chatbot.transcripts"
migrations = Migrations(MIGRATION_SET)

NOUN = "transcripts database"


@migrations()
def m001_create_tables(db: Database) -> None:
    # Plain SQL: sqlite-utils' create() cannot write CHECK constraints, and these keep a
    # misspelt role or rating out of the file whoever writes it.
    db.execute(
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,      -- ISO 8601, UTC
            model_path TEXT,
            model_digest TEXT,
            settings TEXT,                 -- JSON object: the chat's settings at the start
            name TEXT
        )"""
    )
    db.execute(
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            position INTEGER NOT NULL,     -- 0, 1, 2... within the conversation
            role TEXT NOT NULL CHECK (role IN ('user', 'bot')),
            text TEXT NOT NULL,
            created_at TEXT NOT NULL,      -- ISO 8601, UTC
            latency_ms INTEGER,            -- bot turns: time to produce the reply
            tokens INTEGER,                -- bot turns: tokens generated
            settings TEXT,                 -- bot turns: JSON object of decode settings
            rating TEXT CHECK (rating IN ('good', 'bad')),
            UNIQUE (conversation_id, position)
        )"""
    )
    db["turns"].enable_fts(["text"], create_triggers=True, tokenize="unicode61")


@migrations()
def m002_origin_and_digest(db: Database) -> None:
    # Where a conversation was held (the terminal, the HTTP API, the web page), and for the
    # stateless OpenAI-style API a digest of its turns so far: the next request whose
    # history is exactly these turns continues this conversation, even after a restart.
    db.execute(
        "ALTER TABLE conversations ADD COLUMN origin TEXT NOT NULL DEFAULT 'terminal' "
        "CHECK (origin IN ('terminal', 'api', 'web'))"
    )
    db.execute("ALTER TABLE conversations ADD COLUMN digest TEXT")
    db.execute("CREATE INDEX conversations_digest ON conversations (digest)")
    # The last conversation id given: the service hands ids to clients, and a deleted
    # conversation's id must never name someone else's later (a plain INTEGER PRIMARY KEY
    # gives the highest one again once it is deleted; AUTOINCREMENT would need the table
    # rebuilt, which foreign keys forbid inside the migration's transaction).
    db.execute("CREATE TABLE conversation_ids (last INTEGER NOT NULL)")
    db.execute("INSERT INTO conversation_ids SELECT COALESCE(MAX(id), 0) FROM conversations")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _dumps(settings: Mapping[str, Any] | None) -> str | None:
    # default=str: a Path or other simple object in the settings is recorded, not fatal.
    if settings is None:
        return None
    return json.dumps(dict(settings), sort_keys=True, ensure_ascii=False, default=str)


def _loads(text: str | None) -> dict[str, Any] | None:
    return None if text is None else json.loads(text)


_CONVERSATION_COLUMNS = (
    "c.id, c.started_at, c.name, c.origin, c.model_path, c.model_digest, c.settings, "
    "COUNT(t.id) AS turns, MAX(t.created_at) AS last_at, "
    "(SELECT f.text FROM turns f WHERE f.conversation_id = c.id ORDER BY f.position LIMIT 1)"
    " AS preview "
    "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id"
)
_TURN_COLUMNS = (
    "id, conversation_id, position, role, text, created_at, latency_ms, tokens, settings, rating"
)


class TranscriptStore:
    """A transcripts database file. Opening it applies pending migrations.

    `create=False` makes a missing file an error instead of a new empty store. One
    object may be shared by threads: calls take turns on its connection.
    """

    def __init__(self, path: Path | str, *, create: bool = True, power_safe: bool = True
                 ) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise ChatbotError(f"{self.path}: no transcripts yet (`chatbot chat` writes them)")
        self._lock = threading.RLock()
        self.db = open_database(self.path, migrations, noun=NOUN, private=True)
        if not power_safe:
            # A commit then reaches the WAL file without waiting for the disk: a killed
            # process still loses nothing committed, and the file stays sound; only a power
            # cut may lose the last commits. A service writing many turns a second wants it.
            self.db.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        with self._lock:
            self.db.close()

    def __enter__(self) -> TranscriptStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Plumbing

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement.

        A deferred BEGIN would read first and then fail to upgrade to a writer when
        another chat committed in between; IMMEDIATE waits (busy timeout) instead.
        """
        with self._lock:
            conn = self.db.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise ChatbotError(f"{self.path}: cannot write the transcripts: {e}") from None
            try:
                yield conn
                conn.commit()
            except BaseException as e:
                conn.rollback()
                if isinstance(e, sqlite3.OperationalError):
                    raise ChatbotError(
                        f"{self.path}: cannot write the transcripts: {e}"
                    ) from None
                raise

    def _query(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return list(self.db.query(sql, params))
            except sqlite3.OperationalError as e:
                raise ChatbotError(f"{self.path}: cannot read the transcripts: {e}") from None

    @staticmethod
    def _conversation_row(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "settings": _loads(row["settings"])}

    @staticmethod
    def _turn_row(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "settings": _loads(row["settings"])}

    @staticmethod
    def _require_conversation(conn: sqlite3.Connection, conversation_id: int) -> None:
        if conn.execute("SELECT 1 FROM conversations WHERE id = ?",
                        [conversation_id]).fetchone() is None:
            raise ChatbotError(f"no conversation with id {conversation_id}")

    # Writing: what the chat calls

    def start_conversation(
        self,
        model_path: str | Path | None,
        model_digest: str | None,
        settings: Mapping[str, Any] | None = None,
        name: str | None = None,
        origin: Origin = "terminal",
    ) -> int:
        """Record a new conversation and return its id."""
        if origin not in ORIGINS:
            raise ChatbotError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
        with self._writing() as conn:
            # Past every id ever given (see m002), under the write lock.
            conn.execute("UPDATE conversation_ids SET last = MAX(last, "
                         "(SELECT COALESCE(MAX(id), 0) FROM conversations)) + 1")
            return conn.execute(
                "INSERT INTO conversations (id, started_at, model_path, model_digest, settings, "
                "name, origin) VALUES ((SELECT last FROM conversation_ids), ?, ?, ?, ?, ?, ?)",
                [_now(), None if model_path is None else str(model_path), model_digest,
                 _dumps(settings or {}), name or None, origin],
            ).lastrowid

    def add_turn(
        self,
        conversation_id: int,
        role: Role,
        text: str,
        *,
        latency_ms: int | None = None,
        tokens: int | None = None,
        settings: Mapping[str, Any] | None = None,
        digest: str | None = None,
    ) -> int:
        """Append a turn to a conversation, committed before this returns; its id.

        `digest`, when given, becomes the conversation's digest in the same transaction
        (see `find_by_digest`)."""
        if role not in ROLES:
            raise ChatbotError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self._writing() as conn:
            self._require_conversation(conn, conversation_id)
            # One statement under the write lock: no other chat can take this position.
            turn_id = conn.execute(
                "INSERT INTO turns (conversation_id, position, role, text, created_at, "
                "latency_ms, tokens, settings) "
                "SELECT ?, COALESCE(MAX(position) + 1, 0), ?, ?, ?, ?, ?, ? "
                "FROM turns WHERE conversation_id = ?",
                [conversation_id, role, text, _now(), latency_ms, tokens, _dumps(settings),
                 conversation_id],
            ).lastrowid
            if digest is not None:
                conn.execute("UPDATE conversations SET digest = ? WHERE id = ?",
                             [digest, conversation_id])
            return turn_id

    def add_turns(
        self, conversation_id: int, turns: list[tuple[Role, str]], digest: str | None = None
    ) -> list[int]:
        """Append several turns in one transaction (a history a client brought); their ids."""
        with self._writing() as conn:
            self._require_conversation(conn, conversation_id)
            ids = []
            for role, text in turns:
                if role not in ROLES:
                    raise ChatbotError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
                ids.append(conn.execute(
                    "INSERT INTO turns (conversation_id, position, role, text, created_at) "
                    "SELECT ?, COALESCE(MAX(position) + 1, 0), ?, ?, ? "
                    "FROM turns WHERE conversation_id = ?",
                    [conversation_id, role, text, _now(), conversation_id]).lastrowid)
            if digest is not None:
                conn.execute("UPDATE conversations SET digest = ? WHERE id = ?",
                             [digest, conversation_id])
            return ids

    def find_by_digest(self, digest: str, origin: Origin) -> int | None:
        """The newest conversation from `origin` whose turns so far have `digest`, or None."""
        rows = self._query("SELECT id FROM conversations WHERE digest = ? AND origin = ? "
                           "ORDER BY id DESC LIMIT 1", [digest, origin])
        return rows[0]["id"] if rows else None

    def replace_last_bot_turn(
        self,
        conversation_id: int,
        text: str,
        *,
        latency_ms: int | None = None,
        tokens: int | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Replace the reply that ends a conversation (/retry); its id. The old rating goes."""
        with self._writing() as conn:
            self._require_conversation(conn, conversation_id)
            last = conn.execute(
                "SELECT id, role FROM turns WHERE conversation_id = ? "
                "ORDER BY position DESC LIMIT 1", [conversation_id],
            ).fetchone()
            if last is None or last[1] != "bot":
                raise ChatbotError(f"conversation {conversation_id} does not end with a bot "
                                   "reply; nothing to replace")
            conn.execute(
                "UPDATE turns SET text = ?, created_at = ?, latency_ms = ?, tokens = ?, "
                "settings = ?, rating = NULL WHERE id = ?",
                [text, _now(), latency_ms, tokens, _dumps(settings), last[0]],
            )
            return last[0]

    def rate(
        self,
        rating: Rating | None,
        *,
        turn_id: int | None = None,
        conversation_id: int | None = None,
    ) -> int:
        """Rate a bot reply good or bad (None clears it); returns the turn id rated.

        Give the turn, or a conversation to rate its last bot reply.
        """
        if rating is not None and rating not in RATINGS:
            raise ChatbotError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")
        if (turn_id is None) == (conversation_id is None):
            raise ValueError("give exactly one of turn_id and conversation_id")
        with self._writing() as conn:
            if turn_id is None:
                self._require_conversation(conn, conversation_id)
                row = conn.execute(
                    "SELECT id FROM turns WHERE conversation_id = ? AND role = 'bot' "
                    "ORDER BY position DESC LIMIT 1", [conversation_id],
                ).fetchone()
                if row is None:
                    raise ChatbotError(f"conversation {conversation_id} has no bot reply to rate")
                turn_id = row[0]
            else:
                row = conn.execute("SELECT role FROM turns WHERE id = ?", [turn_id]).fetchone()
                if row is None:
                    raise ChatbotError(f"no turn with id {turn_id}")
                if row[0] != "bot":
                    raise ChatbotError(f"turn {turn_id} is the user's; only bot replies are rated")
            conn.execute("UPDATE turns SET rating = ? WHERE id = ?", [rating, turn_id])
            return turn_id

    # Writing: what review calls

    def rename(self, conversation_id: int, name: str | None) -> None:
        """Name a conversation; an empty name or None removes the name."""
        with self._writing() as conn:
            self._require_conversation(conn, conversation_id)
            conn.execute("UPDATE conversations SET name = ? WHERE id = ?",
                         [(name or "").strip() or None, conversation_id])

    def remove(self, conversation_id: int) -> None:
        """Delete a conversation, its turns and their search index entries."""
        with self._writing() as conn:
            self._require_conversation(conn, conversation_id)
            # The turns' delete trigger takes their rows out of the full-text index.
            conn.execute("DELETE FROM turns WHERE conversation_id = ?", [conversation_id])
            conn.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    def backup(self, destination: Path | str) -> Path:
        """Copy the whole store, consistent even while chats write, to a new file (0600).

        VACUUM INTO writes a compact snapshot; an existing file is never overwritten.
        """
        destination = Path(destination)
        if destination.exists():
            raise ChatbotError(f"{destination}: already exists; refusing to overwrite it")
        try:
            # Created empty and private first: VACUUM INTO accepts an empty file and keeps
            # its mode, and O_EXCL closes the race with anything creating it meanwhile.
            fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ChatbotError(
                f"{destination}: already exists; refusing to overwrite it"
            ) from None
        except OSError as e:
            raise ChatbotError(
                f"{destination}: cannot create the backup: {e.strerror}"
            ) from None
        os.close(fd)
        try:
            with self._lock:
                self.db.conn.execute("VACUUM INTO ?", [str(destination)])
        except sqlite3.DatabaseError as e:
            destination.unlink(missing_ok=True)
            raise ChatbotError(f"{destination}: backup failed: {e}") from None
        return destination

    # Reading

    def conversation(self, conversation_id: int) -> dict[str, Any]:
        """One conversation's record with its turn count; ChatbotError if there is none.

        Keys: id, started_at, name, origin (terminal, api or web), model_path,
        model_digest, settings (a dict), turns (the count), last_at (the last turn's
        time, or None), preview (its first text).
        """
        rows = self._query(f"SELECT {_CONVERSATION_COLUMNS} WHERE c.id = ? GROUP BY c.id",
                           [conversation_id])
        if not rows:
            raise ChatbotError(f"no conversation with id {conversation_id} in {self.path}")
        return self._conversation_row(rows[0])

    def turns(self, conversation_id: int) -> list[dict[str, Any]]:
        """A conversation's turns in order (ChatbotError if there is no such conversation).

        Keys: id, conversation_id, position, role, text, created_at, latency_ms, tokens,
        settings (a dict or None), rating.
        """
        rows = self._query(f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation_id = ? "
                           "ORDER BY position", [conversation_id])
        if not rows:
            self.conversation(conversation_id)  # raises when it does not exist
        return [self._turn_row(r) for r in rows]

    def turn(self, turn_id: int) -> dict[str, Any]:
        """One turn by id (keys as `turns` gives them); ChatbotError if there is none."""
        rows = self._query(f"SELECT {_TURN_COLUMNS} FROM turns WHERE id = ?", [turn_id])
        if not rows:
            raise ChatbotError(f"no turn with id {turn_id} in {self.path}")
        return self._turn_row(rows[0])

    def list_conversations(self, limit: int | None = 20) -> list[dict[str, Any]]:
        """The newest conversations first (as `conversation` returns them); all if no limit."""
        rows = self._query(f"SELECT {_CONVERSATION_COLUMNS} GROUP BY c.id ORDER BY c.id DESC "
                           "LIMIT ?", [-1 if limit is None else limit])
        return [self._conversation_row(r) for r in rows]

    def latest_conversation(self) -> dict[str, Any] | None:
        """The conversation with the most recent activity (to continue it), or None."""
        rows = self._query(f"SELECT {_CONVERSATION_COLUMNS} GROUP BY c.id "
                           "ORDER BY COALESCE(MAX(t.created_at), c.started_at) DESC, c.id DESC "
                           "LIMIT 1")
        return self._conversation_row(rows[0]) if rows else None

    def conversation_ids(self) -> list[int]:
        """Every conversation id, oldest first."""
        return [r["id"] for r in self._query("SELECT id FROM conversations ORDER BY id")]

    def search(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Turns matching a full-text query (FTS5 syntax), best first.

        Keys: conversation_id, name, turn_id, position, role, text, created_at, snippet
        (the match in [brackets]). A query FTS5 cannot parse is a one-line ChatbotError.
        """
        if not query.strip():
            raise ChatbotError("empty search query")
        sql = (
            "SELECT t.conversation_id, c.name, t.id AS turn_id, t.position, t.role, t.text, "
            "t.created_at, snippet(turns_fts, 0, '[', ']', '…', 12) AS snippet "
            "FROM turns_fts JOIN turns t ON t.id = turns_fts.rowid "
            "JOIN conversations c ON c.id = t.conversation_id "
            "WHERE turns_fts MATCH ? ORDER BY rank LIMIT ?"
        )
        with self._lock:
            try:
                return list(self.db.query(sql, [query, limit]))
            except sqlite3.OperationalError as e:
                raise ChatbotError(f"invalid search query {query!r}: {e} (FTS5 syntax: words, "
                                   '"phrases", OR, NOT, prefix*)') from None

    def integrity_check(self) -> str:
        """SQLite's verdict on the file: 'ok' or the first problem found."""
        return self._query("PRAGMA integrity_check")[0]["integrity_check"]
