"""Options several commands share."""

from __future__ import annotations

from pathlib import Path

import click

from chatbot.paths import default_corpus_db

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Corpus database file (default: corpus.db in the data directory, see CHATBOT_HOME).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True,
    help="Print the result as JSON instead of text: one line, the last on stdout.",
)


def corpus_db(db_path: Path | None) -> Path:
    """The database file a command works on."""
    return db_path if db_path is not None else default_corpus_db()
