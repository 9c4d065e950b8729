"""The corpus store and the ingest pipeline: transactions, no-op re-ingest, detection."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database, Migrations

from chatbot.corpus import ingest as ingesting
from chatbot.corpus.formats import detect, format_named
from chatbot.corpus.store import CorpusStore, m001_create_tables, migrations
from chatbot.corpus.subtitles import cue as cue_module
from chatbot.corpus.types import Conversation, ReadOptions, Turn
from chatbot.errors import ChatbotError

SRT = (
    "1\n00:00:01,000 --> 00:00:02,000\nHow are you?\n\n"
    "2\n00:00:02,500 --> 00:00:03,000\nFine, thanks.\n\n"
    "3\n00:00:30,000 --> 00:00:31,000\nAlone after a long pause.\n"
)


@pytest.fixture
def store(tmp_path):
    with CorpusStore(tmp_path / "corpus.db") as s:
        yield s


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_schema_comes_from_migrations(store):
    assert {"sources", "conversations", "turns", "turns_fts"} <= set(store.db.table_names())
    assert [m.name for m in migrations.applied(store.db)] == [
        "m001_create_tables", "m002_fts_without_column_sizes", "m003_works_and_duplicates",
        "m004_private_sources"]
    columns = set(store.db["sources"].columns_dict)
    assert {"path", "sha256", "format", "encoding", "ingested_at"} <= columns
    assert {"speaker", "text", "start_ms", "end_ms"} <= set(store.db["turns"].columns_dict)


def test_a_store_from_before_m002_upgrades_in_place(tmp_path):
    old = tmp_path / "old.db"
    db = Database(old)
    first = Migrations("chatbot.corpus")
    first()(m001_create_tables)  # m001 alone: a store made before m002
    first.apply(db)
    # Rows as the code of that time wrote them: a film and a dialogue set.
    for source_id, fmt in ((1, "srt"), (2, "chitchat")):
        db.execute("INSERT INTO sources (id, path, sha256, format) VALUES (?, ?, ?, ?)",
                   [source_id, f"/{fmt}", f"{source_id}" * 64, fmt])
        db.execute("INSERT INTO conversations (id, source_id, position) VALUES (?, ?, 0)",
                   [source_id, source_id])
        for position, text in enumerate(["How are you?", f"Fine, thanks ({fmt})."]):
            db.execute("INSERT INTO turns (conversation_id, position, text) VALUES (?, ?, ?)",
                       [source_id, position, text])
    db.execute("INSERT INTO turns_fts (rowid, text) SELECT id, text FROM turns")
    db.conn.commit()
    db.close()
    with CorpusStore(old) as store:  # m002 and m003 run on opening
        assert len(store.search("fine")) == 2
        assert "columnsize=0" in store.db["turns_fts"].schema
        # The film became a work of its own; the dialogue set splits by conversation.
        assert [(k, t[1]) for k, t in store.iter_turn_texts()] == [
            ("sha256:" + "1" * 64, "Fine, thanks (srt)."),
            ("2" * 64 + ":0", "Fine, thanks (chitchat)."),
        ]
        # Its conversations have digests: the same conversation again is not stored.
        again = store.add_source("/again", "3" * 64, "srt", None, [Conversation(
            [Turn("How are you?"), Turn("Fine, thanks (srt).")])], 2)
        assert (again.conversations, again.duplicate_conversations) == (0, 1)
        store.remove_source("/srt")  # the delete trigger
        assert len(store.search("fine")) == 1


def test_ingest_counts_and_min_turns(store, tmp_path):
    path = write(tmp_path / "a.srt", SRT)
    result = ingesting.ingest_file(store, path, ReadOptions())
    assert (result.format, result.conversations, result.turns) == ("srt", 1, 2)
    assert result.skipped_conversations == 1
    assert store.stats() == {"sources": 1, "conversations": 1, "turns": 2, "duplicates": 0,
        "duplicate_conversations": 0}
    row = next(store.db["sources"].rows)
    assert row["encoding"] == "utf-8" and len(row["sha256"]) == 64
    assert row["path"] == str(path.resolve())


def test_same_content_again_is_a_no_op(store, tmp_path):
    first = write(tmp_path / "a.srt", SRT)
    copy = write(tmp_path / "b.srt", SRT)
    ingesting.ingest_file(store, first, ReadOptions())
    again = ingesting.ingest_file(store, copy, ReadOptions())
    assert again.unchanged_as == str(first.resolve())
    assert store.stats() == {"sources": 1, "conversations": 1, "turns": 2, "duplicates": 0,
        "duplicate_conversations": 0}


def test_an_error_mid_file_leaves_nothing_of_it(store):
    def conversations():
        yield Conversation([Turn("a"), Turn("b")])
        raise ChatbotError("boom halfway")

    with pytest.raises(ChatbotError):
        store.add_source("x", "0" * 64, "srt", "utf-8", conversations(), 2)
    assert store.stats() == {"sources": 0, "conversations": 0, "turns": 0, "duplicates": 0,
        "duplicate_conversations": 0}
    assert store.search("a") == []


def test_undecodable_and_binary_and_empty_files_fail_cleanly(store, tmp_path):
    binary = tmp_path / "x.srt"
    binary.write_bytes(b"\x00\x01\x02PNG\x00" * 20)
    empty = tmp_path / "e.srt"
    empty.write_bytes(b"")
    results = ingesting.ingest(store, [tmp_path], ReadOptions())
    errors = sorted(r.error for r in results.results if r.error)
    assert errors == [f"{empty}: empty file", f"{binary}: binary file, not text (pass "
                      "--encoding if it is UTF-16/32)"]
    assert store.stats()["sources"] == 0


def test_wrong_encoding_override_names_the_line(store, tmp_path):
    path = tmp_path / "a.srt"
    path.write_bytes(SRT.replace("Fine", "Finé").encode("utf-8"))
    result = ingesting.ingest_file(store, path, ReadOptions(encoding="ascii"))
    assert result.error == f"{path}:7: cannot decode as ascii; pass --encoding"
    bad = ingesting.ingest_file(store, path, ReadOptions(encoding="klingon"))
    assert bad.error == f"{path}: unknown encoding 'klingon'"


def test_far_out_of_order_file_goes_through_the_external_sort(store, tmp_path, monkeypatch):
    monkeypatch.setattr(cue_module, "REORDER_WINDOW", 1)
    text = (
        "1\n00:00:01,000 --> 00:00:02,000\nOne.\n\n2\n00:00:02,000 --> 00:00:03,000\nTwo.\n\n"
        "3\n00:00:03,000 --> 00:00:04,000\nThree.\n\n4\n00:00:00,000 --> 00:00:01,000\nZero.\n"
    )
    result = ingesting.ingest_file(store, write(tmp_path / "a.srt", text), ReadOptions())
    assert result.error is None and result.turns == 4
    turns = store.conversation(1)["turns"]
    assert [t["text"] for t in turns] == ["Zero.", "One.", "Two.", "Three."]
    assert store.stats()["sources"] == 1


def test_refuses_files_that_are_not_corpus_databases(tmp_path):
    text = tmp_path / "notes.db"
    text.write_text("my precious notes")
    with pytest.raises(ChatbotError, match="not a SQLite database"):
        CorpusStore(text)
    assert text.read_text() == "my precious notes"
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(ChatbotError, match="something else"):
        CorpusStore(other)


def test_search_export_and_show(store, tmp_path):
    ingesting.ingest_file(store, write(tmp_path / "a.srt", SRT), ReadOptions())
    hits = store.search("thanks")
    assert [(h["conversation_id"], h["position"]) for h in hits] == [(1, 1)]
    assert "[thanks]" in hits[0]["snippet"]
    with pytest.raises(ChatbotError, match="invalid search query"):
        store.search('"unbalanced')
    exported = list(store.iter_conversations())
    assert exported[0][0] == 1 and exported[0][1].endswith("a.srt")
    assert exported[0][2].turns[0] == Turn("How are you?", None, 1000, 2000)
    with pytest.raises(ChatbotError, match="no conversation with id 99"):
        store.conversation(99)


def test_directory_walk_skips_hidden_and_companion_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    for name in ["sub/a.srt", "b.vtt", ".hidden.srt", ".git/c.srt", "movie_conversations.txt"]:
        (tmp_path / name).write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in ingesting.input_files([tmp_path])]
    assert found == ["b.vtt", "sub/a.srt"]


def test_detection_by_extension_and_content(tmp_path):
    cases = {
        "a.srt": b"1\n00:00:01,000 --> 00:00:02,000\nx\n",
        "b.txt": b"1\n00:00:01,000 --> 00:00:02,000\nx\n",
        "c.txt": b"WEBVTT\n\n00:01.000 --> 00:02.000\nx\n",
        "d.txt": b"L1 +++$+++ u0 +++$+++ m0 +++$+++ A +++$+++ Hi\n",
        "e.txt": b"Hi . __eou__ Hello . __eou__\n",
        "f.txt": b"Go.\tVa !\nHi.\tSalut !\n",
        "g.txt": b"It was a dark and stormy night.\n",
        "h.data": b'{"id": 1, "source": "x", "turns": []}\n',
        "i.ass": b"[Script Info]\n",
    }
    found = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        found[name] = detect(tmp_path / name, data).name
    assert found == {
        "a.srt": "srt", "b.txt": "srt", "c.txt": "vtt", "d.txt": "cornell",
        "e.txt": "dailydialog", "f.txt": "tsv", "g.txt": "novel", "h.data": "jsonl",
        "i.ass": "ass",
    }
    with pytest.raises(ChatbotError, match="pass --format"):
        detect(tmp_path / "x.bin", b"\x89PNG")
    assert format_named("SSA").name == "ass"


def test_builtin_corpora_resolve():
    files, fmt = ingesting.builtin_inputs("chatterbot:english")
    assert fmt.name == "chatterbot_yaml" and any(p.name == "greetings.yml" for p in files)
    files, fmt = ingesting.builtin_inputs("chitchat")
    assert fmt.name == "chitchat" and files[0].name == "dataset.json"
    with pytest.raises(ChatbotError, match="languages: "):
        ingesting.builtin_inputs("chatterbot:klingon")


def test_cornell_pair_is_one_source_whichever_file_is_named(store, tmp_path):
    sep = " +++$+++ "
    (tmp_path / "movie_lines.txt").write_text(
        f"L2{sep}u1{sep}m0{sep}BOB{sep}Hello.\nL1{sep}u0{sep}m0{sep}ANN{sep}Hi.\n")
    (tmp_path / "movie_conversations.txt").write_text(f"u0{sep}u1{sep}m0{sep}['L1', 'L2']\n")
    first = ingesting.ingest_file(store, tmp_path / "movie_lines.txt", ReadOptions())
    assert (first.format, first.turns) == ("cornell", 2)
    again = ingesting.ingest_file(store, tmp_path / "movie_conversations.txt", ReadOptions())
    assert again.unchanged_as == str((tmp_path / "movie_lines.txt").resolve())
    turns = store.conversation(1)["turns"]
    assert [(t["speaker"], t["text"]) for t in turns] == [("ANN", "Hi."), ("BOB", "Hello.")]


def test_walks_read_known_extensions_unless_a_format_is_given(tmp_path):
    (tmp_path / "README.md").write_text("| a | L1 +++$+++ table |\n")
    (tmp_path / "talk.srt").write_text(SRT)
    (tmp_path / "notes.txt").write_text("Prose.\n")
    found = sorted(p.name for p in ingesting.input_files([tmp_path]))
    assert found == ["notes.txt", "talk.srt"]
    everything = sorted(p.name for p in ingesting.input_files([tmp_path], every_file=True))
    assert everything == ["README.md", "notes.txt", "talk.srt"]
    # Named explicitly, it is read, and a table mentioning the separator is not Cornell.
    assert [p.name for p in ingesting.input_files([tmp_path / "README.md"])] == ["README.md"]
    with pytest.raises(ChatbotError, match="pass --format"):
        detect(tmp_path / "README.md", (tmp_path / "README.md").read_bytes())
