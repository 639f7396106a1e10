"""The optimizer of a run and its learning-rate schedule: SGD (the course's), momentum and Adam.

Each optimizer is a ``tf.Module`` that owns its slot variables (momentum, Adam's moments) and
updates a variable with TensorFlow's fused training kernel, the one the course's TF1
``tf.train`` optimizers ran (``ResourceApplyGradientDescent``, ``ResourceApplyKerasMomentum``,
``ResourceApplyAdam``): one pass over a weight matrix and its slots per step instead of one per
element-wise op (results/speed_tricks.md measures what that buys). The kernels compute Keras's
formulas (Adam: epsilon added to sqrt(v), the bias correction folded into the step size), so
the numbers are Keras's to float rounding.

``apply_gradients`` is what ``model.train_step`` calls. On tf.distribute replicas it first
sums the replicas' gradients, then every replica applies the same update to its own copy of
the variables, so the copies stay equal; on one device it is a plain update.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import tensorflow as tf

from dnn_tf.training.config import TrainConfig

ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7  # Keras's defaults


def learning_rate_schedule(config: TrainConfig):
    """``lr * decay_rate ** (step / decay_steps)`` (Keras's ExponentialDecay), or the constant rate."""
    if config.decay_steps > 0:
        return tf.keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, config.decay_steps, config.decay_rate, staircase=config.staircase)
    return float(config.learning_rate)  # (Keras refuses an int)


def learning_rate_at(schedule, step) -> float:
    """The learning rate ``schedule`` gives at ``step``."""
    return float(schedule(step)) if callable(schedule) else float(schedule)


class Optimizer(tf.Module):
    """What the three optimizers share: the learning rate, the step counter, the slots, the replica sum.

    Args:
      learning_rate: a float or a schedule ``step -> rate`` (``learning_rate_schedule``).
      slot_names: the per-variable state of the method (e.g. ``("m", "v")``).
      name: module name.
    """

    def __init__(self, learning_rate, slot_names: Sequence[str], name: str):
        super().__init__(name=name)
        self.learning_rate = learning_rate
        self.slot_names = tuple(slot_names)
        # Steps applied. Replicas all count the same steps: the first one's increment is kept.
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations",
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.variables_built: list[tf.Variable] = []
        self.slots: dict[str, list[tf.Variable]] = {slot: [] for slot in self.slot_names}

    def build(self, variables: Sequence[tf.Variable]) -> None:
        """Creates the slots of ``variables`` (zeros); call in the strategy's scope, before restoring a checkpoint."""
        with self.name_scope:
            for variable in variables:
                if any(variable is v for v in self.variables_built):
                    continue
                self.variables_built.append(variable)
                for slot in self.slot_names:
                    name = f"{slot}_{variable.name.split(':')[0].replace('/', '_')}"
                    self.slots[slot].append(tf.Variable(tf.zeros_like(variable), trainable=False, name=name))

    def apply_gradients(self, grads_and_vars: Iterable[tuple[tf.Tensor, tf.Variable]]) -> None:
        """One update of every variable with its gradient, at the current learning rate."""
        gradients, variables = zip(*grads_and_vars)
        self.build(variables)
        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, list(gradients))
        rate = self.learning_rate
        learning_rate = tf.cast(rate(self.iterations) if callable(rate) else rate, tf.float32)
        for gradient, variable in zip(gradients, variables):
            index = next(i for i, v in enumerate(self.variables_built) if v is variable)
            slots = [self.slots[slot][index] for slot in self.slot_names]
            self.update(variable, tf.cast(gradient, variable.dtype), learning_rate, *slots)
        self.iterations.assign_add(1)

    def update(self, variable: tf.Variable, gradient: tf.Tensor, learning_rate: tf.Tensor, *slots) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Gradient descent, the course's: ``w -= learning_rate * gradient``."""

    def __init__(self, learning_rate, name: str = "sgd"):
        super().__init__(learning_rate, (), name)

    def update(self, variable, gradient, learning_rate, *slots) -> None:
        tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=learning_rate, delta=gradient)


class Momentum(Optimizer):
    """SGD with momentum: ``m = momentum * m - learning_rate * gradient; w += m`` (Nesterov optional)."""

    def __init__(self, learning_rate, momentum: float, nesterov: bool = False, name: str = "momentum"):
        super().__init__(learning_rate, ("momentum",), name)
        self.momentum, self.nesterov = float(momentum), bool(nesterov)

    def update(self, variable, gradient, learning_rate, *slots) -> None:
        tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=slots[0].handle, lr=learning_rate, grad=gradient,
            momentum=tf.constant(self.momentum, variable.dtype), use_nesterov=self.nesterov)


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with Keras's defaults: moments ``m`` and ``v``, bias-corrected."""

    def __init__(self, learning_rate, name: str = "adam"):
        super().__init__(learning_rate, ("m", "v"), name)

    def update(self, variable, gradient, learning_rate, *slots) -> None:
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.constant(ADAM_BETA_1, dtype), tf.constant(ADAM_BETA_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=slots[0].handle, v=slots[1].handle, beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step), lr=learning_rate, beta1=beta_1, beta2=beta_2,
            epsilon=tf.constant(ADAM_EPSILON, dtype), grad=gradient)


def create_optimizer(config: TrainConfig, schedule) -> Optimizer:
    """The optimizer ``config`` names, at the rate of ``schedule``.

    Raises:
      ValueError: an unknown optimizer.
    """
    if config.optimizer == "sgd":
        return SGD(schedule)
    if config.optimizer == "momentum":
        return Momentum(schedule, config.momentum)
    if config.optimizer == "adam":
        return Adam(schedule)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")
