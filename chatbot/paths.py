"""Where the user's data lives: platformdirs' data dir, moved wholesale by CHATBOT_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "chatbot"


def data_dir() -> Path:
    """The directory for corpora, models, history and transcripts (created on demand)."""
    home = os.environ.get("CHATBOT_HOME")
    path = Path(home).expanduser() if home else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_corpus_db() -> Path:
    """The corpus database used when no --db is given."""
    return data_dir() / "corpus.db"
