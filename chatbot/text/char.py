"""Character tokens: every character, spaces included, is one token.

For Chinese and Japanese text (no spaces between words) and for character-level models.
Decoding concatenates the characters, so the round trip is exact for text whose
characters are all in the vocabulary (and `lower` off, the default).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chatbot.text.tokenizer import RESERVED_TOKENS, UNK_ID, VocabTokenizer, option


class CharTokenizer(VocabTokenizer):
    """Characters, most frequent first."""

    kind = "char"

    def __init__(self, vocab: list[str], lower: bool = False) -> None:
        super().__init__(vocab)
        self.lower = lower

    @property
    def options(self) -> dict[str, Any]:
        return {"lower": self.lower}

    def encode(self, text: str) -> list[int]:
        get = self._ids.get
        return [get(char, UNK_ID) for char in (text.lower() if self.lower else text)]

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
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = [char for char, _count in ranked[: vocab_size - len(RESERVED_TOKENS)]]
        return cls([*RESERVED_TOKENS, *kept], lower=lower)

    @classmethod
    def with_options(
        cls, path: Path, vocab: list[str], options: dict[str, Any]
    ) -> CharTokenizer:
        return cls(vocab, lower=option(path, options, "lower", bool))
