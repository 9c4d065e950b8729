"""The training loop: lanes of conversations, masked loss, checkpoints, resume, validation.

The conversation state is explicit: each step takes the state the last one left and
returns the new one (per replica under tf.distribute), zeroing only the rows whose
conversation starts there.

Crash safety: `tf.train.CheckpointManager` writes each checkpoint under new names and
then rewrites its small index file atomically, so a kill at any moment leaves the last
complete checkpoint; the model directory's files are each replaced by a rename. Ctrl-C
is handled between steps: a step and its bookkeeping (counters, the lanes' state) are one
unit, so the checkpoint written on the way out is exact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.files import write_atomic
from chatbot.model import directory
from chatbot.model.config import ModelConfig
from chatbot.model.loss import perplexity
from chatbot.train.options import (
    OPTIMIZERS,
    STATE_FILE,
    TrainOptions,
    read_options,
    resumed_options,
)

__all__ = ["CHECKPOINTS", "OPTIMIZERS", "STATE_FILE", "Interrupted", "Progress", "Trainer",
           "TrainOptions", "TrainResult"]

CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    """What `--json` prints."""

    steps: int = 0
    epochs: int = 0
    # Over the last epoch this run trained (the part of it after a resume), or over the
    # last `log_every` steps when the run stopped inside an epoch; None when it trained
    # no step.
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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, acted on between steps: the checkpoint at `step` holds every step before."""

    def __init__(self, step: int) -> None:
        super().__init__(f"interrupted; saved at step {step}")
        self.step = step


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


class _DeferredInterrupts:
    """SIGINT noted, not raised, while training runs: the loop acts on it between steps.

    A second Ctrl-C stops at once (KeyboardInterrupt, no checkpoint). Installed only in
    the main thread over Python's default handler (not where SIGINT is ignored, as in a
    background job, or handled by the caller); the previous handler comes back after.
    """

    def __init__(self) -> None:
        self.pending = False
        self._installed = False

    def __enter__(self) -> _DeferredInterrupts:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._installed = False

    def _note(self, signum: int, frame: Any) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True


