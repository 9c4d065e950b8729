"""Tiny untrained model directories for the tests, made once per test session.

`tiny_model_dir(...)` builds a word-tokenizer model on a few texts and saves it; a second
call with the same settings (from any test file) gets the same directory back, so the
chat, decoding and built-in-model tests do not each build and save their own. Seconds,
not minutes of training on two busy cores. Treat the directories as read-only: copy one
before changing it.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

_ROOT: Path | None = None
_CACHE: dict[str, Path] = {}


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="chatbot-tiny-models-"))
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


def tiny_model_dir(texts: list[str], *, seed: int = 1, eos_boost: float = 0.0,
                   vocab_size: int = 50, metadata: dict[str, Any] | None = None,
                   **config: Any) -> Path:
    """A saved model directory: a word tokenizer fitted on `texts` (at most `vocab_size`
    ids), a ConversationModel with `config` on top of small sizes (embedding 8, hidden
    16), seeded with `seed`; `eos_boost` raises the end token's output bias (short
    replies). Cached by all of these."""
    key = json.dumps([texts, seed, eos_boost, vocab_size, metadata, config], sort_keys=True)
    if key in _CACHE and _CACHE[key].is_dir():
        return _CACHE[key]
    import keras

    from chatbot.model import directory
    from chatbot.model.config import ModelConfig
    from chatbot.model.network import ConversationModel
    from chatbot.text.tokenizer import EOS_ID, fit_tokenizer

    keras.utils.set_random_seed(seed)
    tokenizer = fit_tokenizer("word", texts, vocab_size)
    model = ConversationModel(ModelConfig(**{"embedding_dim": 8, "hidden_dim": 16, **config,
                                             "vocab_size": tokenizer.vocab_size}))
    if eos_boost:
        bias = np.asarray(model.output_layer.bias).copy()
        bias[EOS_ID] += eos_boost
        model.output_layer.bias.assign(bias)
    path = _root() / f"model-{len(_CACHE)}"
    _CACHE[key] = directory.save(path, model, tokenizer, metadata or {})
    return _CACHE[key]
