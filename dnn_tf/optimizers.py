"""The optimizer of a run and its learning-rate schedule (Keras optimizers, the course's SGD first)."""

from __future__ import annotations

import tensorflow as tf

from dnn_tf.config import TrainConfig


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


def create_optimizer(config: TrainConfig, schedule):
    """SGD (the course's), SGD with momentum or Adam; loss-scaled with ``mixed_precision``.

    With ``mixed_precision`` the optimizer is a ``LossScaleOptimizer`` (dynamic
    loss scaling): a step whose float16 gradients overflow is skipped and the
    scale halved. The schedule follows the inner optimizer's iteration count, so
    it lags behind the step by the number of skipped steps (a handful at the start).

    Raises:
      ValueError: an unknown optimizer.
    """
    if config.optimizer == "sgd":
        optimizer = tf.keras.optimizers.SGD(schedule)
    elif config.optimizer == "momentum":
        optimizer = tf.keras.optimizers.SGD(schedule, momentum=config.momentum)
    elif config.optimizer == "adam":
        optimizer = tf.keras.optimizers.Adam(schedule)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    if config.mixed_precision:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer
