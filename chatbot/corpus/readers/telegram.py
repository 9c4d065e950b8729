"""Telegram Desktop JSON exports (result.json): one chat's, or a whole account's.

    {"name": "Alice", "type": "personal_chat", "id": 123, "messages": [
      {"id": 1, "type": "message", "date": "2023-12-24T21:41:07",
       "date_unixtime": "1703454067", "from": "Alice", "from_id": "user123",
       "text": ["See ", {"type": "link", "text": "https://t.me"}], "text_entities": [...]},
      {"id": 2, "type": "service", "actor": "Alice", "action": "pin_message", ...}]}

    {"about": "...", "personal_information": {...}, ..., "chats": {"about": "...",
     "list": [{"name": ..., "type": ..., "id": ..., "messages": [...]}, ...]},
     "left_chats": {"about": "...", "list": [...]}}

`text` is a string, or a list of plain strings and entity objects (links, bold, ...)
whose texts are joined. Service messages (`"type": "service"`) and messages with no text
(a photo, a sticker) are dropped. Each chat's messages become conversations as a
WhatsApp chat's do (chatbot/corpus/readers/whatsapp.py): one sender's consecutive
messages are one turn, a silence longer than the gap (default an hour) ends a
conversation; the speaker is `from` (messages are told apart by `from_id`), start_ms
`date_unixtime` (else `date`, read as UTC) in milliseconds.

The file is streamed with ijson a message at a time: memory does not grow with it.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, BinaryIO

import ijson

from chatbot.corpus.readers.chitchat import json_error_line
from chatbot.corpus.readers.whatsapp import Message, clean, conversations
from chatbot.corpus.source import Source
from chatbot.corpus.types import CHAT_GAP_SECONDS, Conversation, ReadOptions
from chatbot.errors import ReaderError

_WHITESPACE = b" \t\r\n"
# Where a chat's messages list is: a single chat's export, a full export's chats.
_MESSAGE_LISTS = frozenset({"messages", "chats.list.item.messages",
                            "left_chats.list.item.messages"})
_MESSAGE_ITEMS = frozenset(f"{prefix}.item" for prefix in _MESSAGE_LISTS)
SHAPE = ("not a Telegram Desktop export: no 'messages' list (one chat's result.json) "
         "and no 'chats.list' (a full export's)")
# How often (in messages) to report byte progress.
_PROGRESS_EVERY = 4096


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield the conversations of each chat in the export."""
    head = source.info.head
    skip = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
    if not head[skip:].lstrip(_WHITESPACE).startswith(b"{"):
        raise ReaderError(source.path, f"{SHAPE}: expected a JSON object at the top level")
    gap = options.gap(CHAT_GAP_SECONDS)
    with source.binary() as f:
        f.seek(skip)
        chats = [0]  # messages lists seen
        try:
            raw = _raw_messages(f, chats, options)
            for _chat, items in groupby(raw, key=lambda item: item[0]):
                kept = (m for m in (_message(value) for _, value in items) if m is not None)
                yield from conversations(kept, gap)
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as e:
            # ValueError/UnicodeDecodeError: what the pure-Python backends raise instead.
            raise ReaderError(source.path, f"invalid JSON: {json_error_line(e)}") from None
        options.progress(f.tell())
    if not chats[0]:
        raise ReaderError(source.path, SHAPE)


def _raw_messages(f: BinaryIO, chats: list[int], options: ReadOptions
                  ) -> Iterator[tuple[int, Any]]:
    """(chat number, message as parsed) for every item of every chat's messages list;
    counts the lists in chats[0]."""
    builder: ijson.ObjectBuilder | None = None
    count = 0
    for prefix, event, value in ijson.parse(f):
        if builder is not None:
            builder.event(event, value)
            if event == "end_map" and prefix in _MESSAGE_ITEMS:  # the message's own end
                yield chats[0], builder.value
                builder = None
                count += 1
                if count % _PROGRESS_EVERY == 0:
                    options.progress(f.tell())
        elif event == "start_map" and prefix in _MESSAGE_ITEMS:
            builder = ijson.ObjectBuilder()
            builder.event(event, value)
        elif event == "start_array" and prefix in _MESSAGE_LISTS:
            chats[0] += 1


def _message(raw: Any) -> Message | None:
    """A message with text, or None (a service message, a photo or sticker without text)."""
    if not isinstance(raw, dict) or raw.get("type", "message") != "message":
        return None
    text = clean(_text(raw.get("text")))
    if not text:
        return None
    name = raw.get("from")
    speaker = name if isinstance(name, str) and name else None
    sender = raw.get("from_id")
    sender = str(sender) if sender is not None else speaker
    return Message(sender, speaker, text, _time_ms(raw))


def _text(text: Any) -> str:
    """A message's text: a string, or a list of strings and entities ({"type", "text"})."""
    if isinstance(text, str):
        return text
    if not isinstance(text, list):
        return ""
    parts = []
    for part in text:
        if isinstance(part, dict):
            part = part.get("text")
        if isinstance(part, str):
            parts.append(part)
    return "".join(parts)


def _time_ms(raw: dict[str, Any]) -> int | None:
    """When a message was sent, in milliseconds since the epoch."""
    unixtime = raw.get("date_unixtime")
    try:
        if unixtime is not None:
            return int(unixtime) * 1000
        date = raw.get("date")
        if isinstance(date, str):
            return int(datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp()) * 1000
    except (TypeError, ValueError):
        pass
    return None
