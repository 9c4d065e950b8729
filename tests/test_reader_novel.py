"""The novel reader: quoted speech in plain-text books becomes turns."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.corpus.readers.novel import LONG_NARRATION_WORDS, read
from chatbot.corpus.source import Source
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ReaderError
from tests.readers_util import read_all, texts


def book(tmp_path: Path, text: str, name: str = "book.txt") -> list[list[str]]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return texts(read_all(read, path))


def all_turns(conversations: list[list[str]]) -> list[str]:
    return [turn for conversation in conversations for turn in conversation]


def narration(words: int) -> str:
    """A paragraph of plain narration, wrapped like Gutenberg text."""
    sentence = "The rain fell on the roofs of the town all night long. "
    text = (sentence * (words // 12 + 1)).split()[:words]
    return "\n".join(" ".join(text[i : i + 12]) for i in range(0, len(text), 12))


BROUGHAM = """\
“A pair,” said he. “Yes,” he continued, glancing out of the window,
“a nice little brougham.”
"""


def test_narration_inside_a_paragraph_is_left_out(tmp_path):
    assert book(tmp_path, BROUGHAM) == [["A pair, Yes, a nice little brougham."]]


def test_turn_fields_unknown(tmp_path):
    path = tmp_path / "b.txt"
    path.write_text(BROUGHAM + "\n“Indeed,” said I.\n", encoding="utf-8")
    [conversation] = read_all(read, path)
    assert [t.text for t in conversation.turns] == [
        "A pair, Yes, a nice little brougham.",
        "Indeed.",
    ]
    for turn in conversation.turns:
        assert (turn.speaker, turn.start_ms, turn.end_ms) == (None, None, None)


def test_each_paragraph_with_speech_is_a_new_turn(tmp_path):
    text = """\
“Who are _you?_” said the
Caterpillar.

This was not an encouraging opening for a conversation.

“I—I hardly know, sir,” said Alice.

“Explain   yourself!”
"""
    assert book(tmp_path, text) == [["Who are you?", "I—I hardly know, sir.", "Explain yourself!"]]


def test_speech_over_several_paragraphs_is_one_turn(tmp_path):
    text = """\
“Once upon a time there were three little sisters,” the Dormouse began;
“and they lived at the bottom of a well.

“They were learning to draw, you know.

“And they drew all manner of things.”

“What did they draw?” said Alice.
"""
    assert book(tmp_path, text) == [
        [
            "Once upon a time there were three little sisters, and they lived at the bottom"
            " of a well. They were learning to draw, you know. And they drew all manner of"
            " things.",
            "What did they draw?",
        ]
    ]


def test_straight_quotes_alternate_and_continue_over_paragraphs(tmp_path):
    text = """\
"Hello," said Tom. "How are you?"

"Well," she said, "it is a long story, and

"it goes on and on."

He said "yes" twice.
"""
    assert book(tmp_path, text) == [
        ["Hello, How are you?", "Well, it is a long story, and it goes on and on."]
    ]


@pytest.mark.parametrize(
    "break_line",
    [
        "CHAPTER II.",
        "Chapter 12",
        "CHAPTER III. A Caucus-Race and a Long Tale",
        "BOOK II",
        "IV",
        "PART ONE",
        "* * *",
        "*       *       *       *       *",
        "***",
        "# # #",
    ],
)
def test_headings_and_scene_breaks_end_a_conversation(tmp_path, break_line):
    text = f"“Hello,” said A.\n\n“Hi,” said B.\n\n{break_line}\n\n“Later,” said C.\n"
    assert book(tmp_path, text) == [["Hello.", "Hi."], ["Later."]]


def test_heading_with_its_title_on_the_next_line(tmp_path):
    text = "“Hello,” said A.\n\nCHAPTER I.\nDown the Rabbit-Hole\n\n“Later,” said C.\n"
    assert book(tmp_path, text) == [["Hello."], ["Later."]]


def test_words_that_only_look_like_headings_do_not_split(tmp_path):
    text = "“Hello,” said A.\n\nPart I wanted to stay.\n\n“Later,” said C.\n"
    assert book(tmp_path, text) == [["Hello.", "Later."]]


def test_long_narration_ends_a_conversation(tmp_path):
    short = narration(40)
    long = narration(LONG_NARRATION_WORDS + 20)
    text = f"“One.”\n\n{short}\n\n“Two.”\n\n{long}\n\n“Three.”\n\n“Four.”\n"
    assert book(tmp_path, text) == [["One.", "Two."], ["Three.", "Four."]]


def test_narration_between_paragraphs_adds_up(tmp_path):
    half = narration(LONG_NARRATION_WORDS // 2 + 5)
    text = f"“One.”\n\n{half}\n\n{half}\n\n“Two.”\n"
    assert book(tmp_path, text) == [["One."], ["Two."]]


GUTENBERG = """\
The Project Gutenberg eBook of A Test, by Somebody

