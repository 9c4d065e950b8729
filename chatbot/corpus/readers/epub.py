"""EPUB e-books (.epub): the chapters in reading order, read as a novel.

META-INF/container.xml names the OPF package file; its spine lists the chapters (XHTML
documents) in reading order. Spine items marked linear="no" are skipped: they are
out-of-flow extras (notes, pop-ups), not the story. Each chapter is parsed as a stream, one
at a time, into paragraphs: <p> and the other block elements (a <div> holding text
directly too), the text of inline elements joined, <br/> a space. Headings, <hr/> and the
start of each chapter end a conversation; the paragraphs then follow the .txt novel's
speech rules (`novel.conversations_from_paragraphs`).

Left out: <head>, <script>, <style>, <nav>, page numbers and note references, and Project
Gutenberg's boilerplate, which its EPUBs mark as <section|div id="pg-header"> and
id="pg-footer" (class "pg-boilerplate"; older ones "pgheader"). A paragraph that reads
"*** START OF THE PROJECT GUTENBERG EBOOK" ends a conversation; one that reads "*** END OF
…" ends the book, as in a .txt.

A bad chapter (missing, not well-formed XHTML) fails the whole book with the chapter's
name: the ingester stores a file in one transaction, so nothing of it is kept.
"""

from __future__ import annotations

import html.entities
import io
import posixpath
import re
import xml.etree.ElementTree as ET
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO
from urllib.parse import unquote

from chatbot.corpus.readers.novel import (
    GUTENBERG_END,
    GUTENBERG_START,
    conversations_from_paragraphs,
)
from chatbot.corpus.source import Source
from chatbot.corpus.types import Conversation, ReadOptions
from chatbot.errors import ReaderError

MAX_STREAM_BYTES = 256 << 20  # an unseekable input is read into memory: refuse beyond this
MAX_PACKAGE_BYTES = 16 << 20  # container.xml and the OPF are parsed whole
MAX_PARAGRAPH_CHARS = 50_000  # a paragraph that never ends is cut (as .txt cuts 500 lines)
CHUNK = 1 << 16  # bytes of a chapter fed to the parser at a time

CONTAINER = "META-INF/container.xml"
_CHAPTER_TYPES = frozenset({"application/xhtml+xml", "text/html"})
# Elements that start and end a paragraph; all others are inline and join their text.
_BLOCKS = frozenset(
    "address article aside blockquote body caption center dd details div dl dt figcaption"
    " figure footer header html li main ol p pre section summary table td th tr ul".split()
)
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_SKIPPED = frozenset({"head", "script", "style", "nav", "template"})
_SKIPPED_IDS = frozenset({
    "pg-header", "pg-footer", "pg-machine-header", "pg-start-separator", "pg-end-separator",
    "project-gutenberg-license",
})  # fmt: skip
# Gutenberg's boilerplate; "pagenum": Gutenberg's "[Pg 12]" markers inside paragraphs.
_SKIPPED_CLASSES = frozenset({"pg-boilerplate", "pgheader", "pgfooter", "pagenum"})
_EPUB_TYPE = "{http://www.idpf.org/2007/ops}type"
_SKIPPED_TYPES = frozenset({"pagebreak", "noteref", "footnote", "endnote", "footnotes", "endnotes"})
_XML_ENTITIES = frozenset({b"amp", b"lt", b"gt", b"quot", b"apos"})
_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")


def read(source: Source, options: ReadOptions) -> Iterator[Conversation]:
    """Conversations from an EPUB's chapters, yielded as each one ends."""
    # reading(): a damaged outer stream (an .epub inside an archive) fails as one line.
    with source.reading(), source.binary() as f:
        with _open_zip(f, source) as archive:
            chapters = _spine(archive, source)
            yield from conversations_from_paragraphs(_book(archive, chapters, source, options))


