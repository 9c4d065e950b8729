"""Who speaks in the corpus (`chatbot corpus speakers`), private data in it (chat
transcripts and exports: recorded per source, the file kept 0600, named by `corpus stats`)
and deleting a source for good (`chatbot corpus rm`)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlite_utils import Database, Migrations

from chatbot.corpus import formats
from chatbot.corpus import ingest as ingesting
from chatbot.corpus.formats import Format
from chatbot.corpus.store import (
    CorpusStore,
    SourceMeta,
    m001_create_tables,
    m002_fts_without_column_sizes,
    m003_works_and_duplicates,
)
from chatbot.corpus.types import Conversation, ReadOptions, Turn
from chatbot.errors import ChatbotError
from chatbot.transcripts.store import TranscriptStore
from tests.cli_util import last_json, run

# A chat as this project's JSONL export holds it: named speakers, one turn unnamed.
CHATS = [
    {"id": 1, "source": "chats", "turns": [
        {"speaker": "Ann", "text": "Are you coming to the lake on Saturday?"},
        {"speaker": "Bob", "text": "Only if Zoë brings the canoe."},
        {"speaker": "Ann", "text": "She said she would."},
        {"speaker": "Zoë", "text": "I did say that. Pick me up at nine?"},
        {"speaker": "Ann", "text": "Nine it is."},
    ]},
    {"id": 2, "source": "chats", "turns": [
        {"speaker": "Bob", "text": "Did anyone see my keys?"},
        {"speaker": "Ann", "text": "Kitchen table, under the post."},
        {"speaker": None, "text": "(a message was deleted)"},
        {"speaker": "Bob", "text": "Found them, thanks."},
    ]},
    {"id": 3, "source": "chats", "turns": [
        {"speaker": "Zoë", "text": "The canoe has a hole in it."},
        {"speaker": "Bob", "text": "Of course it does."},
    ]},
]
# DailyDialog: two unnamed speakers a line.
DAILYDIALOG = (
    "Say , Jim , how about going for a few beers after dinner ? __eou__ You know that is "
    "tempting but is really not good for our fitness . __eou__\n"
    "Can you do push-ups ? __eou__ Of course I can . __eou__ Really ? __eou__\n"
)
# The private chat of the privacy tests: a word found nowhere else.
SECRET = "xylophonist"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def write_chats(path: Path, chats: list[dict] = CHATS) -> Path:
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in chats),
                    encoding="utf-8")
    return path


@pytest.fixture
def wide_umask():
    """Files created as most users' umask makes them (0644), to see them narrowed."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def chat_corpus(tmp_path) -> Path:
    """A store of the chats (JSONL) and a DailyDialog file, through `chatbot ingest`."""
    write_chats(tmp_path / "chats.jsonl")
    (tmp_path / "dialogues_text.txt").write_text(DAILYDIALOG)
    db = tmp_path / "c.db"
    result = run("ingest", str(tmp_path / "chats.jsonl"), str(tmp_path / "dialogues_text.txt"),
                 "--db", str(db), "--json", "-j", "1")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["turns"] == 16
    return db


# Speakers

def test_speakers_count_turns_and_conversations_most_first(chat_corpus):
    result = run("corpus", "speakers", "--db", str(chat_corpus), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"speaker": "Ann", "turns": 4, "conversations": 2},
        {"speaker": "Bob", "turns": 4, "conversations": 3},
        {"speaker": "Zoë", "turns": 2, "conversations": 2},
    ]
    text = run("corpus", "speakers", "--db", str(chat_corpus))
    assert [line.split() for line in text.stdout.splitlines()] == [
        ["4", "turns", "2", "conversations", "Ann"],
        ["4", "turns", "3", "conversations", "Bob"],
        ["2", "turns", "2", "conversations", "Zoë"],
    ]
    # The deleted message and DailyDialog's 5 utterances have no speaker.
    assert text.stderr.strip() == "6 turns with no speaker not listed"


