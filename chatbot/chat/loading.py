"""Finding, checking and loading the chat's model, without noise and without delay.

The cheap checks (the directory and its config exist) run before anything is shown, so
a wrong --model is one line at once; the expensive part (importing TensorFlow, loading
the Keras file, tracing the compiled search) can then run on a worker thread while the
prompt is already up.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.decode.settings import DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.model.builtin import NO_BUILTIN_MODEL, builtin_model_dir
from chatbot.model.directory import COMPACT_FILE, CONFIG_FILE, MODEL_FILE, read_config
from chatbot.native_stderr import quiet_native_stderr

if TYPE_CHECKING:
    from chatbot.decode.responder import Responder

_DIGESTS: dict[tuple[str, int, int], str] = {}

# The weights: model.keras, or the float16 file the built-in model ships in instead.
WEIGHT_FILES = (MODEL_FILE, COMPACT_FILE)


def weights_file(model_dir: Path) -> Path | None:
    """The model directory's weights file, or None when it has none."""
    return next((model_dir / name for name in WEIGHT_FILES if (model_dir / name).is_file()),
                None)


def resolve_model_dir(model: Path | None) -> Path:
    """The model directory to chat with (the built-in one without --model), checked
    cheaply: no TensorFlow is imported here."""
    if model is None:
        builtin = builtin_model_dir()
        if builtin is None:
            raise ChatbotError(NO_BUILTIN_MODEL)
        model = builtin
    model = Path(model)
    if not model.is_dir():
        raise ChatbotError(f"{model}: no model directory there (train one with "
                           f"`chatbot train --model {model}`)")
    missing = [name for name in (CONFIG_FILE,) if not (model / name).is_file()]
    if weights_file(model) is None:
        missing.insert(0, MODEL_FILE)
    if missing:
        raise ChatbotError(f"{model}: not a complete model directory ({', '.join(missing)} "
                           "missing)")
    read_config(model)  # a damaged config is reported now, not after the prompt is up
    return model


def model_digest(model_dir: Path) -> str:
    """sha256 of the model's weights file, "sha256:HEX"; computed once per file version
    (hashing runs at about 1 GB/s: 40 ms for a 37 MB model.keras)."""
    path = weights_file(Path(model_dir)) or Path(model_dir) / MODEL_FILE
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        _DIGESTS[key] = "sha256:" + digest.hexdigest()
    return _DIGESTS[key]


def load_responder(model_dir: Path, settings: DecodeSettings) -> tuple[Responder, list[str]]:
    """The model loaded for decoding, and anything worth showing that loading printed."""
    # Python-level TensorFlow logging: warnings and errors only (a user's setting wins).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr() as lines:
        from chatbot.decode.responder import Responder

        responder = Responder(model_dir, settings)
    return responder, lines


def warm_up(responder: Responder, settings: DecodeSettings) -> list[str]:
    """Trace the compiled search for `settings` and the teacher-forced exchange once, so
    the first reply costs what later ones do; returns what tracing printed."""
    from chatbot.text.tokenizer import BOS_ID, UNK_ID

    with quiet_native_stderr() as lines:
        source = responder.encode("hello") or [UNK_ID]
        responder.reply_ids([source], [None], settings)
        responder.observe_ids([source], [[BOS_ID, *source]], [None])
    return lines
