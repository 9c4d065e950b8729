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


def bleu_as_it_was(hypotheses, references, max_n=4):
    """The project's own corpus BLEU before it used sacrebleu (its "exp" smoothing
    written out), kept to show sacrebleu gives the same figures."""
    matches, totals, hyp_len, ref_len = [0] * max_n, [0] * max_n, 0, 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        hyp_len, ref_len = hyp_len + len(hyp), ref_len + len(ref)
        for n in range(1, max_n + 1):
            grams = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            ref_grams = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            matches[n - 1] += sum(min(c, ref_grams[g]) for g, c in grams.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(totals) == 0:
        return 0.0
    log_precision, smooth = 0.0, 1.0
    for match, total in zip(matches, totals, strict=True):
        if match == 0:
            smooth *= 2.0
            log_precision += math.log(1.0 / (smooth * total))
        else:
            log_precision += math.log(match / total)
    brevity = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    return 100.0 * brevity * math.exp(log_precision / max_n)


def test_bleu_is_sacrebleu_s_and_agrees_with_the_figures_before_it():
    rng = np.random.default_rng(5)
    vocabulary = ["i", "you", "do", "not", "know", "what", "is", "it", "?", ".", "yes", "no"]

    def reply():
        return list(rng.choice(vocabulary, size=int(rng.integers(0, 9))))

    for size in (1, 3, 30, 200):
        hypotheses = [reply() for _ in range(size)]
        references = [reply() for _ in range(size)]
        before = bleu_as_it_was(hypotheses, references)
        matched = any(set(h) & set(r) for h, r in zip(hypotheses, references, strict=True))
        # The one difference: with no word matched at all, sacrebleu says 0 where the
        # smoothing alone gave a tiny figure (at most 100/2 of the unigram's 1/total).
        expected = before if matched else 0.0
        assert corpus_bleu(hypotheses, references) == pytest.approx(expected, abs=1e-9)
    assert bleu_as_it_was([["a", "b", "c", "d"]], [["e", "f", "g", "h"]]) > 0
    assert corpus_bleu([["a", "b", "c", "d"]], [["e", "f", "g", "h"]]) == 0.0
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        corpus_bleu([["a"], ["b"]], [["a"]])


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
                           "distinct_1_reference", "distinct_2_reference",
                           "avg_reply_tokens", "generic_rate", "bleu", "hits_at_1",
                           "hits_at_1_no_context", "hits_at_1_pmi", "hits_at_1_pmi_no_context"}
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
    # People's replies to the same turns, measured the same way.
    assert 0 < report["distinct_2_reference"] <= 1 and 0 < report["distinct_1_reference"] <= 1
    for name in ("hits_at_1", "hits_at_1_no_context", "hits_at_1_pmi",
                 "hits_at_1_pmi_no_context"):
        assert 0 <= report[name] <= 1, name
    assert {stage for stage, _, _ in seen} == {"n-gram", "perplexity", "replies"}
    assert seen[-1] == ("replies", 30, 30)


def test_eval_shows_progress_from_the_start(trained, monkeypatch, tmp_path):
    """Each stage is reported before its first slow step: tokenizing the corpus into its
    token cache (on first use) before the store is read at all (a corpus of millions of
    turns takes a while to start), and the n-gram stage before its first conversation."""
    import shutil

    from chatbot.corpus.store import CorpusStore
    from chatbot.evaluate.run import evaluate

    db, loaded = trained
    db = shutil.copyfile(db, tmp_path / "fresh.db")  # no token cache beside it yet
    events: list[tuple] = []
    reads = CorpusStore.iter_turn_rows

    def read(self, *args, **kwargs):
        events.append(("read",))
        return reads(self, *args, **kwargs)

    monkeypatch.setattr(CorpusStore, "iter_turn_rows", read)
    with CorpusStore(db) as store:
        total, turns = store.stats()["conversations"], store.stats()["turns"]
    evaluate(loaded, db, "valid", max_exchanges=2, progress=lambda *p: events.append(p))
    assert events[0] == ("tokens", 0, turns) and events[1] == ("read",)
    assert ("tokens", turns, turns) in events
    stage, done, train = events[events.index(("tokens", turns, turns)) + 1]
    assert (stage, done) == ("n-gram", 0) and 0 < train < total  # the train split's
    stages = [e[0] for e in events if e[0] != "read"]
    for stage in ("tokens", "n-gram", "perplexity", "replies"):
        first = next(e for e in events if e[0] == stage)
        assert first[1] == 0, (stage, first)  # shown as begun before any work is done
    assert stages.index("perplexity") > stages.index("n-gram")


