"""Replies from a model directory: text and conversation state in, reply and new state out.

    responder = Responder("models/mine", DecodeSettings(method="beam"))
    state = responder.zero_state()
    reply, state, info = responder.reply("hello there", state)
    reply, state, info = responder.reply("how are you?", state)  # remembers the first turn

A state is a list of numpy arrays, (1, hidden) each, in the model's layout: for every
decoder layer [h, c] (LSTM) or [h] (GRU). `zero_state()` starts a conversation; passing
it (or None) again resets one. The state a reply returns is the one training carries:
the decoder's state after reading the user's turn and then [bos] + the reply.

With `settings.rerank` on, the candidates of a wider search are rescored
(chatbot/decode/rerank.py) and the best of them is the reply; "mmi" needs
`Responder(..., reverse_model=DIR)`, a model trained with `chatbot train --reverse`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.decode.rerank import Reranker, load_reverse
from chatbot.decode.search import Hypothesis, Search
from chatbot.decode.settings import DecodeSettings, for_model
from chatbot.errors import ChatbotError
from chatbot.model import directory
from chatbot.model.directory import ModelDirectory
from chatbot.model.exchanges import pad_ids
from chatbot.text.tokenizer import BOS_ID

State = list[np.ndarray]


@dataclass(frozen=True)
class Candidate:
    """One finished hypothesis: beam search returns several, best first."""

    text: str
    ids: tuple[int, ...]
    score: float  # log probability / GNMT length penalty (see DecodeSettings)
    state: State
    rerank: float | None = None  # its rerank score, when the settings rerank


@dataclass(frozen=True)
class ReplyInfo:
    """How a reply was made."""

    ids: tuple[int, ...]  # the reply's token ids (no bos, no eos)
    tokens: int  # reply tokens generated (the end token not counted)
    seconds: float  # wall time of the decoding call (shared by a batch's replies)
    score: float  # the search's score, or the rerank score when reranked
    method: str
    candidates: tuple[Candidate, ...]  # every finished hypothesis, best first (reranked)

    @property
    def latency_ms(self) -> float:
        return self.seconds * 1000.0


class Responder:
    """Decodes replies with a loaded model; one compiled search per kind of settings."""

    def __init__(self, model: Path | str | ModelDirectory,
                 settings: DecodeSettings | None = None, jit_compile: bool = False,
                 reverse_model: Path | str | ModelDirectory | None = None) -> None:
        self.directory = model if isinstance(model, ModelDirectory) else directory.load(model)
        self.model = self.directory.model
        self.tokenizer = self.directory.tokenizer
        # Unless told otherwise, the decoding the model recommends (settings.for_model).
        self.settings = settings or for_model(self.directory.metadata)
        self.search = Search(self.model, jit_compile=jit_compile)
        # p(turn | reply) for rerank "mmi" (checked: a reverse model, the same tokenizer).
        self.reverse = (None if reverse_model is None
                        else load_reverse(self.directory, reverse_model))
        self.reranker = Reranker(self.model, self.reverse)
        self._advance: Any = None  # the compiled teacher-forced exchange, built on first use
        c = self.directory.config
        self._shape = (1, c.hidden_dim)
        self._count = c.depths[1] * c.state_size
        # Turns are cut as in training (exchanges.py): a turn read keeps its end, a known
        # reply its start.
        options = self.directory.metadata.get("options")
        options = options if isinstance(options, dict) else {}
        try:
            self.max_source_len: int | None = int(options.get("max_len"))
        except (TypeError, ValueError):
            self.max_source_len = None

    def zero_state(self) -> State:
        """The state at the start of a conversation."""
        return [np.zeros(self._shape, np.float32) for _ in range(self._count)]

    def encode(self, text: str) -> list[int]:
        """The ids the model reads for a user's turn."""
        ids = self.tokenizer.encode(text)
        return ids[-self.max_source_len:] if self.max_source_len else ids

    def target_in(self, text: str) -> list[int]:
        """[bos] + the ids of `text` as a known reply, cut as training cuts replies."""
        ids = self.tokenizer.encode(text)
        if self.max_source_len and len(ids) >= self.max_source_len:
            ids = ids[:self.max_source_len - 1]
        return [BOS_ID, *ids]

    def reply(self, text: str, state: State | None = None,
              settings: DecodeSettings | None = None) -> tuple[str, State, ReplyInfo]:
        """The reply to `text` in the conversation whose state is `state` (None: a new
        one), the conversation's state after it, and how it was made."""
        return self.reply_batch([text], [state], settings)[0]

    def reply_batch(self, texts: Sequence[str], states: Sequence[State | None] | None = None,
                    settings: DecodeSettings | None = None
                    ) -> list[tuple[str, State, ReplyInfo]]:
        """`reply` for many conversations at once, decoded together."""
        return self.reply_ids([self.encode(t) for t in texts], states, settings)

    def reply_ids(self, sources: Sequence[Sequence[int]],
                  states: Sequence[State | None] | None = None,
                  settings: DecodeSettings | None = None
                  ) -> list[tuple[str, State, ReplyInfo]]:
        """`reply_batch` for turns already as token ids."""
        settings = settings or self.settings
        if states is None:
            states = [None] * len(sources)
        if len(states) != len(sources):
            raise ChatbotError(f"{len(sources)} turns but {len(states)} states")
        if not sources:
            return []
        stacked = self._stack(states)
        if settings.rerank != "off":
            return self._reranked([list(s) for s in sources], stacked, settings)
        start = time.perf_counter()
        found = self.search.run([list(s) for s in sources], list(stacked), settings)
        seconds = time.perf_counter() - start
        return [self._result(hypotheses, seconds, settings) for hypotheses in found]

    def _reranked(self, sources: list[list[int]], stacked: tuple[np.ndarray, ...],
                  settings: DecodeSettings) -> list[tuple[str, State, ReplyInfo]]:
        """The rerank_n candidates of each turn (a beam that wide, or that many samples),
        rescored together in one pass (two with a reverse model); best first."""
        self.reranker.require(settings.rerank)  # before the search, not after it
        n = settings.rerank_n
        start = time.perf_counter()
        if settings.method == "sample":
            # n rows per turn in one call: each row draws its own sample.
            rows = np.repeat(np.arange(len(sources)), n)
            drawn = self.search.run([sources[i] for i in rows], [s[rows] for s in stacked],
                                    settings)
            found = [[h for row in drawn[i * n:(i + 1) * n] for h in row]
                     for i in range(len(sources))]
        else:
            found = self.search.run(sources, list(stacked),
                                    settings.replace(method="beam", beam_size=n))
        found = [_distinct(hs) for hs in found]  # samples may repeat a reply
        owner = np.array([i for i, hs in enumerate(found) for _ in hs])
        scores = self.reranker.scores(
            settings.rerank, settings.rerank_lambda, settings.rerank_gamma,
            [sources[i] for i in owner], [s[owner] for s in stacked],
            [h.ids for hs in found for h in hs])
        seconds = time.perf_counter() - start
        results, at = [], 0
        for hypotheses in found:
            mine = scores[at:at + len(hypotheses)]
            at += len(hypotheses)
            order = np.argsort(-mine, kind="stable")
            results.append(self._result([hypotheses[k] for k in order], seconds, settings,
                                        [float(mine[k]) for k in order]))
        return results

    def observe(self, turn: str, reply: str, state: State | None = None) -> State:
        """The state after an exchange whose reply is known: the encoder reads `turn`
        from `state`, the decoder consumes [bos] + `reply`. Training makes an exchange of
        every pair of turns, so a chat that wants the training's exact path observes
        (its last reply -> the user's new turn) before replying (see Conversation)."""
        return self.observe_ids([self.encode(turn)], [self.target_in(reply)], [state])[0]

    def observe_ids(self, sources: Sequence[Sequence[int]],
                    targets_in: Sequence[Sequence[int]],
                    states: Sequence[State | None]) -> list[State]:
        """`observe` for a batch, as token ids (`targets_in` start with bos)."""
        if self._advance is None:
            self._advance = _compile_exchange(self.model, self._count, self._shape[1])
        out = self._advance(pad_ids(sources), pad_ids(targets_in), self._stack(states))
        return [[np.asarray(s[n:n + 1]) for s in out] for n in range(len(sources))]

    def _result(self, hypotheses: list[Hypothesis], seconds: float,
                settings: DecodeSettings, reranked: list[float] | None = None
                ) -> tuple[str, State, ReplyInfo]:
        marks = reranked or [None] * len(hypotheses)
        candidates = tuple(Candidate(self.tokenizer.decode(h.ids), tuple(h.ids), h.score,
                                     h.state, mark)
                           for h, mark in zip(hypotheses, marks, strict=True))
        best = candidates[0]
        score = best.score if best.rerank is None else best.rerank
        info = ReplyInfo(best.ids, len(best.ids), seconds, score, settings.method,
                         candidates)
        return best.text, best.state, info

    def _stack(self, states: Sequence[State | None]) -> tuple[np.ndarray, ...]:
        """One conversation per row: (N, H) arrays in the model's state layout."""
        rows = [self._check(s) for s in states]
        return tuple(np.concatenate([row[i] for row in rows]) for i in range(self._count))

    def _check(self, state: Any) -> State:
        if state is None:
            return self.zero_state()
        arrays = [np.asarray(s, np.float32) for s in state]
        if len(arrays) != self._count or any(a.shape != self._shape for a in arrays):
            raise ChatbotError(
                f"this conversation state does not fit the model (it needs {self._count} "
                f"arrays of shape {self._shape}); start a new conversation")
        return arrays


def _distinct(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    """Each reply once, in order (the first of equal ones kept)."""
    seen: set[tuple[int, ...]] = set()
    kept = []
    for h in hypotheses:
        if tuple(h.ids) not in seen:
            seen.add(tuple(h.ids))
            kept.append(h)
    return kept


def _compile_exchange(model: Any, count: int, hidden: int) -> Any:
    """model(...)["state"] as one compiled function (no retrace for new lengths)."""
    import tensorflow as tf

    ids = tf.TensorSpec((None, None), tf.int32)
    states = tuple(tf.TensorSpec((None, hidden), tf.float32) for _ in range(count))

    @tf.function(input_signature=(ids, ids, states))
    def exchange(source, target_in, state):
        return model({"source": source, "target_in": target_in, "state": list(state)})["state"]

    return exchange
