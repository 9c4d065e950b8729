"""WhatsApp chat exports ("Export chat" in the app): the .txt, alone or in the .zip the app
makes (the walk reads the .txt member; photos, voice notes and the like are skipped).

    12/24/23, 9:41 PM - Alice: Are you coming?         Android (12- or 24-hour clock; recent
    12/24/23, 9:42 PM - Bob: Yes                       versions put U+202F before AM/PM)
    [24/12/2023, 21:41:07] Alice: Are you coming?      iOS (U+200E before some lines)

A line that starts with a timestamp starts a message; the lines after it that do not are
the rest of it (a message may span lines). Dates are day-first or month-first by the
phone's locale, which the file does not say: it is decided per file from the dates it
holds (a day over 12 settles it; when every date fits both, the order under which the
dates run forward wins, and on a tie the 12-hour clock's month-first). Year-first dates
(2023-12-24) are read as such.

Dropped, without breaking the turn around them: system lines (group changes, which have
no `Name:`; the encryption notice, which on iOS carries a sender; security-code changes),
omitted media (`<Media omitted>`, `image omitted`, ...), attachment names (a caption after
one is kept), deleted messages and missed calls. `<This message was edited>` is removed.
These are the English forms: a phone in another language writes its own.

Consecutive messages of one sender are one turn (joined with a newline), and a silence
longer than the gap (default CHAT_GAP_SECONDS, an hour) ends a conversation. Turn.speaker
is the name as the export writes it; start_ms is the timestamp in milliseconds since the
epoch, read as UTC (the export gives the phone's local time and no zone).

The file is read twice, line by line (never whole): once for the dates, once for the
messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date
from functools import lru_cache
from typing import NamedTuple

from chatbot.corpus.source import Source
from chatbot.corpus.textfile import TextFile
from chatbot.corpus.types import CHAT_GAP_SECONDS, Conversation, ReadOptions, Turn
from chatbot.errors import ReaderError

# Invisible direction marks WhatsApp puts before lines and around names and mentions.
_MARKS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")

_DATE = r"(?P<a>\d{1,4})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{1,4})"
# Hours, minutes, maybe seconds, maybe AM/PM ("PM", "pm", "p.m.", "p. m."), after any
# space (U+202F and U+00A0 included: \s matches them).
_TIME = (r"(?P<h>\d{1,2})[:.](?P<m>\d{2})(?:[:.](?P<s>\d{2}))?"
         r"(?:\s*(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?")
_IOS = re.compile(rf"\[{_DATE},?\s+{_TIME}\]\s(?P<rest>.*)")
_ANDROID = re.compile(rf"{_DATE},?\s+{_TIME}\s+[-\u2013]\s(?P<rest>.*)")

# Whole messages that are no speech.
_DROPPED = re.compile(
    r"<Media omitted>"
    r"|(?:image|video|audio|sticker|GIF|document|Contact card) omitted"
    r"|.* document omitted"  # iOS: "notes.pdf \u2022 3 pages document omitted"
    r"|This message was deleted(?: by admin .*)?\.?|You deleted this message\.?"
    r"|Waiting for this message\. This may take a while\."
    r"|Missed (?:voice|video|group voice|group video) call(?:, .*)?"
)
# Notices that carry a sender on iOS (the chat's or group's name).
_NOTICE = re.compile(
    r"Messages (?:you send )?(?:and calls )?(?:to this (?:chat|group) )?(?:and calls )?"
    r"(?:are|were) "
    r"(?:now )?(?:secured with )?end-to-end encrypt"
    r"|.*security code (?:with .* )?changed\."
    r"|This business uses a secure service from Meta"
)
# An attachment line (exported with media): Android "IMG-20231224-WA0001.jpg (file
# attached)", iOS "<attached: 00000012-PHOTO-2023-12-24-21-41-07.jpg>".
_ATTACHMENT = re.compile(r".*\(file attached\)|<attached: [^>]*>")
_EDITED = "<This message was edited>"

# How the numbers of a date are read.
DAY_FIRST, MONTH_FIRST = "day-first", "month-first"


class Message(NamedTuple):
    """One message of a chat export, as the readers of chat exports hand it on."""

    sender: object  # who sent it, for merging turns (None: unknown, never merged)
    speaker: str | None  # the name to store
    text: str
    time_ms: int | None


def conversations(messages: Iterable[Message], gap_seconds: float) -> Iterator[Conversation]:
    """Messages to conversations: one sender's consecutive messages are one turn (joined
    with a newline); a silence longer than `gap_seconds` ends a conversation. Shared
    with the Telegram reader."""
    gap_ms = gap_seconds * 1000
    turns: list[Turn] = []
    texts: list[str] = []
    sender: object = None
    speaker: str | None = None
    start: int | None = None
    last: int | None = None
    for message in messages:
        silence = (message.time_ms - last
                   if message.time_ms is not None and last is not None else 0)
        if texts and (silence > gap_ms or message.sender != sender or sender is None):
            turns.append(Turn("\n".join(texts), speaker, start))
            texts = []
        if turns and silence > gap_ms:
            yield Conversation(turns)
            turns = []
        if not texts:
            sender, speaker, start = message.sender, message.speaker, message.time_ms
        texts.append(message.text)
        if message.time_ms is not None:
            last = message.time_ms
    if texts:
        turns.append(Turn("\n".join(texts), speaker, start))
    if turns:
        yield Conversation(turns)


def clean(text: str) -> str:
    """Text as stored: invisible marks removed, spaces collapsed, blank lines dropped."""
    lines = (" ".join(line.split()) for line in _MARKS.sub("", text).split("\n"))
    return "\n".join(line for line in lines if line)


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Yield the conversations of a WhatsApp export."""
    order = date_order(source)
    yield from conversations(_messages(source, order), options.gap(CHAT_GAP_SECONDS))


