"""Batched model calls for a service: concurrent requests share one compiled call.

Requests on the event loop submit work for one conversation row each: `observe` (a
teacher-forced exchange whose reply is known: the state moves past it) or `reply`
(decode a reply from a state with some settings), the reply optionally preceded by one
exchange to observe first (what a conversation's next turn needs: one item, so all the
conversations waiting are in the same batch, not split between an observe call and a
reply call). One collector task takes the first waiting item, waits at most `wait_s` for
company (or until `max_batch` items are there), then runs the items as few calls as
possible on the model's own thread: every observe together, then replies grouped by
their settings (one compiled search runs one kind of settings). While a call runs, new
items queue, so under load batches fill by themselves and the wait only matters when
the service is quiet.

The model runs on one thread: a Keras model and its traced functions are not meant to
be called from several threads at once, and one thread keeps replies reproducible.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chatbot.decode.settings import DecodeSettings

if TYPE_CHECKING:
    from chatbot.decode.responder import ReplyInfo, Responder, State


@dataclass
class _Item:
    kind: str  # "observe" or "reply"
    source: list[int]
    state: State | None
    future: asyncio.Future[Any]
    target: list[int] = field(default_factory=list)  # observe: [bos] + the known reply
    settings: DecodeSettings | None = None  # reply only
    # reply only: an exchange (source, [bos] + reply) to observe from `state` first
    before: tuple[list[int], list[int]] | None = None


@dataclass
class BatchStats:
    """What the batcher did: calls made and rows they held, by kind."""

    observe_calls: int = 0
    observe_rows: int = 0
    reply_calls: int = 0
    reply_rows: int = 0
    largest_batch: int = 0
    model_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Batcher:
    """Collects model work from many coroutines into batched calls on one thread."""

    def __init__(self, responder: Responder, max_batch: int = 32, wait_s: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.responder = responder
        self.max_batch = max_batch
        self.wait_s = max(0.0, wait_s)
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="serve-model")

    # What requests call

    async def observe(self, source: Sequence[int], target_in: Sequence[int],
                      state: State | None) -> State:
        """The state after an exchange whose reply is known (Responder.observe_ids)."""
        return await self._submit(_Item("observe", list(source), state, self._future(),
                                        target=list(target_in)))

    async def reply(self, source: Sequence[int], state: State | None,
                    settings: DecodeSettings,
                    before: tuple[Sequence[int], Sequence[int]] | None = None
                    ) -> tuple[str, State, ReplyInfo, State | None]:
        """A reply decoded from `state` (Responder.reply_ids for one row); with `before`
        (source ids, [bos] + reply ids), from the state after observing that exchange
        first. Returns the reply, its state, its info, and the state it started from."""
        first = None if before is None else (list(before[0]), list(before[1]))
        return await self._submit(_Item("reply", list(source), state, self._future(),
                                        settings=settings, before=first))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._thread.shutdown(wait=True, cancel_futures=True)

    # The collector

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, item: _Item) -> Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._collect())
        await self._queue.put(item)
        return await item.future

    async def _collect(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            deadline = loop.time() + self.wait_s
            while len(items) < self.max_batch:
                try:
                    items.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self._queue.get(), left))
                except TimeoutError:
                    break
            for group in _groups(items, self.max_batch):
                live = [item for item in group if not item.future.done()]  # not cancelled
                if not live:
                    continue
                try:
                    results = await loop.run_in_executor(self._thread, self._call, live)
                except Exception as e:  # the requests fail; the service goes on
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(e)
                    continue
                for item, result in zip(live, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)

    def _call(self, items: list[_Item]) -> list[Any]:
        """One batched model call (on the model's thread)."""
        start = time.perf_counter()
        r = self.responder
        if items[0].kind == "observe":
            out: list[Any] = r.observe_ids([i.source for i in items], [i.target for i in items],
                                           [i.state for i in items])
            self.stats.observe_calls += 1
            self.stats.observe_rows += len(items)
        else:
            starts = [i.state for i in items]
            folding = [n for n, i in enumerate(items) if i.before is not None]
            if folding:
                folded = r.observe_ids([items[n].before[0] for n in folding],  # type: ignore[index]
                                       [items[n].before[1] for n in folding],  # type: ignore[index]
                                       [starts[n] for n in folding])
                for n, state in zip(folding, folded, strict=True):
                    starts[n] = state
                self.stats.observe_calls += 1
                self.stats.observe_rows += len(folding)
            made = r.reply_ids([i.source for i in items], starts, items[0].settings)
            out = [(*reply, start) for reply, start in zip(made, starts, strict=True)]
            self.stats.reply_calls += 1
            self.stats.reply_rows += len(items)
        self.stats.largest_batch = max(self.stats.largest_batch, len(items))
        self.stats.model_seconds += time.perf_counter() - start
        return out


def _groups(items: list[_Item], size: int) -> list[list[_Item]]:
    """Items that can share one call, at most `size` each, in order of first arrival."""
    groups: dict[Any, list[_Item]] = {}
    for item in items:
        key: tuple[Any, ...] = ("observe",)
        if item.kind == "reply":
            key = ("reply", item.settings)
            s = item.settings
            if s is not None and s.method == "sample" and s.seed is not None:
                # A seeded sample decodes alone: its random numbers then do not depend on
                # which other rows shared the call, so the seed replays it.
                key = ("reply", s, id(item))
        groups.setdefault(key, []).append(item)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]
