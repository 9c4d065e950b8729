"""Decoding: compiled searches against plain references, constraints, state, context."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from chatbot.decode.conversation import Conversation  # noqa: E402
from chatbot.decode.responder import Responder  # noqa: E402
from chatbot.decode.search import Search  # noqa: E402
from chatbot.decode.settings import DecodeSettings, for_model  # noqa: E402
from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.model import directory  # noqa: E402
from chatbot.model.config import ModelConfig  # noqa: E402
from chatbot.model.network import ConversationModel  # noqa: E402
from chatbot.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, fit_tokenizer  # noqa: E402
from tests.fit_util import batches, fit  # noqa: E402
from tests.tiny_model import tiny_model_dir  # noqa: E402

# Keras warns when a one-token turn gives a softmax over one attention key; harmless.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")

VOCAB = 40
PLAIN = DecodeSettings(no_repeat_ngram=0, max_len=8)  # no constraint but the reserved ids


def tiny(seed: int = 1, **options) -> ConversationModel:
    keras.utils.set_random_seed(seed)
    base = dict(vocab_size=VOCAB, embedding_dim=8, hidden_dim=16)
    return ConversationModel(ModelConfig(**{**base, **options}))


def bias(model: ConversationModel, boosts: dict[int, float]) -> ConversationModel:
    """Raise some tokens' output bias, to make a random model repeat or end early."""
    values = np.asarray(model.output_layer.bias).copy()
    for token, boost in boosts.items():
        values[token] += boost
    model.output_layer.bias.assign(values)
    return model


def some_state(model: ConversationModel, batch: int = 1) -> list[np.ndarray]:
    """A non-zero conversation state: the one after an exchange."""
    source = np.tile(np.array([[9, 10, 11]], np.int32), (batch, 1))
    target = np.tile(np.array([[BOS_ID, 12, 13]], np.int32), (batch, 1))
    out = model({"source": source, "target_in": target})
    return [np.asarray(s) for s in out["state"]]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def training_state(model, source: list[int], reply: list[int], state) -> list[np.ndarray]:
    """The state training carries after the exchange (source -> reply)."""
    out = model({"source": np.array([source or [PAD_ID]], np.int32),
                 "target_in": np.array([[BOS_ID, *reply]], np.int32),
                 "state": [np.asarray(s) for s in state]})
    return [np.asarray(s) for s in out["state"]]


def reference_greedy(model, source: list[int], state, settings: DecodeSettings):
    """Greedy search the slow, obvious way: the whole model over [bos] + the reply so far,
    once per token; returns the ids and the state of the exchange."""
    ids: list[int] = []
    zeros = [np.zeros_like(np.asarray(s)) for s in state]
    for t in range(settings.max_len + 1):
        target = np.array([[BOS_ID, *ids]], np.int32)
        out = model({"source": np.array([source], np.int32), "target_in": target,
                     "state": [np.asarray(s) for s in state]})
        scores = log_softmax(np.asarray(out["logits"])[0, -1].astype(np.float64))
        scores[[PAD_ID, BOS_ID, UNK_ID]] = -np.inf
        if t < settings.min_len:
            scores[EOS_ID] = -np.inf
        if t >= settings.max_len:
            scores[np.arange(VOCAB) != EOS_ID] = -np.inf
        if settings.antilm and (settings.antilm_gamma == 0 or t < settings.antilm_gamma):
            lm = model({"source": np.zeros((1, 1), np.int32), "target_in": target,
                        "state": zeros})
            outside = np.zeros(VOCAB, bool)
            if settings.antilm_top_k:  # candidates: the k likeliest allowed tokens
                outside[np.argsort(-scores)[settings.antilm_top_k:]] = True
            scores -= settings.antilm * log_softmax(np.asarray(lm["logits"])[0, -1])
            scores[outside] = -np.inf
        token = int(np.argmax(scores))
        if token == EOS_ID:
            return ids, [np.asarray(s) for s in out["state"]]
        ids.append(token)
    raise AssertionError("the reference never ended")


def assert_states_equal(a, b, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]


# --- settings ---------------------------------------------------------------------------


