"""Cleaning cue text: markup, sound and music descriptions, speaker labels, credits."""

from __future__ import annotations

import html
import re

_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]*>|</?\s*>")
_SSA_TAG = re.compile(r"\{[^{}]*\}")
_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|（[^）]*）")
# Music: text between notes, or a line that opens with a note and never closes.
_MUSIC = re.compile(r"[♪♫#][^♪♫#]*[♪♫#]|^\s*[♪♫#].*$")
# "JOHN:", "DR. SMITH:", "MAN 2:" at the start of a line (capitals only, so "Note: ..." stays).
_LABEL = re.compile(r"^(?P<name>[A-ZÀ-ÖØ-Þ][A-ZÀ-ÖØ-Þ0-9 .'’\-]{0,30}):\s+(?=\S)")
# A dash that opens a speaker's line: ASCII and typographic ones, and in Chinese and
# Japanese subtitles the full-width "－", "―" and the doubled "——".
_DASH = re.compile(r"^(?:——|[-‐‑–—―－])\s*")
_SPACES = re.compile(r"\s+")
# Letters of right-to-left scripts (Hebrew, Arabic, Persian, Urdu, their presentation
# forms): lines holding them may be stored in display order, see _logical_order.
_RTL_LETTERS = "\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc"
_RTL = re.compile(f"[{_RTL_LETTERS}]")
# Characters that any of the rules below needs; a line without them is plain speech.
# Right-to-left letters are among them: such a line may need its marks put back in place.
_SPECIAL = re.compile(f"[<{{\\[(（♪♫#&:\\-‐‑–—―－{_RTL_LETTERS}]")
# Credits and adverts: a cue matching any of these is dropped whole.
_CREDIT = re.compile(
    r"downloaded\s+from|subtitles?\s*(by|:|created|provided|edited|ripped|synced|"
    r"translated|corrected)|sub(title)?s?\s+by|(re)?sync(ed|hroni[sz]ed)?\s*(&|and|by|:)|"
    r"corrected\s+by|captions?\s+(by|:)|captioning|transcript\s+by|encoded\s+by|ripped\s+by|"
    r"www\.|https?://|\w\.(com|org|net|tv)\b|opensubtitles|addic7ed|subscene|"
    r"podnapisi|\byts\b|yify|advertise\s+your\s+product|become\s+vip\s+member"
    # A banner line "-=...=-" (release groups' dedications and adverts, in any script),
    # and credits as Persian, Arabic and Hebrew subtitles write them ("translation and
    # timing of the subtitles", "translated by", "brought and synced by").
    r"|^\s*-=.*=-\s*$|ترجمه\s+(?:و|از|توسط)|تنظیم\s+زیرنویس|زیرنویس\s+(?:از|توسط)"
    r"|ترجمة\s*(?::|و|من)|تمت\s+الترجمة|تعديل\s+التوقيت|תורגם|תרגום\s*:|סונכרן|הובא\s+ו",
    re.IGNORECASE | re.MULTILINE,
)


def strip_markup(text: str) -> str:
    """Remove HTML-style tags (<i>, <font ...>) and SSA override tags ({\\an8})."""
    text = _SSA_TAG.sub("", text)
    text = _HTML_TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