class Trainer:
    """Trains one model directory; `run()` does the epochs.

    `Trainer(options, config)` starts a run in a new directory; `Trainer.resume(dir)`
    continues the one there with its saved options (the same as `resume=True` with
    options and config equal to the saved ones, save those a resume may change).
    """

    def __init__(self, options: TrainOptions, config: ModelConfig, resume: bool = False,
                 on_step: Callable[[Progress], None] | None = None,
                 on_note: Callable[[str], None] | None = None,
                 on_tokenize: Callable[[int, int], None] | None = None) -> None:
        """`on_note` gets one-line notes as they happen (a token cache rebuilt, and why);
        `on_tokenize` (turns done, turns in all) while the token cache is built."""
        from chatbot.train.distribute import is_chief, make_strategy, worker_shard

        # The strategy first: MultiWorkerMirroredStrategy must exist before any other op.
        self.strategy = make_strategy(options.strategy)
        self.options, self.on_step = options, on_step
        self.on_note, self.on_tokenize = on_note, on_tokenize
        self.chief = is_chief(self.strategy)
        self.multiworker = options.strategy == "multiworker"
        # (index, count): this host's share of the token cache's conversations.
        self.shard = worker_shard(self.strategy)
        self.per_replica = self._rows_per_replica()
        # The rows this host feeds: its replicas' (all of them, but with several hosts).
        self.local_rows = options.batch_size // self.shard[1]
        if resume:
            self.options = self._resumed(config)
        self.tokenizer, self.config = self._prepare_directory(config, resume)
        self._build()
        # Workers other than the chief save to a scratch directory (TensorFlow's guide:
        # every worker saves, only the chief's copy is kept), removed by close().
        self.work_dir = (Path(self.options.model_dir) if self.chief
                         else Path(tempfile.mkdtemp(prefix="chatbot-")))
        self._interrupts: _DeferredInterrupts | None = None
        self._walking: Callable | None = None
        self._validated: tuple[int, float | None] | None = None
        try:
            self._restore(resume)
            from chatbot.train.history import TrainingLog

            self.log = TrainingLog(self.options.model_dir, enabled=self.chief)
            self._train_step = self._compile(training=True)
            self._eval_step = self._compile(training=False)
        except BaseException:
            self.close()
            raise

    @classmethod
    def resume(cls, model_dir: Path | str, *,
               on_step: Callable[[Progress], None] | None = None,
               on_note: Callable[[str], None] | None = None,
               on_tokenize: Callable[[int, int], None] | None = None, **given: Any) -> Trainer:
        """Continue the run in `model_dir` with its saved options and model config.

        `given` may name TrainOptions and ModelConfig fields: those a resume may change
        (`epochs`, `max_steps`, `patience`, `checkpoint_every`, `log_every`, `lr_decay`,
        `strategy`) take the given value, every other one must equal the saved one (the
        corpus `db`: the same file), else a ChatbotError says which differ.
        """
        model_dir = Path(model_dir)
        _require_checkpoints(model_dir)
        config = directory.read_config(model_dir)
        option_names = {f.name for f in fields(TrainOptions)}
        model_given = {k: given.pop(k) for k in list(given)
                       if k not in option_names and k in {f.name for f in fields(ModelConfig)}}
        _require_same_config(model_dir, config, model_given)
        options = resumed_options(read_options(model_dir), model_dir, **given)
        return cls(options, config, resume=True, on_step=on_step, on_note=on_note,
                   on_tokenize=on_tokenize)

    # --- construction, step by step -------------------------------------------------------

    def _rows_per_replica(self) -> int:
        """Each replica's share of the batch's rows (lanes stay on their replica)."""
        replicas = self.strategy.num_replicas_in_sync
        batch = self.options.batch_size
        if batch % replicas:
            raise ChatbotError(f"--batch-size {batch}: must be a multiple of the "
                               f"{replicas} replicas, so each gets whole rows")
        return batch // replicas

    def _resumed(self, config: ModelConfig) -> TrainOptions:
        """The options of a resumed run: the saved ones, with those a resume may change
        as given; the model must be the one saved."""
        model_dir = Path(self.options.model_dir)
        _require_checkpoints(model_dir)
        saved = directory.read_config(model_dir)
        _require_same_config(model_dir, saved, {k: v for k, v in config.to_dict().items()
                                                if k != "vocab_size"})
        given = {f.name: getattr(self.options, f.name) for f in fields(TrainOptions)}
        return resumed_options(read_options(model_dir), model_dir, **given)

    def _prepare_directory(self, config: ModelConfig, resume: bool) -> tuple[Any, ModelConfig]:
        """The tokenizer and the model's config: loaded for a resume; else the tokenizer
        fitted on the corpus, and the directory made self-describing (chief only)."""
        from chatbot.corpus.store import CorpusStore
        from chatbot.text.tokenizer import fit_tokenizer, load_tokenizer
        from chatbot.train.data import check_speakers

        o = self.options
        model_dir = Path(o.model_dir)
        if not Path(o.db).exists():
            return self._from_cache_alone(config, resume)
        with CorpusStore(o.db) as store:  # checks; the token cache reads through its own
            if store.stats()["conversations"] == 0:
                raise ChatbotError(f"{o.db}: the corpus has no conversation of two turns; "
                                   "ingest some first")
            check_speakers(store, o.db, o.reply_as)
            if resume:
                tokenizer = load_tokenizer(model_dir)
                config = directory.read_config(model_dir)
            else:
                # Other workers see the chief's files appear: only the chief checks.
                if self.chief and (model_dir / directory.CONFIG_FILE).exists():
                    raise ChatbotError(f"{model_dir}: a model is already there; pass "
                                       "--resume to continue it, or choose another directory")
                import keras

                keras.utils.set_random_seed(o.seed)
                # Deterministic: every worker fits the same tokenizer from the same corpus.
                tokenizer = fit_tokenizer(o.tokenizer, store, o.vocab_size)
                config = ModelConfig.from_dict({**config.to_dict(),
                                                "vocab_size": tokenizer.vocab_size})
        from chatbot.train import token_cache

        with _writing(Path(o.token_cache) if o.token_cache else Path(o.db).parent):
            self._use_cache(token_cache.ensure(o.db, tokenizer, o.token_cache,
                                               self.on_tokenize, self.on_note))
        return self._made_self_describing(tokenizer, config, resume)

    def _use_cache(self, cache: Any) -> None:
        """Train on `cache` (reopened from its path after `close()`); with several hosts,
        the line that says which of its conversations this host reads."""
        from chatbot.train import token_cache

        self._cache, self._cache_path = cache, cache.path
        first, end = token_cache.shard_range(cache, *self.shard)
        self._shard_note = (f"worker {self.shard[0] + 1} of {self.shard[1]} reads "
                            f"conversations {first}-{end - 1} of {cache.path}")

    def _from_cache_alone(self, config: ModelConfig, resume: bool) -> tuple[Any, ModelConfig]:
        """No corpus here (a worker given a built --token-cache): the tokenizer and the
        conversations come from the cache, which is checked but cannot be rebuilt."""
        from chatbot.text.tokenizer import load_tokenizer
        from chatbot.train import token_cache

        o = self.options
        manifest = Path(o.token_cache or "") / token_cache.MANIFEST
        if o.token_cache is None or not manifest.exists():
            raise ChatbotError(f"{o.db}: no corpus database; run `chatbot ingest` first "
                               "(or give --token-cache a built token cache)")
        try:
            self._use_cache(token_cache.open_cache(o.token_cache, shard=self.shard))
        except token_cache.StaleCache as why:
            raise ChatbotError(f"{o.token_cache}: the token cache cannot be used ({why}), "
                               f"and the corpus {o.db} is not here to rebuild it") from None
        if self.cache.conversation_count == 0:
            raise ChatbotError(f"{o.token_cache}: the token cache holds no conversation")
        missing = [n for n in o.reply_as if n not in self.cache.speaker_names]
        if missing:
            raise ChatbotError(f"{o.token_cache}: no turns by {', '.join(map(repr, missing))} "
                               "to learn from")
        if resume:
            tokenizer = load_tokenizer(o.model_dir)
            config = directory.read_config(o.model_dir)
        else:
            if self.chief and (Path(o.model_dir) / directory.CONFIG_FILE).exists():
                raise ChatbotError(f"{o.model_dir}: a model is already there; pass "
                                   "--resume to continue it, or choose another directory")
            import keras

            keras.utils.set_random_seed(o.seed)
            tokenizer = self.cache.tokenizer()
            config = ModelConfig.from_dict({**config.to_dict(),
                                            "vocab_size": tokenizer.vocab_size})
        return self._made_self_describing(tokenizer, config, resume)

    def _made_self_describing(self, tokenizer: Any, config: ModelConfig,
                              resume: bool) -> tuple[Any, ModelConfig]:
        """The model directory's tokenizer, config and options written (chief only)."""
        model_dir = Path(self.options.model_dir)
        if self.chief:
            # Self-describing from the first moment: --resume reads these.
            with _writing(model_dir):
                model_dir.mkdir(parents=True, exist_ok=True)
                if not resume:
                    tokenizer.save(model_dir)
                    write_atomic(model_dir / directory.CONFIG_FILE, config.to_json().encode())
                self._save_options()
        return tokenizer, config

    def _saved_options(self) -> dict[str, Any]:
        """The run's options as saved (read back by `read_options`): typed, the corpus an
        absolute path, so a resume from another directory finds it."""
        return {**self.options.to_dict(), "db": str(Path(self.options.db).resolve())}

    def _save_options(self) -> None:
        write_atomic(Path(self.options.model_dir) / STATE_FILE,
                     json.dumps(self._saved_options(), indent=2).encode())

    def _build(self) -> None:
        """The model, its optimizer, the counters and the checkpoint that holds them all."""
        import keras
        import tensorflow as tf

        from chatbot.model.network import ConversationModel
        from chatbot.train import precision
        from chatbot.train.fused_adam import FusedAdam

        o = self.options
        # Mixed precision (if asked): the policy holds only while this model is built.
        self.precision = precision.choose(o.mixed_precision)
        with self.strategy.scope():
            with precision.building(self.precision):
                self.model = ConversationModel(self.config)
            optimizer_class = {"adam": FusedAdam,
                               "rmsprop": keras.optimizers.RMSprop}[o.optimizer]
            self.optimizer = precision.wrap_optimizer(
                optimizer_class(o.learning_rate, global_clipnorm=o.clipnorm), self.precision)
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
                      for s in self.model.zero_state(o.batch_size)]
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, step=self.step, epoch=self.epoch, position=self.position,
            best=self.best, stale=self.stale, carry=self.carry,
            usual_tokens=self.usual_tokens, **precision.checkpointed(self.optimizer))

    def _restore(self, resume: bool) -> None:
        """The checkpoint manager; for a resume, the last checkpoint loaded."""
        import tensorflow as tf

        self.manager = tf.train.CheckpointManager(self.checkpoint, self.work_dir / CHECKPOINTS,
                                                  max_to_keep=2)
        self.resumed_from = 0
        checkpoints = Path(self.options.model_dir) / CHECKPOINTS
        latest = tf.train.latest_checkpoint(str(checkpoints)) if resume else None
        if latest:
            self.checkpoint.restore(latest).expect_partial()
            self.resumed_from = int(self.step.numpy())

    @property
    def cache(self) -> Any:
        """The token cache, opened again after `close()` let go of its memory maps."""
        if self._cache is None:
            from chatbot.train import token_cache

            self._cache = token_cache.open_cache(self._cache_path, shard=self.shard)
        return self._cache

    def close(self) -> None:
        """Let go of what the trainer holds open: the log's writers, the token cache's
        memory maps, a worker's scratch directory. `run()` calls it on the way out,
        however it ends."""
        self._cache = None
        log = getattr(self, "log", None)
        if log is not None:
            log.close()
        if not self.chief:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- compiled steps ---------------------------------------------------------------------

    def _compile(self, training: bool) -> Callable:
        import tensorflow as tf

        from chatbot.model.loss import real_token_loss

        model, optimizer, strategy = self.model, self.optimizer, self.strategy
        rows = self.per_replica
        local_replicas = self.local_rows // rows  # (replica ids run host by host)

        def replica_step(source, target_in, target_out, reset, state, usual):
            context = tf.distribute.get_replica_context()
            # Every replica gets its host's batch and keeps its own rows: lanes stay put.
            start = (context.replica_id_in_sync_group % local_replicas) * rows
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
                # Float16: times the loss scale, so that small gradients survive its
                # range; apply_gradients divides it out (other runs: unchanged).
                scaled = optimizer.scale_loss(scaled)
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
        """This host's batches of `split` from the token cache: the epoch's seeded order
        (training), its shard of the conversations (several hosts)."""
        from chatbot.train.data import dataset
        from chatbot.train.lane_batches import epoch_order, lane_batches

        o = self.options
        targets = self.cache.target_turns(o.reply_as)
        order = epoch_order(self.cache, split, o.valid_fraction, o.split_by,
                            seed=o.seed * 100_003 + epoch if split == "train" else None,
                            shard=self.shard, targets=targets)

        rows, endless = self.local_rows, self.multiworker
        # tf.data keeps this function as long as it likes: it reaches the memory maps
        # through the trainer, so that close() lets go of them.
        trainer = weakref.ref(self)

        def batches():
            # Resuming inside an epoch: the same seeded order, the done batches skipped.
            # With several hosts a shard that ends first goes on with idle batches until
            # every host's has ended (see _anyone_walking).
            return lane_batches(trainer().cache, order, rows, o.max_len, targets,
                                pool=o.pool, skip=skip, endless=endless, reverse=o.reverse)

        return dataset(batches, self.local_rows)

    def _anyone_walking(self, target_in: Any) -> bool:
        """Several hosts: whether any host's batch has a lane still walking (all hosts
        step together, so they stop together). One host: its batches just end."""
        if not self.multiworker:
            return True
        if self._walking is None:
            import tensorflow as tf

            strategy = self.strategy

            @tf.function
            def walking(target_in):
                local = strategy.run(lambda x: tf.cast(tf.reduce_any(x != 0), tf.int32),
                                     args=(target_in,))
                return strategy.reduce(tf.distribute.ReduceOp.SUM, local, axis=None)

            self._walking = walking
        return int(self._walking(target_in)) > 0

    # --- evaluation -------------------------------------------------------------------------

    def evaluate(self, split: str = "valid") -> float | None:
        """Perplexity per real target token over a split, the state carried as in training."""
        state = self._zero_state()
        loss_sum, tokens = 0.0, 0
        # Each pass opens the store and closes it when the pipeline lets go of its batches.
        for source, target_in, target_out, reset in self._dataset(split, 0):
            if not self._anyone_walking(target_in):
                break
            loss, count, state = self._eval_step(source, target_in, target_out, reset,
                                                 state, self.usual_tokens)
            loss_sum, tokens = loss_sum + float(loss), tokens + int(count)
            self._stop_if_interrupted()  # the counters stand as the last step left them
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
        """Train until the epochs, --max-steps or early stopping say stop.

        Ctrl-C (SIGINT) is acted on between steps: the checkpoint then holds every step
        before it, whole, and `Interrupted` (a KeyboardInterrupt) names the step. The
        log's writers and a worker's scratch directory are closed however the run ends.
        """
        result = TrainResult(resumed_from_step=self.resumed_from)
        meter = _Meter(self.options.log_every)
        try:
            with _DeferredInterrupts() as self._interrupts:
                if self._finished():
                    result.messages.append(f"{self.options.model_dir}: training already "
                                           f"finished at step {int(self.step.numpy())}; "
                                           "nothing to do")
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
            self._interrupts = None
            self.close()

    def _stop_if_interrupted(self, state: Any = None) -> None:
        """After a Ctrl-C: a checkpoint of where the run stands (with the lanes' `state`
        inside an epoch), then `Interrupted`. Called only where the counters and the
        weights agree."""
        if self._interrupts is not None and self._interrupts.pending:
            self.save_checkpoint(state)
            raise Interrupted(int(self.step.numpy()))

    def _train_epoch(self, meter: _Meter) -> bool:
        """Train from the saved position; True when the epoch ran to its end."""
        o = self.options
        skip = int(self.position.numpy())
        state = self._carried_state() if skip else self._zero_state()
        meter.start_epoch()
        mark = time.perf_counter()
        epoch = int(self.epoch.numpy())
        for index, batch in enumerate(self._dataset("train", epoch, skip), start=skip):
            if not self._anyone_walking(batch[1]):
                break
            # One unit: the update, then its bookkeeping; a Ctrl-C waits for both.
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
            self._stop_if_interrupted(state)
            mark = time.perf_counter()
        meter.end_epoch()
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
                "options": self._saved_options(),  # training.json's, for copies of the model
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
        result.train_perplexity = meter.last_perplexity
        result.valid_perplexity = valid
        result.tokens_per_second = meter.rate
        if self.multiworker:
            result.messages.append(self._shard_note)
            role = "chief" if self.chief else "worker"
            result.messages.append(f"{role} done at step {result.steps}; weights digest "
                                   f"{self.weights_digest()}")
        return result