def _open_zip(f: BinaryIO, source: Source) -> zipfile.ZipFile:
    """The archive; zipfile seeks, so a stream (an archive member) is read into memory."""
    if not f.seekable():
        data = f.read(MAX_STREAM_BYTES + 1)
        if len(data) > MAX_STREAM_BYTES:
            raise ReaderError(source.path, f"EPUB over {MAX_STREAM_BYTES >> 20} MB inside a stream")
        f = io.BytesIO(data)
    try:
        return zipfile.ZipFile(f)
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise ReaderError(source.path, "not an EPUB: not a zip archive") from None


def _local(tag: str) -> str:
    """The element name without its namespace: '{http://…/xhtml}p' -> 'p'."""
    return tag.rsplit("}", 1)[-1].lower()


def _package_xml(archive: zipfile.ZipFile, name: str, source: Source) -> ET.Element:
    """container.xml or the OPF, parsed whole (both are small)."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ReaderError(source.path, f"not an EPUB: {name} is missing") from None
    if info.file_size > MAX_PACKAGE_BYTES:
        raise ReaderError(source.path, f"{name}: over {MAX_PACKAGE_BYTES >> 20} MB")
    try:
        return ET.fromstring(archive.read(info))
    except ET.ParseError as e:
        raise ReaderError(source.path, f"{name}: invalid XML: {_parse_error(e)}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise ReaderError(source.path, f"{name}: cannot unpack: {e}") from None


def _spine(archive: zipfile.ZipFile, source: Source) -> list[str]:
    """The archive members of the chapters, in reading order; all checked to be there."""
    container = _package_xml(archive, CONTAINER, source)
    opf_name = next(
        (e.get("full-path", "") for e in container.iter() if _local(e.tag) == "rootfile"), ""
    )
    if not opf_name:
        raise ReaderError(source.path, f"{CONTAINER} names no rootfile (the OPF package)")
    opf = _package_xml(archive, opf_name, source)
    manifest = {
        e.get("id"): (e.get("href", ""), e.get("media-type", ""))
        for e in opf.iter()
        if _local(e.tag) == "item"
    }
    base = posixpath.dirname(opf_name)
    names = set(archive.namelist())
    chapters: list[str] = []
    for itemref in (e for e in opf.iter() if _local(e.tag) == "itemref"):
        idref = itemref.get("idref")
        if idref not in manifest:
            raise ReaderError(source.path, f"{opf_name}: spine item {idref!r} not in the manifest")
        href, media_type = manifest[idref]
        if itemref.get("linear") == "no" or media_type not in _CHAPTER_TYPES:
            continue  # an out-of-flow extra, or no text (an SVG or image page)
        href = href.split("#", 1)[0]
        # hrefs are URLs relative to the OPF's folder; a few zips keep the escapes in names.
        candidates = [posixpath.normpath(posixpath.join(base, h)) for h in (unquote(href), href)]
        name = next((c for c in candidates if c in names), None)
        if name is None:
            raise ReaderError(source.path, f"{candidates[0]}: in the spine but not in the archive")
        chapters.append(name)
    if not chapters:
        raise ReaderError(source.path, f"{opf_name}: the spine lists no XHTML chapters")
    return chapters


def _book(
    archive: zipfile.ZipFile, chapters: list[str], source: Source, options: ReadOptions
) -> Iterator[list[str]]:
    """Paragraphs of all chapters; an empty one where a chapter or section starts."""
    done = 0
    for name in chapters:
        yield []
        for paragraph in _chapter(archive, name, source):
            first = paragraph[0] if paragraph else ""
            if GUTENBERG_END.match(first):
                return  # the rest is Gutenberg's licence
            yield [] if GUTENBERG_START.match(first) else paragraph
        done += archive.getinfo(name).compress_size
        options.progress(done)  # compressed bytes of the chapters read so far


def _chapter(archive: zipfile.ZipFile, name: str, source: Source) -> Iterator[list[str]]:
    """The paragraphs of one XHTML chapter, parsed as a stream."""
    target = _Paragraphs(lambda message: source.warn(f"{name}: {message}"))
    parser = ET.XMLParser(target=target)
    try:
        with archive.open(name) as f:
            for chunk in _numeric_entities(f):
                parser.feed(chunk)
                yield from target.take()
        parser.close()
    except ET.ParseError as e:
        raise ReaderError(source.path, f"{name}: invalid XHTML: {_parse_error(e)}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise ReaderError(source.path, f"{name}: cannot unpack: {e}") from None
    yield from target.take()


def _parse_error(e: ET.ParseError) -> str:
    """'mismatched tag (line 12)' from 'mismatched tag: line 12, column 4'."""
    return f"{str(e).rsplit(': line', 1)[0]} (line {e.position[0]})"


def _numeric_entities(f: BinaryIO) -> Iterator[bytes]:
    """The bytes with HTML's named entities (&nbsp; &mdash;) as numeric references.

    XML knows only five names and EPUB 3's XHTML declares no others, but books use them.
    """
    held = b""
    while chunk := f.read(CHUNK):
        data = held + chunk
        cut = data.rfind(b"&", max(0, len(data) - 40))
        if cut >= 0 and b";" not in data[cut:]:  # an entity may go on in the next chunk
            data, held = data[:cut], data[cut:]
        else:
            held = b""
        yield _ENTITY.sub(_numeric, data)
    yield _ENTITY.sub(_numeric, held)


def _numeric(match: re.Match[bytes]) -> bytes:
    name = match.group(1)
    text = None if name in _XML_ENTITIES else html.entities.html5.get(name.decode() + ";")
    if text is None:
        return match.group(0)  # XML's own, or unknown: the parser decides
    return "".join(f"&#{ord(ch)};" for ch in text).encode()


class _Paragraphs:
    """An XMLParser target that turns one XHTML document into paragraphs.

    `take()` hands over those finished so far: a paragraph is a one-line list, and an empty
    list marks a section boundary (a heading or <hr/>).
    """

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.warn = warn
        self.parts: list[str] = []  # text of the paragraph being read
        self.size = 0
        self.skipping = 0  # depth inside an element whose text is left out
        self.ready: list[list[str]] = []

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if self.skipping:
            self.skipping += 1
            return
        name = _local(tag)
        if name in _BLOCKS:
            self._flush()
        if name in _HEADINGS or name == "hr":
            self._flush()
            self.ready.append([])
        elif name == "br":
            self.parts.append(" ")
        if name in _HEADINGS or name in _SKIPPED or _skipped(attrib):
            self.skipping = 1  # a heading's text is a title, not narration

    def end(self, tag: str) -> None:
        if self.skipping:
            self.skipping -= 1
        elif _local(tag) in _BLOCKS:
            self._flush()

    def data(self, text: str) -> None:
        if self.skipping:
            return
        self.parts.append(text)
        self.size += len(text)
        if self.size > MAX_PARAGRAPH_CHARS:
            self.warn(f"a paragraph over {MAX_PARAGRAPH_CHARS} characters was cut")
            self._flush()

    def close(self) -> None:
        self._flush()

    def take(self) -> list[list[str]]:
        ready, self.ready = self.ready, []
        return ready

    def _flush(self) -> None:
        text = " ".join("".join(self.parts).split())
        self.parts = []
        self.size = 0
        if text:
            self.ready.append([text])


def _skipped(attrib: dict[str, str]) -> bool:
    """Gutenberg boilerplate, page numbers and notes, known by id, class or epub:type."""
    return (
        attrib.get("id") in _SKIPPED_IDS
        or not _SKIPPED_CLASSES.isdisjoint(attrib.get("class", "").split())
        or not _SKIPPED_TYPES.isdisjoint(attrib.get(_EPUB_TYPE, "").split())
    )
