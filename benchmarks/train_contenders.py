"""train_throughput's contenders: each ``make_*`` returns ``run() -> seconds`` of ``steps`` steady-state steps.

* ``make_ours``: dnn_tf's compiled step (``train.make_train_fn``), with measurement
  variants that switch one part off (the deep preset's profile, ``train_deep``);
* ``make_bare_step``: the floor, forward + backward + plain SGD in raw TensorFlow;
* ``make_keras_fit``: ``model.fit`` of the same net built by ``dnn_tf.reference.keras_mlp`` on ``tf.data``;
* ``make_tf1_feed_dict``: the course's ``tf.compat.v1`` session loop (``dnn_tf.reference.course_tf1``);
* ``make_matmul``: bursts of float32 matmuls (the FLOP limit's denominator).

Set-up (building, tracing) happens in ``make_*``; a contender's first ``run()`` may
still compile, so callers warm up first (``common.interleave``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Sequence
from unittest import mock

import common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np
import tensorflow as tf

from dnn_tf.model import HE_GAIN, MLP
from dnn_tf.reference import keras_mlp
from dnn_tf.reference.course_tf1 import CourseTF1
from dnn_tf.training import distribute, inputs
from dnn_tf.training import loop as dtrain

IMAGE_PIXELS = 784
NUM_CLASSES = 10
LEARNING_RATE = 0.1  # small enough that no contender diverges on the synthetic data
SEED = 0
NOISE = 0.25  # synthetic images: class prototype + this much Gaussian noise, clipped to [-0.5, 0.5]
# Matmul shapes whose FLOPs are below this fraction of the net's largest layer are not timed.
MIN_SHAPE_SHARE = 0.5
SQUARE_SIZES = (1024, 2048)
MATMUL_TARGET_FLOP = 4e9  # FLOPs per timed matmul burst (~20-40 ms)


# --------------------------------------------------------------------------- data


def synthetic_data(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Learnable stand-in images: float32 (n, 28, 28) in [-0.5, 0.5] and int32 labels (n,)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(-0.5, 0.5, (NUM_CLASSES, 28, 28)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, n).astype(np.int32)
    images = prototypes[labels] + NOISE * rng.standard_normal((n, 28, 28)).astype(np.float32)
    return np.clip(images, -0.5, 0.5), labels


# --------------------------------------------------------------------------- contenders


def make_ours(preset, images: np.ndarray, labels: np.ndarray, steps: int, *, compute_dtype=None,
              create_optimizer: Callable | None = None, fixed_batch: bool = False) -> Callable[[], float]:
    """dnn_tf's compiled train step (what train_and_evaluate calls), data resident on the device.

    The keywords are measurement variants, not dnn_tf options (``mock.patch`` of
    ``dnn_tf.training.loop`` while the step is built and traced):

    Args:
      compute_dtype: build the MLP with this compute dtype (e.g. ``tf.bfloat16``;
        variables, loss and updates stay float32).
      create_optimizer: ``(config, schedule) -> optimizer`` instead of ``optimizers.create_optimizer``.
      fixed_batch: every step trains on the first ``batch_size`` examples (no in-graph gather).

    Returns:
      ``run() -> seconds``; ``run.state`` is the ``TrainState``, ``run.preset`` the preset.
    """
    config, settings = preset.config, preset.settings
    if steps % settings.steps_per_call:
        raise ValueError(f"steps {steps} is not a multiple of steps_per_call {settings.steps_per_call}")
    patches = {"create_optimizer": create_optimizer}
    if compute_dtype is not None:
        patches["create_model"] = lambda c: MLP(hidden_sizes=c.hidden_sizes, dropout_rate=c.dropout_rate,
                                                init=c.init, init_stddev=c.init_stddev, seed=c.seed,
                                                compute_dtype=compute_dtype)
    count = tf.constant(settings.steps_per_call, tf.int64)
    with contextlib.ExitStack() as stack, tf.device(distribute.default_device()):
        for name, new in patches.items():
            if new is not None:
                stack.enter_context(mock.patch.object(dtrain, name, new))
        x, y = tf.identity(tf.convert_to_tensor(images)), tf.identity(tf.convert_to_tensor(labels))
        state = dtrain.create_train_state(config, images.shape[0])
        if fixed_batch:
            first = (tf.identity(x[:config.batch_size]), tf.identity(y[:config.batch_size]))
            batch_fn = lambda step: first  # noqa: E731
        else:
            batch_fn = inputs.make_batch_fn(config, x, y, state.permutation, state.epoch)
        train_fn = dtrain.make_train_fn(config, settings, state, distribute.create_strategy(settings), batch_fn)
        train_fn.get_concrete_function(count)  # traced now, while the patches hold
    calls = steps // settings.steps_per_call

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            loss, _ = train_fn(count)
        float(loss)  # wait for the last step
        return time.perf_counter() - t0

    run.state, run.preset = state, preset
    return run


def make_bare_step(hidden: Sequence[int], batch: int, images: np.ndarray, labels: np.ndarray, steps: int,
                   steps_per_call: int, matmul: Callable = tf.matmul) -> Callable[[], float]:
    """The floor of a training step: the same net and batch, nothing but forward, backward and ``w -= lr * g``.

    Raw TensorFlow, as one would write it by hand: He-initialized weights, the data
    resident on the device, the batch gathered in-graph at ``(step * batch) % (n - batch)``,
    ReLUs, sparse softmax cross-entropy; ``steps_per_call`` steps per ``tf.function``
    call. No dropout, L2, jitter, NaN guard or Adam. ``matmul``: the layers' product
    (e.g. ``model.matmul_for_training``, dnn_tf's cheaper input gradient).
    """
    if steps % steps_per_call:
        raise ValueError(f"steps {steps} is not a multiple of steps_per_call {steps_per_call}")
    n = images.shape[0]
    sizes = (IMAGE_PIXELS, *hidden, NUM_CLASSES)
    with tf.device(distribute.default_device()):
        x_all, y_all = tf.constant(images.reshape(n, IMAGE_PIXELS)), tf.constant(labels)
        params = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            params += [tf.Variable(tf.random.stateless_normal((a, b), (SEED, i)) * float(np.sqrt(HE_GAIN / a))),
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

    count = tf.constant(steps_per_call)

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(steps // steps_per_call):
            loss = train(count)
        float(loss)
        return time.perf_counter() - t0

    return run


def make_keras_fit(hidden: Sequence[int], batch: int, images: np.ndarray, labels: np.ndarray, steps: int,
                   optimizer=None, dropout: float = 0.0) -> Callable[[], float]:
    """``model.fit`` of ``keras_mlp.build_mlp`` (He init, no L2) on a tf.data pipeline; times steps
    1..steps-1 of each fit call (steady state).

    Args:
      optimizer: the Keras optimizer (default ``SGD(LEARNING_RATE)``).
      dropout: a ``Dropout`` layer of this rate after every hidden layer (0: none).
    """
    keras = tf.keras
    model = keras_mlp.build_mlp(hidden, dropout_rate=dropout, init="he")
    model.compile(optimizer=optimizer or keras.optimizers.SGD(LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    n = images.shape[0]
    ds = (tf.data.Dataset.from_tensor_slices((images, labels)).cache()
          .shuffle(n, seed=SEED).batch(batch, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))

    class Clock(keras.callbacks.Callback):
        """Batch-begin and train-end times only: keeps Keras's asynchronous logs path."""

        def on_train_batch_begin(self, step, logs=None):
            if step == 1:
                self.start = time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

    def run() -> float:
        clock = Clock()
        model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False, callbacks=[clock])
        return (clock.end - clock.start) * steps / (steps - 1)

    return run


