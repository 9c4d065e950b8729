"""Helpers for tests that train a tiny model on whole conversations."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from chatbot.model.exchanges import Exchange, exchanges
from chatbot.model.loss import real_token_loss


def pad(rows) -> np.ndarray:
    """Rows of ids right-padded with zeros, (N, width), width at least 1."""
    width = max(1, max(len(r) for r in rows))
    return np.array([list(r) + [0] * (width - len(r)) for r in rows], dtype="int32")


def batches(tokenizer, conversations: list[list[str]]) -> list[tuple[np.ndarray, ...]]:
    """Per exchange step k, arrays (B, ...) for the k-th exchange of every conversation."""
    per_conversation = [exchanges([tokenizer.encode(t) for t in c]) for c in conversations]
    empty = Exchange([], [], [])
    result = []
    for k in range(max(len(e) for e in per_conversation)):
        rows = [e[k] if k < len(e) else empty for e in per_conversation]
        result.append(tuple(pad([getattr(r, f) for r in rows]) for f in Exchange._fields))
    return result


def fit(model, data: list[tuple[np.ndarray, ...]], optimizer, steps: int) -> list[float]:
    """Full-batch steps over whole conversations, the state carried from exchange to
    exchange as the training loop carries it, through training's own loss
    (`real_token_loss`); each exchange weighs the same. The mean loss of each step."""

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            state = model.zero_state(int(data[0][0].shape[0]))
            total = 0.0
            for source, target_in, target_out in data:
                features, state = model.exchange(
                    {"source": source, "target_in": target_in, "state": state}, training=True)
                loss_sum, tokens = real_token_loss(features, target_out, model.output_layer)
                total += loss_sum / tokens  # this exchange's mean per real token
        grads = tape.gradient(total, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return total / len(data)

    return [float(step()) for _ in range(steps)]
