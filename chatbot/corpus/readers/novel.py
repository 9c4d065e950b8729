"""Novels as plain text (Project Gutenberg style): quoted speech becomes turns.

Paragraphs are separated by blank lines. The speech in one paragraph (narration left out)
is one turn; a new paragraph with speech is a new turn. Chapter headings, scene breaks and
long stretches of narration end a conversation. Speakers are unknown.

PTB-tokenized books (one sentence a line, quotes as separate ` and ' tokens, no blank
lines) are told apart here and read by `novel_tokenized`, with the same `Dialogue`.

`conversations_from_paragraphs` applies the same speech rules to paragraphs found
elsewhere (the EPUB reader's XHTML chapters).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import chain, islice

from chatbot.corpus.source import Source
from chatbot.corpus.textfile import TextFile
from chatbot.corpus.types import Conversation, ReadOptions, Turn

# Narration words since the last speech that end a conversation. Measured on
# alice_in_wonderland.txt: of the 1082 gaps between two speeches within a chapter, 90% are
# at most 43 words and 98% at most 96; 14 exceed 100. Read one by one, the gaps up to 122
# words are action inside one scene (the trial, the Duchess's kitchen, the Caucus-race,
# a recited poem) but one (100: Alice runs from the Rabbit's house into the wood); every
# gap above 130 is a new scene or encounter (131: the Pigeon appears, 135: it leaves,
# 175: back to the croquet game, 199: the Queen's procession, 228: back to the Cat).
LONG_NARRATION_WORDS = 125

HEADER_WINDOW = 1000  # lines searched for the end of a Gutenberg header (old ones are ~400)
# Memory stays flat whatever the file: these cut what would otherwise grow with the book.
MAX_PARAGRAPH_LINES = 500  # a file without blank lines
MAX_TURNS = 500  # a conversation that never pauses (Alice's longest has 99 turns)
ILLUSTRATION_MAX_LINES = 40  # an [Illustration: … that never closes stops being skipped
MENTION_MAX_WORDS = 3  # “ORANGE MARMALADE” after a word is a label, not speech

# Public: the EPUB reader also looks for these markers in paragraph text.
GUTENBERG_START = re.compile(
    r"^\s*\*+\s*START OF (?:THE|THIS) PROJECT GUTENBERG|^\s*\*END\*?\s*THE SMALL PRINT", re.I
)
GUTENBERG_END = re.compile(r"^\s*(?:\*+\s*)?END OF (?:THE |THIS )?PROJECT GUTENBERG", re.I)
_ILLUSTRATION = re.compile(r"\[Illustration", re.I)
_ITALIC = re.compile(r"(?<![\w_])_(?=[^\s_])(.*?[^\s_])_(?!_)")  # also "_Un_important"
_SCENE_BREAK = re.compile(r"^(?:[*#~=•·_-]\s*){3,}$")
_NUMBER = (
    r"(?:[IVXLCDM]+|\d+|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
    r"|first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last)"
)
HEADING_WORD = r"(?:CHAPTER|BOOK|PART|VOLUME)\s+(?:[IVXLCDM]+|\d+)\b"
# "CHAPTER II Title" and "Chapter 2. Title", but not "Part I wanted…"; lone roman
# numerals only in capitals, as "Mild." or "did" alone are no headings.
_HEADING = re.compile(
    rf"^(?:{HEADING_WORD}.*"
    rf"|(?i:chapter|book|part|volume)\s+(?i:the\s+)?(?i:{_NUMBER})\b\s*(?:[.:—–-].*)?"
    r"|[IVXLCDM]+\.?|\d+\.?)$"
)
_DASHES = "—―–"
# With or without a space after the dash: Spanish writes "—Hola".
_DASH_LED = re.compile(rf"^[{_DASHES}](?![{_DASHES}])\s*")
_DASH_SPLIT = re.compile(rf"\s[{_DASHES}]\s")
# A French incise inside dash or guillemet speech: ", dit-il," / ", s’écria-t-elle."
_INCISE = re.compile(
    r"(?<=,)\s+((?:\S+\s+){0,2}?\S*?-(?:t-)?(?:il|elle|ils|elles|on|je|tu|nous|vous)\b"
    r"[^,.;:!?]*)[,.;:]?"
)
# Opening quote -> the characters that close it.
_CLOSERS = {
    "“": "”", "„": "“”", "«": "»", "「": "」", "『": "』", "‘": "’", '"': '"', "`": "'",
}  # fmt: skip
_APOSTROPHES = "’'"  # also closers: these close only when not between two letters
_AFTER_WORD = re.compile(r"\w\s+$")


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Conversations from a novel, yielded as each one ends."""
    del options  # min_turns is applied by the caller; nothing else applies to novels
    # Imported here: that module builds on this one's Dialogue.
    from chatbot.corpus.readers.novel_tokenized import (
        TOKENIZED_SAMPLE,
        conversations_from_tokenized,
        looks_tokenized,
    )

    text = source.text()
    lines = _without_illustrations(_body(text.lines()), source, text)
    sample = list(islice(lines, TOKENIZED_SAMPLE))
    lines = chain(sample, lines)
    if looks_tokenized(sample):
        yield from conversations_from_tokenized(lines)
    else:
        yield from conversations_from_paragraphs(_paragraphs(lines, source, text))


