"""`chatbot export`: a model directory in a form other runtimes load (a SavedModel)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from chatbot.cli.options import json_option

FORMATS = ("savedmodel",)


@click.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Model directory (default: the built-in model).")
@click.option("--format", "export_format", type=click.Choice(FORMATS), default="savedmodel",
              show_default=True, help="What to write: a TensorFlow SavedModel with the "
              "signatures encode and step, the tokenizer files beside it.")
@json_option
@click.argument("out", type=click.Path(path_type=Path))
def export(model_dir, export_format, as_json, out):
    """Export a model for TF Serving and other TensorFlow runtimes, to the directory OUT.

    \b
    Example:
        chatbot export --model models/mine serving/chatbot/1
        chatbot export --format savedmodel --json exported

    OUT must not exist or be empty. It receives a SavedModel with two signatures:
    encode (source ids and the conversation state in; the decoder's state and what the
    decoder reads of the turn out) and step (one decoder step: a token, the state and
    encode's outputs in; logits and the new state out), plus the tokenizer files and
    signatures.json (reserved ids, the state's layout, lengths). A runtime loops over
    step itself; docs/export.md shows a greedy loop that gives this project's replies.
    """
    from chatbot.model.directory import resolve
    from chatbot.model.savedmodel import SIGNATURES_FILE, check_out_dir

    # The cheap checks first: a wrong path is one line at once, before TensorFlow loads.
    path = resolve(model_dir)
    check_out_dir(out)
    from chatbot.native_stderr import tensorflow_quietly

    with tensorflow_quietly():
        from chatbot.model.savedmodel import export_savedmodel

        written = export_savedmodel(path, out)
    info = json.loads((written / SIGNATURES_FILE).read_text(encoding="utf-8"))
    if as_json:
        click.echo(json.dumps({"path": str(written), "format": export_format,
                               "model": str(path), "signatures": info["signatures"],
                               "state": info["state"], "ids": info["ids"],
                               "tokenizer": info["tokenizer"]["files"]}))
        return
    click.echo(f"wrote {written} (a SavedModel, from {path})")
    for name, signature in info["signatures"].items():
        inputs = ", ".join(signature["inputs"])
        outputs = ", ".join(signature["outputs"])
        click.echo(f"  {name}({inputs}) -> {outputs}")
    state = info["state"]
    click.echo(f"  state: (N, {len(state['layout'])}, {state['hidden']}) = "
               f"{', '.join(state['layout'])}")
