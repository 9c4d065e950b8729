"""Export a model directory as a TensorFlow SavedModel that runs without this package.

    OUT/saved_model.pb, variables/, ...   the SavedModel: signatures `encode` and `step`
    OUT/tokenizer.json (+ tokenizer.model) the model's tokenizer files, copied
    OUT/signatures.json                   ids, state layout, lengths, the signatures

`encode` reads the user's turn from the conversation state; `step` is one decoder step.
A runtime (TF Serving, tf.saved_model.load in any TensorFlow program) loops over `step`
itself, so it can search as it likes: greedy, beam or sampling. Both signatures run the
model's own layers through `chatbot.decode.step`, the functions the compiled search runs,
so a greedy loop over them gives the project's greedy reply token for token.

The state is one stacked tensor, (N, K, H): batch first like every other input, so TF
Serving's row ("instances") format and its request batching take it, and one name fits
every model. Its K slots are the model's state list in order: for each decoder layer
[h, c] (LSTM) or [h] (GRU); signatures.json names them. See docs/export.md.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.model.config import ModelConfig

SIGNATURES_FILE = "signatures.json"
FILE_FORMAT = "chatbot-savedmodel"
FILE_VERSION = 1


def state_layout(cell: str, decoder_depth: int) -> list[str]:
    """The name of each slot of the stacked state: "decoder_0/h", "decoder_0/c", ..."""
    parts = ("h", "c") if cell == "lstm" else ("h",)
    return [f"decoder_{i}/{p}" for i in range(decoder_depth) for p in parts]


Spec = tuple[str, tuple[int | None, ...]]  # dtype, shape (None: dynamic)


def signatures(config: ModelConfig) -> dict[str, dict[str, dict[str, Spec]]]:
    """The two signatures' named inputs and outputs, for a model's config: what the
    SavedModel declares and signatures.json describes (one table for both)."""
    _, decoder_depth = config.depths
    k, h = decoder_depth * config.state_size, config.hidden_dim
    width = 2 * h if config.family == "attention" else h  # the bidirectional encoder's
    state: Spec = ("float32", (None, k, h))
    # What the decoder reads of the turn at every step; zero-length S but for attention.
    memory: dict[str, Spec] = {
        "context": ("float32", (None, h)),
        "encoder_outputs": ("float32", (None, None, width)),
        "attention_keys": ("float32", (None, None, h)),
        "source_mask": ("bool", (None, None)),
    }
    return {
        "encode": {"inputs": {"source": ("int32", (None, None)), "state": state},
                   "outputs": {"state": state, **memory}},
        "step": {"inputs": {"token": ("int32", (None,)), "state": state, **memory},
                 "outputs": {"logits": ("float32", (None, config.vocab_size)),
                             "state": state}},
    }


def describe(config: ModelConfig, metadata: dict[str, Any],
             tokenizer_files: list[str]) -> dict[str, Any]:
    """The contents of signatures.json for a model: what a runtime needs to drive the
    SavedModel without this package (the ids, the state layout, the signatures)."""
    from chatbot.decode.settings import for_model
    from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID

    _, decoder_depth = config.depths
    layout = state_layout(config.cell, decoder_depth)
    # Responder keeps the last max_len ids of a turn, as training cut them; the training
    # options are saved as strings, and read here as Responder reads them.
    options = metadata.get("options")
    try:
        max_source: int | None = int(options.get("max_len") if isinstance(options, dict)
                                     else None)
    except (TypeError, ValueError):
        max_source = None
    return {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "signatures": {
            name: {side: {key: {"dtype": dtype, "shape": list(shape)}
                          for key, (dtype, shape) in specs.items()}
                   for side, specs in signature.items()}
            for name, signature in signatures(config).items()},
        "ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        "vocab_size": config.vocab_size,
        "state": {"shape": [None, len(layout), config.hidden_dim], "layout": layout,
                  "cell": config.cell, "decoder_layers": decoder_depth,
                  "hidden": config.hidden_dim},
        "max_source_len": max_source,  # keep the last ids of a longer turn (null: all)
        "context_sensitive": config.context_sensitive,
        "decoding": for_model(metadata).to_dict(),  # what the model recommends
        "tokenizer": {"files": tokenizer_files},
        "model": config.to_dict(),
    }


def export_savedmodel(model_dir: Path | str, out_dir: Path | str) -> Path:
    """Write the model in `model_dir` as a SavedModel in `out_dir` (which must not exist,
    or be empty), with its tokenizer files and signatures.json beside it; returns
    `out_dir`. A bad model directory or an occupied `out_dir` is a one-line ChatbotError."""
    from chatbot.model import directory

    out = Path(out_dir)
    check_out_dir(out)
    loaded = directory.load(model_dir)  # checks first, then loads: one-line errors
    tokenizer_files = sorted(p.name for p in loaded.path.iterdir()
                             if p.name.startswith("tokenizer.") and p.is_file())
    # Before the slow part: a bad "decoding" in metadata.json fails at once.
    info = describe(loaded.config, loaded.metadata, tokenizer_files)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside OUT and renamed into place: a crash leaves no half-written export.
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _write_savedmodel(loaded.model, tmp)
        for name in tokenizer_files:
            shutil.copyfile(loaded.path / name, tmp / name)
        write_atomic(tmp / SIGNATURES_FILE, (json.dumps(info, indent=2) + "\n").encode())
        check_out_dir(out)  # still free after the slow part
        if out.is_dir():
            out.rmdir()  # empty (checked); rename cannot replace a directory everywhere
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def check_out_dir(out: Path) -> None:
    """A one-line ChatbotError unless `out` is free for an export: absent, or an empty
    directory. Cheap (no TensorFlow): the CLI runs it before loading the model."""
    if out.is_dir():
        if any(out.iterdir()):
            raise ChatbotError(f"{out}: already exists and is not empty; choose a new "
                               "directory or remove it")
    elif out.exists():
        raise ChatbotError(f"{out}: exists and is not a directory")


def _write_savedmodel(model: Any, path: Path) -> None:
    """The SavedModel with the two signatures (dynamic batch and lengths)."""
    import tensorflow as tf
    from keras.export import ExportArchive

    from chatbot.decode import step

    c = model.config_
    k = c.depths[1] * c.state_size

    def unstack(state: Any) -> list:
        return tf.unstack(state, k, axis=1)  # (N, K, H) -> K x (N, H), the model's list

    # Argument names are the signatures' input names (the table's order), dict keys the
    # output names.
    def encode(source, state):
        states = unstack(state)
        if not c.context_sensitive:  # such a model starts every exchange afresh (search)
            states = [tf.zeros_like(s) for s in states]
        memory, initial = step.start(model, source, states)
        return {"state": tf.stack(initial, axis=1), "context": memory.context,
                "encoder_outputs": memory.outputs, "attention_keys": memory.keys,
                "source_mask": memory.mask}

    def decoder_step(token, state, context, encoder_outputs, attention_keys, source_mask):
        memory = step.Memory(context, encoder_outputs, attention_keys, source_mask)
        logits, states = step.step(model, token, unstack(state), memory)
        return {"logits": logits, "state": tf.stack(states, axis=1)}

    archive = ExportArchive()
    archive.track(model)
    table = signatures(c)
    # The first endpoint is also TF Serving's "serving_default".
    for name, fn in (("encode", encode), ("step", decoder_step)):
        specs = [tf.TensorSpec(shape, dtype, name=key)
                 for key, (dtype, shape) in table[name]["inputs"].items()]
        archive.add_endpoint(name, fn, input_signature=specs)
    archive.write_out(str(path), verbose=False)