def conversations_from_paragraphs(paragraphs: Iterable[list[str]]) -> Iterator[Conversation]:
    """Conversations from paragraphs (each a list of lines), yielded as each one ends.

    An empty paragraph is a section boundary (a chapter, a heading found by the caller): it
    ends the conversation, as a heading line does in a .txt book.
    """
    dialogue = Dialogue()
    left_open: str | None = None
    for paragraph in paragraphs:
        if paragraph:
            left_open = _paragraph(paragraph, left_open, dialogue)
        else:
            dialogue.end_conversation()
            left_open = None  # speech does not run on across a section boundary
        yield from dialogue.finished()
    dialogue.end_conversation()
    yield from dialogue.finished()


class Dialogue:
    """Collects turns into conversations: ends them on headings and long narration.

    Shared by the paragraph reader here and the tokenized one (`novel_tokenized`).
    """

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.pending: list[str] = []  # speech of the turn being built
        self.quiet = 0  # narration words since the last speech
        self.done: list[Conversation] = []

    def say(self, text: str) -> None:
        self.pending.append(text)
        self.quiet = 0

    def narrate(self, text: str) -> None:
        self.quiet += len(text.split())
        if self.quiet > LONG_NARRATION_WORDS:
            self.end_conversation()

    def end_turn(self) -> None:
        text = " ".join(" ".join(self.pending).split())
        self.pending = []
        if text.endswith(","):
            # “I don’t see,” said the Caterpillar: the comma belongs to the narration.
            text = text[:-1] + "."
        if text:
            self.turns.append(Turn(text))
            if len(self.turns) >= MAX_TURNS:
                self.end_conversation()

    def resume_turn(self) -> None:
        """Speech that goes on from the previous paragraph: reopen the last turn."""
        if self.turns and not self.pending:
            self.pending = [self.turns.pop().text]

    def end_conversation(self) -> None:
        self.end_turn()
        if self.turns:
            self.done.append(Conversation(self.turns))
        self.turns = []
        self.quiet = 0

    def finished(self) -> Iterator[Conversation]:
        while self.done:
            yield self.done.pop(0)


def _body(lines: Iterator[str]) -> Iterator[str]:
    """The lines of the book without the Project Gutenberg header and footer."""
    window: list[str] = []
    start = 0
    ended = False
    for line in lines:
        if GUTENBERG_END.match(line):
            ended = True
            break
        window.append(line)
        if GUTENBERG_START.match(line):
            start = len(window)  # the last marker wins: "*** START" may follow small print
        if len(window) >= HEADER_WINDOW:
            break
    rest = window[start:]
    window.clear()
    yield from rest
    rest.clear()
    if not ended:
        for line in lines:
            if GUTENBERG_END.match(line):
                break
            yield line
    for _ in lines:  # read on so progress reaches the end of the file
        pass


def _without_illustrations(lines: Iterator[str], source: Source, text: TextFile) -> Iterator[str]:
    """Lines with `[Illustration: …]` removed, also when it spans several lines."""
    for line in lines:
        removed = False
        while match := _ILLUSTRATION.search(line):
            removed = True
            end = line.find("]", match.end())
            if end >= 0:
                line = line[: match.start()] + line[end + 1 :]
                continue
            head, line = line[: match.start()], ""
            for skipped, more in enumerate(lines, 1):
                end = more.find("]")
                if end >= 0:
                    line = more[end + 1 :]
                    break
                if skipped >= ILLUSTRATION_MAX_LINES:
                    source.warn("[Illustration without a closing ]", text.line)
                    line = more
                    break
            line = head + " " + line
        # A line that held only an illustration is no paragraph break.
        if not (removed and not line.strip()):
            yield line


