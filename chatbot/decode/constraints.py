"""Which tokens may come next: reserved ids, min and max length, n-gram blocking, no
token right after itself.

Every function works on R rows (inputs times beams) inside a compiled loop: `tokens`
(R, L) holds each row's reply so far in its first `t` places (zeros after), and an
n-gram ban is a boolean (R, V) mask. Banned scores become -inf. The steps are few ops
each on purpose: outside XLA each op costs microseconds at every generated token.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID


def length_table(vocab_size: int, allow_unk: bool, min_len: Any, max_len: Any) -> tf.Tensor:
    """(max_len + 1, V) what to add to the scores at each step t: -inf for padding and the
    start token (and unk) always, for the end token before min_len tokens, for every other
    token at max_len; 0 elsewhere. Built once per reply, one lookup per step."""
    ids = tf.range(vocab_size)
    reserved = (ids == PAD_ID) | (ids == BOS_ID)
    if not allow_unk:
        reserved |= ids == UNK_ID
    is_end = ids == EOS_ID
    t = tf.range(max_len + 1)[:, None]  # (max_len + 1, 1)
    banned = reserved[None, :] | (is_end & (t < min_len)) | (~is_end & (t >= max_len))
    return tf.where(banned, -float("inf"), 0.0)


def repeat_ban(tokens: tf.Tensor, t: Any, n: int, vocab_size: int) -> tf.Tensor:
    """(R, V) the tokens that would complete an n-gram already in the reply.

    A window of the reply starting at j is repeated when its first n-1 tokens equal the
    reply's last n-1 tokens; then its n-th token is banned.
    """
    windows = _windows(tokens, n)  # n x (R, L)
    length = tf.shape(tokens)[1]
    starts = tf.range(length)
    whole = starts[None, :] <= t - n  # (1, L): windows lying inside the reply so far
    return _ban(windows, _suffix(tokens, t, n), whole, vocab_size)


def source_ban(tokens: tf.Tensor, t: Any, source: tf.Tensor, n: int,
               vocab_size: int) -> tf.Tensor:
    """(R, V) the tokens that would copy an n-gram of the user's turn `source` (R, S)."""
    windows = _windows(source, n)  # n x (R, S)
    real = tf.reduce_all(tf.stack([w != PAD_ID for w in windows]), axis=0)  # (R, S)
    ready = t >= n - 1  # the reply has the n-1 tokens to match
    return _ban(windows, _suffix(tokens, t, n), tf.logical_and(real, ready), vocab_size)


def adjacent_ban(last: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """(R, V) each row's previous token (R,): no token right after itself. At the first
    step that is the start token, which is reserved anyway."""
    return tf.range(vocab_size)[None, :] == tf.cast(last, tf.int32)[:, None]


def apply(scores: tf.Tensor, banned: tf.Tensor, fallback: tf.Tensor) -> tf.Tensor:
    """Banned scores -inf; a row with nothing left may end, with its `fallback` score for
    the end token (rather than emit a banned token)."""
    masked = tf.where(banned, tf.constant(-float("inf"), scores.dtype), scores)
    stuck = tf.reduce_all(tf.math.is_inf(masked), axis=-1, keepdims=True)  # (R, 1)
    is_end = (tf.range(tf.shape(scores)[-1]) == EOS_ID)[None, :]
    return tf.where(tf.logical_and(stuck, is_end), fallback, masked)


def _windows(ids: tf.Tensor, n: int) -> list[tf.Tensor]:
    """The k-th token of the window starting at each place, for k < n: n x (R, L)."""
    length = tf.shape(ids)[1]
    padded = tf.pad(ids, [[0, 0], [0, n]])
    return [padded[:, k:k + length] for k in range(n)]


def _suffix(tokens: tf.Tensor, t: Any, n: int) -> list[tf.Tensor]:
    """The reply's last n-1 tokens, (R,) each (meaningless while t < n-1)."""
    places = [tf.maximum(t - (n - 1) + k, 0) for k in range(n - 1)]
    return [tf.gather(tokens, place, axis=1) for place in places]


def _ban(windows: list[tf.Tensor], suffix: list[tf.Tensor], valid: tf.Tensor,
         vocab_size: int) -> tf.Tensor:
    """Ban the last token of every valid window whose first tokens equal `suffix`."""
    match = tf.broadcast_to(valid, tf.shape(windows[0]))  # (R, L)
    for window, last in zip(windows, suffix, strict=False):  # the first n-1 places
        match = tf.logical_and(match, window == last[:, None])
    candidates = windows[-1]  # (R, L): the token each window would repeat
    rows = tf.broadcast_to(tf.range(tf.shape(candidates)[0])[:, None], tf.shape(candidates))
    indices = tf.stack([rows, candidates], axis=-1)  # (R, L, 2)
    shape = tf.stack([tf.shape(candidates)[0], vocab_size])
    # scatter_nd adds duplicates: a count above zero means some window bans that id.
    counts = tf.scatter_nd(indices, tf.cast(match, tf.int32), shape)
    return counts > 0
