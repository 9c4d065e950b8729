"""Advanced SubStation Alpha (.ass/.ssa): Dialogue lines of [Events], the Text field."""

from __future__ import annotations

import re
from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.read import conversations
from chatbot.corpus.subtitles.timing import to_ms
from chatbot.corpus.types import Conversation, ReadOptions

_TIME = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[.,](\d{1,3})\s*$")
# The [Events] Format of ASS (SSA v4 has Marked where ASS has Layer: the same count).
DEFAULT_FORMAT = ("layer", "start", "end", "style", "name", "marginl", "marginr", "marginv",
                  "effect", "text")
_DRAWING = re.compile(r"\{[^}]*\\p[1-9]")
_BREAKS = re.compile(r"\\[Nn]")


def parse(source: Source) -> Iterator[Cue]:
    """Yield one cue per Dialogue line of the [Events] section, in file order."""
    text = source.text()
    fields = DEFAULT_FORMAT
    section = ""
    for line in text.lines():
        line = line.strip().lstrip("\ufeff")
        if line.startswith("[") and line.endswith("]"):
            section = line.lower()
            continue
        if section != "[events]":
            continue
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "format":
            fields = tuple(f.strip().lower() for f in value.split(","))
            if "text" not in fields or "start" not in fields or "end" not in fields:
                source.warn("[Events] Format lacks Start, End or Text; using the default",
                            text.line)
                fields = DEFAULT_FORMAT
        elif key == "dialogue":
            cue = _dialogue(source, value, fields, text.line)
            if cue is not None:
                yield cue


def _dialogue(source: Source, value: str, fields: tuple[str, ...], number: int) -> Cue | None:
    """One Dialogue line -> a cue, or None (malformed: warned; drawings: dropped)."""
    parts = value.split(",", len(fields) - 1)
    if len(parts) != len(fields):
        source.warn("Dialogue line with too few fields skipped", number)
        return None
    row = dict(zip(fields, parts, strict=True))
    start, end = _TIME.match(row["start"]), _TIME.match(row["end"])
    if not start or not end:
        source.warn("Dialogue line with a malformed time skipped", number)
        return None
    body = row["text"]
    if _DRAWING.search(body):
        return None  # vector drawing commands, not speech
    body = _BREAKS.sub("\n", body).replace("\\h", " ")
    text = "\n".join(part.strip() for part in body.split("\n") if part.strip())
    if not text:
        return None
    speaker = row.get("name", "").strip() or None
    return Cue(to_ms(*start.groups()), to_ms(*end.groups()), text, number, speaker)


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """ASS/SSA file -> conversations."""
    return conversations(parse, source, options)
