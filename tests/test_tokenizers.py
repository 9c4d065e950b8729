"""Tokenizers: reserved ids, vocabulary limits, round trips, files, and fitting on corpora."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatbot.corpus.ingest import builtin_inputs, ingest_file
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import ReadOptions
from chatbot.errors import ChatbotError
from chatbot.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    TOKENIZER_FILE,
    UNK_ID,
    Tokenizer,
    fit_tokenizer,
    load_tokenizer,
)
from chatbot.text.subword import MODEL_FILE
from chatbot.text.tokenizer import RESERVED_TOKENS
from chatbot.text.word import join_words, split_words

KINDS = ["word", "char", "subword"]
ENGLISH = [
    "Hello, world!",
    "How are you today?",
    "I'm fine, thanks. And you?",
    "I don't know what you mean.",
    "Well, it's a long story...",
]
FRENCH = [
    "Bonjour, ça va très bien, merci !",
    "Où est la bibliothèque ? C'est à côté de l'église.",
    "Je ne sais pas ce que tu veux dire.",
    "Élodie a mangé une crème brûlée à Noël.",
]
CJK = ["你好，世界！", "今天天气很好。", "こんにちは、元気ですか？", "はい、元気です。ありがとう。"]
SRT = (
    "1\n00:00:01,000 --> 00:00:02,000\nWhere were you last night?\n\n"
    "2\n00:00:02,500 --> 00:00:04,000\nI was home. I don't go out.\n\n"
    "3\n00:00:04,500 --> 00:00:06,000\nThat's not what Sam said.\n"
)


def turn_texts(store: CorpusStore) -> Iterator[str]:
    for _id, _source, conversation in store.iter_conversations():
        for turn in conversation.turns:
            yield turn.text


@pytest.fixture(scope="module")
def chatterbot_store(tmp_path_factory) -> Iterator[CorpusStore]:
    """The installed ChatterBot English corpus (about 4,400 turns) in a fresh store."""
    files, _fmt = builtin_inputs("chatterbot:english")
    with CorpusStore(tmp_path_factory.mktemp("chatterbot") / "corpus.db") as store:
        for path in files:
            assert ingest_file(store, path, ReadOptions()).error is None
        yield store


@pytest.fixture(scope="module")
def fitted(chatterbot_store) -> dict[str, Tokenizer]:
    """One tokenizer of each kind fitted on the ChatterBot corpus (plus French and CJK)."""

    def texts() -> Iterator[str]:
        yield from turn_texts(chatterbot_store)
        yield from FRENCH
        yield from CJK

    return {kind: fit_tokenizer(kind, texts(), 800) for kind in KINDS}


# Reserved ids and the vocabulary limit


@pytest.mark.parametrize("kind", KINDS)
def test_reserved_ids(kind, fitted):
    tokenizer = fitted[kind]
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [tokenizer.id_to_token(i) for i in range(4)] == list(RESERVED_TOKENS)
    assert [tokenizer.token_to_id(t) for t in RESERVED_TOKENS] == [0, 1, 2, 3]
    ids = tokenizer.encode("How are you?")
    assert ids and min(ids) > EOS_ID  # encode adds no bos/eos
    padded = [BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]
    assert tokenizer.decode(padded) == tokenizer.decode(ids)
    # decode stops at nothing: what follows eos is decoded too
    assert tokenizer.decode([*ids, EOS_ID, *ids]) == tokenizer.decode(ids + ids)
    with pytest.raises(IndexError):
        tokenizer.id_to_token(tokenizer.vocab_size)
    with pytest.raises(IndexError):
        tokenizer.decode([tokenizer.vocab_size])


@pytest.mark.parametrize(
    ("kind", "texts", "needed"),
    [
        ("word", ["a b c d", "a b c", "a b", "a"], 4 + 4),
        ("char", ["abcd", "abc", "ab", "a", "  "], 4 + 5),
    ],
)
@pytest.mark.parametrize("limit", [5, 6, 8, 9, 50])
def test_vocab_size_is_the_limit_or_what_is_needed(kind, texts, needed, limit):
    tokenizer = fit_tokenizer(kind, texts, limit)
    assert tokenizer.vocab_size == min(limit, needed)


def test_subword_vocab_size_limit(fitted):
    assert fitted["subword"].vocab_size == 800
    # A tiny corpus cannot fill a large vocabulary: it comes out smaller, not an error.
    small = fit_tokenizer("subword", ENGLISH, 1000)
    assert 4 < small.vocab_size < 1000


def test_most_frequent_tokens_are_kept():
    texts = ["the cat", "the dog", "the cat", "a bird"]
    tokenizer = fit_tokenizer("word", texts, 4 + 2)
    assert [tokenizer.id_to_token(i) for i in (4, 5)] == ["the", "cat"]
    assert tokenizer.encode("the dog") == [4, UNK_ID]
    chars = fit_tokenizer("char", ["aaab", "bc"], 4 + 2)
    assert [chars.id_to_token(i) for i in (4, 5)] == ["a", "b"]


def test_ties_are_broken_by_the_token():
    tokenizer = fit_tokenizer("word", ["zeta alpha mid"], 10)
    assert [tokenizer.id_to_token(i) for i in range(4, 7)] == ["alpha", "mid", "zeta"]


# Round trips


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, world!", "hello, world!"),
        ("I don't know; it's 10:30.", "i don't know; it's 10:30."),
        ('She said, "I\'m fine." Then (really?) she left...', None),
        ("Can't, won't, y'all, o'clock: well-known and/or 3.14, $5 or 100%!?", None),
        ("Wait -- what? - Nothing.", None),
        ("He’s “quoted” here…", 'he\'s "quoted" here...'),
    ],
)
def test_word_round_trip_is_normalised(text, expected):
    tokenizer = fit_tokenizer("word", [text], 100)
    assert tokenizer.decode(tokenizer.encode(text)) == (expected or text.lower())


def test_word_contractions_are_split():
    assert split_words("I don't think it's THEIR car") == [
        "i", "do", "n't", "think", "it", "'s", "their", "car",
    ]
    assert split_words("Can't", lower=False) == ["Ca", "n't"]
    assert join_words(["we", "'ll", "see", "."]) == "we'll see."


def test_word_lower_casing_is_optional():
    tokenizer = fit_tokenizer("word", ENGLISH, 100, lower=False)
    assert tokenizer.decode(tokenizer.encode("Hello, world!")) == "Hello, world!"
    assert tokenizer.encode("hello") == [UNK_ID]


@pytest.mark.parametrize("text", CJK + ["Hello,  world!", "  spaces  "])
def test_char_round_trip_is_exact(fitted, text):
    tokenizer = fitted["char"]
    ids = tokenizer.encode(text)
    assert len(ids) == len(text) and UNK_ID not in ids
    assert tokenizer.decode(ids) == text


def test_char_spaces_are_tokens():
    tokenizer = fit_tokenizer("char", ["a b"], 10)
    assert [tokenizer.id_to_token(i) for i in (4, 5, 6)] == [" ", "a", "b"]  # ties: code point
    assert tokenizer.encode("a b") == [5, 4, 6]


@pytest.mark.parametrize(
    "text",
    [
        "I'm fine, thanks. And you?",
        "Bonjour, ça va très bien, merci ! Where is the library?",
        "Élodie said:  \"it's  à côté de l'église\" ",
        " leading and trailing spaces ",
    ],
)
def test_subword_round_trip_is_exact(fitted, text):
    tokenizer = fitted["subword"]
    ids = tokenizer.encode(text)
    assert UNK_ID not in ids
    assert tokenizer.decode(ids) == text


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_subword_model_types(model_type, chatterbot_store):
    tokenizer = fit_tokenizer("subword", chatterbot_store, 300, model_type=model_type)
    assert tokenizer.options["model_type"] == model_type
    assert tokenizer.decode(tokenizer.encode("How are you?")) == "How are you?"


# Unknown tokens


@pytest.mark.parametrize(
    ("kind", "text", "unknown"),
    [("word", "hello zyzzyva", "zyzzyva"), ("char", "ab\U0001f600", "\U0001f600"),
     ("subword", "ab \U0001f600", "\U0001f600")],
)
def test_unknown_tokens_are_unk(kind, text, unknown, fitted):
    tokenizer = fitted[kind]
    ids = tokenizer.encode(text)
    assert UNK_ID in ids
    assert tokenizer.token_to_id(unknown) == UNK_ID
    decoded = tokenizer.decode(ids)
    assert "<unk>" in decoded and unknown not in decoded


def test_encode_batch_matches_encode(fitted):
    texts = ENGLISH + FRENCH + CJK + [""]
    for tokenizer in fitted.values():
        assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]
        assert tokenizer.encode_batch(iter(texts)) == tokenizer.encode_batch(texts)


# Files


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_give_identical_encodings(kind, fitted, tmp_path):
    tokenizer = fitted[kind]
    path = tokenizer.save(tmp_path / "model")
    assert path == tmp_path / "model" / TOKENIZER_FILE
    meta = json.loads(path.read_text(encoding="utf-8"))
    assert meta["kind"] == kind and meta["options"] == tokenizer.options
    loaded = load_tokenizer(tmp_path / "model")
    assert (loaded.kind, loaded.vocab_size, loaded.options) == (
        kind, tokenizer.vocab_size, tokenizer.options,
    )
    texts = ENGLISH + FRENCH + CJK
    assert loaded.encode_batch(texts) == tokenizer.encode_batch(texts)
    ids = list(range(tokenizer.vocab_size))
    assert loaded.decode(ids) == tokenizer.decode(ids)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files


def test_word_file_is_readable_json(fitted, tmp_path):
    path = fitted["word"].save(tmp_path)
    text = path.read_text(encoding="utf-8")
    meta = json.loads(text)
    assert meta["vocab"][:4] == list(RESERVED_TOKENS) and meta["options"] == {"lower": True}
    assert '\n  "<unk>",\n' in text  # one token a line: diffs stay small


@pytest.mark.parametrize("kind", KINDS)
def test_fitting_twice_writes_the_same_bytes(kind, chatterbot_store, tmp_path):
    first = fit_tokenizer(kind, chatterbot_store, 500).save(tmp_path / "a")
    second = fit_tokenizer(kind, chatterbot_store, 500).save(tmp_path / "b")
    names = sorted(p.name for p in first.parent.iterdir())
    assert names == sorted(p.name for p in second.parent.iterdir())
    for name in names:
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes()


def _edit_json(path: Path, change) -> None:
    meta = json.loads(path.read_text(encoding="utf-8"))
    change(meta)
    path.write_text(json.dumps(meta), encoding="utf-8")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda p: p.unlink(), "missing"),
        (lambda p: p.write_text(""), "empty"),
        (lambda p: p.write_bytes(p.read_bytes()[:40]), "not valid JSON"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not UTF-8"),
        (lambda p: p.write_text("[1, 2]"), "not a chatbot tokenizer file"),
        (lambda p: _edit_json(p, lambda m: m.pop("vocab")), "'vocab'"),
        (lambda p: _edit_json(p, lambda m: m.pop("options")), "'options'"),
        (lambda p: _edit_json(p, lambda m: m["options"].pop("lower")), "'lower'"),
        (lambda p: _edit_json(p, lambda m: m.update(kind="morse")), "unknown tokenizer kind"),
        (lambda p: _edit_json(p, lambda m: m.update(version=99)), "version 99"),
        (lambda p: _edit_json(p, lambda m: m["vocab"].pop(0)), "does not start with"),
        (lambda p: _edit_json(p, lambda m: m["vocab"].append("the")), "twice"),
    ],
)
def test_bad_word_files_raise_a_clear_error(breakage, message, fitted, tmp_path):
    path = fitted["word"].save(tmp_path)
    breakage(path)
    with pytest.raises(ChatbotError, match=message) as error:
        load_tokenizer(tmp_path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / MODEL_FILE).unlink(), "missing"),
        (lambda d: (d / MODEL_FILE).write_bytes((d / MODEL_FILE).read_bytes()[:100]), "checksum"),
        (lambda d: _edit_json(d / TOKENIZER_FILE, lambda m: m.pop("model_file")), "model_file"),
        (lambda d: _edit_json(d / TOKENIZER_FILE, lambda m: m.update(vocab_size=7)), "vocab_size"),
    ],
)
def test_bad_subword_files_raise_a_clear_error(breakage, message, fitted, tmp_path):
    fitted["subword"].save(tmp_path)
    breakage(tmp_path)
    with pytest.raises(ChatbotError, match=message) as error:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)


def test_a_garbage_model_with_a_matching_checksum_is_refused(fitted, tmp_path):
    fitted["subword"].save(tmp_path)
    garbage = b"not a sentencepiece model at all"
    (tmp_path / MODEL_FILE).write_bytes(garbage)
    _edit_json(
        tmp_path / TOKENIZER_FILE,
        lambda m: m.update(model_sha256=hashlib.sha256(garbage).hexdigest()),
    )
    with pytest.raises(ChatbotError, match=f"{MODEL_FILE}: not a SentencePiece model"):
        load_tokenizer(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(ChatbotError, match=f"{tmp_path / 'nowhere' / TOKENIZER_FILE}"):
        load_tokenizer(tmp_path / "nowhere")


# Fitting: options and sources


@pytest.mark.parametrize(
    ("kind", "vocab_size", "options", "message"),
    [
        ("morse", 100, {}, "unknown tokenizer kind 'morse'"),
        ("word", 4, {}, "vocab_size must be more than 4"),
        ("word", "100", {}, "vocab_size must be an integer"),
        ("word", 100, {"model_type": "bpe"}, "unknown option 'model_type' for a word"),
        ("word", 100, {"min_count": 0}, "min_count"),
        ("subword", 100, {"model_type": "wordpiece"}, "unknown subword model_type"),
        ("subword", 100, {"character_coverage": 2.0}, "character_coverage"),
        ("subword", 20, {}, "Vocabulary size is smaller than required_chars"),
    ],
)
def test_bad_fit_arguments(kind, vocab_size, options, message):
    with pytest.raises(ChatbotError, match=message):
        fit_tokenizer(kind, ENGLISH + FRENCH, vocab_size, **options)


def test_subword_needs_some_text():
    with pytest.raises(ChatbotError, match="no text"):
        fit_tokenizer("subword", ["", "  "], 100)


@pytest.mark.parametrize("kind", KINDS)
def test_fit_on_a_corpus_store(kind, tmp_path):
    srt = tmp_path / "film.srt"
    srt.write_text(SRT, encoding="utf-8")
    with CorpusStore(tmp_path / "corpus.db") as store:
        assert ingest_file(store, srt, ReadOptions()).turns == 3
        tokenizer = fit_tokenizer(kind, store, 200)
    text = "I don't go out."
    assert UNK_ID not in tokenizer.encode(text)
    expected = text.lower() if kind == "word" else text
    assert tokenizer.decode(tokenizer.encode(text)) == expected


def test_fit_on_the_chatterbot_corpus(fitted):
    word = fitted["word"]
    assert word.vocab_size == 800
    # the most frequent tokens of English conversation are in, and come first
    assert {"you", "i", "the", "?", ".", "n't"} <= {word.id_to_token(i) for i in range(4, 60)}
    for tokenizer in fitted.values():
        ids = tokenizer.encode("What is your name?")
        assert UNK_ID not in ids


def test_a_single_string_is_not_a_corpus():
    with pytest.raises(TypeError):
        fit_tokenizer("word", "hello world", 100)


# Properties


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_char_round_trip_is_exact_for_any_text_of_its_alphabet(fitted, data):
    tokenizer = fitted["char"]
    alphabet = [tokenizer.id_to_token(i) for i in range(4, tokenizer.vocab_size)]
    text = data.draw(st.text(alphabet=st.sampled_from(alphabet)))
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_word_encode_never_raises(fitted, text):
    tokens = split_words(text)
    assert all(tokens) and not any(t.isspace() for t in tokens)
    tokenizer = fitted["word"]
    ids = tokenizer.encode(text)
    assert len(ids) == len(tokens) and all(0 < i < tokenizer.vocab_size for i in ids)
    assert isinstance(tokenizer.decode(ids), str)