def header(line: str) -> re.Match[str] | None:
    """The timestamp that starts a message line, or None for a line that continues one."""
    line = line.lstrip("\u200e\u200f\ufeff")
    return (_IOS if line.startswith("[") else _ANDROID).match(line)


def date_order(source: Source) -> str:
    """Whether the file's dates are day-first or month-first (a first pass over it).

    A date whose first number is over 12 rules month-first out, one whose second is
    over 12 day-first; if both are ruled out the layout is unknown. If neither is, the
    order under which fewer timestamps go backwards wins, and on a tie month-first for
    a 12-hour clock (the US layout) and day-first for a 24-hour one.
    """
    text_file = TextFile(source.blob, source.encoding)  # no progress: pass two reports it
    possible = {DAY_FIRST: True, MONTH_FIRST: True}
    backwards = {DAY_FIRST: 0, MONTH_FIRST: 0}
    previous: dict[str, int | None] = {DAY_FIRST: None, MONTH_FIRST: None}
    seen = False
    twelve_hour = False
    for line in text_file.lines():
        match = header(line)
        if match is None:
            continue
        seen = True
        if len(match["a"]) >= 3:  # year-first: no question of order
            continue
        twelve_hour = twelve_hour or match["ampm"] is not None
        for order in (DAY_FIRST, MONTH_FIRST):
            if not possible[order]:
                continue
            try:
                when = _seconds(match, order)
            except ValueError:
                possible[order] = False
                continue
            if previous[order] is not None and when < previous[order]:
                backwards[order] += 1
            previous[order] = when
        if not any(possible.values()):
            raise ReaderError(source.path, f"unknown date layout: {_stamp(match)!r} is "
                              "neither day-first nor month-first", text_file.line)
        if possible[DAY_FIRST] != possible[MONTH_FIRST]:
            break  # settled; a date that fits neither is reported by the second pass
    if not seen:
        raise ReaderError(source.path, "no WhatsApp message lines (like '12/24/23, 9:41 PM "
                          "- Name: text' or '[24/12/2023, 21:41:07] Name: text')")
    if possible[DAY_FIRST] != possible[MONTH_FIRST]:
        return DAY_FIRST if possible[DAY_FIRST] else MONTH_FIRST
    if backwards[DAY_FIRST] != backwards[MONTH_FIRST]:
        return DAY_FIRST if backwards[DAY_FIRST] < backwards[MONTH_FIRST] else MONTH_FIRST
    return MONTH_FIRST if twelve_hour else DAY_FIRST


