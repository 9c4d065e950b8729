"""The project's own JSONL export: one conversation per line.

    {"id": 1, "source": "chats.srt", "turns": [{"speaker": null, "text": "Hi.",
     "start_ms": 1000, "end_ms": 2500}]}

`dumps` writes a line and `read` reads it back, so export and import share one format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from chatbot.corpus.source import Source
from chatbot.corpus.textfile import TextFile
from chatbot.corpus.types import Conversation, ReadOptions, Turn

SHAPE = "expected an object with a 'turns' list"


def dumps(conversation_id: int, source: str, conversation: Conversation) -> str:
    """One JSONL line (without the newline) for a conversation."""
    return json.dumps(
        {
            "id": conversation_id,
            "source": source,
            "turns": [
                {"speaker": t.speaker, "text": t.text, "start_ms": t.start_ms, "end_ms": t.end_ms}
                for t in conversation.turns
            ],
        },
        ensure_ascii=False,
    )


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield the conversation on each non-blank line."""
    text_file = source.text()
    for line in text_file.lines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise text_file.error(f"invalid JSON: {e.msg} (column {e.colno})") from None
        except ValueError as e:  # e.g. an integer with more digits than Python converts
            raise text_file.error(f"invalid JSON: {e}") from None
        except RecursionError:
            raise text_file.error("invalid JSON: nested too deeply") from None
        turns = _turns(text_file, record)
        if turns:
            yield Conversation(turns)


def _turns(text_file: TextFile, record: Any) -> list[Turn]:
    if not isinstance(record, dict) or not isinstance(record.get("turns"), list):
        raise text_file.error(SHAPE)
    turns = []
    for number, turn in enumerate(record["turns"], 1):
        if not isinstance(turn, dict) or not isinstance(turn.get("text"), str):
            raise text_file.error(f"{SHAPE}: turn {number} has no 'text' string")
        speaker = turn.get("speaker")
        if speaker is not None and not isinstance(speaker, str):
            raise text_file.error(f"{SHAPE}: turn {number} has a non-string 'speaker'")
        text = " ".join(turn["text"].split())
        if text:
            start = _ms(text_file, turn, "start_ms", number)
            turns.append(Turn(text, speaker, start, _ms(text_file, turn, "end_ms", number)))
    return turns


def _ms(text_file: TextFile, turn: dict[str, Any], key: str, number: int) -> int | None:
    value = turn.get(key)
    # bool is an int subclass; true/false is not a time.
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise text_file.error(f"{SHAPE}: turn {number} has a non-integer {key!r}")
