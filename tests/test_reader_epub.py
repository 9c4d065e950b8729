"""The EPUB reader: chapters in spine order, read with the novel's speech rules."""

from __future__ import annotations

import html
import io
import re
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest

from chatbot.corpus.formats import detect
from chatbot.corpus.readers import epub, novel
from chatbot.corpus.readers.epub import read
from chatbot.corpus.source import Source
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError
from tests.readers_util import read_all, texts

CONTAINER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="{opf}" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""

NAV_XHTML = """<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>Contents</title></head>
<body><nav epub:type="toc" id="toc"><h2>Contents</h2><ol>{items}</ol></nav></body>
</html>
"""


def xhtml(body: str, title: str = "A Book") -> str:
    """An EPUB 3 content document as ebookmaker writes them."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops"'
        ' lang="en" xml:lang="en">\n'
        f'<head><meta charset="utf-8"/><title>“{title},” it said</title>\n'
        '<link href="0.css" rel="stylesheet" type="text/css"/>\n'
        "<style>p { text-indent: 1em } /* “not speech” */</style></head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_epub(
    path: Path,
    documents: list[tuple[str, str]],
    spine: list[str] | None = None,
    opf: str = "OEBPS/content.opf",
    not_linear: frozenset[str] = frozenset(),
    members: dict[str, str] | None = None,
) -> Path:
    """An EPUB at `path`: `documents` are (href from the OPF, text) in manifest order,
    `spine` the hrefs in reading order (default: manifest order); `members` replace or
    add raw archive members (None as a value leaves one out)."""
    spine = [href for href, _ in documents] if spine is None else spine
    ids = {href: f"item{i}" for i, (href, _) in enumerate(documents, 1)}
    base = opf.rpartition("/")[0]
    manifest = "\n".join(
        f'    <item id="{ids[href]}" href="{href}" media-type="application/xhtml+xml"/>'
        for href, _ in documents
    )
    linear = {href: ' linear="no"' for href in not_linear}
    itemrefs = "\n".join(
        f'    <itemref idref="{ids.get(href, href)}"{linear.get(href, "")}/>' for href in spine
    )
    nav_items = "".join(f'<li><a href="{href}">“{href}”</a></li>' for href, _ in documents)
    package = f"""<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">http://www.gutenberg.org/11</dc:identifier>
    <dc:title>A Book</dc:title><dc:language>en</dc:language>
  </metadata>
  <manifest>
{manifest}
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="css" href="0.css" media-type="text/css"/>
  </manifest>
  <spine>
{itemrefs}
  </spine>
</package>
"""
    files: dict[str, str | None] = {
        "META-INF/container.xml": CONTAINER_XML.format(opf=opf),
        opf: package,
        f"{base}/nav.xhtml".lstrip("/"): NAV_XHTML.format(items=nav_items),
        f"{base}/0.css".lstrip("/"): "p { margin: 0 }",
    }
    for href, text in documents:
        files[unquote(f"{base}/{href}".lstrip("/"))] = text
    files.update(members or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        # The OCF rule: "mimetype" first and stored, so `file` and readers can sniff it.
        z.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip", zipfile.ZIP_STORED)
        for name, text in files.items():
            if text is not None:
                z.writestr(name, text)
    return path


def book(tmp_path: Path, *chapters: str, **kwargs) -> list[list[str]]:
    """Conversations of an EPUB whose chapters have these XHTML bodies."""
    documents = [(f"ch{i}.xhtml", xhtml(body)) for i, body in enumerate(chapters, 1)]
    return texts(read_all(read, write_epub(tmp_path / "book.epub", documents, **kwargs)))


# Small books.


def test_paragraphs_become_turns_as_in_a_txt_novel(tmp_path):
    body = """
