"""The conversational seq2seq network: shapes, explicit state, resets, save and load."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from chatbot.errors import ChatbotError  # noqa: E402
from chatbot.model.config import ModelConfig  # noqa: E402
from chatbot.model.network import ConversationModel  # noqa: E402

SOURCE = np.array([[5, 6, 7, 0], [8, 9, 10, 11]], dtype="int32")
TARGET = np.array([[2, 5, 6], [2, 7, 0]], dtype="int32")


def small(**options) -> ConversationModel:
    keras.utils.set_random_seed(1)
    base = dict(vocab_size=40, embedding_dim=8, hidden_dim=16)
    return ConversationModel(ModelConfig(**{**base, **options}))


def run(model, state=None, reset=None, source=SOURCE, target=TARGET):
    inputs = {"source": source, "target_in": target}
    if state is not None:
        inputs["state"] = state
    if reset is not None:
        inputs["reset"] = np.array(reset)
    out = model(inputs)
    return np.asarray(out["logits"]), out["state"]


@pytest.mark.parametrize(
    "family,cell,depth",
    list(itertools.product(["simple", "seq2seq", "attention"], ["lstm", "gru"],
                           [1, 2, (2, 1), (1, 3)])),
)
def test_shapes(family, cell, depth):
    model = small(family=family, cell=cell, depth=depth, peek=family == "seq2seq")
    logits, state = run(model)
    assert logits.shape == (2, 3, 40)
    decoder_depth = depth if isinstance(depth, int) else depth[1]
    per_layer = 2 if cell == "lstm" else 1
    assert [tuple(s.shape) for s in state] == [(2, 16)] * (decoder_depth * per_layer)


@pytest.mark.parametrize("family", ["simple", "seq2seq", "attention"])
def test_carried_state_changes_replies_and_reset_restores_the_first_turn(family):
    model = small(family=family)
    first, state = run(model)
    second, _ = run(model, state=state)
    assert not np.allclose(first, second, atol=1e-5)  # the context changed the distribution
    restored, _ = run(model, state=state, reset=[True, True])
    np.testing.assert_array_equal(restored, first)


def test_reset_mask_zeroes_only_the_marked_rows():
    model = small(family="seq2seq", cell="lstm")
    first, state = run(model)
    carried, _ = run(model, state=state)
    mixed, _ = run(model, state=state, reset=[True, False])
    np.testing.assert_array_equal(mixed[0], first[0])
    np.testing.assert_allclose(mixed[1], carried[1], rtol=1e-6, atol=1e-6)


def test_without_context_every_exchange_starts_from_zero():
    model = small(family="seq2seq", context_sensitive=False)
    first, state = run(model)
    again, _ = run(model, state=state)
    np.testing.assert_array_equal(again, first)


def test_padding_rows_keep_their_state():
    """A row whose conversation has no exchange at this step passes its state through."""
    model = small(family="seq2seq", cell="gru")
    _, state = run(model)
    empty = np.zeros_like(SOURCE)
    _, after = run(model, state=state, source=empty, target=np.zeros_like(TARGET))
    for before, now in zip(state, after, strict=True):
        np.testing.assert_allclose(np.asarray(now), np.asarray(before), atol=1e-6)


@pytest.mark.parametrize("family", ["simple", "seq2seq", "attention"])
def test_save_and_load_give_identical_outputs(tmp_path, family):
    model = small(family=family, cell="gru", depth=(2, 1), peek=family == "seq2seq")
    logits, state = run(model)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.config_ == model.config_
    loaded_logits, loaded_state = run(loaded)
    np.testing.assert_array_equal(loaded_logits, logits)
    np.testing.assert_array_equal(run(loaded, state=state)[0], run(model, state=state)[0])


def test_config_validation():
    with pytest.raises(ChatbotError, match="unknown model family"):
        ModelConfig(family="transformer")
    with pytest.raises(ChatbotError, match="depth"):
        ModelConfig(depth=(0, 1))
    with pytest.raises(ChatbotError, match="unknown model options"):
        ModelConfig.from_dict({"hidden": 3})
    config = ModelConfig(depth=[2, 1])
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_held_state_resets_per_row():
    model = small(family="seq2seq", cell="lstm")
    model.hold_state(2)
    inputs = {"source": SOURCE, "target_in": TARGET}
    first = np.asarray(model(inputs))
    second = np.asarray(model(inputs))  # starts from the state the first call left
    assert not np.allclose(first, second, atol=1e-5)
    model.reset_state(rows=np.array([True, False]))
    third = np.asarray(model(inputs))
    np.testing.assert_array_equal(third[0], first[0])
    assert not np.allclose(third[1], first[1], atol=1e-5)
    model.reset_state()
    np.testing.assert_array_equal(np.asarray(model(inputs)), first)


def test_dropout_reaches_the_output_features_in_training_only():
    model = small(dropout=0.5)
    inputs = {"source": SOURCE, "target_in": TARGET}
    features = [np.asarray(model.exchange(inputs, training=True)[0]) for _ in range(2)]
    # Dropped features are exact zeros, which an LSTM's output never is.
    assert (features[0] == 0).mean() > 0.3 and not np.allclose(features[0], features[1])
    inference = [np.asarray(model.exchange(inputs)[0]) for _ in range(2)]
    assert np.array_equal(inference[0], inference[1]) and (inference[0] != 0).all()


@pytest.mark.parametrize("hidden", [8, 16])  # the embedding size, or a projection to it
def test_tied_embeddings_share_one_matrix_and_survive_save(tmp_path, hidden):
    model = small(tie_embeddings=True, hidden_dim=hidden)
    untied = small(hidden_dim=hidden)
    # The vocabulary projection adds a bias (and a map to the embedding size), no matrix.
    assert untied.count_params() - model.count_params() == 40 * hidden - (
        0 if hidden == 8 else hidden * 8)
    logits, _ = run(model)
    # Scaling the row of token 30 (read nowhere) moves its logit, and its alone.
    embeddings = model.embedding.embeddings
    table = np.asarray(embeddings).copy()
    table[30] *= 3
    embeddings.assign(table)
    after, _ = run(model)
    changed = ~np.isclose(after, logits, atol=1e-6)
    assert changed[..., 30].all() and not changed[..., np.arange(40) != 30].any()
    table[30] /= 3
    embeddings.assign(table)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.config_ == model.config_
    np.testing.assert_allclose(run(loaded)[0], logits, atol=1e-6)
