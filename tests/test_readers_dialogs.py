"""Dialogue dataset readers: Cornell, DailyDialog, ChatterBot YAML, chitchat, TSV, JSONL."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.corpus.readers import chatterbot_yaml, chitchat, cornell, dailydialog, jsonl, tsv
from chatbot.corpus.types import Conversation, ReadOptions, Turn
from chatbot.errors import ReaderError
from tests.readers_util import read_all, texts

SEP = " +++$+++ "
CORNELL_HEAD = "dialogs/cornell_movie_lines_head.txt"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def speakers(conversations: list[Conversation]) -> list[list[str | None]]:
    return [[t.speaker for t in c.turns] for c in conversations]


def cornell_line(line_id: str, character: str, text: str, user: str = "u0") -> str:
    return SEP.join([line_id, user, "m0", character, text]) + "\n"


def cornell_conversation(*ids: str) -> str:
    return SEP.join(["u0", "u2", "m0", repr(list(ids))]) + "\n"


# --- Cornell -------------------------------------------------------------------------


def test_cornell_pairs_lines_into_conversations(tmp_path, options, warnings_list):
    lines = write(
        tmp_path / "movie_lines.txt",
        cornell_line("L3", "BIANCA", "They do not!")
        + cornell_line("L2", "CAMERON", "They   do to!", "u2")
        + cornell_line("L1", "BIANCA", "Hi.")
        + cornell_line("L9", "BIANCA", "  "),  # empty text: the turn is dropped
    )
    write(
        tmp_path / "movie_conversations.txt",
        cornell_conversation("L1", "L2", "L3") + cornell_conversation("L9", "L404", "L1"),
    )
    conversations = read_all(cornell.read, lines, options)
    assert texts(conversations) == [["Hi.", "They do to!", "They do not!"], ["Hi."]]
    assert speakers(conversations) == [["BIANCA", "CAMERON", "BIANCA"], ["BIANCA"]]
    assert warnings_list == [
        f"{tmp_path / 'movie_conversations.txt'}:2: line L404 not in movie_lines.txt; dropped"
    ]


def test_cornell_handed_the_conversations_file_reads_the_pair(tmp_path):
    write(
        tmp_path / "movie_lines.txt",
        cornell_line("L1", "A", "Hi.") + cornell_line("L2", "B", "Yo."),
    )
    conversations = write(tmp_path / "movie_conversations.txt", cornell_conversation("L1", "L2"))
    assert texts(read_all(cornell.read, conversations)) == [["Hi.", "Yo."]]


def test_cornell_without_conversations_file_is_a_clear_error(tmp_path):
    lines = write(tmp_path / "movie_lines.txt", cornell_line("L1", "A", "Hi."))
    with pytest.raises(ReaderError, match="need movie_conversations.txt beside them") as info:
        read_all(cornell.read, lines)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_cornell_malformed_lines_warn(tmp_path, options, warnings_list):
    lines = write(tmp_path / "movie_lines.txt", "garbage\n" + cornell_line("L1", "A", "Hi."))
    write(tmp_path / "movie_conversations.txt", "u0 +++$+++ u2\n" + cornell_conversation("L1"))
    assert texts(read_all(cornell.read, lines, options)) == [["Hi."]]
    assert [w.split(": ", 1)[0] for w in warnings_list] == [
        f"{tmp_path / 'movie_lines.txt'}:1",
        f"{tmp_path / 'movie_conversations.txt'}:1",
    ]


def test_cornell_latin1_files_decode(tmp_path):
    # The real Cornell files are ISO-8859-1; neither file here is valid UTF-8.
    said = [
        ("L1", "JOSÉ", "¿Dónde está el café? Señor, où êtes-vous allé ce matin?"),
        ("L2", "RENÉE", "À la crème brûlée, naïve façade, garçon! Très déçu, l'été passé."),
        ("L3", "JOSÉ", "Mañana, señorita. Qué lástima, el niño está allí."),
    ]
    lines = write(
        tmp_path / "movie_lines.txt",
        "".join(cornell_line(i, who, text) for i, who, text in said),
        "latin-1",
    )
    write(tmp_path / "movie_conversations.txt", cornell_conversation("L1", "L2", "L3"), "latin-1")
    with pytest.raises(UnicodeDecodeError):
        lines.read_bytes().decode("utf-8")
    conversations = read_all(cornell.read, lines)
    assert texts(conversations) == [[text for _, _, text in said]]
    assert speakers(conversations) == [["JOSÉ", "RENÉE", "JOSÉ"]]


def test_cornell_companions_and_skip_names(tmp_path):
    lines = write(tmp_path / "movie_lines.txt", "x\n")
    assert cornell.companions(lines) == []
    conversations = write(tmp_path / "movie_conversations.txt", "x\n")
    assert cornell.companions(lines) == [conversations]
    assert cornell.companions(conversations) == [lines]
    assert cornell.companions(write(tmp_path / "head.txt", "x\n")) == [conversations]
    assert "movie_conversations.txt" in cornell.SKIP_NAMES
    assert "movie_titles_metadata.txt" in cornell.SKIP_NAMES
    assert "movie_lines.txt" not in cornell.SKIP_NAMES


def test_cornell_real_head_needs_its_conversations(corpora):
    with pytest.raises(ReaderError, match="movie_conversations.txt"):
        read_all(cornell.read, corpora / CORNELL_HEAD)


def test_cornell_real_lines_with_derived_conversations(corpora, tmp_path, options, warnings_list):
    real = corpora / CORNELL_HEAD
    expected = {}
    for raw in real.read_text(encoding="latin-1").splitlines():
        fields = raw.split(SEP)
        expected[fields[0]] = (fields[3], " ".join(fields[4].split()))
    # The first conversations of the real movie_conversations.txt, plus one unknown id.
    ids = [["L194", "L195", "L196", "L197"], ["L198", "L199"], ["L1044", "L1045"]]
    lines = tmp_path / "movie_lines.txt"
    lines.write_bytes(real.read_bytes())  # a derived fixture in tmp_path, not in the project
    write(
        tmp_path / "movie_conversations.txt",
        "".join(cornell_conversation(*group) for group in ids)
        + cornell_conversation("L4021", "L0000000"),
    )
    conversations = read_all(cornell.read, lines, options)
    ids.append(["L4021"])
    assert texts(conversations) == [[expected[i][1] for i in group] for group in ids]
    assert speakers(conversations) == [[expected[i][0] for i in group] for group in ids]
    assert conversations[0].turns[0] == Turn(
        "Can we make this quick? Roxanne Korrine and Andrew Barrett are having an incredibly "
        "horrendous public break- up on the quad. Again.",
        speaker="BIANCA",
    )
    assert conversations[3].turns == [Turn("I will if I can, Frank.", speaker="HAL")]
    assert len(warnings_list) == 1 and "L0000000" in warnings_list[0]


# --- DailyDialog ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokenised", "text"),
    [
        (
            "Say , Jim , how about going for a few beers after dinner ?",
            "Say, Jim, how about going for a few beers after dinner?",
        ),
        ("it ' s fine . I don ' t know !", "it's fine. I don't know!"),
        ("I ’ m sure you ’ ll like it ; we ’ ve tried .", "I’m sure you’ll like it; we’ve tried."),
        ("They ' re late : at seven o ' clock ...", "They're late: at seven o'clock..."),
        ("Meet at 9 : 30 .", "Meet at 9 : 30."),  # not followed by a space: left alone
        ("the students ' books", "the students ' books"),  # not a known contraction
        ("I said ' so ' , not ' sew '", "I said ' so ', not ' sew '"),
    ],
)
def test_dailydialog_detokenize(tokenised, text):
    assert dailydialog.detokenize(tokenised) == text


def test_dailydialog_reads_one_dialogue_per_line(tmp_path, options, warnings_list):
    path = write(
        tmp_path / "dialogues_text.txt",
        "The kitchen stinks . __eou__ I ' ll throw out the garbage . __eou__\n"
        "\n"
        "no marker here\n"
        "Hi ! __eou__  __eou__ Hello . __eou__ Bye . __eou__\n",
    )
    conversations = read_all(dailydialog.read, path, options)
    assert texts(conversations) == [
        ["The kitchen stinks.", "I'll throw out the garbage."],
        ["Hi!", "Hello.", "Bye."],
    ]
    assert all(t.speaker is None for c in conversations for t in c.turns)
    assert warnings_list == [f"{path}:3: no __eou__ marker: not a DailyDialog line; skipped"]


# --- ChatterBot YAML -----------------------------------------------------------------


def test_chatterbot_yaml_conversations(tmp_path, options, warnings_list):
    path = write(
        tmp_path / "greetings.yml",
        "categories:\n- greetings\n"
        "conversations:\n"
        "- - Hello\n  - Hi   there!\n"
        "- - What is 6 times 7?\n  - 42\n  - yes\n  -\n"
        "- - Nested?\n  - [a, b]\n  - {k: v}\n"
        "- just a string\n",
    )
    assert texts(read_all(chatterbot_yaml.read, path, options)) == [
        ["Hello", "Hi there!"],
        ["What is 6 times 7?", "42", "yes"],
        ["Nested?"],
    ]
    assert [w.rsplit(": ", 1)[0].split(": ")[0] for w in warnings_list] == [
        f"{path}:11",
        f"{path}:12",
        f"{path}:13",
    ]


def test_chatterbot_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path / "bad.yml", "conversations:\n- - Hello\n  - [unclosed\n- - x\n")
    with pytest.raises(ReaderError, match="invalid YAML") as info:
        read_all(chatterbot_yaml.read, path)
    assert info.value.line is not None and info.value.line >= 3
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", ["categories:\n- x\n", "- - a\n  - b\n", "just text\n"])
def test_chatterbot_yaml_without_conversations(tmp_path, content):
    with pytest.raises(ReaderError, match="no 'conversations:' list"):
        read_all(chatterbot_yaml.read, write(tmp_path / "x.yml", content))


def test_chatterbot_yaml_installed_english_corpus(options, warnings_list):
    import chatterbot_corpus.corpus

    english = Path(chatterbot_corpus.corpus.DATA_DIRECTORY) / "english"
    greetings = read_all(chatterbot_yaml.read, english / "greetings.yml")
    assert texts(greetings)[0] == ["Hello", "Hi"]
    every = [
        c for f in sorted(english.glob("*.yml")) for c in read_all(chatterbot_yaml.read, f, options)
    ]
    assert len(every) > 1900  # 2,026 entries, one of them a mis-indented string
    assert all(len(c.turns) >= 1 for c in every)
    # trivia.yml has "- Question?\n  - '22'" parsed as one string: warned, with its line.
    assert len(warnings_list) == 1 and "trivia.yml:35: conversation is a scalar" in warnings_list[0]


# --- chitchat ------------------------------------------------------------------------


def chitchat_json(conversations: dict) -> str:
    return json.dumps(conversations)


def message(text: str, sender: str) -> dict:
    return {"text": text, "timestamp": "2018-05-02T19:38:15Z", "sender": sender}


def test_chitchat_merges_runs_by_one_sender(tmp_path, options, warnings_list):
    path = write(
        tmp_path / "dataset.json",
        chitchat_json(
            {
                "c1": {
                    "messages": [
                        [message("Hello", "a"), message("How are  you?", "a")],
                        [message("fine", "b")],
                        [message("and you?", "b")],  # a second group by b: same turn
                        [message("  ", "a")],
                        [message("good", "a")],
                    ],
                    "prompt": "ignored",
                },
                "c2": {"messages": []},
                "c3": {"ratings": {}},
            }
        ),
    )
    conversations = read_all(chitchat.read, path, options)
    assert texts(conversations) == [["Hello How are you?", "fine and you?", "good"]]
    assert speakers(conversations) == [["a", "b", "a"]]
    assert len(warnings_list) == 1 and "'c3'" in warnings_list[0]


@pytest.mark.parametrize("content", ['{"c1": {"messages": [[', "[1, 2]", '{"a": NaN}', "  "])
def test_chitchat_malformed_json(tmp_path, content):
    with pytest.raises(ReaderError) as info:
        read_all(chitchat.read, write(tmp_path / "dataset.json", content))
    assert "\n" not in str(info.value)


def test_chitchat_installed_dataset_40mb():
    """Streams the installed package's 40 MB dataset.json (a few seconds)."""
    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    started = time.monotonic()
    conversations = read_all(chitchat.read, path)
    assert time.monotonic() - started < 20
    assert len(conversations) == 7168
    assert conversations[0].turns[0] == Turn(
        "Hello How are you doing today?", speaker="720840be-e522-47ba-9e9f-143f66372673"
    )
    for conversation in conversations:
        who = [t.speaker for t in conversation.turns]
        assert all(a != b for a, b in zip(who, who[1:], strict=False))
        assert all(who)


