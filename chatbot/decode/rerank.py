"""Reranking a reply's candidates: MMI-bidi with a reverse model, PMI without one.

The likeliest replies are the generic ones ("i don't know"), which follow any turn. Li
et al. 2016 rescore the N best by how much a reply says about its turn:

    mmi: lambda * log p(reply | turn, state) + (1 - lambda) * log p(turn | reply)
    pmi: log p(reply | turn, state) - lambda * log p(reply)
    each + gamma * the reply's tokens

log p(turn | reply) comes from a reverse model (`chatbot train --reverse`: the same
conversations read backwards, without context); log p(reply) from the forward model given
an empty turn and a fresh state, as the anti-LM takes it (chatbot.decode.step). Each term
is one teacher-forced pass of every candidate as a batch (`compile_row_scores`), the
scoring `chatbot eval` ranks with (hits@1).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.errors import ChatbotError
from chatbot.model import directory
from chatbot.model.directory import ModelDirectory, trained_reverse
from chatbot.model.exchanges import Exchange, exchanges, pad_ids
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

EMPTY_TURN = [PAD_ID]  # the turn p(reply) is read from (chatbot.decode.step.empty_source)


def check_reverse(forward: Path | str, reverse: Path | str) -> Path:
    """`reverse` checked as a reverse model for `forward`: a complete model directory
    trained with --reverse whose tokenizer is forward's (the ids name the same tokens).
    A one-line ChatbotError otherwise; cheap (no TensorFlow)."""
    from chatbot.text.tokenizer import load_tokenizer

    reverse = directory.check(reverse)
    if not trained_reverse(directory.read_metadata(reverse)):
        raise ChatbotError(f"{reverse}: not a reverse model (it was not trained with "
                           "--reverse); train one with `chatbot train --reverse --model "
                           "DIR` on the same corpus and tokenizer")
    if _vocabulary(load_tokenizer(forward)) != _vocabulary(load_tokenizer(reverse)):
        raise ChatbotError(f"{reverse}: its tokenizer is not the one of {forward}, so its "
                           "token ids mean other words; train it on the same corpus with the "
                           "same --tokenizer and --vocab-size")
    return reverse


def _vocabulary(tokenizer: Any) -> tuple[Any, ...]:
    return (tokenizer.kind, tokenizer.options,
            *(tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)))


def max_len_of(metadata: dict[str, Any]) -> int | None:
    """The tokens per turn a model was trained with (its saved options), if it says."""
    options = metadata.get("options")
    try:
        return int(options.get("max_len")) if isinstance(options, dict) else None
    except (TypeError, ValueError):
        return None


def compile_row_scores(model: Any) -> Callable:
    """log p(target | source, state) of each row: the sum over its real target tokens.
    Called with (source, target_in, target_out) ids and the state, (N, H) arrays. One
    compiled function per model, shared (eval's ranking and the reranker trace it once)."""
    if model not in _SCORERS:
        _SCORERS[model] = _row_scores_function(model)
    return _SCORERS[model]


_SCORERS: weakref.WeakKeyDictionary[Any, Callable] = weakref.WeakKeyDictionary()


def _row_scores_function(model: Any) -> Callable:
    import tensorflow as tf

    c = model.config_
    ids = tf.TensorSpec((None, None), tf.int32)
    states = tuple(tf.TensorSpec((None, c.hidden_dim), tf.float32)
                   for _ in range(c.depths[1] * c.state_size))

    @tf.function(input_signature=(ids, ids, ids, states))
    def score(source, target_in, target_out, state):
        keep = tf.zeros_like(source[:, 0], dtype=tf.bool)  # the state given, not reset
        features, _ = model.exchange({"source": source, "target_in": target_in,
                                      "reset": keep, "state": list(state)})
        logits = model.output_layer(features)  # (N, T, V)
        logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_out,
                                                                logits=logits)
        real = tf.cast(tf.not_equal(target_out, PAD_ID), tf.float32)
        return tf.reduce_sum(logp * real, axis=1)  # (N,)

    return score


