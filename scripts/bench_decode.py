"""Benchmark: compiled decoding against the Keras example's one predict() per token.

At the standard size (word vocabulary 8000, embedding 256, hidden 512, one LSTM layer;
random weights: speed does not depend on them), in the same run and with the same
weights, times:
  baseline: keras.io's lstm_seq2seq inference loop: encoder_model.predict() once, then
            decoder_model.predict() once per generated token, argmax in Python;
  greedy:   chatbot.decode's compiled greedy search (one call per reply);
  beam 5:   chatbot.decode's compiled beam search, beam size 5.
Every method generates the same number of tokens (min_len = max_len = --tokens, plus the
end token: --tokens + 1 decoder steps), so "ms per token" is the time of a reply divided
by its decoder steps. Prints each, the ratios (goals: baseline/greedy >= 50, beam 5/greedy
<= 4) and the same for XLA (jit_compile=True) versions of the compiled searches.

Usage: python scripts/bench_decode.py [--tokens 30] [--rounds 5] [--repeats 6] [--no-xla]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from chatbot.decode.search import Search  # noqa: E402
from chatbot.decode.settings import DecodeSettings  # noqa: E402
from chatbot.model.config import ModelConfig  # noqa: E402
from chatbot.model.network import ConversationModel  # noqa: E402
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # noqa: E402


def keras_example_models(model: ConversationModel) -> tuple[keras.Model, keras.Model]:
    """The keras.io example's encoder_model and decoder_model, sharing `model`'s layers."""
    hidden = model.config_.hidden_dim
    source = keras.Input((None,), dtype="int32")
    state_in = [keras.Input((hidden,)) for _ in range(2)]
    _, h, c = model.encoder_layers[0](model.embedding(source), initial_state=state_in)
    encoder_model = keras.Model([source, *state_in], [h, c])

    token = keras.Input((None,), dtype="int32")
    decoder_state_in = [keras.Input((hidden,)) for _ in range(2)]
    out, h, c = model.decoder_layers[0](model.embedding(token), initial_state=decoder_state_in)
    decoder_model = keras.Model([token, *decoder_state_in], [model.output_layer(out), h, c])
    return encoder_model, decoder_model


def baseline_reply(encoder_model, decoder_model, source: np.ndarray, steps: int) -> list[int]:
    """The example's decode_sequence: one predict() per token (same bans as ours)."""
    zeros = np.zeros((1, encoder_model.inputs[1].shape[1]), np.float32)
    h, c = encoder_model.predict([source, zeros, zeros], verbose=0)
    target = np.array([[BOS_ID]], np.int32)
    reply = []
    for i in range(steps):
        logits, h, c = decoder_model.predict([target, h, c], verbose=0)
        scores = logits[0, -1].copy()
        scores[[PAD_ID, BOS_ID, UNK_ID]] = -np.inf
        if i < steps - 1:
            scores[EOS_ID] = -np.inf  # as min_len does in ours
        token = int(np.argmax(scores))
        reply.append(token)
        target = np.array([[token]], np.int32)
    return reply[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of one baseline reply and --repeats of each other")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--no-xla", action="store_true", help="skip the jit_compile runs")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    config = ModelConfig()  # the standard size
    model = ConversationModel(config)
    steps = args.tokens + 1  # the reply's tokens and its end token
    rng = np.random.default_rng(0)
    source = rng.integers(4, config.vocab_size, size=(1, 12)).astype(np.int32)
    print(f"model: {config.family} {config.cell}, vocab {config.vocab_size}, embedding "
          f"{config.embedding_dim}, hidden {config.hidden_dim}, depth {config.depth}; "
          f"{args.tokens} tokens + end = {steps} decoder steps per reply; "
          f"{os.cpu_count()} CPUs")

    encoder_model, decoder_model = keras_example_models(model)
    baseline_reply(encoder_model, decoder_model, source, 2)  # builds predict functions
    state = [np.asarray(s) for s in model.zero_state(1)]
    greedy = DecodeSettings(min_len=args.tokens, max_len=args.tokens, no_repeat_ngram=0)
    beam = greedy.replace(method="beam", beam_size=5)
    methods = {}  # label -> a reply's function
    for jit in [False] if args.no_xla else [False, True]:
        search = Search(model, jit_compile=jit)
        for name, settings in (("greedy", greedy), ("beam 5", beam)):
            label = ("xla " if jit else "") + name
            methods[label] = lambda s=search, st=settings: s.run([source[0].tolist()], state,
                                                                 st)[0][0].ids
            start = time.perf_counter()
            ids = methods[label]()  # traces (and compiles)
            print(f"{label:>14}: first call, with tracing: {time.perf_counter() - start:.2f} s")
            assert len(ids) == args.tokens, "every method makes the same length"
            if name == "greedy":
                same = ids == baseline_reply(encoder_model, decoder_model, source, steps)
                print(f"{'':>16}same tokens as the baseline: {'yes' if same else 'NO'}")

    # Rounds interleave the methods, so that a change in the machine's load (other jobs
    # share the cores) touches all of them alike.
    times: dict[str, list[float]] = {"baseline": [], **{label: [] for label in methods}}
    for _ in range(args.rounds):
        start = time.perf_counter()
        baseline_reply(encoder_model, decoder_model, source, steps)
        times["baseline"].append(time.perf_counter() - start)
        for label, reply in methods.items():
            for _ in range(args.repeats):
                start = time.perf_counter()
                reply()
                times[label].append(time.perf_counter() - start)
    ms = {label: statistics.median(t) * 1000 / steps for label, t in times.items()}
    print("median ms per generated token:")
    for label, value in ms.items():
        what = " (predict() per token)" if label == "baseline" else ""
        print(f"{label:>14}: {value:8.3f}{what}")
    print("ratios:")
    for prefix in ("", "xla "):
        if prefix + "greedy" in ms:
            g, b = ms[prefix + "greedy"], ms[prefix + "beam 5"]
            print(f"  baseline / {prefix}greedy = {ms['baseline'] / g:6.1f}x  (goal >= 50)")
            print(f"  {prefix}beam 5 / {prefix}greedy = {b / g:6.2f}x  (goal <= 4)")


if __name__ == "__main__":
    main()
