"""An interpolated modified Kneser-Ney trigram over token ids: the baseline a model must beat.

It scores exactly what the network is scored on: every token of a reply's `target_out`
(the reply, then eos unless the turn was cut), given the reply's own previous tokens
starting from bos. The context of the first token is (<start>, bos), with the pad id
standing for <start>, since pad never occurs inside a reply.

Smoothing is Chen & Goodman's modified Kneser-Ney (1998), interpolated: at each order
three discounts, D1, D2 and D3+ for n-grams seen once, twice and three or more times,
estimated from that order's count-of-counts (Y = n1 / (n1 + 2 n2), Dk = k - (k+1) Y
n(k+1) / nk), each clamped to [0.05, k] so the distribution stays proper. The lower
orders use continuation counts (in how many contexts a suffix occurs), except n-grams
that begin at the start, which keep raw counts (nothing can precede them: KenLM's rule).
The unigram level interpolates with a uniform distribution over every id a reply can
hold (all but pad and bos), so unseen and out-of-vocabulary ids get a finite cost.

Counting streams: trigram keys (u * V^2 + v * V + w, one int64 each) are gathered in
chunks and merged with `np.unique`, so memory is that of the distinct trigrams.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from chatbot.text.tokenizer import BOS_ID, PAD_ID, UNK_ID

START_ID = PAD_ID  # stands for "before the reply" in the first token's context
MIN_DISCOUNT = 0.05
FALLBACK_DISCOUNT = 0.75  # absolute discounting's classic value, when counts cannot tell
_CHUNK = 1 << 20  # trigram keys gathered before a merge


def reply_trigrams(target_out: Sequence[int], vocab_size: int) -> np.ndarray:
    """(n, 3) int64: (u, v, w) for every token w of `target_out`, out-of-range ids as unk."""
    ids = np.asarray(target_out, dtype=np.int64)
    ids = np.where((ids >= 0) & (ids < vocab_size), ids, UNK_ID)
    seq = np.concatenate([[START_ID, BOS_ID], ids])
    return np.stack([seq[:-2], seq[1:-1], seq[2:]], axis=1)


def _merge(keys: np.ndarray, counts: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    merged, inverse = np.unique(np.concatenate([keys, new]), return_inverse=True)
    weights = np.concatenate([counts, np.ones(len(new), np.int64)])
    return merged, np.bincount(inverse, weights=weights).astype(np.int64)


def _discounts(counts: np.ndarray) -> np.ndarray:
    """[0, D1, D2, D3+] from the count-of-counts of one order (Chen & Goodman, eq. 26)."""
    n = [int(np.count_nonzero(counts == k)) for k in range(1, 5)]
    table = [0.0]
    y = n[0] / (n[0] + 2 * n[1]) if n[0] + 2 * n[1] else None
    for k in (1, 2, 3):
        if y is None or n[k - 1] == 0:
            d = FALLBACK_DISCOUNT
        else:
            d = k - (k + 1) * y * n[k] / n[k - 1]
        table.append(min(max(d, MIN_DISCOUNT), float(k)))  # D(c) <= c keeps it proper
    return np.array(table)


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[key] for each query key, 0 where the key is absent (keys sorted)."""
    if len(keys) == 0:
        return np.zeros(len(query), values.dtype)
    index = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[index] == query, values[index], 0)