“Project Gutenberg” is a registered trademark, said the lawyers.

*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***

[Illustration: A rabbit in a
waistcoat, looking at its watch]

“Oh dear!” said the _White_ Rabbit.
[Illustration]
“I shall be _too_ late!”

“Wait!” cried Alice.

*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***

“Redistribution,” says the license, “is subject to the Project Gutenberg terms.”
"""

OLD_GUTENBERG = """\
**The Project Gutenberg Etext of A Test**
“Small print” applies, they said.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

“Oh dear!” said the Rabbit.

“Wait!” cried Alice.

End of the Project Gutenberg EBook of A Test

“Project Gutenberg-tm,” they said, “is a trademark.”
"""


@pytest.mark.parametrize("text", [GUTENBERG, OLD_GUTENBERG])
def test_gutenberg_header_and_footer_are_removed(tmp_path, text):
    conversations = book(tmp_path, text)
    turns = all_turns(conversations)
    assert turns[-1] == "Wait!"
    assert not any("Gutenberg" in t or "print" in t.lower() or "trademark" in t for t in turns)


def test_illustrations_and_italics_are_removed(tmp_path):
    assert book(tmp_path, GUTENBERG) == [["Oh dear! I shall be too late!", "Wait!"]]


def test_text_without_a_header_is_kept_from_the_first_line(tmp_path):
    assert book(tmp_path, "“First!” said A.\n\n“Second.”\n") == [["First!", "Second."]]


def test_single_curly_quotes_and_apostrophes(tmp_path):
    text = """\
‘I don’t know,’ said Alice, ‘it’s the Rabbit’s fan.’

‘Rabbits’ feet are lucky,’ said the Hatter.

“She said ‘don’t’ to me,” said Bill.
"""
    assert book(tmp_path, text) == [
        [
            "I don’t know, it’s the Rabbit’s fan.",
            "Rabbits",  # a plural possessive before a space reads as a closing quote
            "She said ‘don’t’ to me.",
        ]
    ]


def test_guillemets_and_corner_brackets(tmp_path):
    text = """\
«Bonjour, dit-il, je viens.» Il entra.

«Bien sûr», répondit-elle.

「こんにちは」と彼は言った。「元気？」

『はい』
"""
    assert book(tmp_path, text) == [["Bonjour, je viens.", "Bien sûr", "こんにちは 元気？", "はい"]]


def test_dash_led_paragraphs(tmp_path):
    text = """\
— Je viens, dit-il — mais plus tard.

— Quand ? — demanda-t-elle. — Ce soir ?

― Come here ― he said ― and sit down.

– Yes.

Narration with a dash — like this — is not speech.
"""
    assert book(tmp_path, text) == [
        ["Je viens, mais plus tard.", "Quand ? Ce soir ?", "Come here and sit down.", "Yes."]
    ]


def test_mentions_are_not_speech(tmp_path):
    text = """\
It was labelled “ORANGE MARMALADE”, and a bottle marked “poison,” stood by.