<p>“Who are <i>you?</i>” said the
Caterpillar.</p>
<p>This was not an encouraging opening for a conversation.</p>
<p>“I—I hardly know, sir,” said Alice.</p>
"""
    assert book(tmp_path, body) == [["Who are you?", "I—I hardly know, sir."]]


def test_spine_order_wins_over_manifest_order(tmp_path):
    documents = [
        ("ch1.xhtml", xhtml("<p>“First in the manifest,” said A.</p>")),
        ("ch2.xhtml", xhtml("<p>“First in the spine,” said B.</p>")),
    ]
    path = write_epub(tmp_path / "b.epub", documents, spine=["ch2.xhtml", "ch1.xhtml"])
    assert texts(read_all(read, path)) == [["First in the spine."], ["First in the manifest."]]


def test_a_new_chapter_ends_the_conversation(tmp_path):
    # No heading at all: the chapter boundary alone ends it, and speech left open at the
    # end of one chapter does not run on into the next.
    assert book(tmp_path, "<p>“One,” said A.</p><p>“Two, and</p>", "<p>“Three.”</p>") == [
        ["One.", "Two, and"],
        ["Three."],
    ]


@pytest.mark.parametrize(
    "boundary",
    [
        "<h2>CHAPTER II.<br/>The Pool of Tears</h2>",
        "<h3>“Who Stole the Tarts?”</h3>",  # a title, not speech
        '<div class="chapter"><h2><a id="chap02"></a>Part Two</h2></div>',
        '<hr class="tb"/>',
        "<p>* * *</p>",
        "<p>CHAPTER II.</p>",
    ],
)
def test_headings_and_breaks_end_a_conversation(tmp_path, boundary):
    body = f"<p>“Hello,” said A.</p><p>“Hi,” said B.</p>{boundary}<p>“Later,” said C.</p>"
    assert book(tmp_path, body) == [["Hello.", "Hi."], ["Later."]]


def test_nested_inline_markup_line_breaks_and_text_in_divs(tmp_path):
    body = """
<div class="chapter">
<p>“<em>Who</em> are <span class="smcap"><i>you</i></span>?” said the
<a href="#c">Caterpillar</a>.</p>
<p>“Line one<br/>line two,” said <b>A<sup>1</sup></b>.</p>
<div>“A div holding text,” said B. <span>“And <strong>more</strong>.”</span></div>
<blockquote><div class="poem"><div class="stanza">
<span class="i0">“How doth the little crocodile<br/></span>
<span class="i1">Improve his shining tail!”<br/></span>
</div></div></blockquote>
</div>
"""
    assert book(tmp_path, body) == [
        [
            "Who are you?",
            "Line one line two.",
            "A div holding text, And more.",
            "How doth the little crocodile Improve his shining tail!",
        ]
    ]


ENTITIES = (
    "<p>&#8220;I&mdash;I&nbsp;hardly know &amp; care,&rdquo; said Alice. &lsquo;No&rsquo;</p>"
)


@pytest.mark.parametrize(
    "doctype",
    [
        "<!DOCTYPE html>",
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN"'
        ' "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">',
    ],
)
def test_html_entities_and_character_references(tmp_path, doctype):
    text = xhtml(ENTITIES).replace("<!DOCTYPE html>", doctype)
    path = write_epub(tmp_path / "b.epub", [("ch1.xhtml", text)])
    assert texts(read_all(read, path)) == [["I—I hardly know & care, No"]]


def test_entities_cut_between_chunks(tmp_path, monkeypatch):
    # Fed a few bytes at a time, entities and UTF-8 characters are split between chunks.
    body = "".join(ENTITIES.replace("Alice", f"Alice{i}") for i in range(20))
    expected = book(tmp_path, body)
    monkeypatch.setattr(epub, "CHUNK", 5)
    assert book(tmp_path, body) == expected
    assert expected[0][0] == "I—I hardly know & care, No"


def test_head_scripts_nav_page_numbers_and_notes_are_left_out(tmp_path):
    body = """
