"""Chat transcripts: the store the chat writes, `chatbot transcripts ...`, and ingesting them.

Library calls directly, commands through click's CliRunner, and real processes for the
things only real processes show: several chats writing one file, `kill -9`, imports.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.corpus.types import Conversation, Turn
from chatbot.errors import ChatbotError
from chatbot.transcripts import default_transcripts_db
from chatbot.transcripts.export import escape_markdown, to_conversations
from chatbot.transcripts.store import TranscriptStore

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def make_chat(store: TranscriptStore) -> int:
    """A rated conversation: good, bad, then good again."""
    cid = store.start_conversation("models/tiny", "ab" * 32, {"temperature": 0.7})
    store.add_turn(cid, "user", "Hello there!")
    store.add_turn(cid, "bot", "Hi, how are you?", latency_ms=41, tokens=5,
                   settings={"beam": 1})
    store.rate("good", conversation_id=cid)
    store.add_turn(cid, "user", "What is the weather like?")
    store.add_turn(cid, "bot", "I don't know.", latency_ms=30, tokens=4)
    store.rate("bad", conversation_id=cid)
    store.add_turn(cid, "user", "Tell me a joke.")
    store.add_turn(cid, "bot", "Why did the chicken cross the road?", latency_ms=55, tokens=8)
    store.rate("good", conversation_id=cid)
    return cid


@pytest.fixture
def db(tmp_path) -> Path:
    """A transcripts file with two conversations: the rated one and an unrated one."""
    path = tmp_path / "t.db"
    with TranscriptStore(path) as store:
        make_chat(store)
        other = store.start_conversation("models/tiny", None, {}, name="short one")
        store.add_turn(other, "user", "Is it raining?")
        store.add_turn(other, "bot", "Rain, rain, rain.")
    return path


# The store


def test_schema_wal_and_private_files(tmp_path):
    old = os.umask(0)  # even a permissive umask must not make transcripts readable by others
    try:
        path = tmp_path / "sub" / "t.db"
        store = TranscriptStore(path)
        make_chat(store)
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    for suffix in ("-wal", "-shm"):  # SQLite gives them the database file's mode
        assert mode(path.with_name(path.name + suffix)) == 0o600
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert set(store.db["conversations"].columns_dict) == {
        "id", "started_at", "model_path", "model_digest", "settings", "name", "origin",
        "digest"}
    assert set(store.db["turns"].columns_dict) == {
        "id", "conversation_id", "position", "role", "text", "created_at", "latency_ms",
        "tokens", "settings", "rating"}
    with pytest.raises(sqlite3.IntegrityError):  # the schema itself keeps roles honest
        store.db.execute("INSERT INTO turns (conversation_id, position, role, text, created_at)"
                         " VALUES (1, 99, 'narrator', 'x', 'now')")
    store.close()
    again = TranscriptStore(path)  # reopening applies nothing twice
    assert [m["name"] for m in again.db["_sqlite_migrations"].rows] == [
        "m001_create_tables", "m002_origin_and_digest"]
    with pytest.raises(sqlite3.IntegrityError):  # and where a conversation was held
        again.db.execute("INSERT INTO conversations (started_at, origin) VALUES ('now', 'fax')")
    assert again.integrity_check() == "ok"


@pytest.mark.parametrize("kind", ["text", "other_sqlite", "corpus", "corrupt"])
def test_foreign_or_corrupt_file_is_refused_and_untouched(tmp_path, kind):
    path = tmp_path / "t.db"
    if kind == "text":
        path.write_text("my diary\n")
    elif kind == "other_sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (x)")
        conn.commit()
        conn.close()
    elif kind == "corpus":  # same table names as ours: must still be told apart
        from chatbot.corpus.store import CorpusStore

        CorpusStore(path).close()
    else:
        path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)
    before = path.read_bytes()
    listing = sorted(os.listdir(tmp_path))
    with pytest.raises(ChatbotError, match=str(path)):
        TranscriptStore(path)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == listing
    result = run("transcripts", "list", "--transcripts", str(path))
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"Error: {path}") and path.read_bytes() == before


def test_positions_ratings_retry_undo(tmp_path):
    store = TranscriptStore(tmp_path / "t.db")
    cid = make_chat(store)
    turns = store.turns(cid)
    assert [t["position"] for t in turns] == list(range(6))
    assert [t["role"] for t in turns] == ["user", "bot"] * 3
    assert [t["rating"] for t in turns] == [None, "good", None, "bad", None, "good"]
    assert turns[1]["settings"] == {"beam": 1} and turns[1]["latency_ms"] == 41
    assert store.conversation(cid)["settings"] == {"temperature": 0.7}

    retried = store.replace_last_bot_turn(cid, "Because.", latency_ms=9, tokens=2)
    last = store.turns(cid)[-1]
    assert last["id"] == retried and last["text"] == "Because." and last["rating"] is None
    assert store.search("chicken") == [] and store.search("because")[0]["turn_id"] == retried
    assert store.rate("bad", turn_id=retried) == retried
    with pytest.raises(ChatbotError, match="only bot replies"):
        store.rate("good", turn_id=turns[0]["id"])
    with pytest.raises(ChatbotError, match="rating must be"):
        store.rate("meh", conversation_id=cid)  # type: ignore[arg-type]
    with pytest.raises(ChatbotError, match="does not end with a bot reply"):
        store.add_turn(cid, "user", "wait")
        store.replace_last_bot_turn(cid, "nope")
    assert [t["position"] for t in store.turns(cid)] == list(range(7))
    with pytest.raises(ChatbotError, match="no conversation with id 99"):
        store.add_turn(99, "user", "hello?")
    with pytest.raises(ChatbotError, match="role must be"):
        store.add_turn(cid, "system", "x")  # type: ignore[arg-type]

    newer = store.start_conversation(None, None)
    assert store.latest_conversation()["id"] == newer
    time.sleep(0.01)  # timestamps are in milliseconds
    store.add_turn(cid, "bot", "still here")  # activity, not start time, makes it latest
    assert store.latest_conversation()["id"] == cid
    assert [c["id"] for c in store.list_conversations(1)] == [newer]


def test_search_rename_remove_backup(db, tmp_path):
    store = TranscriptStore(db)
    hits = store.search("rain*")
    assert [(h["conversation_id"], h["role"]) for h in hits][:2] == [(2, "bot"), (2, "user")]
    assert hits[0]["snippet"].startswith("[Rain]")
    for bad in ("AND OR", '"unterminated', "   "):
        with pytest.raises(ChatbotError, match="search query"):
            store.search(bad)
    store.rename(2, "  weather  ")
    assert store.conversation(2)["name"] == "weather"
    store.rename(2, "")
    assert store.conversation(2)["name"] is None

    copy = store.backup(tmp_path / "copy.db")
    assert mode(copy) == 0o600
    with pytest.raises(ChatbotError, match="already exists"):
        store.backup(copy)
    store.remove(1)
    assert [c["id"] for c in store.list_conversations()] == [2]
    assert store.search("joke") == []
    # The index must have lost the rows too, not only the join: count what FTS5 holds.
    assert store.db.execute("SELECT COUNT(*) FROM turns_fts").fetchone()[0] == 2
    with pytest.raises(ChatbotError, match="no conversation with id 1"):
        store.remove(1)
    restored = TranscriptStore(copy)
    assert [c["id"] for c in restored.list_conversations()] == [2, 1]
    assert restored.search("joke")[0]["conversation_id"] == 1


def test_to_conversations_only_rated():
    rows = [
        {"role": r, "text": t, "rating": g}
        for r, t, g in [("user", "Hi", None), ("bot", "Hello  \n there", "good"),
                        ("user", "Weather?", None), ("bot", "Dunno", "bad"),
                        ("user", "A joke?", None), ("user", "  ", None),
                        ("bot", "Knock knock", "good"), ("user", "Who's there?", None)]
    ]
    convert = lambda only: [[(t.speaker, t.text) for t in c.turns]  # noqa: E731
                            for c in to_conversations([({}, rows)], only)]
    assert convert(None) == [[("user", "Hi"), ("bot", "Hello there"), ("user", "Weather?"),
                              ("bot", "Dunno"), ("user", "A joke?"), ("bot", "Knock knock"),
                              ("user", "Who's there?")]]
    assert convert("good") == [[("user", "Hi"), ("bot", "Hello there")],
                               [("user", "A joke?"), ("bot", "Knock knock")]]
    assert convert("bad") == [[("user", "Weather?"), ("bot", "Dunno")]]
    assert list(to_conversations([({}, [])])) == []
    assert Conversation([Turn("Hi", "user")]).turns[0].speaker == "user"


def test_markdown_escaping():
    assert escape_markdown("*not bold* # <b>x</b>") == r"\*not bold\* \# \<b\>x\</b\>"
    assert escape_markdown("- not a list\n1. nor this") == "\\- not a list\\\n1\\. nor this"


# The commands


def test_cli_list_show_search(db):
    t = ("--transcripts", str(db))
    listed = run("transcripts", "list", *t, "--json")
    rows = json.loads(listed.stdout)
    assert [(r["id"], r["turns"], r["name"]) for r in rows] == [(2, 2, "short one"), (1, 6, None)]
    assert rows[0]["started_at"].endswith("+00:00")
    assert len(json.loads(run("transcripts", "list", *t, "-n", "1", "--json").stdout)) == 1
    lines = run("transcripts", "list", *t).stdout.splitlines()
    assert lines[0].split()[0] == "2" and lines[0].endswith("2 turns  terminal  short one")
    assert lines[1].endswith("6 turns  terminal  Hello there!")

    text = run("transcripts", "show", "1", *t).stdout.splitlines()
    assert text[0].startswith("conversation 1, started ")
    assert text[0].endswith("models/tiny (abababababab)")
    assert text[1:3] == ["  0 you: Hello there!",
                         "  1 bot: Hi, how are you?  (41 ms, 5 tokens, rated good)"]
    markdown = run("transcripts", "show", "1", *t, "--format", "markdown").stdout
    assert markdown.startswith("# Conversation 1\n")
    assert "**You:** Hello there!" in markdown  # only Markdown syntax is escaped
    assert "**Bot:** I don't know. *(30 ms, 4 tokens, rated bad)*" in markdown
    shown = json.loads(run("transcripts", "show", "2", *t, "--format", "json").stdout)
    assert shown["name"] == "short one" and [x["text"] for x in shown["turns"]] == [
        "Is it raining?", "Rain, rain, rain."]
    assert json.loads(run("transcripts", "show", "2", *t, "--json").stdout) == shown
    both = run("transcripts", "show", "2", *t, "--json", "--format", "markdown")
    assert both.exit_code == 2 and "--json" in both.stderr

    found = run("transcripts", "search", "weather", *t)
    assert found.stdout == "1:2  user: What is the [weather] like?\n"
    assert json.loads(run("transcripts", "search", "joke", *t, "--json").stdout)[0][
        "position"] == 4
    bad = run("transcripts", "search", "AND OR", *t)
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: invalid search query")
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = run("transcripts", "show", "7", *t)
    assert missing.exit_code == 1 and "no conversation with id 7" in missing.stderr


def test_cli_export(db, tmp_path):
    t = ("--transcripts", str(db))
    records = [json.loads(line) for line in run("transcripts", "export", *t).stdout.splitlines()]
    assert [r["id"] for r in records] == [1, 2]
    assert records[0]["settings"] == {"temperature": 0.7}
    assert [(x["role"], x["rating"]) for x in records[0]["turns"][:2]] == [
        ("user", None), ("bot", "good")]
    out = tmp_path / "one.md"
    result = run("transcripts", "export", *t, "--format", "markdown", "--conversation", "2",
                 "-o", str(out))
    assert result.exit_code == 0 and mode(out) == 0o600
    assert out.read_text().startswith("# short one\n") and "**Bot:** Rain" in out.read_text()
    out.write_text("an older, longer export that everyone could read\n" * 10)
    out.chmod(0o644)  # an existing file keeps no wider mode: the export is private
    assert run("transcripts", "export", *t, "--conversation", "2", "-o", str(out)).exit_code == 0
    assert mode(out) == 0o600 and json.loads(out.read_text())["id"] == 2
    assert run("transcripts", "export", *t, "-o", os.devnull).exit_code == 0  # not chmod'ed
    both = run("transcripts", "export", *t, "--format", "markdown").stdout
    assert both.count("\n---\n") == 1
    # The JSONL is also this project's corpus JSONL: plain `chatbot ingest` reads it.
    jsonl = tmp_path / "chats.jsonl"
    run("transcripts", "export", *t, "-o", str(jsonl))
    ingested = run("ingest", str(jsonl), "--db", str(tmp_path / "c.db"), "--json")
    assert json.loads(ingested.stdout.splitlines()[-1])["turns"] == 8


def test_every_transcripts_option_has_help_and_data_commands_have_json():
    group = cli.commands["transcripts"]
    for name, command in group.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"transcripts {name} {param.opts[0]}"
        if name in ("list", "show", "search", "path"):  # the commands that print data
            assert any("--json" in p.opts for p in command.params), name


def test_cli_rm_name_path_backup(db, tmp_path, isolated_home):
    t = ("--transcripts", str(db))
    assert run("transcripts", "name", "1", "jokes", *t).exit_code == 0
    assert json.loads(run("transcripts", "list", *t, "--json").stdout)[1]["name"] == "jokes"
    copy = tmp_path / "backup.db"
    assert run("transcripts", "backup", str(copy), *t).exit_code == 0 and mode(copy) == 0o600
    again = run("transcripts", "backup", str(copy), *t)
    assert again.exit_code == 1 and "refusing to overwrite" in again.stderr
    assert run("transcripts", "rm", "1", *t).exit_code == 0
    assert [r["id"] for r in json.loads(run("transcripts", "list", *t, "--json").stdout)] == [2]
    assert [r["id"] for r in json.loads(run("transcripts", "list", "--transcripts", str(copy),
                                            "--json").stdout)] == [2, 1]

    assert run("transcripts", "path").stdout.strip() == str(isolated_home / "transcripts.db")
    assert json.loads(run("transcripts", "path", "--json").stdout) == {
        "path": str(isolated_home / "transcripts.db")}
    assert default_transcripts_db() == isolated_home / "transcripts.db"
    none = run("transcripts", "list")  # review never creates the file
    assert none.exit_code == 1 and "no transcripts yet" in none.stderr
    assert not (isolated_home / "transcripts.db").exists()


# Into the corpus


def test_ingest_transcripts_round_trip(db, tmp_path):
    corpus = str(tmp_path / "c.db")

    def ingest(*extra: str) -> dict:
        result = run("ingest", "--transcripts", str(db), "--db", corpus, "--json", *extra)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.splitlines()[-1])

    def corpus_turns() -> list[list[tuple[str, str]]]:
        lines = run("corpus", "export", "--db", corpus).stdout.splitlines()
        return [[(x["speaker"], x["text"]) for x in json.loads(line)["turns"]] for line in lines]

    assert ingest()["turns"] == 8
    assert corpus_turns()[1] == [("user", "Is it raining?"), ("bot", "Rain, rain, rain.")]
    assert ingest()["unchanged"] == 1
    good = ingest("--only-rated", "good")
    assert (good["conversations"], good["turns"]) == (2, 4)
    assert corpus_turns() == [
        [("user", "Hello there!"), ("bot", "Hi, how are you?")],
        [("user", "Tell me a joke."), ("bot", "Why did the chicken cross the road?")],
    ]
    # The new copy replaced the old one: one source, and the corpus index agrees.
    stats = json.loads(run("corpus", "stats", "--db", corpus, "--json").stdout)
    private = stats.pop("private_sources")
    assert stats == {"sources": 1, "conversations": 2, "turns": 4, "duplicates": 0,
        "duplicate_conversations": 0}
    assert [(s["path"], s["turns"]) for s in private] == [(f"transcripts:{db.resolve()}", 4)]
    assert run("corpus", "search", "raining", "--db", corpus).stdout == ""
    with TranscriptStore(db) as store:
        store.rate("good", conversation_id=2)
    assert ingest("--only-rated", "good")["conversations"] == 3
    assert json.loads(run("corpus", "stats", "--db", corpus, "--json").stdout)["sources"] == 1

    usage = run("ingest", "--only-rated", "good", "--db", corpus)
    assert usage.exit_code == 2
    missing = run("ingest", "--transcripts", str(tmp_path / "none.db"), "--db", corpus)
    assert missing.exit_code == 1 and "no transcripts yet" in missing.stderr
    assert not (tmp_path / "none.db").exists()


# Real processes

WRITER = """
import sys
from chatbot.transcripts.store import TranscriptStore
path, who = sys.argv[1], sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()  # start together
with TranscriptStore(path) as store:
    own = store.start_conversation("m", None, {"writer": who})
    for i in range(50):  # odd turns go to conversation 1, which all four share
        store.add_turn(1 if i % 2 else own, "user" if i % 4 < 2 else "bot", f"w{who} t{i}")
