"""`chatbot serve` over real sockets with real clients: the `openai` package, `llm`, httpx.

One server (a tiny untrained model, greedy decoding so replies are reproducible) serves
the module; its replies are checked against the library's own Responder/ChatSession
path, and its transcripts file is read back after each exchange.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
import pytest

from chatbot.chat.replies import ReplyJob, Turn, run
from chatbot.decode.settings import DecodeSettings
from chatbot.transcripts.store import TranscriptStore
from tests.serve_util import Served
from tests.tiny_model import tiny_model_dir

TEXTS = ["hello there", "how are you", "fine thanks and you", "what is your name",
         "my name is bot", "good to meet you", "where do you live", "in the city"]
SETTINGS = DecodeSettings(method="greedy", max_len=8)


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return tiny_model_dir(TEXTS, seed=7, eos_boost=1.5)


@pytest.fixture(scope="module")
def served(model_dir, tmp_path_factory):
    transcripts = tmp_path_factory.mktemp("serve") / "transcripts.db"
    with Served(model_dir, transcripts, "--decode", "greedy", "--name", "tiny") as server:
        server.transcripts = transcripts
        yield server
    assert server.returncode == 0, server.stderr()  # SIGTERM: a clean stop


@pytest.fixture(scope="module")
def responder(model_dir):
    from chatbot.decode.responder import Responder

    return Responder(model_dir, SETTINGS)


@pytest.fixture
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "v1", api_key="unused", max_retries=0)


def expected_reply(responder, turns: list[tuple[str, str]], settings=None) -> str:
    """What the library replies to the last turn of this conversation (training's path)."""
    settings = settings or responder.settings.replace(method="greedy")
    made = run(ReplyJob(None, tuple(Turn(r, t) for r, t in turns), settings), responder)
    return made.text


def served_settings(served) -> DecodeSettings:
    with TranscriptStore(served.transcripts, create=False) as store:
        settings = store.list_conversations(1)[0]["settings"]
    return DecodeSettings(**settings)


def test_openai_client_plain_reply_is_the_library_reply_and_is_stored(served, client,
                                                                       responder):
    answer = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello there"}])
    text = answer.choices[0].message.content
    assert answer.object == "chat.completion" and answer.model == "tiny"
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage.completion_tokens >= 1 and answer.usage.prompt_tokens == 2
    settings = served_settings(served)
    assert text == expected_reply(responder, [("user", "hello there")], settings)
    with TranscriptStore(served.transcripts, create=False) as store:
        record = store.list_conversations(1)[0]
        turns = store.turns(record["id"])
    assert record["origin"] == "api"
    assert [(t["role"], t["text"]) for t in turns] == [("user", "hello there"), ("bot", text)]
    assert turns[1]["latency_ms"] is not None and turns[1]["settings"]["method"] == "greedy"
    assert stat.S_IMODE(os.stat(served.transcripts).st_mode) == 0o600


def test_a_growing_history_continues_one_conversation_paying_one_exchange(served, client,
                                                                          responder):
    settings = served_settings(served)
    messages = [{"role": "system", "content": "You are terse."}]
    said: list[tuple[str, str]] = []
    observed = []
    for i in range(10):
        text = TEXTS[i % len(TEXTS)]
        messages.append({"role": "user", "content": text})
        said.append(("user", text))
        before = served.health()["batches"]["observe_rows"]
        answer = client.chat.completions.create(model="tiny", messages=messages)
        observed.append(served.health()["batches"]["observe_rows"] - before)
        reply = answer.choices[0].message.content
        # The whole conversation counts: the reply is the one to this history.
        assert reply == expected_reply(responder, [*said], settings), f"turn {i}"
        messages.append({"role": "assistant", "content": reply})
        said.append(("bot", reply))
    # Request 1 reads no earlier exchange; each later one folds the newest one only.
    assert observed == [0] + [1] * 9
    with TranscriptStore(served.transcripts, create=False) as store:
        record = store.list_conversations(1)[0]
        turns = store.turns(record["id"])
    assert [(t["role"], t["text"]) for t in turns] == said  # one conversation, in order


def test_stream_sends_openai_chunks_that_join_to_the_reply(served, client):
    messages = [{"role": "user", "content": "how are you"}]
    whole = client.chat.completions.create(model="tiny", messages=messages,
                                           temperature=0)
    stream = client.chat.completions.create(model="tiny", messages=messages, stream=True,
                                            temperature=0,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    raw = httpx.post(served.url + "v1/chat/completions", timeout=60, json={
        "model": "tiny", "messages": messages, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_n_three_returns_the_beams_three_best(served, client, responder):
    answer = client.chat.completions.create(
        model="tiny", n=3, messages=[{"role": "user", "content": "where do you live"}])
    texts = [c.message.content for c in answer.choices]
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert len(set(texts)) == 3  # the n best, not one reply thrice
    wide = served_settings(served).replace(method="beam", beam_size=5)
    _, _, info = responder.reply("where do you live", None, wide)
    assert texts == [c.text for c in info.candidates[:3]]
    sampled = client.chat.completions.create(
        model="tiny", n=3, temperature=1.5, seed=11,
        messages=[{"role": "user", "content": "where do you live"}])
    again = client.chat.completions.create(
        model="tiny", n=3, temperature=1.5, seed=11,
        messages=[{"role": "user", "content": "where do you live"}])
    assert len(sampled.choices) == 3
    assert ([c.message.content for c in sampled.choices]
            == [c.message.content for c in again.choices])  # a seed replays


def test_models_and_errors_are_openai_shaped(served, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user",
                                                                  "content": "hi"}])
    assert "tiny" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert e.value.body["code"] == "no_user_message"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "user",
                                                                "content": "hi"}], n=99)
    url = served.url + "v1/chat/completions"
    cases = [
        (b"{not json", 400, "invalid_json"),
        (json.dumps({"model": "tiny", "messages": "hi"}).encode(), 400, None),
        (json.dumps({"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]})
         .encode(), 400, None),
        (json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "x"}] * 300})
         .encode(), 400, "too_many_messages"),
        (json.dumps({"model": "tiny", "messages": [{"role": "user",
                                                    "content": "x" * (2 << 20)}]}).encode(),
         413, "request_too_large"),
    ]
    for body, status, code in cases:
        answer = httpx.post(url, content=body, timeout=60,
                            headers={"Content-Type": "application/json"})
        assert answer.status_code == status, body[:60]
        error = answer.json()["error"]
        assert error["message"] and error["type"]
        if code:
            assert error["code"] == code
        assert "Traceback" not in answer.text and str(Path.cwd()) not in answer.text
    missing = httpx.get(served.url + "v2/nothing", timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["message"]
    assert httpx.get(url, timeout=30).status_code == 405


def test_native_conversation_keeps_state_rates_resets_and_deletes(served, responder):
    api = httpx.Client(base_url=served.url + "api/", timeout=60)
    created = api.post("conversations", json={})
    assert created.status_code == 201
    ident = created.json()["id"]
    said: list[tuple[str, str]] = []
    settings = served_settings(served)
    for text in ("hello there", "what is your name", "where do you live"):
        answer = api.post(f"conversations/{ident}/messages", json={"text": text}).json()
        said += [("user", text), ("bot", answer["reply"]["text"])]
        assert answer["reply"]["text"] == expected_reply(responder, said[:-1], settings)
    record = api.get(f"conversations/{ident}").json()
    assert record["origin"] == "api"
    assert [(t["role"], t["text"]) for t in record["turns"]] == said
    rated = api.post(f"conversations/{ident}/rate", json={"rating": "bad"}).json()
    assert rated["turn_id"] == record["turns"][-1]["id"]
    assert api.get(f"conversations/{ident}").json()["turns"][-1]["rating"] == "bad"
    assert api.post(f"conversations/{ident}/rate", json={"rating": "meh"}).status_code == 400
    user_turn = record["turns"][0]["id"]
    assert api.post(f"conversations/{ident}/rate",
                    json={"rating": "good", "turn_id": user_turn}).status_code == 400
    fresh = api.post(f"conversations/{ident}/reset").json()
    assert fresh["previous"] == ident and fresh["id"] != ident and fresh["turns"] == []
    first = api.post(f"conversations/{fresh['id']}/messages",
                     json={"text": "what is your name"}).json()
    assert first["reply"]["text"] == expected_reply(responder, [("user", "what is your name")],
                                                    settings)  # no context carried over
    assert api.post(f"conversations/{ident}/messages", json={"text": " "}).status_code == 400
    assert api.post(f"conversations/{ident}/messages", json={}).status_code == 400
    assert api.delete(f"conversations/{ident}").status_code == 204
    assert api.get(f"conversations/{ident}").status_code == 404
    assert api.get("conversations/abc").status_code == 404


def test_no_cors_unless_asked(served):
    answer = httpx.get(served.url + "v1/models", timeout=30,
                       headers={"Origin": "https://app.example"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_terminal_conversations_are_not_served(served):
    with TranscriptStore(served.transcripts) as store:
        own = store.start_conversation("m", None, {})
        store.add_turn(own, "user", "my secret")
    answer = httpx.get(f"{served.url}api/conversations/{own}", timeout=30)
    assert answer.status_code == 404 and "secret" not in answer.text


def test_llm_command_line_tool_talks_to_the_server(served, tmp_path):
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        f"- model_id: chatbot-tiny\n  model_name: tiny\n  api_base: {served.url}v1\n")
    env = {**os.environ, "LLM_USER_PATH": str(home)}
    llm = [sys.executable, "-m", "llm"]
    first = subprocess.run([*llm, "-m", "chatbot-tiny", "hello there"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([*llm, "-c", "how are you"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    with TranscriptStore(served.transcripts, create=False) as store:
        record = store.list_conversations(1)[0]
        turns = [(t["role"], t["text"]) for t in store.turns(record["id"])]
    # llm -c sent the history back: the server continued the same conversation.
    assert turns == [("user", "hello there"), ("bot", first.stdout.strip()),
                     ("user", "how are you"), ("bot", second.stdout.strip())]


def test_concurrent_requests_are_batched_and_each_gets_its_own_reply(served, responder):
    settings = served_settings(served)
    before = served.health()["batches"]
    texts = [TEXTS[i % len(TEXTS)] + " " + TEXTS[(i * 3) % len(TEXTS)] for i in range(12)]
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        r = httpx.post(served.url + "v1/chat/completions", timeout=120, json={
            "model": "tiny", "messages": [{"role": "user", "content": texts[i]}]})
        answers[i] = r.json()["choices"][0]["message"]["content"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = served.health()["batches"]
    assert after["reply_rows"] - before["reply_rows"] == len(texts)
    assert after["reply_calls"] - before["reply_calls"] < len(texts)  # some shared a call
    for i, text in enumerate(texts):
        assert answers[i] == expected_reply(responder, [("user", text)], settings)


def test_a_conversation_deleted_behind_the_servers_back_is_404(served):
    api = httpx.Client(base_url=served.url + "api/", timeout=60)
    ident = api.post("conversations", json={}).json()["id"]
    assert api.post(f"conversations/{ident}/messages", json={"text": "hello"}).status_code == 200
    with TranscriptStore(served.transcripts) as store:  # `chatbot transcripts delete`
        store.remove(ident)
    gone = api.post(f"conversations/{ident}/messages", json={"text": "hello again"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "conversation_not_found"
    fresh = api.post("conversations", json={}).json()["id"]
    assert fresh > ident  # a deleted conversation's id is never given again