# --- TSV -----------------------------------------------------------------------------


def test_tsv_sentence_pairs(tmp_path, options, warnings_list):
    path = write(
        tmp_path / "fra.txt",
        "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM)\n"
        "Hi.\tSalut !\n"
        "\n"
        "only one column\n"
        "\tempty first\n"
        "Run!\tCours\u00a0!\textra\tmore\n",
    )
    assert texts(read_all(tsv.read, path, options)) == [
        ["Go.", "Va !"],
        ["Hi.", "Salut !"],
        ["Run!", "Cours !"],
    ]
    assert [w.split(": ")[0] for w in warnings_list] == [f"{path}:4", f"{path}:5"]


# --- JSONL ---------------------------------------------------------------------------


def test_jsonl_round_trip(tmp_path):
    conversations = [
        Conversation([Turn("Hi.", "ANNA", 1000, 2500), Turn("Héllo “there” \u2028 ok.", None)]),
        Conversation([Turn("Just one.")]),
    ]
    lines = [jsonl.dumps(i, "film.srt", c) for i, c in enumerate(conversations, 1)]
    assert all("\n" not in line for line in lines)
    assert json.loads(lines[0])["source"] == "film.srt"
    path = write(tmp_path / "export.jsonl", "\n".join(lines) + "\n\n")
    back = read_all(jsonl.read, path)
    conversations[0].turns[1] = Turn("Héllo “there” ok.")  # \u2028 is whitespace
    assert back == conversations


