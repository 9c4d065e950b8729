"""A Keras LSTM layer's computation over whole sequences, faster on the CPU.

Keras runs an LSTM on the CPU as a loop over time steps in which every row of the batch
takes every step, padding included, and its gradient sums a thin weight-gradient matrix
product per step. This computes the same function with the layer's own weights:
  - rows are sorted by length, so step t runs only on the rows still going (a prefix):
    the padding of a batch of turns (about half its positions) costs nothing;
  - the input projection of every step is one large matrix product before the loop;
  - the gradient (written out, `tf.custom_gradient`) loops back over time only for the
    recurrent part, and makes each weight gradient one large product after the loop.
Outputs are zeros at padded positions, and a row's final state is the state after its
last token (what Keras returns with a mask). Sequences are padded at the end only, as
every batch here is. On a GPU, Keras' cuDNN kernel is faster, so it is used there.

Under mixed precision (bfloat16 on the CPU) it computes in the layer's compute dtype, as
Keras would, rather than stepping aside: measured on a 2-core AVX2 CPU without native
bfloat16, a bfloat16 training step (the whole seq2seq model, hidden 64 to 256, batch 16 to
32) took 0.7-0.8x the time it took through Keras' own bfloat16 LSTM. (Both are slower than
float32 there, 0.65-0.8x its speed: such CPUs convert bfloat16 for every product.)
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def _on_cpu_only() -> bool:
    import tensorflow as tf

    return not tf.config.list_logical_devices("GPU")


def applies(layer: Any) -> bool:
    """Whether `layer` is an LSTM this module computes exactly (the project's LSTMs are)."""
    import keras

    if type(layer) is not keras.layers.LSTM or keras.backend.backend() != "tensorflow":
        return False
    cell = layer.cell
    return (cell.activation is keras.activations.tanh
            and cell.recurrent_activation is keras.activations.sigmoid
            and cell.use_bias and cell.recurrent_dropout == 0.0 and not layer.go_backwards
            and _on_cpu_only())


def run(layer: Any, x: Any, mask: Any, initial: list, training: bool = False):
    """The layer over `x` (B, T, I) with `mask` (B, T) and initial [h, c]: returns the
    outputs (B, T, H) and the final [h, c], as `layer(x, mask=..., initial_state=...)`."""
    import keras
    import tensorflow as tf

    if not layer.built:
        layer.build(tuple(x.shape))
    cell = layer.cell
    # In the layer's compute dtype, as Keras' own call would (bfloat16 under the CPU's
    # mixed precision): inputs, initial state and weights alike, the variables staying
    # float32 (the casts' gradients bring theirs back to float32).
    dtype = layer.compute_dtype
    x = tf.cast(x, dtype)
    width = tf.shape(x)[1]
    if training and cell.dropout > 0.0:
        # Keras' input dropout: one mask per row, the same at every step.
        keep = keras.random.dropout(tf.ones_like(x[:, :1, :]), cell.dropout,
                                    seed=cell.seed_generator)
        x = x * keep
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    # At least one step, so that a batch of empty rows still has one (that leaves their
    # state as it was).
    x = tf.pad(x, [[0, 0], [0, tf.maximum(1 - width, 0)], [0, 0]])
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)
    back = tf.argsort(order)  # the inverse permutation
    h0, c0 = (tf.gather(tf.cast(s, dtype), order) for s in initial)
    steps = tf.transpose(tf.gather(x, order), [1, 0, 2])  # (T, B, I), rows by length
    sorted_lengths = tf.gather(lengths, order)
    weights = (tf.cast(tf.convert_to_tensor(w), dtype)
               for w in (cell.kernel, cell.recurrent_kernel, cell.bias))
    outputs, h, c = _packed_lstm(steps, h0, c0, sorted_lengths, *weights)
    outputs = tf.gather(tf.transpose(outputs, [1, 0, 2])[:, :width], back)
    return outputs, [tf.gather(h, back), tf.gather(c, back)]


