"""WebVTT (.vtt): optional hours, NOTE/STYLE/REGION blocks, cue settings, <v Speaker> spans."""

from __future__ import annotations

import re
from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.read import conversations
from chatbot.corpus.subtitles.timing import to_ms
from chatbot.corpus.types import Conversation, ReadOptions

_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})[.,](\d{1,3})"
TIMING = re.compile(rf"^{_TIME}\s+-->\s+{_TIME}(?:\s.*)?$")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_SKIPPED_BLOCKS = ("NOTE", "STYLE", "REGION")


def _voice(lines: list[str]) -> str | None:
    """The speaker named by the first <v Name> span, if any."""
    for line in lines:
        match = _VOICE.search(line)
        if match:
            return match.group(1).strip()
    return None


def parse(source: Source) -> Iterator[Cue]:
    """Yield cues in file order. Blocks are separated by blank lines; the header block and
    NOTE, STYLE and REGION blocks carry no cues."""
    text = source.text()
    block: list[tuple[int, str]] = []
    header_seen = False
    for line in text.lines():
        line = line.strip().lstrip("\ufeff")
        if not header_seen and line:
            header_seen = True
            if line.startswith("WEBVTT"):
                line = "NOTE"  # the header block is skipped like a note
        if line:
            block.append((text.line, line))
        elif block:
            yield from _cue(source, block)
            block = []
    if block:
        yield from _cue(source, block)


def _cue(source: Source, block: list[tuple[int, str]]) -> Iterator[Cue]:
    """The cue in one block (an optional identifier line, a timing line, text), if any."""
    if block[0][1].split(maxsplit=1)[0] in _SKIPPED_BLOCKS:
        return
    for i, (number, line) in enumerate(block[:2]):
        if "-->" not in line:
            continue
        match = TIMING.match(line)
        if not match:
            source.warn("malformed timing line skipped with its cue", number)
            return
        g = match.groups()
        body = [entry[1] for entry in block[i + 1 :]]
        if body:
            yield Cue(to_ms(*g[0:4]), to_ms(*g[4:8]), "\n".join(body), number, _voice(body))
        return


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """WebVTT file -> conversations."""
    return conversations(parse, source, options)
