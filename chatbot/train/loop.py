"""The training loop: lanes of conversations, masked loss, checkpoints, resume, validation.

Crash safety: `tf.train.CheckpointManager` writes each checkpoint under new names and
then rewrites its small index file atomically, so a kill at any moment leaves the last
complete checkpoint; the model directory's files are each replaced by a rename.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.model import directory
from chatbot.model.config import ModelConfig

CHECKPOINTS = "checkpoints"
STATE_FILE = "training.json"


@dataclass(frozen=True)
class TrainOptions:
    """Everything `chatbot train` takes besides the model's own config."""

    db: Path
    model_dir: Path
    tokenizer: str = "word"
    vocab_size: int = 8000
    batch_size: int = 32
    epochs: int = 10
    max_steps: int | None = None
    valid_fraction: float = 0.05
    checkpoint_every: int = 500
    seed: int = 0
    max_len: int = 40  # tokens per turn; longer turns are cut
    optimizer: str = "adam"  # or "rmsprop", as in the Keras example
    learning_rate: float = 1e-3
    clipnorm: float = 1.0
    patience: int = 3  # epochs without a better validation perplexity before stopping
    pool: int = 1024  # conversations in the shuffle pool


@dataclass
class TrainResult:
    """What `--json` prints."""

    steps: int = 0
    epochs: int = 0
    train_perplexity: float | None = None
    valid_perplexity: float | None = None
    tokens_per_second: float | None = None
    resumed_from_step: int = 0
    messages: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["messages"]
        return data