<script>var s = "“not speech”";</script>
<nav epub:type="landmarks"><ol><li><a href="#a">“Cover”</a></li></ol></nav>
<p>“Hello<span class="pagenum"><a id="Page_12">[Pg 12]</a></span> there,” said A.<a
epub:type="noteref" href="#n1">1</a></p>
<aside epub:type="footnote" id="n1"><p>“A note,” said the editor.</p></aside>
<p>“Bye.”</p>
"""
    assert book(tmp_path, body) == [["Hello there.", "Bye."]]


def test_not_linear_items_are_skipped(tmp_path):
    documents = [
        ("ch1.xhtml", xhtml("<p>“In the story,” said A.</p>")),
        ("notes.xhtml", xhtml("<p>“An endnote,” said B.</p>")),
    ]
    path = write_epub(tmp_path / "b.epub", documents, not_linear=frozenset({"notes.xhtml"}))
    assert texts(read_all(read, path)) == [["In the story."]]


def test_hrefs_are_relative_to_the_opf_and_url_encoded(tmp_path):
    documents = [("Text/chapter%20one.xhtml", xhtml("<p>“Found,” said A.</p>"))]
    path = write_epub(tmp_path / "b.epub", documents, opf="book/package.opf")
    assert "book/Text/chapter one.xhtml" in zipfile.ZipFile(path).namelist()
    assert texts(read_all(read, path)) == [["Found."]]


PG_HEADER = """
<section class="pg-boilerplate pgheader" id="pg-header" lang="en">
<h2 id="pg-header-heading">The Project Gutenberg eBook of <span>A Test</span></h2>
<div>This ebook is for the use of anyone anywhere in the United States and most other parts
of the world at no cost. You may copy it under the terms of the “Project Gutenberg License”
included with this ebook or online at <a href="https://www.gutenberg.org">www.gutenberg.org</a>.</div>
<div class="container" id="pg-machine-header"><p><strong>Title</strong>: A Test</p>
<p><strong>Release date</strong>: June 27, 2008 [eBook #11]<br/>Most recently updated: 2024</p>
</div>
<div id="pg-start-separator"><span>*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***</span></div>
</section>
"""

PG_FOOTER = """
<section class="pg-boilerplate pgheader" id="pg-footer" lang="en">
<div id="pg-end-separator"><span>*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***</span></div>
<div>Updated editions will replace the previous one—the old editions will be renamed.</div>
<div id="project-gutenberg-license" class="secthead">START: FULL LICENSE</div>
<div>To protect the Project Gutenberg™ mission, by using or distributing this work (or any
other work associated in any way with the phrase “Project Gutenberg”), you agree to comply
with all the terms of the Full Project Gutenberg™ License.</div>
<div>“Project Gutenberg” is a registered trademark. It may only be used on or associated
in any way with an electronic work by people who agree to be bound by the terms of this
agreement.</div>
<div>“Defects,” such as, but not limited to, incomplete, inaccurate or corrupt data.</div>
</section>
"""
END_SEPARATOR = re.compile(r'<div id="pg-end-separator">.*?</div>')


@pytest.mark.parametrize("footer", [PG_FOOTER, END_SEPARATOR.sub("", PG_FOOTER)])
def test_gutenberg_header_and_footer_sections_are_skipped(tmp_path, footer):
    # Without the END marker the section alone keeps the licence out.
    conversations = book(
        tmp_path,
        PG_HEADER + "<h1>A Test</h1><p>“Oh dear!” said the Rabbit.</p>",
        "<p>“Wait!” cried Alice.</p>" + footer,
    )
    assert conversations == [["Oh dear!"], ["Wait!"]]


def test_gutenberg_markers_as_plain_paragraphs(tmp_path):
    # Older Gutenberg EPUBs: the markers are text; after the end marker comes the licence.
    body = """
<p>“Small print,” they said.</p>
<p>*** START OF THIS PROJECT GUTENBERG EBOOK A TEST ***</p>
<p>“Oh dear!” said the Rabbit.</p>
<p>End of the Project Gutenberg EBook of A Test</p>
<p>“Project Gutenberg-tm,” they said.</p>
"""
    assert book(tmp_path, body, "<p>“Licence.”</p>") == [["Small print."], ["Oh dear!"]]


def test_format_is_detected_from_the_extension(tmp_path):
    assert detect(Path("novel.epub"), b"PK\x03\x04").read is read


def test_progress_and_streaming_one_chapter_at_a_time(tmp_path):
    documents = [
        ("ch1.xhtml", xhtml("<p>“One,” said A.</p><p>“Two.”</p>")),
        ("ch2.xhtml", "<html><body><p>broken</body></html>"),
    ]
    path = write_epub(tmp_path / "b.epub", documents)
    seen: list[int] = []
    options = ReadOptions(progress=seen.append)
    conversations = read(Source(path, options), options)
    # The first chapter's conversation comes before the second chapter is parsed.
    assert [t.text for t in next(conversations).turns] == ["One.", "Two."]
    assert seen == [zipfile.ZipFile(path).getinfo("OEBPS/ch1.xhtml").compress_size]
    with pytest.raises(ReaderError, match="OEBPS/ch2.xhtml: invalid XHTML"):
        next(conversations)


class _Unseekable(io.RawIOBase):
    """A decompressed stream, as an archive member may come: no seek."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_unseekable_input_is_read_into_memory_up_to_a_limit(tmp_path, monkeypatch):
    path = write_epub(tmp_path / "b.epub", [("ch1.xhtml", xhtml("<p>“Streamed.”</p>"))])
    monkeypatch.setattr(Source, "binary", lambda self: _Unseekable(path.read_bytes()))
    assert texts(read_all(read, path)) == [["Streamed."]]
    monkeypatch.setattr(epub, "MAX_STREAM_BYTES", 100)
    with pytest.raises(ReaderError, match="over 0 MB inside a stream"):
        read_all(read, path)


# Bad input: one line naming the member at fault.

GOOD = [("ch1.xhtml", xhtml("<p>“Hi.”</p>"))]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"members": {"META-INF/container.xml": None}},
            "not an EPUB: META-INF/container.xml is missing",
        ),
        (
            {"members": {"META-INF/container.xml": "<container><rootfiles/></container>"}},
            "META-INF/container.xml names no rootfile",
        ),
        (
            {"members": {"META-INF/container.xml": "<container>"}},
            r"META-INF/container.xml: invalid XML: no element found \(line 1\)",
        ),
        ({"members": {"OEBPS/content.opf": None}}, "not an EPUB: OEBPS/content.opf is missing"),
        (
            {"members": {"OEBPS/ch1.xhtml": None}},
            "OEBPS/ch1.xhtml: in the spine but not in the archive",
        ),
        (
            {"spine": ["ch1.xhtml", "gone"]},
            "OEBPS/content.opf: spine item 'gone' not in the manifest",
        ),
        ({"spine": []}, "OEBPS/content.opf: the spine lists no XHTML chapters"),
        (
            {"members": {"OEBPS/ch1.xhtml": xhtml("<p>“Hi.”</p>\n<p>an <i>unclosed</p>")}},
            r"OEBPS/ch1.xhtml: invalid XHTML: mismatched tag \(line 9\)",
        ),
        (
            {"members": {"OEBPS/ch1.xhtml": xhtml("<p>&nosuchentity;</p>")}},
            r"OEBPS/ch1.xhtml: invalid XHTML: undefined entity.* \(line 8\)",
        ),
    ],
)
def test_broken_books_raise_reader_error(tmp_path, kwargs, message):
    path = write_epub(tmp_path / "b.epub", GOOD, **kwargs)
    with pytest.raises(ReaderError, match=message) as error:
        read_all(read, path)
    assert error.value.path == str(path) and "\n" not in str(error.value)