def test_settings_are_checked():
    for bad, match in [(dict(method="viterbi"), "unknown decoding method"),
                       (dict(beam_size=0), "beam_size"),
                       (dict(min_len=9, max_len=8), "min_len"),
                       (dict(max_len=0), "max_len"),
                       (dict(temperature=0.0), "temperature"),
                       (dict(top_p=0.0), "top_p"),
                       (dict(top_k=-1), "top_k"),
                       (dict(no_repeat_ngram=-2), "n-gram"),
                       (dict(antilm_top_k=-1), "antilm_top_k"),
                       (dict(beam_size=2.5), "integer"),
                       (dict(seed=-1), "seed")]:
        with pytest.raises(ChatbotError, match=match):
            DecodeSettings(**bad)
    with pytest.raises(ChatbotError, match="unknown decoding options: beams"):
        DecodeSettings().replace(beams=3)
    assert DecodeSettings().replace(method="beam").method == "beam"


def test_a_model_recommends_its_decoding_and_given_options_win(tmp_path):
    metadata = {"decoding": {"antilm": 0.8, "antilm_top_k": 20}}
    settings = for_model(metadata, method="greedy")
    assert (settings.method, settings.antilm, settings.antilm_top_k) == ("greedy", 0.8, 20)
    assert for_model({}) == DecodeSettings()
    assert for_model(metadata, antilm=0.0).antilm == 0.0
    for bad, reason in [({"decoding": ["beam"]}, "must be an object"),
                        ({"decoding": {"beams": 3}}, "unknown decoding options: beams"),
                        ({"decoding": {"top_p": 2}}, "top_p")]:
        with pytest.raises(ChatbotError, match=f"metadata.json, \"decoding\": .*{reason}"):
            for_model(bad)
    # A saved model's Responder decodes as its metadata recommends unless told otherwise.
    tokenizer = fit_tokenizer("word", ["hello there"], 20)
    path = directory.save(tmp_path / "m", tiny(vocab_size=tokenizer.vocab_size), tokenizer,
                          metadata)
    assert Responder(path).settings == for_model(metadata)
    assert Responder(path, PLAIN).settings == PLAIN


# --- the searches against plain references ----------------------------------------------


@pytest.mark.parametrize("options,boost", [
    (dict(family="seq2seq", cell="lstm"), {}),  # runs to max_len: the end is forced
    (dict(family="seq2seq", cell="gru", depth=(2, 1), peek=True), {EOS_ID: 4.0}),
    (dict(family="simple", cell="lstm", depth=(1, 2)), {EOS_ID: 3.0}),
    (dict(family="attention", cell="gru", attention_score="luong"), {}),
    (dict(family="attention", cell="lstm", depth=2), {EOS_ID: 3.0}),
])
def test_compiled_greedy_equals_step_by_step_reference(options, boost):
    model = bias(tiny(**options), boost)
    state = some_state(model)
    settings = PLAIN.replace(min_len=2)
    sources = [[5, 6, 7], [20, 21, 22, 23, 24], [30]]
    found = Search(model).run(sources, [np.repeat(s, 3, 0) for s in state], settings)
    for source, (hypothesis,) in zip(sources, found, strict=True):
        ids, reference_state = reference_greedy(model, source, state, settings)
        assert hypothesis.ids == ids
        # The state out is the training state of the exchange (source -> reply).
        assert_states_equal(hypothesis.state, reference_state)
        assert_states_equal(hypothesis.state, training_state(model, source, ids, state))


@pytest.mark.parametrize("family", ["attention", "seq2seq"])
def test_greedy_equals_beam_size_one(family):
    model = tiny(family=family, cell="lstm")
    state = [np.repeat(s, 3, 0) for s in some_state(model)]
    sources = [[5, 6, 7], [8], [9, 10, 11, 12, 13, 14]]
    search = Search(model)
    lengths = set()
    for boost in (0.0, 2.5):  # the end token likelier or not
        model = bias(model, {EOS_ID: boost})
        for settings in (PLAIN, DecodeSettings(no_repeat_ngram=2, length_penalty=1.0,
                                               min_len=3, max_len=10)):
            greedy = search.run(sources, state, settings)
            beam = search.run(sources, state, settings.replace(method="beam", beam_size=1))
            for (g,), (b,) in zip(greedy, beam, strict=True):
                assert g.ids == b.ids
                assert g.score == pytest.approx(b.score, abs=1e-5)
                assert_states_equal(g.state, b.state)
                lengths.add(len(g.ids))
    assert len(lengths) > 2  # replies ended early and late


