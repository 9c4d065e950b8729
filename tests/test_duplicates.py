"""Each film once, each conversation once, and splits that keep a work on one side."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatbot.corpus.dedup import NEAR_DUPLICATE_JACCARD, Sketcher, jaccard
from chatbot.corpus.readers import srt
from chatbot.corpus.source import Source
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import ReadOptions
from tests.cli_util import last_json, run

RELEASES = Path(__file__).parent / "data" / "releases"
FTWD = RELEASES / "ftwd-s03e06-two-releases"
ARROW = RELEASES / "arrow-s01-episodes"




def sketch(path: Path) -> list[int]:
    sketcher = Sketcher()
    options = ReadOptions()
    for conversation in srt.read(Source(path, options), options):
        if len(conversation.turns) >= 2:
            sketcher.add([turn.text for turn in conversation.turns])
    found = sketcher.sketch()
    assert found is not None
    return found


def test_the_threshold_separates_real_releases_from_real_distinct_episodes():
    """Measured on real files: two releases of one episode (re-timed, recap dropped, cues
    merged) score far above the threshold; episodes that share their opening narration
    and recap lines score far below."""
    same = jaccard(sketch(FTWD / "a_REPACK.SVA.srt"), sketch(FTWD / "b_WEB-DL.RARBG.srt"))
    episodes = sorted(ARROW.glob("*.srt"))
    distinct = [jaccard(sketch(a), sketch(b)) for i, a in enumerate(episodes)
                for b in episodes[i + 1:]]
    assert same >= 0.85 and same >= 2.5 * NEAR_DUPLICATE_JACCARD
    assert max(distinct) <= 0.1 and max(distinct) <= NEAR_DUPLICATE_JACCARD / 3


def test_another_release_is_stored_once_and_distinct_episodes_all(tmp_path):
    db = tmp_path / "c.db"
    result = run("ingest", str(RELEASES), "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    counts = last_json(result.stdout)
    assert (counts["files"], counts["duplicates"]) == (5, 1)
    assert f"b_WEB-DL.RARBG.srt: a duplicate of {(FTWD / 'a_REPACK.SVA.srt').resolve()}" in (
        run("ingest", str(RELEASES), "--db", str(tmp_path / "d.db")).stdout)
    stats = last_json(run("corpus", "stats", "--db", str(db), "--json").stdout)
    assert (stats["sources"], stats["duplicates"]) == (4, 1)
    assert "1 duplicate file " in run("corpus", "stats", "--db", str(db)).stdout
    again = last_json(run("ingest", str(RELEASES), "--db", str(db), "--json").stdout)
    assert (again["unchanged"], again["duplicates"], again["conversations"]) == (5, 0, 0)


def test_keep_duplicates_stores_both_in_one_work(tmp_path):
    db = tmp_path / "c.db"
    counts = last_json(run("ingest", str(FTWD), "--db", str(db), "--keep-duplicates",
                           "--json").stdout)
    assert counts["duplicates"] == 0 and counts["conversations"] > 20
    with CorpusStore(db) as store:
        rows = list(store.db.query("SELECT work, conversations FROM sources ORDER BY id"))
    assert rows[0]["work"] == rows[1]["work"] and all(r["conversations"] for r in rows)


def test_the_same_film_in_another_encoding_is_a_duplicate(tmp_path, corpora):
    db = tmp_path / "c.db"
    subtitles = corpora / "subtitles"
    run("ingest", str(subtitles / "pysrt-utf-8.srt"), "--db", str(db))
    result = run("ingest", str(subtitles / "pysrt-windows-1252.srt"), "--db", str(db), "--json")
    assert last_json(result.stdout)["duplicates"] == 1


def test_distinct_films_that_share_a_few_lines_are_never_merged(tmp_path, corpora):
    """Two halves of a real film, the second opening with 15 of the first one's cues (a
    recap): distinct films sharing lines, both stored."""
    blocks = (corpora / "subtitles/pysrt-utf-8.srt").read_text(encoding="utf-8").split("\n\n")
    half = len(blocks) // 2
    (tmp_path / "one.srt").write_text("\n\n".join(blocks[:half]), encoding="utf-8")
    (tmp_path / "two.srt").write_text("\n\n".join(blocks[:15] + blocks[half:]), encoding="utf-8")
    counts = last_json(run("ingest", str(tmp_path), "--db", str(tmp_path / "c.db"),
                           "--json").stdout)
    assert (counts["files"], counts["duplicates"]) == (2, 0)


def test_one_imdb_id_is_one_film(tmp_path, corpora):
    film = tmp_path / "OpenSubtitles" / "xml" / "en" / "2010" / "1727587"
    film.mkdir(parents=True)
    data = gzip.decompress((corpora / "opus/sintel_en.xml.gz").read_bytes())
    (film / "1.xml.gz").write_bytes(gzip.compress(data))
    # Another release: other bytes (a sentence less), the same IMDb id.
    (film / "2.xml").write_bytes(data.replace(b"<w id=\"1.1\">This</w>", b""))
    counts = last_json(run("ingest", str(tmp_path / "OpenSubtitles"), "--db",
                           str(tmp_path / "c.db"), "--json").stdout)
    assert (counts["files"], counts["duplicates"], counts["unchanged"]) == (2, 1, 0)
    # A third release later, among other files: a worker finds the film stored and reads
    # no further; it is recorded as a duplicate all the same.
    (film / "3.xml").write_bytes(data.replace(b"<w id=\"2.1\">It</w>", b""))
    (tmp_path / "OpenSubtitles" / "other.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nHello?\n\n2\n00:00:02,500 --> 00:00:03,000\nHi.\n")
    again = last_json(run("ingest", str(tmp_path / "OpenSubtitles"), "--db",
                          str(tmp_path / "c.db"), "--jobs", "2", "--json").stdout)
    assert (again["files"], again["duplicates"], again["unchanged"]) == (4, 1, 2)
    with CorpusStore(tmp_path / "c.db") as store:
        rows = list(store.db.query("SELECT path, duplicate_of, conversations FROM sources "
                                   "WHERE imdb_id = 1727587 ORDER BY id"))
    assert [r["duplicate_of"] for r in rows] == [None, 1, 1] and rows[2]["conversations"] == 0


def test_an_export_read_back_is_not_stored_again(tmp_path):
    db = tmp_path / "c.db"
    run("ingest", "--builtin", "chatterbot:english", "--db", str(db))
    before = last_json(run("corpus", "stats", "--db", str(db), "--json").stdout)
    exported = tmp_path / "corpus.jsonl"
    run("corpus", "export", "--db", str(db), "-o", str(exported))
    counts = last_json(run("ingest", str(exported), "--db", str(db), "--json").stdout)
    assert counts["conversations"] == 0
    assert counts["duplicate_conversations"] == before["conversations"]
    after = last_json(run("corpus", "stats", "--db", str(db), "--json").stdout)
    assert after["conversations"] == before["conversations"]
    assert after["duplicate_conversations"] == (before["duplicate_conversations"]
                                                + before["conversations"])
    # ChatterBot's own files repeat conversations (tech_support.yml holds one 121 times).
    assert before["duplicate_conversations"] > 1000
    # Kept on request.
    other = tmp_path / "d.db"
    run("ingest", "--builtin", "chatterbot:english", "--db", str(other))
    kept = last_json(run("ingest", str(exported), "--db", str(other), "--keep-duplicates",
                         "--json").stdout)
    assert kept["conversations"] == before["conversations"]


def test_splits_keep_each_work_on_one_side(tmp_path, corpora):
    db = tmp_path / "c.db"
    run("ingest", str(corpora / "subtitles"), str(corpora / "novels/alice_in_wonderland.txt"),
        str(RELEASES), "--builtin", "chatterbot:english", "--db", str(db))
    sides = {}
    for split in ("train", "valid"):
        out = run("corpus", "export", "--db", str(db), "--split", split, "--valid-fraction",
                  "0.3").stdout
        sides[split] = [json.loads(line) for line in out.splitlines()]
    everything = run("corpus", "export", "--db", str(db)).stdout.splitlines()
    assert sorted(c["id"] for side in sides.values() for c in side) == sorted(
        json.loads(line)["id"] for line in everything)
    with CorpusStore(db) as store:
        formats = dict(store.db.execute("SELECT path, format FROM sources").fetchall())
    works = {split: {c["source"] for c in side if formats[c["source"]] != "chatterbot_yaml"}
             for split, side in sides.items()}
    assert works["train"] and works["valid"] and not works["train"] & works["valid"]
    # A dialogue set is split by conversation: one file on both sides.
    dialogues = {split: {c["source"] for c in side if formats[c["source"]] == "chatterbot_yaml"}
                 for split, side in sides.items()}
    assert dialogues["train"] & dialogues["valid"]
    # The old way, for models trained before works: a film on both sides.
    old = {split: {json.loads(line)["source"] for line in run(
        "corpus", "export", "--db", str(db), "--split", split, "--valid-fraction", "0.3",
        "--split-by", "conversation").stdout.splitlines()} for split in ("train", "valid")}
    assert old["train"] & old["valid"] - set(dialogues["train"])


def test_models_from_before_works_are_evaluated_their_way():
    from chatbot.evaluate.run import split_options

    assert split_options({"options": {"valid_fraction": "0.1"}})[3] == "conversation"
    assert split_options({"options": {"split_by": "work"}})[3] == "work"


def test_ctrl_c_in_a_parallel_ingest_keeps_whole_files_only(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(40):
        with open(folder / f"film{n:02d}.srt", "w") as f:
            for i in range(6000):
                s = i * 3
                f.write(f"{i}\n{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},000 --> "
                        f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d},900\n"
                        f"Film {n} line {i}.\n\n")
    db = tmp_path / "c.db"
    env = {**os.environ, "CHATBOT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    # A session of its own, signalled as a terminal's Ctrl-C is: the whole process group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatbot", "ingest", str(folder), "--db", str(db), "--jobs", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    deadline = time.time() + 120
    assert "film00.srt" in proc.stdout.readline()
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=max(1, deadline - time.time()))
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT s.turns, (SELECT COUNT(*) FROM turns t JOIN conversations c "
                        "ON c.id = t.conversation_id WHERE c.source_id = s.id) FROM sources s"
                        ).fetchall()
    conn.close()
    assert 1 <= len(rows) < 40
    assert all(stored == counted == 6000 for stored, counted in rows)


@pytest.mark.parametrize("name", ["a_REPACK.SVA.srt", "b_WEB-DL.RARBG.srt"])
def test_release_fixtures_read_cleanly(name):
    options = ReadOptions()
    conversations = list(srt.read(Source(FTWD / name, options), options))
    assert sum(len(c.turns) for c in conversations) > 150
