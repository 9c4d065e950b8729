"""`chatbot serve`'s guards: loopback unless keyed, the key checked, CORS only when asked,
503 while loading, one-line errors for a bad start."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import httpx
import openai
import pytest

from chatbot.transcripts.store import TranscriptStore
from tests.serve_util import CHATBOT, Served
from tests.tiny_model import tiny_model_dir

KEY = "s3cret-key-for-tests"


@pytest.fixture(scope="module")
def model_dir():
    return tiny_model_dir(["hello there", "how are you", "fine thanks"], seed=3, eos_boost=2.0)


def chatbot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CHATBOT, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_refuses_other_machines_without_a_key_and_bad_starts_are_one_line(model_dir, tmp_path):
    db = str(tmp_path / "t.db")
    for args in (["--host", "0.0.0.0"], ["--host", "192.168.1.10"]):
        result = chatbot("serve", "--model", str(model_dir), "--transcripts", db, *args)
        assert result.returncode == 1
        assert "API key" in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    short = chatbot("serve", "--model", str(model_dir), "--api-key", "abc")
    assert short.returncode == 1 and "too short" in short.stderr
    missing = chatbot("serve", "--model", str(tmp_path / "nothing"), "--transcripts", db)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = chatbot("serve", "--model", str(model_dir), "--transcripts", db, "--port", port)
    assert busy.returncode == 1 and f"127.0.0.1:{port}" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.db").exists()  # nothing started, nothing written


def test_key_is_required_the_page_is_not_and_loading_answers_503(model_dir, tmp_path):
    server = Served(model_dir, tmp_path / "t.db", "--cors", "https://app.example",
                    env={"CHATBOT_API_KEY": KEY}, ready=False)
    with server:
        # At once: the port is open, the model is not loaded yet (TensorFlow's import alone
        # takes seconds), and a request says so.
        early = httpx.post(server.url + "v1/chat/completions", timeout=30,
                           headers={"Authorization": f"Bearer {KEY}"},
                           json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert early.status_code == 503
        assert "loading" in early.json()["error"]["message"]
        assert early.headers["retry-after"]
        server.wait_ready()
        name = model_dir.name
        keyed = openai.OpenAI(base_url=server.url + "v1", api_key=KEY, max_retries=0)
        reply = keyed.chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hello there"}])
        assert reply.choices[0].message.content is not None
        for wrong in ("nope", KEY[:-1], KEY + "x"):
            client = openai.OpenAI(base_url=server.url + "v1", api_key=wrong, max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
        bare = httpx.post(server.url + "api/conversations", timeout=30)
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert httpx.get(server.url, timeout=30).status_code == 200  # the page itself
        # CORS for the origin given, and for no other.
        asked = httpx.options(server.url + "v1/models", timeout=30, headers={
            "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert asked.headers.get("access-control-allow-origin") == "https://app.example"
        other = httpx.get(server.url + "v1/models", timeout=30, headers={
            "Origin": "https://evil.example", "Authorization": f"Bearer {KEY}"})
        assert "access-control-allow-origin" not in other.headers

        # Ctrl-C while a request is in flight (a history of 254 exchanges to replay, none
        # cached): the request finishes and is stored, then the server exits 0.
        words = ["hello there", "how are you", "fine thanks"]
        history = [{"role": "user" if i % 2 == 0 else "assistant", "content": words[i % 3]}
                   for i in range(255)]
        answer: dict[str, float | int] = {}

        def ask() -> None:
            r = httpx.post(server.url + "v1/chat/completions", timeout=120,
                           headers={"Authorization": f"Bearer {KEY}"},
                           json={"model": name, "messages": history})
            answer.update(status=r.status_code, at=time.monotonic())

        asking = threading.Thread(target=ask)
        asking.start()
        time.sleep(0.3)
        interrupted_at = time.monotonic()
        assert server.stop(signal.SIGINT) == 0, server.stderr()
        asking.join(60)
    assert answer["status"] == 200 and answer["at"] > interrupted_at  # it was in flight
    with TranscriptStore(tmp_path / "t.db", create=False) as store:
        stored = store.turns(store.list_conversations(1)[0]["id"])
    assert len(stored) == 256 and stored[-1]["role"] == "bot"