"""


def _env() -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_four_chats_write_one_new_file_at_once(tmp_path):
    path = tmp_path / "t.db"  # not created yet: the four race to create it too
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)], cwd=ROOT,
                              env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(4)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.close()
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert mode(path) == 0o600
    rows = conn.execute("SELECT conversation_id, position, text FROM turns "
                        "ORDER BY conversation_id, position").fetchall()
    assert len(rows) == 200 and len({text for _, _, text in rows}) == 200
    assert conn.execute("SELECT COUNT(*) FROM conversations").fetchone() == (4,)
    for cid in {c for c, _, _ in rows}:
        mine = [(p, text) for c, p, text in rows if c == cid]
        assert [p for p, _ in mine] == list(range(len(mine)))  # no gap, no duplicate
        for who in range(4):  # each writer's turns appear in the order it wrote them
            steps = [int(text.split("t")[1]) for _, text in mine if text.startswith(f"w{who} ")]
            assert steps == sorted(steps)
    assert len([r for r in rows if r[0] == 1]) == 25 * 4 + 25
    assert conn.execute("SELECT COUNT(*) FROM turns_fts WHERE turns_fts MATCH 't49'"
                        ).fetchone() == (4,)


KILLED = """
import sys
from chatbot.transcripts.store import TranscriptStore
store = TranscriptStore(sys.argv[1])
cid = store.start_conversation("m", None, {})
i = 0
while True:
    turn = store.add_turn(cid, "user" if i % 2 == 0 else "bot", f"line {i}")
    print(turn, flush=True)  # like the chat: shown only once committed
    i += 1
