"""Subtitle readers (SRT, WebVTT, ASS) and their segmentation into conversations."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.corpus.readers import ass, srt, vtt
from chatbot.corpus.subtitles import cue as cue_module
from chatbot.corpus.subtitles.clean import clean_line, is_credit, strip_markup
from chatbot.corpus.subtitles.cue import Cue, CuesOutOfOrder, in_start_order
from chatbot.corpus.subtitles.segment import cleaned, is_unfinished, segment
from chatbot.corpus.types import ReadOptions
from tests.readers_util import read_all, texts


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def cue(start_s: float, end_s: float, *lines: str) -> Cue:
    return Cue(int(start_s * 1000), int(end_s * 1000), "\n".join(lines), 1)


# --- SRT parsing -------------------------------------------------------------------------


def test_srt_crlf_numbers_wrong_or_missing_and_blank_lines_in_text(tmp_path):
    text = (
        "7\r\n00:00:01,000 --> 00:00:02,000\r\nHello there.\r\n\r\n"
        "00:00:02,500 --> 00:00:04,000\r\nFirst line.\r\n\r\nAfter a blank line.\r\n\r\n"
        "3\r\n00:00:04,500 --> 00:00:05,000\r\nBye.\r\n"
    )
    convs = read_all(srt.read, write(tmp_path, "a.srt", text))
    assert texts(convs) == [["Hello there.", "First line. After a blank line.", "Bye."]]
    assert convs[0].turns[0].start_ms == 1000 and convs[0].turns[0].end_ms == 2000


def test_srt_markup_removed_and_empty_cues_skipped(tmp_path):
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\n<i>Where</i> <font color=\"red\">are</font> you?\n\n"
        "2\n00:00:02,100 --> 00:00:02,500\n\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\n{\\an8}Up here!\n"
    )
    assert texts(read_all(srt.read, write(tmp_path, "a.srt", text))) == [
        ["Where are you?", "Up here!"]
    ]


def test_srt_out_of_order_cues_are_sorted(tmp_path):
    text = (
        "2\n00:00:03,000 --> 00:00:04,000\nSecond.\n\n"
        "1\n00:00:01,000 --> 00:00:02,000\nFirst.\n\n"
        "3\n00:00:05,000 --> 00:00:06,000\nThird.\n"
    )
    assert texts(read_all(srt.read, write(tmp_path, "a.srt", text))) == [
        ["First.", "Second.", "Third."]
    ]


def test_malformed_timing_line_warns_with_file_and_line(tmp_path, options, warnings_list):
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\nGood.\n\n"
        "2\n00:00:02 --> 00:00:03\nLost with its timing.\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\nAlso good.\n"
    )
    path = write(tmp_path, "a.srt", text)
    assert texts(read_all(srt.read, path, options)) == [["Good.", "Also good."]]
    assert warnings_list == [f"{path}:6: malformed timing line skipped with its cue"]


def test_real_srt_bom_encodings_all_decode_the_same(corpora):
    names = ["utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"]
    results = [
        texts(read_all(srt.read, corpora / f"subtitles/pysrt-bom-{n}.srt")) for n in names
    ]
    assert results[0] and all(r == results[0] for r in results)
    assert not results[0][0][0].startswith("\ufeff")
    assert results[0][0][0].startswith("About 2 months ago I found myself on")


def test_real_windows_1252_matches_utf8(corpora):
    utf8 = texts(read_all(srt.read, corpora / "subtitles/pysrt-utf-8.srt"))
    legacy = texts(read_all(srt.read, corpora / "subtitles/pysrt-windows-1252.srt"))
    assert utf8 == legacy
    joined = " ".join(" ".join(c) for c in utf8)
    assert "présentateur" in joined and "AllSubs" not in joined
    assert sum(len(c) for c in utf8) > 1000


def test_real_srt_dash_cues_become_separate_turns(corpora):
    convs = texts(read_all(srt.read, corpora / "subtitles/pysrt-utf-8.srt"))
    flat = [t for c in convs for t in c]
    i = flat.index("Tu es à l'antenne.")
    assert flat[i + 1] == "Là, maintenant?"


def test_real_srt_without_indexes_and_odd_numbers(corpora):
    assert texts(read_all(srt.read, corpora / "subtitles/pysrt-no-indexes.srt"))
    ascii_turns = texts(read_all(srt.read, corpora / "subtitles/ascii.srt"))
    assert ascii_turns == [["ascii oh look ascii everywhere"]]


def test_real_srt_bilingual_and_text_after_arrow(corpora):
    convs = texts(read_all(srt.read, corpora / "subtitles/monsters.srt"))
    first = convs[0][0]
    assert first.startswith("我有个点子 OK, look, I think I have a plan here.")
    assert "hack the gibson" not in first
    crlf = texts(read_all(srt.read, corpora / "subtitles/monsters-win.srt"))
    assert crlf == convs


def test_real_srt_invalid_timestamps_warn(corpora, options, warnings_list):
    assert read_all(srt.read, corpora / "subtitles/pysrt-invalid.srt", options) == []
    assert warnings_list and warnings_list[0].endswith("pysrt-invalid.srt:2: malformed timing "
                                                       "line skipped with its cue")


def test_real_sintel_conversation(corpora):
    convs = texts(read_all(srt.read, corpora / "subtitles/sintel_en.srt"))
    assert convs[0][:3] == [
        "This blade has a dark past.",
        "It has shed much innocent blood.",
        "You're a fool for traveling alone, so completely unprepared.",
    ]


# --- WebVTT and ASS ----------------------------------------------------------------------


def test_real_vtt_without_hours(corpora):
    convs = read_all(vtt.read, corpora / "subtitles/elephants_dream_en.vtt")
    assert convs[0].turns[0].start_ms == 2170
    assert convs[0].turns[-1].text == "Great"


def test_vtt_blocks_settings_hours_and_voices(tmp_path):
    text = (
        "\ufeffWEBVTT - a title\n\nNOTE this is\na comment\n\nSTYLE\n::cue { color: red }\n\n"
        "REGION\nid:fred\n\n"
        "intro\n01:00:00.000 --> 01:00:02.000 align:start line:0\n<v Roger>Hi, how are you?\n\n"
        "00:00:02.500 --> 00:00:03.000\n<v.loud Mary>Fine, <i>thanks</i>.\n"
    )
    convs = read_all(vtt.read, write(tmp_path, "a.vtt", text))
    assert [(t.speaker, t.text) for t in convs[0].turns] == [("Mary", "Fine, thanks.")]
    assert [(t.speaker, t.text, t.start_ms) for t in convs[1].turns] == [
        ("Roger", "Hi, how are you?", 3_600_000)
    ]


def test_ass_dialogue_lines(tmp_path, options, warnings_list):
    text = (
        "[Script Info]\nTitle: x\n\n[V4+ Styles]\nFormat: Name, Fontname\nStyle: Default,Arial\n\n"
        "[Events]\n"
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n"
        "Dialogue: 0,0:00:03.00,0:00:04.00,Default,Bob,0,0,0,,Fine,\\Nthanks, and you?\n"
        "Comment: 0,0:00:01.50,0:00:02.00,Default,,0,0,0,,not spoken\n"
        "Dialogue: 0,0:00:01.00,0:00:02.50,Default,Ann,0,0,0,,{\\i1}How are you?{\\i0}\n"
        "Dialogue: 0,0:00:05.00,0:00:05.50,Default,,0,0,0,,{\\p1}m 0 0 l 100 0 100 100{\\p0}\n"
        "Dialogue: 0,bad,0:00:06.00,Default,,0,0,0,,x\n"
    )
    path = write(tmp_path, "a.ass", text)
    convs = read_all(ass.read, path, options)
    assert [(t.speaker, t.text) for t in convs[0].turns] == [
        ("Ann", "How are you?"),
        ("Bob", "Fine, thanks, and you?"),
    ]
    assert warnings_list == [f"{path}:14: Dialogue line with a malformed time skipped"]


# --- Cleaning and segmenting -------------------------------------------------------------


def test_sound_music_labels_and_credits():
    assert clean_line("[MUSIC PLAYING]") == (None, "", False)
    assert clean_line("(laughs) Very funny.") == (None, "Very funny.", False)
    assert clean_line("♪ Oh, my darling ♪") == (None, "", False)
    assert clean_line("♪ la la la") == (None, "", False)
    assert clean_line("JOHN: Get down!") == ("JOHN", "Get down!", False)
    assert clean_line("- DR. SMITH: Sit.") == ("DR. SMITH", "Sit.", True)
    assert clean_line("Note: it's late.") == (None, "Note: it's late.", False)
    assert strip_markup('<font color="#ff0">a</font> {\\an8}b') == "a b"
    assert is_credit("Downloaded From www.AllSubs.org")
    assert is_credit("Subtitles by the Addic7ed team")
    assert is_credit("Sync & corrections by someone")
    assert not is_credit("I'll see you at the station.")


def test_unfinished_sentences():
    assert is_unfinished("I was thinking")
    assert is_unfinished("I was thinking...")
    assert is_unfinished("Well,")
    assert not is_unfinished("Fine.")
    assert not is_unfinished('"Really?"')


def test_segment_gap_dashes_and_continuations():
    cues = [
        cue(1, 2, "I think that"),
        cue(2.2, 3, "we should go."),
        cue(3.5, 4, "- Now?", "- Yes, now."),
        cue(4.5, 5, "[door slams]"),
        cue(20, 21, "Who's there?"),
        cue(21.5, 22, "Downloaded from www.example.com"),
        cue(22.5, 23, "Me..."),
        cue(23.2, 24, "...your brother."),
    ]
    convs = list(segment(cleaned(cues), gap_seconds=5))
    assert texts(convs) == [
        ["I think that we should go.", "Now?", "Yes, now."],
        ["Who's there?", "Me... your brother."],
    ]
    assert (convs[0].turns[0].start_ms, convs[0].turns[0].end_ms) == (1000, 3000)


def test_segment_speaker_labels_split_and_attach():
    cues = [cue(1, 2, "ANN: Hi.", "BOB: Hello"), cue(2.5, 3, "there.")]
    convs = list(segment(cleaned(cues), 5))
    assert [(t.speaker, t.text) for t in convs[0].turns] == [
        ("ANN", "Hi."),
        ("BOB", "Hello there."),
    ]


def test_segment_gap_option(tmp_path):
    text = "".join(
        f"{i}\n00:00:{s:02d},000 --> 00:00:{s + 1:02d},000\nLine {i}.\n\n"
        for i, s in enumerate([1, 3, 10, 12], 1)
    )
    path = write(tmp_path, "a.srt", text)
    assert [len(c.turns) for c in read_all(srt.read, path)] == [2, 2]
    wide = ReadOptions(gap_seconds=10)
    assert [len(c.turns) for c in read_all(srt.read, path, wide)] == [4]


def test_reorder_window_and_external_sort():
    cues = list(cleaned([cue(5, 6, "late"), cue(1, 2, "a"), cue(2, 3, "b"), cue(3, 4, "c")]))
    assert [c[2][0][1] for c in in_start_order(cues, window=8)] == ["a", "b", "c", "late"]
    early_last = list(cleaned([cue(1, 2, "a"), cue(2, 3, "b"), cue(3, 4, "c"),
                               cue(0.5, 1, "early")]))
    with pytest.raises(CuesOutOfOrder):
        list(in_start_order(early_last, window=1))
    ordered = list(cue_module.externally_sorted(cues))
    assert [c[0] for c in ordered] == [1000, 2000, 3000, 5000]
    assert ordered[-1] == cues[0]


# --- TTML --------------------------------------------------------------------------------


def test_real_ttml_matches_the_same_cues_in_webvtt(corpora):
    from chatbot.corpus.readers import ttml

    as_ttml = read_all(ttml.read, corpora / "subtitles/elephants_dream_en.ttml")
    as_vtt = read_all(vtt.read, corpora / "subtitles/elephants_dream_en.vtt")
    assert texts(as_ttml) == texts(as_vtt)
    assert as_ttml[0].turns[0].start_ms == 2170


def test_ttml_times_spans_and_bad_xml(tmp_path):
    from chatbot.corpus.readers import ttml
    from chatbot.errors import ReaderError

    assert [ttml.to_ms(v) for v in ["00:00:02.170", "00:01:00:15", "2.5s", "250ms", "1m"]] == [
        2170, 60500, 2500, 250, 60000]
    text = ('<tt xmlns="http://www.w3.org/ns/ttml"><body><div>'
            '<p begin="00:00:01.000" end="00:00:02.000"><span>How</span> are you?</p>\n'
            '<p begin="00:00:02.500" end="00:00:03.000">Fine.<br/>Thanks.</p></div></body></tt>')
    assert texts(read_all(ttml.read, write(tmp_path, "a.ttml", text))) == [
        ["How are you?", "Fine. Thanks."]]
    broken = write(tmp_path, "b.ttml", "<tt>\n<p begin='1s'>x</tt>")
    with pytest.raises(ReaderError, match=r"b\.ttml:2: invalid XML"):
        read_all(ttml.read, broken)
