"""The optimizer of a run and its learning-rate schedule: SGD (the course's), momentum and Adam, fused.

``FusedAdam`` and ``FusedSGD`` are Keras's ``Adam`` and ``SGD`` (same slot
variables, hyperparameters, schedule handling, checkpoints, ``LossScaleOptimizer``
and tf.distribute behaviour) whose per-variable update is TensorFlow's fused
training kernel (``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``,
``ResourceApplyGradientDescent``): one pass over the weights, the slots and the
gradient instead of Keras's separate element-wise ops, each a pass over the
variable: on the deep preset's 3.7 M weights those passes are a large part of a
CPU step (the ``Keras Adam`` row of results/train_throughput.md). The kernels
compute Keras's formulas (epsilon added to sqrt(v), bias correction folded into
the step size), so the numbers agree with Keras to float rounding.
"""

from __future__ import annotations

import tensorflow as tf

from dnn_tf.training.config import TrainConfig


def learning_rate_schedule(config: TrainConfig):
    """``lr * decay_rate ** (step / decay_steps)`` (ExponentialDecay), or the constant rate."""
    if config.decay_steps > 0:
        return tf.keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, config.decay_steps, config.decay_rate, staircase=config.staircase)
    return float(config.learning_rate)  # (Keras refuses an int)


def learning_rate_at(schedule, step: int) -> float:
    """The learning rate ``schedule`` gives at ``step``."""
    if isinstance(schedule, tf.keras.optimizers.schedules.LearningRateSchedule):
        return float(schedule(step))
    return float(schedule)


def _unfusable(gradient) -> bool:
    """Sparse (IndexedSlices) gradients keep Keras's own update (the dense kernels need a dense gradient)."""
    return isinstance(gradient, tf.IndexedSlices)


class FusedAdam(tf.keras.optimizers.Adam):
    """Keras's Adam; each variable's update is one ``ResourceApplyAdam`` (AMSGrad: Keras's own update)."""

    def update_step(self, gradient, variable, learning_rate):
        """``m``, ``v`` and ``variable`` updated in one fused pass, as ``Adam.update_step`` computes them."""
        if self.amsgrad or _unfusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].handle, v=self._velocities[index].handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), lr=tf.cast(learning_rate, dtype),
            beta1=beta_1, beta2=beta_2, epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


class FusedSGD(tf.keras.optimizers.SGD):
    """Keras's SGD; with momentum each update is one ``ResourceApplyKerasMomentum``, without one
    ``ResourceApplyGradientDescent``."""

    def update_step(self, gradient, variable, learning_rate):
        """``variable`` (and its momentum) updated in one fused pass, as ``SGD.update_step`` computes them."""
        if _unfusable(gradient):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr, grad = tf.cast(learning_rate, dtype), tf.cast(gradient, dtype)
        if not self.momentums:
            tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=lr, delta=grad)
            return
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=self.momentums[self._get_variable_index(variable)].handle, lr=lr,
            grad=grad, momentum=tf.cast(self.momentum, dtype), use_nesterov=self.nesterov)


def create_optimizer(config: TrainConfig, schedule):
    """SGD (the course's), SGD with momentum or Adam (fused kernels); loss-scaled with ``mixed_precision``.

    With ``mixed_precision`` the optimizer is a ``LossScaleOptimizer`` (dynamic
    loss scaling): a step whose float16 gradients overflow is skipped and the
    scale halved. The schedule follows the inner optimizer's iteration count, so
    it lags behind the step by the number of skipped steps (a handful at the start).

    Raises:
      ValueError: an unknown optimizer.
    """
    if config.optimizer == "sgd":
        optimizer = FusedSGD(schedule)
    elif config.optimizer == "momentum":
        optimizer = FusedSGD(schedule, momentum=config.momentum)
    elif config.optimizer == "adam":
        optimizer = FusedAdam(schedule)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    if config.mixed_precision:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer
