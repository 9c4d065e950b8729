"""A server killed with `kill -9` mid-conversation loses nothing (issue 15's reliability test).

64 clients hold 20-turn native conversations at once; the server is killed halfway and
started again on the same transcripts file; every client carries on where it was. Then:
every reply a client received is in the file, the file passes integrity_check, and every
reply, before and after the restart, is the one the model gives to its conversation so
far (replayed here, batched), so no conversation lost its context.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import httpx

from chatbot.transcripts.store import TranscriptStore
from tests.serve_util import Served
from tests.tiny_model import tiny_model_dir

CLIENTS = 64
TURNS = 20
WORDS = ["hello there", "how are you", "fine thanks", "what is your name", "my name is",
         "where do you live", "in the city", "good to meet you", "see you later", "why not"]


def test_kill_9_mid_conversation_loses_no_reply_and_no_context(tmp_path):
    model = tiny_model_dir(WORDS, seed=5, eos_boost=2.0)
    transcripts = tmp_path / "transcripts.db"
    base = {"url": ""}
    received: dict[int, list[tuple[int, str]]] = {}  # conversation -> (turn id, reply text)
    failures: list[str] = []
    progress = {"replies": 0}

    async def post(http: httpx.AsyncClient, path: str, body: dict) -> dict:
        """POST until it succeeds: the server may be down for a while."""
        deadline = time.monotonic() + 240
        while True:
            try:
                r = await http.post(base["url"] + path, json=body)
                if r.status_code == 503:  # restarted, still loading
                    raise httpx.TransportError("loading")
                r.raise_for_status()
                return r.json()
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def client(http: httpx.AsyncClient, number: int) -> None:
        try:
            conversation = (await post(http, "api/conversations", {}))["id"]
            received[conversation] = []
            for turn in range(TURNS):
                text = f"{WORDS[(number + turn) % len(WORDS)]} {WORDS[(number * turn) % 7]}"
                reply = await post(http, f"api/conversations/{conversation}/messages",
                                   {"text": text})
                received[conversation].append((reply["reply"]["id"], reply["reply"]["text"]))
                progress["replies"] += 1
        except Exception as e:  # reported below, with the client's number
            failures.append(f"client {number}: {e!r}")

    async def clients() -> None:
        # The clients as tasks of one event loop (on a thread of their own): 64 threads
        # would cost the two cores more than the server does.
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            await asyncio.gather(*(client(http, n) for n in range(CLIENTS)))

    server = Served(model, transcripts, "--decode", "greedy", "--max-conversations", "16")
    server.start()
    base["url"] = server.url
    running = threading.Thread(target=asyncio.run, args=(clients(),))
    running.start()
    while progress["replies"] < CLIENTS * TURNS // 2 and not failures:
        time.sleep(0.05)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = progress["replies"]
    again = Served(model, transcripts, "--decode", "greedy", "--max-conversations", "16")
    again.start()
    base["url"] = again.url
    running.join(300)
    health = again.health()
    again.stop()
    assert not failures, failures[:3]
    assert 0 < killed_at < CLIENTS * TURNS
    assert len(received) == CLIENTS
    assert all(len(replies) == TURNS for replies in received.values())
    assert health["replies"] > 0  # the restarted server made replies too

    with TranscriptStore(transcripts, create=False) as store:
        assert store.integrity_check() == "ok"
        stored = {c: store.turns(c) for c in received}
    for conversation, replies in received.items():
        by_id = {t["id"]: t for t in stored[conversation]}
        for turn_id, text in replies:
            assert by_id[turn_id]["role"] == "bot" and by_id[turn_id]["text"] == text
    _assert_every_reply_follows_its_context(model, stored)


def _assert_every_reply_follows_its_context(model, stored: dict[int, list[dict]]) -> None:
    """Replay every conversation from its transcript (all at once, turn by turn) and check
    each stored reply is the greedy reply from the state its turn was read with."""
    from chatbot.decode.responder import Responder
    from chatbot.decode.settings import DecodeSettings

    responder = Responder(model)
    states: dict[int, list | None] = {c: None for c in stored}  # F_{k-1}: t_{k-1}'s state
    longest = max(len(turns) for turns in stored.values())
    checked = 0
    for k in range(1, longest):
        live = [c for c, turns in stored.items() if len(turns) > k]
        replies = [c for c in live if stored[c][k]["role"] == "bot"]
        if replies:
            settings = DecodeSettings(**stored[replies[0]][k]["settings"])
            made = responder.reply_ids([responder.encode(stored[c][k - 1]["text"])
                                        for c in replies], [states[c] for c in replies],
                                       settings)
            for c, (text, _, _) in zip(replies, made, strict=True):
                assert text == stored[c][k]["text"], f"conversation {c}, turn {k}"
                checked += 1
        # F_k: the exchange (t_{k-1} -> t_k) from F_{k-1}.
        new = responder.observe_ids([responder.encode(stored[c][k - 1]["text"]) for c in live],
                                    [responder.target_in(stored[c][k]["text"]) for c in live],
                                    [states[c] for c in live])
        states.update(zip(live, new, strict=True))
    assert checked >= CLIENTS * TURNS