def _packed_lstm(x, h0, c0, lengths, kernel, recurrent, bias):
    """Time-major `x` (T, B, I) with rows sorted by `lengths`, longest first: outputs
    (T, B, H) and the final h, c (B, H).

    Inside, per-position values are kept compact: the real positions only, step by step
    ((N, ...) with N the number of real tokens), so that padding costs nothing anywhere.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def lstm(x, h0, c0, kernel, recurrent, bias):
        steps, rows = tf.shape(x)[0], tf.shape(x)[1]
        units = tf.shape(h0)[1]
        # Steps any row takes (at least one: see `run`).
        used = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 1)
        # Rows still going at each step: a prefix, as rows are sorted by length.
        active = tf.reduce_sum(tf.cast(lengths[None, :] > tf.range(used)[:, None], tf.int32),
                               axis=1)
        starts = tf.cumsum(active, exclusive=True)  # where each step's rows begin
        real = tf.where(tf.range(rows)[None, :] < active[:, None])  # (N, 2): (step, row)
        inputs = tf.gather_nd(x, real)  # (N, I)
        projected = tf.matmul(inputs, kernel) + bias  # every step's input part at once

        # Each loop step does only what depends on the step before; the rest is done for
        # all steps at once, before or after the loop, as a few large operations.
        def forward(t, h, c, zs, cs):
            n = active[t]
            z = projected[starts[t]:starts[t] + n] + tf.matmul(h[:n], recurrent)
            i, f, _, o = tf.split(tf.sigmoid(z), 4, axis=1)
            g = tf.tanh(z[:, 2 * units:3 * units])
            c_new = f * c[:n] + i * g
            h_new = o * tf.tanh(c_new)
            # Finished rows keep their state: it is their final one.
            h = tf.ensure_shape(tf.concat([h_new, h[n:]], 0), h0.shape)
            c = tf.ensure_shape(tf.concat([c_new, c[n:]], 0), c0.shape)
            return t + 1, h, c, zs.write(t, z), cs.write(t, c_new)

        arrays = [tf.TensorArray(x.dtype, size=used, infer_shape=False,
                                 element_shape=[None, None]) for _ in range(2)]
        _, h, c, zs, cs = tf.while_loop(lambda t, *_: t < used, forward, (0, h0, c0, *arrays))
        zs, cs = zs.concat(), cs.concat()  # (N, 4H), (N, H)
        i, f, o = (tf.sigmoid(part) for k, part in enumerate(tf.split(zs, 4, axis=1)) if k != 2)
        g = tf.tanh(zs[:, 2 * units:3 * units])
        tanh_c = tf.tanh(cs)
        hs = o * tanh_c
        sequence_shape = tf.cast(tf.stack([steps, rows, units]), tf.int64)
        outputs = tf.scatter_nd(real, hs, sequence_shape)

        def gradient(d_outputs, d_h, d_c):
            # None for outputs or states nothing used (the encoder's outputs, in most
            # families); sparse ones from the unsorting gather.
            d_h, d_c = (tf.zeros_like(like) if d is None else tf.convert_to_tensor(d)
                        for d, like in ((d_h, h0), (d_c, c0)))
            d_hs = (tf.zeros_like(hs) if d_outputs is None
                    else tf.gather_nd(tf.convert_to_tensor(d_outputs), real))
            # The state each real position started from: the step before's, or the initial.
            before = real - tf.constant([1, 0], tf.int64)
            first = tf.equal(before[:, 0], -1)
            earlier = tf.maximum(before, 0)
            h_before = tf.where(first[:, None], tf.gather(h0, real[:, 1]),
                                tf.gather_nd(outputs, earlier))
            c_padded = tf.scatter_nd(real, cs, sequence_shape)
            c_before = tf.where(first[:, None], tf.gather(c0, real[:, 1]),
                                tf.gather_nd(c_padded, earlier))
            # Step by step: dc += dh * to_c; dz = [dc, dc, dc, dh] * to_z; dc_before = dc * f.
            # One array, so that each step takes its rows with one slice.
            per_position = tf.concat([d_hs, o * (1.0 - tanh_c * tanh_c), f,
                                      g * i * (1.0 - i), c_before * f * (1.0 - f),
                                      i * (1.0 - g * g), tanh_c * o * (1.0 - o)], axis=1)

            def backward(t, dh, dc, dzs):
                n = active[t]
                d_out, to_c, f_t, to_z = tf.split(per_position[starts[t]:starts[t] + n],
                                                  [units, units, units, 4 * units], axis=1)
                dh_n = d_out + dh[:n]
                dc_n = dc[:n] + dh_n * to_c
                dz = tf.concat([dc_n, dc_n, dc_n, dh_n], 1) * to_z
                dh = tf.ensure_shape(
                    tf.concat([tf.matmul(dz, recurrent, transpose_b=True), dh[n:]], 0), h0.shape)
                dc = tf.ensure_shape(tf.concat([dc_n * f_t, dc[n:]], 0), c0.shape)
                return t - 1, dh, dc, dzs.write(t, dz)

            dzs = tf.TensorArray(x.dtype, size=used, infer_shape=False,
                                 element_shape=[None, None])
            _, dh, dc, dzs = tf.while_loop(lambda t, *_: t >= 0, backward,
                                           (used - 1, d_h, d_c, dzs))
            dz = dzs.concat()  # (N, 4H), in the same order as `real`
            d_x = tf.scatter_nd(real, tf.matmul(dz, kernel, transpose_b=True),
                                tf.shape(x, out_type=tf.int64))
            d_kernel = tf.matmul(inputs, dz, transpose_a=True)
            d_recurrent = tf.matmul(h_before, dz, transpose_a=True)
            return d_x, dh, dc, d_kernel, d_recurrent, tf.reduce_sum(dz, 0)

        return (outputs, h, c), gradient

    return lstm(x, h0, c0, kernel, recurrent, bias)
