"""PTB-tokenized novels: one sentence a line, quotes as separate ` and ' tokens.

Such books (the tokenized Alice of NLTK's Gutenberg sample) have lost their paragraphs;
a turn ends where speech resumes after narration that finished a sentence, or right after
another quote closed. Inline chapter headings and scene breaks end a conversation, as
long narration does (`novel.Dialogue`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from chatbot.corpus.readers.novel import HEADING_WORD, LONG_NARRATION_WORDS, Dialogue
from chatbot.corpus.types import Conversation

TOKENIZED_SAMPLE = 200  # lines looked at to tell a PTB-tokenized file
TOKENIZED_MIN_LINES = 3  # lines of the sample with a lone ` or `` that make a file tokenized
MAX_QUOTE_TOKENS = 2000  # a tokenized quote that never closes

_TOKENIZED_QUOTE = re.compile(r"(?:^|\s)``?(?:\s|$)")
_INLINE_HEADING = re.compile(rf"(?<!\S){HEADING_WORD}(?:\s*\.)?")
_INLINE_SCENE_BREAK = re.compile(r"^\*(?:\s+\*){2,}\s*")
_SENTENCE_END = re.compile(r"[.!?]")
_CONTRACTION = re.compile(r"^(?:s|t|ll|ve|re|m|d)$", re.I)


def looks_tokenized(sample: list[str]) -> bool:
    """Whether the first lines of a book show PTB quote tokens (a lone ` or ``)."""
    return sum(bool(_TOKENIZED_QUOTE.search(line)) for line in sample) >= TOKENIZED_MIN_LINES


def conversations_from_tokenized(lines: Iterable[str]) -> Iterator[Conversation]:
    """Conversations from the lines of a tokenized book, yielded as each one ends."""
    dialogue = Dialogue()
    parser = _Tokenized(dialogue)
    for line in lines:
        parser.line(line)
        yield from dialogue.finished()
    parser.line("")
    dialogue.end_conversation()
    yield from dialogue.finished()


class _Tokenized:
    """PTB-tokenized text, line by line: the tokens ` and `` open a quote, ' and '' close it.

    Single quotes are the outer ones in such books; a `` … '' inside them stays text. A
    lone ' outside a quote opens one: the tokenized Alice uses it both ways.
    """

    def __init__(self, dialogue: Dialogue) -> None:
        self.dialogue = dialogue
        self.closer: str | None = None
        self.words: list[str] = []

    def line(self, line: str) -> None:
        if not line.strip():  # a blank line is a paragraph break, when a file has them
            self._close_quote()
            self._narration(force_turn=True)
            return
        scene_break = _INLINE_SCENE_BREAK.match(line)
        if scene_break:  # the tokenized Alice glues "* * * …" to the next sentence
            self._close_quote()
            self._narration(force_turn=True)
            self.dialogue.end_conversation()
            line = line[scene_break.end() :]
        heading = _INLINE_HEADING.search(line)
        if heading:
            self.tokens(line[: heading.start()].split())
            self._close_quote()
            self._narration(force_turn=True)
            self.dialogue.end_conversation()
            line = line[heading.end() :]
        self.tokens(line.split())
        if self.closer is None and len(self.words) > LONG_NARRATION_WORDS:
            self._narration(force_turn=True)  # counted now, not held until the next quote
        elif len(self.words) > MAX_QUOTE_TOKENS:
            self._close_quote()

    def tokens(self, tokens: list[str]) -> None:
        for i, token in enumerate(tokens):
            if token == "'" and tokens[i + 1 : i + 2] and _CONTRACTION.match(tokens[i + 1]):
                self.words.append("'")  # "ALICE ' S" is an apostrophe, not a quote
            elif token.startswith("'") and token[1:2].isupper():  # "'I'" = quote + "I'"
                self.tokens(["'", token[1:]])
            elif self.closer is None and token in ("`", "``", "'"):
                self._narration(force_turn=False)
                self.closer = "''" if token == "``" else "'"
            elif self.closer is not None and token == self.closer:
                self._close_quote()
            elif self.closer == "'" and token == "`":  # a quote never closed: a new one
                self._close_quote()
                self._narration(force_turn=True)
                self.closer = "'"
            else:
                self.words.append(token)

    def _close_quote(self) -> None:
        if self.closer is not None:
            self.dialogue.say(_detokenize(self.words))
            self.words = []
            self.closer = None

    def _narration(self, force_turn: bool) -> None:
        """Narration before a quote opens: a finished sentence (or none) ends the turn."""
        text = _detokenize(self.words)
        self.words = []
        self.dialogue.narrate(text)
        if force_turn or not text or _SENTENCE_END.search(text):
            self.dialogue.end_turn()


def _detokenize(tokens: list[str]) -> str:
    """Undo PTB spacing: "ca n't" -> "can't", "I' ve" / "YOU ' D" -> "I've" / "YOU'D"."""
    text = " ".join(token for token in tokens if token != "_")  # "_ I _": italics
    text = re.sub(r" (n't|'s|'ll|'re|'ve|'m|'d)\b", r"\1", text, flags=re.I)
    text = re.sub(r"(\w) ?' (s|t|ll|ve|re|m|d)\b", r"\1'\2", text, flags=re.I)
    text = re.sub(r"``\s*", '"', text)
    text = re.sub(r"\s*''", '"', text)
    text = re.sub(r" ([.,;:!?)\]])", r"\1", text)
    return re.sub(r"([(\[]) ", r"\1", text)
