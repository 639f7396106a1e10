"""The training steps the benchmarks time, built from a checkout's modules handed in, never imported here.

Every commit's package is called ``dnn_tf``, so comparing two commits takes two processes, each
with its own checkout on the path (``checkout_worker``). This module imports neither ``dnn_tf``
nor the benchmarks' ``common``, so the same code builds the steps in this checkout's benchmarks
(``train_contenders``) and in a process serving another checkout:

* ``make_compiled_step``: the compiled step ``train_and_evaluate`` calls, from the checkout's
  ``loop.create_train_state``, ``inputs.make_batch_fn`` and ``loop.make_train_fn``;
* ``make_bare_step``: the floor, forward + backward + ``w -= lr * g`` in raw TensorFlow;
* ``make_jitter``: the step's input jitter alone (``inputs.jitter``);
* ``keras_optimizer``: Keras's own optimizer of a config, to swap into a step.

Each ``make_*`` returns ``run() -> seconds`` of a fixed amount of steady-state work; the first
call may still trace or compile, so callers warm up first (``common.interleave``).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter is noise here
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

LEARNING_RATE = 0.1  # the bare step's (small enough that it does not diverge on the synthetic data)
SEED = 0
NOISE = 0.25  # synthetic images: class prototype + this much Gaussian noise, clipped to [-0.5, 0.5]


def synthetic_data(n: int, num_classes: int, image_size: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Learnable stand-in images: float32 ``(n, image_size, image_size)`` in [-0.5, 0.5], int32 labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(-0.5, 0.5, (num_classes, image_size, image_size)).astype(np.float32)
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    images = prototypes[labels] + NOISE * rng.standard_normal((n, image_size, image_size)).astype(np.float32)
    return np.clip(images, -0.5, 0.5), labels


def timed_calls(fn: Callable, arg, calls: int) -> Callable[[], float]:
    """``run() -> seconds`` of ``calls`` calls ``fn(arg)``, until the last one's first output is on the host."""
    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            out = fn(arg)
        np.asarray(tf.nest.flatten(out)[0])
        return time.perf_counter() - t0

    return run


def keras_optimizer(config, schedule):
    """Keras's own optimizer of ``config.optimizer`` ("adam", "sgd" or "momentum") at ``schedule``'s rate."""
    if config.optimizer == "adam":
        return tf.keras.optimizers.Adam(schedule)
    if config.optimizer == "momentum":
        return tf.keras.optimizers.SGD(schedule, momentum=config.momentum)
    if config.optimizer == "sgd":
        return tf.keras.optimizers.SGD(schedule)
    raise ValueError(f"no Keras optimizer for {config.optimizer!r}")


