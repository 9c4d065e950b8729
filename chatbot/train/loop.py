"""The training loop: lanes of conversations, masked loss, checkpoints, resume, validation.

The conversation state is explicit: each step takes the state the last one left and
returns the new one (per replica under tf.distribute), zeroing only the rows whose
conversation starts there.

Crash safety: `tf.train.CheckpointManager` writes each checkpoint under new names and
then rewrites its small index file atomically, so a kill at any moment leaves the last
complete checkpoint; the model directory's files are each replaced by a rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.evaluate.metrics import perplexity
from chatbot.files import write_atomic
from chatbot.model import directory
from chatbot.model.config import ModelConfig

CHECKPOINTS = "checkpoints"
STATE_FILE = "training.json"
OPTIMIZERS = ("adam", "rmsprop")


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
    # What the train/validation split keeps on one side: "work" (a film, a book; each
    # dialogue of a dialogue set) or "conversation" (models trained before works).
    split_by: str = "work"
    checkpoint_every: int = 500
    seed: int = 0
    max_len: int = 40  # tokens per turn; longer turns are cut
    optimizer: str = "adam"  # or "rmsprop", as in the Keras example
    learning_rate: float = 1e-3
    clipnorm: float = 1.0
    patience: int = 3  # epochs without a better validation perplexity before stopping
    # After an epoch without a better validation perplexity the learning rate is
    # multiplied by this (Keras' ReduceLROnPlateau, at epoch ends); 1 = never.
    lr_decay: float = 0.5
    pool: int = 1024  # conversations in the shuffle pool
    strategy: str = "default"  # or "mirrored", "multiworker"
    log_every: int = 20  # steps between TensorBoard / history records


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


@dataclass(frozen=True)
class Progress:
    """What a progress display gets after every step."""

    step: int
    epoch: int
    total_steps: int | None  # known with --max-steps
    loss: float  # mean over the recent steps
    tokens_per_second: float | None


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


@contextlib.contextmanager
def _writing(what: Path) -> Iterator[None]:
    """Turn a failed write (a full disk, a lost mount) into one line; the files written
    before stay whole, since every one of them is replaced by a rename."""
    import tensorflow as tf

    try:
        yield
    except OSError as e:
        raise ChatbotError(f"{e.filename or what}: cannot write ({e.strerror}); the last "
                           "complete checkpoint is kept") from None
    except tf.errors.OpError as e:
        # "{{function_node ...}} PATH; File too large\n\t[[{{node SaveV2}}]]" -> PATH; ...
        message = re.sub(r"\{\{[^}]*\}\}", "", e.message or type(e).__name__).strip()
        reason = message.splitlines()[0] if message else type(e).__name__
        for partial in Path(what).glob("*_temp"):  # TensorFlow's unfinished checkpoint
            shutil.rmtree(partial, ignore_errors=True)
        raise ChatbotError(f"cannot write {reason}; the last complete checkpoint is "
                           "kept") from None


class Trainer:
    """Trains one model directory; `run()` does the epochs."""

    def __init__(self, options: TrainOptions, config: ModelConfig, resume: bool = False,
                 on_step: Callable[[Progress], None] | None = None) -> None:
        from chatbot.train.distribute import is_chief, make_strategy

        # The strategy first: MultiWorkerMirroredStrategy must exist before any other op.
        self.strategy = make_strategy(options.strategy)
        import keras
        import tensorflow as tf

        from chatbot.corpus.store import CorpusStore
        from chatbot.model.network import ConversationModel
        from chatbot.text.tokenizer import fit_tokenizer, load_tokenizer
        from chatbot.train.fused_adam import FusedAdam
        from chatbot.train.history import TrainingLog

        self.options, self.on_step = options, on_step
        if options.optimizer not in OPTIMIZERS:
            raise ChatbotError(f"--optimizer {options.optimizer}: choose one of "
                               f"{', '.join(OPTIMIZERS)}")
        if not 0 < options.lr_decay <= 1:
            raise ChatbotError(f"--lr-decay {options.lr_decay}: must be in (0, 1]")
        replicas = self.strategy.num_replicas_in_sync
        if options.batch_size % replicas:
            raise ChatbotError(f"--batch-size {options.batch_size}: must be a multiple of the "
                               f"{replicas} replicas, so each gets whole rows")
        self.per_replica = options.batch_size // replicas
        self.chief = is_chief(self.strategy)
        self.multiworker = options.strategy == "multiworker"
        if not Path(options.db).exists():
            raise ChatbotError(f"{options.db}: no corpus database; run `chatbot ingest` first")
        store = CorpusStore(options.db)  # for the checks and the tokenizer; closed below
        if store.stats()["conversations"] == 0:
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
            # Other workers see the chief's files appear: only the chief checks and writes.
            if self.chief and (model_dir / directory.CONFIG_FILE).exists():
                raise ChatbotError(f"{model_dir}: a model is already there; pass --resume "
                                   "to continue it, or choose another directory")
            keras.utils.set_random_seed(options.seed)
            # Deterministic: every worker fits the same tokenizer from the same corpus.
            self.tokenizer = fit_tokenizer(options.tokenizer, store, options.vocab_size)
            config = ModelConfig.from_dict({**config.to_dict(),
                                            "vocab_size": self.tokenizer.vocab_size})
            if self.chief:
                # Self-describing from the first moment: --resume checks these.
                with _writing(model_dir):
                    model_dir.mkdir(parents=True, exist_ok=True)
                    self.tokenizer.save(model_dir)
                    write_atomic(model_dir / directory.CONFIG_FILE, config.to_json().encode())
                    write_atomic(model_dir / STATE_FILE, json.dumps(
                        {k: str(v) if isinstance(v, Path) else v
                         for k, v in asdict(options).items()}, indent=2).encode())
        store.close()  # training reads through its own connection (see _dataset)
        self.config = config
        with self.strategy.scope():
            self.model = ConversationModel(config)
            optimizer_class = {"adam": FusedAdam,
                               "rmsprop": keras.optimizers.RMSprop}[options.optimizer]
            self.optimizer = optimizer_class(options.learning_rate,
                                             global_clipnorm=options.clipnorm)
            self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)  # batches into epoch
        self.best = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.stale = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Real target tokens in a usual step: a slow moving average (see _compile).
        self.usual_tokens = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        # The lanes' state at the checkpoint, so a resume inside an epoch goes on exactly.
        self.carry = [tf.Variable(s, trainable=False)
                      for s in self.model.zero_state(options.batch_size)]
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
            position=self.position, best=self.best, stale=self.stale, carry=self.carry,
            usual_tokens=self.usual_tokens)
        # Workers other than the chief save to a scratch directory (TensorFlow's guide:
        # every worker saves, only the chief's copy is kept).
        self.work_dir = model_dir if self.chief else Path(tempfile.mkdtemp(prefix="chatbot-"))
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.work_dir / CHECKPOINTS,
                                                  max_to_keep=2)
        self.resumed_from = 0
        latest = tf.train.latest_checkpoint(str(checkpoints)) if resume else None
        if latest:
            self.checkpoint.restore(latest).expect_partial()
            self.resumed_from = int(self.step.numpy())
        self.log = TrainingLog(model_dir, enabled=self.chief)
        self._validated: tuple[int, float | None] | None = None
        self._train_step = self._compile(training=True)
        self._eval_step = self._compile(training=False)

    # --- compiled steps ---------------------------------------------------------------------

    def _compile(self, training: bool) -> Callable:
        import tensorflow as tf

        from chatbot.model.loss import real_token_loss

        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        rows = self.per_replica

        def replica_step(source, target_in, target_out, reset, state, usual):
            context = tf.distribute.get_replica_context()
            # Every replica gets the global batch and keeps its own rows: lanes stay put.
            start = context.replica_id_in_sync_group * rows
            source, target_in, target_out, reset = (
                x[start:start + rows] for x in (source, target_in, target_out, reset))
            inputs = {"source": source, "target_in": target_in, "reset": reset,
                      "state": state}
            if not training:
                features, state = model.exchange(inputs, training=False)
                loss_sum, tokens = real_token_loss(features, target_out, model.output_layer)
                return loss_sum, tokens, state
            with tf.GradientTape() as tape:
                features, state = model.exchange(inputs, training=True)
                loss_sum, tokens = real_token_loss(features, target_out, model.output_layer)
                # Mean over the global batch's real tokens, or over a usual step's where
                # this one has fewer: at an epoch's end only a few long conversations
                # still run, and full-weight steps on one or two lanes (a hundred and more
                # of them) would fit the model to those few right before validation. The
                # optimizer sums replicas.
                total = context.all_reduce(tf.distribute.ReduceOp.SUM, tokens)
                scaled = loss_sum / tf.maximum(tf.maximum(total, usual), 1.0)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss_sum, tokens, state

        def step(source, target_in, target_out, reset, state, usual):
            loss_sum, tokens, new_state = strategy.run(
                replica_step, args=(source, target_in, target_out, reset, state, usual))
            total = tf.distribute.ReduceOp.SUM
            return (strategy.reduce(total, loss_sum, axis=None),
                    strategy.reduce(total, tokens, axis=None), new_state)

        if self.options.strategy == "default":
            # One trace for every sequence length: no retracing as widths change.
            batch = self.options.batch_size
            ids = tf.TensorSpec((batch, None), tf.int32)
            states = [tf.TensorSpec((batch, self.config.hidden_dim), tf.float32)] * len(
                self.carry)
            return tf.function(step, input_signature=(
                ids, ids, ids, tf.TensorSpec((batch,), tf.bool), states,
                tf.TensorSpec((), tf.float32)))
        # Distributed values have no plain signature: traces relax after a second shape.
        return tf.function(step, reduce_retracing=True)

    # --- state ------------------------------------------------------------------------------

    def _zero_state(self) -> Any:
        return self.strategy.run(lambda: self.model.zero_state(self.per_replica))

    def _carried_state(self) -> Any:
        """The lanes' state saved with the checkpoint, split back over the replicas."""
        if self.multiworker:
            return self._zero_state()  # each host holds only its rows; see the README
        rows = self.per_replica

        def rows_of(context):
            start = context.replica_id_in_sync_group * rows
            return [v[start:start + rows] for v in self.carry]

        return self.strategy.experimental_distribute_values_from_function(rows_of)

    def _keep_state(self, state: Any) -> None:
        import tensorflow as tf

        if self.multiworker:
            return
        for variable, value in zip(self.carry, state, strict=True):
            variable.assign(tf.concat(self.strategy.experimental_local_results(value), 0))

    # --- input ------------------------------------------------------------------------------

    def _dataset(self, split: str, epoch: int, skip: int = 0) -> Any:
        from chatbot.corpus.store import CorpusStore
        from chatbot.train.data import conversations, dataset, lanes, shuffled

        o = self.options

        def batches():
            store = CorpusStore(o.db)
            items = conversations(store, self.tokenizer, split, o.valid_fraction, o.max_len,
                                  o.split_by)
            if split == "train":
                items = shuffled(items, o.pool, o.seed * 100_003 + epoch)
            # Resuming inside an epoch: the same seeded order, the done batches skipped.
            return itertools.islice(lanes(items, o.batch_size), skip, None)

        return dataset(batches, o.batch_size)

    # --- evaluation -------------------------------------------------------------------------

    def evaluate(self, split: str = "valid") -> float | None:
        """Perplexity per real target token over a split, the state carried as in training."""
        state = self._zero_state()
        loss_sum, tokens = 0.0, 0
        for source, target_in, target_out, reset in self._dataset(split, 0):
            loss, count, state = self._eval_step(source, target_in, target_out, reset, state,
                                                 self.usual_tokens)
            loss_sum, tokens = loss_sum + float(loss), tokens + int(count)
        return perplexity(loss_sum, tokens)

    def _validate(self) -> float | None:
        """Validation perplexity at the current step (computed once per step)."""
        step = int(self.step.numpy())
        if self._validated is None or self._validated[0] != step:
            valid = self.evaluate("valid")
            self._validated = (step, valid)
            self.log.record("valid", step, {"perplexity": valid})
        return self._validated[1]

    # --- the run ----------------------------------------------------------------------------

    def save_checkpoint(self, state: Any = None) -> None:
        """A checkpoint of everything (weights, optimizer, counters, the lanes' state); the
        first one also exports the model, so the directory is loadable from then on."""
        if state is not None:
            self._keep_state(state)
        with _writing(self.work_dir / CHECKPOINTS):
            self.manager.save(checkpoint_number=int(self.step.numpy()))
        if self.chief and not self._has_model():
            self._export(None)

    def run(self) -> TrainResult:
        """Train until the epochs, --max-steps or early stopping say stop."""
        result = TrainResult(resumed_from_step=self.resumed_from)
        meter = _Meter()
        try:
            if self._finished():
                result.messages.append(f"{self.options.model_dir}: training already finished "
                                       f"at step {int(self.step.numpy())}; nothing to do")
                return self._fill(result, None, meter)
            while not self._finished():
                if self._train_epoch(meter):
                    self._end_epoch()
            valid = self._validate()
            if valid is None or not self._has_model() or valid < float(self.best.numpy()):
                # Without a validation split the latest model is the one to keep.
                if valid is not None:
                    self.best.assign(min(valid, float(self.best.numpy())))
                if self.chief:
                    self._export(valid)
            self.save_checkpoint()
            with _writing(self.options.model_dir):
                self.log.plot()
            return self._fill(result, valid, meter)
        finally:
            if not self.chief:
                shutil.rmtree(self.work_dir, ignore_errors=True)

    def _train_epoch(self, meter: _Meter) -> bool:
        """Train from the saved position; True when the epoch ran to its end."""
        o = self.options
        skip = int(self.position.numpy())
        state = self._carried_state() if skip else self._zero_state()
        mark = time.perf_counter()
        try:
            for index, batch in enumerate(
                    self._dataset("train", int(self.epoch.numpy()), skip), start=skip):
                loss, count, state = self._train_step(*batch, state, self.usual_tokens)
                meter.add(float(loss), int(count), time.perf_counter() - mark)
                self._note_tokens(int(count))
                self.step.assign_add(1)
                self.position.assign(index + 1)
                step = int(self.step.numpy())
                if self.on_step:
                    self.on_step(Progress(step, int(self.epoch.numpy()), o.max_steps,
                                          meter.recent_loss, meter.rate))
                if step % o.log_every == 0:
                    loss_sum, tokens = meter.take_window()
                    self.log.record("train", step, {"loss": loss_sum / max(tokens, 1),
                                                    "perplexity": perplexity(loss_sum, tokens),
                                                    "tokens_per_second": meter.rate})
                if step % o.checkpoint_every == 0:
                    self.save_checkpoint(state)
                if o.max_steps is not None and step >= o.max_steps:
                    self._keep_state(state)
                    return False
                mark = time.perf_counter()
        except KeyboardInterrupt:
            self.save_checkpoint(state)  # Ctrl-C: keep every finished step
            raise
        return True

    def _note_tokens(self, count: int) -> None:
        """Fold a step's real tokens into the usual count (about the last 1,000 steps')."""
        usual = float(self.usual_tokens.numpy())
        self.usual_tokens.assign(count if usual == 0 else 0.999 * usual + 0.001 * count)

    def _end_epoch(self) -> None:
        """Validation, the best model kept, early stopping; then the next epoch."""
        valid = self._validate()
        self.epoch.assign_add(1)
        self.position.assign(0)
        if valid is not None and valid < float(self.best.numpy()):
            self.best.assign(valid)
            self.stale.assign(0)
            if self.chief:
                self._export(valid)
        elif valid is not None:
            self.stale.assign_add(1)
            # Saved with the optimizer, so a resumed run goes on at the lowered rate.
            rate = float(self.optimizer.learning_rate.numpy())
            self.optimizer.learning_rate = rate * self.options.lr_decay
        self.save_checkpoint()
        with _writing(self.options.model_dir):
            self.log.plot()

    def _finished(self) -> bool:
        o = self.options
        return (int(self.epoch.numpy()) >= o.epochs
                or (o.max_steps is not None and int(self.step.numpy()) >= o.max_steps)
                or int(self.stale.numpy()) >= o.patience)

    def _has_model(self) -> bool:
        return (Path(self.options.model_dir) / directory.MODEL_FILE).exists()

    def _export(self, valid: float | None) -> None:
        with _writing(self.options.model_dir):
            directory.save(self.options.model_dir, self.model, self.tokenizer, {
                "corpus": str(Path(self.options.db).resolve()),
                "steps": int(self.step.numpy()),
                "epochs": int(self.epoch.numpy()),
                "valid_perplexity": valid,
                "options": {k: str(v) for k, v in asdict(self.options).items()},
            })

    def weights_digest(self) -> str:
        """A short digest of the trainable weights: equal on workers that agree."""
        digest = hashlib.sha256()
        for variable in self.model.trainable_variables:
            digest.update(variable.numpy().tobytes())
        return digest.hexdigest()[:16]

    def _fill(self, result: TrainResult, valid: float | None, meter: _Meter) -> TrainResult:
        result.steps = int(self.step.numpy())
        result.epochs = int(self.epoch.numpy())
        result.train_perplexity = perplexity(meter.loss_sum, meter.tokens)
        result.valid_perplexity = valid
        result.tokens_per_second = meter.rate
        if self.multiworker:
            role = "chief" if self.chief else "worker"
            result.messages.append(f"{role} done at step {result.steps}; weights digest "
                                   f"{self.weights_digest()}")
        return result


