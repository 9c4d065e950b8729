"""Metrics over generated replies: distinct-n, the generic-reply rate and corpus BLEU-4.

They work on words (`words`: lower-cased word and punctuation tokens of the decoded text),
not on the model's token ids, so figures compare across word, subword and char models.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of `text`."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of `tokens` in order."""
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(replies: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of all replies (Li et al. 2016); 0 when none."""
    grams = [g for reply in replies for g in ngrams(reply, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def generic_rate(replies: Sequence[str], top: int = 10) -> float:
    """The share of replies that are one of the `top` most frequent replies.

    A model that answers everything with "i don't know" scores near 1; one whose
    replies all differ scores top / len(replies).
    """
    if not replies:
        return 0.0
    common = Counter(replies).most_common(top)
    return sum(count for _, count in common) / len(replies)


def corpus_bleu(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]],
                max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002), 0-100, one reference per hypothesis, as
    sacrebleu computes it on our words (its tokenizer off, so the words are not split
    again): clipped n-gram matches and lengths summed over the corpus before the
    precisions are taken, and its default "exp" smoothing for an order with no match
    (1 / (2^k * total) for the k-th such order), since a chatbot's short replies often
    share no 4-gram with the reference. 0 when no word matches or no reply is long
    enough for a `max_n`-gram.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        return 0.0
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="none", smooth_method="exp", max_ngram_order=max_n)
    return float(bleu.corpus_score([" ".join(h) for h in hypotheses],
                                   [[" ".join(r) for r in references]]).score)
