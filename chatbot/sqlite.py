"""Opening a SQLite store: the one way the corpus and the transcripts stores open a file.

`open_database` checks the file (not a directory, SQLite or empty), refuses a database
that another migration set made (the corpus and the transcripts have tables of the same
names, and a stranger's database may have them too), switches it to WAL, and applies
the pending migrations under the write lock. Several processes may open one new file at
once: they queue on the busy timeout, and the few moments SQLite answers "database is
locked" at once instead of waiting (switching to WAL, a read that would have to become a
write) are retried until the same deadline. Whatever fails, the connection is closed.

A private store (transcripts, and a corpus that holds them) is created with mode 0600,
and an existing one is narrowed to its owner (0644 becomes 0600) together with its -wal
and -shm files (SQLite gives those the database file's mode when it creates them).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlite_utils import Database, Migrations

from chatbot.errors import ChatbotError
from chatbot.files import create_private, narrow_to_owner

SQLITE_MAGIC = b"SQLite format 3\x00"
# Long enough for another process's commit (milliseconds), a backup of a big file, or
# another ingest's transaction of one file to finish.
BUSY_TIMEOUT_MS = 10_000
SIDE_FILES = ("-wal", "-shm")
_MIGRATIONS_TABLE = Migrations.migrations_table


def check_file(path: Path, noun: str) -> None:
    """Refuse, with one clear line, a directory or a file that is not SQLite (never
    overwrite it). A missing or empty file passes: SQLite makes it a new database."""
    if path.is_dir():
        raise ChatbotError(f"{path}: is a directory, not a {noun}")
    try:
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_MAGIC))
            if head != SQLITE_MAGIC:
                raise ChatbotError(f"{path}: not a SQLite database; refusing to touch it")
    except OSError as e:  # e.g. a file another user owns
        raise ChatbotError(f"{path}: cannot read: {e.strerror}") from None


def make_private(path: Path) -> None:
    """Make a database file and its -wal and -shm files (those that exist) readable and
    writable by their owner only (a file private already is left as it is)."""
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SIDE_FILES)):
        try:
            narrow_to_owner(file)
        except FileNotFoundError:
            continue  # no -wal or -shm yet: SQLite will create them with the file's mode
        except OSError as e:
            raise ChatbotError(f"{file}: cannot make it private (mode 0600): {e.strerror}"
                               ) from None


def _migration_sets(conn: sqlite3.Connection) -> set[str] | None:
    """The migration sets recorded in the file, or None if it has no usable record."""
    try:
        rows = conn.execute(f"SELECT DISTINCT migration_set FROM {_MIGRATIONS_TABLE}")
        return {row[0] for row in rows}
    except sqlite3.OperationalError as e:
        if "no such" in str(e):  # no such table, or a table without that column
            return None
        raise


def check_owner(conn: sqlite3.Connection, migrations: Migrations, path: Path, noun: str) -> None:
    """Refuse a database that `migrations` did not make: one with anything in it and no
    record of that migration set. An empty file, or one holding only an empty record
    table (a store whose first migration never committed), is new."""
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    sets = _migration_sets(conn) if _MIGRATIONS_TABLE in names else None
    if sets is not None and migrations.name in sets:
        return
    if not sets and names <= {_MIGRATIONS_TABLE} | _record_indexes(conn, names):
        return
    made_by = f" (made by {', '.join(sorted(sets))})" if sets else ""
    raise ChatbotError(f"{path}: a SQLite database of something else{made_by}, not a {noun}; "
                       "refusing to change it")


def _record_indexes(conn: sqlite3.Connection, names: set[str]) -> set[str]:
    """The names in `names` that are indexes of the migrations record table."""
    if _MIGRATIONS_TABLE not in names:
        return set()
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                        [_MIGRATIONS_TABLE])
    return {row[0] for row in rows}


def open_database(
    path: Path, migrations: Migrations, *, noun: str, private: bool = False
) -> Database:
    """Open (or create) the store at `path` made by `migrations`, migrated and in WAL mode.

    `noun` names the store in messages ("corpus database"). `private` creates the file
    with mode 0600 and narrows an existing one (and its -wal and -shm files) to its
    owner, once the file is known to be the store's.
    Every failure is a one-line ChatbotError, with the connection closed. Migrations run
    inside one write transaction, so they must not be `transactional=False`.
    """
    check_file(path, noun)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if private:
            try:
                create_private(path)
            except OSError as e:
                raise ChatbotError(f"{path}: cannot create the {noun}: {e.strerror}") from None
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return _open(path, migrations, noun, private)
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise ChatbotError(f"{path}: cannot open the {noun}: {e}") from None
            time.sleep(0.05)
        except sqlite3.DatabaseError as e:
            raise ChatbotError(f"{path}: cannot open the {noun}: {e}") from None


def _open(path: Path, migrations: Migrations, noun: str, private: bool) -> Database:
    # Not tied to the opening thread: the corpus writes through a worker thread, tf.data
    # reads on whichever thread is free, and a chat shares its store with its threads.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        db = Database(conn)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        check_owner(conn, migrations, path, noun)  # before anything could change the file
        if private:
            make_private(path)
        if db.journal_mode != "wal":
            db.enable_wal()
        if migrations.pending(db):
            # The write lock from the first statement: two processes opening a new file
            # at once do not both create the tables, and none reads first and then fails
            # to become the writer. apply() checks again what is pending.
            conn.execute("BEGIN IMMEDIATE")
            try:
                check_owner(conn, migrations, path, noun)
                migrations.apply(db)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return db
    except BaseException:
        conn.close()
        raise
