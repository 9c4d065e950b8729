"""The chat: the engine (state, /reset, /retry, /rate, /set, resuming), the /commands,
the prompt_toolkit front end in-process, and the real command in a pseudo-terminal and
over pipes (four at once on one transcripts file; kill -9)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")

from chatbot.chat.commands import COMMANDS, Action, Frontend  # noqa: E402
from chatbot.chat.loading import load_responder, model_digest  # noqa: E402
from chatbot.chat.pipe import PipeChat  # noqa: E402
from chatbot.chat.session import ChatSession  # noqa: E402
from chatbot.cli import cli  # noqa: E402
from chatbot.decode.conversation import Conversation  # noqa: E402
from chatbot.decode.settings import DecodeSettings  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.text.tokenizer import BOS_ID  # noqa: E402
from chatbot.transcripts.store import TranscriptStore  # noqa: E402
from tests.tiny_model import tiny_model_dir  # noqa: E402

GREEDY = DecodeSettings(max_len=12)


WORDS = ["hello there", "how are you", "i am fine thanks", "what is your name",
         "my name is bot", "tell me a joke", "good bye"]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    """One tiny untrained model (tests/tiny_model.py), replies of a few words. Its words
    have no punctuation, so every reply's text encodes back to its ids (what replaying a
    transcript reads)."""
    return tiny_model_dir(WORDS, seed=3, eos_boost=1.5, metadata={"options": {"max_len": 16}})


@pytest.fixture(scope="module")
def responder(model_dir):
    return load_responder(model_dir, GREEDY)


@pytest.fixture
def store(tmp_path):
    with TranscriptStore(tmp_path / "t.db") as opened:
        yield opened


def new_chat(responder, store, model_dir, settings=GREEDY) -> ChatSession:
    return ChatSession(responder, store, settings, model_path=model_dir,
                       model_digest=lambda: model_digest(model_dir))


@pytest.fixture
def chat(responder, store, model_dir) -> ChatSession:
    return new_chat(responder, store, model_dir)


def assert_states_close(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


def round_trips(responder, chat: ChatSession) -> bool:
    """Whether every reply's text encodes back to its ids (what a replay reads)."""
    return all(responder.tokenizer.encode(t.text) == list(t.ids) for t in chat.turns
               if t.role == "bot")


# --- the engine ---------------------------------------------------------------------------


def test_the_state_follows_the_training_path_and_every_turn_is_stored(chat, responder,
                                                                      model_dir):
    turns = ["hello", "how are you?", "what is your name?"]
    reference = Conversation(responder, GREEDY)  # the decode package's definition
    for text in turns:
        reply = chat.say(text)
        expected, _ = reference.say(text)
        assert reply.text == expected
        assert_states_close(chat.state(), reference.state)
    assert np.abs(np.asarray(chat.state()[0])).sum() > 0
    rows = chat.history()
    assert [r["role"] for r in rows] == ["user", "bot"] * 3
    assert [r["text"] for r in rows[::2]] == turns
    for row in rows[1::2]:
        assert row["latency_ms"] is not None and row["tokens"] >= 1
        assert row["settings"]["method"] == "greedy" and row["settings"]["max_len"] == 12
    record = chat.store.conversation(chat.conversation_id)
    assert record["model_path"] == str(model_dir)
    assert record["model_digest"] == model_digest(model_dir).strip()
    assert record["model_digest"].startswith("sha256:")


def test_reset_starts_a_new_conversation_from_zeros(chat, responder):
    first = chat.say("hello")
    first_state = chat.state()
    first_id = chat.conversation_id
    chat.say("how are you?")
    chat.reset()
    assert chat.conversation_id is None and chat.turn_number == 1
    again = chat.say("hello")
    assert again.text == first.text
    assert chat.conversation_id != first_id
    assert_states_close(chat.state(), first_state, atol=0)
    assert [r["text"] for r in chat.history()] == ["hello", again.text]


