"""`chatbot train`: fit a model directory on the corpus store.

The options are the library's dataclasses (TrainOptions, ModelConfig) field for field:
their defaults are read from there, and `OPTION_FIELDS` maps each option to its field,
so a resume passes on exactly the options given.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import click

from chatbot.cli import format
from chatbot.cli.format import StatusLine
from chatbot.cli.options import corpus_db, db_option, json_option
from chatbot.corpus.split import SPLIT_BY
from chatbot.model.config import CELLS, FAMILIES, SCORES, ModelConfig
from chatbot.text.tokenizer import KINDS
from chatbot.train.options import OPTIMIZERS, STRATEGIES, TrainOptions

# Option (click's parameter name) -> the TrainOptions or ModelConfig field it sets; the
# others are named as their field.
RENAMED = {"db_path": "db", "arch": "family", "context": "context_sensitive"}
NOT_FIELDS = ("resume", "as_json")


def _default(name: str) -> Any:
    """A field's default, from TrainOptions or else ModelConfig."""
    for cls in (TrainOptions, ModelConfig):
        for f in fields(cls):
            if f.name == name and f.default is not MISSING:
                return f.default
    raise KeyError(name)


def _depth(ctx: click.Context, param: click.Parameter, value: Any) -> int | tuple[int, int]:
    try:
        parts = [int(p) for p in str(value).split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give N or E,D") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise click.BadParameter(f"{value!r}: give N or E,D")


def _option(*names: str, field: str, **kwargs: Any):
    """A click option whose default is the dataclass field's (shown in --help)."""
    return click.option(*names, default=_default(field), show_default=True, **kwargs)


@click.command()
@db_option
@click.option("--model", "model_dir", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Model directory.")
@click.option("--resume", is_flag=True,
              help="Continue the run in --model from its last checkpoint, with its saved "
                   "options (corpus included); see below.")
@_option("--arch", field="family", type=click.Choice(FAMILIES),
         help="simple: the encoder's vector repeated; seq2seq: Sutskever et al.; "
              "attention: bidirectional encoder with attention.")
@_option("--cell", field="cell", type=click.Choice(CELLS), help="Recurrent cell.")
@_option("--depth", field="depth", type=str, callback=_depth, metavar="N|E,D",
         help="Recurrent layers: N for both sides, or E,D (encoder, decoder).")
@_option("--embedding-dim", field="embedding_dim", type=click.IntRange(min=1),
         help="Embedding size.")
@_option("--hidden-dim", field="hidden_dim", type=click.IntRange(min=1),
         help="Recurrent state size.")
@_option("--dropout", field="dropout", type=click.FloatRange(0, 1, max_open=True),
         help="On the recurrent layers' inputs and the decoder's output features "
              "(training only).")
@_option("--peek/--no-peek", field="peek",
         help="seq2seq: feed the encoder's context at every decoder step (Cho et al.).")
@_option("--attention-score", field="attention_score", type=click.Choice(SCORES),
         help="attention: additive (bahdanau) or multiplicative (luong) scores.")
@_option("--tie-embeddings/--no-tie-embeddings", field="tie_embeddings",
         help="Share the embedding matrix with the output projection.")
@_option("--context/--no-context", field="context_sensitive",
         help="Carry the state from exchange to exchange within a conversation.")
@_option("--tokenizer", field="tokenizer", type=click.Choice(KINDS),
         help="How text becomes ids.")
@_option("--vocab-size", field="vocab_size", type=click.IntRange(min=5),
         help="Tokenizer vocabulary, the 4 reserved ids included.")
@_option("--max-len", field="max_len", type=click.IntRange(min=1), metavar="TOKENS",
         help="Tokens per turn; longer turns are cut.")
@_option("--batch-size", field="batch_size", type=click.IntRange(min=1),
         help="Lanes: conversations walked side by side, one exchange per step.")
@_option("--pool", field="pool", type=click.IntRange(min=1),
         help="Conversations in the shuffle pool (memory is bounded by it).")
@_option("--epochs", field="epochs", type=click.IntRange(min=1),
         help="Passes over the training split at most.")
@_option("--max-steps", field="max_steps", type=click.IntRange(min=1),
         help="Stop after this many steps in all (default: no limit).")
@_option("--patience", field="patience", type=click.IntRange(min=1), metavar="EPOCHS",
         help="Stop after this many epochs in a row without a better validation "
              "perplexity.")
@_option("--valid-fraction", field="valid_fraction",
         type=click.FloatRange(0, 1, max_open=True),
         help="Share of the corpus held out for validation.")
@_option("--split-by", field="split_by", type=click.Choice(SPLIT_BY),
         help="What validation keeps whole: a work (film, book) or a conversation.")
@_option("--reply-as", field="reply_as", multiple=True, metavar="NAME",
         help="Learn only NAME's turns as replies (repeatable; a bot that talks like one "
              "person of your chats: `chatbot corpus speakers` lists the names). The state "
              "still runs through everyone's turns.")
@_option("--reverse", field="reverse", is_flag=True,
         help="Learn p(turn | reply): each exchange backwards and on its own (implies "
              "--no-context). The backward model that `chatbot chat --reverse-model` "
              "reranks replies with (MMI).")
@_option("--seed", field="seed", type=int, help="Seeds the data order and the weights.")
@_option("--optimizer", field="optimizer", type=click.Choice(OPTIMIZERS),
         help="rmsprop is the Keras example's choice.")
@_option("--learning-rate", field="learning_rate", type=click.FloatRange(0, min_open=True),
         help="The optimizer's starting rate.")
@_option("--clipnorm", field="clipnorm", type=click.FloatRange(0, min_open=True),
         help="Gradients are clipped to this global norm.")
@_option("--lr-decay", field="lr_decay", type=click.FloatRange(0, 1, min_open=True),
         help="Multiply the learning rate by this after an epoch that does not improve "
              "the validation perplexity; 1 = never.")
@_option("--checkpoint-every", field="checkpoint_every", type=click.IntRange(min=1),
         metavar="STEPS", help="Steps between checkpoints (also at each epoch's end and "
                               "on Ctrl-C).")
@_option("--log-every", field="log_every", type=click.IntRange(min=1), metavar="STEPS",
         help="Steps between TensorBoard/history records, and between progress lines when "
              "stderr is not a terminal.")
@_option("--strategy", field="strategy", type=click.Choice(STRATEGIES),
         help="mirrored: all local GPUs; multiworker: the hosts in TF_CONFIG.")
@click.option("--token-cache", "token_cache", default=None,
              type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The corpus tokenized once (built when missing or stale). Default: "
                   "beside the corpus, CORPUS.tokens/. Workers given a built one need no "
                   "corpus.")
@_option("--mixed-precision/--no-mixed-precision", field="mixed_precision",
         help="Compute in float16 on GPUs (with loss scaling), bfloat16 on CPUs; weights, "
              "loss and the carried state stay float32.")
@json_option
def train(resume: bool, as_json: bool, **params: Any) -> None:
    """Train a conversational model on the corpus store.

    \b
    Example:
        chatbot train --db corpus.db --model models/mine --arch attention --max-steps 2000
        chatbot train --model models/mine --resume
        TF_CONFIG='{...}' chatbot train --model /shared/m --strategy multiworker
        chatbot train --model models/mine-reverse --reverse    # for chat --reverse-model

    Each batch row walks one conversation exchange by exchange, the state carried between
    them; checkpoints are written every --checkpoint-every steps, at each epoch's end and
    on Ctrl-C (which stops between steps and prints the command that resumes).

    --resume continues exactly where the last checkpoint stopped, with the saved run's
    options, the corpus included. Options given with it must match the saved ones,
    except --epochs, --max-steps, --patience, --checkpoint-every, --log-every, --lr-decay
    and --strategy, which the resumed run takes (and keeps for later resumes).

    Progress: a live line on a terminal; elsewhere (a log, CI) a plain line every
    --log-every steps. At the end one line, or with --json the object {"steps",
    "epochs", "train_perplexity", "valid_perplexity", "tokens_per_second",
    "resumed_from_step"}. The train perplexity is over the last epoch, or over the
    last --log-every steps when the run stopped inside an epoch. TensorBoard logs go to
    MODEL/logs and a plot of the curves to MODEL/curves.png.
    """
    from chatbot.native_stderr import tensorflow_quietly
    from chatbot.train.loop import Interrupted, Progress, Trainer

    ctx = click.get_current_context()
    model_dir: Path = params["model_dir"]
    values = {RENAMED.get(name, name): value for name, value in params.items()}
    live = sys.stderr.isatty()
    trainer: Trainer | None = None

    status = StatusLine(live)

    def on_note(line: str) -> None:
        status.close()
        click.echo(line, err=True)

    def on_tokenize(done: int, total: int) -> None:
        status.progress("turns tokenized (the token cache, once)", done, total)
        if done >= total:
            status.close()

    def on_step(p: Progress) -> None:
        if live:
            if not as_json:
                click.echo("\r" + progress_line(p), err=True, nl=False)
        elif trainer is not None and p.step % trainer.options.log_every == 0:
            click.echo(progress_line(p, bar=False).rstrip(), err=True)

    with tensorflow_quietly():  # TensorFlow starts here, and prints as it does
        if resume:
            given = {RENAMED.get(name, name): value for name, value in params.items()
                     if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
                     and name != "model_dir"}
            trainer = Trainer.resume(model_dir, on_step=on_step, on_note=on_note,
                                     on_tokenize=on_tokenize, **given)
        else:
            values["db"] = corpus_db(values["db"])
            if values["reverse"]:
                # p(turn | reply) is what reranking needs: no context, so no state carried.
                if (values["context_sensitive"] and ctx.get_parameter_source("context")
                        == click.core.ParameterSource.COMMANDLINE):
                    raise click.ClickException("--reverse trains a model without context; "
                                               "drop --context")
                values["context_sensitive"] = False
            options = TrainOptions(**{f.name: values[f.name] for f in fields(TrainOptions)})
            config = ModelConfig(**{f.name: values[f.name] for f in fields(ModelConfig)})
            trainer = Trainer(options, config, on_step=on_step, on_note=on_note,
                              on_tokenize=on_tokenize)
    again = f"chatbot train --model {shlex.quote(str(model_dir))} --resume"
    try:
        result = trainer.run()
    except Interrupted as stop:
        if live:
            click.echo("", err=True)
        click.echo(f"Interrupted: saved at step {stop.step}; resume with: {again}", err=True)
        ctx.exit(130)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without saving
        if live:
            click.echo("", err=True)
        click.echo(f"Interrupted at once: the last checkpoint is kept; resume with: {again}",
                   err=True)
        ctx.exit(130)
    if live and not as_json:
        click.echo("", err=True)
    for message in result.messages:
        click.echo(message, err=True)
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(f"{result.steps} steps, {result.epochs} epochs, train perplexity "
                   f"{format.fmt(result.train_perplexity)}, valid perplexity "
                   f"{format.fmt(result.valid_perplexity)}, model in {model_dir}")


def option_fields() -> dict[str, str]:
    """Each `chatbot train` option's parameter name -> the dataclass field it sets."""
    return {p.name: RENAMED.get(p.name, p.name) for p in train.params
            if p.name not in NOT_FIELDS}


def progress_line(p, bar: bool = True) -> str:
    """One status line: where the run is, how the loss goes and how fast."""
    import math

    done = f"{p.step}/{p.total_steps}" if p.total_steps else str(p.step)
    shown = format.bar(p.step, p.total_steps) + " " if bar and p.total_steps else ""
    rate = f"{p.tokens_per_second:,.0f} tokens/s" if p.tokens_per_second else "compiling"
    return (f"{shown}epoch {p.epoch + 1}  step {done}  loss {p.loss:.3f}  "
            f"perplexity {math.exp(min(p.loss, 50)):,.1f}  {rate}   ")

