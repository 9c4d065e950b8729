"""Wiring for `chatbot chat`: the model, the store, the session, and a front end.

In a terminal the prompt comes first: TensorFlow's import, the model's load and a
warm-up reply (which traces the compiled search) run on the worker thread that later
makes the replies, while the user types the first turn. Over a pipe nobody is waiting
for a prompt, so the model is simply loaded first.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.chat.loading import load_in_background, load_responder, model_digest
from chatbot.chat.session import ChatSession, ModelUnavailable
from chatbot.decode.settings import DecodeSettings, for_model
from chatbot.errors import ChatbotError
from chatbot.model.directory import resolve
from chatbot.transcripts import default_transcripts_db
from chatbot.transcripts.store import TranscriptStore

if TYPE_CHECKING:
    from chatbot.decode.responder import Responder

GREETING_TURNS = 4  # turns of a resumed conversation shown before the prompt


def run_chat(model: Path | None, transcripts: Path | None,
             overrides: dict[str, Any] | None = None, *, continue_latest: bool = False,
             conversation_id: int | None = None, interactive: bool | None = None,
             reverse_model: Path | None = None) -> int:
    """Chat until the input ends; the exit status. Replies are decoded as `chat_settings`
    says; `interactive` None: a terminal when both stdin and stdout are one;
    `reverse_model`: a model trained with --reverse, for rerank "mmi"."""
    from chatbot.decode.rerank import check_reverse

    if continue_latest and conversation_id is not None:
        raise ChatbotError("give --continue or --conversation ID, not both")
    model_dir = resolve(model)
    # Cheap (no TensorFlow): a wrong reverse model is one line before anything loads.
    reverse = None if reverse_model is None else check_reverse(model_dir, reverse_model)
    settings = chat_settings(model_dir, overrides or {})
    if settings.rerank == "mmi" and reverse is None:
        raise ChatbotError("rerank mmi needs --reverse-model DIR (a model trained with "
                           "`chatbot train --reverse`); rerank pmi needs none")
    name = "built-in" if model is None else model_dir.name
    store = TranscriptStore(transcripts if transcripts is not None else default_transcripts_db())
    try:
        resume = _conversation_to_resume(store, continue_latest, conversation_id)
        if interactive is None:
            interactive = sys.stdin.isatty() and sys.stdout.isatty()
        if interactive:
            return _terminal(model_dir, name, store, settings, resume, reverse)
        return _pipe(model_dir, name, store, settings, resume, reverse)
    finally:
        store.close()


def chat_settings(model_dir: Path, overrides: dict[str, Any]) -> DecodeSettings:
    """The decoding the model recommends (its metadata's "decoding", anti-generic
    settings measured for it), beam search where it names no method; `overrides` (the
    options given) on top."""
    from chatbot.model.directory import read_metadata

    metadata = read_metadata(model_dir)
    recommended = metadata.get("decoding") or {}
    if isinstance(recommended, dict):  # anything else: for_model says what is wrong
        metadata = {**metadata, "decoding": {"method": "beam", **recommended}}
    return for_model(metadata, **overrides)


def _conversation_to_resume(store: TranscriptStore, latest: bool,
                            conversation_id: int | None) -> int | None:
    if conversation_id is not None:
        store.conversation(conversation_id)  # no such conversation: fail before loading
        return conversation_id
    if latest:
        record = store.latest_conversation()
        if record is None:
            raise ChatbotError(f"{store.path}: no conversation to continue yet")
        return record["id"]
    return None


def _resume(chat: ChatSession, conversation_id: int) -> list[str]:
    """Resume a stored conversation; what to tell the user about it."""
    record = chat.resume(conversation_id)
    lines = [f"continuing conversation {conversation_id} ({len(chat.turns)} turns)"]
    if record["model_digest"] and record["model_digest"] != chat.model_digest():
        lines.append(f"(it was held with another model, {record['model_path']}; its context "
                     "is rebuilt with this one)")
    return lines


def _pipe(model_dir: Path, name: str, store: TranscriptStore, settings: DecodeSettings,
          resume: int | None, reverse: Path | None) -> int:
    from chatbot.chat.pipe import PipeChat

    responder = load_responder(model_dir, settings, reverse)  # traced now: no chatter later
    chat = ChatSession(responder, store, settings, model_path=model_dir,
                       model_digest=lambda: model_digest(model_dir), model_name=name,
                       reverse_model=reverse)
    front = PipeChat(chat)
    for line in _resume(chat, resume) if resume is not None else []:
        front.notice(line)
    return front.run()


def _terminal(model_dir: Path, name: str, store: TranscriptStore, settings: DecodeSettings,
              resume: int | None, reverse: Path | None) -> int:
    from chatbot.chat.repl import Repl, private_history
    from chatbot.paths import data_dir

    executor = ThreadPoolExecutor(1, thread_name_prefix="chat-model")
    loading = load_in_background(executor, model_dir, settings, reverse)

    def responder() -> Responder:
        try:
            return loading.result()
        except ChatbotError as e:
            raise ModelUnavailable(str(e)) from None

    chat = ChatSession(responder, store, settings, model_path=model_dir,
                       model_digest=lambda: model_digest(model_dir), model_name=name,
                       reverse_model=reverse)
    greeting = [f"chatting with {name} ({model_dir}): /help lists the commands, "
                "Ctrl-D leaves"]
    if resume is not None:
        greeting += _resume(chat, resume)
        for turn in chat.turns[-GREETING_TURNS:]:
            greeting.append(("you> " if turn.role == "user" else "bot> ") + turn.text)
    repl = Repl(chat, executor=executor, loading=loading,
                history=private_history(data_dir() / "chat_history"))
    return repl.run(greeting)
