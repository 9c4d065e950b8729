"""Options several commands share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from chatbot.decode.settings import METHODS, RERANKS
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


# How replies are chosen: `chatbot chat` and `chatbot serve`.
_DECODE_OPTIONS = (
    click.option("--decode", "method", type=click.Choice(METHODS), default=None,
                 help="How a reply is chosen (default: what the model recommends, else beam; "
                 "the built-in model's choice is measured in docs/results.md); sample with "
                 "--top-p 0.9 varies most."),
    click.option("--beam-size", type=click.IntRange(min=1), default=None,
                 help="beam: hypotheses kept (default 5)."),
    click.option("--temperature", type=click.FloatRange(0, min_open=True), default=None,
                 help="sample: below 1 safer, above 1 wilder (default 1)."),
    click.option("--top-k", type=click.IntRange(min=0), default=None,
                 help="sample: only the k likeliest tokens (default 0: all)."),
    click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=None,
                 help="sample: only the likeliest tokens holding this mass (default 1)."),
)


def decode_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--decode, --beam-size, --temperature, --top-k, --top-p (None when not given)."""
    for option in reversed(_DECODE_OPTIONS):
        command = option(command)
    return command


# Reranking replies (chatbot/decode/rerank.py): `chatbot chat` and `chatbot eval`.
_RERANK_OPTIONS = (
    click.option("--reverse-model", "reverse_model",
                 type=click.Path(file_okay=False, path_type=Path), default=None,
                 metavar="DIR", help="A reverse model (`chatbot train --reverse`) that "
                 "reranks the replies by MMI: likely given the turn, and pointing back at it "
                 "(turns --rerank mmi on)."),
    click.option("--rerank", type=click.Choice(RERANKS), default=None,
                 help="Rescore the candidates of a wider search: mmi (needs "
                 "--reverse-model) or pmi (needs none), or off (default: mmi with "
                 "--reverse-model, else off)."),
)


def rerank_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--reverse-model, --rerank (None when not given)."""
    for option in reversed(_RERANK_OPTIONS):
        command = option(command)
    return command


def rerank_overrides(rerank: str | None, reverse_model: Path | None) -> dict[str, Any]:
    """The decode settings --rerank and --reverse-model give (mmi with a reverse model);
    a ClickException when mmi is asked for without one."""
    if rerank is None and reverse_model is not None:
        rerank = "mmi"
    if rerank == "mmi" and reverse_model is None:
        raise click.ClickException("--rerank mmi needs --reverse-model DIR (a model trained "
                                   "with `chatbot train --reverse`); --rerank pmi needs none")
    return {} if rerank is None else {"rerank": rerank}
