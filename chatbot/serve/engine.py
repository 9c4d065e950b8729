"""Replies for the service: a conversation's turns in, the reply (or n of them) out.

The state is rebuilt along training's path (chatbot/chat/replies.py) from the longest
prefix of the conversation whose state is cached (states.py), one batched teacher-forced
exchange per turn since, then the reply is decoded (batcher.py). Every state computed on
the way, and each reply's state under the digest of the conversation that ends with it,
goes into the cache, so the next request of the same conversation costs one exchange.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatbot.chat.replies import Turn, source_ids, target_ids
from chatbot.decode.settings import DecodeSettings
from chatbot.serve.batcher import Batcher
from chatbot.serve.states import Cached, StateCache, digests, next_digest

if TYPE_CHECKING:
    from chatbot.decode.responder import ReplyInfo

_SEED_SPACE = 2**63


@dataclass(frozen=True)
class Choice:
    """One reply to the conversation's last turn."""

    text: str
    ids: tuple[int, ...]
    info: ReplyInfo
    settings: dict[str, Any]  # the settings that made it, as stored with the turn
    truncated: bool  # stopped at max_len, not by the end token
    state: Any  # F after the reply: what the next exchange starts from

    @property
    def tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Made:
    choices: tuple[Choice, ...]


class Engine:
    """Makes replies through a Batcher, caching states in a StateCache."""

    def __init__(self, batcher: Batcher, cache: StateCache) -> None:
        self.batcher = batcher
        self.cache = cache
        self.responder = batcher.responder

    async def reply(self, turns: Sequence[Turn], settings: DecodeSettings, n: int = 1) -> Made:
        """`n` replies to the last turn of `turns` (the user's), best first for beam."""
        chain = digests([(t.role, t.text) for t in turns])
        first, cached = self.cache.latest(chain[:len(turns) + 1])
        state = None if cached is None else cached.state
        r = self.responder
        # The first turn folded from keeps the ids the bot made it with, when it did.
        known = list(turns)
        if cached is not None and cached.ids is not None:
            known[first] = Turn(known[first].role, known[first].text, cached.ids)
        # All but the newest exchange on their own (a cache miss); the newest goes with the
        # reply, in the same batch.
        for k in range(first, len(turns) - 2):
            state = await self.batcher.observe(source_ids(r, known[k]),
                                               target_ids(r, known[k + 1]), state)
            self.cache.put(chain[k + 2], Cached(state))
        before = None
        if first < len(turns) - 1:  # an exchange since the cached state
            before = (source_ids(r, known[-2]), target_ids(r, known[-1]))
        source = source_ids(r, known[-1])
        choices, start = await self._choose(source, state, settings, n, before)
        if before is not None:
            self.cache.put(chain[-1], Cached(start))
        for choice in choices:
            # Each choice under its own digest: the client continues with whichever it keeps.
            self.cache.put(next_digest(chain[-1], "bot", choice.text),
                           Cached(choice.state, choice.ids))
        return Made(tuple(choices))

    async def _choose(self, source: list[int], state: Any, settings: DecodeSettings,
                      n: int, before: Any) -> tuple[list[Choice], Any]:
        """The choices, and the state the reply started from (after `before`)."""
        if settings.method == "sample":
            if n > 1 and before is not None:  # fold once, then the n samples from there
                state = await self.batcher.observe(*before, state)
                before = None
            if before is not None:
                text, new_state, info, state = await self.batcher.reply(source, state,
                                                                        settings, before)
                return [self._choice(text, info.ids, info, settings, new_state)], state
            return await self._samples(source, state, settings, n), state
        if n > 1:
            # The n best of one beam search at least n wide.
            wide = settings.replace(method="beam", beam_size=max(n, settings.beam_size))
            _, _, info, state = await self.batcher.reply(source, state, wide, before)
            return [self._choice(c.text, c.ids, info, wide, c.state)
                    for c in info.candidates[:n]], state
        text, _, info, state = await self.batcher.reply(source, state, settings, before)
        return [self._choice(text, info.ids, info, settings, info.candidates[0].state)], state

    async def _samples(self, source: list[int], state: Any, settings: DecodeSettings,
                       n: int) -> list[Choice]:
        if settings.seed is None:
            # Unseeded samples of every request share calls (one seed per call, drawn in
            # the search; each row draws its own numbers), so they are not replayable.
            used = [settings] * n
        else:
            # A seed makes a request's replies reproducible: n seeds in a row.
            used = [settings.replace(seed=(settings.seed + i) % _SEED_SPACE) for i in range(n)]
        made = await asyncio.gather(*(self.batcher.reply(source, state, s) for s in used))
        return [self._choice(text, info.ids, info, s, new_state)
                for (text, new_state, info, _), s in zip(made, used, strict=True)]

    def _choice(self, text: str, ids: Sequence[int], info: ReplyInfo, settings: DecodeSettings,
                state: Any) -> Choice:
        ids = tuple(ids)
        return Choice(text, ids, info, settings.to_dict(), len(ids) >= settings.max_len, state)
