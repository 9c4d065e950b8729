"""--mixed-precision: bfloat16 compute on the CPU (float16 with loss scaling on a GPU),
float32 weights, loss and carried state; exact resume; the global policy left alone."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from chatbot.cli import cli  # noqa: E402
from chatbot.model.config import ModelConfig  # noqa: E402
from chatbot.train import precision  # noqa: E402
from chatbot.train.precision import BFLOAT16, FLOAT16, FLOAT32  # noqa: E402


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory):
    """Two ChatterBot files: an epoch of a few steps."""
    from chatbot.corpus.ingest import builtin_inputs

    files, _ = builtin_inputs("chatterbot:english")
    db = tmp_path_factory.mktemp("tiny") / "t.db"
    chosen = [str(f) for f in files if f.name in ("greetings.yml", "emotion.yml")]
    result = CliRunner().invoke(cli, ["ingest", *chosen, "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db


def _trainer(db, model_dir, resume=False, **changes):
    from chatbot.train.loop import Trainer, TrainOptions

    options = TrainOptions(db=db, model_dir=model_dir, **{
        "batch_size": 8, "checkpoint_every": 4, "valid_fraction": 0.1, "log_every": 1,
        "learning_rate": 0.01, "mixed_precision": True, **changes})
    config = ModelConfig(family="seq2seq", cell="lstm", vocab_size=8000, embedding_dim=8,
                         hidden_dim=16)
    if resume:
        from chatbot.model.directory import read_config

        config = read_config(model_dir)
    return Trainer(options, config, resume=resume)


def _train_losses(model_dir) -> list[float]:
    records = [json.loads(line) for line in
               (model_dir / "history.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


@pytest.fixture
def float16_on_cpu(monkeypatch):
    """Trainers choose float16 and loss scaling, as on a GPU (float16 runs on the CPU,
    slowly: enough for a tiny model)."""
    choose = precision.choose
    monkeypatch.setattr(precision, "choose", lambda mixed, gpu=None: choose(mixed, gpu=True))


# --- the policy choice -------------------------------------------------------------------

def test_the_policy_follows_the_device():
    sgd = keras.optimizers.SGD(0.1)
    on_gpu = precision.choose(True, gpu=True)
    assert on_gpu.policy == FLOAT16 and on_gpu.loss_scaling
    wrapped = precision.wrap_optimizer(sgd, on_gpu)
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert wrapped.inner_optimizer is sgd
    assert precision.checkpointed(wrapped) == {"optimizer": sgd, "loss_scale": wrapped}
    on_cpu = precision.choose(True, gpu=False)
    assert on_cpu.policy == BFLOAT16 and not on_cpu.loss_scaling
    assert precision.wrap_optimizer(sgd, on_cpu) is sgd
    assert precision.checkpointed(sgd) == {"optimizer": sgd}
    for gpu in (True, False, None):
        assert precision.choose(False, gpu=gpu).policy == FLOAT32
    # None: asks TensorFlow (this machine's answer, whichever it is).
    expected = FLOAT16 if tf.config.list_logical_devices("GPU") else BFLOAT16
    assert precision.choose(True).policy == expected


def test_the_policy_holds_only_inside_the_block_even_when_it_fails():
    assert keras.config.dtype_policy().name == FLOAT32
    with precision.building(precision.Precision(BFLOAT16)):
        assert keras.config.dtype_policy().name == BFLOAT16
        inside = keras.layers.Dense(2)
    with pytest.raises(RuntimeError), precision.building(precision.Precision(FLOAT16)):
        raise RuntimeError("build failed")
    assert keras.config.dtype_policy().name == FLOAT32
    assert inside.compute_dtype == "bfloat16" and keras.layers.Dense(2).compute_dtype == "float32"


# --- the network in a mixed policy ---------------------------------------------------------

@pytest.mark.parametrize("policy", [BFLOAT16, FLOAT16])
@pytest.mark.parametrize("config", [
    {"family": "seq2seq", "cell": "lstm", "depth": 2},
    {"family": "attention", "cell": "lstm", "tie_embeddings": True, "dropout": 0.1},
    {"family": "simple", "cell": "gru", "peek": False},
    {"family": "seq2seq", "cell": "gru", "peek": True},
])
def test_exchanges_take_and_give_float32_state_and_train(policy, config):
    from chatbot.model.loss import real_token_loss
    from chatbot.model.network import ConversationModel

    keras.utils.set_random_seed(3)
    with precision.building(precision.Precision(policy)):
        model = ConversationModel(ModelConfig(vocab_size=30, embedding_dim=8, hidden_dim=8,
                                              **config))
    compute = policy.removeprefix("mixed_")
    assert model.compute_dtype == compute
    assert {v.dtype for v in model.weights} == {"float32"}
    source = np.array([[4, 5, 6, 0], [7, 8, 0, 0]], "int32")
    target = np.array([[2, 9, 10], [2, 11, 0]], "int32")
    state = model.zero_state(2)
    with tf.GradientTape() as tape:
        for _ in range(2):  # the state carried to a second exchange
            features, state = model.exchange({"source": source, "target_in": target,
                                              "state": state}, training=True)
            assert features.dtype == compute
            assert [s.dtype for s in state] == [tf.float32] * len(state)
        loss, _ = real_token_loss(features, target, model.output_layer)
    assert loss.dtype == tf.float32 and np.isfinite(float(loss))
    grads = tape.gradient(loss, model.trainable_variables)
    grads = [tf.convert_to_tensor(g) for g in grads if g is not None]  # embedding: sparse
    assert grads and all(g.dtype == tf.float32 and np.all(np.isfinite(g.numpy()))
                         for g in grads)
    assert model({"source": source, "target_in": target})["logits"].dtype == tf.float32


def test_the_fast_lstm_in_bfloat16_computes_what_keras_does():
    from chatbot.model import fast_lstm

    with precision.building(precision.Precision(BFLOAT16)):
        layer = keras.layers.LSTM(8, return_sequences=True, return_state=True)
    rng = np.random.default_rng(0)
    mask = tf.sequence_mask([5, 2, 0, 4], 5)
    x = tf.constant(rng.normal(size=(4, 5, 3)), tf.float32) * tf.cast(mask, tf.float32)[..., None]
    initial = [tf.constant(rng.normal(size=(4, 8)) * 0.5, tf.float32) for _ in range(2)]
    keras_out, *keras_state = layer(x, mask=mask, initial_state=initial)
    assert fast_lstm.applies(layer)
    fast_out, fast_state = fast_lstm.run(layer, x, mask, initial, training=True)
    assert fast_out.dtype == keras_out.dtype == tf.bfloat16
    real = tf.cast(mask, tf.float32)[..., None]
    np.testing.assert_allclose(tf.cast(fast_out, tf.float32) * real,
                               tf.cast(keras_out, tf.float32) * real, atol=0.03)
    for fast, slow in zip(fast_state, keras_state, strict=True):
        np.testing.assert_allclose(tf.cast(fast, tf.float32), tf.cast(slow, tf.float32),
                                   atol=0.03)


# --- training -----------------------------------------------------------------------------

STEPS = 10


@pytest.fixture(scope="module")
def straight(tiny_db, tmp_path_factory):
    """A bfloat16 run of STEPS steps that nobody stopped: the trainer and its directory."""
    model_dir = tmp_path_factory.mktemp("straight") / "m"
    trainer = _trainer(tiny_db, model_dir, max_steps=STEPS)
    # The policy was set for the build only: models made from here on are float32.
    assert keras.config.dtype_policy().name == FLOAT32
    result = trainer.run()
    assert result.steps == STEPS
    return trainer, model_dir


def test_trains_in_bfloat16_on_the_cpu_and_the_model_loads_in_float32(straight):
    from chatbot.decode.responder import Responder
    from chatbot.model import directory

    trainer, model_dir = straight
    assert trainer.precision.policy == BFLOAT16
    assert trainer.model.compute_dtype == "bfloat16"
    assert {v.dtype for v in trainer.model.weights} == {"float32"}
    assert not isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert [v.dtype for v in trainer.carry] == [tf.float32] * len(trainer.carry)
    losses = _train_losses(model_dir)
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.2, losses  # about 6.0 -> 5.7
    # Chat and decoding build the model float32 and take the weights as trained.
    loaded = directory.load(model_dir)
    assert loaded.model.compute_dtype == "float32"
    for saved, trained in zip(loaded.model.weights, trainer.model.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(saved), trained.numpy())
    reply, state, info = Responder(loaded).reply("hello")
    assert isinstance(reply, str) and info.tokens == len(info.ids)
    assert [np.asarray(s).dtype for s in state] == [np.float32] * len(state)


def test_resume_inside_an_epoch_continues_exactly_in_bfloat16(tiny_db, tmp_path, straight):
    first = _trainer(tiny_db, tmp_path / "m", max_steps=STEPS // 2)
    first.run()
    assert first.position.numpy() > 0  # stopped inside an epoch, the lanes' state carried
    assert keras.config.dtype_policy().name == FLOAT32
    resumed = _trainer(tiny_db, tmp_path / "m", resume=True, max_steps=STEPS)
    assert resumed.resumed_from == STEPS // 2 and resumed.model.compute_dtype == "bfloat16"
    resumed.run()
    assert resumed.weights_digest() == straight[0].weights_digest()


def test_float16_scales_the_loss_and_resumes_exactly_with_its_scale(tiny_db, tmp_path,
                                                                   float16_on_cpu):
    straight = _trainer(tiny_db, tmp_path / "a", max_steps=6)
    assert straight.model.compute_dtype == "float16"
    assert isinstance(straight.optimizer, keras.optimizers.LossScaleOptimizer)
    straight.run()
    assert all(np.isfinite(_train_losses(tmp_path / "a")))
    scale = float(straight.optimizer.dynamic_scale.numpy())
    counter = int(straight.optimizer.step_counter.numpy())
    assert counter > 0  # steps went through the scaling (none overflowed after the last)
    first = _trainer(tiny_db, tmp_path / "b", max_steps=3)
    first.run()
    saved = dict(tf.train.list_variables(str(tmp_path / "b" / "checkpoints")))
    assert "loss_scale/dynamic_scale/.ATTRIBUTES/VARIABLE_VALUE" in saved
    resumed = _trainer(tiny_db, tmp_path / "b", resume=True, max_steps=6)
    resumed.run()
    assert float(resumed.optimizer.dynamic_scale.numpy()) == scale
    assert int(resumed.optimizer.step_counter.numpy()) == counter
    assert resumed.weights_digest() == straight.weights_digest()
    assert keras.config.dtype_policy().name == FLOAT32
