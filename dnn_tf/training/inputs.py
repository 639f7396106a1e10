"""The training inputs inside the compiled step: which examples, how they are jittered, the random streams.

Every random choice is a stateless function of ``(config.seed, step)``:

* shuffling: epoch ``e`` visits the examples in the order
  ``argsort(stateless_uniform(seed=(seed, NUM_STREAMS * e)))``, ``n // batch_size``
  batches per epoch (the remainder is left out of that epoch);
* dropout: seed ``(seed, NUM_STREAMS * step + DROPOUT_STREAM)`` (the model folds in the layer index);
* input jitter: seed ``(seed, NUM_STREAMS * step + JITTER_STREAM)`` for the shift, that seed
  with ``DISTORT_SUBSTREAM`` folded in for the affine distortion.

So a resumed run follows the same trajectory as an uninterrupted one, and two runs
with the same seed on the same machine give identical metrics.
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

from dnn_tf.training import augment
from dnn_tf.training.config import TrainConfig

# Random streams: seed (config.seed, NUM_STREAMS * counter + stream).
NUM_STREAMS = 4
SHUFFLE_STREAM, DROPOUT_STREAM, JITTER_STREAM = 0, 1, 2
DISTORT_SUBSTREAM = 1  # folded into the jitter seed: the distortion draws apart from the shift
# The same random numbers on CPU and GPU (XLA-compiled steps draw different, equally
# deterministic numbers: its Philox is not bit-identical to the TF kernels').
RNG_ALG = augment.RNG_ALG


def stream_seed(seed: int, counter, stream: int) -> tf.Tensor:
    """The stateless seed ``(seed, NUM_STREAMS * counter + stream)`` as an int64 [2] tensor."""
    counter = tf.cast(counter, tf.int64)
    return tf.stack([tf.constant(seed, tf.int64), counter * NUM_STREAMS + stream])


def epoch_permutation(n: int, seed: int, epoch) -> tf.Tensor:
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)`` (XLA-compatible)."""
    keys = tf.random.stateless_uniform([n], stream_seed(seed, epoch, SHUFFLE_STREAM), dtype=tf.float64,
                                      alg=RNG_ALG)
    return tf.cast(tf.argsort(keys, stable=True), tf.int64)


def make_batch_fn(config: TrainConfig, images: tf.Tensor, labels: tf.Tensor, permutation: tf.Variable | None,
                  epoch: tf.Variable | None) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Returns ``batch(step) -> (images, labels)``, traced inside the train step.

    ``batch_size=None``: the whole set every step. ``"offset"``: the course's
    ``images[offset:offset + b]`` with ``offset = (step * b) % (n - b)``.
    ``"shuffle"``: batch ``step % (n // b)`` of the permutation of epoch
    ``step // (n // b)``, kept in ``permutation`` and recomputed in-graph when the
    epoch (kept in ``epoch``) changes.
    """
    n = int(images.shape[0])
    if config.batch_size is None:
        return lambda step: (images, labels)
    b = config.batch_size
    if config.batching == "offset":
        span = max(n - b, 1)  # n == b: offset always 0

        def offset_batch(step):
            offset = (step * b) % span
            idx = tf.cast(offset, tf.int32) + tf.range(b)  # a gather: XLA would recompile a dynamic slice
            return tf.gather(images, idx), tf.gather(labels, idx)

        return offset_batch

    per_epoch = n // b

    def shuffled_batch(step):
        current = step // per_epoch

        def new_epoch():
            perm = epoch_permutation(n, config.seed, current)
            permutation.assign(perm)
            epoch.assign(current)
            return perm

        # Recomputed only when the epoch changes (and after a restart); the value flows
        # out of the cond so no backend can read the variable before the update.
        perm = tf.cond(tf.not_equal(current, epoch), new_epoch, permutation.read_value)
        start = (step % per_epoch) * b
        idx = tf.gather(perm, start + tf.range(b, dtype=tf.int64))
        return tf.gather(images, idx), tf.gather(labels, idx)

    return shuffled_batch


def jitter(config: TrainConfig, images: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """The training jitter of ``step``: ``augment.random_distort`` then ``augment.random_shift``, as configured."""
    seed = stream_seed(config.seed, step, JITTER_STREAM)
    if config.distorts:
        images = augment.random_distort(images, tf.random.experimental.stateless_fold_in(seed, DISTORT_SUBSTREAM),
                                        max_rotation=config.max_rotation, max_scale=config.max_scale,
                                        max_shear=config.max_shear)
    if config.max_shift > 0:
        images = augment.random_shift(images, config.max_shift, seed)
    return images
