"""`chatbot serve`: the bot as a web service (OpenAI-compatible API, native
conversations, a web chat page)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from chatbot.cli.options import decode_options
from chatbot.cli.transcripts import transcripts_db, transcripts_option


@click.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Model directory (default: the built-in model).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs an API key.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: a free one; the URL printed says which).")
@transcripts_option
@click.option("--api-key", default=None, metavar="KEY",
              help="Require `Authorization: Bearer KEY` on every API request (default: "
              "$CHATBOT_API_KEY; none on loopback).")
@click.option("--max-batch", type=click.IntRange(min=1), default=32, show_default=True,
              help="Replies decoded together in one model call at most.")
@click.option("--batch-wait-ms", type=click.FloatRange(min=0), default=5.0,
              show_default=True,
              help="How long a reply waits for others to share its model call.")
@click.option("--max-body", type=click.IntRange(min=1024), default=1 << 20,
              show_default=True, help="Largest request body accepted, in bytes (413 above).")
@click.option("--max-messages", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most messages one chat-completions request may hold.")
@click.option("--max-conversations", type=click.IntRange(min=1), default=1024,
              show_default=True,
              help="Conversations held in memory; others are read back from the transcripts.")
@click.option("--cache-size", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Conversation states cached (one per turn; a miss replays the history).")
@click.option("--cors", "cors", multiple=True, metavar="ORIGIN",
              help="Let web pages from ORIGIN call the API (repeatable; default: none).")
@click.option("--name", "model_id", default=None,
              help="The model id clients name (default: the model directory's name; "
              "`chatbot` for the built-in model).")
@decode_options
def serve(model_dir, host, port, transcripts_path, api_key, max_batch, batch_wait_ms,
          max_body, max_messages, max_conversations, cache_size, cors, model_id, method,
          beam_size, temperature, top_k, top_p):
    """Serve the bot over HTTP: an OpenAI-compatible API, server-side conversations and a
    web chat page at /. Every conversation is kept in the transcripts database.

    \b
    Example:
        chatbot serve --model models/mine
        curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
          -d '{"model": "mine", "messages": [{"role": "user", "content": "hello"}]}'

    Prints `Serving on URL` once the port is open; requests get 503 until the model is
    loaded. Ctrl-C or SIGTERM lets the requests in flight finish, then exits.
    """
    from chatbot.chat.app import chat_settings
    from chatbot.model.directory import resolve
    from chatbot.serve.server import ServeConfig
    from chatbot.serve.server import serve as run_server

    resolved = resolve(model_dir)
    given = {"method": method, "beam_size": beam_size, "temperature": temperature,
             "top_k": top_k, "top_p": top_p}
    settings = chat_settings(resolved, {k: v for k, v in given.items() if v is not None})
    config = ServeConfig(
        model_dir=resolved, model_id=model_id or ("chatbot" if model_dir is None
                                                  else resolved.name),
        transcripts=transcripts_db(transcripts_path), settings=settings, host=host,
        port=port, api_key=api_key or os.environ.get("CHATBOT_API_KEY") or None,
        max_batch=max_batch, batch_wait_ms=batch_wait_ms, max_body=max_body,
        max_messages=max_messages, max_conversations=max_conversations,
        cache_size=cache_size, cors=tuple(cors))
    raise SystemExit(run_server(config))
