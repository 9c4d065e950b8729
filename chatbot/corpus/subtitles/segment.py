"""Ordered cues into conversations: silences split, dashes split, unfinished sentences join.

Default gap (chatbot.corpus.types.DEFAULT_GAP_SECONDS = 5 s), chosen from real files
(`python scripts/gap_stats.py` prints these): over the 1,354 cue pairs of pysrt-utf-8.srt
(a French feature film) and sintel_en.srt the median silence is 0.04 s, 81% are under
2 s, and only 7.8% exceed 5 s. Those long pauses are cuts and scene changes; an answer
after a slow pause (2 to 5 s) still belongs to its exchange. 5 s gives conversations of
about 13 cues on the film, long enough to carry context, short enough to stay one scene.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

from chatbot.corpus.subtitles.clean import (
    clean_line,
    has_words,
    is_credit,
    is_plain,
    is_plain_speech,
    split_dash_lines,
)
from chatbot.corpus.subtitles.cue import CleanCue, Cue, Piece
from chatbot.corpus.types import Conversation, Turn

# A conversation longer than this is split: nothing that long is one exchange of talk, and
# it bounds the memory a file with no pauses at all can take.
MAX_TURNS = 1000
_TERMINAL = (".", "?", "!", "…", "。", "？", "！", "．", "｡", "؟", "۔", "»", "♪")
_CLOSERS = "\"'”’»)]」』）"
# Marks after which a sentence goes on in the next cue: "...", a comma (Latin, Arabic,
# full-width, the ideographic "、") and the dash that Japanese subtitles end a split
# sentence with ("あなた方に言いたい―").
_CONTINUED = ("...", "…", ",", "،", "，", "、", "―", "—", "－")
# Scripts whose subtitles mostly end a sentence with no mark at all: Chinese, Japanese and
# Korean (Netflix's Korean style puts no full stop and nothing at a split either), Arabic
# and Persian (the real files in tests/data/scripts/ have almost none), Hebrew (some files
# have them, some do not). A line that ends in one of their letters counts as finished:
# taken as unfinished, every cue of such a file would join the next and a whole scene
# would become one turn; taken as finished, a sentence split across two cues (rarer)
# becomes two turns. A real continuation still shows: a comma, an ellipsis or a dash.
_UNMARKED = re.compile(
    "[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc\u1100-\u11ff\u3040-\u30ff\u3130-\u318f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f]"
)


def is_unfinished(text: str) -> bool:
    """True when the text stops mid-sentence: a trailing ... , or dash, or no . ? ! at the
    end (except after a letter of a script that writes none, see _UNMARKED)."""
    end = text.rstrip().rstrip(_CLOSERS)
    if end.endswith(_CONTINUED):
        return True
    if end.endswith(_TERMINAL):
        return False
    last = end[-1:]
    # `last < "\u0590"` first: the Latin, Greek and Cyrillic letters most text ends with.
    # A vowel sign counts as the letter it sits on ("والدتكِ" ends in a kasra).
    return (last < "\u0590" or not (last.isalpha() or unicodedata.combining(last))
            or _UNMARKED.match(last) is None)


def cue_pieces(cue: Cue) -> list[Piece]:
    """Clean a cue and split it into turn pieces; lines without a dash continue the last."""
    text = cue.text
    if not is_plain_speech(text):  # the common case skips both checks below
        if is_credit(text):
            return []
        if not is_plain(text):
            return _cleaned_pieces(cue)
    text = " ".join(text.split())  # nothing to clean: one piece
    return [(cue.speaker, text, False)] if has_words(text) else []


def _cleaned_pieces(cue: Cue) -> list[Piece]:
    pieces: list[Piece] = []
    for raw in split_dash_lines(cue.text):
        speaker, line, dash = clean_line(raw)
        speaker = speaker or cue.speaker
        if not line:
            continue
        if pieces and not dash and (speaker is None or speaker == pieces[-1][0]):
            last_speaker, last_text, last_dash = pieces[-1]
            pieces[-1] = (last_speaker, f"{last_text} {line}", last_dash)
        else:
            pieces.append((speaker, line, dash))
    return pieces


def cleaned(cues: Iterable[Cue]) -> Iterator[CleanCue]:
    """Each cue that says something, as (start_ms, end_ms, pieces)."""
    for cue in cues:
        pieces = cue_pieces(cue)
        if pieces:
            yield cue.start_ms, cue.end_ms, pieces


def _join(previous: str, following: str) -> str:
    """'I was thinking...' + '...about you' -> 'I was thinking... about you'."""
    return f"{previous} {following.lstrip('.…').lstrip()}"


def segment(cues: Iterable[CleanCue], gap_seconds: float) -> Iterator[Conversation]:
    """Group cleaned cues, in start order, into conversations of turns."""
    gap_ms = int(gap_seconds * 1000)
    # Turns being built, as [text, speaker, start_ms, end_ms] lists: this loop runs once
    # per cue of every file, and a list is the cheapest thing to grow in place.
    turns: list[list] = []
    last_end = -1  # end of the latest cue so far; -1 before the first one
    new = tuple.__new__  # Turn(*t) without the Python-level __new__: once per turn
    for start, end, pieces in cues:
        if turns and (start - last_end > gap_ms or len(turns) >= MAX_TURNS):
            yield Conversation([new(Turn, t) for t in turns])
            turns = []
        if end > last_end:
            last_end = end
        speaker, text, dash = pieces[0]
        previous = turns[-1] if turns else None
        if (
            previous is not None
            and not dash
            and (speaker is None or speaker == previous[1])
            and is_unfinished(previous[0])
        ):
            previous[0] = _join(previous[0], text)
            if end > previous[3]:
                previous[3] = end
        else:
            turns.append([text, speaker, start, end])
        if len(pieces) > 1:
            for speaker, text, _ in pieces[1:]:
                turns.append([text, speaker, start, end])
    if turns:
        yield Conversation([new(Turn, t) for t in turns])