def test_beams_are_sorted_scored_and_carry_their_training_state():
    model = bias(tiny(family="seq2seq", cell="lstm"), {EOS_ID: 2.0})
    state = some_state(model)
    source = [5, 6, 7, 8]
    settings = DecodeSettings(method="beam", beam_size=4, length_penalty=0.8, max_len=8,
                              no_repeat_ngram=0)
    (beams,) = Search(model).run([source], state, settings)
    assert len(beams) == 4
    scores = [b.score for b in beams]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(b.ids) for b in beams}) == 4
    for b in beams:
        # The score is the reply's log probability under the model, end included,
        # over the GNMT length penalty.
        target_in = np.array([[BOS_ID, *b.ids]], np.int32)
        out = model({"source": np.array([source], np.int32), "target_in": target_in,
                     "state": state})
        logits = np.asarray(out["logits"])[0].astype(np.float64)
        logp = sum(log_softmax(row)[token] for row, token in zip(logits, [*b.ids, EOS_ID],
                                                                  strict=True))
        penalty = ((5 + len(b.ids) + 1) / 6) ** 0.8
        assert b.score == pytest.approx(logp / penalty, abs=1e-4)
        assert_states_equal(b.state, out["state"])
    greedy = Search(model).run([source], state, settings.replace(method="greedy"))[0][0]
    assert greedy.ids in [b.ids for b in beams]  # beam search keeps the greedy path here


def test_sampling_near_zero_temperature_is_greedy_and_seeds_repeat():
    model = tiny(family="seq2seq", cell="gru")
    state = [np.repeat(s, 2, 0) for s in some_state(model)]
    sources = [[5, 6, 7], [8, 9]]
    search = Search(model)
    greedy = [h[0].ids for h in search.run(sources, state, PLAIN)]
    sample = PLAIN.replace(method="sample", seed=7)
    for change in (dict(temperature=1e-4), dict(top_k=1), dict(top_p=1e-3),
                   dict(temperature=1e-4, top_k=5, top_p=0.9)):
        found = search.run(sources, state, sample.replace(**change))
        assert [h[0].ids for h in found] == greedy, change
    hot = sample.replace(temperature=1.5)
    first = [h[0].ids for h in search.run(sources, state, hot)]
    assert [h[0].ids for h in search.run(sources, state, hot)] == first
    one = [s[:1] for s in state]
    others = {tuple(search.run(sources[:1], one, hot.replace(seed=seed))[0][0].ids)
              for seed in range(6)}
    assert len(others) > 1  # different seeds, different replies


def test_top_k_keeps_the_k_likeliest_tokens():
    model = tiny()
    state = some_state(model)
    settings = PLAIN.replace(method="sample", top_k=3, temperature=5.0, max_len=1, min_len=1)
    out = model({"source": np.array([[5, 6]], np.int32),
                 "target_in": np.array([[BOS_ID]], np.int32), "state": state})
    logits = np.asarray(out["logits"])[0, -1].copy()
    logits[[PAD_ID, BOS_ID, UNK_ID, EOS_ID]] = -np.inf
    allowed = set(np.argsort(logits)[-3:].tolist())
    search = Search(model)
    drawn = {search.run([[5, 6]], state, settings.replace(seed=s))[0][0].ids[0]
             for s in range(40)}
    assert drawn <= allowed and len(drawn) > 1


# --- constraints ------------------------------------------------------------------------


@pytest.fixture(params=["greedy", "beam", "sample"])
def repeating(request):
    """A search over a model that says "7 7 7 ...", by each method: (run, base settings),
    run(settings) giving the hypotheses of one reply."""
    model = bias(tiny(), {7: 6.0, 8: 5.0})
    state = some_state(model)
    base = DecodeSettings(method=request.param, beam_size=3, seed=1, temperature=0.5,
                          no_repeat_ngram=0, min_len=10, max_len=12)
    search = Search(model)
    return (lambda settings: search.run([[5, 6]], state, settings)[0]), base


def test_no_repeated_ngram_inside_a_reply(repeating):
    run, base = repeating
    unblocked = run(base)[0].ids
    assert len(set(ngrams(unblocked, 2))) < len(ngrams(unblocked, 2))  # it does repeat
    for n in (1, 2):
        for hypothesis in run(base.replace(no_repeat_ngram=n)):
            grams = ngrams(hypothesis.ids, n)
            assert len(grams) == len(set(grams)), (n, hypothesis.ids)
            assert len(hypothesis.ids) >= 10