class _Meter:
    """Running loss and speed; the first step (the compile) is left out of the speed."""

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.tokens = 0
        self._window = [0.0, 0]  # loss sum and tokens since the last log record
        self._recent: list[tuple[float, int]] = []
        self._steps = 0
        self._timed_tokens = 0
        self._seconds = 0.0

    def add(self, loss_sum: float, tokens: int, seconds: float) -> None:
        self.loss_sum += loss_sum
        self.tokens += tokens
        self._window[0] += loss_sum
        self._window[1] += tokens
        self._recent = [*self._recent[-19:], (loss_sum, tokens)]
        self._steps += 1
        if self._steps > 1:
            self._timed_tokens += tokens
            self._seconds += seconds

    def take_window(self) -> tuple[float, int]:
        """Loss sum and tokens since the last call."""
        loss_sum, tokens = self._window
        self._window = [0.0, 0]
        return loss_sum, int(tokens)

    @property
    def recent_loss(self) -> float:
        """Mean loss per token over the last 20 steps (a steadier figure than one step)."""
        tokens = sum(t for _, t in self._recent)
        return sum(loss for loss, _ in self._recent) / max(tokens, 1)

    @property
    def rate(self) -> float | None:
        """Real target tokens per second."""
        return self._timed_tokens / self._seconds if self._seconds else None