def test_speakers_limit_and_a_corpus_without_names(chat_corpus, tmp_path):
    top = run("corpus", "speakers", "--db", str(chat_corpus), "-n", "1", "--json")
    assert json.loads(top.stdout) == [{"speaker": "Ann", "turns": 4, "conversations": 2}]
    text = run("corpus", "speakers", "--db", str(chat_corpus), "-n", "2")
    assert len(text.stdout.splitlines()) == 2
    assert text.stderr.strip() == ("1 more speaker not shown (-n N shows more); "
                                   "6 turns with no speaker not listed")
    (tmp_path / "d.txt").write_text(DAILYDIALOG)
    unnamed = tmp_path / "unnamed.db"
    assert run("ingest", str(tmp_path / "d.txt"), "--db", str(unnamed)).exit_code == 0
    result = run("corpus", "speakers", "--db", str(unnamed))
    assert result.exit_code == 0 and result.stdout == ""
    assert result.stderr.strip() == ("no speakers named in the corpus; 5 turns with no "
                                     "speaker not listed")
    assert json.loads(run("corpus", "speakers", "--db", str(unnamed), "--json").stdout) == []
    missing = run("corpus", "speakers", "--db", str(tmp_path / "none.db"))
    assert missing.exit_code == 1 and not (tmp_path / "none.db").exists()


# Removing a source

def _rows(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        counts = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                  for table in ("sources", "conversations", "turns", "sketches")}
        # The full-text index agrees with the turns table, row for row.
        conn.execute("INSERT INTO turns_fts (turns_fts) VALUES ('integrity-check')")
        return counts
    finally:
        conn.close()



def _srt(lines: list[str]) -> str:
    return "".join(f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},800\n{line}\n\n"
                   for i, line in enumerate(lines, 1))


# A film long enough (over 50 words) to have a near-duplicate sketch.
FILM_A = _srt([
    "The lighthouse keeper waved at every boat that passed the rocks.",
    "Did anyone ever wave back at him from the deck?",
    "Only the fishermen, and only on the mornings when the catch was good.",
    "So he counted the good mornings by the hands that rose above the rails.",
    "Forty one mornings last summer, he wrote, and nine the winter before.",
    "That is a strange way to keep a diary of the sea.",
])
FILM_B = ("1\n00:00:01,000 --> 00:00:02,000\nWhere is the ferry?\n\n"
          "2\n00:00:02,500 --> 00:00:03,000\nGone since noon.\n")
FILM_C = ("1\n00:00:01,000 --> 00:00:02,000\nWho left the gate open?\n\n"
          "2\n00:00:02,500 --> 00:00:03,000\nThe goats did.\n")