def zero_state(model: Any, rows: int) -> tuple[np.ndarray, ...]:
    """The state of `rows` fresh conversations: (rows, H) arrays."""
    c = model.config_
    return tuple(np.zeros((rows, c.hidden_dim), np.float32)
                 for _ in range(c.depths[1] * c.state_size))


def row_scores(score: Callable, rows: Sequence[Exchange], state: Sequence[np.ndarray]
               ) -> np.ndarray:
    """(N,) log p(target_out | source, state) of each exchange, in one pass."""
    return np.asarray(score(pad_ids([r.source for r in rows]),
                            pad_ids([r.target_in for r in rows]),
                            pad_ids([r.target_out for r in rows]), tuple(state)))


def combine(kind: str, weight: float, gamma: float, forward: np.ndarray,
            other: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The rerank score: `other` is log p(turn | reply) for "mmi", log p(reply) for
    "pmi"; `lengths` the replies' tokens."""
    if kind == "mmi":
        base = weight * forward + (1.0 - weight) * other
    elif kind == "pmi":
        base = forward - weight * other
    else:
        raise ValueError(f"no rerank {kind!r}")
    return base + gamma * np.asarray(lengths, np.float32)


@dataclass
class ReverseModel:
    """A loaded reverse model: log p(turn | reply), each exchange on its own."""

    loaded: ModelDirectory
    _score: Callable | None = field(default=None, repr=False)

    @property
    def max_len(self) -> int | None:
        return max_len_of(self.loaded.metadata)

    def turn_scores(self, replies: Sequence[Sequence[int]], turns: Sequence[Sequence[int]]
                    ) -> np.ndarray:
        """(N,) log p(turns[i] | replies[i]), both cut as its training cut them."""
        if self._score is None:
            self._score = compile_row_scores(self.loaded.model)
        rows = [exchanges([list(turn), list(reply)], self.max_len, reverse=True)[0]
                for reply, turn in zip(replies, turns, strict=True)]
        return row_scores(self._score, rows, zero_state(self.loaded.model, len(rows)))


def load_reverse(forward: ModelDirectory, reverse: Path | str | ModelDirectory) -> ReverseModel:
    """The reverse model for `forward`, checked (`check_reverse`) and loaded."""
    path = reverse.path if isinstance(reverse, ModelDirectory) else Path(reverse)
    check_reverse(forward.path, path)
    return ReverseModel(reverse if isinstance(reverse, ModelDirectory)
                        else directory.load(path))


class Reranker:
    """Rescores candidate replies to turns with the forward model (and a reverse one)."""

    def __init__(self, model: Any, reverse: ReverseModel | None = None) -> None:
        self.model = model
        self.reverse = reverse
        self._score: Callable | None = None

    def require(self, kind: str) -> None:
        """A ChatbotError when `kind` cannot be computed here (mmi with no reverse model)."""
        if kind == "mmi" and self.reverse is None:
            raise ChatbotError("rerank mmi needs a reverse model (--reverse-model DIR, one "
                               "trained with `chatbot train --reverse`); rerank pmi needs "
                               "none")

    def scores(self, kind: str, weight: float, gamma: float, turns: Sequence[Sequence[int]],
               states: Sequence[np.ndarray], replies: Sequence[Sequence[int]]) -> np.ndarray:
        """(N,) the rerank score of replies[i] to turns[i] read from state row i
        (`states`: (N, H) arrays)."""
        self.require(kind)
        if self._score is None:
            self._score = compile_row_scores(self.model)
        rows = [Exchange(list(t), [BOS_ID, *r], [*r, EOS_ID])
                for t, r in zip(turns, replies, strict=True)]
        count = len(rows)
        if kind == "pmi":
            # One pass for both terms: the rows given the turn, then given no turn.
            prior = [r._replace(source=EMPTY_TURN) for r in rows]
            zeros = zero_state(self.model, count)
            both = row_scores(self._score, rows + prior,
                              [np.concatenate([s, z]) for s, z in zip(states, zeros,
                                                                      strict=True)])
            forward, other = both[:count], both[count:]
        else:
            forward = row_scores(self._score, rows, states)
            other = self.reverse.turn_scores(replies, turns)
        return combine(kind, weight, gamma, forward, other,
                       np.array([len(r) for r in replies]))