"""


def test_kill_9_loses_nothing_already_shown(tmp_path):
    path = tmp_path / "t.db"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shown = [int(proc.stdout.readline()) for _ in range(60)]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    shown += [int(line) for line in proc.stdout.read().split()]
    assert proc.returncode == -signal.SIGKILL
    with TranscriptStore(path) as store:
        assert store.integrity_check() == "ok"
        turns = store.turns(1)
        assert {t["id"] for t in turns} >= set(shown)
        assert [t["position"] for t in turns] == list(range(len(turns)))
        assert [t["text"] for t in turns] == [f"line {i}" for i in range(len(turns))]
        store.add_turn(1, "user", "after the crash")
        assert store.search('"after the crash"')[0]["position"] == len(turns)


@pytest.mark.parametrize("args", [
    ["transcripts", "list", "--json"],
    ["transcripts", "show", "1", "--format", "markdown"],
    ["transcripts", "search", "joke"],
    ["transcripts", "export"],
    ["ingest", "--transcripts", "{db}", "--db", "{corpus}"],
])
def test_transcripts_paths_do_not_import_tensorflow(args, db, tmp_path):
    args = [a.format(db=db, corpus=tmp_path / "c.db") for a in args]
    if args[0] == "transcripts":
        args += ["--transcripts", str(db)]
    code = (
        f"import sys; from chatbot.cli import main; sys.argv = ['chatbot'] + {args!r}\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = {'tensorflow', 'keras', 'matplotlib', 'sentencepiece', 'sacrebleu'}\n"
        "assert not heavy & {m.split('.')[0] for m in sys.modules}, heavy & set(sys.modules)"
    )
    # What makes these commands start fast, checked without timing them (a timing depends
    # on the machine's load): none of the libraries that take seconds to import.
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60,
                   cwd=ROOT)


def test_a_store_from_before_origins_upgrades_in_place(tmp_path):
    """A transcripts file written before the service existed keeps its conversations,
    now marked as held in the terminal."""
    from sqlite_utils import Database

    from chatbot.transcripts import store as module

    path = tmp_path / "old.db"
    db = Database(path)
    module.migrations.apply(db, stop_before="m002_origin_and_digest")
    db.execute("INSERT INTO conversations (started_at) VALUES ('2026-01-01T00:00:00')")
    db.execute("INSERT INTO conversations (started_at) VALUES ('2026-01-02T00:00:00')")
    db.execute("INSERT INTO turns (conversation_id, position, role, text, created_at) "
               "VALUES (1, 0, 'user', 'kept through the upgrade', 'now')")
    db.conn.commit()
    db.close()
    with TranscriptStore(path) as store:
        assert store.conversation(1)["origin"] == "terminal"
        assert [t["text"] for t in store.turns(1)] == ["kept through the upgrade"]
        assert store.search("upgrade")[0]["conversation_id"] == 1
        assert store.integrity_check() == "ok"
        assert not list(store.db.query("PRAGMA foreign_key_check"))
        # A deleted conversation's id is never given again (the service hands ids out).
        store.remove(2)
        assert store.start_conversation("m", None, {}) == 3
        api = store.start_conversation("m", None, {}, origin="api")
        store.add_turn(api, "user", "hi", digest="abc")
        assert store.find_by_digest("abc", "api") == api
        assert store.find_by_digest("abc", "web") is None
        with pytest.raises(ChatbotError, match="origin"):
            store.start_conversation("m", None, {}, origin="fax")
