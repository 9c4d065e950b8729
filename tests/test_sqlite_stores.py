"""Opening the SQLite stores (chatbot.sqlite): whose file it is, several processes at
once, private files, and no connection left behind when opening fails."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlite_utils import Database, Migrations

from chatbot.corpus.store import CorpusStore
from chatbot.errors import ChatbotError
from chatbot.sqlite import make_private
from chatbot.transcripts.store import TranscriptStore
from tests.cli_util import SRT, open_paths, run

ROOT = Path(__file__).resolve().parent.parent



def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def side(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def transcripts_file(path: Path) -> Path:
    with TranscriptStore(path) as store:
        cid = store.start_conversation("models/tiny", None, {})
        store.add_turn(cid, "user", "My secret is safe with you?")
        store.add_turn(cid, "bot", "Always.")
    return path


def foreign_file(path: Path, kind: str) -> Path:
    """Someone else's SQLite database that happens to have a `sources` table."""
    db = Database(path)
    if kind == "sqlite_utils":  # with a migration record of its own
        other = Migrations("someones.app")

        @other()
        def m001(db: Database) -> None:
            db["sources"].insert({"id": 1, "url": "https://example.org"}, pk="id")
            db["turns"].insert({"id": 1, "what": "left"}, pk="id")

        other.apply(db)
    else:
        db["sources"].insert({"id": 1, "path": "/x", "sha256": "0" * 64, "format": "srt"},
                             pk="id")
    db.close()
    return path


@pytest.mark.parametrize("kind", ["transcripts", "sqlite_utils", "plain"])
def test_ingest_refuses_a_database_the_corpus_did_not_make(tmp_path, kind):
    path = tmp_path / "other.db"
    if kind == "transcripts":
        transcripts_file(path)
    else:
        foreign_file(path, kind)
    (tmp_path / "a.srt").write_text(SRT)
    before = path.read_bytes()
    result = run("ingest", str(tmp_path / "a.srt"), "--db", str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.srt", "other.db"]
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {path}: a SQLite database of something else"
        + (" (made by chatbot.transcripts)" if kind == "transcripts" else
           " (made by someones.app)" if kind == "sqlite_utils" else "")
        + ", not a corpus database; refusing to change it"]


def test_transcripts_store_refuses_a_corpus_and_a_stranger(tmp_path):
    corpus = tmp_path / "c.db"
    CorpusStore(corpus).close()
    stranger = foreign_file(tmp_path / "s.db", "sqlite_utils")
    for path in (corpus, stranger):
        before = path.read_bytes()
        with pytest.raises(ChatbotError, match="something else.*not a transcripts database"):
            TranscriptStore(path)
        assert path.read_bytes() == before


def test_a_store_whose_first_migration_never_committed_is_new(tmp_path):
    """An empty record table alone (old code created it outside the first migration's
    transaction) is a new store, not someone else's."""
    path = tmp_path / "c.db"
    db = Database(path)
    Migrations("chatbot.corpus").ensure_migrations_table(db)
    db.close()
    with CorpusStore(path) as store:
        assert "sources" in store.db.table_names()


def _open_fds(path: Path) -> list[str]:
    """This process's file descriptors open on `path` (or its -wal, -shm)."""
    names = {str(path), str(side(path, "-wal")), str(side(path, "-shm"))}
    return [target for target in open_paths() if target in names]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("store_class", [CorpusStore, TranscriptStore])
def test_a_store_that_fails_to_open_closes_its_connection(tmp_path, store_class):
    path = (tmp_path / "other.db").resolve()
    foreign_file(path, "plain" if store_class is TranscriptStore else "sqlite_utils")
    with pytest.raises(ChatbotError) as failure:
        store_class(path)
    # The exception (its traceback holds the half-made store) is still alive here: only
    # a connection closed on failure leaves no descriptor open on the file.
    assert failure.value is not None and _open_fds(path) == []


def test_three_ingests_of_one_file_at_once(tmp_path):
    """Real processes on a new store: each waits its turn to open it; exactly one stores
    the file and the others find it stored."""
    (tmp_path / "a.srt").write_text(SRT)
    env = {**os.environ, "CHATBOT_HOME": str(tmp_path / "home")}
    for attempt in range(3):  # each round races on a new file; one round often suffices
        db = tmp_path / f"c{attempt}.db"
        procs = [subprocess.Popen(
            [sys.executable, "-m", "chatbot", "ingest", str(tmp_path / "a.srt"), "--db",
             str(db), "--jobs", "1", "--json"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        for proc, (_, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            assert "Traceback" not in err and err == ""
        counts = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
        assert sorted(c["conversations"] for c in counts) == [0, 0, 1]
        assert sorted(c["unchanged"] for c in counts) == [0, 1, 1]
        with CorpusStore(db) as store:
            assert store.stats()["sources"] == 1


def _wide(path: Path) -> None:
    for file in (path, side(path, "-wal"), side(path, "-shm")):
        if file.exists():
            os.chmod(file, 0o644)


def test_an_existing_transcripts_file_is_made_private(tmp_path):
    path = transcripts_file(tmp_path / "t.db")
    holder = sqlite3.connect(path)  # keeps the -wal and -shm files while the store opens
    holder.execute("SELECT COUNT(*) FROM turns").fetchone()
    _wide(path)
    assert mode(side(path, "-shm")) == 0o644
    with TranscriptStore(path) as store:
        assert store.conversation(1)["turns"] == 2
        for file in (path, side(path, "-wal"), side(path, "-shm")):
            assert mode(file) == 0o600, file
    holder.close()


def test_a_corpus_receiving_transcripts_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        transcripts = transcripts_file(tmp_path / "t.db")
        new = tmp_path / "new.db"  # created for them
        assert run("ingest", "--transcripts", str(transcripts), "--db", str(new)).exit_code == 0
        assert mode(new) == 0o600
        existing = tmp_path / "existing.db"  # a corpus of films, then the chats go in too
        (tmp_path / "a.srt").write_text(SRT)
        assert run("ingest", str(tmp_path / "a.srt"), "--db", str(existing)).exit_code == 0
        assert mode(existing) == 0o644
        with CorpusStore(existing) as reader:  # holds the -wal and -shm files open
            assert reader.stats()["sources"] == 1
            assert mode(side(existing, "-shm")) == 0o644
            result = run("ingest", "--transcripts", str(transcripts), "--db", str(existing))
            assert result.exit_code == 0, result.output
            for file in (existing, side(existing, "-wal"), side(existing, "-shm")):
                assert mode(file) == 0o600, file
    finally:
        os.umask(old)


def test_private_corpus_store_and_make_private(tmp_path):
    old = os.umask(0o022)
    try:
        with CorpusStore(tmp_path / "c.db", private=True) as store:
            assert mode(store.path) == 0o600
        with CorpusStore(tmp_path / "d.db") as store:
            assert mode(store.path) == 0o644
            store.make_private()
            assert mode(store.path) == 0o600
    finally:
        os.umask(old)
    make_private(tmp_path / "missing.db")  # nothing to narrow: nothing happens
    read_only = tmp_path / "read-only.db"
    read_only.write_bytes(b"")
    read_only.chmod(0o400)
    make_private(read_only)  # private already: its owner's choice stays
    assert mode(read_only) == 0o400
    with pytest.raises(ChatbotError, match="is a directory"):
        CorpusStore(tmp_path, private=True)
