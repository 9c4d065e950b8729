"""Metrics over generated replies: distinct-n, the generic-reply rate and corpus BLEU-4.

They work on words (`words`: lower-cased word and punctuation tokens of the decoded text),
not on the model's token ids, so figures compare across word, subword and char models.
"""

from __future__ import annotations

import math
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
    """Corpus BLEU (Papineni et al. 2002), 0-100, one reference per hypothesis.

    Clipped n-gram matches and lengths are summed over the corpus before the precisions
    are taken. A precision with no match is smoothed as sacrebleu's default "exp" method
    does (1 / (2^k * total) for the k-th such order), since a chatbot's short replies
    often share no 4-gram with the reference and plain BLEU would then be 0 for all.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp_len += len(hyp)
        ref_len += len(ref)
        for n in range(1, max_n + 1):
            hyp_grams, ref_grams = Counter(ngrams(hyp, n)), Counter(ngrams(ref, n))
            matches[n - 1] += sum(min(c, ref_grams[g]) for g, c in hyp_grams.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(totals) == 0:
        return 0.0
    log_precision = 0.0
    smooth = 1.0
    for match, total in zip(matches, totals, strict=True):
        if match == 0:
            smooth *= 2.0
            log_precision += math.log(1.0 / (smooth * total))
        else:
            log_precision += math.log(match / total)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * brevity * math.exp(log_precision / max_n)


def perplexity(loss_sum: float, tokens: int) -> float | None:
    """exp(mean loss per token), capped at e^50; None when there are no tokens."""
    return math.exp(min(loss_sum / tokens, 50.0)) if tokens else None