def test_eval_on_a_split_with_no_exchanges_is_one_line_and_exit_1(trained, tmp_path):
    _, loaded = trained
    # One conversation: with the model's valid fraction it falls on one side only.
    (tmp_path / "one.tsv").write_text("hello there\thi , how are you ?\n")
    one = tmp_path / "one.db"
    assert CliRunner().invoke(cli, ["ingest", str(one.parent / "one.tsv"), "--db",
                                    str(one)]).exit_code == 0
    results = {split: CliRunner().invoke(cli, ["eval", "--db", str(one), "--model",
                                               str(loaded.path), "--split", split,
                                               "--max-exchanges", "0"])
               for split in ("train", "valid")}
    assert sorted(r.exit_code for r in results.values()) == [0, 1]
    empty = next(r for r in results.values() if r.exit_code == 1)
    assert empty.stdout == "" and len(empty.stderr.strip().splitlines()) == 1
    assert "split has no exchanges to measure" in empty.stderr


def test_status_line_and_figures_for_people():
    from chatbot.cli.format import StatusLine, bar, fmt

    assert (fmt(None), fmt(1234.5678), fmt(0.1234, 3), fmt(12000)) == (
        "-", "1,234.57", "0.123", "12,000")
    assert bar(0, 10) == "[" + "." * 20 + "]" and bar(5, 10) == "[" + "#" * 10 + "." * 10 + "]"
    assert bar(3, None) == bar(0, 0) == "[" + "." * 20 + "]"
    runner = CliRunner()
    with runner.isolation() as (_, err, _):
        line = StatusLine(True, interval=3600)
        line.progress("replies", 0, 4)  # a stage's start always shows
        line.progress("replies", 1, 4)  # within the interval: skipped
        line.progress("replies", 4, 4)  # its end always shows
        line.close()
        shown = err.getvalue().decode()
    assert "0/4 replies" in shown and "1/4" not in shown and "4/4 replies" in shown
    assert shown.endswith("\r")
    with runner.isolation() as (_, err, _):
        StatusLine(False).progress("replies", 0, 4)  # not a terminal: nothing
        assert err.getvalue() == b""


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


def test_eval_decodes_as_told(trained, valid_report):
    """The decoding options of `chatbot chat` choose how eval's replies are made: the
    reply metrics are those of beam replies, the rest does not depend on them."""
    from chatbot.decode.settings import for_model
    from chatbot.evaluate.run import evaluate

    db, loaded = trained
    result = CliRunner().invoke(cli, ["eval", "--db", str(db), "--model", str(loaded.path),
                                      "--max-exchanges", "30", "--decode", "beam",
                                      "--beam-size", "3", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.splitlines()[-1])
    beam = evaluate(loaded, db, "valid", max_exchanges=30,
                    settings=for_model(loaded.metadata, method="beam", beam_size=3))
    assert out.pop("split") == beam.pop("split") == "valid"
    assert out == pytest.approx(beam, rel=1e-6)  # beam replies are deterministic too
    report, _ = valid_report  # greedy
    for name in ("perplexity", "hits_at_1", "hits_at_1_pmi", "distinct_2_reference"):
        assert out[name] == pytest.approx(report[name], rel=1e-6), name
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
    result = CliRunner().invoke(cli, ["eval", "--db", str(tmp_path / "c.db")])
    assert result.exit_code == 1 and "no built-in model" in result.stderr
    result = CliRunner().invoke(cli, ["explain", "hi"])
    assert result.exit_code == 1 and "give --model DIR" in result.stderr


def test_explain_without_a_model_says_at_once_that_it_needs_one(monkeypatch):
    """The built-in model has no attention: explain without --model cannot work, says so
    in one line before loading anything, and its help does not offer the built-in one."""
    import chatbot.model.directory as directory

    def no_loading(*args, **kwargs):
        raise AssertionError("nothing should be loaded")

    monkeypatch.setattr(directory, "load", no_loading)
    result = CliRunner().invoke(cli, ["explain", "where do you live?"])
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert "explain needs an attention model" in result.stderr
    assert "give --model DIR" in result.stderr
    help_text = CliRunner().invoke(cli, ["explain", "--help"]).output
    assert "default: the built-in model" not in help_text
    assert "built-in" in help_text and "--model" in help_text


def test_cli_and_metrics_import_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, chatbot.cli, chatbot.evaluate.metrics, chatbot.evaluate.ngram; "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
