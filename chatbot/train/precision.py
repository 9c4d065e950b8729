"""Mixed precision for training: the dtype policy, where it holds, and loss scaling.

With `--mixed-precision` the layers compute in float16 on a GPU (its tensor cores run
float16 several times faster than float32) and in bfloat16 on a CPU (float16 there is
emulated; bfloat16 has float32's exponent range, so it needs no loss scaling). Variables
stay float32 either way, and so do the loss, its softmax and the state carried between
exchanges (see `ConversationModel.exchange`), so the weights load into the float32 models
that chat, decoding and export build.

Keras' dtype policy is global to the process, and a layer takes it when it is made: the
trainer sets it only while it builds its model (`building`), so every other model made
in the same process (a chat, the tests' models) stays float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FLOAT16 = "mixed_float16"
BFLOAT16 = "mixed_bfloat16"
FLOAT32 = "float32"


@dataclass(frozen=True)
class Precision:
    """How a run computes: the Keras dtype policy its model is built under."""

    policy: str  # FLOAT32, FLOAT16 or BFLOAT16

    @property
    def loss_scaling(self) -> bool:
        """Float16 only: small gradients would underflow its 5-bit exponent to zero."""
        return self.policy == FLOAT16


def choose(mixed: bool, gpu: bool | None = None) -> Precision:
    """The precision of a run: float32, or mixed (float16 when `gpu`, else bfloat16).
    `gpu` None: whether TensorFlow sees a GPU here."""
    if not mixed:
        return Precision(FLOAT32)
    if gpu is None:
        import tensorflow as tf

        gpu = bool(tf.config.list_logical_devices("GPU"))
    return Precision(FLOAT16 if gpu else BFLOAT16)


@contextlib.contextmanager
def building(precision: Precision) -> Iterator[None]:
    """Keras' global dtype policy set to the run's inside the block, the previous one
    restored after, even when building fails."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision.policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def wrap_optimizer(optimizer: Any, precision: Precision) -> Any:
    """The optimizer a run applies gradients with: under float16, wrapped in Keras'
    dynamic loss scaling (`optimizer.scale_loss` before the gradient; `apply_gradients`
    unscales them, and skips a step whose gradients overflowed while it halves the
    scale); else the optimizer itself, whose `scale_loss` leaves the loss as it is."""
    if not precision.loss_scaling:
        return optimizer
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer)


def checkpointed(optimizer: Any) -> dict[str, Any]:
    """The optimizer's entries in a run's `tf.train.Checkpoint`: the inner optimizer
    always under `optimizer`, so its slots (Adam's moments) restore whichever precision
    wrote the checkpoint (a float16 run resumed where there is no GPU, say); the loss
    scale wrapper beside it, so a float16 resume goes on with the same scale."""
    import keras

    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return {"optimizer": optimizer.inner_optimizer, "loss_scale": optimizer}
    return {"optimizer": optimizer}
