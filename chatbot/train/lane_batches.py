"""Batches of lanes from the token cache, built with numpy: no per-token Python.

The same walk as `chatbot.train.data.lanes` (which works on exchanges already in lists):
each of the B rows of a batch is a lane that walks one conversation exchange by exchange;
a lane whose conversation ended takes, from a pool of the next conversations in the
epoch's order, the one closest in mean exchange length to the lanes still running, with
`reset` set so the model zeroes that row's state. Here a lane is three integers (its
conversation, the turn it reads next, where the conversation ends), and a step's rows are
gathered from the memory-mapped tokens in a few array operations, so the Python cost of
a step does not grow with the batch.

With `reverse` (a reverse model, `chatbot train --reverse`) each exchange is read
backwards, turn k + 1 -> turn k, and every row's state is reset at every step: such a
model scores p(turn | reply) with no context, so its exchanges are each their own. A
lane still walks one conversation, so the batches keep their shape and the order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from chatbot.text.tokenizer import BOS_ID, EOS_ID
from chatbot.train.data import Batch
from chatbot.train.token_cache import TokenCache, shard_range


def epoch_order(cache: TokenCache, split: str, valid_fraction: float, split_by: str = "work",
                seed: int | None = None, shard: tuple[int, int] = (0, 1),
                targets: np.ndarray | None = None) -> np.ndarray:
    """The conversations an epoch walks: those of `split` in `shard` (index, count) that
    have an exchange (one with a target turn, given `targets`), in store order or
    shuffled by `seed`."""
    first, end = shard_range(cache, *shard)
    starts = np.asarray(cache.conversations[first:end + 1])
    keep = cache.in_split(split, valid_fraction, split_by)[first:end] & (np.diff(starts) >= 2)
    if targets is not None:
        # A conversation's first turn is never a reply: count targets from its second.
        counts = np.concatenate([[0], np.cumsum(targets[starts[0]:starts[-1]], dtype=np.int64)])
        local = starts - starts[0]
        keep &= (counts[local[1:]] - counts[np.minimum(local[:-1] + 1, local[1:])]) > 0
    order = np.flatnonzero(keep) + first
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    return order


def lane_batches(cache: TokenCache, order: np.ndarray, batch_size: int, max_len: int,
                 targets: np.ndarray | None = None, pool: int = 0, skip: int = 0,
                 endless: bool = False, reverse: bool = False) -> Iterator[Batch]:
    """Batches of `batch_size` lanes over the conversations of `order`.

    `skip` batches are walked without being built (a resume inside an epoch). With
    `endless`, all-idle batches follow the last one for ever (a worker whose shard ended
    keeps stepping with the others until every shard has; see the training loop). With
    `reverse`, each exchange backwards and every row reset (see the module's doc).
    """
    pool = pool or 4 * batch_size
    conversations, turns = cache.conversations, cache.turns
    lane_conversation = np.full(batch_size, -1, np.int64)
    lane_turn = np.zeros(batch_size, np.int64)  # the source turn of the lane's next exchange
    lane_end = np.zeros(batch_size, np.int64)  # one past the conversation's last turn
    lane_length = np.zeros(batch_size, np.float64)
    waiting = np.zeros(0, np.int64)
    waiting_length = np.zeros(0, np.float64)
    taken = 0  # conversations of `order` moved to the pool so far
    step = 0
    while True:
        if len(waiting) < pool and taken < len(order):
            more = np.asarray(order[taken:taken + pool - len(waiting)], np.int64)
            taken += len(more)
            waiting = np.concatenate([waiting, more])
            waiting_length = np.concatenate([waiting_length,
                                             mean_lengths(cache, more, max_len, reverse)])
        walked = lane_conversation >= 0  # the lanes of the last step, ended ones too
        need = ~walked | (lane_turn + 1 >= lane_end)
        lanes = np.flatnonzero(need)
        given = min(len(lanes), len(waiting))
        if given:
            if walked.any():
                target = lane_length[walked].mean()
                picks = np.argsort(np.abs(waiting_length - target), kind="stable")[:given]
            else:
                picks = np.arange(given)
            chosen = waiting[picks]
            to = lanes[:given]
            lane_conversation[to] = chosen
            lane_turn[to] = conversations[chosen]
            lane_end[to] = conversations[chosen + 1]
            lane_length[to] = waiting_length[picks]
            keep = np.ones(len(waiting), bool)
            keep[picks] = False
            waiting, waiting_length = waiting[keep], waiting_length[keep]
        lane_conversation[lanes[given:]] = -1  # idle: nothing left to walk
        live = lane_conversation >= 0
        if not live.any():
            if not endless:
                return
            idle = np.zeros((batch_size, 1), np.int32)
            while True:
                yield Batch(idle, idle, idle, np.ones(batch_size, bool))
        if step >= skip:
            reset = np.ones(batch_size, bool) if reverse else need
            yield _build(cache, lane_turn, live, reset, max_len, targets, turns, reverse)
        lane_turn[live] += 1
        step += 1


def mean_lengths(cache: TokenCache, chosen: np.ndarray, max_len: int,
                 reverse: bool = False) -> np.ndarray:
    """Each conversation's mean exchange length (source + fed reply, cut at `max_len`;
    each exchange backwards with `reverse`): what a lane is matched on."""
    if not len(chosen):
        return np.zeros(0, np.float64)
    starts = np.asarray(cache.conversations[chosen], np.int64)
    counts = np.asarray(cache.conversations[chosen + 1], np.int64) - starts
    total = int(counts.sum())
    offsets = np.concatenate([[0], np.cumsum(counts)])
    index = np.repeat(starts - offsets[:-1], counts) + np.arange(total)
    lengths = np.asarray(cache.turns[index + 1] - cache.turns[index], np.int64)
    source = np.concatenate([[0], np.cumsum(np.minimum(lengths, max_len))])
    fed = np.concatenate([[0], np.cumsum(np.minimum(lengths + 1, max_len))])
    ends = offsets[1:]
    starts = offsets[:-1]
    if reverse:  # sources are turns first+1..last, fed replies turns first..last-1
        sums = (source[ends] - source[starts + 1]) + (fed[ends - 1] - fed[starts])
    else:  # sources are turns first..last-1, fed replies turns first+1..last
        sums = (source[ends - 1] - source[starts]) + (fed[ends] - fed[starts + 1])
    return sums / np.maximum(counts - 1, 1)


def _build(cache: TokenCache, lane_turn: np.ndarray, live: np.ndarray, reset: np.ndarray,
           max_len: int, targets: np.ndarray | None, turns: np.ndarray,
           reverse: bool = False) -> Batch:
    """One step's arrays: each live lane's exchange (turn k -> turn k + 1, or with
    `reverse` turn k + 1 -> turn k), padded."""
    rows = len(lane_turn)
    first = lane_turn[live]  # turn k of each live lane's exchange
    source_turn, reply_turn = (first + 1, first) if reverse else (first, first + 1)
    source_end = np.asarray(turns[source_turn + 1], np.int64)
    source_start = np.maximum(source_end - max_len, np.asarray(turns[source_turn], np.int64))
    reply_start = np.asarray(turns[reply_turn], np.int64)
    reply_length = np.asarray(turns[reply_turn + 1], np.int64) - reply_start
    fed = np.minimum(reply_length + 1, max_len)  # bos + reply, or its first max_len - 1

    source = _gather(cache.tokens, source_start, source_end - source_start)
    width = int(fed.max())
    target_in = np.zeros((len(fed), width), np.int32)
    target_in[:, 0] = BOS_ID
    target_in[:, 1:] = _gather(cache.tokens, reply_start, fed - 1, width - 1)
    target_out = _gather(cache.tokens, reply_start, np.minimum(reply_length, fed), width)
    ended = np.flatnonzero(reply_length < max_len)  # a cut reply has no eos: not finished
    target_out[ended, reply_length[ended]] = EOS_ID
    if targets is not None:
        # Read, not learned (reply_as): a reverse exchange is learned where the forward
        # one would be (the speaker's turn is its source), so both ask turn k + 1.
        target_out[~targets[first + 1]] = 0
    return Batch(_rows(source, live, rows), _rows(target_in, live, rows),
                 _rows(target_out, live, rows), reset.copy())


def _gather(tokens: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
            width: int | None = None) -> np.ndarray:
    """(N, width) int32: row i holds tokens[starts[i]:starts[i] + lengths[i]], zero-padded."""
    width = int(lengths.max(initial=0)) if width is None else width
    if width <= 0 or not len(tokens):
        return np.zeros((len(starts), max(width, 0)), np.int32)
    columns = np.arange(width)
    inside = columns < lengths[:, None]
    index = np.where(inside, starts[:, None] + columns, 0)
    out = np.asarray(tokens[index.ravel()], np.int32).reshape(index.shape)
    out[~inside] = 0
    return out


def _rows(values: np.ndarray, live: np.ndarray, rows: int) -> np.ndarray:
    """The live lanes' rows placed among `rows` (idle rows zero), width at least 1."""
    out = np.zeros((rows, max(1, values.shape[1])), np.int32)
    out[live, :values.shape[1]] = values
    return out