def _require_checkpoints(model_dir: Path) -> None:
    if not (model_dir / CHECKPOINTS).is_dir():
        raise ChatbotError(f"{model_dir}: nothing to resume (no checkpoints there)")


def _require_same_config(model_dir: Path, saved: ModelConfig, given: dict[str, Any]) -> None:
    """A ChatbotError naming the given model options that differ from the saved model's."""
    wanted = ModelConfig.from_dict({**saved.to_dict(), **given}).to_dict()
    changed = sorted(k for k in given if wanted[k] != saved.to_dict()[k])
    if changed:
        raise ChatbotError(f"{model_dir}: built with other options than given "
                           f"({', '.join(changed)}); drop them or use a new directory")


class _Meter:
    """Running loss and speed; the first step (the compile) is left out of the speed."""

    def __init__(self, window: int) -> None:
        self._epoch = [0.0, 0]  # loss sum and tokens of the epoch under way
        self._ended: tuple[float, int] | None = None  # those of the last epoch that ended
        self._in_epoch = False
        self._last = deque(maxlen=window)  # (loss sum, tokens) of the last `window` steps
        self._window = [0.0, 0]  # loss sum and tokens since the last log record
        self._recent: deque[tuple[float, int]] = deque(maxlen=20)
        self._steps = 0
        self._timed_tokens = 0
        self._seconds = 0.0

    def start_epoch(self) -> None:
        self._epoch = [0.0, 0]
        self._in_epoch = True

    def end_epoch(self) -> None:
        self._ended = (self._epoch[0], int(self._epoch[1]))
        self._in_epoch = False

    def add(self, loss_sum: float, tokens: int, seconds: float) -> None:
        for total in (self._epoch, self._window):
            total[0] += loss_sum
            total[1] += tokens
        self._last.append((loss_sum, tokens))
        self._recent.append((loss_sum, tokens))
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
    def last_perplexity(self) -> float | None:
        """Over the last epoch that ended, or over the last `window` steps when the run
        stopped inside an epoch; None before any step."""
        if not self._in_epoch and self._ended is not None:
            return perplexity(*self._ended)
        return perplexity(sum(loss for loss, _ in self._last), sum(t for _, t in self._last))

    @property
    def recent_loss(self) -> float:
        """Mean loss per token over the last 20 steps (a steadier figure than one step)."""
        tokens = sum(t for _, t in self._recent)
        return sum(loss for loss, _ in self._recent) / max(tokens, 1)

    @property
    def rate(self) -> float | None:
        """Real target tokens per second."""
        return self._timed_tokens / self._seconds if self._seconds else None
