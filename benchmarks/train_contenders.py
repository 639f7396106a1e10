"""train_throughput's contenders: each ``make_*`` returns ``run() -> seconds`` of ``steps`` steady-state steps.

* ``make_ours``: dnn_tf's compiled step (``loop.make_train_fn`` running ``model.train_step``),
  with measurement variants for the deep preset's profile (``train_deep``);
* ``make_bare_step``: the floor, forward + backward + plain SGD in raw TensorFlow;
* ``make_keras_fit``: ``model.fit`` of the same net built by ``dnn_tf.reference.keras_mlp`` on ``tf.data``;
* ``make_tf1_feed_dict``: the course's ``tf.compat.v1`` session loop (``dnn_tf.reference.course_tf1``);
* ``make_matmul``: bursts of float32 matmuls (the FLOP limit's denominator).

Set-up (building, tracing) happens in ``make_*``; a contender's first ``run()`` may
still compile, so callers warm up first (``common.interleave``). The step builders
themselves are in ``timed_steps``, shared with the processes that time other checkouts.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import common  # noqa: F401  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np
import tensorflow as tf
import timed_steps
from timed_steps import LEARNING_RATE, SEED

from dnn_tf.model import HE_GAIN
from dnn_tf.notmnist import IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES
from dnn_tf.reference import keras_mlp
from dnn_tf.reference.course_tf1 import CourseTF1
from dnn_tf.training import distribute, inputs, loop

# Matmul shapes whose FLOPs are below this fraction of the net's largest layer are not timed.
MIN_SHAPE_SHARE = 0.5
SQUARE_SIZES = (1024, 2048)
MATMUL_TARGET_FLOP = 4e9  # FLOPs per timed matmul burst (~20-40 ms)


# --------------------------------------------------------------------------- data


def synthetic_data(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Learnable stand-in notMNIST: float32 (n, 28, 28) images in [-0.5, 0.5] and int32 labels (n,)."""
    return timed_steps.synthetic_data(n, NUM_CLASSES, IMAGE_SIZE, seed)


# --------------------------------------------------------------------------- contenders


def make_ours(preset, images: np.ndarray, labels: np.ndarray, steps: int, *, optimizer: Callable | None = None,
              fixed_batch: bool = False) -> Callable[[], float]:
    """dnn_tf's compiled train step, what ``train_and_evaluate`` calls, the data resident on the device.

    Built from ``loop.create_train_state``, ``inputs.make_batch_fn`` and ``loop.make_train_fn``
    (``timed_steps.make_compiled_step``); every step runs ``model.train_step``.

    Args:
      optimizer: a measurement variant, ``config -> optimizer`` replacing the state's one
        (e.g. Keras's Adam: ``timed_steps.keras_optimizer``).
      fixed_batch: a measurement variant: every step trains on the first ``batch_size``
        examples (no in-graph permutation and gather).

    Returns:
      ``run() -> seconds``; ``run.state`` is the ``TrainState``, ``run.preset`` the preset.
    """
    return timed_steps.make_compiled_step(loop, inputs, distribute, preset, images, labels, steps,
                                          optimizer=optimizer, fixed_batch=fixed_batch)


def make_bare_step(hidden: Sequence[int], batch: int, images: np.ndarray, labels: np.ndarray, steps: int,
                   steps_per_call: int) -> Callable[[], float]:
    """The floor of a training step on this net and batch (``timed_steps.make_bare_step``, He-initialized)."""
    return timed_steps.make_bare_step(hidden, batch, images, labels, steps, steps_per_call, num_classes=NUM_CLASSES,
                                      init_gain=HE_GAIN, device=distribute.default_device())


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
    init = [(tf.random.stateless_truncated_normal((a, b), (SEED, i), stddev=float(np.sqrt(HE_GAIN / a))).numpy(),
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