def make_tf1_feed_dict(hidden: Sequence[int], batch: int, images: np.ndarray, labels: np.ndarray,
                       steps: int) -> tuple[Callable[[], float], Callable[[], None]]:
    """The course's graph + session loop (``course_tf1.CourseTF1``), He-scaled truncated-normal init.

    Returns (run, close); ``run`` times ``steps`` more steps (the offset into the data carries on).
    """
    sizes = (IMAGE_PIXELS, *hidden, NUM_CLASSES)
    init = [(tf.random.stateless_truncated_normal((a, b), (SEED, i), stddev=float(np.sqrt(2.0 / a))).numpy(),
             np.zeros(b, np.float32)) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    course = CourseTF1(images, labels, hidden, batch, learning_rate=LEARNING_RATE, init=init)

    def run() -> float:
        t0 = time.perf_counter()
        course.train(steps)
        return time.perf_counter() - t0

    return run, course.close


def matmul_shapes(layer_sizes: Sequence[int], batch: int) -> list[tuple[int, int, int]]:
    """(m, k, n) of the net's training matmuls that matter, plus square ones."""
    shapes = []
    for i, (a, b) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        shapes += [(batch, a, b), (a, batch, b)] + ([(batch, b, a)] if i > 0 else [])
    biggest = max(m * k * n for m, k, n in shapes)
    kept = sorted({s for s in shapes if s[0] * s[1] * s[2] >= MIN_SHAPE_SHARE * biggest})
    return kept + [(s, s, s) for s in SQUARE_SIZES]


@tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None, None], tf.float32),
                              tf.TensorSpec([], tf.int32)])
def matmul_burst(a, b, count):
    """``count`` matmuls ``a @ b`` in one call (traced once for every shape)."""
    acc = tf.constant(0.0)
    for _ in tf.range(count):
        # The (cheap) dependency on acc keeps the matmuls in the loop and in order.
        acc += tf.reduce_sum(tf.matmul(a + 0.0 * acc, b))
    return acc


def make_matmul(shape: tuple[int, int, int], target_flop: float = MATMUL_TARGET_FLOP) -> Callable[[], float]:
    """Times a burst of float32 matmuls of ``shape``; returns seconds per matmul."""
    m, k, n = shape
    reps = max(1, int(target_flop / (2 * m * k * n)))
    a = tf.random.stateless_normal((m, k), seed=(SEED, 1))
    b = tf.random.stateless_normal((k, n), seed=(SEED, 2)) / float(np.sqrt(k))
    count = tf.constant(reps)
    burst = matmul_burst

    def run() -> float:
        t0 = time.perf_counter()
        float(burst(a, b, count))
        return (time.perf_counter() - t0) / reps

    return run
