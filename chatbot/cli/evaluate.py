"""`chatbot eval` and `chatbot explain`: how good a model is, and where it looks."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from chatbot.cli.options import corpus_db, db_option, json_option

SPLITS = ("train", "valid", "all")  # chatbot.train.data.SPLITS, without importing numpy

model_option = click.option(
    "--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Model directory (default: the built-in model).")


def _load(model_dir: Path | None) -> Any:
    """The model directory loaded (the built-in one without --model), TensorFlow's
    start-up chatter kept off the terminal."""
    from chatbot.chat.loading import resolve_model_dir
    from chatbot.native_stderr import tensorflow_quietly

    path = resolve_model_dir(model_dir)  # cheap checks first: a wrong path is one line
    with tensorflow_quietly():
        from chatbot.model import directory

        return directory.load(path)


class _Bar:
    """One progress line on stderr, redrawn at most ten times a second."""

    STAGES = {"n-gram": "conversations (n-gram counts)",
              "perplexity": "conversations (perplexity)", "replies": "replies"}

    def __init__(self, show: bool) -> None:
        self.show = show
        self.last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.show or (now - self.last < 0.1 and done < total):
            return
        self.last = now
        filled = min(20, round(20 * done / total)) if total else 20
        click.echo(f"\r[{'#' * filled}{'.' * (20 - filled)}] {done:,}/{total:,} "
                   f"{self.STAGES.get(stage, stage)}   ", err=True, nl=False)

    def close(self) -> None:
        if self.show and self.last:
            click.echo("\r" + " " * 78 + "\r", err=True, nl=False)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


@click.command("eval")
@db_option
@model_option
@click.option("--split", type=click.Choice(SPLITS), default="valid", show_default=True,
              help="Conversations to measure on (the model's own train/valid split).")
@click.option("--max-exchanges", type=click.IntRange(min=0), default=200, show_default=True,
              metavar="N", help="Exchanges replied to for the reply metrics.")
@json_option
def eval_command(db_path, model_dir, split, max_exchanges, as_json):
    """Measure a model on the corpus: perplexity, a baseline, and its replies.

    \b
    Example:
        chatbot eval --db corpus.db --model models/mine
        chatbot eval --db corpus.db --model models/mine --split train --max-exchanges 500
        chatbot eval --db corpus.db --model models/mine --json | tail -1 | jq .perplexity

    perplexity is per real target token with the conversation state carried as in
    training; perplexity_no_context resets it at every exchange (the gap is what
    context is worth); ngram_perplexity is a Kneser-Ney trigram fitted on the training
    split with the model's tokenizer, on the same tokens; unknown_rate is the share of
    them outside the model's vocabulary. token_accuracy counts argmax hits. Over greedy
    replies to the split's first N exchanges: distinct_1/2 (distinct n-grams over all),
    avg_reply_tokens, generic_rate (share of replies among the 10 most frequent) and
    corpus BLEU-4 (0-100) against the real replies. The split uses
    the model's saved --valid-fraction, so valid holds no training conversation.
    """
    from chatbot.evaluate.run import evaluate

    loaded = _load(model_dir)
    bar = _Bar(sys.stderr.isatty())
    try:
        result = evaluate(loaded, corpus_db(db_path), split, max_exchanges, progress=bar)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{loaded.path} on the {split} split: {_fmt(result['exchanges'])} exchanges, "
               f"{_fmt(result['tokens'])} target tokens")
    rows = [("perplexity", 2), ("perplexity_no_context", 2), ("ngram_perplexity", 2),
            ("unknown_rate", 3), ("token_accuracy", 3), ("replies", 0), ("distinct_1", 3),
            ("distinct_2", 3), ("avg_reply_tokens", 1), ("generic_rate", 3), ("bleu", 2)]
    for name, digits in rows:
        click.echo(f"  {name:<22} {_fmt(result[name], digits):>10}")
    if split != "valid":
        click.echo(f"note: the n-gram was fitted on the train split, so on {split} it is "
                   "scored on text it has seen", err=True)


@click.command()
@model_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("explain.png"), show_default=True, help="The PNG to write.")
@click.argument("text")
def explain(model_dir, output, text):
    """Draw where an attention model looks while it replies to TEXT.

    \b
    Example:
        chatbot explain --model models/att "where do you live?"
        chatbot explain --model models/att --output look.png "do you like music?"

    The model replies greedily, as to the first turn of a conversation; the PNG is a
    heatmap of the attention weights, your words across and the reply's words down
    (the last row is the end of the reply). Models without attention cannot be
    explained this way.
    """
    from chatbot.chat.loading import resolve_model_dir
    from chatbot.evaluate.explain import check_family, write_explanation

    check_family(resolve_model_dir(model_dir))  # before TensorFlow loads
    path, found = write_explanation(_load(model_dir), text, output)
    click.echo(f"reply: {found.reply}")
    click.echo(f"wrote {path}")
