"""The training loss and its perplexity: padding never counts in either.

Light at import (TensorFlow is imported when the loss is first computed), so the
evaluation's metrics and the CLI can use `perplexity` without starting TensorFlow.
"""

from __future__ import annotations

import math

from chatbot.text.tokenizer import PAD_ID


def real_token_loss(features, target_out, output_layer):
    """Summed cross-entropy over the real target tokens, and their count.

    Only the real positions of the decoder's features (B, T, H) go through the vocabulary
    projection: with V in the thousands that projection is most of a step's work, and
    padding would otherwise take its share of it.
    """
    import tensorflow as tf

    mask = tf.not_equal(target_out, PAD_ID)
    # Float32 for the softmax, whatever the compute dtype (bfloat16 or float16 under mixed
    # precision): their few mantissa bits would round the log-probabilities.
    logits = tf.cast(output_layer(tf.boolean_mask(features, mask)), tf.float32)  # (N, V)
    labels = tf.boolean_mask(target_out, mask)  # (N,)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(losses), tf.cast(tf.size(labels), tf.float32)


def perplexity(loss_sum: float, tokens: int) -> float | None:
    """exp(mean loss per token), capped at e^50; None when there are no tokens."""
    return math.exp(min(loss_sum / tokens, 50.0)) if tokens else None
