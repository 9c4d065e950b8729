"""A conversation's turns into training exchanges: every turn after the first is a target.

Turns t0, t1, ..., tn give the exchanges (t0 -> t1), (t1 -> t2), ..., (tn-1 -> tn) in
order, with the state carried from each to the next. So the model learns both sides of
the conversation in one pass: each speaker's turns are replies in turn, and every turn
but the first is a target exactly once. (The alternative, two passes with the roles
swapped, sees each turn twice as often as input and breaks the state's chain at each
speaker's silences.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from chatbot.text.tokenizer import BOS_ID, EOS_ID


class Exchange(NamedTuple):
    """Token ids of one exchange: the turn read, the reply fed in and the reply to predict."""

    source: list[int]
    target_in: list[int]  # bos + reply
    target_out: list[int]  # reply + eos


def exchanges(turns: Sequence[Sequence[int]], max_len: int | None = None,
              reverse: bool = False) -> list[Exchange]:
    """The exchanges of one conversation, given its turns as token ids.

    `max_len` cuts long turns: the source keeps its end (nearest the reply), the reply its
    start, and a cut reply is predicted up to the cut with no eos: it was not finished.
    `reverse`: each pair read backwards, (t1 -> t0), (t2 -> t1), ...: what a reverse
    model (p(turn | reply), `chatbot train --reverse`) learns; exchange k still pairs
    turns k and k + 1.
    """
    result = []
    pairs = zip(turns[1:], turns, strict=False) if reverse else zip(turns, turns[1:],
                                                                     strict=False)
    for previous, reply in pairs:
        source = list(previous[-max_len:] if max_len else previous)
        if max_len is not None and len(reply) >= max_len:
            result.append(Exchange(source, [BOS_ID, *reply[: max_len - 1]], list(reply[:max_len])))
        else:
            result.append(Exchange(source, [BOS_ID, *reply], [*reply, EOS_ID]))
    return result


def pad_ids(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Rows of ids right-padded with zeros (PAD) into (N, width), width at least 1."""
    out = np.zeros((len(rows), max(1, max((len(r) for r in rows), default=0))), np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out
