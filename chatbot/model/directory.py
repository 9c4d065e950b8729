"""A self-describing model directory: weights, tokenizer, config and training metadata.

    DIR/model.keras      the whole Keras model (custom layers registered as "chatbot>...")
                         or DIR/weights.f16.npz, its float16 weights (`save_compact`)
    DIR/tokenizer.json   the tokenizer (plus tokenizer.model for subword)
    DIR/config.json      the ModelConfig, readable without TensorFlow
    DIR/metadata.json    what it was trained on and how far (corpus, steps, metrics)

Every file is written to a temporary name and renamed into place, so a crash at any
moment leaves the previous complete file, never half of one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.model.config import ModelConfig

MODEL_FILE = "model.keras"
# The shipped form: float16 weights by variable path, about half of model.keras.
COMPACT_FILE = "weights.f16.npz"
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHT_FILES = (MODEL_FILE, COMPACT_FILE)  # either one; model.keras wins when both are there


@dataclass
class ModelDirectory:
    """A loaded model directory."""

    path: Path
    model: Any  # ConversationModel (typed loosely: TensorFlow is imported on load)
    tokenizer: Any
    config: ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def reverse(self) -> bool:
        """Whether it was trained with --reverse: it scores p(turn | reply)."""
        return trained_reverse(self.metadata)


def save(directory: Path | str, model: Any, tokenizer: Any,
         metadata: dict[str, Any] | None = None) -> Path:
    """Write (or overwrite) a complete model directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, directory / MODEL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    write_atomic(directory / CONFIG_FILE, model.config_.to_json().encode())
    write_atomic(directory / METADATA_FILE,
                     json.dumps(metadata or {}, indent=2, sort_keys=True).encode())
    return directory


def read_config(directory: Path | str) -> ModelConfig:
    """The model's configuration, without importing TensorFlow."""
    path = Path(directory) / CONFIG_FILE
    return ModelConfig.from_dict(_read_json(path, "config"))


def read_metadata(directory: Path | str) -> dict[str, Any]:
    """The model's metadata.json ({} where there is none), without importing TensorFlow."""
    path = Path(directory) / METADATA_FILE
    return _read_json(path, "metadata") if path.exists() else {}


def trained_reverse(metadata: dict[str, Any]) -> bool:
    """Whether a model's metadata says it was trained with `--reverse` (its saved
    training options, "options": {"reverse": true}): a model of p(turn | reply)."""
    options = metadata.get("options")
    return isinstance(options, dict) and options.get("reverse") in (True, "True")


def weights_file(directory: Path | str) -> Path | None:
    """The directory's weights: `model.keras`, else the float16 `weights.f16.npz` the
    built-in model ships in; None when it has neither."""
    directory = Path(directory)
    return next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()),
                None)


def check(directory: Path | str) -> Path:
    """The directory if it looks like a complete model directory (weights and config
    present, the config readable); a one-line ChatbotError that says what to do if not.
    Cheap: no TensorFlow is imported."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ChatbotError(f"{directory}: no model directory there (train one with "
                           f"`chatbot train --model {directory}`)")
    missing = [] if weights_file(directory) else [MODEL_FILE]
    if not (directory / CONFIG_FILE).is_file():
        missing.append(CONFIG_FILE)
    if missing:
        raise ChatbotError(
            f"{directory}: not a complete model directory ({', '.join(missing)} missing)")
    read_config(directory)  # a damaged config is reported now, not after a slow load
    return directory


def resolve(model: Path | str | None) -> Path:
    """The model directory a command works on: `model`, or the built-in one when it is
    None; checked as `check` does (what `chat`, `eval` and `explain` run first)."""
    if model is None:
        from chatbot.model.builtin import NO_BUILTIN_MODEL, builtin_model_dir

        model = builtin_model_dir()
        if model is None:
            raise ChatbotError(NO_BUILTIN_MODEL)
    return check(model)


def load(directory: Path | str) -> ModelDirectory:
    """Load a model directory; a missing, partial or corrupt one is one clear error."""
    directory = check(directory)
    config = read_config(directory)
    metadata = read_metadata(directory)
    from chatbot.text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(directory)
    weights = weights_file(directory)
    model = (_load_compact(weights, config) if weights.name == COMPACT_FILE
             else _load_keras(weights))
    if model.config_ != config:
        raise ChatbotError(f"{directory}: {CONFIG_FILE} does not match {MODEL_FILE}")
    if tokenizer.vocab_size > config.vocab_size:
        raise ChatbotError(f"{directory}: the tokenizer has more ids than the model")
    return ModelDirectory(directory, model, tokenizer, config, metadata)


def save_compact(source: Path | str, destination: Path | str) -> Path:
    """Copy a model directory with its weights as float16 (`weights.f16.npz`) instead of
    `model.keras`: the form the built-in model ships in. Replies barely change (checked
    by tests); the size halves."""
    import shutil

    import numpy as np

    source, destination = Path(source), Path(destination)
    loaded = load(source)
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.name.startswith("tokenizer.") or path.name in (CONFIG_FILE, METADATA_FILE):
            shutil.copyfile(path, destination / path.name)
    arrays = {_weight_key(v): np.asarray(v.numpy(), np.float16) for v in loaded.model.weights}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(destination / COMPACT_FILE, buffer.getvalue())
    (destination / MODEL_FILE).unlink(missing_ok=True)
    return destination


def _weight_key(variable: Any) -> str:
    """A weight's path inside the model, without the model's own (numbered) name."""
    return variable.path.split("/", 1)[-1]


def _load_compact(path: Path, config: ModelConfig) -> Any:
    import numpy as np

    from chatbot.model.network import ConversationModel

    try:
        with np.load(path) as arrays:
            stored = {name: arrays[name] for name in arrays.files}
    except (OSError, ValueError) as e:
        raise ChatbotError(f"{path}: cannot read the weights: {e}") from None
    model = ConversationModel(config)
    for variable in model.weights:
        value = stored.get(_weight_key(variable))
        if value is None or tuple(value.shape) != tuple(variable.shape):
            raise ChatbotError(f"{path}: the weights do not fit the config "
                               f"({variable.path})")
        variable.assign(value.astype(np.float32))
    return model


def _load_keras(path: Path) -> Any:
    import keras

    import chatbot.model.network  # noqa: F401  registers the custom classes

    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # Keras raises many types for a damaged archive
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ChatbotError(f"{path}: cannot load the model: {reason[:200]}") from None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChatbotError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ChatbotError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ChatbotError(f"{path}: the {what} must be a JSON object")
    return data
