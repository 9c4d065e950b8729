"""Character tokens: every character, spaces included, is one token.

For Chinese and Japanese text (no spaces between words) and for character-level models.
Decoding concatenates the characters, so the round trip is exact for text whose
characters are all in the vocabulary (and `lower` off, the default).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from chatbot.text.tokenizer import VocabTokenizer, ranked_vocabulary


class CharTokenizer(VocabTokenizer):
    """Characters, most frequent first."""

    kind = "char"

    def tokens(self, text: str) -> list[str]:
        return list(text.lower() if self.lower else text)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.tokens_of(ids))

    @classmethod
    def fit(
        cls, texts: Iterable[str], vocab_size: int, *, lower: bool = False
    ) -> CharTokenizer:
        """Keep the `vocab_size - 4` most frequent characters (ties by code point)."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(text.lower() if lower else text)
        return cls(ranked_vocabulary(counts, vocab_size), lower=lower)
