"""Cornell Movie-Dialogs: movie_lines.txt (one line per utterance) + movie_conversations.txt.

Both files use ` +++$+++ ` between fields:

    L1045 +++$+++ u0 +++$+++ m0 +++$+++ BIANCA +++$+++ They do not!
    u0 +++$+++ u2 +++$+++ m0 +++$+++ ['L194', 'L195', 'L196', 'L197']

The lines file is indexed into a temporary SQLite database keyed by line id, so memory
stays flat however large the corpus; the conversations file is then walked in order.
"""

from __future__ import annotations

import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from chatbot.corpus.source import Source
from chatbot.corpus.textfile import TextFile, resolve_encoding, scan
from chatbot.corpus.types import Conversation, ReadOptions, Turn
from chatbot.errors import ReaderError

LINES_NAME = "movie_lines.txt"
CONVERSATIONS_NAME = "movie_conversations.txt"
SEPARATOR = "+++$+++"

# The rest of the Cornell release: metadata, not dialogue. The conversations file is
# read through movie_lines.txt, so a directory walk must not ingest it a second time.
SKIP_NAMES: frozenset[str] = frozenset(
    {
        "movie_titles_metadata.txt",
        "movie_characters_metadata.txt",
        "raw_script_urls.txt",
        CONVERSATIONS_NAME,
    }
)

# Line ids inside the list field: ['L194', 'L195']. A regex rather than ast.literal_eval,
# which can blow the stack on hostile input.
_LIST_FIELD = re.compile(r"^\[.*\]$")
_LINE_ID = re.compile(r"""['"]([^'"]+)['"]""")


def companions(path: Path) -> list[Path]:
    """The other files of the Cornell pair that exist beside `path`."""
    path = Path(path)
    other = LINES_NAME if path.name == CONVERSATIONS_NAME else CONVERSATIONS_NAME
    companion = path.parent / other
    return [companion] if companion.is_file() else []


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield each conversation of movie_conversations.txt with its lines' text and speakers."""
    path = source.path
    handed_conversations = path.name == CONVERSATIONS_NAME
    companion = path.parent / (LINES_NAME if handed_conversations else CONVERSATIONS_NAME)
    if not companion.is_file():
        what, need = (
            ("conversations", LINES_NAME) if handed_conversations else ("lines", CONVERSATIONS_NAME)
        )
        raise ReaderError(
            path, f"Cornell movie {what} need {need} beside them (not found in {path.parent})"
        )
    override = source.options.encoding
    handed = source.text()
    companion_text = TextFile(companion, resolve_encoding(companion, scan(companion), override))
    if handed_conversations:
        lines_file, conversations_file = companion_text, handed
    else:
        lines_file, conversations_file = handed, companion_text

    with tempfile.TemporaryDirectory(prefix="chatbot-cornell-") as tmp:
        # closing() so the database file is released before its directory is removed.
        with closing(sqlite3.connect(Path(tmp) / "lines.db")) as db:
            _index_lines(db, lines_file, source)
            yield from _conversations(db, conversations_file, Path(lines_file.path).name, source)


def _index_lines(db: sqlite3.Connection, lines_file: TextFile, source: Source) -> None:
    """Load (line id -> speaker, text) into the database, one streamed line at a time."""
    # A throwaway database: durability would only cost time.
    db.execute("PRAGMA journal_mode = OFF")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("CREATE TABLE lines (id TEXT PRIMARY KEY, speaker TEXT, text TEXT) WITHOUT ROWID")

    def rows() -> Iterator[tuple[str, str | None, str]]:
        for raw in lines_file.lines():
            if not raw.strip():
                continue
            # maxsplit keeps a separator inside the text; strip() copes with lines whose
            # trailing space (before an empty text) was lost.
            fields = [f.strip() for f in raw.split(SEPARATOR, 4)]
            if len(fields) < 4 or not fields[0]:
                _warn(source, lines_file, f"not a Cornell movie line (5 fields): {raw[:60]!r}")
                continue
            text = fields[4] if len(fields) > 4 else ""
            yield fields[0], fields[3] or None, text

    db.executemany("INSERT OR IGNORE INTO lines VALUES (?, ?, ?)", rows())
    db.commit()


def _conversations(
    db: sqlite3.Connection, conversations_file: TextFile, lines_name: str, source: Source
) -> Iterator[Conversation]:
    for raw in conversations_file.lines():
        if not raw.strip():
            continue
        fields = [f.strip() for f in raw.split(SEPARATOR, 3)]
        if len(fields) < 4 or not _LIST_FIELD.match(fields[3]):
            _warn(
                source,
                conversations_file,
                f"not a Cornell conversation (4 fields, the last a list of line ids): {raw[:60]!r}",
            )
            continue
        turns: list[Turn] = []
        for line_id in _LINE_ID.findall(fields[3]):
            row = db.execute("SELECT speaker, text FROM lines WHERE id = ?", (line_id,)).fetchone()
            if row is None:
                _warn(source, conversations_file, f"line {line_id} not in {lines_name}; dropped")
                continue
            text = " ".join(row[1].split())
            if text:
                turns.append(Turn(text, speaker=row[0]))
        if turns:
            yield Conversation(turns)


def _warn(source: Source, file: TextFile, message: str) -> None:
    """Warn at the current line of `file`, which may be the companion, not source.path."""
    source.options.warn(f"{file.path}:{file.line}: {message}")
