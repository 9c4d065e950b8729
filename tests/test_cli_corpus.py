"""The `chatbot ingest` and `chatbot corpus` commands, through click's CliRunner and for real."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from chatbot.cli import cli
from tests.cli_util import SRT, last_json, run


def test_ingest_json_and_failures(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    (tmp_path / "broken.srt").write_bytes(b"\x00\xff" * 64)
    db = str(tmp_path / "c.db")
    result = run("ingest", str(tmp_path), "--db", db, "--json")
    assert result.exit_code == 1
    assert last_json(result.stdout) == {
        "files": 2, "failed": 1, "conversations": 1, "turns": 2,
        "skipped_conversations": 0, "unchanged": 0, "duplicates": 0,
        "duplicate_conversations": 0, "skipped_members": 0, "skipped_files": 0,
        "empty_files": 0,
    }
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'broken.srt'}: binary file, not text (pass --encoding if it is "
        "UTF-16/32)"
    )
    assert "Traceback" not in result.output
    again = run("ingest", str(tmp_path / "a.srt"), "--db", db, "--json")
    assert again.exit_code == 0 and last_json(again.stdout)["unchanged"] == 1
    stats = run("corpus", "stats", "--db", db, "--json")
    assert last_json(stats.stdout) == {"sources": 1, "conversations": 1, "turns": 2,
                                       "duplicates": 0, "duplicate_conversations": 0,
                                       "private_sources": []}


def test_default_db_lives_in_chatbot_home(tmp_path, isolated_home):
    (tmp_path / "a.srt").write_text(SRT)
    assert run("ingest", str(tmp_path / "a.srt")).exit_code == 0
    assert (isolated_home / "corpus.db").exists()
    assert "1 source, 1 conversation, 2 turns" in run("corpus", "stats").stdout


def test_counts_of_one_are_singular(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    db = str(tmp_path / "c.db")
    result = run("ingest", str(tmp_path / "a.srt"), "--db", db)
    assert result.stdout.splitlines() == [
        f"{tmp_path / 'a.srt'}: 1 conversation, 2 turns (srt)",
        "1 file: 1 conversation, 2 turns, 0 short conversations dropped, 0 unchanged, 0 failed",
    ]
    stats = run("corpus", "stats", "--db", db).stdout.splitlines()
    assert stats[0] == f"1 source, 1 conversation, 2 turns in {tmp_path / 'c.db'}"
    assert stats[1].split() == ["srt", "1", "source", "1", "conversation", "2", "turns"]


def test_ingest_says_what_it_skipped_and_fails_when_nothing_went_in(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("README.md", "notes.doc", "todo.rtf", "z.odt", ".hidden"):
        (folder / name).write_text("not a corpus")
    db = str(tmp_path / "c.db")
    result = run("ingest", str(folder), "--db", db, "--json")
    assert result.exit_code == 1
    counts = last_json(result.stdout)
    assert (counts["files"], counts["skipped_files"], counts["conversations"]) == (0, 4, 0)
    assert result.stderr.splitlines() == [
        f"{folder}/: 4 files skipped: no known format (README.md, notes.doc, todo.rtf, ...; "
        "--format F reads them as F)",
        "error: nothing ingested: no conversation stored, none stored already",
    ]
    # Beside a file that goes in, the skipped ones are still reported; exit status 0.
    (folder / "a.srt").write_text(SRT)
    result = run("ingest", str(folder), "--db", db)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{folder}/: 4 files skipped: no known format (README.md, notes.doc, todo.rtf, ...; "
        "--format F reads them as F)"]
    assert result.stdout.splitlines()[-1].endswith(", 4 files of no known format skipped")


def test_ingest_of_files_that_hold_nothing_says_so(tmp_path):
    novel = tmp_path / "book.txt"
    novel.write_text("“Hello,” said A.\n\n“Hi,” said B.\n")
    blank = tmp_path / "blank.srt"
    blank.write_text("  \n\n\t\n")
    empty = tmp_path / "empty.srt"
    empty.write_text("")
    db = str(tmp_path / "c.db")
    forced = run("ingest", str(novel), "--format", "srt", "--db", db)
    assert forced.exit_code == 1
    assert forced.stdout == ("1 file: 0 conversations, 0 turns, 0 short conversations dropped, "
                             "0 unchanged, 0 failed, 1 file with no conversations\n")
    assert forced.stderr.splitlines() == [
        f"1 file read as srt gave no conversations ({novel}; --format srt was given: leave it "
        "out to detect the format)",
        "error: nothing ingested: no conversation stored, none stored already",
    ]
    # A whitespace-only file is read and found to hold nothing; an empty one is an error.
    both = run("ingest", str(blank), str(empty), "--db", str(tmp_path / "d.db"), "--json")
    assert both.exit_code == 1
    assert last_json(both.stdout)["empty_files"] == 1
    assert both.stderr.splitlines() == [
        f"error: {empty}: empty file",
        f"1 file read as srt gave no conversations ({blank})",
    ]  # the failure says why nothing went in


def test_skipped_archive_members_get_a_line_by_archive_and_reason(tmp_path):
    import zipfile

    archive = tmp_path / "subs.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("film.srt", SRT)
        z.writestr("README", "about")
        z.writestr("cover.jpg", "jpeg")
        z.writestr("inner.zip", "zip")
    result = run("ingest", str(archive), "--db", str(tmp_path / "c.db"), "--json")
    assert result.exit_code == 0
    assert last_json(result.stdout)["skipped_members"] == 3
    assert result.stderr.splitlines() == [
        f"{archive}: 2 members skipped: no known format (--format F reads them as F) "
        "(README, cover.jpg)",
        f"{archive}: 1 member skipped: an archive inside an archive (inner.zip)",
    ]


def test_show_search_export(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    db = str(tmp_path / "c.db")
    run("ingest", str(tmp_path / "a.srt"), "--db", db)
    shown = run("corpus", "show", "1", "--db", db).stdout.splitlines()
    assert shown[1:] == ["  1 [00:00:01.000] How are you?", "  2 [00:00:02.500] Fine, thanks."]
    assert run("corpus", "search", "fine", "--db", db).stdout == "1:1  [Fine], thanks.\n"
    bad = run("corpus", "search", "AND OR", "--db", db)
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: invalid search query")
    lines = run("corpus", "export", "--db", db, "--format", "jsonl").stdout.splitlines()
    record = json.loads(lines[0])
    assert record["id"] == 1 and record["source"].endswith("a.srt")
    assert [t["text"] for t in record["turns"]] == ["How are you?", "Fine, thanks."]


def test_export_then_reingest_round_trip(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    db, db2 = str(tmp_path / "c.db"), str(tmp_path / "d.db")
    run("ingest", str(tmp_path / "a.srt"), "--db", db)
    out = tmp_path / "export.jsonl"
    run("corpus", "export", "--db", db, "-o", str(out))
    assert run("ingest", str(out), "--db", db2).exit_code == 0
    first = [json.loads(line)["turns"] for line in out.read_text().splitlines()]
    run("corpus", "export", "--db", db2, "-o", str(tmp_path / "again.jsonl"))
    second = [json.loads(line)["turns"] for line in
              (tmp_path / "again.jsonl").read_text().splitlines()]
    assert first == second


def test_user_mistakes_are_one_line(tmp_path):
    missing = run("corpus", "stats", "--db", str(tmp_path / "none.db"))
    assert missing.exit_code == 1 and "no corpus database yet" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    notdb = tmp_path / "notes.txt"
    notdb.write_text("hello")
    refused = run("corpus", "stats", "--db", str(notdb))
    assert refused.exit_code == 1 and "not a SQLite database" in refused.stderr
    nothing = run("ingest")
    assert nothing.exit_code == 2
    nofile = run("ingest", str(tmp_path / "nope.srt"), "--db", str(tmp_path / "c.db"))
    assert nofile.exit_code == 1 and nofile.stderr.strip().endswith("nope.srt: no such file")


def test_builtin_chatterbot(tmp_path):
    db = str(tmp_path / "c.db")
    result = run("ingest", "--builtin", "chatterbot:english", "--db", db, "--json")
    counts = last_json(result.stdout)
    assert result.exit_code == 0 and counts["failed"] == 0 and counts["conversations"] > 100


def test_every_command_has_help_with_an_example():
    def walk(group: click.Group, prefix: list[str]):
        for name, command in group.commands.items():
            yield prefix + [name], command
            if isinstance(command, click.Group):
                yield from walk(command, prefix + [name])

    for words, command in walk(cli, []):
        result = run(*words, "--help")
        assert result.exit_code == 0, words
        assert command.help, words
        if not isinstance(command, click.Group):
            assert "Example:" in command.help, words
            for option in command.params:
                if isinstance(option, click.Option):
                    assert option.help, (words, option.opts)  # every option says what it does


def _env(home: Path) -> dict:
    return {**os.environ, "CHATBOT_HOME": str(home), "PYTHONUNBUFFERED": "1"}


def test_kill_9_mid_ingest_leaves_a_usable_store(tmp_path):
    """A real process killed while writing: the store opens and holds whole files only."""
    small = tmp_path / "in" / "a.srt"
    small.parent.mkdir()
    small.write_text(SRT)
    big = tmp_path / "in" / "b.srt"
    with open(big, "w") as f:
        for i in range(150_000):
            s = i * 3
            f.write(f"{i}\n{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},000 --> "
                    f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},900\nLine number {i}.\n\n")
    db = tmp_path / "c.db"
    env = _env(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "ingest", str(tmp_path / "in"), "--db", str(db)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Wait until the small file is committed, then kill, most likely during the big one
    # (if it has finished already, it must be there whole: no timing is assumed).
    line = proc.stdout.readline()
    assert "a.srt" in line
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = dict(conn.execute(
        "SELECT s.path, (SELECT COUNT(*) FROM turns t JOIN conversations c ON "
        "c.id = t.conversation_id WHERE c.source_id = s.id) FROM sources s").fetchall())
    assert stored in ({str(small.resolve()): 2},
                      {str(small.resolve()): 2, str(big.resolve()): 150_000})
    conn.close()
    finished = subprocess.run(
        [sys.executable, "-m", "chatbot", "ingest", str(tmp_path / "in"), "--db", str(db),
         "--json"], env=env, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout.splitlines()[-1])["unchanged"] == len(stored)


@pytest.mark.parametrize("args", [["corpus", "stats", "--help"], ["ingest", "--help"],
                                  ["corpus", "speakers", "--help"], ["corpus", "rm", "--help"]])
def test_corpus_paths_do_not_import_tensorflow(args):
    code = (
        f"import sys; from chatbot.cli import main; sys.argv = ['chatbot'] + {args!r}\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_a_file_read_with_the_wrong_format_can_be_read_again_the_right_way(tmp_path):
    novel = tmp_path / "book.txt"
    novel.write_text("“Hello,” said Ann.\n\n“Good morning,” said Bob.\n\n“Is it?” said Ann.\n")
    db = str(tmp_path / "c.db")
    wrong = run("ingest", str(novel), "--db", db, "--format", "srt", "--json")
    assert wrong.exit_code == 1 and last_json(wrong.stdout)["conversations"] == 0
    right = run("ingest", str(novel), "--db", db, "--json")
    assert right.exit_code == 0 and last_json(right.stdout)["conversations"] == 1


def test_export_of_a_private_corpus_is_private(tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    db = tmp_path / "c.db"
    assert run("ingest", str(tmp_path / "a.srt"), "--db", str(db)).exit_code == 0
    public = tmp_path / "public.jsonl"
    assert run("corpus", "export", "--db", str(db), "-o", str(public)).exit_code == 0
    assert "How are you?" in public.read_text()
    os.chmod(db, 0o600)  # as a corpus that took in chat transcripts is
    private = tmp_path / "private.jsonl"
    private.write_text("old")
    os.chmod(private, 0o644)
    assert run("corpus", "export", "--db", str(db), "-o", str(private)).exit_code == 0
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_text() == public.read_text()