class KneserNeyTrigram:
    """P(w | u, v) over ids 0..vocab_size-1; build it with `fit`."""

    def __init__(self, vocab_size: int, trigram_keys: np.ndarray,
                 trigram_counts: np.ndarray) -> None:
        b = self.base = int(vocab_size)
        self.vocab_size = b
        # Trigrams: raw counts, grouped by context (u, v).
        self.keys3, self.counts3 = trigram_keys, trigram_counts
        self.d3 = _discounts(trigram_counts)
        contexts, inverse = np.unique(trigram_keys // b, return_inverse=True)
        self.contexts3 = contexts
        self.total3 = np.bincount(inverse, weights=trigram_counts, minlength=len(contexts))
        self.gamma3 = np.bincount(inverse, weights=self.d3[np.minimum(trigram_counts, 3)],
                                  minlength=len(contexts))
        # Bigrams (v, w): in how many contexts u each occurs; raw counts after bos.
        v = (trigram_keys // b) % b
        keys2, inverse = np.unique(trigram_keys % (b * b), return_inverse=True)
        self.keys2 = keys2
        self.counts2 = np.bincount(inverse, weights=np.where(v == BOS_ID, trigram_counts, 1),
                                   minlength=len(keys2)).astype(np.int64)
        self.d2 = _discounts(self.counts2)
        context2 = keys2 // b
        self.total2 = np.bincount(context2, weights=self.counts2, minlength=b)
        self.gamma2 = np.bincount(context2, weights=self.d2[np.minimum(self.counts2, 3)],
                                  minlength=b)
        # Unigrams: in how many bigram contexts v each w occurs.
        self.counts1 = np.bincount(keys2 % b, minlength=b).astype(np.int64)
        self.d1 = _discounts(self.counts1[self.counts1 > 0])
        self.total1 = float(self.counts1.sum())
        self.uniform = np.full(b, 1.0 / max(b - 2, 1))
        self.uniform[[PAD_ID, BOS_ID]] = 0.0  # never a target

    @classmethod
    def fit(cls, replies: Iterable[Sequence[int]], vocab_size: int) -> KneserNeyTrigram:
        """Count the trigrams of streamed `target_out` sequences and smooth them."""
        keys, counts = np.zeros(0, np.int64), np.zeros(0, np.int64)
        chunk: list[np.ndarray] = []
        pending = 0
        b = int(vocab_size)
        for reply in replies:
            t = reply_trigrams(reply, b)
            chunk.append((t[:, 0] * b + t[:, 1]) * b + t[:, 2])
            pending += len(t)
            if pending >= _CHUNK:
                keys, counts = _merge(keys, counts, np.concatenate(chunk))
                chunk, pending = [], 0
        if chunk:
            keys, counts = _merge(keys, counts, np.concatenate(chunk))
        return cls(b, keys, counts)

    # --- probabilities -------------------------------------------------------------------

    def _unigram(self, w: np.ndarray) -> np.ndarray:
        if not self.total1:
            return self.uniform[w]
        c = self.counts1[w]
        gamma = float(self.d1[np.minimum(self.counts1, 3)].sum()) / self.total1
        return (np.maximum(c - self.d1[np.minimum(c, 3)], 0) / self.total1
                + gamma * self.uniform[w])

    def _bigram(self, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        lower = self._unigram(w)
        total = self.total2[v]
        c = _lookup(self.keys2, self.counts2, v * self.base + w)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        mixed = (np.maximum(c - self.d2[np.minimum(c, 3)], 0) + self.gamma2[v] * lower) / safe
        return np.where(seen, mixed, lower)

    def probs(self, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        """P(w | u, v) elementwise; ids out of range are read as unk."""
        u, v, w = (np.where((x >= 0) & (x < self.base), x, UNK_ID)
                   for x in (np.asarray(a, np.int64) for a in (u, v, w)))
        lower = self._bigram(v, w)
        context = u * self.base + v
        total = _lookup(self.contexts3, self.total3, context)
        gamma = _lookup(self.contexts3, self.gamma3, context)
        c = _lookup(self.keys3, self.counts3, context * self.base + w)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        mixed = (np.maximum(c - self.d3[np.minimum(c, 3)], 0) + gamma * lower) / safe
        return np.where(seen, mixed, lower)

    def distribution(self, u: int, v: int) -> np.ndarray:
        """P(. | u, v) over the whole vocabulary (sums to 1)."""
        w = np.arange(self.base)
        return self.probs(np.full_like(w, u), np.full_like(w, v), w)

    def cost(self, target_out: Sequence[int]) -> tuple[float, int]:
        """Summed negative log probability (nats) of a reply's tokens, and their count."""
        if not len(target_out):
            return 0.0, 0
        t = reply_trigrams(target_out, self.base)
        p = self.probs(t[:, 0], t[:, 1], t[:, 2])
        return float(-np.log(np.maximum(p, 1e-300)).sum()), len(t)

    def perplexity(self, replies: Iterable[Sequence[int]]) -> float | None:
        """Perplexity per token over `target_out` sequences (None when there are none)."""
        total, tokens = 0.0, 0
        for reply in replies:
            cost, count = self.cost(reply)
            total, tokens = total + cost, tokens + count
        return math.exp(min(total / tokens, 50.0)) if tokens else None
