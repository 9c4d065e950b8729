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


def real_token_loss(features, target_out, output_layer):
    """Summed cross-entropy over the real target tokens, and their count.

    Only the real positions of the decoder's features (B, T, H) go through the vocabulary
    projection: with V in the thousands that projection is most of a step's work, and
    padding would otherwise take its share of it.
    """
    import tensorflow as tf

    mask = tf.not_equal(target_out, PAD_ID)
    logits = output_layer(tf.boolean_mask(features, mask))  # (N, V)
    labels = tf.boolean_mask(target_out, mask)  # (N,)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return tf.reduce_sum(losses), tf.cast(tf.size(labels), tf.float32)