def test_no_token_right_after_itself(repeating):
    run, base = repeating
    unblocked = run(base)[0].ids
    assert any(a == b for a, b in zip(unblocked, unblocked[1:], strict=False))  # stutters
    for hypothesis in run(base.replace(no_adjacent_repeat=True)):
        ids = hypothesis.ids
        assert len(ids) >= 10, ids
        assert all(a != b for a, b in zip(ids, ids[1:], strict=False)), ids
        assert ids.count(7) > 1  # only the stutter is banned: 7 comes back later
    with pytest.raises(ChatbotError, match="no_adjacent_repeat must be true or false"):
        DecodeSettings(no_adjacent_repeat="yes")


def test_blocking_the_user_turn_ngrams():
    source = [5, 6, 7, 8]
    # With no token twice, this model copies the turn: 5 6 7 8 ...
    model = bias(tiny(), {5: 12.0, 6: 11.0, 7: 10.0, 8: 9.0})
    state = some_state(model)
    settings = DecodeSettings(no_repeat_ngram=1, min_len=6, max_len=6)
    search = Search(model)
    copied = search.run([source], state, settings)[0][0].ids
    assert copied[:4] == source
    for n, method in ((1, "greedy"), (2, "greedy"), (3, "greedy"), (2, "beam")):
        found = search.run([source], state, settings.replace(
            block_source_ngrams=n, method=method, beam_size=2))[0]
        for hypothesis in found:
            assert not set(ngrams(hypothesis.ids, n)) & set(ngrams(source, n)), (
                n, hypothesis.ids)


def test_min_and_max_len():
    model = bias(tiny(), {EOS_ID: 10.0})  # would end at once
    state = some_state(model)
    search = Search(model)
    for method in ("greedy", "beam", "sample"):
        settings = DecodeSettings(method=method, seed=0, beam_size=2, no_repeat_ngram=0)
        assert all(len(h.ids) == 1 for h in search.run([[5]], state, settings)[0])
        for h in search.run([[5]], state, settings.replace(min_len=4, max_len=6))[0]:
            assert len(h.ids) == 4
    model = bias(model, {EOS_ID: -30.0})  # would never end
    for method in ("greedy", "beam"):
        settings = DecodeSettings(method=method, beam_size=2, max_len=5, no_repeat_ngram=0)
        for h in search.run([[5]], state, settings)[0]:
            assert len(h.ids) == 5
            assert_states_equal(h.state, training_state(model, [5], h.ids, state))


def test_antilm_follows_li_et_al():
    model = tiny(seed=3, family="attention", cell="gru")
    state = some_state(model)
    source = [5, 6, 7]
    plain = PLAIN.replace(min_len=3)
    search = Search(model)
    # On every token, on the first two; among all tokens, among the 3 likeliest.
    for gamma, top_k in ((0, 0), (2, 0), (0, 3), (2, 3)):
        settings = plain.replace(antilm=1.5, antilm_gamma=gamma, antilm_top_k=top_k)
        found = search.run([source], state, settings)[0][0]
        assert found.ids == reference_greedy(model, source, state, settings)[0]
        assert found.ids != search.run([source], state, plain)[0][0].ids  # it mattered
        beam = search.run([source], state, settings.replace(method="beam", beam_size=1))
        assert beam[0][0].ids == found.ids


# --- compilation ------------------------------------------------------------------------


def test_no_retrace_for_new_lengths_batches_or_numbers():
    model = tiny(family="attention")
    search = Search(model)
    for settings in (DecodeSettings(), DecodeSettings(method="beam", beam_size=3)):
        for sources in ([[5]], [[5, 6, 7, 8, 9]], [[5, 6], [7, 8, 9, 10, 11, 12, 13]]):
            states = [np.zeros((len(sources), 16), np.float32) for _ in range(2)]
            for changed in (settings, settings.replace(max_len=5, length_penalty=0.1)):
                search.run(sources, states, changed)
        assert search.function(settings).experimental_get_tracing_count() == 1


def test_xla_gives_the_same_replies():
    model = tiny(family="seq2seq", cell="lstm")
    state = [np.repeat(s, 2, 0) for s in some_state(model)]
    sources = [[5, 6, 7], [8, 9]]
    settings = PLAIN.replace(method="beam", beam_size=3)
    plain = Search(model).run(sources, state, settings)
    xla = Search(model, jit_compile=True).run(sources, state, settings)
    for p, x in zip(plain, xla, strict=True):
        assert [h.ids for h in p] == [h.ids for h in x]
        for a, b in zip(p, x, strict=True):
            assert_states_equal(a.state, b.state)


# --- the Responder ----------------------------------------------------------------------


