"""Masked sparse cross-entropy from logits: padding never counts in the loss."""

from __future__ import annotations

from keras import ops

from chatbot.text.tokenizer import PAD_ID


def masked_cross_entropy(target_out, logits):
    """Mean cross-entropy per real target token (integer ids, no one-hot), and the count.

    target_out (B, T) holds the reply shifted left with eos at its end; logits (B, T, V).
    """
    mask = ops.cast(ops.not_equal(target_out, PAD_ID), "float32")
    losses = ops.sparse_categorical_crossentropy(target_out, logits, from_logits=True)
    count = ops.sum(mask)
    return ops.sum(losses * mask) / ops.maximum(count, 1.0), count