@pytest.mark.parametrize("content", [b"just some text\n", b"PK\x03\x04 truncated", b""])
def test_not_a_zip_raises_reader_error(tmp_path, content):
    path = tmp_path / "b.epub"
    path.write_bytes(content)
    with pytest.raises(ReaderError, match="not a zip archive|empty file"):
        read_all(read, path)


# A real book: Alice laid out as Project Gutenberg's EPUBs are.


def _alice_epub(txt: str, license_text: str, path: Path) -> Path:
    """Alice as ebookmaker lays it out: a cover wrapper, the pg-header with the title page
    and contents, one file per chapter (<div class="chapter"><h2>…</h2><p>…), poems as
    stanzas of spans, italics as <i>, and the pg-footer with the licence at the end."""
    parts = re.split(r"^(CHAPTER [IVXL]+\.)\n(.*)\n", txt, flags=re.M)
    front, chapters = parts[0], [parts[i : i + 3] for i in range(1, len(parts), 3)]
    assert len(chapters) == 12 and "Contents" in front
    contents = "".join(
        f'<tr><td><a class="pginternal" href="ch{n}.xhtml#chap{n:02}">{heading}</a></td>'
        f"<td>{html.escape(title)}</td></tr>"
        for n, (heading, title, _) in enumerate(chapters, 1)
    )
    title_page = (
        PG_HEADER.replace("A Test", "Alice’s Adventures in Wonderland")
        + '<div class="figcenter"><img src="images/cover.jpg" alt=""/></div>'
        + "<h1>Alice’s Adventures in Wonderland</h1><h2>by Lewis Carroll</h2>"
        + "<h3>THE MILLENNIUM FULCRUM EDITION 3.0</h3>"
        + f'<h2>Contents</h2><table class="toc">{contents}</table>'
    )
    documents = [("wrap0000.xhtml", xhtml('<div class="cover"><img src="cover.jpg"/></div>'))]
    documents.append(("book-h-0.htm.xhtml", xhtml(title_page)))
    for n, (heading, title, text) in enumerate(chapters, 1):
        body = [f'<div class="chapter"><h2><a id="chap{n:02}"></a>{heading}<br/>{title}</h2>']
        body += [_html_paragraph(p) for p in re.split(r"\n\s*\n", text) if p.strip()]
        body.append("</div>")
        if n == len(chapters):
            licence = "".join(f"<div>{html.escape(p)}</div>" for p in license_text.split("\n\n"))
            footer = PG_FOOTER.replace("A TEST", "ALICE’S ADVENTURES IN WONDERLAND")
            body.append(footer.replace("</section>", licence + "</section>"))
        documents.append((f"ch{n}.xhtml", xhtml("\n".join(body))))
    return write_epub(path, documents)


