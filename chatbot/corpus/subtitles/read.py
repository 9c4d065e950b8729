"""The pipeline every subtitle reader shares: cues -> start order -> conversations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from chatbot.corpus.subtitles.cue import Cue, ordered
from chatbot.corpus.subtitles.segment import segment
from chatbot.corpus.types import Conversation, ReadOptions


def conversations(cues: Iterable[Cue], options: ReadOptions) -> Iterator[Conversation]:
    """Order the parsed cues by start time and segment them into conversations."""
    return segment(ordered(cues, options.sort_externally), options.gap_seconds)
