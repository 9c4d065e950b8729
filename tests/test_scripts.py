"""Subtitles in other scripts segment as English does: real files of each (tests/data/scripts/,
see SOURCES.md there) and the cleaning rules they need."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.corpus.readers import srt
from chatbot.corpus.subtitles.clean import clean_line, split_dash_lines
from chatbot.corpus.subtitles.cue import Cue
from chatbot.corpus.subtitles.segment import cleaned, cue_pieces, is_unfinished, segment
from tests.readers_util import read_all, texts

SCRIPTS = Path(__file__).parent / "data" / "scripts"
DASHES = "-‐‑–—―－"


def turns(name: str) -> list[list[str]]:
    return texts(read_all(srt.read, SCRIPTS / name))


def flat(name: str) -> list[str]:
    return [t for conversation in turns(name) for t in conversation]


def test_every_real_file_yields_conversations_with_no_dash_left():
    for name in ["fa-persian.srt", "he-hebrew.srt", "ar-arabic.srt", "ja-japanese.srt",
                 "zh-chinese.srt", "ko-korean.srt"]:
        conversations = turns(name)
        counts = [len(c) for c in conversations]
        # Conversations of several turns each, not a scene glued into one turn per cue gap.
        assert len(conversations) >= 1 and sum(counts) >= 25, name
        assert max(counts) >= 5, name
        for text in (t for c in conversations for t in c):
            assert text[0] not in DASHES, (name, text)
            if name[:2] in ("fa", "he", "ar"):  # where the dash is stored last
                assert text[-1] not in DASHES, (name, text)


def test_real_persian_dash_turns_and_marks_put_at_the_end():
    texts_ = flat("fa-persian.srt")
    # "جی هو-\nهم-": two speakers, the dash stored at the end of each line.
    i = texts_.index("جی هو")
    assert texts_[i + 1] == "هم"
    assert texts_[i + 2] == "فعلا بیا صبر کنیم"
    # "اه،خراب میشه؟-\nام-"
    assert texts_[texts_.index("اه،خراب میشه؟") + 1] == "ام"
    # ". بین آسمان ..." and ". عزیزانشون برن ...": the full stop ends the turn.
    assert "اونجا کسای که به بهشت میرند تاوقتی که از یاد عزیزانشون برن واسه مدتی اونجا می مونند." \
        in texts_
    # "... مدرسه که تموم شد" is unfinished: the next cue completes it.
    assert "مدرسه که تموم شد... پیش عمو هونگ گو میرم" in texts_
    # Lines with no mark at all (most of this file) are turns of their own.
    assert texts_[texts_.index("بابا،تو این فصل باران می باره؟") + 1] == "احتمالا"


def test_real_persian_file_is_no_longer_one_turn_per_scene():
    conversations = turns("fa-persian.srt")
    assert len(conversations) >= 8
    assert sum(len(c) for c in conversations) >= 80  # 85 cues, a few of two speakers


def test_real_hebrew_display_order():
    texts_ = flat("he-hebrew.srt")
    i = texts_.index("מה היא סיפרה לך?")
    assert texts_[i + 1] == "כלום, לא סיפרתי לו כלום."
    assert texts_[texts_.index("זה משנה?") + 1] == "כן, דיוויד, זה משנה."
    # ",תירגע, מר אוקיף" / ".אתה לא עצור": the comma ends the first line, the cue is one turn.
    assert "תירגע, מר אוקיף, אתה לא עצור." in texts_
    # "...לשנות" then ".לשנות את נושא השיחה-": an unfinished line, then the other speaker.
    i = texts_.index("לשנות...")
    assert texts_[i + 1] == "לשנות את נושא השיחה."
    # A cue ending in a comma continues in the next one.
    assert any(t.startswith("שיושב כרגע במעצר, לא תזכי לשום שיתוף פעולה, לא תזכי לתמיכה")
               for t in texts_)
    assert not any("HeBits" in t for t in texts_)  # the credit cue is dropped
    assert all(t[-1] not in "-‐‑–—" for t in texts_)


def test_real_arabic_logical_and_display_order():
    texts_ = flat("ar-arabic.srt")
    i = texts_.index("عمّتِ مساءً")
    assert texts_[i + 1] == "شكرًا يا سارة"  # the name in parentheses is kept
    assert texts_[i + 2] == "رافقتكم السلامة"
    assert "كفى" in texts_ and texts_[texts_.index("كفى") + 1] == "مهلك"  # inside <font>
    assert "المأمور ستيفنز" in texts_  # "(المأمور (ستيفنز"
    assert texts_[-2:] == ["كلا", "لا أعرف"]  # "كلا -" / "لا أعرف -"
    # No full stops in this file: a line ending in a letter (or a vowel sign) is finished.
    assert texts_[texts_.index("ميغان، إسمعي كلام والدتكِ") + 1] == "حسنًا أيّها المأمور"
    # ... still continues.
    assert "ظننتُ... سأخرج بنفسي" in texts_


def test_real_arabic_windows_1256_reads_as_utf8():
    assert turns("ar-arabic-windows-1256.srt") == turns("ar-arabic.srt")


def test_real_japanese_split_sentences_and_dashes():
    conversations = turns("ja-japanese.srt")
    texts_ = [t for c in conversations for t in c]
    # A trailing "―" marks a sentence that goes on in the next cue.
    assert "紳士淑女の皆さん あなた方に言いたい― 素晴らしい" in texts_
    # Lines with no final mark are finished: one turn per cue.
    assert conversations[0][:3] == ["手を上げろ！", "床に伏せろ 今すぐ伏せるんだ", "そこにいろ！"]
    i = texts_.index("お名前は？")
    assert texts_[i - 1 : i + 3] == [
        "コーヒー４つ ミディアムで", "お名前は？", "ベイビー", "ベイビー？"]
    i = texts_.index("遅い？")  # "- 遅い？\n<i>- 待ったぞ"
    assert texts_[i + 1] == "待ったぞ"
    assert "必要だろう？" in texts_ and texts_[texts_.index("必要だろう？") + 1] == "ぼくが？"


def test_real_chinese_two_speakers_on_one_line():
    texts_ = flat("zh-chinese.srt")
    i = texts_.index("嗯? 哦!")  # "- 嗯? 哦!  - 嗯?"
    assert texts_[i + 1] == "嗯?"
    i = texts_.index("不过我的朋友纳塔利可是单身已久 而且...")
    assert texts_[i + 1] == "啊"
    assert texts_[texts_.index("给我进去...") + 1] == "嗯?"
    # Statements with no final mark are turns of their own; "..." still continues.
    assert texts_[texts_.index("遵命 长官") - 1] == "好吧 把他叫来!"
    assert "你为什么... 好了 该吃蛋糕了" in texts_
    assert "\"开始约会吧\"网站" in texts_  # {\An8} removed


def test_real_korean():
    texts_ = flat("ko-korean.srt")
    assert texts_[0] == "우리는 인터넷에 아주 익숙해졌습니다."
    assert "Tor는 3중의 암호화를 통해 연결을 보호합니다" in texts_
    assert "인터넷 상에서 우리가 익명으로 활동할 수 있도록 말이죠." in texts_


# --- The rules, line by line ------------------------------------------------------------


@pytest.mark.parametrize(("line", "expected"), [
    ("خطاست -", (None, "خطاست", True)),
    ("جی هو-", (None, "جی هو", True)),
    ("اوه واقعا؟-", (None, "اوه واقعا؟", True)),
    ("- شكرًا لكِ", (None, "شكرًا لكِ", True)),
    (".سلام", (None, "سلام.", False)),
    (". بین آسمان", (None, "بین آسمان.", False)),
    ("?מה היא סיפרה לך", (None, "מה היא סיפרה לך?", False)),
    ("!?מה", (None, "מה?!", False)),
    ("...לשנות", (None, "לשנות...", False)),
    ("... مدرسه که تموم شد", (None, "مدرسه که تموم شد...", False)),
    (".כלום, לא סיפרתי לו כלום-", (None, "כלום, לא סיפרתי לו כלום.", True)),
    (",תירגע, מר אוקיף", (None, "תירגע, מר אוקיף,", False)),
    ("؟چی", (None, "چی؟", False)),
    ("...آره خب.", (None, "...آره خب.", False)),  # already ends with a mark: logical order
    ("(المأمور (ستيفنز", (None, "المأمور ستيفنز", False)),
    # Markup is removed before the marks are moved.
    ("{\\an8}.سلام", (None, "سلام.", False)),
    ("<i>?מה</i>", (None, "מה?", False)),
    ("<i>جی هو-</i>", (None, "جی هو", True)),
    ("- שלח -", (None, "שלח", True)),
    # Full-width and other dashes open a Chinese or Japanese speaker's line.
    ("－你好", (None, "你好", True)),
    ("―行くぞ", (None, "行くぞ", True)),
    ("——你好", (None, "你好", True)),
    ("– 你好", (None, "你好", True)),
    # English is untouched: no right-to-left letters, no change.
    (".Hello", (None, ".Hello", False)),
    ("Wait -", (None, "Wait -", False)),
    ("- Really?", (None, "Really?", True)),
])
def test_clean_line_scripts(line, expected):
    assert clean_line(line) == expected


@pytest.mark.parametrize(("text", "unfinished"), [
    ("سلام", False), ("سلام،", True), ("سلام.", False), ("چی؟", False), ("یہ ہے۔", False),
    ("والدتكِ", False), ("لذا؛", True), ("לשנות...", True),
    ("我家后院的小女孩们", False), ("好，", True), ("等一下、", True), ("而且…", True),
    ("あなた方に言いたい―", True), ("「85号線の伝説」", False), ("コーヒー", False),
    ("행복해요．", False), ("그녀가 내게 와서", False),
    # English as before.
    ("I was thinking", True), ("Well,", True), ("Fine.", False), ('"Really?"', False),
    ("Wait—", True), ("Привет", True),
])
def test_is_unfinished_scripts(text, unfinished):
    assert is_unfinished(text) is unfinished


def test_two_speakers_on_one_line_split_only_after_a_run_of_spaces():
    assert split_dash_lines("- 哦  - 哦") == ["- 哦", "- 哦"]
    assert split_dash_lines("- A.  - B.\nC") == ["- A.", "- B.", "C"]
    assert split_dash_lines("- Wait - what?") == ["- Wait - what?"]
    assert split_dash_lines("Two  spaces - here") == ["Two  spaces - here"]


def test_segment_right_to_left_cue_gives_two_turns():
    cues = [
        Cue(1000, 2000, "?מה היא סיפרה לך\n.כלום, לא סיפרתי לו כלום-", 1),
        Cue(2500, 3000, ",במגוון שמות בדויים", 5),
        Cue(3200, 4000, ".אין לך עבודה", 9),
    ]
    assert texts(list(segment(cleaned(cues), 5))) == [[
        "מה היא סיפרה לך?", "כלום, לא סיפרתי לו כלום.", "במגוון שמות בדויים, אין לך עבודה.",
    ]]


def test_credits_and_banners_in_other_scripts_are_dropped():
    persian = flat("fa-persian.srt")
    assert not any("زیرنویس" in t or "تقدیم" in t or "ضیا" in t for t in persian)
    chinese = flat("zh-chinese.srt")
    assert not any("昆明帝艺" in t for t in chinese) and chinese
    # Speech that merely mentions a translation stays.
    assert cue_pieces(Cue(0, 1000, "می‌تونی اینو ترجمه کنی؟", 1))
