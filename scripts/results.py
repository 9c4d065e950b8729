"""Write docs/results.md: measured numbers for the default model and a few architectures.

Every number in docs/results.md comes from this script, never typed by hand:
  1. the built-in default model (chatbot/default_model), evaluated on the chitchat
     validation split (which its training never saw);
  2. the same model on conversations from other real sources (../shared/corpora's
     subtitles and novel, the installed ChatterBot corpus), which it never saw;
  3. a small comparison: simple, seq2seq, seq2seq + peek, attention (context on) and
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
SHARED = ROOT.parent / "shared" / "corpora"
# Other real sources, one store each: the English films (the shared folder's long film
# is French, a language the model was never taught).
OTHER_SOURCES = [
    ("film subtitles (Sintel, Elephants Dream, monsters)",
     ["subtitles/sintel_en.srt", "subtitles/elephants_dream_en.vtt", "subtitles/monsters.srt"]),
    ("novel (Alice in Wonderland)", ["novels/alice_in_wonderland.txt"]),
    ("ChatterBot corpus (English)", "chatterbot"),
]
OTHER_COLUMNS = ["exchanges", "perplexity", "perplexity_no_context", "ngram_perplexity",
                 "unknown_rate", "token_accuracy", "distinct_2", "generic_rate"]
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


def row(name: str, metrics: dict, columns: list[str] = COLUMNS) -> str:
    cells = []
    for key in columns:
        value = metrics.get(key)
        cells.append("-" if value is None else f"{value:.3g}" if isinstance(value, float)
                     else str(value))
    return f"| {name} | " + " | ".join(cells) + " |"


def header(first: str, columns: list[str] = COLUMNS) -> list[str]:
    return [f"| {first} | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns)]


def other_source_rows(default: Path, chitchat: Path, work: Path, exchanges: int) -> list[str]:
    """The default model on each other source (all of it: it saw none), and an n-gram
    fitted where the model learned, chitchat's training split, scored on the same tokens:
    both come to the text cold."""
    from chatbot.corpus.ingest import ingest, ingest_builtin
    from chatbot.corpus.store import CorpusStore
    from chatbot.corpus.types import ReadOptions
    from chatbot.evaluate.ngram import KneserNeyTrigram
    from chatbot.evaluate.run import evaluate as run
    from chatbot.evaluate.run import split_options
    from chatbot.model import directory
    from chatbot.model.loss import perplexity
    from chatbot.train.data import conversations

    loaded = directory.load(default)
    valid_fraction, max_len, _, split_by = split_options(loaded.metadata)

    def targets(db: Path, split: str):
        with CorpusStore(db) as store:
            for conversation in conversations(store, loaded.tokenizer, split, valid_fraction,
                                              max_len, split_by):
                yield from (e.target_out for e in conversation)

    ngram = KneserNeyTrigram.fit(targets(chitchat, "train"), loaded.tokenizer.vocab_size)
    rows = header("source", OTHER_COLUMNS)
    for name, files in OTHER_SOURCES:
        db = work / f"other-{slug(name)}.db"
        if files == "chatterbot":
            ingest_builtin(db, "chatterbot:english")
        elif all((SHARED / f).exists() for f in files):
            with CorpusStore(db) as store:
                ingest(store, [SHARED / f for f in files], ReadOptions())
        else:
            continue
        metrics = run(loaded, db, split="all", max_exchanges=exchanges)
        cost = tokens = 0
        for target in targets(db, "all"):
            c, n = ngram.cost(target)
            cost, tokens = cost + c, tokens + n
        metrics["ngram_perplexity"] = perplexity(cost, tokens)
        rows.append(row(name, metrics, OTHER_COLUMNS))
        print(rows[-1], flush=True)
    return rows


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
        lines += ["", "## The default model on other real sources", "",
                  "Conversations it never saw, from other kinds of text, each source whole. "
                  "Here `ngram_perplexity` is a trigram fitted where the model learned "
                  "(chitchat's training split), so both meet the text cold; `unknown_rate` "
                  "is the share of target tokens outside the model's vocabulary (every one "
                  "of them scored as the unknown token by both). Greedy replies to the "
                  f"first {args.exchanges} exchanges (generic_rate cannot fall below 10 / "
                  "replies: 50% for a source of 20 exchanges).", ""]
        lines += other_source_rows(default, db, args.work, args.exchanges)
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
