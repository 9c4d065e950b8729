"""The pipeline every subtitle reader shares: cues -> cleaned -> start order ->
conversations; a large file is parsed and cleaned by a second process (child.py)."""

from __future__ import annotations

from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles import child
from chatbot.corpus.subtitles.cue import ordered
from chatbot.corpus.subtitles.segment import cleaned, segment
from chatbot.corpus.types import DEFAULT_GAP_SECONDS, Conversation, ReadOptions


def conversations(
    parse: child.Parser, source: Source, options: ReadOptions
) -> Iterator[Conversation]:
    """Parse the file with `parse`, clean and order its cues, and segment them."""
    # A child opens the file itself: only a plain file on disk can go to one.
    if source.info.size >= child.CHILD_MIN_BYTES and source.blob.path is not None:
        cues = child.cleaned_in_child(parse, source)
    else:
        cues = cleaned(parse(source))
    return segment(ordered(cues, options.sort_externally), options.gap(DEFAULT_GAP_SECONDS))