@pytest.fixture
def model_dir():
    texts = ["hello there", "how are you ?", "fine , thanks", "what is your name ?"]
    return tiny_model_dir(texts, seed=1, eos_boost=2.0, family="attention",
                          metadata={"options": {"max_len": "6"}})


def test_responder_replies_carry_state_and_batches_match_single_replies(model_dir):
    responder = Responder(model_dir, DecodeSettings(method="beam", beam_size=3))
    texts = ["hello there", "how are you ?", "what is your name ? fine , thanks"]
    singles = []
    state = responder.zero_state()
    for text in texts:
        reply, new_state, info = responder.reply(text, state)
        singles.append((reply, new_state, info))
        # The new state is the training state of the exchange (the turn -> the reply).
        source = responder.encode(text)
        assert len(source) <= 6  # cut to the training max_len, keeping the end
        assert_states_equal(new_state, training_state(responder.model, source,
                                                      list(info.ids), state))
        assert info.tokens == len(info.ids) and info.latency_ms > 0
        assert reply == responder.tokenizer.decode(info.ids)
        assert [c.score for c in info.candidates] == sorted(
            (c.score for c in info.candidates), reverse=True)
        state = new_state
    # A batch: each conversation its own state, decoded together, the same replies.
    states = [None, singles[0][1], singles[1][1]]
    batch = Responder(directory.load(model_dir)).reply_batch(
        texts, states, DecodeSettings(method="beam", beam_size=3))
    for (reply, new_state, info), (s_reply, s_state, s_info) in zip(batch, singles,
                                                                     strict=True):
        assert (reply, info.ids) == (s_reply, s_info.ids)
        assert info.score == pytest.approx(s_info.score, abs=1e-5)
        assert_states_equal(new_state, s_state)
    with pytest.raises(ChatbotError, match="does not fit the model"):
        responder.reply("hello", [np.zeros((1, 8), np.float32)])
    with pytest.raises(ChatbotError, match="2 turns but 1 states"):
        responder.reply_batch(["a", "b"], [None])


def test_a_model_without_context_ignores_the_state(tmp_path):
    tokenizer = fit_tokenizer("word", ["hello there", "how are you ?"], 50)
    model = tiny(vocab_size=tokenizer.vocab_size, context_sensitive=False)
    responder = Responder(directory.ModelDirectory(tmp_path, model, tokenizer, model.config_))
    settings = DecodeSettings(max_len=5)
    first, state, _ = responder.reply("how are you ?", None, settings)
    assert responder.reply("how are you ?", state, settings)[0] == first
    assert_states_equal(responder.reply("how are you ?", state, settings)[1], state)


# --- context in a trained model ---------------------------------------------------------

NAMES = ["alice", "bob", "carol", "dave"]


def name_conversations() -> list[list[str]]:
    """Who am I? Only the earlier turns of the conversation know."""
    named = [[f"hi , i am {n} .", f"hello {n} !", "who am i ?", f"you are {n} ."]
             for n in NAMES]
    return [*named, ["who am i ?", "i do not know ."]]


def train(conversations: list[list[str]], steps: int):
    """A tiny model trained on whole conversations, the state carried exchange to exchange
    as the training loop carries it."""
    keras.utils.set_random_seed(0)
    tokenizer = fit_tokenizer("word", [t for c in conversations for t in c], 100)
    model = ConversationModel(ModelConfig(vocab_size=tokenizer.vocab_size, embedding_dim=16,
                                          hidden_dim=32))
    losses = fit(model, batches(tokenizer, conversations), keras.optimizers.Adam(0.02), steps)
    return model, tokenizer, losses


def test_a_trained_reply_depends_on_the_conversation_and_a_reset_forgets_it(tmp_path):
    model, tokenizer, losses = train(name_conversations(), 120)
    assert losses[-1] < 0.05, losses[-5:]
    responder = Responder(directory.save(tmp_path / "m", model, tokenizer),
                          DecodeSettings(method="beam", beam_size=3))
    text = tokenizer.decode  # the way replies come back
    alone, alone_state, _ = responder.reply("who am i ?")
    assert alone == text(tokenizer.encode("i do not know ."))
    chat = Conversation(responder)
    for name in NAMES[:2]:
        chat.reset()
        assert chat.say(f"hi , i am {name} .")[0] == text(tokenizer.encode(f"hello {name} !"))
        assert chat.say("who am i ?")[0] == text(tokenizer.encode(f"you are {name} ."))
    chat.reset()
    again, _ = chat.say("who am i ?")
    assert again == alone
    assert_states_equal(chat.state, alone_state, atol=0)
