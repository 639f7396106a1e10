"""What plain Keras gives: our network, optimizer and L2 trained with ``model.fit``.

A row for the results table next to our loop:
``fit_keras(baseline_config(presets.get("deep").config), data)`` builds the config's MLP as
a ``tf.keras.Sequential`` (same layers, init, dropout, L2, optimizer and learning-rate
schedule) and trains it the way a user would write it: reshuffled epochs of ``batch_size``
(the last batch of an epoch smaller), no input jitter, no deskewing, as many whole epochs
as come closest to ``config.steps``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from dnn_tf.model import accuracy
from dnn_tf.notmnist import IMAGE_SIZE, NUM_CLASSES
from dnn_tf.training.config import INITS, TrainConfig
from dnn_tf.training.distribute import default_device
from dnn_tf.training.loop import EVAL_BATCH, training_arrays
from dnn_tf.training.optimizers import learning_rate_at, learning_rate_schedule

JITTER_FIELDS = ("max_shift", "max_rotation", "max_scale", "max_shear")
OPTIMIZERS = {  # Keras's own optimizers, as a user would pick them
    "adam": lambda config, lr: tf.keras.optimizers.Adam(lr),
    "momentum": lambda config, lr: tf.keras.optimizers.SGD(lr, momentum=config.momentum),
    "sgd": lambda config, lr: tf.keras.optimizers.SGD(lr),
}
PERCENT = 100.0

logger = logging.getLogger(__name__)


def baseline_config(deep: TrainConfig) -> TrainConfig:
    """``deep`` without input jitter and deskewing: same architecture, optimizer and step budget."""
    return deep.replace(max_shift=0, max_rotation=0.0, max_scale=0.0, max_shear=0.0, deskew=False)


def check_config(config: TrainConfig) -> None:
    """Raises ValueError naming what of ``config`` plain ``model.fit`` cannot honour."""
    jitter = [f"{name}={getattr(config, name)}" for name in JITTER_FIELDS if getattr(config, name)]
    problems = [f"input jitter ({', '.join(jitter)})"] if jitter else []
    problems += ["deskew=True"] if config.deskew else []
    if config.batch_size is None:
        problems.append("batch_size=None (fit takes minibatches, not full-batch gradient descent)")
    if config.batching != "shuffle":
        problems.append(f"batching={config.batching!r} (fit shuffles every epoch)")
    if config.optimizer not in OPTIMIZERS:
        problems.append(f"optimizer={config.optimizer!r} (one of {', '.join(OPTIMIZERS)})")
    if problems:
        hint = "; baseline_config() turns the jitter and deskewing off" if jitter or config.deskew else ""
        raise ValueError(f"the Keras baseline cannot honour {', '.join(problems)}{hint}")


def build_mlp(hidden_sizes: Sequence[int], dropout_rate: float = 0.0, l2_beta: float = 0.0,
              init: str = "truncated_normal", init_stddev: float = 1.0) -> tf.keras.Sequential:
    """Our MLP as Keras layers: Flatten, (Dense ReLU, Dropout) per hidden layer, Dense logits.

    Takes (n, 28, 28) images. Every kernel gets ``init`` (``TrainConfig.init``: "truncated_normal"
    of ``init_stddev``, or "he") and, for ``l2_beta > 0``, an L2 of ``l2_beta / 2 * sum(W**2)``
    (ours: ``l2_beta * tf.nn.l2_loss(W)``); biases start at zero and are not penalized. The
    benchmarks build the Keras contender from it too, so there is one Keras version of the net.

    Raises:
      ValueError: an unknown ``init``.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")

    def initializer():
        if init == "he":  # truncated normal with the actual stddev sqrt(2 / fan_in), as ours
            return tf.keras.initializers.HeNormal()
        return tf.keras.initializers.TruncatedNormal(stddev=init_stddev)

    def dense(units, activation=None):
        regularizer = tf.keras.regularizers.L2(l2_beta / 2) if l2_beta > 0 else None
        return tf.keras.layers.Dense(units, activation, kernel_initializer=initializer(),
                                     kernel_regularizer=regularizer)

    layers = [tf.keras.Input((IMAGE_SIZE, IMAGE_SIZE)), tf.keras.layers.Flatten()]
    for width in hidden_sizes:
        layers.append(dense(width, "relu"))
        if dropout_rate > 0:
            layers.append(tf.keras.layers.Dropout(dropout_rate))
    return tf.keras.Sequential(layers + [dense(NUM_CLASSES)])