# Every credit pattern contains one of these. Checked first, on lower-cased text: a
# case-insensitive alternation costs four times as much per character in `re`, and this
# check runs on every cue of every file. Grouped by first letter, which `re` tries faster.
_HINTS = (
    r"a(?:dvertis|ddic7ed)|by|caption|from|http|podnapisi|s(?:ub|ync)|vip|www|y(?:ts|ify)|"
    r"\.(?:com|org|net|tv)|-=|ترجم|زیرنویس|تعديل|תורג|תרגו|סונכר|הובא"
)
_CREDIT_HINT = re.compile(_HINTS)
# Either of the two checks above in one pass (most cues match neither).
_SPECIAL_OR_HINT = re.compile(rf"{_HINTS}|{_SPECIAL.pattern}")
_WORD = re.compile(r"[^\W_]")
_DASHES = "-‐‑–—―－"
# Two speakers on one line, "- 嗯? 哦!  - 嗯?" (Chinese subtitles write them so): the run
# of two or more spaces before the second dash is where the line splits.
_INLINE_DASH = re.compile(r"(?<=\S)[ \t\u3000]{2,}(?=[-‐‑–—―－]\s*\S)")
# Right-to-left subtitles as most files store them: typed for players that lay every line
# out left to right, so a line's final marks were typed first (".سلام" for "سلام.") and
# the dash that opens a speaker's line last ("خطاست -"). Marks at the start of a line that
# does not already end with one belong at its end, in reverse order ("!?מה" is "מה?!").
_RTL_LEADING_MARKS = re.compile(r"^([.?!…,،؛;:؟۔]+)\s*")
_RTL_TRAILING_DASH = re.compile(r"\s*[-‐‑–—―－]$")
_RTL_ENDS_WITH_MARK = ".?!…,،؛;:؟۔"
# Arabic subtitles put names in parentheses ("شكرًا يا (سارة)"), not sounds: the
# parentheses go and the name stays (display order even leaves them "(المأمور (ستيفنز").
_ARABIC = re.compile(r"[\u0600-\u06ff]")


def is_credit(text: str) -> bool:
    """True for 'Downloaded From www.AllSubs.org', 'Subtitles by ...' and the like."""
    return _CREDIT_HINT.search(text.lower()) is not None and _CREDIT.search(text) is not None


def is_plain_speech(text: str) -> bool:
    """True when the text needs no cleaning and cannot be a credit (the common case)."""
    return _SPECIAL_OR_HINT.search(text.lower()) is None


def is_plain(text: str) -> bool:
    """True when no cleaning rule applies: no markup, brackets, notes, dashes or labels."""
    return _SPECIAL.search(text) is None


def has_words(text: str) -> bool:
    """True when the text holds at least one letter or digit."""
    return _WORD.search(text) is not None


def split_dash_lines(text: str) -> list[str]:
    """The lines of a cue, a line that opens with a dash and holds a second one after a
    run of spaces ("- Hi.  - Hello.") split in two."""
    lines = text.split("\n")
    if "  " not in text and "\u3000" not in text:  # nearly every cue
        return lines
    return [part for line in lines for part in
            (_INLINE_DASH.split(line) if line.lstrip()[:1] in _DASHES else (line,))]


def _logical_order(line: str) -> tuple[str, bool]:
    """A right-to-left line, stripped, in reading order -> (line, opens with a dash)."""
    dash = False
    match = _RTL_TRAILING_DASH.search(line)
    if match and match.start() > 0:
        line, dash = line[: match.start()], True
    if line[-1:] not in _RTL_ENDS_WITH_MARK:
        match = _RTL_LEADING_MARKS.match(line)
        if match:
            line = line[match.end() :] + match.group(1)[::-1]
    if _ARABIC.search(line):
        line = line.replace("(", "").replace(")", "")
    return line, dash


def clean_line(line: str) -> tuple[str | None, str, bool]:
    """One line of cue text -> (speaker label or None, clean text, starts with a dash)."""
    if _SPECIAL.search(line) is None:
        line = " ".join(line.split())
        return None, line if _WORD.search(line) else "", False
    line = line.strip()
    if line[:1] in _DASHES and _SPECIAL.search(line, 1) is None:
        # The next most common case: a dash opening plain speech ("- Really?").
        line = " ".join(line[1:].split())
        return None, line if _WORD.search(line) else "", True
    line = strip_markup(line).strip()
    dash = bool(_DASH.match(line)) and not line.startswith("--")
    if dash:
        line = _DASH.sub("", line, count=1)
    if not line.isascii() and _RTL.search(line):
        line, reversed_dash = _logical_order(line)
        dash = dash or reversed_dash
    line = _MUSIC.sub(" ", _BRACKETED.sub(" ", line))
    line = _SPACES.sub(" ", line).strip()
    if line.startswith(("- ", "– ")):  # "- [laughs] - What?" leaves a dash behind
        line, dash = line[2:], True
    speaker = None
    match = _LABEL.match(line)
    if match:
        speaker = match.group("name").strip()
        line = line[match.end() :]
    # A line of punctuation alone (left by a removed description) says nothing.
    if not _WORD.search(line):
        line = ""
    return speaker, line, dash