def test_retry_replaces_the_stored_reply_and_the_state(chat, responder):
    first = chat.say("hello")
    seen = {first.text}
    for number in (1, 2):
        pending = chat.begin_retry()
        retried = chat.complete(pending, pending.run(responder))
        assert retried.retry == number and retried.text not in seen
        seen.add(retried.text)
        rows = chat.history()
        assert [r["role"] for r in rows] == ["user", "bot"]
        assert rows[1]["text"] == retried.text
        assert rows[1]["settings"]["retry"] == number
        assert rows[1]["settings"]["method"] == "beam"  # the next beam hypothesis
        # The state is the retried reply's own exchange, as training would carry it.
        ids = list(chat.turns[-1].ids)
        expected = responder.observe_ids([responder.encode("hello")], [[BOS_ID, *ids]],
                                         [None])[0]
        assert_states_close(chat.state(), expected)
    # The conversation goes on from the retried reply.
    reference = Conversation(responder, GREEDY)
    reference.say("hello")
    reference.state, reference.last_reply = chat.state(), chat.turns[-1].ids
    assert chat.say("how are you?").text == reference.say("how are you?")[0]
    chat.reset()
    with pytest.raises(ChatbotError, match="nothing to retry"):
        chat.begin_retry()


def test_retry_when_sampling_draws_a_new_seed(chat, responder):
    from chatbot.chat.replies import RETRY_DRAWS

    chat.set("decode", "sample")
    chat.say("hello")
    drawn = chat.history()[1]["settings"]["seed"]
    assert isinstance(drawn, int)  # drawn by the chat, so the stored settings replay it
    chat.reset()
    chat.set("seed", "7")
    first = chat.say("hello")
    assert chat.history()[1]["settings"]["seed"] == 7
    pending = chat.begin_retry()
    retried = chat.complete(pending, pending.run(responder))
    stored = chat.history()[1]["settings"]
    assert stored["method"] == "sample" and stored["retry"] == 1
    # A fixed seed gives reproducible retries: seed + retry * draws + draw.
    assert 7 + RETRY_DRAWS <= stored["seed"] < 7 + 2 * RETRY_DRAWS
    assert retried.text != first.text and chat.history()[1]["text"] == retried.text


def test_rate_is_stored_with_the_last_reply(chat):
    with pytest.raises(ChatbotError, match="no reply to rate"):
        chat.rate("good")
    chat.say("hello")
    chat.say("how are you?")
    chat.rate("Bad")
    rows = chat.history()
    assert [r["rating"] for r in rows] == [None, None, None, "bad"]
    with pytest.raises(ChatbotError, match="good or bad"):
        chat.rate("meh")


def test_set_checks_values_through_decode_settings(chat):
    before = chat.settings
    for key, value, match in [("beam", "0", "beam_size must be at least 1"),
                              ("temperature", "hot", "must be a number"),
                              ("top_k", "1.5", "must be an integer"),
                              ("decode", "viterbi", "unknown decoding method"),
                              ("colour", "blue", "unknown setting")]:
        with pytest.raises(ChatbotError, match=match):
            chat.set(key, value)
        assert chat.settings == before
    assert chat.set("decode", "beam").method == "beam"
    assert chat.set("beam", "3").beam_size == 3
    assert chat.set("top-p", "0.9").top_p == 0.9
    assert chat.set("seed", "none").seed is None
    assert chat.set("allow_unk", "on").allow_unk is True


def test_resuming_replays_the_transcript_into_the_same_state(chat, responder, store,
                                                             model_dir):
    for text in ["hello", "how are you?", "tell me a joke"]:
        chat.say(text)
    chat.begin_reply("this one is never answered")  # a reply stopped with Ctrl-C
    assert round_trips(responder, chat)  # else a replay could not read the same ids
    resumed = new_chat(responder, store, model_dir)
    record = resumed.resume(chat.conversation_id)
    assert record["id"] == chat.conversation_id and len(resumed.turns) == 7
    assert_states_close(resumed.state(), chat.state())
    live, replayed = chat.say("what is your name?"), resumed.say("what is your name?")
    assert replayed.text == live.text
    assert_states_close(resumed.state(), chat.state())
    # Both sessions appended to the one stored conversation.
    assert len(store.turns(chat.conversation_id)) == 11


# --- the /commands and the pipe front end -----------------------------------------------


class Recorder(Frontend):
    interactive = True

    def __init__(self, chat):
        super().__init__(chat)
        self.lines: list[str] = []

    def show_reply(self, reply):
        self.lines.append("bot> " + reply.text)

    def notice(self, text):
        self.lines.append(text)

    def toggle_multiline(self):
        return True


