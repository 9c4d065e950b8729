"""TTML / DFXP (.ttml, .dfxp, .xml): timed <p> elements, parsed as a stream of XML events."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

from chatbot.corpus.source import Source
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.read import conversations
from chatbot.corpus.types import Conversation, ReadOptions
from chatbot.errors import ReaderError

_CLOCK = re.compile(r"^(\d+):(\d{2}):(\d{2})(?:\.(\d+)|:(\d+))?$")
_OFFSET = re.compile(r"^(\d+(?:\.\d+)?)(h|m|s|ms|f|t)$")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "f": 1 / 30, "t": 1e-7}


def to_ms(value: str | None) -> int | None:
    """A TTML time expression ('00:00:02.170', '00:00:02:05', '2.17s', '2170ms') in ms."""
    if not value:
        return None
    value = value.strip()
    clock = _CLOCK.match(value)
    if clock:
        h, m, s, fraction, frames = clock.groups()
        ms = int((fraction + "000")[:3]) if fraction else int(int(frames or 0) * 1000 / 30)
        return (int(h) * 3600 + int(m) * 60 + int(s)) * 1000 + ms
    offset = _OFFSET.match(value)
    if offset:
        return round(float(offset.group(1)) * _SECONDS[offset.group(2)] * 1000)
    return None


def _text(p: ET.Element) -> str:
    """The text of a <p>, with <br/> as a line break and nested <span>s flattened."""
    parts = [p.text or ""]
    for child in p.iter():
        if child is p:
            continue
        if child.tag.rsplit("}", 1)[-1] == "br":
            parts.append("\n")
        else:
            parts.append(child.text or "")
        parts.append(child.tail or "")
    return "\n".join(line.strip() for line in "".join(parts).split("\n") if line.strip())


def parse(source: Source) -> Iterator[Cue]:
    """Yield a cue for each timed <p>; memory stays flat (elements are freed as read)."""
    try:
        with source.binary() as f:
            for _event, element in ET.iterparse(f, events=("end",)):
                if element.tag.rsplit("}", 1)[-1] != "p":
                    continue
                start, end = to_ms(element.get("begin")), to_ms(element.get("end"))
                if start is None:
                    source.warn("<p> without a usable begin time skipped")
                else:
                    text = _text(element)
                    if text:
                        yield Cue(start, end if end is not None else start, text, 0)
                element.clear()
    except ET.ParseError as e:
        raise ReaderError(source.path, f"invalid XML: {e.msg if hasattr(e, 'msg') else e}",
                          e.position[0]) from None


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """TTML file -> conversations."""
    return conversations(parse, source, options)
