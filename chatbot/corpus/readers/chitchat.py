"""chitchat-dataset's dataset.json: {conversation_id: {"messages": [[message, ...], ...]}}.

Each message is {"text", "timestamp", "sender"}; each inner list is a run of messages by
one sender. The 40 MB object is streamed one conversation at a time with ijson.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any

import ijson

from chatbot.corpus.source import Source
from chatbot.corpus.types import Conversation, ReadOptions, Turn
from chatbot.errors import ReaderError

_WHITESPACE = b" \t\r\n"
# How often (in conversations) to report byte progress.
_PROGRESS_EVERY = 256


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield each conversation, consecutive messages by one sender joined into one turn."""
    head = source.info.head
    skip = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    # kvitems over a top-level array or scalar would quietly yield nothing: say what is wrong.
    if not head[skip:].lstrip(_WHITESPACE).startswith(b"{"):
        raise ReaderError(source.path, "expected a JSON object of conversations at the top level")
    with source.binary() as f:
        f.seek(skip)
        try:
            for count, (key, value) in enumerate(ijson.kvitems(f, ""), 1):
                conversation = _conversation(source, key, value)
                if conversation.turns:
                    yield conversation
                if count % _PROGRESS_EVERY == 0:
                    options.progress(f.tell())
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as e:
            # ValueError/UnicodeDecodeError: what the pure-Python backends raise instead.
            raise ReaderError(source.path, f"invalid JSON: {json_error_line(e)}") from None
        options.progress(f.tell())


def _conversation(source: Source, key: str, value: Any) -> Conversation:
    messages = value.get("messages") if isinstance(value, dict) else None
    if not isinstance(messages, list):
        source.warn(f"conversation {key!r}: no 'messages' list; skipped")
        return Conversation()
    turns: list[Turn] = []
    texts: list[str] = []
    speaker: str | None = None
    for message in _flatten(messages):
        if not isinstance(message, dict) or not isinstance(message.get("text"), str):
            source.warn(f"conversation {key!r}: a message without 'text'; skipped")
            continue
        text = " ".join(message["text"].split())
        if not text:
            continue  # an empty message must not split its sender's turn
        sender = message.get("sender")
        sender = None if sender is None else str(sender)
        # An unknown sender never merges: two unnamed messages may be two people.
        if texts and (sender != speaker or sender is None):
            turns.append(Turn(" ".join(texts), speaker=speaker))
            texts = []
        speaker = sender
        texts.append(text)
    if texts:
        turns.append(Turn(" ".join(texts), speaker=speaker))
    return Conversation(turns)


def _flatten(groups: list[Any]) -> Iterator[Any]:
    """Messages in order, whether grouped in lists (as published) or not."""
    for group in groups:
        if isinstance(group, list):
            yield from group
        else:
            yield group


def json_error_line(error: Exception) -> str:
    """yajl's messages span lines (a snippet and a caret); a ReaderError is one line."""
    message = error.args[0] if error.args else error
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    lines = str(message).strip().splitlines()
    return lines[0].strip() if lines else type(error).__name__
