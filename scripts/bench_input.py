"""Benchmark: what the training input alone delivers, against the way before the cache.

On the built-in chitchat corpus, real target tokens per second of batches drawn from the
tf.data pipeline exactly as `Trainer` takes them (converted to tensors; no model), at
batch 32 and 1024:
  ours:      the token cache (chatbot/train/token_cache.py), memory-mapped, lanes built
             with numpy (chatbot/train/lane_batches.py) - `Trainer._dataset` itself;
  baseline:  the input before the cache: every conversation read from SQLite and
             tokenized again each epoch, lanes filled row by row in Python
             (chatbot.train.data.conversations + shuffled + lanes, same tf.data wrapper).
Each is a whole epoch of the training split. Also in the same run: the cache's one-time
build, and the standard-size model's training speed (bench_train.py's), which the input
must outrun by far (goal: >= 1,000,000 input tokens/s at batch 1024, so an accelerator
training hundreds of times faster than this CPU never waits).

Usage: python scripts/bench_input.py [--json] [--db corpus.db] [--train-steps 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCHES = (32, 1024)


def _bench_train():
    spec = importlib.util.spec_from_file_location(
        "bench_train", Path(__file__).with_name("bench_train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rate(batches) -> dict:
    """Real target tokens/s over every batch of the pipeline, as training iterates it."""
    start = time.perf_counter()
    tokens = steps = 0
    for _, _, target_out, _ in batches:
        tokens += int((target_out.numpy() != 0).sum())
        steps += 1
    seconds = time.perf_counter() - start
    return {"tokens_per_second": tokens / seconds, "tokens": tokens, "steps": steps,
            "seconds": seconds}


def ours(db: Path, batch: int, model_dir: Path) -> dict:
    """`Trainer._dataset("train", 1)`: the very pipeline training steps on (a tiny model,
    which the input does not depend on)."""
    from chatbot.model.config import ModelConfig
    from chatbot.train.loop import Trainer, TrainOptions

    options = TrainOptions(db=db, model_dir=model_dir, vocab_size=8000, batch_size=batch,
                           max_len=40, checkpoint_every=10**9)
    trainer = Trainer(options, ModelConfig(vocab_size=8000, embedding_dim=8, hidden_dim=8))
    try:
        return _rate(trainer._dataset("train", 1))
    finally:
        trainer.close()


def baseline(db: Path, batch: int, tokenizer) -> dict:
    """The input before the cache: the store read and tokenized, lanes in Python."""
    from chatbot.corpus.store import CorpusStore
    from chatbot.train.data import conversations, dataset, lanes, shuffled

    def batches():
        with CorpusStore(db) as store:
            items = conversations(store, tokenizer, "train", 0.05, 40, "work")
            yield from lanes(shuffled(items, 1024, 100_004), batch)

    return _rate(dataset(batches, batch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--db", type=Path, help="corpus database (default: chitchat)")
    parser.add_argument("--train-steps", type=int, default=30,
                        help="standard-size training steps timed")
    args = parser.parse_args()
    bench_train = _bench_train()
    from chatbot.corpus.store import CorpusStore
    from chatbot.text.tokenizer import fit_tokenizer
    from chatbot.train import token_cache

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or bench_train.chitchat_db(Path(tmp))
        with CorpusStore(db) as store:
            tokenizer = fit_tokenizer("word", store, 8000)
            turns = store.stats()["turns"]
        start = time.perf_counter()
        token_cache.ensure(db, tokenizer, Path(tmp) / "cache-once")  # the one-time build
        build = time.perf_counter() - start
        results = {}
        for batch in BATCHES:
            results[batch] = {
                "ours": ours(db, batch, Path(tmp) / f"m{batch}"),
                "baseline": baseline(db, batch, tokenizer),
            }
        train = bench_train.ours(db, args.train_steps, context=True)
    if args.json:
        print(json.dumps({
            "input_tokens_per_second": {str(b): round(r["ours"]["tokens_per_second"])
                                        for b, r in results.items()},
            "baseline_tokens_per_second": {str(b): round(r["baseline"]["tokens_per_second"])
                                           for b, r in results.items()},
            "train_tokens_per_second": round(train["tokens_per_second"]),
            "cache_build_seconds": round(build, 2), "turns": turns}))
        return
    print(f"token cache: {turns:,} turns tokenized once in {build:.1f} s "
          f"({turns / build:,.0f} turns/s, {os.cpu_count()} cores)")
    for batch, r in results.items():
        o, b = r["ours"], r["baseline"]
        print(f"batch {batch:>4}: ours {o['tokens_per_second']:>10,.0f} real target tokens/s "
              f"({o['steps']:,} steps in {o['seconds']:.2f} s), before the cache "
              f"{b['tokens_per_second']:>9,.0f} ({b['seconds']:.2f} s): "
              f"{o['tokens_per_second'] / b['tokens_per_second']:.1f}x")
    rate = train["tokens_per_second"]
    big = results[1024]["ours"]["tokens_per_second"]
    print(f"standard-size training (batch 32): {rate:,.0f} real target tokens/s; the input "
          f"at batch 1024 is {big / rate:,.0f}x that (goal >= 1,000,000 tokens/s: "
          f"{'met' if big >= 1e6 else 'not met'})")


if __name__ == "__main__":
    sys.exit(main())
