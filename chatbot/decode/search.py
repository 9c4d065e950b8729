"""The compiled decoding loops: greedy, sampled and beam search, whole in one graph.

Each search is one `tf.function` holding the encoder and a `tf.while_loop` over decoder
steps, so a reply costs one call from Python, not one per token. Input lengths, batch
sizes and the numeric settings are tensors (the signature has None dimensions): they
never cause a retrace. What changes the graph's structure (method, beam size, n-gram
sizes, anti-LM on or off, top-k/top-p on or off) picks one of a few cached functions.

The state a hypothesis carries out is the decoder's state at the step that emitted its
end token, that is after consuming [bos] + reply: the state training carries from one
exchange to the next. Replies always end with the end token (forced at `max_len`), so
that step always exists.

Beam search follows fairseq: the 2K best continuations of the K live hypotheses are
ranked; an end token among the first K finishes a hypothesis (scored with the length
penalty), the K best others live on; a row is done when K hypotheses have finished or
none can go on. With K = 1 this is greedy search exactly.

XLA (`jit_compile=True`) is an option, off by default. Measured on 2 CPU cores at the
standard size (scripts/bench_decode.py) it halves greedy's time per token, but XLA
compiles once per concrete input shape (about a second, more for deep attention models),
so a chat would stall whenever a turn of a new length arrives; without XLA one trace
serves every length. With it on, source widths are rounded up to a multiple of
XLA_WIDTH to bound the compilations; batch work with stable shapes (eval) gains most.

Sampling draws with stateless random ops: the same seed gives the same reply on the same
machine and compile mode (XLA's random stream differs from the CPU kernel's).

Shapes: N inputs, K beams, R = N or N*K rows, L = max_len, V vocabulary, H hidden.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from chatbot.decode import constraints, step
from chatbot.decode.settings import DecodeSettings
from chatbot.errors import ChatbotError
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID

NEG_INF = -float("inf")
XLA_WIDTH = 16  # with jit_compile, source widths are rounded up to a multiple of this


@dataclass(frozen=True)
class Hypothesis:
    """One decoded reply: its ids (no bos/eos), score and the conversation state after it."""

    ids: list[int]
    # Sum of the log probabilities (end token included; minus the anti-LM term when on)
    # over the length penalty.
    score: float
    state: list[np.ndarray]  # (1, H) each, the model's state layout


class _Static(NamedTuple):
    """What shapes the graph: one compiled function per distinct value."""

    method: str
    beam_size: int
    no_repeat_ngram: int
    block_source_ngrams: int
    no_adjacent_repeat: bool
    antilm: bool
    allow_unk: bool
    top_k: bool
    top_p: bool


class _Knobs(NamedTuple):
    """The numeric settings, fed as tensors so new values never retrace."""

    min_len: Any
    max_len: Any
    length_penalty: Any
    temperature: Any
    top_k: Any
    top_p: Any
    antilm: Any
    antilm_gamma: Any
    antilm_top_k: Any
    seed: Any  # (2,) int32, for the stateless random ops


_KNOB_SPECS = _Knobs(
    tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32),
    tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.float32),
    tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32),
    tf.TensorSpec((2,), tf.int32))


def length_penalty(length: Any, alpha: Any) -> Any:
    """GNMT's ((5 + len) / 6) ** alpha, len counting the reply's tokens and its end."""
    return tf.pow((5.0 + tf.cast(length, tf.float32) + 1.0) / 6.0, alpha)


class Search:
    """Compiled searches over one ConversationModel; `run` decodes a batch of turns."""

    def __init__(self, model: Any, jit_compile: bool = False) -> None:
        if jit_compile and tf.config.list_logical_devices("GPU"):
            # Keras runs LSTM/GRU layers with cuDNN on a GPU, and XLA cannot compile it.
            raise ChatbotError("jit_compile works on the CPU only (the GPU's cuDNN "
                               "recurrent kernels cannot be XLA-compiled); leave it off")
        self.model = model
        self.jit_compile = jit_compile
        self._functions: dict[_Static, Any] = {}
        c = model.config_
        self.state_count = c.depths[1] * c.state_size
        self.hidden = c.hidden_dim

    def function(self, settings: DecodeSettings) -> Any:
        """The compiled function for these settings (built on first use, then cached)."""
        key = _Static(
            method=settings.method,
            beam_size=settings.beam_size if settings.method == "beam" else 1,
            no_repeat_ngram=settings.no_repeat_ngram,
            block_source_ngrams=settings.block_source_ngrams,
            no_adjacent_repeat=settings.no_adjacent_repeat,
            antilm=settings.antilm > 0,
            allow_unk=settings.allow_unk,
            top_k=settings.method == "sample" and settings.top_k > 0,
            top_p=settings.method == "sample" and settings.top_p < 1,
        )
        if key not in self._functions:
            self._functions[key] = self._build(key)
        return self._functions[key]

    def run(self, sources: list[list[int]], states: list[Any],
            settings: DecodeSettings) -> list[list[Hypothesis]]:
        """Decode N turns (token ids), each from its own state (the model's layout,
        (N, H) each); returns, per turn, its hypotheses best first (one unless beam)."""
        width = max(1, max((len(s) for s in sources), default=1))
        if self.jit_compile:
            # XLA compiles once per concrete shape (about a second on a CPU): round the
            # width up so a chat meets a few widths, not one per turn length. Padding is
            # masked, so the reply is the same.
            width = -(-width // XLA_WIDTH) * XLA_WIDTH
        source = np.zeros((len(sources), width), dtype=np.int32)
        for i, ids in enumerate(sources):
            source[i, :len(ids)] = ids
        state = tuple(np.asarray(s, dtype=np.float32) for s in states)
        seed = settings.seed if settings.seed is not None else random.randrange(2**63)
        knobs = _Knobs(
            np.int32(settings.min_len), np.int32(settings.max_len),
            np.float32(settings.length_penalty), np.float32(settings.temperature),
            np.int32(settings.top_k), np.float32(settings.top_p), np.float32(settings.antilm),
            np.int32(settings.antilm_gamma), np.int32(settings.antilm_top_k),
            np.array([seed & 0x7FFFFFFF, seed >> 31 & 0x7FFFFFFF], dtype=np.int32))
        tokens, lengths, scores, out_states = self.function(settings)(source, state, knobs)
        tokens, lengths, scores = tokens.numpy(), lengths.numpy(), scores.numpy()
        out_states = [s.numpy() for s in out_states]  # (N, K, H) each
        result = []
        for n in range(len(sources)):
            result.append([
                Hypothesis([int(i) for i in tokens[n, k, :lengths[n, k]]], float(scores[n, k]),
                           [s[n, k][None] for s in out_states])
                for k in range(tokens.shape[1]) if np.isfinite(scores[n, k])
            ])
        return result

    # --- building the graphs ---------------------------------------------------------

    def _build(self, key: _Static) -> Any:
        model = self.model
        state_specs = tuple(tf.TensorSpec((None, self.hidden), tf.float32)
                            for _ in range(self.state_count))
        signature = (tf.TensorSpec((None, None), tf.int32), state_specs, _KNOB_SPECS)
        loop = _beam if key.method == "beam" else _greedy

        @tf.function(input_signature=signature, jit_compile=self.jit_compile)
        def decode(source, state, knobs):
            return loop(model, key, source, list(state), _Knobs(*knobs), self.jit_compile)

        return decode


class _Scorer:
    """Next-token scores for R rows: log p(y | turn), the anti-LM term and the bans."""

    def __init__(self, model: Any, key: _Static, source: Any, state: list, knobs: _Knobs,
                 rows_per_input: int, jit_compile: bool = False) -> None:
        self.model, self.key, self.knobs = model, key, knobs
        self.jit_compile = jit_compile
        c = model.config_
        batch = tf.shape(source)[0]
        if not c.context_sensitive:  # such a model starts every exchange afresh
            state = [tf.zeros_like(s) for s in state]
        memory, states = step.start(model, source, state)
        self.memory = step.tile(memory, rows_per_input)
        self.initial = [tf.repeat(s, rows_per_input, axis=0) for s in states]
        self.source = tf.repeat(source, rows_per_input, axis=0)  # (R, S)
        self.vocab = c.vocab_size
        self.table = constraints.length_table(self.vocab, key.allow_unk, knobs.min_len,
                                              knobs.max_len)  # (L + 1, V)
        if key.antilm:
            # p(reply): the decoder given an empty turn from a fresh state (Li et al.).
            zeros = [tf.zeros_like(s) for s in state]
            lm_memory, lm_states = step.start(model, step.empty_source(batch), zeros)
            self.lm_memory = step.tile(lm_memory, rows_per_input)
            self.lm_initial = [tf.repeat(s, rows_per_input, axis=0) for s in lm_states]
        else:
            self.lm_memory, self.lm_initial = None, []

    def __call__(self, t: Any, last: Any, states: list, lm_states: list, tokens: Any,
                 live: Any = None) -> tuple[Any, list, list]:
        """Masked scores (R, V) of the next token, the new states and LM states.

        `live` (R,) bool: only those rows are computed (in a batch, the rows still
        decoding; without it a batch would cost its longest reply times every row). The
        others score -inf everywhere and keep their states. Not under XLA, which needs
        static shapes.
        """
        if live is None or self.jit_compile:
            return self._score(t, last, states, lm_states, tokens, self.memory,
                               self.lm_memory, self.source)
        index = tf.where(live)[:, 0]  # (R',) the rows to compute

        def pick(x: Any) -> Any:
            return tf.gather(x, index)

        lm_memory = None if self.lm_memory is None else step.Memory(*map(pick,
                                                                          self.lm_memory))
        allowed, new_states, new_lm = self._score(
            t, pick(last), [pick(s) for s in states], [pick(s) for s in lm_states],
            pick(tokens), step.Memory(*map(pick, self.memory)), lm_memory, pick(self.source))
        at = index[:, None]
        rows = tf.shape(last)[0]
        allowed = tf.tensor_scatter_nd_update(tf.fill(tf.stack([rows, self.vocab]), NEG_INF),
                                              at, allowed)
        new_states = [tf.tensor_scatter_nd_update(old, at, new)
                      for old, new in zip(states, new_states, strict=True)]
        new_lm = [tf.tensor_scatter_nd_update(old, at, new)
                  for old, new in zip(lm_states, new_lm, strict=True)]
        return allowed, new_states, new_lm

    def _score(self, t: Any, last: Any, states: list, lm_states: list, tokens: Any,
               memory: Any, lm_memory: Any, source: Any) -> tuple[Any, list, list]:
        logits, new_states = step.step(self.model, last, states, memory)
        scores = tf.nn.log_softmax(logits)  # (R, V)
        allowed = scores + self.table[t][None, :]  # reserved ids, min and max length
        bans = []
        if self.key.no_repeat_ngram:
            bans.append(constraints.repeat_ban(tokens, t, self.key.no_repeat_ngram,
                                               self.vocab))
        if self.key.block_source_ngrams:
            bans.append(constraints.source_ban(tokens, t, source,
                                               self.key.block_source_ngrams, self.vocab))
        if self.key.no_adjacent_repeat:
            bans.append(constraints.adjacent_ban(last, self.vocab))
        banned = None
        if bans:
            banned = bans[0] if len(bans) == 1 else tf.logical_or(*bans)
        new_lm: list = []
        if self.key.antilm:
            lm_logits, new_lm = step.step(self.model, last, lm_states, lm_memory)
            gamma = self.knobs.antilm_gamma
            on = tf.logical_or(gamma <= 0, t < gamma)
            penalty = tf.where(on, self.knobs.antilm, 0.0) * tf.nn.log_softmax(lm_logits)
            # The k likeliest tokens that every constraint allows are the candidates.
            candidates = allowed if banned is None else tf.where(banned, NEG_INF, allowed)
            top_k = self.knobs.antilm_top_k
            kth = tf.cond(  # (R, 1): the k-th best candidate, or -inf with no limit
                top_k > 0,
                lambda: tf.math.top_k(candidates, tf.minimum(top_k, self.vocab)).values[:, -1:],
                lambda: tf.fill(tf.stack([tf.shape(scores)[0], 1]), NEG_INF))
            scores = scores - penalty
            # Only where the penalty is on: later tokens keep the whole vocabulary.
            allowed = tf.where(tf.logical_and(on, candidates < kth), NEG_INF,
                               allowed - penalty)
        if banned is not None:
            allowed = constraints.apply(allowed, banned, scores)
        return allowed, new_states, new_lm


def _write(tokens: Any, t: Any, ids: Any) -> Any:
    """Put ids (..., ) at place t of tokens (..., L) (a place past the end writes nothing)."""
    return tokens + tf.one_hot(t, tf.shape(tokens)[-1], dtype=tf.int32) * ids[..., None]


def _sample(scores: Any, t: Any, key: _Static, knobs: _Knobs) -> Any:
    """Draw one token per row from softmax(scores / temperature), top-k/top-p filtered."""
    logits = scores / knobs.temperature
    if key.top_k:
        k = tf.minimum(knobs.top_k, tf.shape(logits)[-1])
        kth = tf.math.top_k(logits, k).values[:, -1:]  # (R, 1)
        logits = tf.where(logits < kth, NEG_INF, logits)
    if key.top_p:
        ranked = tf.sort(logits, direction="DESCENDING")
        before = tf.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)
        # Keep tokens until top_p is reached (the likeliest one always stays).
        kept = tf.where(before < knobs.top_p, ranked, float("inf"))
        logits = tf.where(logits < tf.reduce_min(kept, -1, keepdims=True), NEG_INF, logits)
    # The Gumbel-max trick: argmax(logits + Gumbel noise) is a draw from softmax(logits).
    # (XLA compiles it; tf.random.stateless_categorical has no XLA kernel for our types.)
    seed = tf.random.experimental.stateless_fold_in(knobs.seed, t, alg="philox")
    uniform = tf.random.stateless_uniform(tf.shape(logits), seed, minval=1e-20, maxval=1.0,
                                          alg="philox")
    return tf.argmax(logits - tf.math.log(-tf.math.log(uniform)), -1, output_type=tf.int32)


def _greedy(model: Any, key: _Static, source: Any, state: list, knobs: _Knobs,
            jit_compile: bool = False):
    """Greedy or sampled search; returns tokens (N, 1, L), lengths and scores (N, 1),
    states (N, 1, H) each."""
    score_next = _Scorer(model, key, source, state, knobs, 1, jit_compile)
    rows = tf.shape(source)[0]
    tokens = tf.zeros(tf.stack([rows, knobs.max_len]), tf.int32)  # (N, L)
    last = tf.fill([rows], BOS_ID)
    done = tf.zeros([rows], tf.bool)
    lengths = tf.zeros([rows], tf.int32)
    total = tf.zeros([rows], tf.float32)

    def cond(t, last, states, lm_states, done, *_):
        return tf.logical_and(t <= knobs.max_len, tf.logical_not(tf.reduce_all(done)))

    def body(t, last, states, lm_states, done, tokens, lengths, total, finals):
        scores, states, lm_states = score_next(t, last, list(states), list(lm_states), tokens,
                                               tf.logical_not(done))
        if key.method == "sample":
            choice = _sample(scores, t, key, knobs)
        else:
            choice = tf.argmax(scores, -1, output_type=tf.int32)
        choice = tf.where(done, PAD_ID, choice)
        ends = tf.logical_and(choice == EOS_ID, tf.logical_not(done))
        chosen = tf.gather(scores, choice, batch_dims=1)
        total = total + tf.where(done, 0.0, chosen)
        tokens = _write(tokens, t, tf.where(tf.logical_or(ends, done), 0, choice))
        lengths = tf.where(ends, t, lengths)
        # The state after [bos] + reply is the one this step produced.
        finals = tuple(tf.where(ends[:, None], s, f) for s, f in zip(states, finals,
                                                                     strict=True))
        return (t + 1, choice, tuple(states), tuple(lm_states), tf.logical_or(done, ends),
                tokens, lengths, total, finals)

    initial = tuple(score_next.initial)
    loop_vars = (tf.constant(0), last, initial, tuple(score_next.lm_initial), done, tokens,
                 lengths, total, initial)
    out = tf.while_loop(cond, body, loop_vars)
    _, _, _, _, _, tokens, lengths, total, finals = out
    score = total / length_penalty(lengths, knobs.length_penalty)
    return (tokens[:, None], lengths[:, None], score[:, None],
            tuple(s[:, None] for s in finals))


class _Beam(NamedTuple):
    """Beam search's loop variables: the live hypotheses and the finished ones."""

    t: Any  # () the step: the length of the live hypotheses
    last: Any  # (N*K,) each live hypothesis' last token
    states: tuple  # (N*K, H) each: the decoder's state after it
    lm_states: tuple  # (N*K, H) each: the anti-LM's (empty without it)
    alive_tokens: Any  # (N, K, L)
    alive_scores: Any  # (N, K) log probabilities, -inf for no hypothesis
    done: Any  # (N,) the row needs no more steps
    fin_tokens: Any  # (N, K, L) the finished hypotheses, best first
    fin_scores: Any  # (N, K) over the length penalty, -inf for none
    fin_lengths: Any  # (N, K)
    fin_states: tuple  # (N, K, H) each: the state after [bos] + the reply
    fin_count: Any  # (N,) hypotheses finished so far


def _beam(model: Any, key: _Static, source: Any, state: list, knobs: _Knobs,
          jit_compile: bool = False):
    """Beam search; returns tokens (N, K, L), lengths and scores (N, K) best first,
    states (N, K, H) each."""
    beams = key.beam_size
    score_next = _Scorer(model, key, source, state, knobs, beams, jit_compile)
    vocab = score_next.vocab
    n = tf.shape(source)[0]
    length = knobs.max_len
    hidden = model.config_.hidden_dim
    rank = tf.range(2 * beams)[None, :]  # (1, 2K)

    def body(b: _Beam) -> tuple[_Beam]:
        t = b.t
        flat_tokens = tf.reshape(b.alive_tokens, tf.stack([n * beams, length]))
        scores, states, lm_states = score_next(t, b.last, list(b.states), list(b.lm_states),
                                               flat_tokens,
                                               tf.repeat(tf.logical_not(b.done), beams))
        every = b.alive_scores[:, :, None] + tf.reshape(scores, tf.stack([n, beams, vocab]))
        top_scores, top = tf.math.top_k(tf.reshape(every, tf.stack([n, beams * vocab])),
                                        2 * beams)  # (N, 2K), best first
        beam = top // vocab
        token = top % vocab
        ends = token == EOS_ID
        grouped = [tf.reshape(s, tf.stack([n, beams, -1])) for s in states]  # (N, K, H)
        lm_grouped = [tf.reshape(s, tf.stack([n, beams, -1])) for s in lm_states]

        # An end among the K best finishes that hypothesis.
        finishing = ends & (rank < beams) & tf.math.is_finite(top_scores) & ~b.done[:, None]
        normed = tf.where(finishing, top_scores / length_penalty(t, knobs.length_penalty),
                          NEG_INF)
        pool_scores = tf.concat([b.fin_scores, normed], 1)  # (N, 3K)
        fin_scores, pick = tf.math.top_k(pool_scores, beams)
        pool_tokens = tf.concat([b.fin_tokens, tf.gather(b.alive_tokens, beam, batch_dims=1)],
                                1)
        pool_lengths = tf.concat([b.fin_lengths, tf.fill(tf.shape(beam), t)], 1)
        fin_states = tuple(
            tf.gather(tf.concat([f, tf.gather(g, beam, batch_dims=1)], 1), pick, batch_dims=1)
            for f, g in zip(b.fin_states, grouped, strict=True))
        fin_count = b.fin_count + tf.reduce_sum(tf.cast(finishing, tf.int32), 1)

        # The K best continuations that do not end live on.
        alive_scores, keep = tf.math.top_k(tf.where(ends, NEG_INF, top_scores), beams)
        parent = tf.gather(beam, keep, batch_dims=1)  # (N, K)
        chosen = tf.gather(token, keep, batch_dims=1)
        stuck = tf.logical_not(tf.reduce_any(tf.math.is_finite(alive_scores), 1))
        return (_Beam(
            t=t + 1,
            last=tf.reshape(chosen, [-1]),
            states=tuple(tf.reshape(tf.gather(g, parent, batch_dims=1), [-1, hidden])
                         for g in grouped),
            lm_states=tuple(tf.reshape(tf.gather(g, parent, batch_dims=1), [-1, hidden])
                            for g in lm_grouped),
            alive_tokens=_write(tf.gather(b.alive_tokens, parent, batch_dims=1), t, chosen),
            alive_scores=alive_scores,
            done=b.done | (fin_count >= beams) | stuck | (t >= knobs.max_len),
            fin_tokens=tf.gather(pool_tokens, pick, batch_dims=1),
            fin_scores=fin_scores,
            fin_lengths=tf.gather(pool_lengths, pick, batch_dims=1),
            fin_states=fin_states,
            fin_count=fin_count),)

    def cond(b: _Beam) -> Any:
        return tf.logical_not(tf.reduce_all(b.done))

    start = _Beam(
        t=tf.constant(0),
        last=tf.fill([n * beams], BOS_ID),
        states=tuple(score_next.initial),
        lm_states=tuple(score_next.lm_initial),
        alive_tokens=tf.zeros(tf.stack([n, beams, length]), tf.int32),
        # Only the first beam is live at the start: the others would repeat it.
        alive_scores=tf.tile(tf.constant([[0.0] + [NEG_INF] * (beams - 1)]),
                             tf.stack([n, 1])),
        done=tf.zeros([n], tf.bool),
        fin_tokens=tf.zeros(tf.stack([n, beams, length]), tf.int32),
        fin_scores=tf.fill(tf.stack([n, beams]), NEG_INF),
        fin_lengths=tf.zeros(tf.stack([n, beams]), tf.int32),
        fin_states=tuple(tf.zeros(tf.stack([n, beams, hidden])) for _ in score_next.initial),
        fin_count=tf.zeros([n], tf.int32))
    (out,) = tf.while_loop(cond, body, (start,))
    return out.fin_tokens, out.fin_lengths, out.fin_scores, out.fin_states
