"""DailyDialog (dialogues_text.txt): one dialogue per line, utterances ending in `__eou__`.

    Say , Jim , how about going for a few beers after dinner ? __eou__ You know that is ...

The text is pre-tokenised (spaces before punctuation and around apostrophes), so it is
detokenised conservatively. Turns alternate between two unnamed speakers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.types import Conversation, ReadOptions, Turn

EOU = "__eou__"

# Spaces before closing punctuation followed by a space or the end: "fitness ." ->
# "fitness.", "Jim , how" -> "Jim, how", "wait ..." -> "wait...". Between digits the
# space may be part of a number or time ("9 : 30"), so it is left alone there.
_SPACE_BEFORE_PUNCT = re.compile(r"(?<!\d) +([,.!?;:]+)(?= |$)|(?<=\d) +([,.!?;:]+)(?= \D|$)")
# Contractions split around the apostrophe (DailyDialog uses both ' and ’):
# "it ' s" -> "it's", "don ’ t" -> "don’t". Only known suffixes, so a quote like
# "the word ' so '" keeps its spaces.
_CONTRACTION = re.compile(r"(\w) *(['’]) *(s|m|d|t|re|ve|ll)\b", re.IGNORECASE)
_OCLOCK = re.compile(r"\b([oO]) *(['’]) *(clock)\b")


def detokenize(text: str) -> str:
    """Undo DailyDialog's tokenisation where it is unambiguous."""
    text = " ".join(text.split())
    text = _CONTRACTION.sub(r"\1\2\3", text)
    text = _OCLOCK.sub(r"\1\2\3", text)
    return _SPACE_BEFORE_PUNCT.sub(lambda m: m.group(1) or m.group(2), text)


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield one conversation per non-blank line."""
    text_file = source.text()
    for line in text_file.lines():
        if not line.strip():
            continue
        if EOU not in line:
            source.warn(f"no {EOU} marker: not a DailyDialog line; skipped", text_file.line)
            continue
        # The line ends with __eou__, so the last piece is empty and dropped with the rest.
        turns = [Turn(t) for t in (detokenize(u) for u in line.split(EOU)) if t]
        if turns:
            yield Conversation(turns)
