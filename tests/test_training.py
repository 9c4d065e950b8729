"""Training input (lanes, splits) and the `chatbot train` command on real conversations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.model.exchanges import Exchange
from chatbot.train.data import in_split, lanes


def conv(name: int, n: int) -> list[Exchange]:
    """A conversation of n exchanges whose ids name it (name*10 + k)."""
    return [Exchange([name * 10 + k], [2, name * 10 + k], [name * 10 + k, 3]) for k in range(n)]


def test_lanes_walk_each_conversation_in_order_and_reset_only_new_rows():
    items = [conv(1, 3), conv(2, 1), conv(3, 2), conv(4, 2)]
    batches = list(lanes(iter(items), batch_size=2, pool=1))
    seen: dict[int, list[int]] = {}
    for b in batches:
        for row in range(2):
            token = int(b.source[row, 0])
            if token:
                name, k = divmod(token, 10)
                # A reset exactly where a conversation starts; never inside one.
                assert bool(b.reset[row]) == (k == 0)
                seen.setdefault(name, []).append(k)
    assert seen == {1: [0, 1, 2], 2: [0], 3: [0, 1], 4: [0, 1]}
    assert batches[0].reset.tolist() == [True, True]
    assert sum(b.tokens for b in batches) == 2 * 8  # padding never counts


def test_idle_lanes_are_empty_rows():
    batches = list(lanes(iter([conv(1, 3)]), batch_size=2))
    assert len(batches) == 3
    assert all(not b.source[1].any() and not b.target_out[1].any() for b in batches)


def test_split_is_stable_and_disjoint():
    keys = [f"{i:064x}:{i}" for i in range(2000)]
    valid = {k for k in keys if in_split(k, "valid", 0.1)}
    train = {k for k in keys if in_split(k, "train", 0.1)}
    assert not valid & train and len(valid | train) == 2000
    assert 140 < len(valid) < 260
    assert valid == {k for k in keys if in_split(k, "valid", 0.1)}


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("c") / "c.db"
    result = CliRunner().invoke(cli, ["ingest", "--builtin", "chatterbot:english", "--db",
                                      str(db)])
    assert result.exit_code == 0
    return db


TINY = ["--hidden-dim", "16", "--embedding-dim", "8", "--batch-size", "8",
        "--checkpoint-every", "5", "--json"]


def train(*args):
    result = CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)
    return result, (json.loads(result.stdout.splitlines()[-1]) if result.exit_code == 0
                    else None)


def test_train_resume_and_finished(corpus_db, tmp_path):
    model = str(tmp_path / "m")
    result, out = train("--db", str(corpus_db), "--model", model, "--max-steps", "10", *TINY)
    assert result.exit_code == 0, result.output
    assert set(out) == {"steps", "epochs", "train_perplexity", "valid_perplexity",
                        "tokens_per_second", "resumed_from_step"}
    assert out["steps"] == 10 and out["resumed_from_step"] == 0
    assert out["valid_perplexity"] > 1 and out["tokens_per_second"] > 0
    for name in ["model.keras", "tokenizer.json", "config.json", "metadata.json"]:
        assert (tmp_path / "m" / name).exists()
    _, resumed = train("--db", str(corpus_db), "--model", model, "--resume", "--max-steps",
                       "20", "--json")
    assert resumed["resumed_from_step"] == 10 and resumed["steps"] == 20
    again, finished = train("--db", str(corpus_db), "--model", model, "--resume",
                            "--max-steps", "20", "--json")
    assert finished["steps"] == 20 and "nothing to do" in again.stderr


def test_train_refuses_mismatched_resume_and_empty_corpus(corpus_db, tmp_path):
    model = str(tmp_path / "m")
    train("--db", str(corpus_db), "--model", model, "--max-steps", "2", *TINY)
    bad, _ = train("--db", str(corpus_db), "--model", model, "--resume", "--hidden-dim", "32")
    assert bad.exit_code == 1 and "built with other options than given (hidden_dim)" in bad.stderr
    busy, _ = train("--db", str(corpus_db), "--model", model)
    assert busy.exit_code == 1 and "a model is already there" in busy.stderr
    empty = tmp_path / "empty.srt"
    empty.write_text("1\n00:00:01,000 --> 00:00:02,000\nAlone.\n")
    CliRunner().invoke(cli, ["ingest", str(empty), "--db", str(tmp_path / "e.db")])
    none, _ = train("--db", str(tmp_path / "e.db"), "--model", str(tmp_path / "n"))
    assert none.exit_code == 1 and "no conversation of two turns" in none.stderr
    assert not (tmp_path / "n").exists()


def test_training_lowers_the_loss(corpus_db, tmp_path):
    from chatbot.model import directory

    _, out = train("--db", str(corpus_db), "--model", str(tmp_path / "m"), "--max-steps", "60",
                   "--hidden-dim", "32", "--embedding-dim", "16", "--batch-size", "16",
                   "--json")
    loaded = directory.load(tmp_path / "m")
    assert loaded.metadata["steps"] == 60
    assert out["valid_perplexity"] < loaded.tokenizer.vocab_size / 2
    assert np.isfinite(out["train_perplexity"])
