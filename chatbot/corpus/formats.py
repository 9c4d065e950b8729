"""The input formats: their names, extensions, and detection from a file's name and content."""

from __future__ import annotations

import codecs
import importlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.types import Conversation, ReadOptions
from chatbot.errors import ChatbotError, ReaderError

Reader = Callable[[Source, ReadOptions], Iterator[Conversation]]


@dataclass(frozen=True)
class Format:
    """One input format and the reader module that handles it."""

    name: str
    extensions: tuple[str, ...]
    description: str
    # Its sources are private data (someone's chats): the store records them as such
    # and the corpus file is made readable by its owner only.
    private: bool = False

    @property
    def module(self):
        # Imported on use: the CLI starts fast and only loads the readers it needs.
        return importlib.import_module(f"chatbot.corpus.readers.{self.name}")

    @property
    def read(self) -> Reader:
        return self.module.read


# Where formats share an extension, the first listed is the one a file of that extension
# is read as when its content says nothing more specific (see `detect`).
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("srt", (".srt",), "SubRip subtitles"),
        Format("vtt", (".vtt",), "WebVTT subtitles"),
        Format("ass", (".ass", ".ssa"), "Advanced SubStation Alpha subtitles"),
        Format("ttml", (".ttml", ".dfxp"), "TTML/DFXP subtitles (XML)"),
        Format("opus", (".xml",), "OpenSubtitles XML as the OPUS project ships it"),
        Format("novel", (".txt",), "a novel: quoted or dash-led dialogue in prose"),
        Format("epub", (".epub",), "an EPUB e-book: its chapters read as a novel"),
        Format("cornell", (), "Cornell Movie-Dialogs (movie_lines.txt + movie_conversations.txt)"),
        Format("dailydialog", (), "DailyDialog (utterances separated by __eou__)"),
        Format("chatterbot_yaml", (".yml", ".yaml"), "ChatterBot corpus YAML"),
        Format("chitchat", (".json",), "chitchat-dataset dataset.json"),
        Format("whatsapp", (".txt",), "a WhatsApp chat export (.txt, or the app's .zip)",
               private=True),
        Format("telegram", (".json",), "a Telegram Desktop JSON export (result.json)",
               private=True),
        Format("tsv", (".tsv",), "tab-separated sentence pairs (Anki/manythings)"),
        Format("jsonl", (".jsonl",), "this project's JSONL export"),
    )
}
KNOWN_EXTENSIONS = frozenset(ext for f in FORMATS.values() for ext in f.extensions)
SUBTITLE_FORMATS = ("srt", "vtt", "ass", "ttml", "opus")

# A movie_lines row ("L1045 +++$+++ u0 ...") or a movie_conversations row ("u0 +++$+++ ...").
_CORNELL_LINE = re.compile(r"^[Lu]\d+ \+\+\+\$\+\+\+ ", re.MULTILINE)
# OPUS's <document id="..."> root, after an optional XML declaration and comments.
_OPUS_DOCUMENT = re.compile(r"<document[\s>]")
_SRT_TIMING = re.compile(r"^\s*\d+:\d{1,2}:\d{1,2}[,.]\d{1,3}\s*-+>", re.MULTILINE)
# A WhatsApp export's first line: "12/24/23, 9:41 PM - " (Android) or "[24/12/2023,
# 21:41:07] " (iOS), maybe after U+200E (chatbot/corpus/readers/whatsapp.py reads them).
_WHATSAPP_LINE = re.compile(
    r"[\u200e\u200f]*(?:\[\d{1,4}([./-])\d{1,2}\1\d{1,4},?\s+\d{1,2}[:.]\d{2}(?:[:.]\d{2})?"
    r"(?:\s*[AaPp]\.?\s?[Mm]\.?)?\]\s"
    r"|\d{1,4}([./-])\d{1,2}\2\d{1,4},?\s+\d{1,2}[:.]\d{2}(?:[:.]\d{2})?"
    r"(?:\s*[AaPp]\.?\s?[Mm]\.?)?\s+[-\u2013]\s)")
# Telegram Desktop's result.json: a full-account export opens with "about"; a single
# chat's with its "name", "type" and "id" (saved messages: no name). Further in, any
# export has "date_unixtime" (since 2021) or a chats list.
_TELEGRAM_OPENING = re.compile(
    r'\{\s*(?:"about"\s*:|(?:"name"\s*:\s*(?:"(?:[^"\\]|\\.)*"|null)\s*,\s*)?'
    r'"type"\s*:\s*"[a-z_]*"\s*,\s*"id"\s*:)')
_TELEGRAM_INSIDE = re.compile(r'"date_unixtime"\s*:|"chats"\s*:\s*\{\s*"(?:about|list)"\s*:')


def format_named(name: str) -> Format:
    """The format called `name` (as given to --format)."""
    aliases = {"ssa": "ass", "webvtt": "vtt", "subrip": "srt", "yaml": "chatterbot_yaml",
               "chatterbot": "chatterbot_yaml", "txt": "novel"}
    key = aliases.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise ChatbotError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[key]


def _head_text(head: bytes) -> str:
    """The first bytes as text, good enough to sniff (BOMs honoured, errors ignored)."""
    for mark, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                           (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(mark):
            return head.decode(encoding, errors="ignore")
    return head.decode("utf-8", errors="ignore").lstrip("\ufeff")


def sniff(head: bytes) -> Format | None:
    """The format the content looks like, or None."""
    text = _head_text(head)
    stripped = text.lstrip()
    if _WHATSAPP_LINE.match(stripped):
        return FORMATS["whatsapp"]
    if stripped.startswith("WEBVTT"):
        return FORMATS["vtt"]
    if "[Script Info]" in text[:4096] or "[Events]" in text:
        return FORMATS["ass"]
    if _CORNELL_LINE.search(text):
        return FORMATS["cornell"]
    if "__eou__" in text:
        return FORMATS["dailydialog"]
    if _SRT_TIMING.search(text[:8192]):
        return FORMATS["srt"]
    if stripped.startswith("<") and "<tt" in text[:4096]:
        return FORMATS["ttml"]
    if stripped.startswith("<") and _OPUS_DOCUMENT.search(text[:4096]):
        return FORMATS["opus"]
    if stripped.startswith("{"):
        if _TELEGRAM_OPENING.match(stripped) or _TELEGRAM_INSIDE.search(text[:8192]):
            return FORMATS["telegram"]
        first = stripped.split("\n", 1)[0]
        if '"turns"' in first:
            return FORMATS["jsonl"]
        if '"messages"' in text[:8192]:
            return FORMATS["chitchat"]
    if re.search(r"^conversations:", text, re.MULTILINE):
        return FORMATS["chatterbot_yaml"]
    lines = [line for line in text.splitlines()[:40] if line.strip()]
    if len(lines) >= 2 and sum("\t" in line for line in lines) >= 0.8 * len(lines):
        return FORMATS["tsv"]
    return None


def detect(path: Path, head: bytes) -> Format:
    """The format of a file: from its extension, else from its content."""
    suffix = path.suffix.lower()
    by_extension = next((f for f in FORMATS.values() if suffix in f.extensions), None)
    # .txt and .xml say little (prose, a dialogue set or a chat; OPUS or TTML): content
    # first. A .json is chitchat-dataset's unless it is a Telegram export.
    if by_extension is not None and by_extension.name == "chitchat":
        return FORMATS["telegram"] if sniff(head) is FORMATS["telegram"] else by_extension
    if by_extension is not None and by_extension.name not in ("novel", "opus"):
        return by_extension
    found = sniff(head)
    if found is not None:
        return found
    if by_extension is not None:  # .txt that is nothing more specific: prose; .xml: OPUS
        return by_extension
    raise ReaderError(path, f"cannot tell the format; pass --format ({', '.join(FORMATS)})")


def cue_parser(path: Path) -> Callable[[Source], Iterator[Cue]]:
    """The cue parser of a subtitle file (for tools that look at cues, not conversations)."""
    with open(path, "rb") as f:
        fmt = detect(path, f.read(1 << 16))
    if fmt.name not in SUBTITLE_FORMATS:
        raise ReaderError(path, f"not a subtitle file (looks like {fmt.description})")
    return fmt.module.parse
