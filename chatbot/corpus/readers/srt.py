"""SubRip (.srt): cue numbers optional or wrong, blank lines inside text, lenient timing."""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import repeat

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.read import conversations
from chatbot.corpus.types import Conversation, ReadOptions

# A timestamp: hours and minutes (one group, looked up in _Minutes), seconds, fraction.
_TIME = r"(\d+[ \t]*:[ \t]*\d{1,2})[ \t]*:[ \t]*(\d{1,2})[ \t]*[,.:][ \t]*(\d{1,3})"
# A timing line with the line end before it, found by one split of a whole chunk (the
# scan runs in C, and the leading literal "\n" lets it skip from line end to line end):
# either well formed, with its numbers captured, or anything else with digits, a colon
# and an arrow, captured whole (the 7th group) so that it is reported and skipped.
_TIMING_LINE = re.compile(
    rf"\n[ \t\ufeff]*(?:{_TIME}[ \t]*-+>[ \t]*{_TIME}(?:[ \t][^\n]*)?"
    r"|(\d+[ \t]*:[^\n]*-+>[^\n]*))$",
    re.MULTILINE,
)
# The usual timing line exactly ("00:01:02,500 --> 00:01:04,000"): simpler, so a third
# faster to split on. Used for a chunk when it finds every arrow ("->") in the chunk, as
# every line the lenient pattern would take has one; else the chunk is split again with
# the lenient one. Same groups, less the last.
_EXACT_TIMING_LINE = re.compile(
    r"\n(\d+:\d\d):(\d\d),(\d\d\d) --> (\d+:\d\d):(\d\d),(\d\d\d)$", re.MULTILINE
)
_GROUPS = 7
_MAX_CUE_TEXT = 1 << 20
# Milliseconds per unit of a fraction of 1, 2 or 3 digits ('5' = 500 ms).
_FRACTION = (0, 100, 10, 1)


class _Minutes(dict):
    """'01:02' (hours:minutes) -> milliseconds, remembered: consecutive cues share their
    hour and minute, and a dictionary lookup costs half the two int() calls it saves."""

    def __missing__(self, key: str) -> int:
        if len(self) > 10_000:  # a file spanning days: keep memory flat
            self.clear()
        hours, minutes = key.split(":")
        self[key] = value = (int(hours) * 60 + int(minutes)) * 60_000
        return value


def _cue_text(block: str) -> str:
    """The text of a cue: without the next cue's number or surrounding blank lines."""
    block = block.strip()
    head, _, last = block.rpartition("\n")
    if last.strip().isdigit():
        return head.rstrip()  # the number of the next cue, right or wrong
    return block


def parse(source: Source) -> Iterator[Cue]:
    """Yield cues in file order; text runs until the next timing line (blank lines and
    all), and a malformed timing line is skipped, with its text, with a warning."""
    text = source.text()
    timing: tuple[int, int, int] | None = None  # (start, end, line) of the cue being read
    # Text read since that timing line: it always starts with a line end ("\n" stands for
    # the start of the file), which each timing line's match takes with it.
    pending = "\n"
    line = 0  # number of the line that `pending`'s first "\n" ends
    fraction = _FRACTION
    new = tuple.__new__  # Cue(...) without the Python-level __new__: once per cue
    minutes = _Minutes()
    for chunk in text.chunks():
        buffer = pending + chunk
        parts = _EXACT_TIMING_LINE.split(buffer)
        fields = iter(parts)
        if len(parts) // _GROUPS == buffer.count("->"):
            # parts = [text, 6 groups of a timing line, text, 6 groups, ..., text]: zip
            # over one iterator takes them seven at a time and leaves the last text.
            cues = zip(*[fields] * _GROUPS, repeat(None), strict=False)
        else:
            parts = _TIMING_LINE.split(buffer)  # 7 groups, the last for malformed lines
            fields = iter(parts)
            cues = zip(*[fields] * (_GROUPS + 1), strict=False)
        for body, hm1, s1, f1, hm2, s2, f2, malformed in cues:
            line += body.count("\n") + 1
            if timing is not None:
                cue_text = _cue_text(body)
                if cue_text:
                    yield new(Cue, (timing[0], timing[1], cue_text, timing[2], None))
            if malformed is None:
                # Inline rather than a helper: this runs once per cue of every file.
                timing = (
                    minutes[hm1] + int(s1) * 1000 + int(f1) * fraction[len(f1)],
                    minutes[hm2] + int(s2) * 1000 + int(f2) * fraction[len(f2)],
                    line,
                )
            else:
                timing = None
                source.warn("malformed timing line skipped with its cue", line)
        pending = parts[-1]
        if len(pending) > _MAX_CUE_TEXT:  # not subtitles: keep memory flat anyway
            if timing is not None:
                source.warn("cue text longer than 1 MB skipped", timing[2])
                timing = None
            line += pending.count("\n") - 1
            pending = "\n"  # its last line end: chunks end at one
    if timing is not None:
        cue_text = _cue_text(pending)
        if cue_text:
            yield new(Cue, (timing[0], timing[1], cue_text, timing[2], None))


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """SubRip file -> conversations."""
    return conversations(parse, source, options)
