"""`chatbot transcripts ...`: reviewing what was said in chats (no TensorFlow on these paths)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO

import click

from chatbot.cli.options import json_option
from chatbot.errors import ChatbotError
from chatbot.files import open_private
from chatbot.transcripts import default_transcripts_db
from chatbot.transcripts.store import TranscriptStore

transcripts_option = click.option(
    "--transcripts",
    "transcripts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Transcripts database file (default: transcripts.db in the data directory, see "
    "CHATBOT_HOME).",
)


def transcripts_db(transcripts_path: Path | None) -> Path:
    """The transcripts file a command works on."""
    return transcripts_path if transcripts_path is not None else default_transcripts_db()


def _open(transcripts_path: Path | None) -> TranscriptStore:
    """The store for review: a missing file is an error, never a new empty store."""
    return TranscriptStore(transcripts_db(transcripts_path), create=False)


def _private_output(path: Path | None) -> IO[str]:
    """stdout, or a file readable by its owner only, new or existing (transcripts are
    private)."""
    if path is None:
        return sys.stdout
    try:
        return open_private(path)
    except OSError as e:
        raise ChatbotError(f"{path}: cannot write: {e.strerror}") from None


@click.group()
def transcripts() -> None:
    """Review chat transcripts: list, show, search, export, rm, name, path, backup.

    Every chat is recorded, turn by turn, in one private SQLite file. Turn reviewed
    transcripts into training data with `chatbot ingest --transcripts FILE`.
    """


@transcripts.command("list")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show this many of the newest conversations.")
@transcripts_option
@json_option
def list_(limit, transcripts_path, as_json):
    """List conversations, newest first: id, start time, turns, where (terminal, api or
    web), name.

    \b
    Example:
        chatbot transcripts list -n 5
        chatbot transcripts list --json
    """
    with _open(transcripts_path) as store:
        conversations = store.list_conversations(limit)
    if as_json:
        keys = ("id", "started_at", "last_at", "turns", "origin", "name", "model_path")
        click.echo(json.dumps([{k: c[k] for k in keys} for c in conversations],
                              ensure_ascii=False))
        return
    from chatbot.transcripts.export import local_time

    for c in conversations:
        label = c["name"] or " ".join((c["preview"] or "").split())
        if len(label) > 60:
            label = label[:59] + "…"
        click.echo(f"{c['id']:>5}  {local_time(c['started_at'])}  {c['turns']:>4} turns  "
                   f"{c['origin']:<8}  {label}")
    if not conversations:
        click.echo("no conversations yet", err=True)


@transcripts.command()
@click.argument("conversation_id", type=int)
@click.option("--format", "format_name", type=click.Choice(["text", "markdown", "json"]),
              default=None, help="How to print it: text for the terminal (the default), a "
              "Markdown document, or JSON (as --json).")
@transcripts_option
@json_option
def show(conversation_id, format_name, transcripts_path, as_json):
    """Print one conversation, turn by turn, with reply times and ratings.

    \b
    Example:
        chatbot transcripts show 12
        chatbot transcripts show 12 --format markdown > chat.md
        chatbot transcripts show 12 --json
    """
    from chatbot.transcripts import export

    if as_json and format_name not in (None, "json"):
        raise click.UsageError(f"--json prints JSON; it cannot go with --format {format_name}")
    with _open(transcripts_path) as store:
        conversation = store.conversation(conversation_id)
        turns = store.turns(conversation_id)
    if as_json or format_name == "json":
        click.echo(json.dumps({**conversation, "turns": turns}, ensure_ascii=False))
    elif format_name == "markdown":
        click.echo(export.render_markdown(conversation, turns), nl=False)
    else:
        click.echo(export.render_text(conversation, turns), nl=False)


@transcripts.command()
@click.argument("query")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Show this many of the best matches.")
@transcripts_option
@json_option
def search(query, limit, transcripts_path, as_json):
    """Full-text search over turns (SQLite FTS5 syntax: words, "phrases", OR, NOT, prefix*).

    Prints CONVERSATION:POSITION, who spoke, and the match in [brackets].

    \b
    Example:
        chatbot transcripts search 'weather OR rain'
    """
    with _open(transcripts_path) as store:
        hits = store.search(query, limit)
    if as_json:
        click.echo(json.dumps(hits, ensure_ascii=False))
        return
    for hit in hits:
        click.echo(f"{hit['conversation_id']}:{hit['position']}  {hit['role']}: "
                   f"{' '.join(hit['snippet'].split())}")
    if not hits:
        click.echo("no matches", err=True)


@transcripts.command()
@click.option("--format", "format_name", type=click.Choice(["jsonl", "markdown"]),
              default="jsonl", show_default=True,
              help="JSONL (one conversation a line, everything kept) or a Markdown document.")
@click.option("--conversation", "conversation_id", type=int, default=None,
              help="Only this conversation (default: all, oldest first).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout (mode 0600: an existing file is made "
              "private before it is replaced).")
@transcripts_option
def export(format_name, conversation_id, output, transcripts_path):
    """Write conversations as JSONL (one conversation a line) or as Markdown.

    The JSONL keeps everything (settings, reply times, ratings); `chatbot ingest` reads
    it as a plain corpus too.

    \b
    Example:
        chatbot transcripts export > chats.jsonl
        chatbot transcripts export --format markdown --conversation 12 -o chat.md
    """
    from chatbot.transcripts import export as exporting

    render = exporting.jsonl_record if format_name == "jsonl" else exporting.render_markdown
    with _open(transcripts_path) as store:
        if conversation_id is not None:
            store.conversation(conversation_id)  # no such conversation: fail before writing
        items = exporting.transcripts(store, conversation_id)
        out = _private_output(output)
        try:
            for number, (conversation, turns) in enumerate(items):
                if format_name == "markdown" and number:
                    out.write("\n---\n\n")
                out.write(render(conversation, turns) + ("\n" if format_name == "jsonl" else ""))
        finally:
            if output is not None:
                out.close()


@transcripts.command()
@click.argument("conversation_ids", type=int, nargs=-1, required=True)
@transcripts_option
def rm(conversation_ids, transcripts_path):
    """Delete conversations, with their turns and search entries, for good.

    \b
    Example:
        chatbot transcripts rm 12 13
    """
    with _open(transcripts_path) as store:
        for conversation_id in conversation_ids:
            store.remove(conversation_id)
            click.echo(f"removed conversation {conversation_id}", err=True)


@transcripts.command("name")
@click.argument("conversation_id", type=int)
@click.argument("name")
@transcripts_option
def name_(conversation_id, name, transcripts_path):
    """Give a conversation a name ('' removes it); `list` shows names.

    \b
    Example:
        chatbot transcripts name 12 "the weather chat"
    """
    with _open(transcripts_path) as store:
        store.rename(conversation_id, name)


@transcripts.command()
@transcripts_option
@json_option
def path(transcripts_path, as_json):
    """Print the transcripts file's path (it may not exist yet).

    \b
    Example:
        chatbot transcripts path
        chatbot transcripts path --json
    """
    resolved = str(transcripts_db(transcripts_path).resolve())
    click.echo(json.dumps({"path": resolved}, ensure_ascii=False) if as_json else resolved)


@transcripts.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@transcripts_option
def backup(file, transcripts_path):
    """Copy all transcripts to a new file (SQLite VACUUM INTO), safe while chats write.

    The copy is created with mode 0600; an existing FILE is never overwritten.

    \b
    Example:
        chatbot transcripts backup ~/transcripts-backup.db
    """
    with _open(transcripts_path) as store:
        store.backup(file)
    click.echo(f"backed up {store.path} to {file}", err=True)
