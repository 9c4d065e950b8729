"""`chatbot train`: fit a model directory on the corpus store."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from chatbot.cli.options import corpus_db, db_option, json_option
from chatbot.model.config import CELLS, FAMILIES, ModelConfig
from chatbot.train.distribute import STRATEGIES
from chatbot.train.loop import OPTIMIZERS


def _depth(value: str) -> int | tuple[int, int]:
    try:
        parts = [int(p) for p in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give N or E,D") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise click.BadParameter(f"{value!r}: give N or E,D")


@click.command()
@db_option
@click.option("--model", "model_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Model directory.")
@click.option("--arch", type=click.Choice(FAMILIES), default="seq2seq", show_default=True)
@click.option("--cell", type=click.Choice(CELLS), default="lstm", show_default=True)
@click.option("--depth", default="1", show_default=True, help="Layers: N, or E,D.")
@click.option("--peek", is_flag=True, help="seq2seq: feed the context at every step.")
@click.option("--tie-embeddings", is_flag=True,
              help="Share the embedding matrix with the output projection.")
@click.option("--context/--no-context", default=True, show_default=True,
              help="Carry the state from exchange to exchange within a conversation.")
@click.option("--tokenizer", type=click.Choice(["word", "char", "subword"]), default="word",
              show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=5), default=8000, show_default=True)
@click.option("--embedding-dim", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--hidden-dim", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--max-steps", type=click.IntRange(min=1), default=None)
@click.option("--valid-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.05,
              show_default=True)
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True,
              metavar="STEPS")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam", show_default=True,
              help="rmsprop is the Keras example's choice.")
@click.option("--learning-rate", type=click.FloatRange(0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True), default=0.5,
              show_default=True,
              help="Multiply the learning rate by this after an epoch that does not "
                   "improve the validation perplexity; 1 = never.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="default",
              show_default=True,
              help="mirrored: all local GPUs; multiworker: the hosts in TF_CONFIG.")
@json_option
def train(db_path, model_dir, arch, cell, depth, peek, tie_embeddings, context, tokenizer,
          vocab_size, embedding_dim, hidden_dim, dropout, batch_size, epochs, max_steps,
          valid_fraction, checkpoint_every, resume, seed, optimizer, learning_rate, lr_decay,
          strategy, as_json):
    """Train a conversational model on the corpus store.

    \b
    Example:
        chatbot train --db corpus.db --model models/mine --arch attention --max-steps 2000
        chatbot train --db corpus.db --model models/mine --resume
        TF_CONFIG='{...}' chatbot train --model /shared/m --strategy multiworker

    Each batch row walks one conversation exchange by exchange, the state carried between
    them; checkpoints are written every --checkpoint-every steps, at each epoch's end and
    on Ctrl-C, and --resume continues exactly where the last one stopped. TensorBoard
    logs go to MODEL/logs and a plot of the curves to MODEL/curves.png.
    """
    from chatbot.train.loop import Progress, Trainer, TrainOptions, saved_options

    config = ModelConfig(family=arch, cell=cell, depth=_depth(depth), peek=peek,
                         tie_embeddings=tie_embeddings,
                         context_sensitive=context, vocab_size=vocab_size,
                         embedding_dim=embedding_dim, hidden_dim=hidden_dim, dropout=dropout)
    ctx = click.get_current_context()
    given = {name for name in ctx.params
             if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE}
    options = TrainOptions(db=corpus_db(db_path), model_dir=model_dir, tokenizer=tokenizer,
                           vocab_size=vocab_size, batch_size=batch_size, epochs=epochs,
                           max_steps=max_steps, valid_fraction=valid_fraction,
                           checkpoint_every=checkpoint_every, seed=seed,
                           optimizer=optimizer, learning_rate=learning_rate,
                           lr_decay=lr_decay, strategy=strategy)
    if resume:
        # The data order depends on these: a resumed run keeps the saved ones unless told.
        saved_run = saved_options(model_dir)
        keep = {k: saved_run[k] for k in ("batch_size", "seed", "valid_fraction", "tokenizer",
                                          "epochs", "max_steps", "checkpoint_every",
                                          "optimizer", "learning_rate", "lr_decay", "split_by")
                if k in saved_run and k not in given}
        if saved_run and "split_by" not in saved_run:
            keep["split_by"] = "conversation"  # a run from before works: split as it began
        options = replace(options, **keep)
    if resume and (model_dir / "config.json").exists():
        # Options not given take the saved run's values; given ones must match them (the
        # vocabulary size is the tokenizer's, fixed when the run started).
        from chatbot.model.directory import read_config

        saved = read_config(model_dir).to_dict()
        wanted = config.to_dict()
        names = {"family": "arch", "context_sensitive": "context"}
        config = ModelConfig.from_dict({
            key: wanted[key] if names.get(key, key) in given and key != "vocab_size" else value
            for key, value in saved.items()
        })
    show = sys.stderr.isatty() and not as_json

    def on_step(p: Progress) -> None:
        if show:
            click.echo("\r" + progress_line(p), err=True, nl=False)

    from chatbot.native_stderr import tensorflow_quietly

    with tensorflow_quietly():  # TensorFlow starts here, and prints as it does
        trainer = Trainer(options, config, resume=resume, on_step=on_step)
    result = trainer.run()
    if show:
        click.echo("", err=True)
    for message in result.messages:
        click.echo(message, err=True)
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(f"{result.steps} steps, {result.epochs} epochs, train perplexity "
                   f"{_fmt(result.train_perplexity)}, valid perplexity "
                   f"{_fmt(result.valid_perplexity)}, model in {model_dir}")


def progress_line(p) -> str:
    """One status line: where the run is, how the loss goes and how fast."""
    import math

    done = f"{p.step}/{p.total_steps}" if p.total_steps else str(p.step)
    bar = ""
    if p.total_steps:
        filled = min(20, round(20 * p.step / p.total_steps))
        bar = "[" + "#" * filled + "." * (20 - filled) + "] "
    rate = f"{p.tokens_per_second:,.0f} tokens/s" if p.tokens_per_second else "compiling"
    return (f"{bar}epoch {p.epoch + 1}  step {done}  loss {p.loss:.3f}  "
            f"perplexity {math.exp(min(p.loss, 50)):,.1f}  {rate}   ")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
