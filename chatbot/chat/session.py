"""The chat engine: one conversation with a model, kept in the transcripts store.

Independent of any terminal, so the prompt_toolkit REPL, the pipe mode and the tests all
drive the same object. A turn goes in three steps, so that a front end can run the slow
middle one on a worker thread and abandon it (Ctrl-C):

    pending = chat.begin_reply(text)    # the user's turn is committed to the store now
    made = pending.run(chat.responder)  # the model works; nothing else is touched
    reply = chat.complete(pending, made)  # the reply is committed and becomes the state

`say(text)` does all three. A reply abandoned between the steps leaves the user's turn
stored and unanswered; the next reply folds it into the state (see replies.py), exactly
as training would read that transcript. Conversations are recorded lazily: the row is
written with the first turn, so opening and leaving a chat leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.chat import replies
from chatbot.chat.replies import Made, ReplyJob, State, Turn
from chatbot.decode.settings import DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.transcripts.store import RATINGS, TranscriptStore

if TYPE_CHECKING:
    from chatbot.decode.responder import Responder

# Short names for /set, besides every DecodeSettings field (dashes or underscores).
SET_ALIASES = {"decode": "method", "beam": "beam_size", "temp": "temperature"}
SET_KEYS = ("decode", "beam", "temperature", "top_k", "top_p", "rerank")  # /help shows


class ModelUnavailable(ChatbotError):
    """The model could not be loaded: the chat cannot go on."""


@dataclass(frozen=True)
class Reply:
    """A reply as shown and stored."""

    text: str
    latency_ms: int
    tokens: int
    settings: dict[str, Any]  # the decode settings that made it (stored with it)
    retry: int = 0  # 0: the first reply to its turn; n: the n-th /retry
    score: float | None = None


@dataclass(frozen=True)
class Pending:
    """A reply under way: the job to run, and where its result belongs."""

    job: ReplyJob
    epoch: int  # the session's epoch when it began: a reset in between makes it stale
    first: int  # index of the turn whose cached state the job starts from
    source: int  # index of the turn being replied to

    def run(self, responder: Responder) -> Made:
        """The slow part; safe on a worker thread."""
        return replies.run(self.job, responder)


class ChatSession:
    """A chat with one model; every turn is committed to `store` as it happens.

    `responder` may be a callable that returns it (and may block or raise
    ModelUnavailable): the model can load in the background while the prompt is up.
    `reverse_model` names the reverse model the responder reranks with (rerank mmi).
    """

    def __init__(self, responder: Responder | Callable[[], Responder], store: TranscriptStore,
                 settings: DecodeSettings | None = None, *, model_path: Path | str,
                 model_digest: str | Callable[[], str] | None = None,
                 model_name: str | None = None, reverse_model: Path | str | None = None
                 ) -> None:
        self._responder = responder
        self.reverse_model = None if reverse_model is None else Path(reverse_model)
        self.store = store
        self.settings = settings or DecodeSettings()
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.name
        self._digest = model_digest
        self.conversation_id: int | None = None
        self.turns: list[Turn] = []
        self._states: dict[int, State] = {}  # F_k by turn index (see replies.py)
        self._given: list[str] = []  # replies the last turn has had (for /retry)
        self._retries = 0
        self._epoch = 0

    # The model

    @property
    def responder(self) -> Responder:
        """The loaded model (waits for a background load to finish)."""
        if not hasattr(self._responder, "reply_ids"):  # still the loader
            self._responder = self._responder()
        return self._responder  # type: ignore[return-value]

    def model_digest(self) -> str | None:
        if callable(self._digest):
            self._digest = self._digest()
        return self._digest

    # Turns

    def say(self, text: str) -> Reply:
        """Store the user's turn, reply, store the reply; the state moves past both."""
        pending = self.begin_reply(text)
        return self.complete(pending, pending.run(self.responder))

    def begin_reply(self, text: str) -> Pending:
        """Commit the user's turn and return the reply's job (not run yet)."""
        text = text.strip()
        if not text:
            raise ChatbotError("nothing to say: the turn is empty")
        conversation_id = self._ensure_conversation()
        turn_id = self.store.add_turn(conversation_id, "user", text)
        self.turns.append(Turn("user", text, turn_id=turn_id))
        return self._plan(len(self.turns) - 1)

    def begin_retry(self) -> Pending:
        """The job for a different reply to the last turn answered (see replies.py)."""
        if len(self.turns) < 2 or self.turns[-1].role != "bot":
            raise ChatbotError("nothing to retry: the conversation does not end with a reply")
        avoid = frozenset({*self._given, self.turns[-1].text})
        return self._plan(len(self.turns) - 2, retry=self._retries + 1, avoid=avoid)

    def complete(self, pending: Pending, made: Made) -> Reply:
        """Commit a finished job's reply: to the store, then to the state."""
        if pending.epoch != self._epoch or self.conversation_id is None:
            raise ChatbotError("that reply belongs to a conversation that was reset")
        retry = pending.job.retry
        # A reply answers the last turn; a retry replaces the reply after it.
        if pending.source != len(self.turns) - (2 if retry else 1):
            raise ChatbotError("the conversation moved on since that reply was begun")
        for offset, state in enumerate(made.folded, start=pending.first + 1):
            self._states[offset] = state
        stored = dict(latency_ms=round(made.seconds * 1000), tokens=len(made.ids),
                      settings=made.settings)
        if retry:
            turn_id = self.store.replace_last_bot_turn(self.conversation_id, made.text,
                                                       **stored)
            self.turns[-1] = Turn("bot", made.text, made.ids, turn_id)
            self._given.append(made.text)
        else:
            turn_id = self.store.add_turn(self.conversation_id, "bot", made.text, **stored)
            self.turns.append(Turn("bot", made.text, made.ids, turn_id))
            self._given = [made.text]
        self._retries = retry
        self._states[pending.source + 1] = made.state  # type: ignore[assignment]
        # States past the new reply belonged to the replaced one.
        for index in [k for k in self._states if k > pending.source + 1]:
            del self._states[index]
        return Reply(made.text, stored["latency_ms"], stored["tokens"], made.settings, retry,
                     None if made.info is None else made.info.score)

    def _plan(self, source: int, retry: int = 0, avoid: frozenset[str] = frozenset(),
              reply: bool = True) -> Pending:
        """A job starting from the latest cached state at or before turn `source`."""
        first = max((k for k in self._states if k <= source), default=0)
        job = ReplyJob(self._states.get(first), tuple(self.turns[first:source + 1]),
                       self.settings, retry, avoid, reply)
        return Pending(job, self._epoch, first, source)

    def state(self) -> State:
        """The conversation's state now: F of its last turn (zeros before any turn)."""
        if not self.turns:
            return self.responder.zero_state()
        last = len(self.turns) - 1
        if last not in self._states:
            pending = self._plan(last, reply=False)
            made = pending.run(self.responder)
            for index, state in enumerate(made.folded, start=pending.first + 1):
                self._states[index] = state
        return self._states.get(last) or self.responder.zero_state()

    # Conversations

    def _ensure_conversation(self) -> int:
        if self.conversation_id is None:
            self.conversation_id = self.store.start_conversation(
                str(self.model_path), self.model_digest(), self.settings.to_dict())
        return self.conversation_id

    def reset(self) -> None:
        """Forget the context: the next turn starts a new conversation, from zeros."""
        self.conversation_id = None
        self.turns = []
        self._states = {}
        self._given = []
        self._retries = 0
        self._epoch += 1  # a reply still under way for the old conversation is dropped

    def resume(self, conversation_id: int) -> dict[str, Any]:
        """Continue a stored conversation: its turns become the context (folded through
        the model when the next reply is made). Returns its record from the store."""
        record = self.store.conversation(conversation_id)
        rows = self.store.turns(conversation_id)
        self.reset()
        self.conversation_id = conversation_id
        self.turns = [Turn(row["role"], row["text"], turn_id=row["id"]) for row in rows]
        return record

    @property
    def turn_number(self) -> int:
        """The number the user's next turn will have (1 for a new conversation)."""
        return sum(turn.role == "user" for turn in self.turns) + 1

    def history(self) -> list[dict[str, Any]]:
        """The current conversation's stored turns (see TranscriptStore.turns)."""
        if self.conversation_id is None:
            return []
        return self.store.turns(self.conversation_id)

    # Ratings and settings

    def rate(self, rating: str) -> int:
        """Rate the last reply good or bad; returns its turn id."""
        rating = rating.strip().lower()
        if rating not in RATINGS:
            raise ChatbotError(f"rate a reply {' or '.join(RATINGS)}, not {rating!r}")
        last = next((t for t in reversed(self.turns) if t.role == "bot"), None)
        if last is None or last.turn_id is None or self.conversation_id is None:
            raise ChatbotError("no reply to rate yet")
        return self.store.rate(rating, turn_id=last.turn_id)  # type: ignore[arg-type]

    def set(self, key: str, value: str) -> DecodeSettings:
        """Change one decode setting from text (`/set top_k 40`); checked by DecodeSettings."""
        name = settings_field(key)
        parsed = parse_setting(name, value)
        if name == "rerank" and parsed == "mmi" and self.reverse_model is None:
            # Known now, without waiting for the model: say so before the next turn.
            raise ChatbotError("rerank mmi needs a reverse model: start the chat with "
                               "--reverse-model DIR, or /set rerank pmi (needs none)")
        self.settings = self.settings.replace(**{name: parsed})
        return self.settings


def settings_field(key: str) -> str:
    """The DecodeSettings field a /set key names."""
    name = key.strip().lower().replace("-", "_")
    name = SET_ALIASES.get(name, name)
    names = [f.name for f in dataclasses.fields(DecodeSettings)]
    if name not in names:
        raise ChatbotError(f"unknown setting {key!r}; use one of "
                           f"{', '.join(SET_KEYS)} (or any of {', '.join(names)})")
    return name


def parse_setting(name: str, value: str) -> Any:
    """`value` as the type of DecodeSettings field `name` (whose checks then apply)."""
    kind = typing.get_type_hints(DecodeSettings)[name]
    text = value.strip()
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    if optional and text.lower() in ("none", "off", ""):
        return None
    if optional:
        kind = next(arg for arg in kind.__args__ if arg is not type(None))
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        what = {bool: "on or off", int: "an integer", float: "a number"}[kind]
        raise ChatbotError(f"{name} must be {what}, not {value!r}") from None
    return text.lower()  # the method name
