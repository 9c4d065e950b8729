"""Archives read in place (zip, tar, tar.gz, .gz), the OPUS layout, and ingest on every core."""

from __future__ import annotations

import gzip
import io
import sqlite3
import tarfile
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.corpus.inputs import layout_of
from tests.cli_util import last_json, run

SRT_A = (
    "1\n00:00:01,000 --> 00:00:02,000\nWhere were you last night?\n\n"
    "2\n00:00:02,500 --> 00:00:04,000\n- At the harbour.\n- Alone?\n\n"
    "3\n00:00:04,500 --> 00:00:05,000\nWith my brother.\n"
)
SRT_B = (
    "1\n00:00:01,000 --> 00:00:02,000\nThe train leaves at nine.\n\n"
    "2\n00:00:02,500 --> 00:00:04,000\nThen we run.\n"
)
OPUS = """<?xml version="1.0" encoding="utf-8"?>
<document id="{sub}">
  <s id="1">
    <time id="T1S" value="00:00:01,000" />
    <w id="1.1">Did</w> <w id="1.2">you</w> <w id="1.3">call</w> <w id="1.4">{word}</w>
    <w id="1.5">?</w>
    <time id="T1E" value="00:00:02,000" />
  </s>
  <s id="2">
    <time id="T2S" value="00:00:02,500" />
    <w id="2.1">I</w> <w id="2.2">did</w> <w id="2.3">n't</w> <w id="2.4">.</w>
    <time id="T2E" value="00:00:03,500" />
  </s>
</document>
"""




def sources(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT path, format, language, year, imdb_id, work FROM sources "
                            "ORDER BY id").fetchall()


def opus_member(sub: int, word: str) -> bytes:
    return gzip.compress(OPUS.format(sub=sub, word=word).encode())


def test_opus_layout_gives_language_year_and_imdb_id():
    assert layout_of("a.zip!OpenSubtitles/xml/en/1999/133093/3207.xml.gz").imdb_id == 133093
    assert layout_of("OpenSubtitles2018/raw/pt_br/2004/1/2.xml") == layout_of(
        "x/raw/pt_br/2004/1/9.xml")
    found = layout_of("/data/OpenSubtitles/xml/fr/2010/1727587/1.xml.gz")
    assert (found.language, found.year, found.imdb_id) == ("fr", 2010, 1727587)
    assert layout_of("films/1999/133093/x.srt").imdb_id is None  # no xml/raw folder


