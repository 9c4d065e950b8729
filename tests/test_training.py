"""Training input (lanes, splits) and the `chatbot train` command on real conversations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.errors import ChatbotError
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
    result, out = train("--db", str(corpus_db), "--model", model, "--max-steps", "10",
                        "--tie-embeddings", "--log-every", "5", *TINY)
    assert result.exit_code == 0, result.output
    # Not a terminal (a log, CI): plain progress lines, one every --log-every steps.
    progress = [line for line in result.stderr.splitlines() if "step " in line]
    assert [line.split("step ")[1].split()[0] for line in progress] == ["5/10", "10/10"]
    assert "\r" not in result.stderr
    assert json.loads((tmp_path / "m" / "config.json").read_text())["tie_embeddings"]
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
    from chatbot.train.history import read_history

    trainer = _trainer(corpus_db, tmp_path / "m", max_steps=60, log_every=10, batch_size=16,
                       hidden_dim=32, embedding_dim=16)
    start = trainer.evaluate("valid")  # the untrained model's
    result = trainer.run()
    assert result.steps == 60
    assert result.valid_perplexity < start / 2, (start, result.valid_perplexity)
    first_window = read_history(tmp_path / "m")["train"][0][1]  # steps 1-10
    assert result.train_perplexity < first_window / 2, (first_window, result.train_perplexity)


def _trainer(db, model_dir, resume=False, hidden_dim=16, embedding_dim=8, **changes):
    from chatbot.model.config import ModelConfig
    from chatbot.train.loop import Trainer, TrainOptions

    options = TrainOptions(db=db, model_dir=model_dir, **{
        "batch_size": 8, "checkpoint_every": 4, "valid_fraction": 0.1, **changes})
    config = ModelConfig(family="seq2seq", cell="lstm", vocab_size=8000,
                         embedding_dim=embedding_dim, hidden_dim=hidden_dim)
    if resume:
        from chatbot.model.directory import read_config

        config = read_config(model_dir)
    return Trainer(options, config, resume=resume)


@pytest.fixture(scope="module")
def straight_digest(corpus_db, tmp_path_factory):
    """The weights of a run of 14 steps that nobody stopped."""
    trainer = _trainer(corpus_db, tmp_path_factory.mktemp("straight") / "m", max_steps=14)
    trainer.run()
    return trainer.weights_digest()


def test_resume_inside_an_epoch_continues_exactly(corpus_db, tmp_path, straight_digest):
    first = _trainer(corpus_db, tmp_path / "b", max_steps=9)
    first.run()
    assert first.position.numpy() == 9 and first.epoch.numpy() == 0  # stopped mid-epoch
    resumed = _trainer(corpus_db, tmp_path / "b", resume=True, max_steps=14)
    assert resumed.resumed_from == 9
    resumed.run()
    # Same weights as the run that never stopped: optimizer, data position and the
    # lanes' conversation state all came back.
    assert resumed.weights_digest() == straight_digest


def _interrupt_after_update(trainer, step):
    """A real SIGINT right after the weight update of `step`, before its bookkeeping: the
    moment a Ctrl-C used to split (new weights saved with the old counters)."""
    import signal

    train_step = trainer._train_step

    def hooked(*args):
        out = train_step(*args)
        if int(trainer.step.numpy()) == step - 1:  # updated; the counters not yet
            signal.raise_signal(signal.SIGINT)
        return out

    trainer._train_step = hooked


def _open_files(under):
    """The files under `under` this process holds open."""
    from tests.cli_util import open_paths

    under = str(under.resolve())
    return [target for target in open_paths() if target.startswith(under)]


def test_ctrl_c_right_after_an_update_resumes_exactly(corpus_db, tmp_path, straight_digest):
    trainer = _trainer(corpus_db, tmp_path / "m", max_steps=14)
    _interrupt_after_update(trainer, 6)
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    # The step and its bookkeeping are one: the checkpoint holds step 6 whole.
    resumed = _trainer(corpus_db, tmp_path / "m", resume=True, max_steps=14)
    assert resumed.resumed_from == 6
    assert _open_files(tmp_path / "m") == []  # the logs were closed on the way out
    resumed.run()
    assert resumed.weights_digest() == straight_digest


def test_an_epoch_without_progress_lowers_the_learning_rate_and_resume_keeps_it(
        corpus_db, tmp_path):
    trainer = _trainer(corpus_db, tmp_path / "m", max_steps=4, lr_decay=0.25)
    trainer.run()
    rate = float(trainer.optimizer.learning_rate.numpy())
    assert rate == pytest.approx(1e-3)
    trainer.best.assign(0.0)  # no validation perplexity can beat it: a stale epoch
    trainer._end_epoch()
    assert trainer.stale.numpy() == 1
    assert float(trainer.optimizer.learning_rate.numpy()) == pytest.approx(rate * 0.25)
    resumed = _trainer(corpus_db, tmp_path / "m", resume=True, max_steps=8)
    assert float(resumed.optimizer.learning_rate.numpy()) == pytest.approx(rate * 0.25)
    with pytest.raises(ChatbotError, match="--lr-decay 0"):
        _trainer(corpus_db, tmp_path / "n", lr_decay=0.0)


def test_a_step_with_fewer_tokens_than_usual_weighs_less(corpus_db, tmp_path):
    """The end of an epoch, one lane still running: its step must not count as a full one
    (the optimizer's first moment shows how much the step's gradient weighed)."""
    trainer = _trainer(corpus_db, tmp_path / "m", max_steps=6)
    trainer.run()
    source, target_in, target_out, reset = (
        np.array(x) for x in next(iter(trainer._dataset("train", 0, 6))))
    for rows in (source, target_in, target_out):
        rows[1:] = 0  # every lane idle but the first
    tokens = np.count_nonzero(target_out)
    assert tokens > 0
    # Both steps from where the run stopped: its weights and optimizer state put back.
    held = [*trainer.model.weights, *trainer.optimizer.variables]
    stopped = [np.array(v) for v in held]
    momenta = trainer.optimizer._momentums
    beta = trainer.optimizer.beta_1
    contribution = {}
    for name, usual in (("averaged", True), ("full weight", False)):
        for variable, value in zip(held, stopped, strict=True):
            variable.assign(value)
        # What the usual count would be with full steps of eight lanes; 0 = none yet.
        trainer.usual_tokens.assign(100.0 * tokens if usual else 0.0)
        before = [np.array(m) for m in momenta]
        trainer._train_step(source, target_in, target_out, reset, trainer._carried_state(),
                            trainer.usual_tokens)
        contribution[name] = np.sqrt(sum(
            float(np.sum((np.array(m) - beta * b) ** 2)) for m, b in zip(momenta, before,
                                                                        strict=True)))
    assert contribution["averaged"] < 0.05 * contribution["full weight"]


def test_logs_curves_and_the_reported_train_perplexity(corpus_db, tmp_path):
    trainer = _trainer(corpus_db, tmp_path / "m", max_steps=8, log_every=2)
    result = trainer.run()
    from chatbot.train.history import read_history

    series = read_history(tmp_path / "m")
    assert [step for step, _ in series["train"]] == [2, 4, 6, 8]
    assert series["valid"][-1][0] == 8
    assert (tmp_path / "m" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((tmp_path / "m" / "logs" / "train").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    # Stopped inside an epoch: the figure is the last logged window's, not the run's mean.
    assert result.train_perplexity == pytest.approx(series["train"][-1][1], rel=1e-5)
    # Nothing left open: the summary writers, the stores of the epoch and validation, the
    # token cache's memory maps. (Trainers of earlier tests in this process hold theirs
    # until the garbage collector breaks their reference cycles: collected first.)
    import gc

    gc.collect()
    assert _open_files(tmp_path / "m") == []
    assert _open_files(corpus_db.parent) == []


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory):
    """Two ChatterBot files: an epoch of a few steps."""
    from chatbot.corpus.ingest import builtin_inputs

    files, _ = builtin_inputs("chatterbot:english")
    db = tmp_path_factory.mktemp("tiny") / "t.db"
    chosen = [str(f) for f in files if f.name in ("greetings.yml", "emotion.yml")]
    result = CliRunner().invoke(cli, ["ingest", *chosen, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db


def test_train_perplexity_after_whole_epochs_is_the_last_epochs(tiny_db, tmp_path):
    import math

    trainer = _trainer(tiny_db, tmp_path / "m", epochs=2, log_every=1)
    result = trainer.run()
    assert result.epochs == 2
    # Every step's loss is in the history (log_every=1); the last epoch's real tokens
    # come from the same seeded pipeline.
    records = [json.loads(line) for line in
               (tmp_path / "m" / "history.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    tokens = [int(np.count_nonzero(b[2])) for b in trainer._dataset("train", 1)]
    assert len(losses) == result.steps and len(tokens) < len(losses)
    last = losses[-len(tokens):]
    expected = math.exp(sum(x * n for x, n in zip(last, tokens, strict=True)) / sum(tokens))
    assert result.train_perplexity == pytest.approx(expected, rel=1e-5)


def test_a_worker_that_fails_to_start_leaves_no_scratch_directory(corpus_db, tmp_path,
                                                                   monkeypatch):
    import tempfile

    from chatbot.train import distribute, loop

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(distribute, "is_chief", lambda strategy: False)

    def broken(self, training):
        raise RuntimeError("cannot compile")

    monkeypatch.setattr(loop.Trainer, "_compile", broken)
    with pytest.raises(RuntimeError, match="cannot compile"):
        _trainer(corpus_db, tmp_path / "m")
    assert list(scratch.iterdir()) == []


def _interrupting_cli(monkeypatch, step):
    """`chatbot train` runs whose training step `step` gets a real SIGINT right after its
    weight update."""
    import signal

    from chatbot.train import loop

    compile_step = loop.Trainer._compile

    def hooked_compile(self, training):
        run = compile_step(self, training)
        if not training:
            return run

        def hooked(*args):
            out = run(*args)
            if int(self.step.numpy()) == step - 1:
                signal.raise_signal(signal.SIGINT)
            return out

        return hooked

    monkeypatch.setattr(loop.Trainer, "_compile", hooked_compile)


def test_ctrl_c_names_the_saved_step_and_a_resume_command_that_needs_no_db(
        corpus_db, tmp_path, monkeypatch):
    import shlex
    import shutil

    model = tmp_path / "m"
    _interrupting_cli(monkeypatch, 2)
    stopped, _ = train("--db", str(corpus_db), "--model", str(model), "--max-steps", "3",
                       "--hidden-dim", "16", "--embedding-dim", "8", "--batch-size", "8")
    assert stopped.exit_code == 130
    line = stopped.stderr.strip().splitlines()[-1]
    assert "step 2" in line and f"chatbot train --model {model} --resume" in line, line
    # The command as printed, with no --db (the default corpus here is another, empty
    # one): it goes on with the saved run's corpus and options.
    command = shlex.split(line[line.index("chatbot train"):])[2:]  # after "chatbot train"
    resumed, out = train(*command, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert out["resumed_from_step"] == 2 and out["steps"] == 3
    # Another corpus is refused, in one line.
    other = tmp_path / "other.db"
    shutil.copyfile(corpus_db, other)
    refused, _ = train("--model", str(model), "--resume", "--db", str(other),
                       "--max-steps", "4")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert str(corpus_db) in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_rmsprop_and_bad_batch_for_replicas(corpus_db, tmp_path, monkeypatch):
    import keras

    result, out = train("--db", str(corpus_db), "--model", str(tmp_path / "m"), "--max-steps",
                        "3", "--optimizer", "rmsprop", *TINY)
    assert result.exit_code == 0 and out["steps"] == 3
    saved = json.loads((tmp_path / "m" / "training.json").read_text())
    assert saved["optimizer"] == "rmsprop"
    assert isinstance(_trainer(corpus_db, tmp_path / "r", optimizer="rmsprop").optimizer,
                      keras.optimizers.RMSprop)
    # Two replicas (as CHATBOT_CPU_REPLICAS=2 would give): 7 rows do not split.
    from types import SimpleNamespace

    from chatbot.train import distribute

    monkeypatch.setattr(distribute, "make_strategy",
                        lambda name: SimpleNamespace(num_replicas_in_sync=2))
    odd, _ = train("--db", str(corpus_db), "--model", str(tmp_path / "odd"), "--batch-size",
                   "7")
    assert odd.exit_code == 1 and "--batch-size 7: must be a multiple of the 2 replicas" in (
        odd.stderr)
    assert not (tmp_path / "odd").exists()


def _env(**extra):
    import os

    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def _chatbot(*args, **kwargs):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "chatbot", *args], capture_output=True,
                          text=True, timeout=300, **kwargs)


def _weights(model_dir):
    from chatbot.model import directory

    return [w.numpy() for w in directory.load(model_dir).model.weights]


def test_mirrored_strategy_on_two_cpu_replicas_matches_one_device(corpus_db, tmp_path):
    common = ["--db", str(corpus_db), "--max-steps", "6", *TINY]
    # As a user runs it (no TF_CPP_MIN_LOG_LEVEL): TensorFlow's start-up notices stay off.
    plain = {k: v for k, v in _env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    one = _chatbot("train", "--model", str(tmp_path / "one"), *common, env=plain)
    assert "oneDNN" not in one.stderr and "absl" not in one.stderr, one.stderr[-2000:]
    two = _chatbot("train", "--model", str(tmp_path / "two"), "--strategy", "mirrored",
                   *common, env=_env(CHATBOT_CPU_REPLICAS="2"))
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    # The same global batch split over two replicas gives the same update.
    for a, b in zip(_weights(tmp_path / "one"), _weights(tmp_path / "two"), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    odd = _chatbot("train", "--model", str(tmp_path / "odd"), "--strategy", "mirrored",
                   "--db", str(corpus_db), "--batch-size", "7", env=_env(CHATBOT_CPU_REPLICAS="2"))
    assert odd.returncode == 1 and "multiple of the 2 replicas" in odd.stderr
    assert "Traceback" not in odd.stderr


def _free_ports(n):
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_on_localhost_finish_and_agree(corpus_db, tmp_path):
    """Two hosts, each reading only its shard of a token cache built beforehand: the
    second host has no corpus at all. They step together to the end and agree."""
    import re
    import shutil
    import subprocess
    import sys

    from chatbot.corpus.store import CorpusStore
    from chatbot.text.tokenizer import fit_tokenizer
    from chatbot.train import token_cache

    cache = tmp_path / "shared-tokens"
    with CorpusStore(corpus_db) as store:  # the tokenizer `train` fits: the same one
        tokenizer = fit_tokenizer("word", store, 8000)
    built = token_cache.ensure(corpus_db, tokenizer, cache)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    model = tmp_path / "m"
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": {"worker": workers},
                             "task": {"type": "worker", "index": index}})
        db = corpus_db if index == 0 else tmp_path / "absent.db"  # host b: no corpus
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "chatbot", "train", "--db", str(db), "--model",
             str(model), "--strategy", "multiworker", "--max-steps", "6",
             "--token-cache", str(cache), *TINY],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(TF_CONFIG=config)))
    outputs = [p.communicate(timeout=300) for p in processes]
    for p, (_, err) in zip(processes, outputs, strict=True):
        assert p.returncode == 0, err[-2000:]
    digests = [re.search(r"(chief|worker) done at step 6; weights digest (\w+)", err).groups()
               for _, err in outputs]
    assert [role for role, _ in digests] == ["chief", "worker"]
    assert digests[0][1] == digests[1][1]
    assert json.loads(outputs[1][0].splitlines()[-1])["steps"] == 6
    # Each read its own half of the conversations, the two halves the whole cache.
    shards = [re.search(r"worker (\d) of 2 reads conversations (\d+)-(\d+) of", err).groups()
              for _, err in outputs]
    assert [int(k) for k, _, _ in shards] == [1, 2]
    (_, a0, a1), (_, b0, b1) = shards
    assert int(a0) == 0 and int(b0) == int(a1) + 1 and int(b1) == built.conversation_count - 1
    shutil.rmtree(cache)
    # Only the chief wrote the model directory, and it is complete.
    assert _weights(model)
    bad = _chatbot("train", "--db", str(corpus_db), "--model", str(tmp_path / "x"),
                   "--strategy", "multiworker", env=_env(TF_CONFIG="{oops"))
    assert bad.returncode == 1 and "TF_CONFIG: expected" in bad.stderr


def test_kill_9_while_training_leaves_a_loadable_directory(corpus_db, tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    from chatbot.model import directory

    model = tmp_path / "m"
    args = ["--db", str(corpus_db), "--model", str(model), "--hidden-dim", "16",
            "--embedding-dim", "8", "--batch-size", "8", "--checkpoint-every", "2"]
    process = subprocess.Popen([sys.executable, "-m", "chatbot", "train", *args,
                                "--max-steps", "100000"], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if len(list((model / "checkpoints").glob("ckpt-*.index"))) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere inside the next steps or checkpoint writes
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    loaded = directory.load(model)
    assert loaded.config.hidden_dim == 16
    # Two steps past the newest checkpoint (the kill may have cut it: then the resume
    # starts from the one before, further back still), not a whole epoch.
    newest = max(int(re.fullmatch(r"ckpt-(\d+)\.index", p.name)[1])
                 for p in (model / "checkpoints").glob("ckpt-*.index"))
    resumed = _chatbot("train", *args, "--resume", "--max-steps", str(newest + 2), "--json",
                       env=_env())
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = json.loads(resumed.stdout.splitlines()[-1])
    assert out["resumed_from_step"] >= 2 and out["steps"] > out["resumed_from_step"]


def test_a_full_disk_is_one_clear_line(corpus_db, tmp_path):
    import resource
    import signal

    def limit():
        # Writes past 64 KB fail as on a full disk (EFBIG instead of a signal).
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    # The corpus' token cache built first, as an earlier run would have (a full disk
    # while building it is tests/test_token_cache.py's): this is about checkpoints.
    from chatbot.corpus.store import CorpusStore
    from chatbot.text.tokenizer import fit_tokenizer
    from chatbot.train import token_cache

    with CorpusStore(corpus_db) as store:
        token_cache.ensure(corpus_db, fit_tokenizer("word", store, 8000))
    model = tmp_path / "m"
    full = _chatbot("train", "--db", str(corpus_db), "--model", str(model), "--max-steps",
                    "4", "--checkpoint-every", "2", "--hidden-dim", "64", "--embedding-dim",
                    "32", env=_env(), preexec_fn=limit)
    assert full.returncode == 1, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "cannot write" in last and "Traceback" not in full.stderr
    # What was written before is whole: the directory is still resumable (--resume on a
    # disk with room goes on).
    assert json.loads((model / "config.json").read_text())["hidden_dim"] == 64
    assert not list(model.glob(".*.tmp")) and not list(model.glob("checkpoints/*_temp"))
