"""Word tokens: words, contractions and punctuation, with a detokeniser for English.

Tokenising (one compiled regex, then a dict lookup per token):
- Text is lower-cased when `lower` is on (the default), and typographic quotes and the
  ellipsis character are folded to ASCII (’ -> ', “ ” -> ", … -> ...), so "don’t" and
  "don't" are one spelling.
- Contractions are split Penn-Treebank style: "don't" -> "do" "n't", "it's" -> "it" "'s",
  "we'll" -> "we" "'ll" (also 'm 'd 're 've). The vocabulary then holds "do" and "n't"
  once instead of every negated verb, and the pieces re-attach on decoding.
- Apostrophes and hyphens inside a word stay in it ("o'clock", "well-known"), as do the
  separators inside numbers ("3.14", "10:30", "1,000").
- Every other punctuation mark is its own token; runs of dots, of ! and ?, and of dashes
  are one token ("...", "?!", "--").

Decoding joins tokens with spaces except: nothing before , . ! ? ; : ) ] } % and the
contraction pieces, nothing after ( [ { $ # ¿ ¡, none around /, and straight quotes
alternate opening (space before) and closing (space after). A lone ' is taken as a quote
too, so a plural possessive ("the dogs' bone") comes back as "the dogs 'bone".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from chatbot.errors import ChatbotError
from chatbot.text.tokenizer import VocabTokenizer, ranked_vocabulary

_CLITICS = r"(?:s|m|d|ll|re|ve)"
_TOKEN = re.compile(
    rf"""
      [^\W_]+(?=n't\b)                        # "do" of "don't": the stem before n't
    | (?<=[^\W_])n't\b                        # n't
    | (?<=[^\W_])'{_CLITICS}\b                # 's 'm 'd 'll 're 've after a word
    | \w+(?:(?:'(?!{_CLITICS}\b)|-|(?<=\d)[.,:](?=\d))\w+)*   # o'clock, well-known, 3.14
    | \.{{2,}} | [!?]+ | -{{2,}}              # runs: ... ?! --
    | [^\w\s]                                 # any other mark, one at a time
    """,
    re.VERBOSE | re.IGNORECASE,
)
_FOLD = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "„": '"', "…": "..."})

_ATTACH_LEFT = frozenset(",.!?;:)]}%/") | {"n't", "'s", "'m", "'d", "'ll", "'re", "'ve"}
_ATTACH_RIGHT = frozenset("([{$#¿¡/")
_QUOTES = frozenset({'"', "'"})
_RUN_CHARS = frozenset(".!?")


def _attaches_left(token: str) -> bool:
    # Runs like "..." or "?!" attach as their single-character forms do.
    return token.lower() in _ATTACH_LEFT or (token[0] in _RUN_CHARS and set(token) <= _RUN_CHARS)


def split_words(text: str, lower: bool = True) -> list[str]:
    """The word tokens of `text` (see the module docstring for the rules)."""
    text = text.translate(_FOLD)
    return _TOKEN.findall(text.lower() if lower else text)


def join_words(tokens: Iterable[str]) -> str:
    """Text from word tokens: spaces between them except where English has none."""
    out: list[str] = []
    glue = True  # no space before the next token (at the start, after an opener)
    open_quotes: set[str] = set()
    for token in tokens:
        if token in _QUOTES:
            if token in open_quotes:  # closing: hugs the text before it
                open_quotes.discard(token)
                out.append(token)
                glue = False
            else:  # opening: hugs the text after it
                open_quotes.add(token)
                out.append(token if glue else " " + token)
                glue = True
            continue
        out.append(token if glue or _attaches_left(token) else " " + token)
        glue = token in _ATTACH_RIGHT
    return "".join(out)


class WordTokenizer(VocabTokenizer):
    """Words, contraction pieces and punctuation marks, most frequent first."""

    kind = "word"
    default_lower = True

    def tokens(self, text: str) -> list[str]:
        return split_words(text, self.lower)

    def decode(self, ids: Iterable[int]) -> str:
        return join_words(self.tokens_of(ids))

    @classmethod
    def fit(
        cls, texts: Iterable[str], vocab_size: int, *, lower: bool = True, min_count: int = 1
    ) -> WordTokenizer:
        """Keep the `vocab_size - 4` most frequent tokens seen at least `min_count` times.

        Ties are broken by the token's text so the same corpus gives the same vocabulary.
        """
        if not isinstance(min_count, int) or min_count < 1:
            raise ChatbotError(f"min_count must be a positive integer, not {min_count!r}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(split_words(text, lower))
        return cls(ranked_vocabulary(counts, vocab_size, min_count), lower=lower)
