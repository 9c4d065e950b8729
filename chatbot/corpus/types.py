"""The values readers produce: turns and conversations, plus the options every reader takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

# Subtitles: a silence longer than this (seconds) between two spoken cues ends a
# conversation. Chosen from real files: see chatbot/corpus/subtitles/segment.py.
DEFAULT_GAP_SECONDS = 5.0
# Chat exports (WhatsApp, Telegram): an hour without a message ends a conversation.
CHAT_GAP_SECONDS = 3600.0
DEFAULT_MIN_TURNS = 2

# Formats whose sources are works (a film, a book): train and validation are split by
# work, so no film or book has conversations on both sides. Dialogue sets (one file of
# many unrelated dialogues) are split by conversation.
WORK_FORMATS = frozenset({"srt", "vtt", "ass", "ttml", "opus", "novel", "epub"})


class Turn(NamedTuple):
    """One speaker's contribution: the text, and who said it and when, where known.

    A NamedTuple rather than a frozen dataclass: ingestion makes one per turn of every
    file, and a tuple is several times cheaper to make.
    """

    text: str
    speaker: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(slots=True)
class Conversation:
    """Turns in the order they were spoken."""

    turns: list[Turn] = field(default_factory=list)


def _ignore(_message: str) -> None:
    return None


@dataclass(frozen=True)
class ReadOptions:
    """Options shared by all readers; each reader uses those that apply to it."""

    encoding: str | None = None  # None: detect (BOM, UTF-8, then charset-normalizer)
    gap_seconds: float | None = None  # None: the format's own (see gap())
    min_turns: int = DEFAULT_MIN_TURNS
    warn: Callable[[str], None] = _ignore  # receives "file:line: message" warnings
    progress: Callable[[int], None] = _ignore  # receives bytes read so far in this file
    # Set by the ingester on a second try when a subtitle file is too far out of order
    # for streaming: cues then go through an on-disk sort.
    sort_externally: bool = False

    def gap(self, default: float) -> float:
        """The silence (seconds) that ends a conversation: the one given, else the
        reading format's own `default` (DEFAULT_GAP_SECONDS, CHAT_GAP_SECONDS)."""
        return default if self.gap_seconds is None else self.gap_seconds
