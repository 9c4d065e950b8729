"""The OPUS OpenSubtitles XML reader: cues rebuilt from <time> marks, tokens joined back,
and the same turns as the SRT file the OPUS one was made from."""

from __future__ import annotations

import gzip
import re
import tracemalloc
from pathlib import Path
from typing import BinaryIO

import pytest

from chatbot.corpus.formats import detect
from chatbot.corpus.readers import opus, srt
from chatbot.corpus.source import Source
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError
from tests.readers_util import read_all, texts


class GzipSource(Source):
    """A .xml.gz read through its decompressed stream, as an archive reader hands a member:
    not a real path, not seekable."""

    def binary(self) -> BinaryIO:
        return gzip.open(self.path, "rb")


def write(tmp_path: Path, text: str, name: str = "film.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def cues(path: Path, options: ReadOptions | None = None) -> list[tuple[int, int, str]]:
    source = Source(path, options or ReadOptions())
    return [(c.start_ms, c.end_ms, c.text) for c in opus.parse(source)]


def document(body: str) -> str:
    return f'<?xml version="1.0" encoding="utf-8"?>\n<document id="4296906">\n{body}</document>\n'


def tokenized(sentence_id: int, text: str, before: str = "", after: str = "") -> str:
    """An <s> of <w> tokens (space-separated in `text`), with marks before and after."""
    words = "".join(f'    <w id="{sentence_id}.{i}">{w}</w>\n'
                    for i, w in enumerate(text.split(), 1))
    return f'  <s id="{sentence_id}">\n{before}{words}{after}  </s>\n'


def mark(cue: int, kind: str, value: str) -> str:
    return f'    <time id="T{cue}{kind}" value="{value}" />\n'


# From OpusTools' opustools_pkg/tests (test_sentence_parser.py, os.xml and os_raw.xml): one
# cue of two dash lines that the sentence splitter cut into two sentences.
OS_XML = document(
    tokenized(1, "- How 'd you score that ?", before=mark(1, "S", "00:00:05,897"))
    + tokenized(2, "- Mike the groundskeeper .", after=mark(1, "E", "00:00:08,654"))
)
OS_RAW = document("""  <s id="1">
    <time id="T1S" value="00:00:05,897" />
- How'd you score that?
  </s>
  <s id="2">
- Mike the groundskeeper.
    <time id="T1E" value="00:00:08,654" />
  </s>
""")
# From OpusTools' test_opus_langid.py (osrawfi.xml): sentence 3 has no mark (it is in
# cue 2, which sentence 2 opens), the last cue never ends, and <meta> follows.
OSRAWFI = document("""  <s id="1">
    <time id="T1S" value="00:01:48,446" />
Hitto, tämä vuotaa.
    <time id="T1E" value="00:01:51,324" />
  </s>
  <s id="2">
    <time id="T2S" value="00:01:51,366" />
Voi itku.
  </s>
  <s id="3">
Haavasta valuu aivokudosta.
    <time id="T2E" value="00:01:54,403" />
  </s>
  <s id="4">
    <time id="T5S" value="00:01:59,206" />
- Mikä hänen verenpaineensa on?
  </s>
  <meta>
    <conversion>
      <sentences>723</sentences>
    </conversion>
    <subtitle>
      <language>Finnish</language>
      <duration>00:47:58,675</duration>
    </subtitle>
  </meta>
""")


def test_opustools_fixtures_tokenized_and_raw_give_two_dash_turns(tmp_path):
    for name, text in (("os.xml", OS_XML), ("os_raw.xml", OS_RAW)):
        path = write(tmp_path, text, name)
        assert cues(path) == [
            (5897, 8654, "- How'd you score that?\n- Mike the groundskeeper.")
        ]
        assert texts(read_all(opus.read, path)) == [
            ["How'd you score that?", "Mike the groundskeeper."]
        ]


def test_sentence_without_marks_meta_ignored_and_cue_open_at_the_end(tmp_path):
    assert cues(write(tmp_path, OSRAWFI)) == [
        (108446, 111324, "Hitto, tämä vuotaa."),
        (111366, 114403, "Voi itku.\nHaavasta valuu aivokudosta."),
        (119206, 119206, "- Mikä hänen verenpaineensa on?"),  # no end: it ends where it starts
    ]


# "I was thinking | about you." spans two cues: one sentence holds T1E and T2S.
SPANNING = document("""  <s id="1">
    <time id="T1S" value="00:00:01,000" />
    <w id="1.1">I</w>
    <w id="1.2">was</w>
    <w id="1.3">thinking</w>
    <time id="T1E" value="00:00:02,000" />
    <time id="T2S" value="00:00:02,100" />
    <w id="1.4">about</w>
    <w id="1.5">you</w>
    <w id="1.6">.</w>
    <time id="T2E" value="00:00:04,000" />
  </s>
  <s id="2">
    <time id="T3S" value="00:00:04,500" />
    <w id="2.1">-</w>
    <w id="2.2">And</w>
    <w id="2.3">?</w>
    <time id="T3E" value="00:00:05,000" />
  </s>
""")


def test_one_sentence_ends_a_cue_and_starts_the_next(tmp_path):
    path = write(tmp_path, SPANNING)
    assert cues(path) == [(1000, 2000, "I was thinking"), (2100, 4000, "about you."),
                          (4500, 5000, "- And?")]
    # The cue that finishes the sentence joins the turn it continues (as in SRT).
    assert texts(read_all(opus.read, path)) == [["I was thinking about you.", "And?"]]


def test_sentences_between_cues_go_to_the_next_cue_else_the_last(tmp_path):
    path = write(tmp_path, document(
        tokenized(1, "First .", before=mark(1, "S", "00:00:01,000"),
                  after=mark(1, "E", "00:00:02,000"))
        + tokenized(2, "Between .")
        + mark(2, "S", "00:00:03,000")  # a mark between sentences
        + tokenized(3, "Second .", after=mark(2, "E", "00:00:04,000"))
        + tokenized(4, "After all .")
    ))
    assert cues(path) == [(1000, 2000, "First."), (3000, 4000, "Between.\nSecond.\nAfter all.")]


def test_dash_line_then_continuation_is_one_turn(tmp_path):
    # The splitter cut "- School. Now." in two; "Now." has no dash: the same speaker.
    path = write(tmp_path, document(
        tokenized(1, "- Where ?", before=mark(1, "S", "00:00:01,000"))
        + tokenized(2, "- School .") + tokenized(3, "Now .", after=mark(1, "E", "00:00:03,000"))
    ))
    assert cues(path) == [(1000, 3000, "- Where?\n- School.\nNow.")]
    assert texts(read_all(opus.read, path)) == [["Where?", "School. Now."]]


def test_raw_lines_inside_a_sentence(tmp_path):
    path = write(tmp_path, document("""  <s id="1">
    <time id="T1S" value="00:00:01,000" />
    You're a fool for traveling alone,
    so completely unprepared. - Really?
    - Yes.
    <time id="T1E" value="00:00:03,000" />
  </s>
"""))
    # Lines of a sentence join with a space; a dash line stays a line (a new speaker).
    assert cues(path) == [
        (1000, 3000, "You're a fool for traveling alone, so completely unprepared. - Really?"
                     "\n- Yes.")
    ]


@pytest.mark.parametrize(("tokens", "text"), [
    ("How 'd you score that ?", "How'd you score that?"),
    ("I do n't know . I 'm sure he 's fine , they 're here ; we 've seen it",
     "I don't know. I'm sure he's fine, they're here; we've seen it"),
    ("You 'll see ! WE CA N'T", "You'll see! WE CAN'T"),
    ("So . . .", "So..."),
    ("Wait ... what ? !", "Wait... what?!"),
    ("( laughs ) [ door opens ] { x }", "(laughs) [door opens] {x}"),
    ('He said " go home " and left .', 'He said "go home" and left.'),
    ('" Hello , " she said .', '"Hello," she said.'),
    ("“ Hi ” 50 %", "“Hi” 50%"),
    ("- School .", "- School."),
    ("- Where ? - School .", "- Where?\n- School."),
    ("I - I do n't know .", "I - I don't know."),
    ("rock 'n' roll", "rock 'n' roll"),
])
def test_detokenize(tokens, text):
    assert opus.detokenize(tokens.split()) == text


@pytest.mark.parametrize(("value", "ms"), [
    ("00:01:02,500", 62500), ("00:01:02.500", 62500), ("00:01:02,5", 62500),
    ("00:01:02", 62000), ("1:01:02,05", 3662050), (" 00:00:01,000 ", 1000),
    ("", None), ("01:02", None), ("00:01:02,xyz", None), (None, None),
])
def test_time_values(value, ms):
    assert opus.to_ms(value) == ms


def test_time_without_milliseconds_and_unreadable_marks(tmp_path, options, warnings_list):
    path = write(tmp_path, document(
        tokenized(1, "One .", before=mark(1, "S", "00:00:05"), after=mark(1, "E", "00:00:07"))
        + tokenized(2, "Two .", before=mark(2, "S", "soon"), after=mark(2, "E", "00:00:09,000"))
        + tokenized(3, "Three .", before=mark(3, "S", "00:00:10,000"),
                    after=mark(3, "E", "00:00:11,000"))
    ))
    # The unreadable start is ignored: "Two." waits for the next cue to start.
    assert cues(path, options) == [(5000, 7000, "One."), (10000, 11000, "Two.\nThree.")]
    assert len(warnings_list) == 1
    assert "film.xml" in warnings_list[0] and "'soon'" in warnings_list[0]


def test_missing_end_marks_and_a_document_without_any(tmp_path, options, warnings_list):
    path = write(tmp_path, document(
        tokenized(1, "One .", before=mark(1, "S", "00:00:01,000"))  # T1E missing
        + tokenized(2, "Two .", before=mark(2, "S", "00:00:02,000"),
                    after=mark(2, "E", "00:00:03,000"))
    ))
    assert cues(path) == [(1000, 2000, "One."), (2000, 3000, "Two.")]
    untimed = write(tmp_path, document(tokenized(1, "One .") + tokenized(2, "Two .")), "u.xml")
    assert cues(untimed, options) == []
    assert warnings_list == [f"{untimed}: 2 sentences outside any timed cue skipped"]


def test_a_cue_that_never_ends_is_passed_on_in_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(opus, "_MAX_LINES", 2)  # memory stays flat: no cue grows unbounded
    path = write(tmp_path, document(
        tokenized(1, "One .", before=mark(1, "S", "00:00:01,000"))
        + tokenized(2, "Two .") + tokenized(3, "Three .")
    ))
    assert cues(path) == [(1000, 1000, "One.\nTwo."), (1000, 1000, "Three.")]


def test_meta_text_is_not_read(tmp_path):
    path = write(tmp_path, document(
        '  <meta><source><w id="m1">Subtitles</w> by nobody</source></meta>\n'
        + tokenized(1, "Hello .", before=mark(1, "S", "00:00:01,000"),
                    after=mark(1, "E", "00:00:02,000"))
    ))
    assert cues(path) == [(1000, 2000, "Hello.")]


def test_malformed_xml_names_the_line(tmp_path):
    path = write(tmp_path, document(
        '  <s id="1">\n    <time id="T1S" value="00:00:01,000" />\n    <w id="1.1">Hi</s>\n'
    ))
    with pytest.raises(ReaderError, match=r"film\.xml:5: invalid XML: mismatched tag$"):
        cues(path)


def test_document_without_sentences(tmp_path):
    with pytest.raises(ReaderError, match=r"film\.xml: no sentences \(not an OPUS"):
        cues(write(tmp_path, document("  <meta><x>1</x></meta>\n")))


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(OS_XML.encode() * 50)
    path = tmp_path / "film.xml.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReaderError, match=r"film\.xml\.gz: truncated or corrupt compressed"):
        list(opus.parse(GzipSource(path, ReadOptions())))


def normalised(conversations) -> list[list[str]]:
    """Turn texts compared on their words: lower case, word characters, single spaces."""
    return [[" ".join(re.findall(r"\w+", turn.lower())) for turn in turns]
            for turns in texts(conversations)]


def test_real_opus_film_gives_the_turns_of_its_srt(corpora):
    options = ReadOptions()
    from_srt = read_all(srt.read, corpora / "subtitles/sintel_en.srt")
    gz = corpora / "opus/sintel_en.xml.gz"
    from_tokenized = list(opus.read(GzipSource(gz, options), options))
    raw = corpora / "opus/sintel_en_raw.xml"
    assert detect(raw, raw.read_bytes()[:4096]).name == "opus"
    from_raw = read_all(opus.read, raw)
    assert len(from_srt) == 11
    assert normalised(from_tokenized) == normalised(from_srt)
    assert normalised(from_raw) == normalised(from_srt)
    # Timing too: each turn starts when its SRT cue does.
    starts = [[t.start_ms for t in c.turns] for c in from_srt]
    assert [[t.start_ms for t in c.turns] for c in from_tokenized] == starts
    assert [[t.start_ms for t in c.turns] for c in from_raw] == starts


def long_document(path: Path, sentences: int) -> Path:
    """A tokenized document of `sentences` one-cue sentences, written as a stream."""
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<document id="1">\n')
        for i in range(1, sentences + 1):
            stamp = f"{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},000"
            f.write(f'<s id="{i}"><time id="T{i}S" value="{stamp}"/><w id="{i}.1">Hi</w>'
                    f'<w id="{i}.2">.</w><time id="T{i}E" value="{stamp}"/></s>\n')
        f.write("</document>\n")
    return path


def peak_bytes(path: Path, sentences: int) -> int:
    """The most memory (tracemalloc) that parsing the document takes at once."""
    source = Source(long_document(path, sentences), ReadOptions())
    tracemalloc.start()
    try:
        count = sum(1 for _ in opus.parse(source))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == sentences
    return peak


def test_memory_stays_flat_on_a_long_document(tmp_path):
    # 30,000 sentences, not more: tracemalloc makes parsing six times slower. (200,000
    # measured 0.37 MB, the same.) A tree kept whole would take over 30 MB.
    small = peak_bytes(tmp_path / "small.xml", 2_000)
    large = peak_bytes(tmp_path / "large.xml", 30_000)
    assert large < 1 << 20, large
    assert large - small < 100_000, (small, large)
