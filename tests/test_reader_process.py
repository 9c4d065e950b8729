"""A large subtitle file is parsed and cleaned by a second process (subtitles/child.py):
the same conversations, warnings, errors and progress as reading it in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.corpus import ingest as ingesting
from chatbot.corpus.formats import detect
from chatbot.corpus.readers import srt
from chatbot.corpus.source import Source
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.subtitles import child
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError

ROUGH_SRT = (
    "1\n00:00:01,000 --> 00:00:02,000\n- Where were you?\n- Out.\n\n"
    "2\n00:00:02,500 --> 00:00:03,000 X1:10 X2:20\n<i>I was thinking</i>\n\n"
    "3\n00:00:03,200 --> 00:00:0x\nskipped with its bad timing line\n\n"
    "3\n00:00:04,100 --> 00:00:05,000\nabout you.\n\n"
    "12:34 --> nonsense\nalso skipped\n\n"
    "5\n00:00:05,500 --> 00:00:06,000\nJOHN: Me? [laughs]\n\n"
    "6\n00:00:20,000 --> 00:00:21,000\nSubtitles by someone\n\n"
    "7\n00:00:21,000 --> 00:00:22,000\nLater.\n\n"
    "8\n00:00:22,500 --> 00:00:23,000\nMuch later.\n"
)


def read(path: Path, child_min_bytes: int, monkeypatch, **options) -> tuple[list, list]:
    """(conversations as tuples, warnings) of one file, through the reader process or not."""
    monkeypatch.setattr(child, "CHILD_MIN_BYTES", child_min_bytes)
    warnings: list[str] = []
    opts = ReadOptions(warn=warnings.append, **options)
    with open(path, "rb") as f:
        fmt = detect(path, f.read(1 << 16))
    conversations = [[tuple(t) for t in c.turns] for c in fmt.read(Source(path, opts), opts)]
    return conversations, warnings


def test_rough_file_reads_the_same_in_a_reader_process(tmp_path, monkeypatch):
    path = tmp_path / "rough.srt"
    path.write_text(ROUGH_SRT, encoding="utf-8")
    here = read(path, 1 << 40, monkeypatch)
    there = read(path, 0, monkeypatch)
    assert there == here
    conversations, warnings = there
    assert [[t[:2] for t in c] for c in conversations] == [
        [("Where were you?", None), ("Out.", None), ("I was thinking about you.", None),
         ("Me?", "JOHN")],
        [("Later.", None), ("Much later.", None)],
    ]
    assert warnings == [f"{path}:11: malformed timing line skipped with its cue",
                        f"{path}:18: malformed timing line skipped with its cue"]


def test_real_subtitles_read_the_same_in_a_reader_process(corpora, monkeypatch):
    files = sorted(p for p in (corpora / "subtitles").iterdir()
                   if p.suffix in {".srt", ".vtt", ".ttml"} and "invalid" not in p.name)
    assert files
    for path in files:
        assert read(path, 0, monkeypatch) == read(path, 1 << 40, monkeypatch), path


def test_reader_process_errors_name_the_line_and_store_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(child, "CHILD_MIN_BYTES", 0)
    path = tmp_path / "a.srt"
    cues = "".join(f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},500\nLine {i}.\n\n"
                   for i in range(1, 40))
    path.write_text(cues + "40\n00:00:41,000 --> 00:00:42,000\nFiné.\n", encoding="utf-8")
    with CorpusStore(tmp_path / "c.db") as store:
        result = ingesting.ingest_file(store, path, ReadOptions(encoding="ascii"))
        assert result.error == f"{path}:159: cannot decode as ascii; pass --encoding"
        assert store.stats() == {"sources": 0, "conversations": 0, "turns": 0, "duplicates": 0,
        "duplicate_conversations": 0}
        progress: list[int] = []
        result = ingesting.ingest_file(store, path, ReadOptions(progress=progress.append))
        assert result.error is None and result.turns == 40
        assert progress[-1] == path.stat().st_size


def test_stopping_early_ends_the_reader_process(tmp_path, monkeypatch):
    path = tmp_path / "long.srt"
    path.write_text("".join(f"{i}\n00:{i // 60 % 60:02d}:{i % 60:02d},000 --> "
                            f"00:{i // 60 % 60:02d}:{i % 60:02d},500\nLine {i}.\n\n"
                            for i in range(3600)), encoding="utf-8")
    source = Source(path, ReadOptions())
    cues = child.cleaned_in_child(srt.parse, source)
    assert next(cues)[2] == [(None, "Line 0.", False)]
    cues.close()  # the caller gives up: the child is killed and waited for, not left behind
    with pytest.raises(StopIteration):
        next(cues)


@pytest.mark.parametrize("python", ["no-such-python", "/bin/true"])
def test_a_reader_process_that_cannot_start_falls_back(tmp_path, monkeypatch, python):
    path = tmp_path / "a.srt"
    path.write_text(ROUGH_SRT, encoding="utf-8")
    here = read(path, 1 << 40, monkeypatch)
    if python.startswith("/") and not Path(python).exists():
        pytest.skip(f"{python} not on this system")
    # No interpreter at all, or one that exits at once without a word: read here instead.
    monkeypatch.setattr(child.sys, "executable", python if python.startswith("/")
                        else str(tmp_path / python))
    assert read(path, 0, monkeypatch) == here


def test_reader_error_from_the_process_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(child, "CHILD_MIN_BYTES", 0)
    path = tmp_path / "x.srt"
    path.write_bytes(b"1\n00:00:01,000 --> 00:00:02,000\nHi\xff\n")
    source = Source(path, ReadOptions(encoding="utf-8"))
    with pytest.raises(ReaderError, match=r"x\.srt:3: cannot decode as utf-8; pass --encoding$"):
        list(child.cleaned_in_child(srt.parse, source))