def test_commands_come_from_one_registry(chat):
    names = [c.name for c in COMMANDS]
    assert names[:1] == ["help"]
    for name in ["help", "reset", "history", "set", "settings", "retry", "rate", "quit"]:
        assert name in names
    front = Recorder(chat)
    assert front.handle("/help") is Action.CONTINUE
    assert all(any(f"/{name}" in line for line in front.lines) for name in names)
    assert COMMANDS.lookup("/EXIT").name == "quit" and COMMANDS.lookup("nope") is None
    front.lines.clear()
    front.handle("/bogus")
    front.handle("/set beam 0")
    front.handle("/set")
    front.handle("/rate good")
    assert [line.split()[0] for line in front.lines] == ["unknown", "beam_size", "usage:",
                                                        "no"]
    assert front.handle("/quit") is Action.QUIT
    front.handle("//slash is a turn")
    assert chat.turns[0].text == "/slash is a turn"


def test_completion_offers_commands_and_their_arguments():
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document

    from chatbot.chat.repl import CommandCompleter

    def complete(text):
        found = CommandCompleter(COMMANDS).get_completions(Document(text), CompleteEvent())
        return [c.text for c in found]

    assert complete("/re") == ["/reset", "/retry"]
    assert complete("/set de") == ["decode"]
    assert complete("/set decode b") == ["beam"]
    assert complete("/rate g") == ["good"]
    assert complete("hello /re") == []


def test_pipe_mode_prints_one_line_per_reply_and_nothing_else(chat, store):
    stdin = io.StringIO("hello\n/reset\nhello\n/settings\n/multiline\nhow are you?\n")
    stdout, stderr = io.StringIO(), io.StringIO()
    assert PipeChat(chat, stdin, stdout, stderr).run() == 0
    lines = stdout.getvalue().splitlines()
    assert len(lines) == 3 and lines[0] == lines[1]
    assert "new conversation" in stderr.getvalue()
    assert "only works in a terminal" in stderr.getvalue()
    assert len(store.conversation_ids()) == 2
    assert [r["text"] for r in chat.history()][1::2] == lines[1:]


def test_pipe_mode_answers_every_line_so_replies_line_up(chat, monkeypatch):
    """A file of turns piped in gets one line back per line: a blank line (no turn) an
    empty one, and so does a turn whose reply failed (its error goes to stderr)."""
    turns = ["hello", "", "how are you?", "   ", "tell me a joke", "good bye"]
    begin = chat.begin_reply

    def failing(text):
        if text == "tell me a joke":
            raise ChatbotError("that reply failed")
        return begin(text)

    monkeypatch.setattr(chat, "begin_reply", failing)
    stdout, stderr = io.StringIO(), io.StringIO()
    assert PipeChat(chat, io.StringIO("\n".join(turns) + "\n"), stdout, stderr).run() == 0
    lines = stdout.getvalue().split("\n")
    assert lines[-1] == "" and len(lines[:-1]) == len(turns)
    assert [bool(line) for line in lines[:-1]] == [True, False, True, False, False, True]
    assert "that reply failed" in stderr.getvalue()
    assert [r["text"] for r in chat.history() if r["role"] == "user"] == [
        "hello", "how are you?", "good bye"]


def test_the_main_thread_s_stderr_shows_at_once_while_the_model_loads(model_dir,
                                                                      monkeypatch, tmp_path):
    """The model loads on a worker thread with TensorFlow's chatter filtered out of file
    descriptor 2; what the main thread writes there meanwhile is not held back."""
    from concurrent.futures import ThreadPoolExecutor

    import chatbot.decode.responder as responder_module

    loading, release = threading.Event(), threading.Event()

    class Stop(Exception):
        pass

    class SlowResponder:  # a load that lasts until the test has looked
        def __init__(self, *args, **kwargs):
            os.write(2, b"oneDNN custom operations are on. (TensorFlow's chatter)\n")
            loading.set()
            release.wait(60)
            raise Stop

    monkeypatch.setattr(responder_module, "Responder", SlowResponder)
    seen = tmp_path / "stderr"
    with open(seen, "wb") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)  # the process's real stderr, for this test
        try:
            with ThreadPoolExecutor(1) as executor:
                future = executor.submit(load_responder, model_dir, GREEDY)
                assert loading.wait(60)
                os.write(2, b"a message from the main thread\n")
                # Not a timing bound: the message either shows while the load still
                # waits for `release`, or (held back) only after it; the deadline only
                # keeps a failing run from hanging.
                deadline = time.monotonic() + 20
                while (b"from the main thread" not in seen.read_bytes()
                       and time.monotonic() < deadline):
                    time.sleep(0.01)
                during_the_load = seen.read_bytes()
                release.set()
                with pytest.raises(Stop):
                    future.result(60)
        finally:
            release.set()
            os.dup2(saved, 2)
            os.close(saved)
    assert b"a message from the main thread\n" in during_the_load
    assert b"oneDNN" not in seen.read_bytes()


