"""Benchmark: `chatbot serve` with batching against the same server with --max-batch 1.

In one run, on the same model (the built-in one unless --model), starts `chatbot serve`
twice in turn on loopback: batching on (--max-batch 32) and off (--max-batch 1). Against
each, --clients concurrent clients (default 32) each hold a native conversation of
--turns turns (default 10) over keep-alive connections. Prints replies per second, p50
and p99 latency, replies lost (must be 0), and the ratio of throughputs (goal: >= 4).

Then, against the batching server, one client sends a growing OpenAI-style history for
--turns requests and prints the latency of request 1 and request N: the state of all but
the newest exchange comes from the cache, so request N should cost about what request 1
does; the same request with its first message changed (nothing cached: the whole history
replayed) is timed for comparison.

Usage: python scripts/bench_serve.py [--model DIR] [--clients 32] [--turns 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LINES = ["hello there", "how are you doing today?", "what is your name?",
         "where do you live?", "do you like movies?", "tell me about yourself",
         "that sounds nice", "why do you say that?", "what time is it?", "good night"]


class Server:
    def __init__(self, model: str | None, transcripts: Path, *extra: str) -> None:
        args = [sys.executable, "-c", "from chatbot.cli import main; main()", "serve",
                "--port", "0", "--transcripts", str(transcripts), *extra]
        if model:
            args += ["--model", model]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline()
        match = re.search(r"Serving on (http://\S+)", line)
        if not match:
            raise SystemExit(f"chatbot serve did not start: {line!r}")
        self.url = match.group(1)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise SystemExit("chatbot serve did not get ready")

    def health(self) -> dict:
        return httpx.get(self.url + "health", timeout=10).json()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


async def conversations(url: str, clients: int, turns: int) -> tuple[list[float], int, float]:
    """Latencies of every reply, replies lost, wall seconds."""
    latencies: list[float] = []
    lost = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:

        async def one(number: int) -> None:
            nonlocal lost
            ident = (await http.post("api/conversations", json={})).json()["id"]
            for turn in range(turns):
                start = time.perf_counter()
                r = await http.post(f"api/conversations/{ident}/messages",
                                    json={"text": LINES[(number + turn) % len(LINES)]})
                if r.status_code != 200 or not r.json().get("reply"):
                    lost += 1
                    continue
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(clients)))
        return latencies, lost, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def history_costs(url: str, model_id: str, turns: int) -> tuple[list[float], float]:
    """Latency of each request of one client sending its growing history, and of the
    last request again with its first message changed (nothing cached: a full replay)."""
    messages: list[dict] = []
    costs = []
    with httpx.Client(base_url=url, timeout=120) as http:
        def ask(messages: list[dict]) -> tuple[dict, float]:
            start = time.perf_counter()
            r = http.post("v1/chat/completions", json={"model": model_id,
                                                       "messages": messages})
            return r.json()["choices"][0]["message"], time.perf_counter() - start

        for turn in range(turns):
            messages.append({"role": "user", "content": LINES[turn % len(LINES)]})
            reply, cost = ask(messages)
            costs.append(cost)
            messages.append(reply)
        changed = [{"role": "user", "content": "well, " + messages[0]["content"]},
                   *messages[1:-1]]
        _, replay = ask(changed)
    return costs, replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: built-in)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, batch in (("batched", "32"), ("max-batch 1", "1")):
            server = Server(args.model, Path(tmp) / f"{batch}.db", "--max-batch", batch)
            try:
                # A short warm-up: the first calls of each batch size trace nothing new,
                # but the first connections and the page cache do cost.
                asyncio.run(conversations(server.url, 4, 1))
                latencies, lost, wall = asyncio.run(
                    conversations(server.url, args.clients, args.turns))
                stats = server.health()["batches"]
                if label == "batched":
                    model_id = server.health()["model"]
                    costs, replay = history_costs(server.url, model_id, args.turns)
            finally:
                server.stop()
            if not latencies:
                raise SystemExit(f"{label}: every request failed ({lost} lost)")
            rate = len(latencies) / wall
            results[label] = rate
            print(f"{label:>12}: {len(latencies)} replies in {wall:.1f} s = {rate:.1f} "
                  f"replies/s; latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
                  f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms; lost {lost}; "
                  f"largest batch {stats['largest_batch']}, "
                  f"{stats['reply_rows'] / max(1, stats['reply_calls']):.1f} replies per call")
    print(f"throughput ratio (batched / max-batch 1): "
          f"{results['batched'] / results['max-batch 1']:.2f} (goal >= 4)")
    print(f"growing history, one client: request 1 {costs[0] * 1000:.0f} ms, request "
          f"{len(costs)} {costs[-1] * 1000:.0f} ms (median of all "
          f"{statistics.median(costs) * 1000:.0f} ms); request {len(costs)} with nothing "
          f"cached (a changed first message): {replay * 1000:.0f} ms")


if __name__ == "__main__":
    main()
