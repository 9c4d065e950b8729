"""SubRip (.srt): cue numbers optional or wrong, blank lines inside text, lenient timing."""

from __future__ import annotations

import re
from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.read import conversations
from chatbot.corpus.subtitles.timing import to_ms
from chatbot.corpus.types import Conversation, ReadOptions

_TIME = r"(\d+)\s*:\s*(\d{1,2})\s*:\s*(\d{1,2})\s*[,.:]\s*(\d{1,3})"
TIMING = re.compile(rf"^{_TIME}\s*-+>\s*{_TIME}(?:\s.*)?$")
# Anything that looks like it meant to be a timing line: digits, colons and an arrow.
_LOOKS_TIMED = re.compile(r"^\s*\d+\s*:.*-+>")


def _text_lines(pending: list[str]) -> tuple[str, ...]:
    """The text of a cue: drop the next cue's number and the blank lines around it."""
    while pending and not pending[-1]:
        pending.pop()
    if pending and pending[-1].isdigit():
        pending.pop()  # the number of the next cue, right or wrong
    while pending and not pending[-1]:
        pending.pop()
    while pending and not pending[0]:
        pending.pop(0)
    return tuple(pending)


def parse(source: Source) -> Iterator[Cue]:
    """Yield cues in file order; malformed timing lines are skipped with a warning."""
    text = source.text()
    start = end = at = -1  # at: line number of the current cue's timing line, -1 for none
    pending: list[str] = []
    for line in text.lines():
        line = line.strip().lstrip("\ufeff")
        if "->" in line and _LOOKS_TIMED.match(line):
            match = TIMING.match(line)
            if at >= 0:
                lines = _text_lines(pending)
                if lines:
                    yield Cue(start, end, lines, at)
            pending = []
            if match:
                g = match.groups()
                start, end, at = to_ms(*g[0:4]), to_ms(*g[4:8]), text.line
            else:
                at = -1
                source.warn("malformed timing line skipped with its cue", text.line)
            continue
        if at >= 0:
            pending.append(line)
    if at >= 0:
        lines = _text_lines(pending)
        if lines:
            yield Cue(start, end, lines, at)


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """SubRip file -> conversations."""
    return conversations(parse(source), options)