def _paragraphs(lines: Iterable[str], source: Source, text: TextFile) -> Iterator[list[str]]:
    """Paragraphs as lists of stripped lines; blank lines separate them."""
    lines_in: list[str] = []
    for line in lines:
        line = line.strip()
        if line:
            lines_in.append(line)
            if len(lines_in) >= MAX_PARAGRAPH_LINES:
                source.warn(f"no blank line for {MAX_PARAGRAPH_LINES} lines", text.line)
                yield lines_in
                lines_in = []
        elif lines_in:
            yield lines_in
            lines_in = []
    if lines_in:
        yield lines_in


def _paragraph(lines: list[str], left_open: str | None, dialogue: Dialogue) -> str | None:
    """Feed one paragraph to the dialogue; return the quote it leaves open, if any."""
    if _SCENE_BREAK.match(" ".join(lines)):
        dialogue.end_conversation()
        return None
    if _HEADING.match(lines[0]):
        dialogue.end_conversation()
        lines = lines[1:]  # the chapter title, or text when no blank line follows
        left_open = None
        if not lines:
            return None
    text = _ITALIC.sub(r"\1", " ".join(lines))
    if _DASH_LED.match(text):
        pieces, still_open = _dash_pieces(_DASH_LED.sub("", text)), None
    else:
        pieces, still_open = _quote_pieces(text)
        if left_open is not None and text.startswith(left_open):
            dialogue.resume_turn()
    for is_speech, piece in pieces:
        if is_speech:
            dialogue.say(piece)
        else:
            dialogue.narrate(piece)
    dialogue.end_turn()
    return still_open


def _quote_pieces(text: str) -> tuple[list[tuple[bool, str]], str | None]:
    """Split a paragraph into (is_speech, text) pieces; also the opening quote left open."""
    pieces: list[tuple[bool, str]] = []
    opener: str | None = None
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if opener is None:
            if ch in _CLOSERS:
                wide = text.startswith("``", i)  # `` … '' is one quote, not two
                pieces.append((False, text[start:i]))
                opener = "``" if wide else ch
                i += 2 if wide else 1
                start = i
                continue
        elif opener == "``":
            if text.startswith("''", i):
                pieces.extend(_speech(text[start:i], opener))
                opener, start = None, i + 2
                i += 1
        elif ch in _CLOSERS[opener] and not (ch in _APOSTROPHES and _between_letters(text, i)):
            quoted = text[start:i]
            if _is_mention(text[max(0, start - 40) : start - 1], quoted):
                pieces.append((False, quoted))
            else:
                pieces.extend(_speech(quoted, opener))
            opener, start = None, i + 1
        i += 1
    if opener is None:
        pieces.append((False, text[start:]))
    else:
        pieces.extend(_speech(text[start:], opener))
    return pieces, opener


def _is_mention(before: str, quoted: str) -> bool:
    """A few words quoted right after a word: a label or a name, not speech.

    'a jar labelled “ORANGE MARMALADE”', 'a bottle marked “poison,”'. Speech follows
    punctuation ('said Alice, “…') or starts the paragraph; short cries end in ! or ?.
    """
    return (
        bool(_AFTER_WORD.search(before))
        and len(quoted.split()) <= MENTION_MAX_WORDS
        and not quoted.rstrip().endswith(("!", "?"))
    )


def _between_letters(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()


def _speech(text: str, opener: str) -> list[tuple[bool, str]]:
    """Speech pieces; French incises (", dit-il,") inside «…» are narration."""
    if opener != "«":
        return [(True, text)]
    return _incise_pieces(text)


def _incise_pieces(text: str) -> list[tuple[bool, str]]:
    """Speech split around its incises; it always ends with a speech piece, maybe empty."""
    pieces: list[tuple[bool, str]] = []
    start = 0
    for match in _INCISE.finditer(text):
        pieces.append((True, text[start : match.start()]))
        pieces.append((False, match.group(1)))
        start = match.end()
    pieces.append((True, text[start:]))
    return pieces


def _dash_pieces(text: str) -> list[tuple[bool, str]]:
    """A dash-led paragraph: " — " separated segments alternate speech and narration.

    A speech segment that ends in an incise ("Je viens, dit-il — mais…") hands back to
    speech at the next dash: the dash closes the incise.
    """
    pieces: list[tuple[bool, str]] = []
    speaking = True
    for segment in _DASH_SPLIT.split(text):
        if not speaking:
            pieces.append((False, segment))
            speaking = True
            continue
        parts = _incise_pieces(segment)
        pieces.extend(parts)
        speaking = len(parts) > 1 and not parts[-1][1].strip()
    return pieces
