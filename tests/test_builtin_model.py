"""The built-in default model: shipped small inside the package, loaded without --model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from chatbot.model import directory
from chatbot.model.builtin import builtin_model_dir
from tests.tiny_model import tiny_model_dir

MB = 1_000_000


@pytest.mark.parametrize("tied", [False, True])
def test_compact_form_round_trips(tmp_path, tied):
    """float16 weights load into the same model, and replies barely move."""
    from chatbot.decode.responder import Responder

    texts = ["hello there", "how are you", "i am fine thanks", "what do you do",
             "i read books", "nice to meet you"]
    full_dir = tiny_model_dir(texts, vocab_size=100, family="attention", cell="gru",
                              tie_embeddings=tied, metadata={"steps": 1})
    directory.save_compact(full_dir, tmp_path / "small")
    assert not (tmp_path / "small" / directory.MODEL_FILE).exists()
    assert directory.weights_file(tmp_path / "small").name == directory.COMPACT_FILE
    full, small = directory.load(full_dir), directory.load(tmp_path / "small")
    assert small.config == full.config and small.metadata == full.metadata
    for a, b in zip(full.model.weights, small.model.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-3)
    reply_full = Responder(full).reply("hello there")
    reply_small = Responder(small).reply("hello there")
    assert reply_full[0] == reply_small[0]
    (tmp_path / "small" / directory.COMPACT_FILE).write_bytes(b"not an npz")
    with pytest.raises(Exception, match="cannot read the weights"):
        directory.load(tmp_path / "small")


@pytest.fixture
def shipped():
    found = builtin_model_dir()
    if found is None:
        pytest.skip("no built-in model packaged (scripts/train_default.py writes it)")
    return found


def test_builtin_model_is_small_and_complete(shipped):
    size = sum(p.stat().st_size for p in shipped.iterdir())
    assert size <= 10 * MB
    loaded = directory.load(shipped)
    assert loaded.metadata["steps"] > 0 and loaded.config.vocab_size == loaded.tokenizer.vocab_size


def test_chat_without_model_uses_the_builtin(shipped, tmp_path):
    out = subprocess.run([sys.executable, "-m", "chatbot", "chat", "--transcripts",
                          str(tmp_path / "t.db")], input="hi, how are you?\n",
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].strip()