She heard it say “Oh dear!” and then “I shall be late!” twice.
"""
    assert book(tmp_path, text) == [["Oh dear! I shall be late!"]]


def test_ptb_quotes_in_running_text(tmp_path):
    text = "``Hello,'' said Tom. ``How are you?''\n\n`I'm fine,' she said, `and you?'\n"
    assert book(tmp_path, text) == [["Hello, How are you?", "I'm fine, and you?"]]


def test_empty_and_binary_files_raise_reader_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02 text")
    for path in (empty, binary):
        with pytest.raises(ReaderError):
            read_all(read, path)


def test_undecodable_text_raises_reader_error(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_text("“Café,” said A.\n", encoding="utf-8")
    options = ReadOptions(encoding="ascii")
    with pytest.raises(ReaderError, match="cannot decode"):
        list(read(Source(path, options), options))


def test_streams_conversations_before_the_end_of_the_file(tmp_path):
    path = tmp_path / "long.txt"
    body = "\n\n".join(narration(12) for _ in range(3000))
    path.write_text(f"“Hello,” said A.\n\n“Hi.”\n\nCHAPTER II.\n\n{body}\n", encoding="utf-8")
    seen: list[int] = []
    options = ReadOptions(progress=seen.append)
    conversations = read(Source(path, options), options)
    first = next(conversations)
    assert [t.text for t in first.turns] == ["Hello.", "Hi."]
    # Progress is reported every 4096 lines: none yet means the file was not read through.
    assert seen == []
    assert list(conversations) == []
    assert seen[-1] == path.stat().st_size


# The real books beside the project (skipped in a fresh clone).


@pytest.fixture
def alice(corpora) -> list[list[str]]:
    return texts(read_all(read, corpora / "novels" / "alice_in_wonderland.txt"))


def test_alice_conversations(alice):
    # Measured: 24 conversations, 677 turns (12 chapters, 3 scene breaks, long narration).
    assert 18 <= len(alice) <= 40
    assert 550 <= sum(len(c) for c in alice) <= 800
    assert all(alice)


def test_alice_caterpillar_exchange(alice):
    caterpillar = next(c for c in alice if "Who are you?" in c)
    start = caterpillar.index("Who are you?")
    assert caterpillar[start : start + 5] == [
        "Who are you?",
        "I—I hardly know, sir, just at present—at least I know who I was when I got up this"
        " morning, but I think I must have been changed several times since then.",
        "What do you mean by that? Explain yourself!",
        "I can’t explain myself, I’m afraid, sir, because I’m not myself, you see.",
        "I don’t see.",
    ]


def test_alice_mad_tea_party(alice):
    party = next(c for c in alice if "No room! No room! There’s plenty of room!" in c)
    start = party.index("Have some wine.")
    assert party[start : start + 3] == [
        "Have some wine.",
        "I don’t see any wine.",
        "There isn’t any.",
    ]


def test_alice_turns_are_clean(alice):
    turns = all_turns(alice)
    assert not any("Gutenberg" in t for t in turns)
    assert not any("said Alice" in t or "said the Caterpillar" in t for t in turns)
    assert not any("_" in t or "[Illustration" in t for t in turns)
    assert not any(t != " ".join(t.split()) or not t for t in turns)
    assert "ORANGE MARMALADE" not in turns  # a label on a jar, not speech
    assert alice[-1][-1].startswith("Oh, I’ve had such a curious dream!")


def test_alice_tokenized(corpora):
    conversations = texts(read_all(read, corpora / "novels" / "carroll-alice-tokenized.txt"))
    turns = all_turns(conversations)
    # Measured: 24 conversations, 773 turns; chapters split them as in the plain book.
    assert 18 <= len(conversations) <= 40
    assert 600 <= len(turns) <= 950
    assert "Who are YOU?" in turns
    assert "What do you mean by that?" in turns
    assert "Oh dear! Oh dear! I shall be late!" in turns
    # Detokenized: no PTB spacing or quote tokens left in the speech.
    assert not any(" n't" in t or " ," in t or "`" in t or "I' " in t for t in turns)
    assert not any("said Alice" in t for t in turns)


def test_a_story_told_over_paragraphs_with_nested_speech_is_one_clean_turn(tmp_path):
    """Each paragraph opens with “, only the last closes, ‘…’ inside (issue 19): one turn,
    no quote mark of the outer quotation left in it."""
    text = """\
“I will tell you how it was,” said the old sailor, filling his pipe. “We
had been three weeks out of Bristol when the captain came on deck and
cried, ‘All hands! All hands to the pumps!’ and every man of us ran.

“‘It is no use, Jack,’ the mate said to me towards morning; ‘she is
going down.’ And I said, ‘Then we go down with her.’

“But she did not go down. ‘Land!’ cried the boy at the masthead, and
there it was.”

“And then?” asked Tom.
"""
    assert book(tmp_path, text) == [[
        "I will tell you how it was, We had been three weeks out of Bristol when the captain"
        " came on deck and cried, ‘All hands! All hands to the pumps!’ and every man of us"
        " ran. ‘It is no use, Jack,’ the mate said to me towards morning; ‘she is going down.’"
        " And I said, ‘Then we go down with her.’ But she did not go down. ‘Land!’ cried the"
        " boy at the masthead, and there it was.",
        "And then?",
    ]]
