"""Transcripts out: as text, Markdown or JSONL for people, and as corpus conversations.

The JSONL record (one conversation a line) is

    {"id": 3, "started_at": "...", "name": null, "model_path": "...", "model_digest": "...",
     "settings": {...}, "turns": [{"position": 0, "role": "user", "text": "Hi.",
     "created_at": "...", "latency_ms": null, "tokens": null, "settings": null,
     "rating": null}, ...]}

which `chatbot ingest` also reads as this project's JSONL (it uses each turn's "text").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from chatbot.corpus.types import Conversation, Turn
from chatbot.transcripts.store import RATINGS, Rating, TranscriptStore

Transcript = tuple[dict[str, Any], list[dict[str, Any]]]  # (conversation, its turns)

# What each side is called when a transcript is read by a person.
SPEAKERS = {"user": "You", "bot": "Bot"}
_CONVERSATION_KEYS = ("id", "started_at", "name", "model_path", "model_digest", "settings")
_TURN_KEYS = ("position", "role", "text", "created_at", "latency_ms", "tokens", "settings",
              "rating")


def transcripts(store: TranscriptStore, conversation_id: int | None = None) -> Iterator[Transcript]:
    """(conversation, turns) for one conversation, or for all of them oldest first."""
    ids = [conversation_id] if conversation_id is not None else store.conversation_ids()
    for cid in ids:
        yield store.conversation(cid), store.turns(cid)


def local_time(iso: str | None) -> str:
    """A stored UTC timestamp as local 'YYYY-MM-DD HH:MM' ('' for None)."""
    if not iso:
        return ""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def _details(turn: dict[str, Any]) -> str:
    """'123 ms, 5 tokens, rated good' for a bot turn ('' when there is nothing to say)."""
    parts = []
    if turn["latency_ms"] is not None:
        parts.append(f"{turn['latency_ms']} ms")
    if turn["tokens"] is not None:
        parts.append(f"{turn['tokens']} tokens")
    if turn["rating"]:
        parts.append(f"rated {turn['rating']}")
    return ", ".join(parts)


def _heading(conversation: dict[str, Any]) -> str:
    name = f' "{conversation["name"]}"' if conversation["name"] else ""
    model = conversation["model_path"] or "unknown model"
    if conversation["model_digest"]:
        model += f" ({conversation['model_digest'][:12]})"
    origin = conversation.get("origin") or "terminal"
    where = "" if origin == "terminal" else f" over the {'web page' if origin == 'web' else 'API'}"
    return (f"conversation {conversation['id']}{name}, started "
            f"{local_time(conversation['started_at'])}{where}, {model}")


def render_text(conversation: dict[str, Any], turns: list[dict[str, Any]]) -> str:
    """A transcript for the terminal: a heading, then one numbered line per turn."""
    lines = [_heading(conversation)]
    for turn in turns:
        details = _details(turn)
        text = turn["text"].replace("\n", "\n" + " " * 9)  # continuation lines stay indented
        lines.append(f"{turn['position']:>3} {SPEAKERS[turn['role']].lower()}: {text}"
                     + (f"  ({details})" if details else ""))
    return "\n".join(lines) + "\n"


# Characters that would turn chat text into Markdown formatting.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")
_LIST_START = re.compile(r"^(\s*)([-+]|\d+[.)])(\s)", re.MULTILINE)


def escape_markdown(text: str) -> str:
    """Chat text shown as itself in Markdown: no accidental emphasis, headings or lists;
    line breaks kept (CommonMark's backslash hard break)."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    text = _LIST_START.sub(lambda m: f"{m[1]}{m[2][:-1]}\\{m[2][-1]}{m[3]}", text)
    return "\\\n".join(text.splitlines()) if "\n" in text else text


def render_markdown(conversation: dict[str, Any], turns: list[dict[str, Any]]) -> str:
    """A transcript as a Markdown document: title, metadata list, one paragraph per turn."""
    title = conversation["name"] or f"Conversation {conversation['id']}"
    model = conversation["model_path"] or "unknown"
    lines = [
        f"# {escape_markdown(title)}",
        "",
        f"- Conversation: {conversation['id']}",
        f"- Started: {local_time(conversation['started_at'])}",
        f"- Model: `{model}`" + (f" (`{conversation['model_digest'][:12]}`)"
                                 if conversation["model_digest"] else ""),
    ]
    if conversation["settings"]:
        lines.append(f"- Settings: `{json.dumps(conversation['settings'], sort_keys=True)}`")
    lines.append("")
    for turn in turns:
        details = _details(turn)
        lines.append(f"**{SPEAKERS[turn['role']]}:** {escape_markdown(turn['text'])}"
                     + (f" *({details})*" if details else ""))
        lines.append("")
    return "\n".join(lines)


def jsonl_record(conversation: dict[str, Any], turns: list[dict[str, Any]]) -> str:
    """One JSONL line (without the newline) for a transcript; see the module docstring."""
    record = {key: conversation[key] for key in _CONVERSATION_KEYS}
    record["turns"] = [{key: turn[key] for key in _TURN_KEYS} for turn in turns]
    return json.dumps(record, ensure_ascii=False)


def to_conversations(
    items: Iterable[Transcript], only_rated: Rating | None = None
) -> Iterator[Conversation]:
    """Transcripts as corpus conversations (speakers "user" and "bot"), for training.

    Without `only_rated`, each transcript is one conversation, every turn kept. With
    `only_rated="good"`, a transcript is cut into the stretches in which every bot reply
    is rated good, each ending at such a reply: a reply rated bad, or not rated, ends a
    stretch and is left out together with the user turn it answered, so training sees
    each good reply after the turns that led to it and never learns a reply you did not
    approve. `only_rated="bad"` does the same for replies rated bad (to study them).
    Text is whitespace-normalised as the corpus readers do; empty turns are dropped.
    """
    if only_rated is not None and only_rated not in RATINGS:
        raise ValueError(f"only_rated must be one of {RATINGS} or None")
    for _, turns in items:
        kept = [(Turn(" ".join(t["text"].split()), t["role"]), t) for t in turns]
        kept = [(turn, row) for turn, row in kept if turn.text]
        if only_rated is None:
            if kept:
                yield Conversation([turn for turn, _ in kept])
            continue
        stretch: list[Turn] = []
        end = 0  # the stretch up to here ends with a reply rated `only_rated`
        for turn, row in kept:
            if row["role"] == "bot" and row["rating"] != only_rated:
                if end:
                    yield Conversation(stretch[:end])
                stretch, end = [], 0
                continue
            stretch.append(turn)
            if row["role"] == "bot":
                end = len(stretch)
        if end:
            yield Conversation(stretch[:end])