def _seconds(match: re.Match[str], order: str) -> int:
    """The local time a header gives, read as UTC, in seconds since the epoch, its date
    read in `order` (ValueError if there is no such day or time)."""
    a, b, c, h, m, s, ampm = match.group("a", "b", "c", "h", "m", "s", "ampm")
    hour, minute, second = int(h), int(m), int(s or 0)
    if ampm is not None:
        hour = hour % 12 + (12 if ampm[0] in "Pp" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("no such time")
    return _day(a, b, c, order) * 86400 + hour * 3600 + minute * 60 + second


_EPOCH = date(1970, 1, 1).toordinal()


@lru_cache(maxsize=1024)
def _day(a: str, b: str, c: str, order: str) -> int:
    """Days since the epoch of a date as written (ValueError if there is no such day)."""
    if len(a) >= 3:  # year-first
        year, month, day = int(a), int(b), int(c)
    else:
        year = int(c) + 2000 if len(c) <= 2 else int(c)
        day, month = (int(a), int(b)) if order == DAY_FIRST else (int(b), int(a))
    return date(year, month, day).toordinal() - _EPOCH


def _stamp(match: re.Match[str]) -> str:
    """The timestamp of a message line as written."""
    return match.string[:match.start("rest")].strip()


def _messages(source: Source, order: str) -> Iterator[Message]:
    """The kept messages of the file, in order."""
    text_file = source.text()
    lines: list[str] = []  # the message being read: its first line's text, then the rest
    sender: str | None = None
    time_ms = 0
    any_message = False
    before = 0  # lines before the first message
    for line in text_file.lines():
        match = header(line)
        if match is None:
            if lines:
                lines.append(line)
            elif line.strip():
                before += 1
            continue
        if lines and sender is not None:
            message = _message(sender, lines, time_ms)
            if message is not None:
                yield message
        try:
            time_ms = _seconds(match, order) * 1000
        except ValueError:
            raise text_file.error(f"unknown date layout: {_stamp(match)!r} is not {order} "
                                  "like the dates before it") from None
        sender, text = _sender(match["rest"])
        any_message = any_message or sender is not None
        lines = [text]
    if lines and sender is not None:
        message = _message(sender, lines, time_ms)
        if message is not None:
            yield message
    if before:
        source.warn(f"{before} line(s) before the first message; skipped")
    if not any_message:
        raise ReaderError(source.path, "no WhatsApp message lines: only system lines "
                          "(no 'Name: text' after any timestamp)")


def _sender(rest: str) -> tuple[str | None, str]:
    """The sender and text of a message line; no sender for a system line."""
    name, colon, text = rest.partition(":")
    if colon and (not text or text.startswith(" ")):
        name = " ".join(_MARKS.sub("", name).split())
        # A group change that quotes a subject with a colon is no sender.
        if name and '"' not in name and "\u201c" not in name:
            return name, text[1:]
    return None, rest


def _message(sender: str, lines: list[str], time_ms: int) -> Message | None:
    """A message with its text cleaned, or None for one that is no speech."""
    text = _MARKS.sub("", "\n".join(lines))
    if _EDITED in text:
        text = text.replace(_EDITED, "")
    if "attached" in text:
        text = "\n".join(line for line in text.split("\n")
                         if not _ATTACHMENT.fullmatch(line.strip()))
    text = clean(text)
    if not text or _DROPPED.fullmatch(text) or _NOTICE.match(text):
        return None
    return Message(sender, sender, text, time_ms)
