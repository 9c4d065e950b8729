"""Telling stored text again: conversation digests and near-duplicate film sketches.

Two measures, for two kinds of repetition:
- A conversation stored turn for turn already (this project's export read back, the
  same file in another encoding) has the same digest: a hash of its turn texts.
- A film present as several subtitle files (another release, another transcription,
  shifted timing) has nearly the same words: its sketch, the K smallest hashes of the
  word 3-grams of its cleaned text (a bottom-k MinHash), estimates the Jaccard
  similarity of two films' 3-gram sets. Timing, cue splitting, line breaks, case and
  punctuation do not enter, so a re-timed or re-split release scores near 1.

The threshold, measured on real pairs (tests/data/releases, see docs in README):
releases of one film score far above it and distinct films sharing lines far below.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Sequence

import numpy as np

# Hashes kept per sketch: the estimate's standard error is about sqrt(J(1-J)/K).
SKETCH_SIZE = 128
# Films at least this similar are one film (see the module docstring).
NEAR_DUPLICATE_JACCARD = 0.3
# Texts with fewer shingles than this are too short to tell a release from a film
# that shares a few lines: they are never called near-duplicates.
MIN_SHINGLES = 50
# Only the first words of a source are sketched: a whole film has about 8,000, and
# the cap keeps the cost of a huge file (a novel, a concatenation) bounded.
MAX_WORDS = 60_000

_WORD = re.compile(r"[^\W_]+")
_MASK = (1 << 64) - 1


def conversation_digest(texts: Iterable[str]) -> int:
    """A signed 64-bit digest of a conversation's turn texts (SQLite's INTEGER)."""
    data = "\x1f".join(texts).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big", signed=True)


class Sketcher:
    """Collects the words of a source's turns, as they stream past, for its sketch."""

    def __init__(self) -> None:
        self._words: list[str] = []

    def add(self, turn_texts: Iterable[str]) -> None:
        """The turn texts of one conversation (only the first MAX_WORDS words count)."""
        if len(self._words) < MAX_WORDS:
            self._words += _WORD.findall(" ".join(turn_texts).lower())

    def sketch(self) -> list[int] | None:
        """The source's sketch, or None when it is too short to sketch."""
        return sketch_of(self._words[:MAX_WORDS])


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads 3-gram hashes uniformly over 64 bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sketch_of(words: Sequence[str]) -> list[int] | None:
    """The bottom-k sketch of the word 3-grams of `words` (signed 64-bit ints), or None."""
    if len(words) - 2 < MIN_SHINGLES:
        return None
    # zlib.crc32 is stable across processes and runs, where str's hash() is not.
    h = np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))
    with np.errstate(over="ignore"):
        grams = h[:-2] * np.uint64(0x9E3779B97F4A7C15) + (h[1:-1] << np.uint64(21)) + h[2:]
        mixed = np.unique(_mix(grams))  # sorted, without repeats
    if len(mixed) < MIN_SHINGLES:
        return None
    return mixed[:SKETCH_SIZE].view(np.int64).tolist()


def jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    """The Jaccard similarity of two texts estimated from their sketches: the share of
    the union's K smallest hashes that both texts hold."""
    ua = np.array(a, dtype=np.int64).view(np.uint64)
    ub = np.array(b, dtype=np.int64).view(np.uint64)
    k = min(SKETCH_SIZE, len(ua), len(ub))
    union = np.union1d(ua, ub)[:k]
    both = np.intersect1d(ua, ub)
    return float(np.isin(union, both).sum()) / k if k else 0.0


def candidates_needed(threshold: float = NEAR_DUPLICATE_JACCARD) -> int:
    """How many sketch hashes a stored film must share with a new one to be compared
    exactly: well under what a Jaccard of `threshold` gives (2J/(1+J) of K), so that
    sampling noise never hides a true duplicate."""
    return max(1, int(SKETCH_SIZE * threshold / (1 + threshold)))
