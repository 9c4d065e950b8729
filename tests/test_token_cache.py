"""The token cache: the corpus tokenized once, lanes built from it with numpy, and a
stale, corrupt or unwritable cache never trusted."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.corpus.store import CorpusStore, token_caches
from chatbot.errors import ChatbotError
from chatbot.text.tokenizer import fit_tokenizer
from chatbot.train import token_cache
from chatbot.train.data import conversations, lanes
from chatbot.train.lane_batches import epoch_order, lane_batches
from tests.test_reply_as import chats


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("tc") / "c.db"
    result = CliRunner().invoke(cli, ["ingest", "--builtin", "chatterbot:english", "--db",
                                      str(db)])
    assert result.exit_code == 0
    return db


@pytest.fixture(scope="module")
def tokenizer(corpus_db):
    with CorpusStore(corpus_db) as store:
        return fit_tokenizer("word", store, 500)


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in ("source", "target_in", "reset"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)
        # With reply_as, a step's targets may all be shorter than its fed replies: the
        # cache pads them to the fed width (zeros), as the model reads them.
        width = y.target_out.shape[1]
        np.testing.assert_array_equal(x.target_out[:, :width], y.target_out)
        assert not x.target_out[:, width:].any() and x.target_out.shape == x.target_in.shape


@pytest.mark.parametrize("max_len", [40, 4])  # 4: turns cut on both sides
def test_cached_exchanges_and_lanes_equal_the_store_tokenized_each_time(
        corpus_db, tokenizer, tmp_path, max_len):
    cache = token_cache.ensure(corpus_db, tokenizer, tmp_path / "cache")
    for split in ("train", "valid", "all"):
        with CorpusStore(corpus_db) as store:
            expected = list(conversations(store, tokenizer, split, 0.2, max_len, "work"))
        assert list(cache.exchanges(split, 0.2, max_len, "work")) == expected
        order = epoch_order(cache, split, 0.2, "work")
        for batch in (1, 5, 64):
            built = list(lane_batches(cache, order, batch, max_len))
            _same_batches(built, list(lanes(iter(expected), batch)))
            # A resume inside an epoch skips the done batches: the rest is the same.
            _same_batches(list(lane_batches(cache, order, batch, max_len, skip=3)), built[3:])


def test_shuffled_epochs_shards_and_the_split_by_conversation(corpus_db, tokenizer, tmp_path):
    cache = token_cache.ensure(corpus_db, tokenizer, tmp_path / "cache")
    every = epoch_order(cache, "train", 0.2, "conversation")
    with CorpusStore(corpus_db) as store:
        assert len(every) == len(list(conversations(store, tokenizer, "train", 0.2, 40,
                                                    "conversation")))
    one, again, other = (epoch_order(cache, "train", 0.2, "conversation", seed=s)
                         for s in (1, 1, 2))
    np.testing.assert_array_equal(one, again)  # seeded: a resume sees the same order
    assert sorted(one) == sorted(every) and list(one) != list(other)
    # Two hosts: disjoint contiguous shards that cover the split between them.
    halves = [epoch_order(cache, "train", 0.2, "conversation", seed=1, shard=(k, 2))
              for k in range(2)]
    assert max(halves[0]) < min(halves[1])
    assert sorted(np.concatenate(halves)) == sorted(every)
    # An ended shard goes on with idle batches (every row reset, no token).
    endless = lane_batches(cache, halves[0][:2], 4, 40, endless=True)
    tail = [next(endless) for _ in range(60)][-3:]
    assert all(b.reset.all() and b.tokens == 0 for b in tail)


def test_reply_as_targets_match_the_store_path(tmp_path):
    db = tmp_path / "chats.db"
    with CorpusStore(db) as store:
        store.add_source("/chats/group.txt", "a" * 64, "jsonl", "utf-8", chats(), 2)
        tokenizer = fit_tokenizer("word", store, 60)
        expected = list(conversations(store, tokenizer, "all", 0.05, 40, "conversation",
                                      ("Ana",)))
    cache = token_cache.ensure(db, tokenizer)
    assert list(cache.exchanges("all", 0.05, 40, "conversation", ("Ana",))) == expected
    targets = cache.target_turns(("Ana",))
    order = epoch_order(cache, "all", 0.05, "conversation", targets=targets)
    _same_batches(list(lane_batches(cache, order, 3, 40, targets)),
                  list(lanes(iter(expected), 3)))
    # Chats are private: so is their cache.
    assert stat.S_IMODE(os.stat(token_caches(db)).st_mode) == 0o700
    assert all(stat.S_IMODE(os.stat(f).st_mode) == 0o600 for f in cache.path.iterdir())


def test_large_batches_cost_no_more_python_per_step(corpus_db, tokenizer, tmp_path):
    """A step's work is array operations: 1,024 lanes build in about the time of 32
    (a loose bound: per-row Python would cost 32x)."""
    import time

    cache = token_cache.ensure(corpus_db, tokenizer, tmp_path / "cache")
    order = np.resize(epoch_order(cache, "all", 0.2, "work"), 20_000)
    seconds = {}
    for batch in (32, 1024):
        made = lane_batches(cache, order, batch, 40)
        next(made)
        start = time.perf_counter()
        for _ in range(20):
            next(made)
        seconds[batch] = time.perf_counter() - start
    assert seconds[1024] < 8 * seconds[32], seconds


def test_parallel_tokenizing_writes_the_same_cache(corpus_db, tokenizer, tmp_path,
                                                    monkeypatch):
    serial = token_cache.ensure(corpus_db, tokenizer, tmp_path / "serial")
    monkeypatch.setattr(token_cache, "PARALLEL_FROM", 1)
    monkeypatch.setattr(token_cache, "CHUNK", 300)  # several chunks per worker
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    parallel = token_cache.ensure(corpus_db, tokenizer, tmp_path / "parallel")
    for name in token_cache.ARRAYS:
        file = f"{name}.bin"
        assert parallel.manifest["files"][file] == serial.manifest["files"][file], name


def test_a_changed_corpus_gets_a_new_cache_and_the_old_goes(corpus_db, tokenizer, tmp_path):
    import shutil

    db = tmp_path / "c.db"
    shutil.copyfile(corpus_db, db)
    first = token_cache.ensure(db, tokenizer)
    assert first.path.parent == token_caches(db)
    assert token_cache.ensure(db, tokenizer).path == first.path  # found, not built again
    with CorpusStore(db) as store:
        store.add_source("/more.txt", "b" * 64, "jsonl", "utf-8", chats(), 2)
    second = token_cache.ensure(db, tokenizer)
    assert second.path != first.path and not first.path.exists()
    assert second.conversation_count == first.conversation_count + len(chats())
    # `chatbot corpus rm` takes the caches with it: they hold the removed turns' ids.
    result = CliRunner().invoke(cli, ["corpus", "rm", "/more.txt", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert not token_caches(db).exists()


def _damage(path, file, how):
    data = bytearray((path / file).read_bytes())
    if how == "truncate":
        data = data[:len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    (path / file).write_bytes(bytes(data))


@pytest.mark.parametrize(("file", "how", "why"), [
    ("tokens.bin", "truncate", "truncated"),
    ("tokens.bin", "flip", "does not match its digest at block 0"),
    ("turns.bin", "flip", "does not match its digest"),
    ("manifest.json", "truncate", "manifest.json cannot be read"),
])
def test_a_damaged_cache_is_rebuilt_with_one_line_saying_why(
        corpus_db, tokenizer, tmp_path, file, how, why):
    path = tmp_path / "cache"
    good = token_cache.ensure(corpus_db, tokenizer, path)
    digest = good.manifest["files"]["tokens.bin"]["blake2b"]
    _damage(path, file, how)
    with pytest.raises(token_cache.StaleCache, match=why):
        token_cache.open_cache(path)
    said = []
    again = token_cache.ensure(corpus_db, tokenizer, path, say=said.append)
    assert len(said) == 1 and why in said[0] and str(path) in said[0], said
    assert again.manifest["files"]["tokens.bin"]["blake2b"] == digest
    token_cache.open_cache(path)  # sound again


def test_another_tokenizer_or_corpus_content_is_stale(corpus_db, tokenizer, tmp_path):
    path = tmp_path / "cache"
    token_cache.ensure(corpus_db, tokenizer, path)
    other = fit_tokenizer("char", ["some text"], 40)
    said = []
    rebuilt = token_cache.ensure(corpus_db, other, path, say=said.append)
    assert "built with another tokenizer" in said[0]
    assert rebuilt.tokenizer().vocab_size == other.vocab_size
    with pytest.raises(token_cache.StaleCache, match="the corpus changed"):
        token_cache.open_cache(path, corpus_digest="0" * 64)


def test_a_directory_that_is_not_a_cache_is_never_replaced(corpus_db, tokenizer, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ChatbotError, match="not a token cache .*notes.txt"):
        token_cache.ensure(corpus_db, tokenizer, mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def _env(**extra):
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def test_a_full_disk_while_building_is_one_line_and_leaves_no_partial_cache(
        corpus_db, tmp_path):
    import resource
    import signal

    def limit():
        # Writes past 48 KB fail as on a full disk (EFBIG instead of a signal): the
        # corpus opens (its shared-memory file takes 32 KB), tokens.bin (89 KB) cannot.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))

    cache = tmp_path / "caches" / "c"
    full = subprocess.run(
        [sys.executable, "-m", "chatbot", "train", "--db", str(corpus_db), "--model",
         str(tmp_path / "m"), "--token-cache", str(cache), "--max-steps", "1"],
        capture_output=True, text=True, timeout=300, env=_env(), preexec_fn=limit)
    assert full.returncode == 1, full.stderr[-2000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "cannot write the token cache" in last, last
    assert "no partial cache" in last and "Traceback" not in full.stderr
    assert list((tmp_path / "caches").iterdir()) == []  # no cache, no temporary build


def test_a_worker_with_a_built_cache_needs_no_corpus(corpus_db, tmp_path):
    """Train from a cache alone (as a host of several does), and resume that way; a cache
    that went bad cannot be rebuilt there: one line says so."""
    import shutil

    cache = tmp_path / "shared" / "tokens"
    common = ["--hidden-dim", "16", "--embedding-dim", "8", "--batch-size", "8",
              "--vocab-size", "300", "--json"]
    db = tmp_path / "c.db"
    shutil.copyfile(corpus_db, db)
    built = CliRunner().invoke(cli, ["train", "--db", str(db), "--model", str(tmp_path / "a"),
                                     "--token-cache", str(cache), "--max-steps", "2",
                                     *common])
    assert built.exit_code == 0, built.output
    db.unlink()  # this host has the cache, not the corpus
    alone = CliRunner().invoke(cli, ["train", "--db", str(db), "--model",
                                     str(tmp_path / "b"), "--token-cache", str(cache),
                                     "--max-steps", "2", *common])
    assert alone.exit_code == 0, alone.output
    assert json.loads(alone.stdout.splitlines()[-1])["steps"] == 2
    # The same tokenizer as a run that fitted it on the corpus.
    assert ((tmp_path / "a" / "tokenizer.json").read_bytes()
            == (tmp_path / "b" / "tokenizer.json").read_bytes())
    resumed = CliRunner().invoke(cli, ["train", "--model", str(tmp_path / "b"), "--resume",
                                       "--max-steps", "3", "--json"])
    assert resumed.exit_code == 0, resumed.output
    _damage(cache, "turns.bin", "flip")
    bad = CliRunner().invoke(cli, ["train", "--model", str(tmp_path / "b"), "--resume",
                                   "--max-steps", "4"])
    assert bad.exit_code == 1
    assert "cannot be used" in bad.stderr and "not here to rebuild it" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
