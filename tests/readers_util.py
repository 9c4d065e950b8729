"""Helpers for reader tests: run a reader on a path and get plain lists back."""

from __future__ import annotations

from pathlib import Path

from chatbot.corpus.source import Source
from chatbot.corpus.types import Conversation, ReadOptions


def read_all(read, path: Path, options: ReadOptions | None = None) -> list[Conversation]:
    """All conversations a reader yields for one file."""
    options = options or ReadOptions()
    return list(read(Source(Path(path), options), options))


def texts(conversations: list[Conversation]) -> list[list[str]]:
    """Just the turn texts, conversation by conversation."""
    return [[t.text for t in c.turns] for c in conversations]
