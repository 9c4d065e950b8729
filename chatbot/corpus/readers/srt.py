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
# Any line that looks like it meant to be a timing line (digits, a colon, an arrow); the
# capture keeps it in re.split's output. Splitting a whole chunk runs in C.
_TIMED_LINE = re.compile(r"^[ \t\ufeff]*(\d+[ \t]*:[^\n]*-+>[^\n]*)$", re.MULTILINE)
_MAX_CUE_TEXT = 1 << 20


def _text_lines(block: str) -> tuple[str, ...]:
    """The text of a cue: its lines, without the next cue's number or surrounding blanks."""
    block = block.strip()
    head, _, last = block.rpartition("\n")
    if last.strip().isdigit():
        block = head.rstrip()  # the number of the next cue, right or wrong
    if not block:
        return ()
    return tuple(line.strip() for line in block.split("\n"))


def parse(source: Source) -> Iterator[Cue]:
    """Yield cues in file order; text runs until the next timing line (blank lines and
    all), and a malformed timing line is skipped, with its text, with a warning."""
    text = source.text()
    timing: tuple[int, int, int] | None = None  # (start, end, line) of the cue being read
    pending = ""  # text read since that timing line
    line = 1  # line number where `pending` starts
    for chunk in text.chunks():
        parts = _TIMED_LINE.split(pending + chunk)
        # parts = [text, timing line, text, timing line, ..., text]
        for i in range(1, len(parts), 2):
            body = parts[i - 1]
            line += body.count("\n")
            if timing is not None:
                lines = _text_lines(body)
                if lines:
                    yield Cue(timing[0], timing[1], lines, timing[2])
            match = TIMING.match(parts[i].strip())
            if match:
                g = match.groups()
                timing = (to_ms(*g[0:4]), to_ms(*g[4:8]), line)
            else:
                timing = None
                source.warn("malformed timing line skipped with its cue", line)
        pending = parts[-1]
        if len(pending) > _MAX_CUE_TEXT:  # not subtitles: keep memory flat anyway
            if timing is not None:
                source.warn("cue text longer than 1 MB skipped", timing[2])
                timing = None
            line += pending.count("\n")
            pending = ""
    if timing is not None:
        lines = _text_lines(pending)
        if lines:
            yield Cue(timing[0], timing[1], lines, timing[2])


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """SubRip file -> conversations."""
    return conversations(parse(source), options)