def saved_options(model_dir: Path) -> dict[str, Any]:
    """The training options a run in `model_dir` started with ({} if none were saved)."""
    path = Path(model_dir) / STATE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ChatbotError(f"{path}: not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def _perplexity(loss_sum: float, tokens: int) -> float | None:
    return math.exp(min(loss_sum / tokens, 50.0)) if tokens else None


class Trainer:
    """Trains one model directory; `run()` does the epochs."""

    def __init__(self, options: TrainOptions, config: ModelConfig, resume: bool = False,
                 on_step: Callable[[int, float, float], None] | None = None) -> None:
        import keras
        import tensorflow as tf

        from chatbot.corpus.store import CorpusStore
        from chatbot.model.network import ConversationModel
        from chatbot.text.tokenizer import fit_tokenizer, load_tokenizer

        self.options, self.on_step = options, on_step
        if not Path(options.db).exists():
            raise ChatbotError(f"{options.db}: no corpus database; run `chatbot ingest` first")
        self.store = CorpusStore(options.db)
        if self.store.stats()["conversations"] == 0:
            raise ChatbotError(f"{options.db}: the corpus has no conversation of two turns; "
                               "ingest some first")
        model_dir = Path(options.model_dir)
        checkpoints = model_dir / CHECKPOINTS
        if resume:
            if not checkpoints.is_dir():
                raise ChatbotError(f"{model_dir}: nothing to resume (no checkpoints there)")
            saved = directory.read_config(model_dir)
            if saved != config:
                changed = sorted(k for k, v in config.to_dict().items()
                                 if saved.to_dict().get(k) != v)
                raise ChatbotError(f"{model_dir}: built with other options than given "
                                   f"({', '.join(changed)}); drop them or use a new directory")
            self.tokenizer = load_tokenizer(model_dir)
        else:
            if (model_dir / directory.CONFIG_FILE).exists():
                raise ChatbotError(f"{model_dir}: a model is already there; pass --resume "
                                   "to continue it, or choose another directory")
            keras.utils.set_random_seed(options.seed)
            self.tokenizer = fit_tokenizer(options.tokenizer, self.store, options.vocab_size)
            config = ModelConfig.from_dict({**config.to_dict(),
                                            "vocab_size": self.tokenizer.vocab_size})
            # Self-describing from the first moment: --resume checks these.
            model_dir.mkdir(parents=True, exist_ok=True)
            self.tokenizer.save(model_dir)
            write_atomic(model_dir / directory.CONFIG_FILE,
                                       config.to_json().encode())
            write_atomic(model_dir / STATE_FILE, json.dumps(
                {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
                indent=2).encode())
        self.config = config
        self.model = ConversationModel(config)
        self.model.hold_state(options.batch_size)
        optimizer_class = {"adam": keras.optimizers.Adam,
                           "rmsprop": keras.optimizers.RMSprop}[options.optimizer]
        self.optimizer = optimizer_class(options.learning_rate, clipnorm=options.clipnorm)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)  # batches into epoch
        self.best = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.stale = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
            position=self.position, best=self.best, stale=self.stale)
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoints, max_to_keep=2)
        self.resumed_from = 0
        if resume and self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).expect_partial()
            self.resumed_from = int(self.step.numpy())
        self._validated: tuple[int, float | None] | None = None
        self._train_step = self._compile(training=True)
        self._eval_step = self._compile(training=False)

    def _compile(self, training: bool):
        import tensorflow as tf

        from chatbot.model.loss import masked_cross_entropy

        model, optimizer = self.model, self.optimizer
        batch = self.options.batch_size
        spec = (tf.TensorSpec((batch, None), tf.int32),) * 3 + (tf.TensorSpec((batch,), tf.bool),)

        @tf.function(input_signature=spec)
        def step(source, target_in, target_out, reset):
            inputs = {"source": source, "target_in": target_in, "reset": reset}
            if not training:
                logits = model(inputs, training=False)
                loss, tokens = masked_cross_entropy(target_out, logits)
                return loss * tokens, tokens
            with tf.GradientTape() as tape:
                logits = model(inputs, training=True)
                loss, tokens = masked_cross_entropy(target_out, logits)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss * tokens, tokens

        return step

    def _batches(self, split: str, epoch: int):
        from chatbot.train.data import conversations, lanes, shuffled

        o = self.options
        items = conversations(self.store, self.tokenizer, split, o.valid_fraction, o.max_len)
        if split == "train":
            items = shuffled(items, o.pool, o.seed * 100_003 + epoch)
        return lanes(items, o.batch_size)

    def evaluate(self, split: str = "valid") -> float | None:
        """Perplexity per real target token over a split, the state carried as in training."""
        self.model.reset_state()
        loss_sum, tokens = 0.0, 0
        for b in self._batches(split, 0):
            loss, count = self._eval_step(b.source, b.target_in, b.target_out, b.reset)
            loss_sum, tokens = loss_sum + float(loss), tokens + int(count)
        return _perplexity(loss_sum, tokens)

    def _validate(self) -> float | None:
        """Validation perplexity at the current step (computed once per step)."""
        step = int(self.step.numpy())
        if self._validated is None or self._validated[0] != step:
            self._validated = (step, self.evaluate("valid"))
        return self._validated[1]

    def save_checkpoint(self) -> None:
        self.manager.save(checkpoint_number=int(self.step.numpy()))

    def run(self) -> TrainResult:
        """Train until the epochs, --max-steps or early stopping say stop."""
        result = TrainResult(resumed_from_step=self.resumed_from)
        meter = _Meter()
        if self._finished():
            result.messages.append(f"{self.options.model_dir}: training already finished at "
                                   f"step {int(self.step.numpy())}; nothing to do")
            return self._fill(result, None, meter)
        try:
            while not self._finished():
                if self._train_epoch(meter):
                    self._end_epoch()
        except KeyboardInterrupt:
            self.save_checkpoint()  # Ctrl-C: keep every finished step
            raise
        valid = self._validate()
        if valid is None or not self._has_model() or valid < float(self.best.numpy()):
            # Without a validation split the latest model is the one to keep.
            if valid is not None:
                self.best.assign(min(valid, float(self.best.numpy())))
            self._export(valid)
        self.save_checkpoint()
        return self._fill(result, valid, meter)

    def _train_epoch(self, meter: _Meter) -> bool:
        """Train from the saved position; True when the epoch ran to its end."""
        o = self.options
        skip = int(self.position.numpy())
        self.model.reset_state()
        for index, b in enumerate(self._batches("train", int(self.epoch.numpy()))):
            if index < skip:
                continue  # resuming inside an epoch: the same seeded order, skipped
            start = time.perf_counter()
            loss, count = self._train_step(b.source, b.target_in, b.target_out, b.reset)
            meter.add(float(loss), int(count), time.perf_counter() - start)
            self.step.assign_add(1)
            self.position.assign(index + 1)
            step = int(self.step.numpy())
            if self.on_step:
                self.on_step(step, meter.last_loss, meter.rate or 0.0)
            if step % o.checkpoint_every == 0:
                self.save_checkpoint()
            if o.max_steps is not None and step >= o.max_steps:
                return False
        return True

    def _end_epoch(self) -> None:
        """Validation, the best model kept, early stopping; then the next epoch."""
        valid = self._validate()
        self.epoch.assign_add(1)
        self.position.assign(0)
        if valid is not None and valid < float(self.best.numpy()):
            self.best.assign(valid)
            self.stale.assign(0)
            self._export(valid)
        elif valid is not None:
            self.stale.assign_add(1)
        self.save_checkpoint()

    def _finished(self) -> bool:
        o = self.options
        return (int(self.epoch.numpy()) >= o.epochs
                or (o.max_steps is not None and int(self.step.numpy()) >= o.max_steps)
                or int(self.stale.numpy()) >= o.patience)

    def _has_model(self) -> bool:
        return (Path(self.options.model_dir) / directory.MODEL_FILE).exists()

    def _export(self, valid: float | None) -> None:
        directory.save(self.options.model_dir, self.model, self.tokenizer, {
            "corpus": str(Path(self.options.db).resolve()),
            "steps": int(self.step.numpy()),
            "epochs": int(self.epoch.numpy()),
            "valid_perplexity": valid,
            "options": {k: str(v) for k, v in asdict(self.options).items()},
        })

    def _fill(self, result: TrainResult, valid: float | None, meter: _Meter) -> TrainResult:
        result.steps = int(self.step.numpy())
        result.epochs = int(self.epoch.numpy())
        result.train_perplexity = _perplexity(meter.loss_sum, meter.tokens)
        result.valid_perplexity = valid
        result.tokens_per_second = meter.rate
        return result


class _Meter:
    """Running loss and speed; the first step (the compile) is left out of the speed."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.tokens = 0
        self.last_loss = 0.0
        self._steps = 0
        self._timed_tokens = 0
        self._seconds = 0.0

    def add(self, loss_sum: float, tokens: int, seconds: float) -> None:
        self.loss_sum += loss_sum
        self.tokens += tokens
        self.last_loss = loss_sum / max(tokens, 1)
        self._steps += 1
        if self._steps > 1:
            self._timed_tokens += tokens
            self._seconds += seconds

    @property
    def rate(self) -> float | None:
        """Real target tokens per second."""
        return self._timed_tokens / self._seconds if self._seconds else None
