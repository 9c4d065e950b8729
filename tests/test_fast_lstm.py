"""fast_lstm computes what the Keras LSTM layer computes (outputs at real positions, final
states, and every gradient), for any mix of lengths, including empty rows and batches."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from chatbot.model import fast_lstm  # noqa: E402

B, T, I, H = 6, 7, 5, 4  # noqa: E741


def inputs(lengths, seed=0, width=T):
    """x (B, width, I) with rows of the given lengths (then zeros), its mask, h0 and c0."""
    rng = np.random.default_rng(seed)
    mask = tf.sequence_mask(lengths, width)
    x = tf.constant(rng.normal(size=(len(lengths), width, I)), tf.float32)
    x = x * tf.cast(mask, tf.float32)[..., None]
    h0 = tf.constant(rng.normal(size=(len(lengths), H)) * 0.5, tf.float32)
    c0 = tf.constant(rng.normal(size=(len(lengths), H)) * 0.5, tf.float32)
    return x, mask, h0, c0


def layer_and_inputs(lengths, seed=0, **options):
    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True, **options)
    x, mask, h0, c0 = inputs(lengths, seed)
    layer(x, mask=mask, initial_state=[h0, c0])
    return layer, x, mask, h0, c0


def keras_way(layer, x, mask, h0, c0):
    outputs, h, c = layer(x, mask=mask, initial_state=[h0, c0])
    return outputs * tf.cast(mask, tf.float32)[..., None], h, c


def fast_way(layer, x, mask, h0, c0):
    outputs, (h, c) = fast_lstm.run(layer, x, mask, [h0, c0], training=True)
    return outputs, h, c


def gradients(way, layer, x, mask, h0, c0):
    with tf.GradientTape() as tape:
        tape.watch([x, h0, c0])
        outputs, h, c = way(layer, x, mask, h0, c0)
        weights = tf.constant(np.linspace(-1, 1, H), tf.float32)
        loss = (tf.reduce_sum(outputs * outputs * weights) + tf.reduce_sum(h * weights)
                + tf.reduce_sum(c * c))
    grads = tape.gradient(loss, [x, h0, c0, *layer.trainable_variables])
    return [tf.convert_to_tensor(g) for g in grads]


@pytest.mark.parametrize("lengths", [[7, 7, 7, 7, 7, 7], [7, 3, 0, 5, 1, 7], [2, 4, 1, 3, 2, 1],
                                     [0, 0, 0, 0, 0, 0]])
def test_same_outputs_states_and_gradients_as_the_keras_layer(lengths):
    layer, x, mask, h0, c0 = layer_and_inputs(lengths)
    assert fast_lstm.applies(layer)
    for ours, theirs in zip(fast_way(layer, x, mask, h0, c0), keras_way(layer, x, mask, h0, c0),
                            strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    for ours, theirs in zip(gradients(fast_way, layer, x, mask, h0, c0),
                            gradients(keras_way, layer, x, mask, h0, c0), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_compiled_with_changing_widths_and_an_empty_batch():
    layer, *_ = layer_and_inputs([3] * B)
    spec = (tf.TensorSpec((B, None, I)), tf.TensorSpec((B, None), tf.bool),
            tf.TensorSpec((B, H)), tf.TensorSpec((B, H)))
    compiled = tf.function(lambda *a: gradients(fast_way, layer, *a), input_signature=spec)
    for width, lengths in [(7, [7, 3, 0, 5, 1, 7]), (2, [2, 2, 1, 0, 2, 1]), (3, [0] * B)]:
        x, mask, h0, c0 = inputs(lengths, seed=width, width=width)
        for ours, theirs in zip(compiled(x, mask, h0, c0),
                                gradients(keras_way, layer, x, mask, h0, c0), strict=True):
            np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # A batch of no steps at all (which Keras' layer cannot take): the state goes through.
    x, mask, h0, c0 = inputs([0] * B, width=0)
    outputs, h, c = fast_way(layer, x, mask, h0, c0)
    assert outputs.shape == (B, 0, H)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)
    d_x, d_h0, d_c0, *d_weights = compiled(x, mask, h0, c0)
    assert d_x.shape == (B, 0, I)
    np.testing.assert_allclose(d_h0, np.linspace(-1, 1, H)[None].repeat(B, 0), atol=1e-6)
    np.testing.assert_allclose(d_c0, 2 * c0, atol=1e-6)
    assert all(not np.any(d) for d in d_weights)


def test_input_dropout_in_training_only():
    layer, x, mask, h0, c0 = layer_and_inputs([7, 3, 0, 5, 1, 7], dropout=0.5)
    assert fast_lstm.applies(layer)
    plain = keras_way(layer, x, mask, h0, c0)
    dropped = fast_way(layer, x, mask, h0, c0)
    assert not np.allclose(dropped[0], plain[0])  # some inputs were dropped
    np.testing.assert_allclose(dropped[1][2], plain[1][2])  # an empty row reads nothing


def test_other_layers_are_left_to_keras():
    assert not fast_lstm.applies(keras.layers.GRU(H))
    assert not fast_lstm.applies(keras.layers.LSTM(H, activation="relu"))
    assert not fast_lstm.applies(keras.layers.LSTM(H, recurrent_dropout=0.1))
    assert not fast_lstm.applies(keras.layers.Bidirectional(keras.layers.LSTM(H)))
