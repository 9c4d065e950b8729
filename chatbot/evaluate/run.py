"""Evaluating a model directory on one split of a corpus: what `chatbot eval` reports.

    perplexity             per real target token, the state carried as in training
    perplexity_no_context  the same with the state zeroed at every exchange: the gap
                           between the two is what the conversation's context is worth
    ngram_perplexity       a Kneser-Ney trigram fitted on the training split (the model's
                           tokenizer), scored on the same target tokens
    unknown_rate           the share of those tokens outside the model's vocabulary: on a
                           corpus unlike the model's own it is high, and the n-gram,
                           fitted here, learns to expect them while the model does not
    token_accuracy         argmax == target over the real target tokens (with context)
    distinct_1, distinct_2, avg_reply_tokens, generic_rate, bleu
                           over greedy replies to the split's first N exchanges, each
                           decoded from the state training would have reached there
    hits_at_1...           the true reply ranked first among 10 (see `hits_at_1`); with
                           a reverse model also by the MMI-bidi score (hits_at_1_mmi),
                           and the replies are then reranked by it

The split is the one training used: the model's saved `valid_fraction` and the same
stable hash (`in_split`), so `valid` never holds a conversation the model trained on.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.corpus.split import SPLITS
from chatbot.decode.rerank import ReverseModel, combine, compile_row_scores, load_reverse
from chatbot.errors import ChatbotError
from chatbot.evaluate import metrics
from chatbot.evaluate.ngram import KneserNeyTrigram
from chatbot.model.directory import ModelDirectory, trained_reverse
from chatbot.model.exchanges import Exchange, pad_ids
from chatbot.model.loss import perplexity
from chatbot.text.tokenizer import EOS_ID, PAD_ID, UNK_ID
from chatbot.train import token_cache
from chatbot.train.data import lanes
from chatbot.train.options import read_options

# stage ("tokens": the token cache built, on first use; "n-gram", "perplexity",
# "replies"), done, total; each stage is reported with done 0 before its first (possibly
# slow) step
Progress = Callable[[str, int, int], None]

KEYS = ("split", "exchanges", "tokens", "perplexity", "perplexity_no_context",
        "ngram_perplexity", "unknown_rate", "token_accuracy", "replies", "distinct_1", "distinct_2",
        "distinct_1_reference", "distinct_2_reference", "avg_reply_tokens", "generic_rate",
        "bleu", "hits_at_1", "hits_at_1_no_context", "hits_at_1_pmi",
        "hits_at_1_pmi_no_context")
CANDIDATES = 10  # hits@1: the true reply against 9 from other conversations (ConvAI2's)
_RANK_ROWS = 160  # candidate rows scored together
_REPLY_BATCH = 32  # replies decoded together
_WALK_ROWS = 64  # conversations walked side by side for the replies' states


def split_options(metadata: dict[str, Any]) -> tuple[float, int, int, str]:
    """(valid_fraction, max_len, batch_size, split_by) the model was trained with (see
    chatbot.train.options.read_options: a model that does not say how it was split is
    from before works, split by conversation)."""
    o = read_options(metadata)
    return o.valid_fraction, o.max_len, o.batch_size, o.split_by


def reply_as(metadata: dict[str, Any]) -> tuple[str, ...]:
    """The speakers a model was trained to answer as (empty: every speaker)."""
    return read_options(metadata).reply_as


def evaluate(model: Path | str | ModelDirectory, db: Path | str, split: str = "valid",
             max_exchanges: int = 200, progress: Progress | None = None,
             settings: Any = None, say: Callable[[str], None] | None = None,
             reverse_model: Path | str | ModelDirectory | None = None) -> dict[str, Any]:
    """Every metric of `chatbot eval` for `model` on `split` of the corpus `db`.

    `settings` (a DecodeSettings) picks how replies are decoded; by default greedy, with
    the anti-generic settings the model recommends (its metadata's "decoding"), reranked
    by MMI when `reverse_model` (a model trained with --reverse) is given; that also
    adds hits_at_1_mmi and hits_at_1_mmi_no_context.
    A split with no exchanges is a ChatbotError (found before the n-gram is fitted); the
    reply metrics are None when `max_exchanges` is 0. The exchanges are read from the
    corpus' token cache (chatbot.train.token_cache), built on first use; `say` gets the
    line saying why an unusable one is rebuilt.
    """
    from chatbot.corpus.store import CorpusStore
    from chatbot.model import directory

    if split not in SPLITS:
        raise ChatbotError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if max_exchanges < 0:
        raise ChatbotError(f"--max-exchanges must be 0 or more, not {max_exchanges}")
    if not Path(db).is_file():
        raise ChatbotError(f"{db}: no corpus database; run `chatbot ingest` first")
    loaded = model if isinstance(model, ModelDirectory) else directory.load(model)
    reverse = None if reverse_model is None else load_reverse(loaded, reverse_model)
    # A reverse model is measured on what it learnt: each exchange backwards.
    backwards = trained_reverse(loaded.metadata)
    valid_fraction, max_len, batch_size, split_by = split_options(loaded.metadata)
    # A model trained to answer as someone is measured on that person's replies only.
    speakers = reply_as(loaded.metadata)
    tokenizer = loaded.tokenizer
    report = progress or (lambda stage, done, total: None)
    with CorpusStore(db) as store:
        total = store.stats()["conversations"]
    # The corpus tokenized once by this model's tokenizer (built on first use).
    cache = token_cache.ensure(db, tokenizer, progress=lambda done, all_: report(
        "tokens", done, all_), say=say)
    report("n-gram", 0, int(cache.in_split("train", valid_fraction, split_by).sum()))

    def read(stage: str | None, which: str) -> Iterator[list[Exchange]]:
        """The split's conversations as exchanges, counted for the progress display
        when a stage is named."""
        count = int(cache.in_split(which, valid_fraction, split_by).sum())
        for done, item in enumerate(cache.exchanges(which, valid_fraction, max_len, split_by,
                                                    speakers, backwards), start=1):
            yield item
            if stage:
                report(stage, done, count)

    _require_exchanges(read(None, split), db, split, valid_fraction, total)
    ngram = KneserNeyTrigram.fit(
        (e.target_out for c in read("n-gram", "train") for e in c if e.target_out),
        tokenizer.vocab_size)
    # The step compiles first.
    report("perplexity", 0, int(cache.in_split(split, valid_fraction, split_by).sum()))
    step = _compile_step(loaded.model)
    scores = _score(loaded.model, step, read("perplexity", split), ngram, batch_size)
    replies = _reply_metrics(loaded, step, read(None, split), max_exchanges, settings, report,
                             reverse)
    return {"split": split, **scores, **replies}


def _require_exchanges(items: Generator[list[Exchange], None, None], db: Path | str,
                       split: str, valid_fraction: float, total: int) -> None:
    """ChatbotError unless the split has an exchange (cheap when it has: the search stops
    at the first one)."""
    try:
        if next(items, None) is not None:
            return
    finally:
        items.close()
    # The split keeps each film or book whole: a corpus of a few works may give all of
    # them to one side.
    where = (f"{total:,} conversations; a share of {valid_fraction:g} of the works (films, "
             "books, dialogues) goes to valid" if split != "all" else f"{total:,} conversations")
    raise ChatbotError(f"{db}: the {split} split has no exchanges to measure ({where}); "
                       "ingest more works or choose another --split")


def _compile_step(model: Any) -> Callable:
    """One exchange for a batch of rows: (loss sum, real tokens, correct argmaxes, state).

    The loss is `real_token_loss`, the very function training reports perplexity with;
    its projection is captured so the accuracy needs no second one.
    """
    import tensorflow as tf

    from chatbot.model.loss import real_token_loss
    from chatbot.text.tokenizer import PAD_ID

    c = model.config_
    ids = tf.TensorSpec((None, None), tf.int32)
    states = tuple(tf.TensorSpec((None, c.hidden_dim), tf.float32)
                   for _ in range(c.depths[1] * c.state_size))

    @tf.function(input_signature=(ids, ids, ids, tf.TensorSpec((None,), tf.bool), states))
    def step(source, target_in, target_out, reset, state):
        features, new_state = model.exchange({"source": source, "target_in": target_in,
                                              "reset": reset, "state": list(state)})
        projected = []

        def project(x):
            projected.append(model.output_layer(x))  # (N, V), real positions only
            return projected[-1]

        loss_sum, tokens = real_token_loss(features, target_out, project)
        labels = tf.boolean_mask(target_out, tf.not_equal(target_out, PAD_ID))  # (N,)
        guess = tf.argmax(projected[0], axis=-1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(guess, labels), tf.float32))
        return loss_sum, tokens, correct, tuple(new_state)

    return step


def _zeros(model: Any, rows: int) -> tuple[np.ndarray, ...]:
    c = model.config_
    return tuple(np.zeros((rows, c.hidden_dim), np.float32)
                 for _ in range(c.depths[1] * c.state_size))


def _score(model: Any, step: Callable, items: Iterator[list[Exchange]],
           ngram: KneserNeyTrigram, batch_size: int) -> dict[str, Any]:
    """Perplexities and accuracy over the split, walking lanes exactly as training does."""
    counts = {"exchanges": 0, "ngram": 0.0, "ngram_tokens": 0, "unknown": 0}

    def scored(items: Iterator[list[Exchange]]) -> Iterator[list[Exchange]]:
        for conversation in items:
            for e in conversation:
                if not e.target_out:  # not a target (reply_as): read, never scored
                    continue
                cost, n = ngram.cost(e.target_out)
                counts["ngram"] += cost
                counts["ngram_tokens"] += n
                counts["unknown"] += e.target_out.count(UNK_ID)
                counts["exchanges"] += 1
            yield conversation

    zeros = _zeros(model, batch_size)
    every = np.ones(batch_size, bool)
    state: Any = zeros
    loss = loss_alone = correct = 0.0
    tokens = 0
    for b in lanes(scored(items), batch_size):
        args = (b.source, b.target_in, b.target_out)
        part, count, right, state = step(*args, b.reset, state)
        # The same exchanges, every row starting afresh: what the model knows without
        # the conversation so far.
        alone, _, _, _ = step(*args, every, zeros)
        loss, loss_alone = loss + float(part), loss_alone + float(alone)
        correct += float(right)
        tokens += int(count)
    if tokens != counts["ngram_tokens"]:  # both must score the very same tokens
        raise AssertionError(f"{tokens} model tokens but {counts['ngram_tokens']} n-gram ones")
    return {"exchanges": counts["exchanges"], "tokens": tokens,
            "perplexity": perplexity(loss, tokens),
            "perplexity_no_context": perplexity(loss_alone, tokens),
            "ngram_perplexity": perplexity(counts["ngram"], tokens),
            "unknown_rate": counts["unknown"] / tokens if tokens else None,
            "token_accuracy": correct / tokens if tokens else None}


def teacher_states(model: Any, step: Callable,
                   chosen: list[list[Exchange]]) -> list[list[np.ndarray]]:
    """The state before each exchange of `chosen` (in order), on training's path: each
    conversation from zeros, every known exchange fed through the model. (1, H) arrays."""
    before: list[list[np.ndarray]] = []
    for start in range(0, len(chosen), _WALK_ROWS):
        group = chosen[start:start + _WALK_ROWS]
        rows = len(group)
        state: Any = _zeros(model, rows)
        found: list[list[list[np.ndarray]]] = [[] for _ in group]
        longest = max(len(c) for c in group)
        for k in range(longest):
            values = [np.asarray(s) for s in state]
            for i, c in enumerate(group):
                if k < len(c):
                    found[i].append([v[i:i + 1] for v in values])
            if k == longest - 1:
                break
            batch = [c[k] if k < len(c) else Exchange([], [], []) for c in group]
            _, _, _, state = step(pad_ids([e.source for e in batch]),
                                  pad_ids([e.target_in for e in batch]),
                                  pad_ids([e.target_out for e in batch]),
                                  np.full(rows, k == 0), state)
        before.extend(s for per in found for s in per)
    return before


def _reply_metrics(loaded: ModelDirectory, step: Callable,
                   items: Generator[list[Exchange], None, None], limit: int, settings: Any,
                   report: Progress, reverse: ReverseModel | None = None) -> dict[str, Any]:
    """Greedy replies to the split's first `limit` exchanges, against the real replies
    (reranked by MMI with a `reverse` model, unless `settings` say otherwise)."""
    from chatbot.decode.responder import Responder
    from chatbot.decode.settings import for_model

    chosen: list[list[Exchange]] = []
    count = 0  # target exchanges chosen (with reply_as, the others are only read)
    for conversation in items:
        if count >= limit:
            break
        kept: list[Exchange] = []
        for e in conversation:
            if count >= limit:
                break
            kept.append(e)
            count += bool(e.target_out)
        chosen.append(kept)
    items.close()  # the rest of the split is not needed: let go of the store now
    empty = {"replies": 0, "distinct_1": None, "distinct_2": None,
             "distinct_1_reference": None, "distinct_2_reference": None,
             "avg_reply_tokens": None, "generic_rate": None, "bleu": None,
             **dict.fromkeys(RANKINGS + (MMI_RANKINGS if reverse else ()))}
    if not count:
        return empty
    report("replies", 0, count)  # the search compiles first: show the stage has begun
    walked = teacher_states(loaded.model, step, chosen)
    every = [e for c in chosen for e in c]
    owners = [n for n, c in enumerate(chosen) for e in c if e.target_out]
    flat = [e for e in every if e.target_out]
    states = [s for s, e in zip(walked, every, strict=True) if e.target_out]
    # Greedy, with the anti-generic settings the model recommends (metadata "decoding").
    settings = settings or for_model(loaded.metadata, method="greedy",
                                     **({"rerank": "mmi"} if reverse else {}))
    ranked = hits_at_1(loaded.model, flat, states, owners, reverse, settings.rerank_lambda,
                       settings.rerank_gamma)
    responder = Responder(loaded, settings,
                          reverse_model=None if reverse is None else reverse.loaded)
    decode = loaded.tokenizer.decode
    texts, lengths, hypotheses, references = [], [], [], []
    for start in range(0, count, _REPLY_BATCH):
        part = flat[start:start + _REPLY_BATCH]
        found = responder.reply_ids([e.source for e in part],
                                    states[start:start + _REPLY_BATCH])
        for e, (text, _, info) in zip(part, found, strict=True):
            texts.append(text)
            lengths.append(info.tokens)
            hypotheses.append(metrics.words(text))
            references.append(metrics.words(decode(e.target_out)))
        report("replies", len(texts), count)
    return {"replies": count,
            "distinct_1": metrics.distinct_n(hypotheses, 1),
            "distinct_2": metrics.distinct_n(hypotheses, 2),
            # The same measures over the real replies: the ratio holds at any sample size.
            "distinct_1_reference": metrics.distinct_n(references, 1),
            "distinct_2_reference": metrics.distinct_n(references, 2),
            **ranked,
            "avg_reply_tokens": sum(lengths) / count,
            "generic_rate": metrics.generic_rate([" ".join(h) for h in hypotheses]),
            "bleu": metrics.corpus_bleu(hypotheses, references)}


RANKINGS = ("hits_at_1", "hits_at_1_no_context", "hits_at_1_pmi", "hits_at_1_pmi_no_context")
MMI_RANKINGS = ("hits_at_1_mmi", "hits_at_1_mmi_no_context")  # with a reverse model


def distractors(owners: list[int], replies: list[Any], seed: int = 0
                ) -> list[list[int]] | None:
    """For each exchange, the indices of CANDIDATES - 1 others from other conversations
    whose replies differ from its own and from each other (a fixed seed: every model
    meets the same ones); None when some exchange cannot have that many."""
    rng = random.Random(seed)
    picked = []
    for i, owner in enumerate(owners):
        pool = [j for j in range(len(owners)) if owners[j] != owner]
        rng.shuffle(pool)
        chosen: list[int] = []
        seen = {replies[i]}
        for j in pool:
            if replies[j] not in seen:
                seen.add(replies[j])
                chosen.append(j)
                if len(chosen) == CANDIDATES - 1:
                    break
        if len(chosen) < CANDIDATES - 1:
            return None
        picked.append(chosen)
    return picked


def hits_at_1(model: Any, flat: list[Exchange], states: list[list[np.ndarray]],
              owners: list[int], reverse: ReverseModel | None = None, weight: float = 0.5,
              gamma: float = 0.0) -> dict[str, float | None]:
    """How often each scorer ranks the true reply first among CANDIDATES (the others
    drawn from other conversations, each a different reply): log p(reply | turn, state)
    with the carried state and with zeros, and PMI, that minus log p(reply) from an
    empty turn and a fresh state. With a `reverse` model also MMI-bidi, `weight` times
    the likelihood plus 1 - `weight` times log p(turn | reply), plus `gamma` per reply
    token (chatbot.decode.rerank). A tie is a miss. All None when the exchanges hold
    too few different replies."""
    names = RANKINGS + (MMI_RANKINGS if reverse else ())
    others = distractors(owners, [tuple(e.target_out) for e in flat]) if flat else None
    if others is None:
        return dict.fromkeys(names)
    score = compile_row_scores(model)
    zero = [np.zeros_like(s) for s in states[0]]
    lm_source = [PAD_ID]  # the empty turn the anti-LM uses (chatbot.decode.step)
    hits = dict.fromkeys(names, 0)
    per_chunk = max(1, _RANK_ROWS // CANDIDATES)
    for start in range(0, len(flat), per_chunk):
        rows = range(start, min(start + per_chunk, len(flat)))
        sources, targets_in, targets_out, carried, zeros, empties = [], [], [], [], [], []
        for i in rows:
            for j in [i, *others[i]]:  # the true reply first
                sources.append(flat[i].source)
                targets_in.append(flat[j].target_in)
                targets_out.append(flat[j].target_out)
                carried.append(states[i])
                zeros.append(zero)
                empties.append(lm_source)
        # The replies without their end token (a cut reply has none): what they say.
        replies = [t[:-1] if t and t[-1] == EOS_ID else t for t in targets_out]
        batch = (pad_ids(sources), pad_ids(targets_in), pad_ids(targets_out))

        def run(sources: Any, state_rows: list, batch: tuple = batch) -> np.ndarray:
            stacked = tuple(np.concatenate([row[k] for row in state_rows])
                            for k in range(len(zero)))
            return np.asarray(score(sources, batch[1], batch[2], stacked)).reshape(
                -1, CANDIDATES)

        with_context = run(batch[0], carried)
        without = run(batch[0], zeros)
        prior = run(pad_ids(empties), zeros)
        tables = [("hits_at_1", with_context), ("hits_at_1_no_context", without),
                  ("hits_at_1_pmi", with_context - prior),
                  ("hits_at_1_pmi_no_context", without - prior)]
        if reverse is not None:
            backward = reverse.turn_scores(replies, sources).reshape(-1, CANDIDATES)
            lengths = np.array([len(r) for r in replies]).reshape(-1, CANDIDATES)
            tables += [(name, combine("mmi", weight, gamma, table, backward, lengths))
                       for name, table in (("hits_at_1_mmi", with_context),
                                           ("hits_at_1_mmi_no_context", without))]
        for name, table in tables:
            hits[name] += int(np.sum(table[:, 0] > table[:, 1:].max(axis=1)))
    return {name: hits[name] / len(flat) for name in names}

