"""Chat transcripts: every conversation with the bot, kept in a private SQLite file.

`store.TranscriptStore` is what the chat writes through (one commit per turn) and what
`chatbot transcripts ...` reads; `export` renders transcripts as text, Markdown or JSONL
and turns them back into corpus conversations; `ingest` puts those into the corpus store.
"""

from __future__ import annotations

from pathlib import Path

from chatbot.paths import data_dir


def default_transcripts_db() -> Path:
    """The transcripts file used when no --transcripts is given."""
    return data_dir() / "transcripts.db"