# --- the prompt_toolkit front end, in-process ------------------------------------------


class RecordingRepl:
    """A Repl whose printed text is kept for the test (prompt_toolkit draws nowhere)."""

    def __new__(cls, chat, **kwargs):
        from chatbot.chat.repl import Repl

        class _Repl(Repl):
            def echo(self, fragments):
                self.printed.append("".join(text for _, text in fragments))

        repl = _Repl(chat, **kwargs)
        repl.printed = []
        return repl


def test_prompt_toolkit_session_types_commands_and_leaves_on_ctrl_d(chat, tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from chatbot.chat.repl import private_history

    history = private_history(tmp_path / "chat_history")
    with create_pipe_input() as pipe:
        repl = RecordingRepl(chat, input=pipe, output=DummyOutput(), history=history)
        # Ctrl-C drops a half-typed line; Esc-Enter adds a line; Ctrl-D leaves.
        pipe.send_text("hello\r" "half typed\x03" "/set decode beam\r" "/history\r"
                       "two\x1b\rlines\r" "/multiline\r" "\x04")
        assert repl.run(["welcome"]) == 0
    printed = "\n".join(repl.printed)
    assert printed.startswith("welcome")
    assert "decoding: beam 5" in printed and "you> hello" in printed
    assert "multi-line input on" in printed and printed.endswith("Goodbye.")
    rows = chat.history()
    assert [r["text"] for r in rows[::2]] == ["hello", "two\nlines"]
    assert rows[3]["settings"]["method"] == "beam"
    assert repl.toolbar() and "beam 5" in "".join(t for _, t in repl.toolbar())
    assert (tmp_path / "chat_history").stat().st_mode & 0o777 == 0o600
    assert "half typed" not in (tmp_path / "chat_history").read_text()


def test_ctrl_c_during_a_reply_returns_to_the_prompt_and_stores_no_reply(chat, responder):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    started, release = threading.Event(), threading.Event()

    with create_pipe_input() as pipe:
        repl = RecordingRepl(chat, input=pipe, output=DummyOutput())
        plain_compute = repl.compute

        def slow_compute(pending):
            if not started.is_set():
                started.set()
                release.wait(30)  # a reply that takes far too long
            return plain_compute(pending)

        repl.compute = slow_compute

        main = threading.get_ident()

        def waiting_for_the_reply() -> bool:
            frame = sys._current_frames().get(main)
            while frame is not None:
                if frame.f_code.co_name == "result":  # Future.result, in make_reply
                    return True
                frame = frame.f_back
            return False

        def interrupt():
            started.wait(30)
            # Not a fixed pause: on a busy machine the main thread may take a while to
            # reach the wait, and a SIGINT before it would land elsewhere.
            deadline = time.monotonic() + 30
            while not waiting_for_the_reply() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)
            # The slow reply goes on only once the chat has given it up, however long
            # a busy machine takes to get there (then it finishes on the worker, unseen).
            deadline = time.monotonic() + 30
            while "(reply stopped)" not in repl.printed and time.monotonic() < deadline:
                time.sleep(0.01)
            release.set()

        threading.Thread(target=interrupt, daemon=True).start()
        pipe.send_text("a slow one\r" "hello\r" "\x04")
        # Python's own Ctrl-C handler, as in a terminal: a shell that starts the tests in
        # the background has them ignore SIGINT, and Python then installs none.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            assert repl.run() == 0
        finally:
            signal.signal(signal.SIGINT, previous)
            release.set()
    assert "(reply stopped)" in repl.printed
    rows = chat.history()
    assert [(r["role"], r["text"]) for r in rows[:2]] == [("user", "a slow one"),
                                                          ("user", "hello")]
    assert [r["role"] for r in rows] == ["user", "user", "bot"]
    # The reply to "hello" read the unanswered turn first, as training would.
    reference = Conversation(responder, GREEDY)
    reference.state = responder.observe_ids([responder.encode("a slow one")],
                                            [responder.target_in("hello")], [None])[0]
    expected = responder.reply_ids([responder.encode("hello")], [reference.state], GREEDY)
    assert rows[2]["text"] == expected[0][0]


