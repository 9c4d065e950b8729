"""OpenSubtitles XML as the OPUS project ships it (.xml, often inside .gz or .zip archives).

A <document> of <s> sentences, tokenized (<w> tokens) or raw (plain text). The sentence
splitter ignored the cues, so cues are rebuilt from <time> marks between the words: T12S
starts cue 12, T12E ends it; a sentence may hold the end of one cue and the start of the
next, and a sentence without marks belongs to the cue that is open (between cues, to the
next one to start). Each sentence becomes a line of its cue's text, so the SRT cleaning
and segmentation apply unchanged: a line opening with a dash is a new speaker, any other
line continues the last one.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from operator import attrgetter

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.read import conversations
from chatbot.corpus.types import Conversation, ReadOptions
from chatbot.errors import ReaderError

# "00:01:02,500", "00:01:02.500", "00:01:02,5" (half a second), "00:01:02".
_CLOCK = re.compile(r"\s*(\d+):(\d{1,2}):(\d{1,2})(?:[,.:](\d+))?\s*")
# Spaces the tokenizer put where written text has none: before closing punctuation
# ("past ." "So . . ."), before a contraction ("How 'd", "do n't"), before a closing
# quote that ends the sentence. Every alternative opens with the space, so the scan
# only stops at spaces (lookbehinds here would make it three times slower).
_NO_SPACE = re.compile(
    r" (?=[.,?!:;%…)\]}”’]+(?: |$)|['’](?:[sdmSDM]|re|ve|ll|RE|VE|LL)(?: |$)"
    r"|[nN]['’][tT](?: |$)|\"$)"
)
# ... and after an opening bracket or quote: rarer, so looked for first.
_OPENER = re.compile(r"[(\[{“„‘¿¡]")
_OPENED = re.compile(r"(?:(?<=^[(\[{“„‘¿¡])|(?<= [(\[{“„‘¿¡])) ")
# A dash token after the end of a sentence: a second speaker the splitter left in the
# same sentence ("- Where ? - School ."); it starts a line, as it did in the cue.
_DASH_TURN = re.compile(r"(?:(?<=[.?!…])|(?<=[.?!…][\"”’)\]])) (?=[-‐‑–—] )")
# A line break before a dash line in raw text (but not before "--", a continuation).
_DASH_LINE = re.compile(r"\s*\n(?=\s*[-‐‑–—](?!-))")
# A cue longer than this many sentences (a file that never closes one) is passed on in
# parts: memory stays flat whatever the input.
_MAX_LINES = 1000
_TEXT = attrgetter("text")
_new = tuple.__new__  # Cue(...) without the Python-level __new__: once per cue


def to_ms(value: str | None) -> int | None:
    """A <time> value in milliseconds; None when it cannot be read."""
    clock = _CLOCK.fullmatch(value or "")
    if clock is None:
        return None
    hours, minutes, seconds, fraction = clock.groups()
    ms = int((fraction + "00")[:3]) if fraction else 0  # a decimal fraction: "5" is 500
    return (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1000 + ms


def detokenize(tokens: Iterable[str]) -> str:
    """Tokens back into written text: "I 'm done ." -> "I'm done."."""
    text = " ".join(tokens)
    if not text:
        return text
    text = _NO_SPACE.sub("", text)
    if '"' in text:
        # Straight quotes pair up, the first of each pair opening: what is inside loses
        # the spaces the tokenizer put ('" word "'); so does a last quote left open.
        # (Not a regular expression: Python 3.11 expands a template in Python, per match.)
        parts = text.split('"')
        parts[1::2] = [part.strip() for part in parts[1::2]]
        text = '"'.join(parts)
    if _OPENER.search(text):
        text = _OPENED.sub("", text)
    if " - " in text or " – " in text or " — " in text:
        text = _DASH_TURN.sub("\n", text)
    return text


def _raw_text(text: str) -> str:
    """Raw sentence text, whitespace normalised: its lines joined by a space, except that a
    line opening with a dash (a new speaker) stays a line of its own."""
    return "\n".join(" ".join(part.split()) for part in _DASH_LINE.split(text.strip()))


def _split(s: ET.Element) -> list:
    """A sentence as its text and its time marks in document order: [text, mark, text,
    ...], where each text is one line (or dash lines) of cue text, possibly empty."""
    children = s[:]
    marks = s.findall("time")
    words = s.findall("w")
    if words and len(words) + len(marks) == len(children):
        # Tokenized, the usual layout (tokens and marks only): sliced and joined in C,
        # with no Python step per token.
        parts: list = []
        begin = 0
        for mark in marks:
            end = children.index(mark)
            parts += (detokenize(filter(None, map(_TEXT, children[begin:end]))), mark)
            begin = end + 1
        parts.append(detokenize(filter(None, map(_TEXT, children[begin:]))))
        return parts
    # Raw, or markup around the tokens: walk it. Tokens are spaced; raw text is kept as
    # it is (its line breaks tell dash lines), the text of other children with it.
    parts = []
    tokens: list[str] = []
    text = [s.text or ""]
    for child in children:
        if child.tag == "time":
            parts += (_text(tokens, text), child)
            tokens, text = [], []
        elif child.tag == "w":
            tokens.append(child.text or "")
        elif words:
            tokens += child.itertext()
        else:
            text += child.itertext()
        text.append(child.tail or "")
    parts.append(_text(tokens, text))
    return parts


def _text(tokens: list[str], text: list[str]) -> str:
    """One stretch of a sentence as cue text: its tokens, else its raw text."""
    if tokens:
        return detokenize(filter(None, (t.strip() for t in tokens)))
    return _raw_text("".join(text))


def parse(source: Source) -> Iterator[Cue]:
    """Yield the cues in file order; memory stays flat (elements are freed as read)."""
    try:
        with source.binary() as f:
            yield from _cues(source, ET.iterparse(f, ("start", "end")))
    except ET.ParseError as e:
        reason = str(e).split(": line ")[0]  # the line is reported on its own
        raise ReaderError(source.path, f"invalid XML: {reason}", e.position[0]) from None


def _cues(source: Source, events: Iterator[tuple[str, ET.Element]]) -> Iterator[Cue]:
    """The cues the sentences and time marks of the XML events make."""
    lines: list[str] = []  # text of the open cue; between cues, of the next one to start
    start: int | None = None  # start of the open cue; None between cues
    # The cue closed last (start, end, lines), held back: text after it that no cue
    # follows joins it at the end of the document.
    last: tuple[int, int, list[str]] | None = None
    sentences = 0
    # Open elements outside sentences: when one of their children ends it is freed, so
    # the tree never holds more than the sentence being read.
    open_elements: list[ET.Element] = []
    in_sentence = False
    for event, element in events:
        if event == "start":  # the elements inside a sentence need nothing here
            if not in_sentence:
                if element.tag == "s":
                    in_sentence = True
                else:
                    open_elements.append(element)
            continue
        if element.tag == "s":
            in_sentence = False
            sentences += 1
            parts = _split(element)
        elif in_sentence:
            continue
        else:  # <meta> and the like are ignored; a <time> between sentences is a mark
            open_elements.pop()
            parts = ["", element] if element.tag == "time" else []
        if open_elements:
            del open_elements[-1][:]
        for part in parts:
            if type(part) is str:
                if part:
                    lines.append(part)
                    if len(lines) >= _MAX_LINES:
                        if start is not None:  # pass the open cue on in parts
                            yield _new(Cue, (start, start, "\n".join(lines), 0, None))
                        elif last is not None:
                            last[2].extend(lines)
                            yield _cue(last)
                            last = None
                        else:
                            source.warn(f"{len(lines)} sentences outside any timed cue skipped")
                        lines = []
                continue
            ms = to_ms(part.get("value"))
            kind = part.get("id", "")[-1:]
            if ms is None or kind not in ("S", "E"):
                source.warn(f"time mark {part.get('id')!r} with value "
                            f"{part.get('value')!r} ignored")
            elif kind == "S":
                if start is not None:  # the open cue never ended: it ends here
                    yield _new(Cue, (start, ms, "\n".join(lines), 0, None))
                    lines = []
                elif last is not None:
                    yield _cue(last)
                    last = None
                start = ms
            elif start is not None:  # an end without a start (an unreadable one) is moot
                last = (start, ms, lines)
                lines = []
                start = None
    if sentences == 0:
        raise ReaderError(source.path, "no sentences (not an OPUS subtitle file?)")
    if start is not None:  # the file ends inside a cue: its end is unknown
        yield _new(Cue, (start, start, "\n".join(lines), 0, None))
    elif last is not None:
        last[2].extend(lines)
        yield _cue(last)
    elif lines:
        source.warn(f"{len(lines)} sentences outside any timed cue skipped")


def _cue(held: tuple[int, int, list[str]]) -> Cue:
    start, end, lines = held
    return _new(Cue, (start, end, "\n".join(lines), 0, None))


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """OPUS OpenSubtitles XML file -> conversations."""
    return conversations(parse, source, options)
