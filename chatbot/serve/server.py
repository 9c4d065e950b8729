"""`chatbot serve`: the socket, uvicorn, the model loading behind it, a clean stop.

The socket is bound and listening before anything slow happens, and the URL printed
then, so a client (or a test) can connect at once: until the model is loaded and its
searches traced, requests get 503 with a clear message. Ctrl-C or SIGTERM: uvicorn stops
accepting, lets the requests in flight finish, and the command exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatbot.decode.settings import DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.serve.app import Loading, ServeOptions, create_app

LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeConfig:
    """Everything `chatbot serve` was given."""

    model_dir: Path
    model_id: str
    transcripts: Path
    settings: DecodeSettings
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    max_body: int = 1 << 20
    max_messages: int = 256
    max_conversations: int = 1024
    cache_size: int = 4096
    cors: tuple[str, ...] = ()


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(config: ServeConfig) -> None:
    """What is wrong before anything starts, as one line."""
    if not is_loopback(config.host) and not config.api_key:
        raise ChatbotError(f"--host {config.host} would let other machines talk to the bot "
                           "and read its transcripts: give an API key (--api-key or "
                           "CHATBOT_API_KEY), or serve on 127.0.0.1")
    if config.api_key is not None and len(config.api_key) < 8:
        raise ChatbotError("the API key is too short: use at least 8 characters")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one); a port in use is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ChatbotError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(config: ServeConfig) -> int:
    """Serve until stopped; the exit status."""
    import uvicorn

    check(config)
    sock = listen(config.host, config.port)
    loading = Loading()
    loading.created = int(time.time())
    options = ServeOptions(config.model_id, config.api_key, config.max_body,
                           config.max_messages, config.cors)
    failed = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(_load(config, loading, failed, server))
        try:
            yield
        finally:
            task.cancel()
            if loading.service is not None:
                loading.service.engine.batcher.close()
                loading.service.close()
                loading.service.store.close()

    app = create_app(loading, options, lifespan)
    server = _uvicorn_server(uvicorn.Config(app, log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=None, lifespan="on"))
    print(f"Serving on {url_of(sock)}", flush=True)
    print(f"loading the model {config.model_dir} ...", file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 1 if failed.is_set() else 0


async def _load(config: ServeConfig, loading: Loading, failed: threading.Event,
                server: Any) -> None:
    """Load the model on a thread, then make the service; a failure stops the server."""
    start = time.perf_counter()
    try:
        service = await asyncio.to_thread(_make_service, config)
    except ChatbotError as e:
        loading.error = str(e)
        print(f"Error: {e}", file=sys.stderr, flush=True)
        failed.set()
        server.should_exit = True
        return
    loading.service = service
    print(f"ready: {config.model_id} in {time.perf_counter() - start:.1f} s", file=sys.stderr,
          flush=True)


def _make_service(config: ServeConfig) -> Any:
    from chatbot.chat.loading import load_responder, model_digest
    from chatbot.serve.batcher import Batcher
    from chatbot.serve.engine import Engine
    from chatbot.serve.service import Service
    from chatbot.serve.states import StateCache
    from chatbot.transcripts.store import TranscriptStore

    store = TranscriptStore(config.transcripts, power_safe=False)
    responder = load_responder(config.model_dir, config.settings)
    batcher = Batcher(responder, config.max_batch, config.batch_wait_ms / 1000)
    engine = Engine(batcher, StateCache(config.cache_size))
    return Service(engine, store, config.settings, model_path=config.model_dir,
                   model_digest=model_digest(config.model_dir),
                   max_conversations=config.max_conversations)


def _uvicorn_server(config: Any) -> Any:
    """uvicorn's server, exiting 0 after a signal (it re-raises the signal by default)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # Ctrl-C and SIGTERM are how a service is stopped: not a failure.
                self._captured_signals.clear()

    return Server(config)
