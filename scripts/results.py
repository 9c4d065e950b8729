"""Write docs/results.md: measured numbers for the default model and a few architectures.

Every number in docs/results.md comes from this script, never typed by hand:
  1. the built-in default model (chatbot/default_model), evaluated on the chitchat
     validation split (which its training never saw);
  2. a small comparison: simple, seq2seq, seq2seq + peek, attention (context on) and
     seq2seq with context off, each trained the same number of steps at the same size on
     chitchat, evaluated on the same split, with its training curves.

Usage: python scripts/results.py [--steps 600] [--hidden 64] [--exchanges 200]
                                 [--work DIR] [--skip-default] [--skip-compare]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "results.md"
CURVES = DOCS / "curves"

ARCHITECTURES = [  # (name, ModelConfig fields)
    ("simple", {"family": "simple"}),
    ("seq2seq", {"family": "seq2seq"}),
    ("seq2seq + peek", {"family": "seq2seq", "peek": True}),
    ("attention", {"family": "attention"}),
    ("seq2seq, no context", {"family": "seq2seq", "context_sensitive": False}),
]
DECODINGS = [  # other ways to pick the default model's replies, against its greedy one
    ("plain greedy, no anti-LM", {"method": "greedy"}),
    ("plain beam 5", {"method": "beam", "beam_size": 5}),
    ("chat's default", None),  # what `chatbot chat` uses: the model's recommendation
    ("sample, top-p 0.9", {"method": "sample", "top_p": 0.9, "seed": 0}),
]
COLUMNS = ["perplexity", "perplexity_no_context", "ngram_perplexity", "token_accuracy",
           "distinct_1", "distinct_2", "avg_reply_tokens", "generic_rate", "bleu"]


def chitchat_db(work: Path) -> Path:
    from chatbot.corpus.ingest import ingest_builtin

    return ingest_builtin(work / "chitchat.db", "chitchat")


def train(db: Path, model_dir: Path, fields: dict, steps: int, hidden: int) -> dict:
    from chatbot.model.config import ModelConfig
    from chatbot.train.loop import Trainer, TrainOptions

    done = model_dir / "run.json"
    if done.exists():  # trained by an earlier run of this script with the same settings
        previous = json.loads(done.read_text())
        if previous.get("wanted") == [fields, steps, hidden]:
            return previous
    if model_dir.exists():
        shutil.rmtree(model_dir)
    options = TrainOptions(db=db, model_dir=model_dir, vocab_size=4000, batch_size=32,
                           max_steps=steps, valid_fraction=0.05, seed=0,
                           checkpoint_every=10**9, log_every=25)
    config = ModelConfig(vocab_size=4000, embedding_dim=hidden // 2, hidden_dim=hidden,
                         **{"cell": "lstm", **fields})
    start = time.perf_counter()
    result = Trainer(options, config).run()
    summary = {**result.as_json(), "seconds": time.perf_counter() - start,
               "wanted": [fields, steps, hidden]}
    done.write_text(json.dumps(summary))
    return summary


def evaluate(model, db: Path, exchanges: int, settings=None) -> dict:
    from chatbot.evaluate.run import evaluate as run

    return run(model, db, split="valid", max_exchanges=exchanges, settings=settings)


def slug(name: str) -> str:
    """A file name for an architecture's curves."""
    return "-".join(name.replace("+", " ").replace(",", " ").split())


def row(name: str, metrics: dict) -> str:
    cells = []
    for key in COLUMNS:
        value = metrics.get(key)
        cells.append("-" if value is None else f"{value:.3g}" if isinstance(value, float)
                     else str(value))
    return f"| {name} | " + " | ".join(cells) + " |"