def build_model(config: TrainConfig) -> tf.keras.Sequential:
    """``build_mlp`` with ``config``'s hidden sizes, dropout, L2 and init."""
    return build_mlp(config.hidden_sizes, dropout_rate=config.dropout_rate, l2_beta=config.l2_beta,
                     init=config.init, init_stddev=config.init_stddev)


def epoch_budget(steps: int, num_train: int, batch_size: int) -> tuple[int, int]:
    """``(epochs, steps per epoch)``: ``ceil(n / batch_size)`` steps an epoch (fit keeps the
    smaller last batch), ``steps / per_epoch`` epochs rounded half up, at least one."""
    per_epoch = math.ceil(num_train / batch_size)
    return max(1, math.floor(steps / per_epoch + 0.5)), per_epoch


def fit_keras(config: TrainConfig, data: Mapping[str, np.ndarray], name: str = "keras_baseline",
              seed: int | None = None) -> dict[str, Any]:
    """Trains ``build_model(config)`` with ``model.fit`` and evaluates it on every split.

    Args:
      config: hyperparameters (see ``check_config``; ``baseline_config`` makes one of the deep preset).
      data: a dataset dict (``dataset`` module); ``train_subset`` and ``train_on_valid`` apply.
      name: the run's name in the results.
      seed: seeds Keras (init, dropout, shuffling); default ``config.seed`` (the result's config has it).

    Returns:
      A ``TrainResult.to_dict()``-shaped dict, accuracies in percent. ``history`` has one entry
      per epoch at its last step; its ``loss`` and ``minibatch_accuracy`` are Keras's means over
      the epoch. ``steps`` is the number of optimizer steps fit ran.

    Raises:
      ValueError: a config Keras cannot honour, or a batch larger than the training set.
      DataError: not a valid dataset.
    """
    check_config(config)
    if seed is not None:
        config = config.replace(seed=seed)
    arrays = training_arrays(config, data)
    (x_train, y_train), (x_valid, y_valid) = arrays["train"], arrays["valid"]
    epochs, per_epoch = epoch_budget(config.steps, len(y_train), config.batch_size)
    logger.info(f"{name} (plain Keras): {epochs} epochs of {per_epoch} steps = {epochs * per_epoch} steps "
                f"(config.steps {config.steps}), {len(y_train)} training examples")

    tf.keras.utils.set_random_seed(config.seed)
    model = build_model(config)
    schedule = learning_rate_schedule(config)
    model.compile(optimizer=OPTIMIZERS[config.optimizer](config, schedule),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    history: list[dict[str, float]] = []

    def log_epoch(epoch: int, logs: Mapping[str, float]) -> None:
        step = (epoch + 1) * per_epoch - 1
        entry = {"step": step, "loss": float(logs["loss"]), "minibatch_accuracy": PERCENT * float(logs["accuracy"]),
                 "valid_accuracy": PERCENT * float(logs["val_accuracy"]),
                 "learning_rate": learning_rate_at(schedule, step), "seconds": time.perf_counter() - t0}
        history.append(entry)
        logger.info(f"Epoch {epoch + 1}/{epochs} (step {step}): loss {entry['loss']:f}, training accuracy "
                    f"{entry['minibatch_accuracy']:.1f}%, validation accuracy {entry['valid_accuracy']:.1f}%")

    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=config.batch_size, epochs=epochs, shuffle=True, verbose=0,
              validation_data=(x_valid, y_valid), callbacks=[tf.keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)])
    seconds = time.perf_counter() - t0
    acc = {split: accuracy(model.predict(x, batch_size=EVAL_BATCH, verbose=0), y)
           for split, (x, y) in arrays.items() if split != "train"}
    logger.info(f"{name} (plain Keras): validation accuracy {acc['valid']:.1f}%, test accuracy {acc['test']:.1f}%")
    return {"name": name, "config": config.to_dict(), "history": history, "valid_accuracy": acc["valid"],
            "test_accuracy": acc["test"], "valid_sanitized_accuracy": acc.get("valid_sanitized"),
            "test_sanitized_accuracy": acc.get("test_sanitized"), "steps": int(model.optimizer.iterations.numpy()),
            "train_examples": len(y_train), "seconds": seconds, "device": default_device()}