def test_rm_takes_a_source_with_its_rows_index_entries_and_sketch(tmp_path, monkeypatch):
    (tmp_path / "a.srt").write_text(FILM_A)
    (tmp_path / "b.srt").write_text(FILM_B)
    write_chats(tmp_path / "chats.jsonl")
    db = tmp_path / "c.db"
    assert run("ingest", str(tmp_path), "--db", str(db), "-j", "1").exit_code == 0
    before = _rows(db)
    assert before == {"sources": 3, "conversations": 5, "turns": 19, "sketches": 70}
    assert run("corpus", "search", "lighthouse", "--db", str(db)).stdout.strip()

    result = run("corpus", "rm", str(tmp_path / "a.srt"), "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    removed = last_json(result.stdout)
    assert removed == {"sources": [{"id": removed["sources"][0]["id"],
                                    "path": str(tmp_path / "a.srt"), "format": "srt",
                                    "private": False, "conversations": 1, "turns": 6}],
                       "duplicates": 0, "conversations": 1, "turns": 6}
    after = _rows(db)
    assert after == {"sources": 2, "conversations": 4, "turns": 13, "sketches": 0}
    with CorpusStore(db) as store:
        assert store.search("lighthouse") == []
        assert len(store.search("ferry")) == 1  # the other film is whole
        film_b = store.db.execute("SELECT id FROM sources WHERE format = 'srt'").fetchone()[0]

    # A path from here, then an id; ingesting a removed file again stores it again.
    monkeypatch.chdir(tmp_path)
    text = run("corpus", "rm", "chats.jsonl", "--db", str(db))
    assert text.stdout.strip() == (f"removed {tmp_path / 'chats.jsonl'} (jsonl): "
                                   "3 conversations, 11 turns")
    assert run("corpus", "rm", str(film_b), "--db", str(db)).exit_code == 0
    assert _rows(db) == {"sources": 0, "conversations": 0, "turns": 0, "sketches": 0}
    again = run("ingest", str(tmp_path / "a.srt"), "--db", str(db), "--json")
    assert last_json(again.stdout)["conversations"] == 1


def test_rm_of_a_missing_source_is_one_line_and_changes_nothing(tmp_path):
    (tmp_path / "a.srt").write_text(FILM_A)
    db = tmp_path / "c.db"
    assert run("ingest", str(tmp_path / "a.srt"), "--db", str(db)).exit_code == 0
    before = db.read_bytes()
    (tmp_path / "elsewhere").mkdir()
    for name in ("nothing.srt", "99", str(tmp_path / "elsewhere")):
        result = run("corpus", "rm", name, "--db", str(db))
        assert result.exit_code == 1
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1 and f"no source {name!r}" in result.stderr
    assert _rows(db)["turns"] == 6 and db.read_bytes() == before
    assert run("corpus", "rm", "a.srt", "--db", str(tmp_path / "none.db")).exit_code == 1
    assert not (tmp_path / "none.db").exists()


def test_rm_of_an_archive_or_a_folder_takes_what_was_read_from_it(tmp_path):
    archive = tmp_path / "films.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("one/a.srt", FILM_A)
        z.writestr("two/b.srt", FILM_B)
    (tmp_path / "c.srt").write_text(FILM_C)
    db = tmp_path / "c.db"
    assert run("ingest", str(archive), str(tmp_path / "c.srt"), "--db", str(db)).exit_code == 0
    assert _rows(db)["sources"] == 3
    one = run("corpus", "rm", f"{archive}!one/a.srt", "--db", str(db), "--json")
    assert [s["path"] for s in last_json(one.stdout)["sources"]] == [f"{archive}!one/a.srt"]
    rest = run("corpus", "rm", str(archive), "--db", str(db), "--json")
    assert [s["path"] for s in last_json(rest.stdout)["sources"]] == [f"{archive}!two/b.srt"]
    assert _rows(db)["sources"] == 1
    assert run("ingest", str(archive), "--db", str(db)).exit_code == 0
    folder = run("corpus", "rm", str(tmp_path), "--db", str(db), "--json")
    assert sorted(s["path"] for s in last_json(folder.stdout)["sources"]) == sorted([
        f"{archive}!one/a.srt", f"{archive}!two/b.srt", str(tmp_path / "c.srt")])
    assert _rows(db)["sources"] == 0


def test_rm_of_a_film_takes_the_records_of_its_duplicates(tmp_path):
    with CorpusStore(tmp_path / "c.db") as store:
        film = [Conversation([Turn("How are you?"), Turn("Fine, thanks.")])]
        store.add_source("/first.srt", "1" * 64, "srt", None, film, 2,
                         meta=SourceMeta("imdb:42", imdb_id=42))
        second = store.add_source("/second.srt", "2" * 64, "srt", None, film, 2,
                                  meta=SourceMeta("imdb:42", imdb_id=42))
        assert second.duplicate_of == "/first.srt"
        removed = store.remove("/first.srt")
        assert (removed.duplicates, removed.conversations, removed.turns) == (1, 1, 2)
        assert store.stats()["sources"] == store.stats()["duplicates"] == 0
        # The other release is no longer "unchanged": it goes in whole.
        again = store.add_source("/second.srt", "2" * 64, "srt", None, film, 2,
                                 meta=SourceMeta("imdb:42", imdb_id=42))
        assert (again.unchanged_as, again.duplicate_of, again.conversations) == (None, None, 1)


def test_rm_is_one_transaction(tmp_path):
    write_chats(tmp_path / "chats.jsonl")
    db = tmp_path / "c.db"
    assert run("ingest", str(tmp_path / "chats.jsonl"), "--db", str(db)).exit_code == 0
    with CorpusStore(db) as store:
        secure_delete = store.db.execute("PRAGMA secure_delete").fetchone()
        # The last statement fails: the turns and conversations deleted before it come back.
        store.db.execute("CREATE TEMP TRIGGER refuse BEFORE DELETE ON sources "
                         "BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(sqlite3.Error, match="refused"):
            store.remove(str(tmp_path / "chats.jsonl"))
        assert not store.db.conn.in_transaction
        assert store.db.execute("PRAGMA secure_delete").fetchone() == secure_delete
    assert _rows(db) == {"sources": 1, "conversations": 3, "turns": 11, "sketches": 0}


# Private data

def transcripts_file(path: Path) -> Path:
    with TranscriptStore(path) as store:
        cid = store.start_conversation("models/tiny", None, {})
        store.add_turn(cid, "user", f"My {SECRET} friend plays tonight, keep it quiet.")
        store.add_turn(cid, "bot", "Your secret is safe.")
    return path


def test_transcripts_are_private_data_until_removed(tmp_path, wide_umask):
    transcripts = transcripts_file(tmp_path / "t.db")
    assert mode(transcripts) == 0o600
    (tmp_path / "a.srt").write_text(FILM_A)
    db = tmp_path / "c.db"
    assert run("ingest", str(tmp_path / "a.srt"), "--db", str(db)).exit_code == 0
    assert mode(db) == 0o644
    assert run("ingest", "--transcripts", str(transcripts), "--db", str(db)).exit_code == 0
    assert mode(db) == 0o600 and mode(transcripts) == 0o600

    stats = last_json(run("corpus", "stats", "--db", str(db), "--json").stdout)
    name = f"transcripts:{transcripts.resolve()}"
    assert stats["private_sources"] == [{"id": 2, "path": name, "format": "transcripts",
                                         "conversations": 1, "turns": 2}]
    text = run("corpus", "stats", "--db", str(db)).stdout.splitlines()
    assert text[-2:] == [
        "private data (mode 0600): 1 source of chat transcripts or exports (`chatbot corpus "
        "rm SOURCE` deletes one)",
        f"       2  {name}  (transcripts, 1 conversation)",
    ]

    # Removed while another connection holds the -wal file open: the words are gone
    # from every file of the store, not only from its tables.
    holder = sqlite3.connect(db)
    holder.execute("SELECT COUNT(*) FROM turns").fetchone()
    result = run("corpus", "rm", str(transcripts), "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["sources"][0]["private"] is True
    for file in (db, side(db, "-wal")):
        assert SECRET.encode() not in (file.read_bytes() if file.exists() else b""), file
    holder.close()
    assert last_json(run("corpus", "stats", "--db", str(db), "--json").stdout)[
        "private_sources"] == []
    assert "private data" not in run("corpus", "stats", "--db", str(db)).stdout
    assert SECRET.encode() in transcripts.read_bytes()  # the chats themselves stay, 0600
    assert mode(transcripts) == 0o600


@dataclass(frozen=True)
class _PrivateFormat(Format):
    """A chat export's format (as whatsapp and telegram are), whether or not Format has
    its own `private` field yet."""

    private: bool = True


@pytest.fixture
def private_jsonl(monkeypatch):
    """JSONL read as a chat export: private data."""
    jsonl = formats.FORMATS["jsonl"]
    monkeypatch.setitem(formats.FORMATS, "jsonl", _PrivateFormat(
        jsonl.name, jsonl.extensions, jsonl.description))


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_chat_export_makes_the_store_private(tmp_path, wide_umask, private_jsonl, jobs,
                                               monkeypatch):
    from_workers = []
    store_read = ingesting._store_read

    def spy(store, blob, *rest):
        from_workers.append(blob.name)
        return store_read(store, blob, *rest)

    monkeypatch.setattr(ingesting, "_store_read", spy)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.srt").write_text(FILM_A)
    write_chats(tmp_path / "in" / "chats.jsonl", [
        {"id": 1, "source": "x", "turns": [{"speaker": "Ann", "text": f"The {SECRET}?"},
                                           {"speaker": "Bob", "text": "Hush."}]}])
    db = tmp_path / "c.db"
    with CorpusStore(db) as store:
        assert mode(db) == 0o644
        holder = sqlite3.connect(db)  # the -wal and -shm files exist, 0644
        holder.execute("SELECT COUNT(*) FROM sources").fetchone()
        report = ingesting.ingest(store, [tmp_path / "in"], ReadOptions(), jobs=jobs)
        assert report.as_json()["failed"] == 0
        assert len(from_workers) == (2 if jobs > 1 else 0)  # the worker path, and this one
        for file in (db, side(db, "-wal"), side(db, "-shm")):
            assert mode(file) == 0o600, file
        holder.close()
        assert [(s["format"], s["private"]) for s in store.db.query(
            "SELECT format, private FROM sources ORDER BY format")] == [
            ("jsonl", 1), ("srt", 0)]
        assert [s["path"] for s in store.private_sources()] == [
            str(tmp_path / "in" / "chats.jsonl")]


def test_a_store_made_for_a_chat_export_is_private_from_the_start(tmp_path, wide_umask,
                                                                  private_jsonl):
    write_chats(tmp_path / "chats.jsonl")
    db = tmp_path / "c.db"
    assert run("ingest", str(tmp_path / "chats.jsonl"), "--db", str(db), "--format",
               "jsonl").exit_code == 0
    assert mode(db) == 0o600
    plain = tmp_path / "plain.db"
    (tmp_path / "a.srt").write_text(FILM_A)
    assert run("ingest", str(tmp_path / "a.srt"), "--db", str(plain)).exit_code == 0
    assert mode(plain) == 0o644  # nothing private in it: as the umask makes it


def test_a_store_of_m003_upgrades_in_place(tmp_path, wide_umask):
    old = tmp_path / "old.db"
    db = Database(old)
    before = Migrations("chatbot.corpus")
    for migration in (m001_create_tables, m002_fts_without_column_sizes,
                      m003_works_and_duplicates):
        before()(migration)  # the store as the code before m004 made it
    before.apply(db)
    for source_id, (path, fmt) in enumerate(
            [("/film.srt", "srt"), ("transcripts:/home/t.db", "transcripts")], 1):
        db.execute("INSERT INTO sources (id, path, sha256, format, conversations, turns) "
                   "VALUES (?, ?, ?, ?, 1, 2)", [source_id, path, str(source_id) * 64, fmt])
        db.execute("INSERT INTO conversations (id, source_id, position) VALUES (?, ?, 0)",
                   [source_id, source_id])
        for position, text in enumerate(["Hello there.", f"Hi ({fmt})."]):
            db.execute("INSERT INTO turns (conversation_id, position, speaker, text) VALUES "
                       "(?, ?, ?, ?)", [source_id, position, f"S{position}", text])
    db.execute("INSERT INTO turns_fts (rowid, text) SELECT id, text FROM turns")
    db.conn.commit()
    db.close()
    os.chmod(old, 0o644)

    with CorpusStore(old) as store:  # m004 runs on opening
        assert store.db["sources"].columns_dict["private"] is int
        assert [(s["path"], s["private"]) for s in store.db["sources"].rows] == [
            ("/film.srt", 0), ("transcripts:/home/t.db", 1)]
        assert mode(old) == 0o600  # it holds transcripts: narrowed on opening
        assert [s["path"] for s in store.private_sources()] == ["transcripts:/home/t.db"]
        assert store.speakers() == ([{"speaker": "S0", "turns": 2, "conversations": 2},
                                     {"speaker": "S1", "turns": 2, "conversations": 2}], 0)
        # New rows take the column's default; the upgraded store removes as a new one does.
        store.add_source("/b.srt", "3" * 64, "srt", None,
                         [Conversation([Turn("One."), Turn("Two.")])], 2)
        assert store.db.execute("SELECT private FROM sources WHERE path = '/b.srt'"
                                ).fetchone() == (0,)
        removed = store.remove("transcripts:/home/t.db")
        assert (removed.conversations, removed.turns) == (1, 2)
        assert store.search("transcripts") == [] and len(store.search("hello")) == 1
        assert not store.holds_private_data()


def test_a_private_store_of_another_user_still_opens(tmp_path, monkeypatch):
    """Narrowing on opening is for the owner: a store it cannot chmod opens anyway."""
    db = tmp_path / "c.db"
    with CorpusStore(db) as store:
        store.add_source("/chat", "1" * 64, "transcripts", None,
                         [Conversation([Turn("a"), Turn("b")])], 2, private=True)

    def refuse(path: Path) -> None:
        raise ChatbotError(f"{path}: cannot make it private")

    monkeypatch.setattr("chatbot.corpus.store.make_private", refuse)
    with CorpusStore(db) as store:
        assert store.holds_private_data()