def header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(COLUMNS) + " |",
            "|---|" + "---|" * len(COLUMNS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--exchanges", type=int, default=200,
                        help="greedy replies scored per model")
    parser.add_argument("--work", type=Path, default=Path("/tmp/chatbot-results"))
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--skip-compare", action="store_true")
    args = parser.parse_args()

    from chatbot.model.builtin import builtin_model_dir
    from chatbot.model.directory import read_config
    from chatbot.train.history import curves_png, read_history

    args.work.mkdir(parents=True, exist_ok=True)
    CURVES.mkdir(parents=True, exist_ok=True)
    db = chitchat_db(args.work)
    lines = ["# Measured results", "",
             "Written by `scripts/results.py` (never by hand). Corpus: the chitchat-dataset "
             "conversations with two turns or more; every number is on its validation split "
             "(5% of the conversations by a stable hash), which training never sees. "
             "Perplexity is per real target token, the state carried as in training; "
             "`perplexity_no_context` resets it at every exchange; `ngram_perplexity` is an "
             "interpolated Kneser-Ney trigram on the same tokens with the model's "
             "tokenizer. Reply metrics are over greedy replies (with the anti-generic "
             "settings the model recommends, if any) to the first "
             f"{args.exchanges} validation exchanges.", ""]
    default = builtin_model_dir()
    if default is not None and not args.skip_default:
        metrics = evaluate(default, db, args.exchanges)
        config = read_config(default)
        meta = json.loads((default / "metadata.json").read_text())
        lines += ["## The built-in default model", "",
                  f"{config.family}, {config.cell}, embedding {config.embedding_dim}, hidden "
                  f"{config.hidden_dim}, vocabulary {config.vocab_size}; trained "
                  f"{meta.get('steps')} steps ({meta.get('epochs')} epochs) by "
                  "`scripts/train_default.py`.", ""]
        recommended = meta.get("decoding") or {}
        shown = ", ".join(f"{k} {v}" for k, v in recommended.items()) or "none"
        lines += [f"Decoding it recommends (its metadata's `decoding`, used by `chatbot "
                  f"chat` and by the greedy replies of `chatbot eval`): {shown}.", ""]
        lines += header("model (replies decoded by)") + [row("default (greedy)", metrics)]
        from chatbot.chat.app import chat_settings
        from chatbot.decode.settings import DecodeSettings

        for name, settings in DECODINGS:
            chosen = (chat_settings(default, {}) if settings is None
                      else DecodeSettings(**settings))
            other = evaluate(default, db, args.exchanges, chosen)
            lines.append(row(f"default ({name})", other))
            print(lines[-1], flush=True)
        lines.append("")
        goals = [
            ("perplexity <= 0.7 x ngram_perplexity",
             metrics["perplexity"] <= 0.7 * metrics["ngram_perplexity"],
             f"{metrics['perplexity'] / metrics['ngram_perplexity']:.2f} x"),
            ("perplexity >= 3% below perplexity_no_context",
             metrics["perplexity"] <= 0.97 * metrics["perplexity_no_context"],
             f"{1 - metrics['perplexity'] / metrics['perplexity_no_context']:.1%} below"),
            ("generic_rate <= 10%", metrics["generic_rate"] <= 0.10,
             f"{metrics['generic_rate']:.1%}"),
            ("distinct_2 >= 0.2", metrics["distinct_2"] >= 0.2, f"{metrics['distinct_2']:.3f}"),
        ]
        lines += ["| goal | measured | met |", "|---|---|---|"]
        lines += [f"| {goal} | {value} | {'yes' if ok else 'no'} |" for goal, ok, value in goals]
        lines.append("")
    if not args.skip_compare:
        lines += ["## Architectures compared", "",
                  f"Each trained {args.steps} steps (batch 32, Adam, seed 0) at hidden "
                  f"{args.hidden}, embedding {args.hidden // 2}, vocabulary 4000, LSTM, then "
                  "evaluated the same way. Short runs: they rank the architectures early in "
                  "training, they do not show where each ends.", ""]
        table = header("architecture")
        table[0] = table[0].replace(" |", " | train s |", 1)
        table[1] += "---|"
        for name, fields in ARCHITECTURES:
            model_dir = args.work / slug(name)
            trained = train(db, model_dir, fields, args.steps, args.hidden)
            metrics = evaluate(model_dir, db, args.exchanges)
            cells = row(name, metrics).split(" | ", 1)
            table.append(f"{cells[0]} | {trained['seconds']:.0f} | {cells[1]}")
            png = CURVES / f"{slug(name)}.png"
            png.write_bytes(curves_png(read_history(model_dir), title=name))
            print(table[-1], flush=True)
        lines += table + ["", "Training curves (train and validation perplexity):", ""]
        lines += [f"![{name}](curves/{slug(name)}.png)" for name, _ in ARCHITECTURES]
        lines.append("")
        from chatbot.evaluate.explain import write_explanation

        text = "do you like to travel?"
        _, shown = write_explanation(args.work / slug("attention"), text,
                                     DOCS / "explain.png")
        lines += ["## Where attention looks", "",
                  f"`chatbot explain --model <attention model> \"{text}\"` on the attention "
                  f"model above (greedy reply: \"{shown.reply}\"):", "",
                  "![attention heatmap](explain.png)", ""]
    RESULTS.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
