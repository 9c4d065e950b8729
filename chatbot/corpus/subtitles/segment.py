"""Ordered cues into conversations: silences split, dashes split, unfinished sentences join.

Default gap (chatbot.corpus.types.DEFAULT_GAP_SECONDS = 5 s), chosen from real files
(`python scripts/gap_stats.py` prints these): over the 1,354 cue pairs of pysrt-utf-8.srt
(a French feature film) and sintel_en.srt the median silence is 0.04 s, 81% are under
2 s, and only 7.8% exceed 5 s. Those long pauses are cuts and scene changes; an answer
after a slow pause (2 to 5 s) still belongs to its exchange. 5 s gives conversations of
about 13 cues on the film, long enough to carry context, short enough to stay one scene.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from chatbot.corpus.subtitles.clean import clean_line, has_words, is_credit, is_plain
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.types import Conversation, Turn

# A conversation longer than this is split: nothing that long is one exchange of talk, and
# it bounds the memory a file with no pauses at all can take.
MAX_TURNS = 1000
_TERMINAL = (".", "?", "!", "…", "。", "？", "！", "»", "♪")
_CLOSERS = "\"'”’»)]"


def is_unfinished(text: str) -> bool:
    """True when the text stops mid-sentence: no . ? ! at the end, or a trailing ... or ,"""
    end = text.rstrip().rstrip(_CLOSERS)
    if end.endswith(("...", "…", ",")):
        return True
    return not end.endswith(_TERMINAL)


@dataclass
class _Builder:
    """A turn being assembled from one or more cues."""

    parts: list[str]
    speaker: str | None
    start_ms: int
    end_ms: int

    def text(self) -> str:
        return " ".join(self.parts)

    def turn(self) -> Turn:
        return Turn(self.text(), self.speaker, self.start_ms, self.end_ms)


def cue_pieces(cue: Cue) -> list[tuple[str | None, str, bool]]:
    """Clean a cue and split it into turn pieces; lines without a dash continue the last."""
    joined = "\n".join(cue.lines)
    if is_credit(joined):
        return []
    if is_plain(joined):  # the common case: one piece, nothing to clean
        text = " ".join(joined.split())
        return [(cue.speaker, text, False)] if has_words(text) else []
    pieces: list[tuple[str | None, str, bool]] = []
    for raw in cue.lines:
        speaker, text, dash = clean_line(raw)
        speaker = speaker or cue.speaker
        if not text:
            continue
        if pieces and not dash and (speaker is None or speaker == pieces[-1][0]):
            last_speaker, last_text, last_dash = pieces[-1]
            pieces[-1] = (last_speaker, f"{last_text} {text}", last_dash)
        else:
            pieces.append((speaker, text, dash))
    return pieces


def _join(previous: str, following: str) -> str:
    """'I was thinking...' + '...about you' -> 'I was thinking... about you'."""
    return f"{previous} {following.lstrip('.…').lstrip()}"


def segment(cues: Iterable[Cue], gap_seconds: float) -> Iterator[Conversation]:
    """Group ordered cues into conversations of turns."""
    gap_ms = int(gap_seconds * 1000)
    turns: list[_Builder] = []
    last_end: int | None = None
    for cue in cues:
        pieces = cue_pieces(cue)
        if not pieces:
            continue
        pause = last_end is not None and cue.start_ms - last_end > gap_ms
        if turns and (pause or len(turns) >= MAX_TURNS):
            yield Conversation([b.turn() for b in turns])
            turns = []
        last_end = max(last_end or 0, cue.end_ms)
        for i, (speaker, text, dash) in enumerate(pieces):
            previous = turns[-1] if turns else None
            continues = (
                previous is not None
                and i == 0
                and not dash
                and is_unfinished(previous.text())
                and (speaker is None or speaker == previous.speaker)
            )
            if continues:
                previous.parts[-1] = _join(previous.parts[-1], text)
                previous.end_ms = max(previous.end_ms, cue.end_ms)
            else:
                turns.append(_Builder([text], speaker, cue.start_ms, cue.end_ms))
    if turns:
        yield Conversation([b.turn() for b in turns])