def make_compiled_step(loop, inputs, distribute, preset, images, labels, steps: int, *,
                       optimizer: Callable[[Any], Any] | None = None, fixed_batch: bool = False) -> Callable[[], float]:
    """A checkout's compiled train step on ``preset``, the data resident on the device.

    Built as ``train_and_evaluate`` builds it: ``loop.create_train_state``,
    ``inputs.make_batch_fn``, ``loop.make_train_fn`` (the checkout's modules). The step is
    traced here, so a caller that patches the checkout's code around this call times the
    patched step.

    Args:
      loop, inputs, distribute: the checkout's modules (``dnn_tf.training.loop``, ``.inputs``,
        ``.distribute`` in this checkout; ``dnn_tf.train``, ``dnn_tf.inputs``, ``dnn_tf.distribute``
        in 8428ca3 and before).
      preset: the checkout's preset (config and run settings).
      images, labels: the training set (arrays or tensors).
      steps: steps per ``run()``, a multiple of the preset's steps_per_call.
      optimizer: a measurement variant: ``config -> optimizer`` replacing the state's one
        (built on the model's variables), e.g. ``keras_optimizer``.
      fixed_batch: a measurement variant: every step trains on the first ``batch_size``
        examples (no in-graph permutation and gather).

    Returns:
      ``run() -> seconds``; ``run.state`` is the train state, ``run.preset`` the preset,
      ``run.train_fn`` the compiled ``train(count)``.
    """
    config, settings = preset.config, preset.settings
    if steps % settings.steps_per_call:
        raise ValueError(f"steps {steps} is not a multiple of steps_per_call {settings.steps_per_call}")
    count = tf.constant(settings.steps_per_call, tf.int64)
    with tf.device(distribute.default_device()):
        x, y = tf.identity(tf.convert_to_tensor(images)), tf.identity(tf.convert_to_tensor(labels))
        state = loop.create_train_state(config, int(x.shape[0]))
        if optimizer is not None:
            state.optimizer = optimizer(config)
            state.optimizer.build(state.model.trainable_variables)
        if fixed_batch:
            first = (tf.identity(x[:config.batch_size]), tf.identity(y[:config.batch_size]))
            batch_fn = lambda step: first  # noqa: E731
        else:
            batch_fn = inputs.make_batch_fn(config, x, y, state.permutation, state.epoch)
        train_fn = loop.make_train_fn(config, settings, state, distribute.create_strategy(settings), batch_fn)
        train_fn.get_concrete_function(count)
    run = timed_calls(train_fn, count, steps // settings.steps_per_call)
    run.state, run.preset, run.train_fn = state, preset, train_fn
    return run


def make_bare_step(hidden: Sequence[int], batch: int, images: np.ndarray, labels: np.ndarray, steps: int,
                   steps_per_call: int, *, num_classes: int, init_gain: float, device: str,
                   matmul: Callable = tf.matmul) -> Callable[[], float]:
    """The floor of a training step: the same net and batch, nothing but forward, backward and ``w -= lr * g``.

    Raw TensorFlow, as one would write it by hand: weights drawn with variance
    ``init_gain / fan_in`` (He: ``model.HE_GAIN``), the data resident on ``device``, the batch
    gathered in-graph at ``(step * batch) % (n - batch)``, ReLUs, sparse softmax cross-entropy;
    ``steps_per_call`` steps per ``tf.function`` call. No dropout, L2, jitter, NaN guard or Adam.
    ``matmul``: the layers' product (8428ca3's ``model.matmul_for_training`` for its input gradient).
    """
    if steps % steps_per_call:
        raise ValueError(f"steps {steps} is not a multiple of steps_per_call {steps_per_call}")
    n = images.shape[0]
    pixels = int(np.prod(images.shape[1:]))
    sizes = (pixels, *hidden, num_classes)
    with tf.device(device):
        x_all, y_all = tf.constant(images.reshape(n, pixels)), tf.constant(labels)
        params = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            params += [tf.Variable(tf.random.stateless_normal((a, b), (SEED, i)) * float(np.sqrt(init_gain / a))),
                       tf.Variable(tf.zeros([b]))]
    step_var = tf.Variable(0, dtype=tf.int32)

    @tf.function
    def train(count):
        loss = tf.constant(0.0)
        for _ in tf.range(count):
            idx = (step_var * batch) % (n - batch) + tf.range(batch)
            h, y = tf.gather(x_all, idx), tf.gather(y_all, idx)
            with tf.GradientTape() as tape:
                for i in range(0, len(params), 2):
                    h = matmul(h, params[i]) + params[i + 1]
                    h = tf.nn.relu(h) if i + 2 < len(params) else h
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
            for p, g in zip(params, tape.gradient(loss, params)):
                p.assign_sub(LEARNING_RATE * g)
            step_var.assign_add(1)
        return loss

    return timed_calls(train, tf.constant(steps_per_call), steps // steps_per_call)


def make_jitter(inputs, config, images: np.ndarray, steps: int) -> Callable[[], float]:
    """The input jitter of ``steps`` training steps (``inputs.jitter`` of one batch), in one compiled call.

    Each step's jitter reads the previous one's sum (``0 * acc``), so none can be skipped or
    run in parallel with another; the extra multiply-add is one pass over a batch. Traced
    here, like ``make_compiled_step``.
    """
    batch = tf.constant(images[:config.batch_size])

    @tf.function
    def jitter(count):
        acc = tf.constant(0.0)
        for step in tf.range(count, dtype=tf.int64):
            acc += tf.reduce_sum(inputs.jitter(config, batch + 0.0 * acc, step))
        return acc

    count = tf.constant(steps, tf.int64)
    jitter.get_concrete_function(count)
    return timed_calls(jitter, count, 1)