def test_zip_members_are_sources_with_their_layout_and_unknown_ones_are_counted(tmp_path):
    archive = tmp_path / "en.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("OpenSubtitles/xml/en/1999/133093/1.xml.gz", opus_member(1, "Neo"))
        z.writestr("OpenSubtitles/xml/fr/2001/4242/2.xml.gz", opus_member(2, "Amelie"))
        z.writestr("OpenSubtitles/README", "not subtitles")
        z.writestr("OpenSubtitles/xml/en/1999/133093/", "")  # a folder entry
        z.writestr("extra/film.srt", SRT_A)
    db = tmp_path / "c.db"
    result = run("ingest", str(archive), "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    counts = last_json(result.stdout)
    assert (counts["files"], counts["skipped_members"], counts["failed"]) == (3, 1, 0)
    absolute = archive.resolve()
    assert sources(db) == [
        (f"{absolute}!OpenSubtitles/xml/en/1999/133093/1.xml.gz", "opus", "en", 1999, 133093,
         "imdb:133093"),
        (f"{absolute}!OpenSubtitles/xml/fr/2001/4242/2.xml.gz", "opus", "fr", 2001, 4242,
         "imdb:4242"),
        (f"{absolute}!extra/film.srt", "srt", None, None, None, sources(db)[2][5]),
    ]
    assert sources(db)[2][5].startswith("sha256:")
    shown = run("corpus", "show", "1", "--db", str(db)).stdout
    assert "Did you call Neo?" in shown and "I didn't." in shown


def test_language_keeps_one_language_of_a_multilingual_archive(tmp_path):
    archive = tmp_path / "all.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("OpenSubtitles/xml/en/1999/133093/1.xml.gz", opus_member(1, "Neo")),
                           ("OpenSubtitles/xml/de/1999/133093/7.xml.gz", opus_member(7, "Neo")),
                           ("OpenSubtitles/xml/en/2003/99/3.xml.gz", opus_member(3, "Trin"))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    db = tmp_path / "c.db"
    counts = last_json(run("ingest", str(archive), "--db", str(db), "--language", "en",
                           "--json").stdout)
    assert (counts["files"], counts["skipped_members"]) == (2, 1)
    assert [row[2] for row in sources(db)] == ["en", "en"]


def test_tar_and_single_gz_files_read_in_place(tmp_path):
    tar_path = tmp_path / "subs.tar"
    with tarfile.open(tar_path, "w") as tar:
        data = SRT_A.encode()
        info = tarfile.TarInfo("season1/ep1.srt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "ep2.srt.gz").write_bytes(gzip.compress(SRT_B.encode()))
    db = tmp_path / "c.db"
    result = run("ingest", str(tmp_path), "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    assert last_json(result.stdout)["conversations"] == 2
    assert {row[0].rsplit("!", 1)[-1] for row in sources(db)} == {
        str((tmp_path / "ep2.srt.gz").resolve()), "season1/ep1.srt"}
    assert not any(p.suffix == ".srt" for p in tmp_path.rglob("*.srt"))  # nothing extracted


def test_bad_members_get_one_line_each_and_the_rest_goes_in(tmp_path):
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("good.srt", SRT_A)
        z.writestr("broken.xml", "<document><s id='1'><w>Hi</w></document>")
        z.writestr("empty.xml", '<?xml version="1.0"?>\n<document id="1">\n</document>\n')
        z.writestr("cut.xml.gz", opus_member(5, "Bob")[:-20])
        z.writestr("crc.srt", SRT_B)
    # Damage the stored bytes of crc.srt: its CRC check fails when it is read.
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("crc.srt")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 5] ^= 0xFF
    archive.write_bytes(bytes(data))
    (tmp_path / "truncated.srt.gz").write_bytes(gzip.compress(SRT_B.encode() * 50)[:-30])
    (tmp_path / "fine.srt").write_text(SRT_B)
    db = tmp_path / "c.db"
    result = CliRunner().invoke(cli, ["ingest", str(tmp_path), "--db", str(db), "--json"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    where = {line.split(": ", 2)[1].split(":")[0] for line in errors}
    assert where == {f"{archive}!broken.xml", f"{archive}!empty.xml", f"{archive}!cut.xml.gz",
                     f"{archive}!crc.srt", str(tmp_path / "truncated.srt.gz")}, errors
    assert all(len(line) < 300 for line in errors)
    assert any("!broken.xml:1: invalid XML" in line for line in errors), errors
    assert any("truncated or corrupt" in line for line in errors if "cut.xml.gz" in line)
    counts = last_json(result.stdout)
    assert (counts["files"], counts["failed"], counts["conversations"]) == (7, 5, 2)


def test_a_truncated_tar_gz_keeps_the_members_before_the_damage(tmp_path):
    archive = tmp_path / "cut.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for i, text in enumerate((SRT_A, SRT_B)):
            data = text.encode() + b"\n" * 200_000 * i  # the second member is large
            info = tarfile.TarInfo(f"ep{i}.srt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(archive.read_bytes()[:-40])
    db = tmp_path / "c.db"
    result = CliRunner().invoke(cli, ["ingest", str(archive), "--db", str(db), "--json"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"error: {archive}!ep1.srt" in result.stderr
    assert last_json(result.stdout)["conversations"] == 1  # ep0 went in


def test_jobs_do_not_change_the_store(tmp_path, corpora):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in (corpora / "subtitles").glob("*.srt"):
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "sintel.xml.gz").write_bytes((corpora / "opus/sintel_en.xml.gz").read_bytes())
    dumps = []
    for jobs in ("1", "2"):
        db = tmp_path / f"c{jobs}.db"
        result = run("ingest", str(folder), "--db", str(db), "--jobs", jobs, "--json")
        with sqlite3.connect(db) as conn:
            dumps.append((last_json(result.stdout), conn.execute(
                "SELECT s.path, s.duplicate_of, c.id, t.position, t.text FROM sources s "
                "LEFT JOIN conversations c ON c.source_id = s.id "
                "LEFT JOIN turns t ON t.conversation_id = c.id ORDER BY s.id, c.id, t.id"
            ).fetchall(), conn.execute("SELECT source_id, hash FROM sketches ORDER BY rowid"
                                       ).fetchall()))
    assert dumps[0] == dumps[1]
    assert dumps[0][0]["duplicates"] >= 2  # windows-1252 and the OPUS Sintel, at least


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_store_is_not_read_into_itself(tmp_path, jobs):
    (tmp_path / "a.srt").write_text(SRT_A)
    db = tmp_path / "corpus.db"
    assert run("ingest", str(tmp_path), "--db", str(db), "--jobs", jobs).exit_code == 0
    again = run("ingest", str(tmp_path), "--db", str(db), "--jobs", jobs, "--json")
    assert last_json(again.stdout)["files"] == 1
