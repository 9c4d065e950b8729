"""Training input: conversations streamed from the store into batches of lanes.

Each of the B rows of a batch is a lane that walks one conversation exchange by exchange;
when its conversation ends, the next one starts in that lane with `reset` set, so the
model zeroes that row's state (and only that row's). Memory is bounded by the shuffle
pool, never by the corpus.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from chatbot.corpus.split import SPLITS, in_split
from chatbot.errors import ChatbotError
from chatbot.model.exchanges import Exchange, exchanges, pad_ids

__all__ = ["SPLITS", "in_split"]  # re-exported: the split's home is chatbot.corpus.split

@dataclass(frozen=True)
class Batch:
    """One step for every lane: ids (B, S) and (B, T), the reset mask (B,)."""

    source: np.ndarray
    target_in: np.ndarray
    target_out: np.ndarray
    reset: np.ndarray

    @property
    def tokens(self) -> int:
        """Real target tokens (padding excluded)."""
        return int(np.count_nonzero(self.target_out))


def conversations(store: Any, tokenizer: Any, split: str, valid_fraction: float,
                  max_len: int, split_by: str = "work",
                  reply_as: tuple[str, ...] = ()) -> Iterator[list[Exchange]]:
    """The exchanges of each conversation in the split, in store order; `split_by` says
    what the split keeps together (chatbot.corpus.split).

    With `reply_as`, only those speakers' turns are targets: the other exchanges keep
    their source and teacher-forced reply (the state runs through them) but have an
    empty `target_out`, so no loss, metric or count sees them; conversations where
    those speakers never reply are left out.
    """
    if reply_as:
        yield from _replying_as(store, tokenizer, split, valid_fraction, max_len, split_by,
                                frozenset(reply_as))
        return
    for key, texts in store.iter_turn_texts(split_by):
        if in_split(key, split, valid_fraction):
            found = exchanges(tokenizer.encode_batch(texts), max_len)
            if found:
                yield found


def _replying_as(store: Any, tokenizer: Any, split: str, valid_fraction: float, max_len: int,
                 split_by: str, names: frozenset[str]) -> Iterator[list[Exchange]]:
    for _, _, conversation in store.iter_conversations(split, valid_fraction, split_by):
        turns = conversation.turns
        found = exchanges(tokenizer.encode_batch([t.text for t in turns]), max_len)
        # Exchange k replies with turn k + 1.
        marked = [e if turns[k + 1].speaker in names else e._replace(target_out=[])
                  for k, e in enumerate(found)]
        if any(e.target_out for e in marked):
            yield marked


def check_speakers(store: Any, where: Any, names: tuple[str, ...]) -> None:
    """A ChatbotError naming each of `names` that replies nowhere in the corpus."""
    if not names:
        return
    marks = ", ".join("?" * len(names))
    found = {row[0] for row in store.db.execute(
        f"SELECT DISTINCT speaker FROM turns WHERE position > 0 AND speaker IN ({marks})",
        list(names)).fetchall()}
    missing = [n for n in names if n not in found]
    if missing:
        raise ChatbotError(f"{where}: no turns by {', '.join(map(repr, missing))} to learn "
                           "from (names must match exactly: `chatbot corpus speakers` lists "
                           "them)")


def targets(conversation: list[Exchange]) -> int:
    """Exchanges of a conversation that are targets (see `conversations`' reply_as)."""
    return sum(1 for e in conversation if e.target_out)


def shuffled(items: Iterator[list[Exchange]], pool: int, seed: int) -> Iterator[list[Exchange]]:
    """Items in a seeded random order drawn from a bounded pool (flat memory)."""
    rng = random.Random(seed)
    buffer: list[list[Exchange]] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= pool:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def _mean_length(conversation: list[Exchange]) -> float:
    return sum(len(e.source) + len(e.target_in) for e in conversation) / len(conversation)


def lanes(items: Iterator[list[Exchange]], batch_size: int, pool: int = 0) -> Iterator[Batch]:
    """Batches of B lanes; each lane walks conversations one exchange per step.

    A lane that needs a conversation takes, from a small pool, the one closest in length
    to the lanes still running, so the rows of a step pad to similar widths.
    """
    pool = pool or 4 * batch_size
    waiting: list[tuple[float, list[Exchange]]] = []  # (mean length, exchanges)
    current: list[list[Exchange] | None] = [None] * batch_size
    lengths = [0.0] * batch_size
    position = [0] * batch_size
    source = iter(items)
    exhausted = False
    while True:
        while not exhausted and len(waiting) < pool:
            item = next(source, None)
            if item is None:
                exhausted = True
            else:
                waiting.append((_mean_length(item), item))
        reset = np.zeros(batch_size, dtype=bool)
        running = [lengths[i] for i, c in enumerate(current) if c is not None]
        target = sum(running) / len(running) if running else None
        for lane in range(batch_size):
            lane_items = current[lane]
            if lane_items is not None and position[lane] < len(lane_items):
                continue
            current[lane] = None
            if waiting:
                pick = 0 if target is None else min(
                    range(len(waiting)), key=lambda i: abs(waiting[i][0] - target))
                lengths[lane], current[lane] = waiting.pop(pick)
                position[lane] = 0
            reset[lane] = True  # a new conversation, or an idle lane: zero its state
        if all(c is None for c in current):
            return
        rows = [c[position[i]] if c is not None else Exchange([], [], [])
                for i, c in enumerate(current)]
        for lane, c in enumerate(current):
            if c is not None:
                position[lane] += 1
        target_in = pad_ids([r.target_in for r in rows])
        target_out = pad_ids([r.target_out for r in rows])
        # With reply_as a step's targets may all be shorter than its fed replies: padded to
        # the fed width, or the loss would pair labels with the wrong decoder positions.
        target_out = np.pad(target_out, ((0, 0), (0, target_in.shape[1] - target_out.shape[1])))
        yield Batch(pad_ids([r.source for r in rows]), target_in, target_out, reset)


def dataset(make_batches: Callable[[], Iterator[Batch]], batch_size: int) -> Any:
    """A tf.data pipeline over the lanes: batches are built in a background thread while
    the previous step runs (prefetch), so the Python side overlaps the compiled step.

    `make_batches` is called inside the pipeline's thread: anything it opens (a store
    connection) must be its own.
    """
    import tensorflow as tf

    ids = tf.TensorSpec((batch_size, None), tf.int32)

    def generate():
        for b in make_batches():
            yield b.source, b.target_in, b.target_out, b.reset

    signature = (ids, ids, ids, tf.TensorSpec((batch_size,), tf.bool))
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
