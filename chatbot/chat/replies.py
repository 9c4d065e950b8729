"""One reply's computation, free of side effects so it can run on a worker thread.

A conversation is a list of turns t0, t1, ... whoever said them. Training reads it as
the exchanges (t0 -> t1), (t1 -> t2), ... with the state carried through, so the state
a turn t_k is read with is F_k: F_0 is the zero state, and F_k is the state after the
exchange (t_{k-1} -> t_k). A reply to t_k is decoded from F_k; the state it returns is
F_{k+1}. A `ReplyJob` brings a cached F_j forward over the turns since (one teacher-forced
exchange each), then decodes; the session caches what it computed. Turns that were never
answered (a cancelled reply) or that come from a stored transcript are folded the same
way, so a chat resumed from its transcript continues from the state it had.

/retry picks a different reply to the same turn from the same state F_k:
- greedy and beam: the next hypothesis of a beam search of at least RETRY_BEAM (one
  compiled search whatever the retry count), skipping every reply already given;
- sample, or when the beam has nothing new left: a new sample with a fresh seed (with a
  fixed --seed, seed + retry number, so a retried chat stays reproducible).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from chatbot.decode.settings import DecodeSettings
from chatbot.text.tokenizer import BOS_ID

if TYPE_CHECKING:
    from chatbot.decode.responder import ReplyInfo, Responder

State = list[Any]  # numpy arrays, (1, hidden) each, in the model's layout
RETRY_BEAM = 8
RETRY_DRAWS = 4  # samples drawn at most, looking for a reply not given yet
_SEED_SPACE = 2**63


@dataclass(frozen=True)
class Turn:
    """One turn of the conversation as the session knows it."""

    role: Literal["user", "bot"]
    text: str
    # A live reply's own token ids: decoding and encoding again need not give them back.
    ids: tuple[int, ...] | None = None
    turn_id: int | None = None  # its row in the transcripts store


@dataclass(frozen=True)
class ReplyJob:
    """What to compute: bring F_first forward over `turns`, then reply to the last one."""

    base: State | None  # F_first (None: the zero state)
    turns: tuple[Turn, ...]  # t_first .. t_k; each consecutive pair is an exchange to fold
    settings: DecodeSettings
    retry: int = 0  # 0: the first reply to t_k; n: its n-th retry
    avoid: frozenset[str] = frozenset()  # replies already given to t_k (retry only)
    reply: bool = True  # False: only fold (to read the state)


@dataclass(frozen=True)
class Made:
    """What a job computed."""

    folded: tuple[State, ...]  # F_{first+1} .. F_k
    seconds: float  # wall time of the whole job (folding and decoding)
    text: str = ""
    ids: tuple[int, ...] = ()
    state: State | None = None  # F_{k+1}, the state after the reply
    info: ReplyInfo | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # as stored with the reply


def source_ids(responder: Responder, turn: Turn) -> list[int]:
    """The ids the encoder reads for a turn, cut as training cuts them (keeping the end)."""
    if turn.ids is None:
        return responder.encode(turn.text)
    ids = list(turn.ids)
    limit = responder.max_source_len
    return ids[-limit:] if limit else ids


def target_ids(responder: Responder, turn: Turn) -> list[int]:
    """[bos] + the ids the decoder consumes for a turn read as a known reply."""
    if turn.ids is None:
        return responder.target_in(turn.text)
    return [BOS_ID, *turn.ids]


def run(job: ReplyJob, responder: Responder) -> Made:
    """Compute a job (safe on a worker thread: nothing outside the job is touched)."""
    start = time.perf_counter()
    state = job.base
    folded: list[State] = []
    for before, turn in zip(job.turns, job.turns[1:], strict=False):
        state = responder.observe_ids([source_ids(responder, before)],
                                      [target_ids(responder, turn)], [state])[0]
        folded.append(state)
    if not job.reply:
        return Made(tuple(folded), time.perf_counter() - start)
    source = source_ids(responder, job.turns[-1])
    text, ids, new_state, info, used = _choose(job, responder, source, state)
    return Made(tuple(folded), time.perf_counter() - start, text, ids, new_state, info, used)


def _choose(job: ReplyJob, responder: Responder, source: Sequence[int], state: State | None
            ) -> tuple[str, tuple[int, ...], State, ReplyInfo, dict[str, Any]]:
    s = job.settings
    if job.retry == 0:
        if s.method == "sample" and s.seed is None:
            # Draw the seed here, not in the search, so the stored settings replay the reply.
            s = s.replace(seed=random.randrange(_SEED_SPACE))
        text, new_state, info = responder.reply_ids([source], [state], s)[0]
        return text, info.ids, new_state, info, s.to_dict()
    mark = {"retry": job.retry}
    if s.method != "sample":
        wide = s.replace(method="beam", beam_size=max(s.beam_size, RETRY_BEAM))
        _, _, info = responder.reply_ids([source], [state], wide)[0]
        for number, candidate in enumerate(info.candidates):
            if candidate.text not in job.avoid:
                return (candidate.text, candidate.ids, candidate.state, info,
                        {**wide.to_dict(), **mark, "candidate": number})
    sample = s.replace(method="sample")
    for draw in range(RETRY_DRAWS):
        if s.method == "sample" and s.seed is not None:
            seed = (s.seed + job.retry * RETRY_DRAWS + draw) % _SEED_SPACE
        else:
            seed = random.randrange(_SEED_SPACE)
        used = sample.replace(seed=seed)
        text, new_state, info = responder.reply_ids([source], [state], used)[0]
        if text not in job.avoid or draw == RETRY_DRAWS - 1:
            return text, info.ids, new_state, info, {**used.to_dict(), **mark}
    raise AssertionError("unreachable")
