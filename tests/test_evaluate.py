"""Evaluation: the Kneser-Ney baseline, the reply metrics, `chatbot eval` and `explain`."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.evaluate.metrics import corpus_bleu, distinct_n, generic_rate, words
from chatbot.evaluate.ngram import KneserNeyTrigram
from chatbot.text.tokenizer import EOS_ID

# Keras warns when a one-token turn gives a softmax over one attention key; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

# --- the n-gram baseline ----------------------------------------------------------------


def markov_replies(count: int, vocab: int, seed: int) -> list[list[int]]:
    """Replies from a fixed sparse Markov chain over ids 4..vocab-1, each ending with eos."""
    table = np.random.default_rng(0).dirichlet(np.full(vocab - 4, 0.2), size=vocab)
    rng = np.random.default_rng(seed)
    replies = []
    for _ in range(count):
        token, reply = 4, []
        for _ in range(rng.integers(1, 9)):
            token = 4 + int(rng.choice(vocab - 4, p=table[token]))
            reply.append(token)
        replies.append([*reply, EOS_ID])
    return replies


def test_kneser_ney_is_a_distribution_and_beats_a_unigram():
    vocab = 40
    train, held_out = markov_replies(1500, vocab, 1), markov_replies(300, vocab, 2)
    model = KneserNeyTrigram.fit(iter(train), vocab)
    for u, v in [(0, 2), (2, 7), (7, 9), (38, 39), (1, 1)]:  # seen, partly seen, unseen
        assert model.distribution(u, v).sum() == pytest.approx(1.0, abs=1e-9)
    assert 0 < model.d3[1] < 1 and 0 < model.d3[3] <= 3  # modified KN's discounts
    # Unseen and out-of-range ids cost something finite (out of range reads as unk).
    assert 0 < model.probs([0], [2], [1])[0] == model.probs([0], [2], [vocab + 5])[0]
    counts = Counter(t for reply in train for t in reply)
    total = sum(counts.values())
    tokens = sum(len(r) for r in held_out)
    unigram = math.exp(-sum(math.log((counts[t] + 1) / (total + vocab))
                            for r in held_out for t in r) / tokens)
    assert model.perplexity(held_out) < 0.8 * unigram


# --- reply metrics ----------------------------------------------------------------------


def test_bleu_on_hand_made_cases():
    same = words("the cat sat on the mat")
    assert corpus_bleu([same], [same]) == pytest.approx(100.0)
    # Clipped matches 5/6, 3/5, 1/4 and none of 3 four-grams (smoothed to 1/(2*3)).
    hyp, ref = words("the cat sat on the mat"), words("the cat is on the mat")
    assert corpus_bleu([hyp], [ref]) == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 / 6) ** 0.25)
    # Every n-gram matches, but the reply is short: brevity penalty exp(1 - 6/4).
    assert corpus_bleu([words("the cat sat on")], [same]) == pytest.approx(
        100 * math.exp(-0.5))
    # Corpus level: counts are summed before the precisions are taken.
    assert corpus_bleu([same, hyp], [same, ref]) == pytest.approx(
        100 * (11 / 12 * 8 / 10 * 5 / 8 * 3 / 6) ** 0.25)
    assert corpus_bleu([["hi"]], [["hi"]]) == 0.0  # no 4-gram at all: BLEU is 0
    assert corpus_bleu([], []) == 0.0


def test_distinct_and_generic_rate():
    assert words("I don't know.") == ["i", "don't", "know", "."]
    replies = [["a", "b", "a"], ["a", "c"]]
    assert distinct_n(replies, 1) == pytest.approx(3 / 5)
    assert distinct_n(replies, 2) == pytest.approx(3 / 3)
    assert distinct_n([["a"]], 2) == 0.0
    texts = ["i don't know"] * 5 + [f"reply {i}" for i in range(15)]
    assert generic_rate(texts) == pytest.approx((5 + 9) / 20)
    assert generic_rate(["ok"] * 3) == 1.0 and generic_rate([]) == 0.0


# --- eval and explain on a tiny trained model -------------------------------------------

VALID_FRACTION = 0.1  # not the default: eval must read it from the model's metadata


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A corpus and an attention model trained for a few steps on it."""
    root = tmp_path_factory.mktemp("eval")
    db, model = root / "c.db", root / "att"
    runner = CliRunner()
    ingested = runner.invoke(cli, ["ingest", "--builtin", "chatterbot:english", "--db",
                                   str(db)])
    assert ingested.exit_code == 0, ingested.output
    result = runner.invoke(cli, [
        "train", "--db", str(db), "--model", str(model), "--arch", "attention",
        "--hidden-dim", "16", "--embedding-dim", "8", "--batch-size", "16", "--max-steps",
        "40", "--checkpoint-every", "100", "--valid-fraction", str(VALID_FRACTION), "--json"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    from chatbot.model import directory

    return db, directory.load(model)


@pytest.fixture(scope="module")
def valid_report(trained):
    from chatbot.evaluate.run import evaluate

    db, loaded = trained
    seen: list[tuple[str, int, int]] = []
    report = evaluate(loaded, db, "valid", max_exchanges=30,
                      progress=lambda *p: seen.append(p))
    return report, seen


def test_eval_reports_every_metric_and_training_s_perplexity(trained, valid_report):
    _, loaded = trained
    report, seen = valid_report
    assert set(report) == {"split", "exchanges", "tokens", "perplexity",
                           "perplexity_no_context", "ngram_perplexity", "unknown_rate",
                           "token_accuracy", "replies", "distinct_1", "distinct_2",
                           "avg_reply_tokens", "generic_rate", "bleu"}
    # The very figure Trainer.evaluate("valid") gave when the model was exported.
    assert report["perplexity"] == pytest.approx(loaded.metadata["valid_perplexity"],
                                                 rel=1e-5)
    vocab = loaded.tokenizer.vocab_size
    for name in ("perplexity", "perplexity_no_context", "ngram_perplexity"):
        assert 1 < report[name] < vocab, name
    assert 0 <= report["token_accuracy"] <= 1 and 0 <= report["unknown_rate"] < 0.5
    assert report["replies"] == 30 and report["exchanges"] > 30 and report["tokens"] > 0
    assert 0 < report["distinct_1"] <= 1 and 0 <= report["distinct_2"] <= 1
    assert 1 <= report["avg_reply_tokens"] <= 40
    assert 10 / 30 <= report["generic_rate"] <= 1 and 0 <= report["bleu"] <= 100
    assert {stage for stage, _, _ in seen} == {"n-gram", "perplexity", "replies"}
    assert seen[-1] == ("replies", 30, 30)


def test_eval_splits_are_the_training_ones_and_disjoint(trained, valid_report):
    from chatbot.corpus.store import CorpusStore
    from chatbot.evaluate.run import evaluate, split_options
    from chatbot.model.exchanges import exchanges
    from chatbot.train.data import in_split

    db, loaded = trained
    valid, _ = valid_report
    assert split_options(loaded.metadata)[0] == VALID_FRACTION
    train = evaluate(loaded, db, "train", max_exchanges=0)
    expected = Counter()
    for key, texts in CorpusStore(db).iter_turn_texts():
        n = len(exchanges(loaded.tokenizer.encode_batch(texts)))
        expected["valid" if in_split(key, "valid", VALID_FRACTION) else "train"] += n
    assert (train["exchanges"], valid["exchanges"]) == (expected["train"], expected["valid"])
    assert train["replies"] == 0 and train["bleu"] is None
    # The baseline was fitted on the training split: it knows it better than valid.
    assert train["ngram_perplexity"] < valid["ngram_perplexity"]


def test_unknown_rate_counts_the_words_outside_the_vocabulary(trained, tmp_path):
    db, loaded = trained
    # Made-up words: every word of a reply is unknown to the model, its end is not.
    (tmp_path / "odd.tsv").write_text("".join(
        f"zqx{i} blorf{i}\tvrum{i} skeet{i}\n" for i in range(40)))
    other = tmp_path / "odd.db"
    assert CliRunner().invoke(cli, ["ingest", str(tmp_path / "odd.tsv"), "--db",
                                    str(other)]).exit_code == 0
    result = CliRunner().invoke(cli, ["eval", "--db", str(other), "--model", str(loaded.path),
                                      "--split", "all", "--max-exchanges", "0"])
    assert result.exit_code == 0, result.output
    assert re.search(r"unknown_rate\s+0\.667\b", result.stdout), result.stdout
    assert "scored on text it has seen" in result.stderr


def test_eval_json_cli(trained, valid_report):
    db, loaded = trained
    result = CliRunner().invoke(cli, ["eval", "--db", str(db), "--model", str(loaded.path),
                                      "--max-exchanges", "30", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.splitlines()[-1])
    report, _ = valid_report
    assert out.pop("split") == "valid"
    numbers = {k: v for k, v in report.items() if k != "split"}
    assert out == pytest.approx(numbers, rel=1e-6)  # greedy replies are deterministic
    missing = CliRunner().invoke(cli, ["eval", "--db", str(db), "--model", str(db.parent)])
    assert missing.exit_code == 1 and "not a complete model directory" in missing.stderr


def test_explain_writes_a_heatmap_of_the_attention(trained, tmp_path):
    from chatbot.evaluate.explain import attention_weights, explain
    from chatbot.text.tokenizer import BOS_ID

    db, loaded = trained
    found = explain(loaded, "what is your name?")
    assert found.weights.shape == (len(found.reply_tokens), len(found.source_tokens))
    assert found.source_tokens == ["what", "is", "your", "name", "?"]
    assert found.reply_tokens[-1] == "</s>"
    np.testing.assert_allclose(found.weights.sum(axis=1), 1.0, rtol=1e-5)
    # The recomputed attention is the model's own: its features give the model's logits.
    source, target_in = [9, 10, 11], [BOS_ID, 12, 13]
    _, features = attention_weights(loaded.model, source, target_in)
    logits = loaded.model({"source": np.array([source], np.int32),
                           "target_in": np.array([target_in], np.int32)})["logits"]
    np.testing.assert_allclose(np.asarray(loaded.model.output_layer(features[None])),
                               np.asarray(logits), atol=1e-5)

    png = tmp_path / "look.png"
    result = CliRunner().invoke(cli, ["explain", "--model", str(loaded.path), "--output",
                                      str(png), "where do you live?"])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {png}" in result.stdout


def test_explain_refuses_a_model_without_attention(trained, tmp_path):
    import shutil

    _, loaded = trained
    plain = tmp_path / "plain"
    shutil.copytree(loaded.path, plain, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    config = json.loads((plain / "config.json").read_text())
    (plain / "config.json").write_text(json.dumps({**config, "family": "seq2seq"}))
    result = CliRunner().invoke(cli, ["explain", "--model", str(plain), "hello"])
    assert result.exit_code == 1
    assert "explain needs an attention model (this one is seq2seq)" in result.stderr
    assert not (tmp_path / "explain.png").exists()


def test_without_a_model_eval_and_explain_say_so(monkeypatch, tmp_path):
    import chatbot.model.builtin as builtin

    monkeypatch.setattr(builtin, "BUILTIN_DIR", tmp_path / "none")
    for args in (["eval", "--db", str(tmp_path / "c.db")], ["explain", "hi"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "no built-in model" in result.stderr, args


def test_cli_and_metrics_import_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, chatbot.cli, chatbot.evaluate.metrics, chatbot.evaluate.ngram; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
