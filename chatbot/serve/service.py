"""The service behind the HTTP routes: conversations, replies and their transcripts.

Two ways to hold a conversation:
- the OpenAI-style API is stateless for the client, who sends the whole history each
  time. The state comes from the cache (states.py), and the transcript from the
  conversation whose digest is the history before the new message: it continues that
  one (after a restart too: the digest is in the transcripts file), or a new one is
  started holding the history the client brought.
- native conversations live on the server under the transcript's id. Their turns are
  kept in a bounded LRU; an evicted conversation, or any after a restart, is read back
  from the transcripts file and its state rebuilt by replaying it.

Every turn is committed to the transcripts file before the reply goes out, on one
thread of its own (SQLite calls must not stall the event loop). Turns of one
conversation take turns (a lock each); different conversations run concurrently and
their replies are decoded together (batcher.py).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chatbot.chat.replies import Turn
from chatbot.decode.settings import DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.serve.engine import Engine, Made
from chatbot.serve.openai_api import ApiError, CompletionRequest
from chatbot.serve.states import digests, next_digest
from chatbot.transcripts.store import RATINGS, Origin, TranscriptStore

T = TypeVar("T")
SERVED_ORIGINS = ("api", "web")
TURN_KEYS = ("id", "position", "role", "text", "created_at", "latency_ms", "tokens", "rating")


@dataclass
class Held:
    """A native conversation as the server holds it."""

    id: int
    origin: str
    turns: list[Turn]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True)
class Exchange:
    """What a request to a conversation produced."""

    conversation_id: int
    user_turn_id: int
    reply_turn_ids: tuple[int, ...]
    made: Made
    seconds: float


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Service:
    """Replies and conversations over one model and one transcripts file."""

    def __init__(self, engine: Engine, store: TranscriptStore, settings: DecodeSettings, *,
                 model_path: Path, model_digest: str | None, max_conversations: int = 1024
                 ) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self.model_path = model_path
        self.model_digest = model_digest
        self.max_conversations = max(1, max_conversations)
        self._held: OrderedDict[int, Held] = OrderedDict()
        self._api_locks = KeyedLocks()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="serve-transcripts")
        self.replies = 0

    async def db(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call on the transcripts thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: function(*args, **kwargs))

    def close(self) -> None:
        self._db.shutdown(wait=True)

    def prompt_tokens(self, turns: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> int:
        """Tokens the model reads for a conversation (for `usage`)."""
        return sum(len(self.engine.responder.encode(text)) for _, text in turns)

    # The OpenAI-style API

    async def complete(self, request: CompletionRequest) -> Exchange:
        """Reply to a chat-completions request and record the exchange."""
        start = time.perf_counter()
        turns = list(request.turns)
        chain = digests(turns)
        # Requests with the same history take turns: the first continues the conversation,
        # and moves its digest on, so the next one starts a copy instead of interleaving.
        # (A first message continues nothing: those never wait for each other.)
        key = chain[-2] if len(turns) > 1 else f"new {id(request)}"
        async with self._api_locks.hold(key):
            conversation_id = None
            if len(turns) > 1:
                conversation_id = await self.db(self.store.find_by_digest, chain[-2], "api")
            if conversation_id is None:
                conversation_id = await self.db(self._start, "api")
                if len(turns) > 1:
                    await self.db(self.store.add_turns, conversation_id, turns[:-1])
            user_id = await self.db(self.store.add_turn, conversation_id, "user",
                                    turns[-1][1])
            made = await self.engine.reply(
                [Turn(role, text) for role, text in turns],  # type: ignore[arg-type]
                request.settings, request.n)
            seconds = time.perf_counter() - start
            best = made.choices[0]
            reply_id = await self.db(
                self.store.add_turn, conversation_id, "bot", best.text,
                latency_ms=round(seconds * 1000), tokens=best.tokens, settings=best.settings,
                digest=next_digest(chain[-1], "bot", best.text))
        self.replies += 1
        return Exchange(conversation_id, user_id, (reply_id,), made, seconds)

    def _start(self, origin: Origin) -> int:
        return self.store.start_conversation(str(self.model_path), self.model_digest,
                                             self.settings.to_dict(), origin=origin)

    # Native conversations

    async def create(self, origin: str = "api") -> dict[str, Any]:
        """A new conversation; its record (id, origin, turns: [])."""
        if origin not in SERVED_ORIGINS:
            raise ApiError(400, f"origin must be api or web, not {origin!r}", param="origin")
        conversation_id = await self.db(self._start, origin)  # type: ignore[arg-type]
        self._remember(Held(conversation_id, origin, []))
        return await self.get(conversation_id)

    async def get(self, conversation_id: int) -> dict[str, Any]:
        """The conversation's record and its turns as stored."""
        record = await self._record(conversation_id)
        rows = await self.db(self.store.turns, conversation_id)
        return {"id": record["id"], "origin": record["origin"], "name": record["name"],
                "started_at": record["started_at"],
                "turns": [{k: row[k] for k in TURN_KEYS} for row in rows]}

    async def turn(self, turn_id: int) -> dict[str, Any]:
        """One stored turn, as `get` lists them."""
        row = await self.db(self.store.turn, turn_id)
        return {k: row[k] for k in TURN_KEYS}

    async def message(self, conversation_id: int, text: str) -> Exchange:
        """Reply to the user's `text` in a native conversation."""
        text = text.strip()
        if not text:
            raise ApiError(400, "text is empty: say something", param="text")
        start = time.perf_counter()
        thread = await self._conversation(conversation_id)
        async with thread.lock:
            try:
                user_id = await self.db(self.store.add_turn, conversation_id, "user", text)
            except ChatbotError:  # deleted behind the server's back (chatbot transcripts)
                self._held.pop(conversation_id, None)
                raise ApiError(404, f"no conversation {conversation_id}",
                               code="conversation_not_found") from None
            thread.turns.append(Turn("user", text, turn_id=user_id))
            made = await self.engine.reply(thread.turns, self.settings)
            best = made.choices[0]
            seconds = time.perf_counter() - start
            reply_id = await self.db(self.store.add_turn, conversation_id, "bot", best.text,
                                     latency_ms=round(seconds * 1000), tokens=best.tokens,
                                     settings=best.settings)
            thread.turns.append(Turn("bot", best.text, best.ids, reply_id))
        self.replies += 1
        return Exchange(conversation_id, user_id, (reply_id,), made, seconds)

    async def reset(self, conversation_id: int) -> dict[str, Any]:
        """Start afresh: a new conversation (the old one stays in the transcripts)."""
        record = await self._record(conversation_id)
        fresh = await self.create(record["origin"])
        return {**fresh, "previous": conversation_id}

    async def rate(self, conversation_id: int, rating: Any, turn_id: Any = None) -> dict[str, Any]:
        """Rate a reply of this conversation (its last one unless `turn_id`)."""
        if rating is not None and rating not in RATINGS:
            raise ApiError(400, "rating must be good, bad or null", param="rating")
        if turn_id is not None and (isinstance(turn_id, bool) or not isinstance(turn_id, int)):
            raise ApiError(400, "turn_id must be an integer", param="turn_id")
        await self._record(conversation_id)
        if turn_id is None:
            rated = await self._store_call(self.store.rate, rating,
                                           conversation_id=conversation_id)
        else:
            rows = await self.db(self.store.turns, conversation_id)
            if not any(row["id"] == turn_id for row in rows):
                raise ApiError(404, f"conversation {conversation_id} has no turn {turn_id}",
                               param="turn_id")
            rated = await self._store_call(self.store.rate, rating, turn_id=turn_id)
        return {"turn_id": rated, "rating": rating}

    async def delete(self, conversation_id: int) -> None:
        """Remove a conversation and its turns from the transcripts."""
        await self._record(conversation_id)
        thread = self._held.pop(conversation_id, None)
        if thread is not None:
            async with thread.lock:
                await self.db(self.store.remove, conversation_id)
        else:
            await self.db(self.store.remove, conversation_id)

    # Plumbing

    async def _store_call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A store call whose ChatbotError is the client's mistake (400)."""
        try:
            return await self.db(function, *args, **kwargs)
        except ChatbotError as e:  # never the file's path to a client
            raise ApiError(400, str(e).replace(str(self.store.path), "the transcripts")
                           ) from None

    async def _record(self, conversation_id: int) -> dict[str, Any]:
        """The stored record of a conversation the service may show (api or web)."""
        try:
            record = await self.db(self.store.conversation, conversation_id)
        except ChatbotError:
            record = None
        # Terminal chats are the user's own: the service neither shows nor changes them.
        if record is None or record["origin"] not in SERVED_ORIGINS:
            raise ApiError(404, f"no conversation {conversation_id}",
                           code="conversation_not_found")
        return record

    async def _conversation(self, conversation_id: int) -> Held:
        thread = self._held.get(conversation_id)
        if thread is not None:
            self._held.move_to_end(conversation_id)
            return thread
        record = await self._record(conversation_id)
        rows = await self.db(self.store.turns, conversation_id)
        thread = self._held.get(conversation_id)  # loaded meanwhile by another request
        if thread is None:
            thread = Held(conversation_id, record["origin"],
                            [Turn(r["role"], r["text"], turn_id=r["id"]) for r in rows])
            self._remember(thread)
        return thread

    def _remember(self, thread: Held) -> None:
        self._held[thread.id] = thread
        while len(self._held) > self.max_conversations:
            # The least recently used one that no request is using.
            oldest = next((k for k, t in self._held.items() if not t.lock.locked()), None)
            if oldest is None:
                break
            del self._held[oldest]
