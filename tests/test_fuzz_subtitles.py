"""Arbitrary bytes into the subtitle readers and the whole ingest path: only our own error."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.corpus import ingest as ingesting
from chatbot.corpus.readers import ass, srt, ttml, vtt
from chatbot.corpus.source import Source
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError

# Pieces of real syntax so the fuzzer reaches past the first line.
PIECES = st.sampled_from([
    "1\n", "00:00:01,000 --> 00:00:02,000\n", "00:01.000 --> 00:02.000 align:start\n",
    "WEBVTT\n", "NOTE x\n", "[Events]\n", "Format: Start, End, Text\n",
    "Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,Hi\\Nthere\n", "- Hi.\n", "JOHN: Yo\n",
    "[MUSIC]\n", "♪ la ♪\n", "<i>x</i>\n", "{\\an8}\n", "\n", "\r\n", "99:99:99,999 --> 1\n",
    "\ufeff", "...", ",", "Hello there\n",
])
CONTENT = st.one_of(
    st.binary(max_size=400),
    st.lists(PIECES, max_size=30).map(lambda parts: "".join(parts).encode("utf-8")),
    st.lists(PIECES, max_size=30).map(lambda parts: "".join(parts).encode("utf-16")),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONTENT, st.sampled_from([srt, vtt, ass, ttml]))
def test_subtitle_readers_raise_only_reader_errors(data, reader):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.sub"
        path.write_bytes(data)
        options = ReadOptions()
        try:
            for conversation in reader.read(Source(path, options), options):
                assert conversation.turns and all(t.text.strip() for t in conversation.turns)
        except ReaderError as e:
            assert str(e).startswith(str(path)) and "\n" not in str(e)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONTENT, st.sampled_from(["a.srt", "a.vtt", "a.ass", "a.txt", "a.json", "a.yml",
                                 "a.jsonl", "a.tsv", "a.bin", "a.ttml", "movie_lines.txt"]))
def test_ingest_of_any_file_never_raises(data, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        with CorpusStore(Path(tmp) / "c.db") as store:
            result = ingesting.ingest_file(store, path, ReadOptions())
            if result.error:
                assert "\n" not in result.error
                assert store.stats()["sources"] == 0