# --- the real command -------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _chat_command(model_dir: Path, transcripts: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "chatbot", "chat", "--model", str(model_dir),
            "--transcripts", str(transcripts), *extra]


def test_no_model_is_one_line_on_how_to_train_one(monkeypatch, tmp_path):
    import chatbot.model.builtin as builtin

    monkeypatch.setattr(builtin, "builtin_model_dir", lambda: None)
    result = CliRunner().invoke(cli, ["chat", "--transcripts", str(tmp_path / "t.db")])
    assert result.exit_code == 1
    assert "no built-in model yet: train one with `chatbot train --model DIR`" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(cli, ["chat", "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no model directory there" in result.output


def test_continue_and_conversation_resume_through_the_command(model_dir, tmp_path):
    transcripts = str(tmp_path / "t.db")
    base = ["chat", "--model", str(model_dir), "--transcripts", transcripts]
    runner = CliRunner()
    result = runner.invoke(cli, [*base, "--continue"], input="hello\n")
    assert result.exit_code == 1 and "no conversation to continue" in result.stderr
    first = runner.invoke(cli, base, input="hello\nhow are you\n")
    assert first.exit_code == 0 and len(first.stdout.splitlines()) == 2
    again = runner.invoke(cli, [*base, "--continue"], input="tell me a joke\n")
    assert again.exit_code == 0 and len(again.stdout.splitlines()) == 1
    assert "continuing conversation 1 (4 turns)" in again.stderr
    named = runner.invoke(cli, [*base, "--conversation", "1"], input="/history\n")
    assert named.exit_code == 0 and named.stdout == ""
    assert "you> tell me a joke" in named.stderr
    with TranscriptStore(transcripts) as store:
        assert store.conversation_ids() == [1] and len(store.turns(1)) == 6
    for extra, message in [(["--conversation", "7"], "no conversation with id 7"),
                           (["--continue", "--conversation", "1"], "not both")]:
        result = runner.invoke(cli, [*base, *extra], input="")
        assert result.exit_code == 1 and message in result.stderr


def test_chat_help_and_no_tensorflow_at_start():
    result = CliRunner().invoke(cli, ["chat", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output
    code = ("import sys, chatbot.cli, chatbot.chat.app, chatbot.chat.repl, chatbot.chat.pipe; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def plain(text: str) -> str:
    """Terminal output without its escape sequences."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).strip()


def test_a_real_terminal_session(model_dir, tmp_path, isolated_home):
    pexpect = pytest.importorskip("pexpect")
    transcripts = tmp_path / "t.db"
    command = _chat_command(model_dir, transcripts)
    child = pexpect.spawn(command[0], command[1:], env={**_env(), "TERM": "xterm"},
                          encoding="utf-8", timeout=120, dimensions=(24, 100))

    def expect(pattern):
        """Wait for `pattern`, answering prompt_toolkit's cursor-position requests as a
        terminal does (without the answers it would not know the height for the toolbar)."""
        while child.expect([pattern, "\x1b\\[6n"]) == 1:
            child.send("\x1b[20;1R")
        return child.match

    try:
        expect("you> ")  # the prompt is up while the model loads
        expect("conversation new")  # the toolbar
        child.send("hello there\r")
        first = plain(expect("bot> ([^\r\n]*)\r").group(1))
        expect("you> ")
        child.send("half typed")
        child.sendcontrol("c")
        expect("you> ")
        child.send("/reset\r")
        expect("new conversation")
        child.send("hello there\r")
        assert plain(expect("bot> ([^\r\n]*)\r").group(1)) == first  # as from zeros
        expect("you> ")
        child.sendcontrol("d")
        expect("Goodbye")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    with TranscriptStore(transcripts) as store:
        assert len(store.conversation_ids()) == 2
        for conversation_id in store.conversation_ids():
            assert [r["text"] for r in store.turns(conversation_id)] == ["hello there", first]
    history = isolated_home / "chat_history"
    assert "hello there" in history.read_text() and "half typed" not in history.read_text()


def test_four_chats_write_one_file_at_once_and_kill_9_loses_nothing_shown(
        model_dir, tmp_path, responder):
    transcripts = tmp_path / "t.db"

    def start(**streams):
        return subprocess.Popen(_chat_command(model_dir, transcripts), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=_env(), **streams)

    scripted = []
    for n in range(3):  # whole scripts, written at once (far below a pipe's buffer)
        process = start(stderr=subprocess.PIPE)
        process.stdin.write(f"hello {n}\nhow are you?\n/reset\nwhat is your name {n}?\n"
                            "/rate good\n")
        process.stdin.close()
        scripted.append(process)
    # The fourth is driven turn by turn while the others write, then killed with -9.
    killed = start(stderr=subprocess.DEVNULL)
    shown = []
    try:
        for text in ["hello 9", "how are you?", "what is your name?"]:
            killed.stdin.write(text + "\n")
            killed.stdin.flush()
            shown.append((text, killed.stdout.readline().rstrip("\n")))
        killed.stdin.write("this turn may or may not be stored\n")
        killed.stdin.flush()
    finally:
        killed.kill()
        killed.wait(30)
    assert killed.returncode == -signal.SIGKILL
    outputs = []
    for process in scripted:
        stdout, stderr = process.stdout.read(), process.stderr.read()
        assert process.wait(240) == 0, stderr[-1000:]
        outputs.append((stdout, stderr))

    with TranscriptStore(transcripts) as store:
        assert store.integrity_check() == "ok"
        conversations = {store.turns(i)[0]["text"]: store.turns(i)
                         for i in store.conversation_ids()}
        assert len(conversations) == 7
        for n, (stdout, stderr) in enumerate(outputs):
            replies = stdout.splitlines()
            assert len(replies) == 3, stdout  # one line per reply, nothing else on stdout
            assert "new conversation" in stderr and "rated the last reply good" in stderr
            first = conversations[f"hello {n}"]
            second = conversations[f"what is your name {n}?"]
            assert [t["text"] for t in first] == [f"hello {n}", replies[0], "how are you?",
                                                  replies[1]]
            assert [t["text"] for t in second] == [f"what is your name {n}?", replies[2]]
            assert second[1]["rating"] == "good"
            assert all(t["latency_ms"] is not None for t in first[1::2] + second[1::2])
        # Everything the killed chat showed is stored.
        rows = conversations["hello 9"]
        assert [(rows[i]["text"], rows[i + 1]["text"]) for i in (0, 2, 4)] == shown
        # And the next chat can continue it: the context is rebuilt from the stored turns.
        chat = new_chat(responder, store, model_dir)
        chat.resume(rows[0]["conversation_id"])
        assert chat.say("good bye").text
        assert len(store.turns(rows[0]["conversation_id"])) == len(rows) + 2


def test_chat_decodes_as_the_model_recommends_with_given_options_on_top(tmp_path):
    from chatbot.chat.app import chat_settings

    (tmp_path / "metadata.json").write_text(
        '{"decoding": {"antilm": 0.8, "antilm_top_k": 20}}', encoding="utf-8")
    recommended = chat_settings(tmp_path, {})
    # Beam search where the model names no method, with its anti-generic settings.
    assert (recommended.method, recommended.antilm, recommended.antilm_top_k) == (
        "beam", 0.8, 20)
    given = chat_settings(tmp_path, {"method": "greedy", "antilm": 0.0})
    assert (given.method, given.antilm, given.antilm_top_k) == ("greedy", 0.0, 20)
    (tmp_path / "metadata.json").write_text('{"decoding": {"method": "sample"}}')
    assert chat_settings(tmp_path, {}).method == "sample"
    (tmp_path / "metadata.json").unlink()
    assert chat_settings(tmp_path, {}) == DecodeSettings(method="beam")


def test_an_existing_history_file_is_made_private(tmp_path):
    from chatbot.chat.repl import private_history

    path = tmp_path / "chat_history"
    path.write_text("\n# 2026-01-01\n+what I typed\n")
    path.chmod(0o644)
    private_history(path)
    assert path.stat().st_mode & 0o777 == 0o600
