"""Keras' Adam with each variable's update as one fused TensorFlow kernel.

Keras writes Adam's update as about ten element-wise operations, each a pass over the
variable's memory; with an 8000-word vocabulary the embedding and the output projection
hold millions of weights, and those passes took an eighth of a training step on the CPU.
`ResourceApplyAdam` computes the same update (same formula, same epsilon placement) in
one pass. The optimizer's variables are Adam's own, so checkpoints are interchangeable.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="chatbot")
class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam, updated by TensorFlow's fused Adam kernel."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or keras.backend.backend() != "tensorflow":
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        index = self._get_variable_index(variable)
        momentum, velocity = self._momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=momentum.value.handle, v=velocity.value.handle,
            beta1_power=ops.power(beta_1, step), beta2_power=ops.power(beta_2, step),
            lr=ops.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=ops.cast(self.epsilon, dtype),
            grad=tf.convert_to_tensor(ops.cast(gradient, dtype)))
        return None
