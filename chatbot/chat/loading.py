"""Loading the chat's model without noise and without delay.

The cheap checks (`chatbot.model.directory.resolve`: the directory, its weights and
config) run before anything is shown, so a wrong --model is one line at once; the
expensive part (importing TensorFlow, loading the Keras file, tracing the compiled
search) can then run on a worker thread while the prompt is already up. TensorFlow's
start-up chatter is left out meanwhile, and anything else written to stderr, by either
thread, shows at once (chatbot.native_stderr).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.decode.settings import DecodeSettings
from chatbot.model.directory import MODEL_FILE, weights_file
from chatbot.native_stderr import quiet_native_stderr

if TYPE_CHECKING:
    from chatbot.decode.responder import Responder

_DIGESTS: dict[tuple[str, int, int], str] = {}


def model_digest(model_dir: Path) -> str:
    """sha256 of the model's weights file, "sha256:HEX"; computed once per file version
    (hashing runs at about 1 GB/s: 40 ms for a 37 MB model.keras)."""
    path = weights_file(model_dir) or Path(model_dir) / MODEL_FILE
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        _DIGESTS[key] = "sha256:" + digest.hexdigest()
    return _DIGESTS[key]


def load_responder(model_dir: Path, settings: DecodeSettings,
                   reverse_model: Path | None = None) -> Responder:
    """The model loaded for decoding (with the reverse model that reranks, if given), its
    search traced for `settings` (see warm_up)."""
    # Python-level TensorFlow logging: warnings and errors only (a user's setting wins).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with quiet_native_stderr():
        from chatbot.decode.responder import Responder

        responder = Responder(model_dir, settings, reverse_model=reverse_model)
        warm_up(responder, settings)
    return responder


def load_in_background(executor: Executor, model_dir: Path, settings: DecodeSettings,
                       reverse_model: Path | None = None) -> Future[Responder]:
    """`load_responder` on the executor's worker (the one that later makes the replies)."""
    return executor.submit(load_responder, model_dir, settings, reverse_model)


def warm_up(responder: Responder, settings: DecodeSettings) -> None:
    """Trace the compiled search for `settings` and the teacher-forced exchange once, so
    the first reply costs what later ones do."""
    from chatbot.text.tokenizer import BOS_ID, UNK_ID

    with quiet_native_stderr():
        source = responder.encode("hello") or [UNK_ID]
        responder.reply_ids([source], [None], settings)
        responder.observe_ids([source], [[BOS_ID, *source]], [None])
