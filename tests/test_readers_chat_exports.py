"""Chat-export readers: WhatsApp (.txt and the app's .zip) and Telegram Desktop (result.json).

The fixtures in tests/data/chats/ follow the exports as the apps write them (see
tests/data/chats/SOURCES.md).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chatbot.corpus.formats import FORMATS, detect, sniff
from chatbot.corpus.ingest import ingest
from chatbot.corpus.readers import telegram, whatsapp
from chatbot.corpus.store import CorpusStore
from chatbot.corpus.types import CHAT_GAP_SECONDS, DEFAULT_GAP_SECONDS, Conversation, ReadOptions
from chatbot.errors import ReaderError
from tests.cli_util import last_json, run
from tests.readers_util import read_all, texts

CHATS = Path(__file__).parent / "data" / "chats"
ANDROID_12H = CHATS / "whatsapp-android-12h.txt"
ANDROID_GROUP_24H = CHATS / "whatsapp-android-group-24h.txt"
IOS_24H = CHATS / "_chat.txt"
IOS_GROUP_12H = CHATS / "whatsapp-ios-group-12h.txt"
TELEGRAM_CHAT = CHATS / "telegram-chat" / "result.json"
TELEGRAM_FULL = CHATS / "telegram-full" / "result.json"


def speakers(conversations: list[Conversation]) -> list[list[str | None]]:
    return [[t.speaker for t in c.turns] for c in conversations]


def ms(*when: int) -> int:
    """A timestamp as the readers give it: the written local time, read as UTC, in ms."""
    return int(datetime(*when, tzinfo=UTC).timestamp()) * 1000


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- WhatsApp --------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "expected"), [
    (ANDROID_12H, [["Alice", "Bob", "Alice", "Bob", "Alice"], ["Bob", "Alice", "Bob"],
                   ["Alice", "Bob"]]),
    (ANDROID_GROUP_24H, [["Dana", "Eli", "Farah", "Dana", "Eli", "Farah"],
                         ["Eli", "Dana", "Farah"], ["Dana", "Eli"]]),
    (IOS_24H, [["Carol", "Sam", "Carol", "Sam"], ["Carol", "Sam", "Carol"]]),
    (IOS_GROUP_12H, [["Priya", "~ Tom", "Jo", "Priya"], ["~ Tom", "Jo", "~ Tom"],
                     ["Priya", "~ Tom"]]),
])
def test_whatsapp_conversations_turns_and_speakers(path, expected, options, warnings_list):
    assert detect(path, path.read_bytes()[:65536]) is FORMATS["whatsapp"]
    conversations = read_all(whatsapp.read, path, options)
    assert speakers(conversations) == expected
    assert warnings_list == []


def test_whatsapp_android_12_hour_clock_with_narrow_no_break_space(options):
    assert "\u202fPM - " in ANDROID_12H.read_text(encoding="utf-8")
    conversations = read_all(whatsapp.read, ANDROID_12H, options)
    assert texts(conversations) == [
        [
            "Are you still coming tonight?",
            # <Media omitted> between Bob's two messages does not break his turn
            "Yes! Just leaving now\nTraffic is bad though",
            "No rush. Bring the cake if you can",  # then "This message was deleted": gone
            "Will do.\nAlso, should I bring\nthe board games?",  # one message on three lines
            "Sure",  # "<This message was edited>" removed
        ],
        # 9:47 PM to 11:58 PM is over the hour: a new conversation, past midnight
        ["Made it home, thanks for tonight", "Merry Christmas!", "Merry Christmas 🎄"],
        ["Did you get home OK?", "Yes, all good"],
    ]
    starts = [[t.start_ms for t in c.turns] for c in conversations]
    assert starts[0][0] == ms(2023, 12, 24, 21, 41)  # month-first: 12/24/23
    assert starts[1][1] == ms(2023, 12, 25, 0, 1)  # 12:01 AM
    assert starts[2] == [ms(2023, 12, 26, 12, 15), ms(2023, 12, 26, 12, 20)]  # 12:15 PM


def test_whatsapp_android_group_system_lines_and_attachment_caption(options):
    conversations = read_all(whatsapp.read, ANDROID_GROUP_24H, options)
    assert texts(conversations) == [
        ["Welcome everyone! Saturday hike?", "I'm in", "Me too, which trail?",
         "The ridge loop, about 12 km",
         "Map of the ridge loop",  # the caption after "IMG-... (file attached)"
         "Looks steep"],
        ["Weather says rain on Saturday", "Then Sunday?", "Sunday works"],
        ["Great hike today, thanks all", "Same time next month?"],
    ]
    # 1/10/24 .. 1/12/24 fit both orders (and run forward in both); only 1/13/24, on the
    # last day, says month-first, against the 24-hour clock's day-first default.
    assert conversations[0].turns[0].start_ms == ms(2024, 1, 10, 9, 0)
    assert conversations[2].turns[0].start_ms == ms(2024, 1, 13, 21, 2)


def test_whatsapp_ios_marks_media_deleted_and_calls_are_dropped(options):
    raw = IOS_24H.read_text(encoding="utf-8")
    assert raw.count("\u200e[") == 10
    conversations = read_all(whatsapp.read, IOS_24H, options)
    assert texts(conversations) == [
        ["Are you at the station yet?", "Almost\nThat's the queue 😩",
         "Oh no\nI'll wait at the café\nnext to platform 3", "On my way"],
        ["Call me when you're up", "Look at the snow!", "Beautiful"],
    ]
    assert conversations[0].turns[0].start_ms == ms(2023, 12, 24, 21, 41, 7)


def test_whatsapp_ios_group_day_first_settled_late(options):
    conversations = read_all(whatsapp.read, IOS_GROUP_12H, options)
    # 10/01 .. 12/01 fit both orders; 13/01/2024, the last day, says day-first, against
    # the 12-hour clock's month-first default.
    assert conversations[0].turns[0].start_ms == ms(2024, 1, 10, 9, 6, 40)
    assert conversations[1].turns[0].start_ms == ms(2024, 1, 11, 20, 30)
    assert conversations[2].turns[0].start_ms == ms(2024, 1, 13, 0, 5, 44)  # 12:05:44 AM
    assert texts(conversations)[0][2] == ("Yes! I've wanted to read it for ages\n"
                                          "How many chapters a week?")


def test_whatsapp_ambiguous_dates_go_by_which_order_runs_forward(tmp_path, options):
    # Every date fits both orders; read month-first (the 12-hour clock's default) they
    # would go back from June to January, read day-first they run forward.
    path = write(tmp_path / "chat.txt", (
        "05/01/24, 9:00 PM - A: one\n"
        "06/01/24, 9:00 PM - B: two\n"
        "01/02/24, 9:00 PM - A: three\n"
        "01/02/24, 9:01 PM - B: four\n"))
    conversations = read_all(whatsapp.read, path, options)
    assert [[t.start_ms for t in c.turns] for c in conversations] == [
        [ms(2024, 1, 5, 21)], [ms(2024, 1, 6, 21)],
        [ms(2024, 2, 1, 21), ms(2024, 2, 1, 21, 1)]]


def test_whatsapp_year_first_dates_and_the_gap_option(tmp_path):
    path = write(tmp_path / "chat.txt", (
        "2016-08-06, 1:23 PM - Ash: Hey guys!\n"
        "2016-08-06, 1:25 PM - Brock: Hey Ash\n"
        "2016-08-06, 1:30 PM - Misty: Long time\n"))
    assert len(read_all(whatsapp.read, path)) == 1
    split = read_all(whatsapp.read, path, ReadOptions(gap_seconds=60))
    assert texts(split) == [["Hey guys!"], ["Hey Ash"], ["Long time"]]
    assert split[0].turns[0].start_ms == ms(2016, 8, 6, 13, 23)


def test_whatsapp_lines_before_the_first_message_are_skipped_with_a_warning(
        tmp_path, options, warnings_list):
    path = write(tmp_path / "chat.txt", (
        "12/24/23, 9:41 PM - Alice: Hi\n"
        "12/24/23, 9:42 PM - Bob: Hello\n"))
    path.write_text("copied from my phone\n" + path.read_text())
    assert sniff(path.read_bytes()) is None  # not a chat from its first line
    assert texts(read_all(whatsapp.read, path, options)) == [["Hi", "Hello"]]
    assert warnings_list == [f"{path}: 1 line(s) before the first message; skipped"]


@pytest.mark.parametrize(("text", "reason", "line"), [
    ("Just some prose.\nNothing else.\n", "no WhatsApp message lines", None),
    ("12/24/23, 9:00 PM - Messages and calls are end-to-end encrypted. Tap to learn more.\n"
     "12/24/23, 9:01 PM - Alice created group \"x\"\n",
     "no WhatsApp message lines: only system lines", None),
    ("13/12/23, 10:00 - A: x\n12/13/23, 10:01 - B: y\n", "unknown date layout", 2),
    ("12/24/23, 10:00 - A: x\n2/30/24, 10:01 - B: y\n", "unknown date layout", 2),
    ("12/24/23, 10:00 - A: x\n24/13/23, 10:01 - B: y\n", "unknown date layout", 2),
    ("[31/31/2023, 10:00:00] A: x\n", "unknown date layout: '[31/31/2023, 10:00:00]' is "
     "neither day-first nor month-first", 1),
])
def test_whatsapp_bad_input_is_one_reader_error(tmp_path, text, reason, line):
    path = write(tmp_path / "chat.txt", text)
    with pytest.raises(ReaderError) as caught:
        read_all(whatsapp.read, path)
    assert caught.value.path == str(path)
    assert caught.value.reason.startswith(reason)
    assert caught.value.line == line
    assert "\n" not in str(caught.value)


def test_whatsapp_zip_export_reads_the_chat_and_skips_the_media(tmp_path):
    archive = tmp_path / "WhatsApp Chat with Bob.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(ANDROID_12H, "WhatsApp Chat with Bob.txt")
        z.writestr("IMG-20231224-WA0001.jpg", b"\xff\xd8\xff\xe0 jpeg")
        z.writestr("PTT-20231224-WA0002.opus", b"OggS opus")
    db = tmp_path / "c.db"
    result = run("ingest", str(archive), "--db", str(db), "--json", "--jobs", "1",
                 "--gap", str(CHAT_GAP_SECONDS))
    assert result.exit_code == 0, result.output
    counts = last_json(result.stdout)
    assert (counts["files"], counts["conversations"], counts["turns"],
            counts["skipped_members"]) == (1, 3, 10, 2)
    assert result.stderr.splitlines() == [
        f"{archive}: 2 members skipped: no known format (--format F reads them as F) "
        "(IMG-20231224-WA0001.jpg, PTT-20231224-WA0002.opus)"]
    with CorpusStore(db) as store:
        assert [(row["path"].rsplit("!", 1)[1], row["format"]) for row in store.db.query(
            "SELECT path, format FROM sources")] == [("WhatsApp Chat with Bob.txt", "whatsapp")]


# --- Telegram --------------------------------------------------------------------------


def test_telegram_single_chat(options):
    assert detect(TELEGRAM_CHAT, TELEGRAM_CHAT.read_bytes()[:65536]) is FORMATS["telegram"]
    conversations = read_all(telegram.read, TELEGRAM_CHAT, options)
    assert texts(conversations) == [
        [
            "Are you still coming tonight?",
            # a photo with no text between Bob's messages: dropped, his turn goes on; a
            # text of plain strings and a link entity, joined
            "Yes!\nRunning late, see https://maps.example.com/x for where I am",
            "No rush. Bring the cake\nif you can",  # after a sticker (dropped); bold + plain
            "On my way",
        ],
        # the next morning; a pinned-message service message is dropped; a photo's caption
        # is its text
        ["Merry Christmas!", "Merry Christmas 🎄", "Snow!"],
    ]
    assert speakers(conversations) == [
        ["Alice Smith", "Bob Jones", "Alice Smith", "Bob Jones"],
        ["Alice Smith", "Bob Jones", "Alice Smith"]]
    # date_unixtime (the export's "date" is the exporting computer's local time, UTC+1)
    assert conversations[0].turns[0].start_ms == ms(2023, 12, 24, 20, 41, 7)


def test_telegram_full_account_export(options):
    assert detect(TELEGRAM_FULL, TELEGRAM_FULL.read_bytes()[:65536]) is FORMATS["telegram"]
    conversations = read_all(telegram.read, TELEGRAM_FULL, options)
    assert texts(conversations) == [
        ["Dinner on Friday?", "Yes please\nWhere?", "The place on Elm Street"],
        ["Saturday hike?", "I'm in", "Me too"],  # a group: service messages dropped
        ["Great hike today", "Thanks for having me"],  # three days later
        ["Buy milk"],  # saved messages: a chat with no name
    ]
    assert speakers(conversations) == [
        ["Alice Smith", "Sam Lee", "Alice Smith"], ["Dana", "Eli", "Sam Lee"],
        ["Dana", None],  # a deleted account: "from": null
        ["Sam Lee"]]


def test_telegram_chats_never_run_into_each_other_and_left_chats_are_read(tmp_path):
    def chat(name, *messages):
        return {"name": name, "type": "private_supergroup", "id": 1, "messages": [
            {"id": i, "type": "message", "date": "2024-01-01T10:00:00",
             "date_unixtime": "1704103200", "from": sender, "from_id": sender,
             "text": text, "text_entities": []}
            for i, (sender, text) in enumerate(messages)]}
    export = {"about": "Here is the data you requested.",
              "chats": {"about": "", "list": [chat("A", ("x", "1"), ("y", "2"))]},
              "left_chats": {"about": "", "list": [chat("B", ("y", "3"), ("x", "4"))]}}
    path = write(tmp_path / "result.json", json.dumps(export, indent=1))
    conversations = read_all(telegram.read, path)
    assert texts(conversations) == [["1", "2"], ["3", "4"]]


def test_telegram_old_export_without_unixtime(tmp_path):
    # Exports before 2021: "date" only, integer from_id, no text_entities.
    export = {"name": "Somebody", "type": "personal_chat", "id": 4295744296, "messages": [
        {"id": 642, "type": "message", "date": "2018-10-09T19:32:23", "from": "Julie",
         "from_id": 653911985, "text": "Hello :) !"},
        {"id": 643, "type": "message", "date": "2018-10-09T19:33:00", "from": "Julie",
         "from_id": 653911985, "text": "Are you there?"},
        {"id": 644, "type": "message", "date": "2018-10-09T19:40:00", "from": "Me",
         "from_id": 111, "text": ["Yes ", {"type": "code", "text": "here"}]}]}
    path = write(tmp_path / "result.json", json.dumps(export, indent=1))
    assert detect(path, path.read_bytes()) is FORMATS["telegram"]
    conversations = read_all(telegram.read, path)
    assert texts(conversations) == [["Hello :) !\nAre you there?", "Yes here"]]
    assert conversations[0].turns[0].start_ms == ms(2018, 10, 9, 19, 32, 23)


def test_a_json_file_of_another_shape_is_chitchat_or_one_error(tmp_path):
    dataset = write(tmp_path / "dataset.json", json.dumps({"abc": {"messages": [[
        {"text": "hi", "timestamp": "2019-01-01T00:00:00", "sender": "x"}]]}}))
    assert detect(dataset, dataset.read_bytes()) is FORMATS["chitchat"]
    for text, reason in [
        ('{"foo": [1, 2, 3]}', telegram.SHAPE),
        ("[1, 2]", telegram.SHAPE),
        ('{"messages": [{"type": "message", "text": "cut', "invalid JSON"),
    ]:
        path = write(tmp_path / "result.json", text)
        with pytest.raises(ReaderError) as caught:
            read_all(telegram.read, path)
        assert caught.value.path == str(path)
        assert caught.value.reason.startswith(reason)
        assert "\n" not in str(caught.value)


# --- Options, detection, privacy, the CLI ------------------------------------------------


def test_gap_defaults_per_format():
    assert ReadOptions().gap_seconds is None
    assert ReadOptions().gap(CHAT_GAP_SECONDS) == 3600
    assert ReadOptions().gap(DEFAULT_GAP_SECONDS) == 5
    assert ReadOptions(gap_seconds=30).gap(CHAT_GAP_SECONDS) == 30


def test_chat_export_formats_are_private():
    assert FORMATS["whatsapp"].private and FORMATS["telegram"].private
    assert not any(f.private for name, f in FORMATS.items()
                   if name not in ("whatsapp", "telegram"))


def test_prose_stays_a_novel_and_a_chat_txt_is_whatsapp(tmp_path):
    novel = write(tmp_path / "book.txt", '"Hello," she said at 9:41 PM - late.\n')
    assert detect(novel, novel.read_bytes()) is FORMATS["novel"]
    chat = tmp_path / "anything.txt"
    shutil.copy(IOS_GROUP_12H, chat)
    assert detect(chat, chat.read_bytes()) is FORMATS["whatsapp"]


def test_ingest_detects_chat_exports_by_content(tmp_path):
    folder = tmp_path / "exports"
    shutil.copytree(CHATS, folder)
    db = tmp_path / "c.db"
    result = run("ingest", str(folder), "--db", str(db), "--json", "--jobs", "1",
                 "--gap", str(CHAT_GAP_SECONDS))
    assert result.exit_code == 0, result.output
    counts = last_json(result.stdout)
    # 4 WhatsApp chats (10 + 11 + 7 + 9 turns) and 2 Telegram exports (7 + 8; the saved
    # message is one turn: skipped)
    assert (counts["files"], counts["failed"], counts["conversations"], counts["turns"],
            counts["skipped_conversations"]) == (6, 0, 16, 52, 1)
    with CorpusStore(db) as store:
        formats = {Path(row["path"]).relative_to(folder.resolve()).as_posix(): row["format"]
                   for row in store.db.query("SELECT path, format FROM sources")}
    assert formats == {
        "_chat.txt": "whatsapp", "whatsapp-android-12h.txt": "whatsapp",
        "whatsapp-android-group-24h.txt": "whatsapp", "whatsapp-ios-group-12h.txt": "whatsapp",
        "telegram-chat/result.json": "telegram", "telegram-full/result.json": "telegram"}


def test_ingest_in_workers_with_the_formats_own_gap(tmp_path):
    bad = write(tmp_path / "bad.txt", "13/12/23, 10:00 - A: x\n12/13/23, 10:01 - B: y\n")
    shutil.copy(IOS_24H, tmp_path / "_chat.txt")
    shutil.copy(TELEGRAM_CHAT, tmp_path / "result.json")
    errors = []
    with CorpusStore(tmp_path / "c.db") as store:
        report = ingest(store, [tmp_path / "bad.txt", tmp_path / "_chat.txt",
                                tmp_path / "result.json"], ReadOptions(), jobs=2,
                        on_file=lambda r: r.error and errors.append(r.error))
    counts = report.as_json()
    assert (counts["failed"], counts["conversations"], counts["turns"]) == (1, 4, 14)
    # 13/12/23 on line 1 says day-first; line 2 is not
    assert errors == [f"{bad}:2: unknown date layout: '12/13/23, 10:01 -' is not day-first "
                      "like the dates before it"]