def test_jsonl_missing_optional_fields(tmp_path):
    path = write(tmp_path / "x.jsonl", '{"turns": [{"text": " a  b "}, {"text": ""}]}\n')
    assert read_all(jsonl.read, path) == [Conversation([Turn("a b")])]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"turns": [', "invalid JSON"),
        ("[1]", "expected an object with a 'turns' list"),
        ('{"turns": "x"}', "expected an object with a 'turns' list"),
        ('{"turns": [{"speaker": "a"}]}', "turn 1 has no 'text'"),
        ('{"turns": [{"text": "a", "start_ms": "soon"}]}', "non-integer 'start_ms'"),
        ('{"turns": [{"text": "a", "speaker": 3}]}', "non-string 'speaker'"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, line, reason):
    path = write(tmp_path / "x.jsonl", '{"turns": [{"text": "ok"}]}\n\n' + line + "\n")
    with pytest.raises(ReaderError, match=reason) as info:
        read_all(jsonl.read, path)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3: ")


# --- Any bytes: conversations or a ReaderError, nothing else -------------------------


def fuzz(*fragments: str) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, or text stitched from format-like fragments to reach deeper code."""
    pieces = st.one_of(st.sampled_from(fragments), st.text(max_size=12))
    stitched = st.lists(pieces, max_size=30).map("".join)
    return st.one_of(
        st.binary(max_size=400),
        stitched.map(lambda s: s.encode("utf-8")),
        stitched.map(lambda s: s.encode("latin-1", "replace")),
    )


def check_bytes(read: Callable, files: dict[str, bytes], main: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        try:
            conversations = read_all(read, Path(tmp) / main, ReadOptions())
        except ReaderError as e:
            assert "\n" not in str(e)
            return
    for conversation in conversations:
        assert isinstance(conversation, Conversation) and conversation.turns
        for turn in conversation.turns:
            assert isinstance(turn, Turn) and turn.text == " ".join(turn.text.split()) != ""


FUZZ = settings(max_examples=60, deadline=None)


@FUZZ
@given(
    fuzz(" +++$+++ ", "L1", "L2", "\n", "A", "é", "\r\n"),
    fuzz(" +++$+++ ", "['L1', 'L2']", "[", "'L1'", "\n", "u0"),
)
def test_cornell_any_bytes(lines: bytes, conversations: bytes):
    check_bytes(
        cornell.read,
        {"movie_lines.txt": lines, "movie_conversations.txt": conversations},
        "movie_lines.txt",
    )


@FUZZ
@given(fuzz("__eou__", " ' s", " , ", "\n", " . "))
def test_dailydialog_any_bytes(data: bytes):
    check_bytes(dailydialog.read, {"d.txt": data}, "d.txt")


@FUZZ
@given(fuzz("conversations:", "\n", "- - ", "  - ", "- ", "[", "{", ": ", "&a ", "*a", "!!", "\t"))
def test_chatterbot_yaml_any_bytes(data: bytes):
    check_bytes(chatterbot_yaml.read, {"c.yml": data}, "c.yml")


@FUZZ
@given(fuzz("{", "}", "[", "]", '"messages"', '"text"', '"sender"', ":", ",", '"a"', "1"))
def test_chitchat_any_bytes(data: bytes):
    check_bytes(chitchat.read, {"dataset.json": data}, "dataset.json")


@FUZZ
@given(fuzz("\t", "\n", "Go.", " "))
def test_tsv_any_bytes(data: bytes):
    check_bytes(tsv.read, {"p.tsv": data}, "p.tsv")


@FUZZ
@given(fuzz('{"turns": [', '{"text": ', '"a"', "null", "]}", "}", ",", "\n", '"start_ms": ', "1"))
def test_jsonl_any_bytes(data: bytes):
    check_bytes(jsonl.read, {"x.jsonl": data}, "x.jsonl")
