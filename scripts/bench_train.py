"""Benchmark: training speed at the standard size against the Keras example's way.

Standard size: word vocabulary 8000, embedding 256, hidden 512, one LSTM layer, seq2seq,
batch 32, on real conversations (the chitchat-dataset package, or --db FILE). In one run:
  ours:        `Trainer` (lanes of conversations, state carried; padding neither counted
               nor computed: chatbot/model/fast_lstm.py),
  no-context:  the same with the state reset at every exchange (--no-context),
  baseline:    the Keras lstm_seq2seq example's way: every exchange padded to one length
               (40, our turn cut), plain `model.fit` on those arrays (sparse targets: the
               example's one-hot targets would need 32 x 40 x 8000 floats a batch).
Prints real target tokens per second for each, the ratios (goals: ours / baseline >= 2,
per-token cost of context / no-context <= 1.25) and achieved GFLOP/s (of the work each
does) against a measured float32 matmul peak of this machine.

Each is run --rounds times (default 3) and its fastest run kept, as `timeit` does: on this
2-core machine the baseline's `model.fit` runs in one of two modes (about 1,950 or 1,155
tokens/s for the same work), and the slower one says nothing about either side.

Usage: python scripts/bench_train.py [--steps 40] [--rounds 3] [--db corpus.db]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VOCAB, EMBED, HIDDEN, BATCH, MAX_LEN = 8000, 256, 512, 32, 40


def lstm_flops(positions: int, inputs: int, hidden: int = HIDDEN) -> float:
    """Forward multiply-adds of an LSTM over `positions` steps, as FLOPs."""
    return 2.0 * positions * 4 * hidden * (inputs + hidden)


def step_flops(sources: int, targets: int, projected: int, hidden: int = HIDDEN) -> float:
    """FLOPs of one training step (forward x 3 for the backward pass) that runs the
    encoder over `sources` positions, the decoder over `targets` and projects `projected`
    positions onto the vocabulary: the work actually done, padding included where the
    implementation computes it."""
    forward = (lstm_flops(sources, EMBED, hidden) + lstm_flops(targets, EMBED, hidden)
               + 2.0 * projected * hidden * VOCAB)
    return 3.0 * forward


def matmul_peak() -> float:
    """GFLOP/s of a large float32 matmul on this machine (the practical peak)."""
    import tensorflow as tf

    n = 2048
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.matmul(a, b).numpy()
    start = time.perf_counter()
    reps = 10
    for _ in range(reps):
        c = tf.matmul(a, b)
    c.numpy()
    return 2.0 * n**3 * reps / (time.perf_counter() - start) / 1e9


def ours(db: Path, steps: int, context: bool, hidden: int = HIDDEN, batch: int = BATCH,
         **options: Any) -> dict:
    """Tokens per second and GFLOP/s of our trainer (at the standard size unless `hidden`
    and `batch` say otherwise; `options`: further TrainOptions fields)."""
    from chatbot.model.config import ModelConfig
    from chatbot.train.loop import Trainer, TrainOptions

    with tempfile.TemporaryDirectory() as tmp:
        train_options = TrainOptions(db=db, model_dir=Path(tmp) / "m", vocab_size=VOCAB,
                                     batch_size=batch, max_steps=steps, valid_fraction=0.002,
                                     checkpoint_every=10**9, max_len=MAX_LEN, **options)
        config = ModelConfig(family="seq2seq", cell="lstm", vocab_size=VOCAB,
                             embedding_dim=EMBED, hidden_dim=hidden, context_sensitive=context)
        trainer = Trainer(train_options, config)
        # The shapes the timed steps (all but the first) run on, from the same pipeline.
        flops = tokens = positions = 0.0
        for index, (source, _, target_out, _) in enumerate(trainer._dataset("train", 0)):
            if index >= steps:
                break
            if index:
                # Padded positions are computed nowhere (chatbot/model/fast_lstm.py).
                real = int((target_out.numpy() != 0).sum())
                flops += step_flops(int((source.numpy() != 0).sum()), real, real, hidden)
                tokens += real
                positions += float(target_out.shape[0] * target_out.shape[1])
        result = trainer.run()
    rate = result.tokens_per_second
    seconds = tokens / rate
    return {"tokens_per_second": rate, "gflops": flops / seconds / 1e9,
            "padding_share": 1.0 - tokens / positions}


def exchanges_padded(db: Path, count: int):
    """The first `count` training exchanges, padded to MAX_LEN (the example's arrays)."""
    import numpy as np

    from chatbot.corpus.store import CorpusStore
    from chatbot.text.tokenizer import fit_tokenizer
    from chatbot.train.data import conversations

    store = CorpusStore(db)
    tokenizer = fit_tokenizer("word", store, VOCAB)
    source = np.zeros((count, MAX_LEN), np.int32)
    target_in = np.zeros((count, MAX_LEN), np.int32)
    target_out = np.zeros((count, MAX_LEN), np.int32)
    n = 0
    for conversation in conversations(store, tokenizer, "train", 0.002, MAX_LEN):
        for exchange in conversation:
            if n == count:
                return source, target_in, target_out
            source[n, :len(exchange.source)] = exchange.source
            target_in[n, :len(exchange.target_in)] = exchange.target_in
            target_out[n, :len(exchange.target_out)] = exchange.target_out
            n += 1
    return source[:n], target_in[:n], target_out[:n]


def baseline(db: Path, steps: int, hidden: int = HIDDEN, batch: int = BATCH) -> dict:
    """The Keras example: encoder LSTM states into a decoder LSTM, padded arrays, fit()
    (at the standard size unless `hidden` and `batch` say otherwise)."""
    import keras

    source, target_in, target_out = exchanges_padded(db, (steps + 2) * batch)
    encoder_in = keras.Input((None,), dtype="int32")
    _, h, c = keras.layers.LSTM(hidden, return_state=True)(
        keras.layers.Embedding(VOCAB, EMBED)(encoder_in))
    decoder_in = keras.Input((None,), dtype="int32")
    x = keras.layers.LSTM(hidden, return_sequences=True)(
        keras.layers.Embedding(VOCAB, EMBED)(decoder_in), initial_state=[h, c])
    model = keras.Model([encoder_in, decoder_in],
                        keras.layers.Dense(VOCAB, activation="softmax")(x))
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
    warm = slice(0, 2 * batch)  # the compile, left out as for ours
    model.fit([source[warm], target_in[warm]], target_out[warm], batch_size=batch, verbose=0)
    timed = slice(2 * batch, None)
    start = time.perf_counter()
    model.fit([source[timed], target_in[timed]], target_out[timed], batch_size=batch,
              verbose=0, shuffle=False)
    seconds = time.perf_counter() - start
    real = float((target_out[timed] != 0).sum())
    positions = batch * MAX_LEN  # every padded position is computed
    flops = step_flops(positions, positions, positions, hidden) * (len(source[timed]) / batch)
    return {"tokens_per_second": real / seconds, "gflops": flops / seconds / 1e9,
            "padding_share": 1.0 - real / target_out[timed].size}


def build_token_cache(db: Path) -> tuple[float, int]:
    """Seconds to tokenize the corpus into its token cache (once: the runs then find it
    beside the corpus), and the turns it holds."""
    from chatbot.corpus.store import CorpusStore
    from chatbot.text.tokenizer import fit_tokenizer
    from chatbot.train import token_cache

    with CorpusStore(db) as store:
        tokenizer = fit_tokenizer("word", store, VOCAB)
    start = time.perf_counter()
    cache = token_cache.ensure(db, tokenizer)
    return time.perf_counter() - start, int(cache.manifest["turns"])


def chitchat_db(tmp: Path) -> Path:
    from chatbot.corpus.ingest import ingest_builtin

    return ingest_builtin(tmp / "chitchat.db", "chitchat")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each; the fastest kept")
    parser.add_argument("--db", type=Path, help="corpus database (default: chitchat)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or chitchat_db(Path(tmp))
        cache_seconds, turns = build_token_cache(db)
        peak = matmul_peak()
        runs: dict[str, list[dict]] = {"context": [], "plain": [], "padded": []}
        for _ in range(args.rounds):
            runs["context"].append(ours(db, args.steps, context=True))
            runs["plain"].append(ours(db, args.steps, context=False))
            runs["padded"].append(baseline(db, args.steps))
    for name, results in runs.items():
        rates = ", ".join(f"{r['tokens_per_second']:.0f}" for r in results)
        print(f"{name} runs (real target tokens/s): {rates}")
    context, plain, padded = (max(runs[k], key=lambda r: r["tokens_per_second"])
                              for k in ("context", "plain", "padded"))
    print(f"standard size: vocab {VOCAB}, embedding {EMBED}, hidden {HIDDEN}, 1 LSTM layer, "
          f"batch {BATCH}, {args.steps} steps each (the first left out), fastest of "
          f"{args.rounds}")
    print(f"token cache:           built once in {cache_seconds:.1f} s ({turns:,} turns; "
          "every run after reads it)")
    print(f"matmul peak:           {peak:8.1f} GFLOP/s (float32, 2048^2)")
    for name, r in [("ours (context)", context), ("ours (no context)", plain),
                    ("baseline model.fit", padded)]:
        print(f"{name:22} {r['tokens_per_second']:8.0f} real target tokens/s  "
              f"{r['gflops']:6.1f} GFLOP/s ({r['gflops'] / peak:4.0%} of peak)")
    print(f"padding share of target positions: ours {context['padding_share']:.0%} (computed "
          f"nowhere), baseline {padded['padding_share']:.0%} (computed)")
    speedup = context["tokens_per_second"] / padded["tokens_per_second"]
    overhead = plain["tokens_per_second"] / context["tokens_per_second"]
    print(f"ours / baseline:       {speedup:.2f}x (goal >= 2)")
    print(f"context cost / no-context per token: {overhead:.2f}x (goal <= 1.25)")


if __name__ == "__main__":
    main()