def _html_paragraph(text: str) -> str:
    lines = text.strip("\n").split("\n")
    if lines[0].startswith(" "):  # indented lines: a poem or a letter
        spans = "\n".join(
            f'<span class="i{len(line) - len(line.lstrip())}">{_inline(line.strip())}<br/></span>'
            for line in lines
        )
        return f'<div class="poem"><div class="stanza">\n{spans}\n</div></div>'
    return f"<p>\n{_inline(text.strip())}\n</p>"


def _inline(text: str) -> str:
    text = html.escape(text, quote=False).replace("[Illustration]", "")
    return re.sub(r"(?<![\w_])_(?=[^\s_])(.*?[^\s_])_(?!_)", r"<i>\1</i>", text, flags=re.S)


def test_alice_epub_reads_as_the_txt(corpora, tmp_path):
    novels = corpora / "novels"
    txt_path = novels / "alice_in_wonderland.txt"
    txt = txt_path.read_text(encoding="utf-8")
    licence = (novels / "GUTENBERG-LICENSE.txt").read_text(encoding="utf-8")
    path = _alice_epub(txt, licence, tmp_path / "alice.epub")
    from_epub = texts(read_all(read, path))
    assert from_epub == texts(read_all(novel.read, txt_path))
    # The measured shape of the .txt (see test_reader_novel.py), and no licence text.
    assert len(from_epub) == 24 and sum(map(len, from_epub)) == 677
    turns = [t for c in from_epub for t in c]
    assert not any("Gutenberg" in t or "Copyright" in t for t in turns)
    assert "Who are you?" in turns and "There isn’t any." in turns
