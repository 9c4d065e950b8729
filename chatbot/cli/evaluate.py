"""`chatbot eval` and `chatbot explain`: how good a model is, and where it looks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from chatbot.cli.format import StatusLine, fmt
from chatbot.cli.options import (
    corpus_db,
    db_option,
    decode_options,
    json_option,
    rerank_options,
    rerank_overrides,
)
from chatbot.corpus.split import SPLITS

# What each stage of `evaluate` counts (its progress callback's stage names).
STAGES = {"tokens": "turns tokenized (the token cache, once)",
          "n-gram": "conversations (n-gram counts)",
          "perplexity": "conversations (perplexity)", "replies": "replies"}


def _load(path: Path) -> Any:
    """A checked model directory loaded, TensorFlow's start-up chatter left out."""
    from chatbot.native_stderr import tensorflow_quietly

    with tensorflow_quietly():
        from chatbot.model import directory

        return directory.load(path)


@click.command("eval")
@db_option
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Model directory (default: the built-in model).")
@click.option("--split", type=click.Choice(SPLITS), default="valid", show_default=True,
              help="Conversations to measure on (the model's own train/valid split).")
@click.option("--max-exchanges", type=click.IntRange(min=0), default=200, show_default=True,
              metavar="N", help="Exchanges replied to for the reply metrics.")
@decode_options
@rerank_options
@json_option
def eval_command(db_path, model_dir, split, max_exchanges, method, beam_size, temperature,
                 top_k, top_p, reverse_model, rerank, as_json):
    """Measure a model on the corpus: perplexity, a baseline, and its replies.

    \b
    Example:
        chatbot eval --db corpus.db --model models/mine
        chatbot eval --db corpus.db --model models/mine --split train --max-exchanges 500
        chatbot eval --db corpus.db --model models/mine --json | tail -1 | jq .perplexity
        chatbot eval --db corpus.db --model models/mine --decode beam --beam-size 5
        chatbot eval --db corpus.db --model models/mine --reverse-model models/mine-reverse

    perplexity is per real target token with the conversation state carried as in
    training; perplexity_no_context resets it at every exchange (the gap is what
    context is worth); ngram_perplexity is a Kneser-Ney trigram fitted on the training
    split with the model's tokenizer, on the same tokens; unknown_rate is the share of
    them outside the model's vocabulary. token_accuracy counts argmax hits. Over the
    replies to the split's first N exchanges (greedy with the model's recommended
    constraints, unless the decoding options say otherwise): distinct_1/2 (distinct
    n-grams over all; *_reference: the same over the real replies), avg_reply_tokens,
    generic_rate (share of replies among the 10 most frequent) and corpus BLEU-4 (0-100,
    sacrebleu's) against the real replies; hits_at_1 (the true reply ranked first
    among 10, by likelihood or PMI, with and without the context; with
    --reverse-model also hits_at_1_mmi, and the replies are reranked by MMI). The split uses
    the model's saved --valid-fraction, so valid holds no training conversation; a split
    with no exchanges is an error (exit status 1). On a terminal, a progress line on
    stderr follows each stage.
    """
    from chatbot.decode.rerank import check_reverse
    from chatbot.model.directory import resolve

    path = resolve(model_dir)  # cheap checks first: a wrong path is one line at once
    reranking = rerank_overrides(rerank, reverse_model)
    if reverse_model is not None:
        check_reverse(path, reverse_model)
    db = corpus_db(db_path)
    if not db.is_file():
        raise click.ClickException(f"{db}: no corpus database; run `chatbot ingest` first")
    from chatbot.native_stderr import tensorflow_quietly

    status = StatusLine(sys.stderr.isatty())
    status.update("loading the model…", force=True)
    try:
        # TensorFlow's chatter (at its start, and when a search is traced) kept off the
        # progress line; anything else on stderr shows as it comes.
        with tensorflow_quietly():
            from chatbot.evaluate.run import evaluate
            from chatbot.model import directory

            loaded = directory.load(path)
            given = {"method": method, "beam_size": beam_size, "temperature": temperature,
                     "top_k": top_k, "top_p": top_p}
            given = {**{k: v for k, v in given.items() if v is not None}, **reranking}
            settings = None
            if given:  # the default's constraints, with the decoding given
                from chatbot.decode.settings import for_model

                settings = for_model(loaded.metadata, **{"method": "greedy", **given})
            result = evaluate(loaded, db, split, max_exchanges, settings=settings,
                              reverse_model=reverse_model,
                              progress=lambda stage, done, total: status.progress(
                                  STAGES.get(stage, stage), done, total),
                              say=lambda line: click.echo(line, err=True))
    finally:
        status.close()
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"{loaded.path} on the {split} split: {fmt(result['exchanges'])} exchanges, "
               f"{fmt(result['tokens'])} target tokens")
    rows = [("perplexity", 2), ("perplexity_no_context", 2), ("ngram_perplexity", 2),
            ("unknown_rate", 3), ("token_accuracy", 3), ("replies", 0), ("distinct_1", 3),
            ("distinct_2", 3), ("distinct_1_reference", 3), ("distinct_2_reference", 3),
            ("avg_reply_tokens", 1), ("generic_rate", 3), ("bleu", 2), ("hits_at_1", 3),
            ("hits_at_1_no_context", 3), ("hits_at_1_pmi", 3), ("hits_at_1_pmi_no_context", 3),
            ("hits_at_1_mmi", 3), ("hits_at_1_mmi_no_context", 3)]
    for name, digits in (row for row in rows if row[0] in result):
        click.echo(f"  {name:<24} {fmt(result[name], digits):>10}")
    if split != "valid":
        click.echo(f"note: the n-gram was fitted on the train split, so on {split} it is "
                   "scored on text it has seen", err=True)


@click.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="An attention model's directory. Needed: the built-in "
              "model has no attention.")
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
    (the last row is the end of the reply). Models without attention (the built-in
    one among them) cannot be explained this way, so --model is needed.
    """
    from chatbot.evaluate.explain import check_family, write_explanation
    from chatbot.model.directory import resolve

    if model_dir is None:
        from chatbot.model.builtin import builtin_model_dir
        from chatbot.model.directory import read_config

        builtin = builtin_model_dir()
        if builtin is None or read_config(builtin).family != "attention":
            raise click.ClickException(
                "explain needs an attention model and the built-in one has none: give "
                "--model DIR (train one with `chatbot train --arch attention --model DIR`)")
    path = resolve(model_dir)
    check_family(path)  # before TensorFlow loads
    path, found = write_explanation(_load(path), text, output)
    click.echo(f"reply: {found.reply}")
    click.echo(f"wrote {path}")
