"""The course's model: a multi-layer perceptron, its loss, and the ``tf.GradientTape`` step that trains it.

Assignments 2 and 3 in TensorFlow 2, top to bottom: ``MLP`` (``x @ W + b`` layers, ReLUs between
them; no hidden layer is logistic regression), ``loss_fn`` (softmax cross-entropy plus the L2
penalty), ``train_step`` (the course's ``optimizer.minimize(loss)`` written out with a tape),
``eval_step`` and ``accuracy``. The rest of the package wraps them and never re-implements them:
``training/loop.py`` feeds ``train_step`` minibatches inside a ``tf.function`` (XLA on request),
``training/distribute.py`` runs it on tf.distribute replicas.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from dnn_tf.notmnist import IMAGE_PIXELS, NUM_CLASSES
from dnn_tf.training import augment
from dnn_tf.training.config import INITS

# Standard deviation of a unit normal truncated to [-2, 2], what tf.random.truncated_normal draws.
TRUNCATED_NORMAL_STD = 0.87962566103423978
# He et al. (2015): Var[W] = HE_GAIN / fan_in keeps the variance of ReLU activations constant.
HE_GAIN = 2.0


class MLP(tf.Module):
    """Fully connected layers with ReLUs between them: images in, logits out.

    Layer ``i`` computes ``x @ weights[i] + biases[i]``; every layer but the last is followed
    by a ReLU and, while training, by dropout. The weights are drawn by stateless random ops
    seeded with ``(seed, i)``, so a seed always gives the same network.

    ``init="truncated_normal"`` is the course's ``tf.truncated_normal(stddev=init_stddev)``
    (values beyond two standard deviations are redrawn, so the actual spread is 0.88 times
    ``init_stddev``). ``init="he"`` rescales it to an actual standard deviation of
    ``sqrt(2 / fan_in)``: a ReLU keeps half of its input's second moment, so this keeps the
    activations' variance the same from layer to layer, where the course's stddev 1.0
    multiplies it by about ``fan_in / 2`` per layer and a deep net diverges. Biases start at 0.
    ``deskew=True`` straightens each image's slant (``augment.deskew``) before the first layer,
    in training and at inference alike.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (), *, num_classes: int = NUM_CLASSES,
                 input_size: int = IMAGE_PIXELS, dropout_rate: float = 0.0, init: str = "truncated_normal",
                 init_stddev: float = 1.0, seed: int = 0, deskew: bool = False,
                 matmul: Callable = tf.matmul, name: str | None = None):
        """Creates the weights and biases.

        Args:
          hidden_sizes: widths of the hidden ReLU layers; ``()`` gives logistic regression.
          num_classes: number of logits (10 letters).
          input_size: pixels per image (784 = 28 x 28).
          dropout_rate: fraction of hidden units zeroed while training, in [0, 1).
          init: ``"truncated_normal"`` (the course's) or ``"he"``.
          init_stddev: stddev of the ``"truncated_normal"`` draw (unused by ``"he"``).
          seed: integer seed of the weights.
          deskew: straighten each image first (needs square images).
          matmul: computes ``h @ W`` after the first layer: ``tf.matmul``, or the same product with
            a cheaper gradient for ``h`` (``training/speed.py``); the first layer always uses
            ``tf.matmul``, since nothing needs the gradient for the images.
          name: module name.

        Raises:
          ValueError: any argument out of its range, or ``deskew`` with a non-square ``input_size``.
        """
        super().__init__(name=name)
        sizes = (input_size, *hidden_sizes, num_classes)
        _check_arguments(sizes, dropout_rate, init, init_stddev, seed, deskew)
        self.layer_sizes = tuple(int(s) for s in sizes)
        self.input_size = self.layer_sizes[0]
        self.dropout_rate, self.deskew, self.matmul = float(dropout_rate), bool(deskew), matmul
        self.weights, self.biases = [], []
        with self.name_scope:
            for i, (fan_in, fan_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
                stddev = math.sqrt(HE_GAIN / fan_in) / TRUNCATED_NORMAL_STD if init == "he" else init_stddev
                w = tf.random.stateless_truncated_normal(
                    (fan_in, fan_out), seed=tf.constant([int(seed), i], tf.int64), stddev=stddev)
                self.weights.append(tf.Variable(w, name=f"w{i}"))
                self.biases.append(tf.Variable(tf.zeros([fan_out]), name=f"b{i}"))

    def __call__(self, images, training: bool = False, seed=None) -> tf.Tensor:
        """float32 logits ``(n, num_classes)`` of a batch of images.

        Args:
          images: float images ``(n, 28, 28)`` or flat ``(n, 784)``, normalized as in notMNIST.pickle.
          training: a Python bool: apply dropout (when ``dropout_rate > 0``).
          seed: int32/int64 tensor of shape [2] seeding the dropout masks (layer ``i`` folds in ``i``).

        Raises:
          ValueError: a wrong input shape, or dropout without a seed of shape [2].
        """
        x = tf.cast(images, tf.float32)
        x = tf.reshape(x, [-1, _flat_size(x.shape, self.input_size)])
        if self.deskew:
            side = math.isqrt(self.input_size)
            x = tf.reshape(augment.deskew(tf.reshape(x, [-1, side, side])), [-1, self.input_size])
        dropout = bool(training) and self.dropout_rate > 0
        if dropout:
            seed = _check_seed(seed)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = (self.matmul if i else tf.matmul)(x, w) + b
            if i < last:
                x = tf.nn.relu(x)
                if dropout:
                    layer_seed = tf.random.experimental.stateless_fold_in(seed, i)
                    x = tf.nn.experimental.stateless_dropout(x, self.dropout_rate, seed=layer_seed)
        return x


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor, global_batch_size: int | None = None) -> tf.Tensor:
    """Mean softmax cross-entropy of logits ``(n, k)`` and int labels ``(n,)``: the course's loss.

    A tf.distribute replica sees only part of the batch: with ``global_batch_size`` (the whole
    batch) its loss is that part's share of the mean, and the replicas' losses add up to it.
    """
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    if global_batch_size is None:
        return tf.reduce_mean(per_example)
    return tf.reduce_sum(per_example) / global_batch_size


def l2_penalty(model: MLP, beta: float) -> tf.Tensor:
    """The course's L2 term ``beta * sum(tf.nn.l2_loss(W))`` = ``beta / 2 * sum(W**2)``, weights only.

    Raises:
      ValueError: negative ``beta``.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    return tf.cast(beta, tf.float32) * tf.add_n([tf.nn.l2_loss(w) for w in model.weights])


def loss_fn(model: MLP, images, labels, *, l2_beta: float = 0.0, training: bool = False, seed=None,
            global_batch_size: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """``(loss, logits)``: the cross-entropy plus, with ``l2_beta > 0``, the L2 penalty.

    (``scale_regularization_loss`` keeps the penalty on one device and gives each of ``r``
    tf.distribute replicas ``1 / r`` of it, so that their sum counts it once.)
    """
    logits = model(images, training=training, seed=seed)
    loss = cross_entropy(logits, labels, global_batch_size)
    if l2_beta > 0:
        loss = loss + tf.nn.scale_regularization_loss(l2_penalty(model, l2_beta))
    return loss, logits


def correct_predictions(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """How many argmax predictions equal ``labels``, as a float32 (summable over batches and replicas)."""
    predictions = tf.argmax(logits, axis=1, output_type=labels.dtype)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.float32))


def train_step(model: MLP, optimizer, images, labels, *, l2_beta: float = 0.0, seed=None,
               global_batch_size: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """One step of minibatch gradient descent.

    The tape records the forward pass; ``tape.gradient`` back-propagates the loss to every
    weight and bias (the chain rule that ``reference/backprop.py`` writes out in numpy), and
    the optimizer moves each variable against its gradient.

    Args:
      model: the network.
      optimizer: anything with ``apply_gradients(pairs)``: ``training.optimizers``' or Keras's.
      images, labels: the minibatch.
      l2_beta: weight of the L2 penalty.
      seed: the dropout seed (``MLP.__call__``).
      global_batch_size: see ``cross_entropy``.

    Returns:
      ``(loss, correct)`` of the minibatch, before the update.
    """
    with tf.GradientTape() as tape:
        loss, logits = loss_fn(model, images, labels, l2_beta=l2_beta, training=True, seed=seed,
                               global_batch_size=global_batch_size)
    variables = model.trainable_variables
    gradients = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))
    return loss, correct_predictions(logits, labels)


def eval_step(model: MLP, images, labels) -> tf.Tensor:
    """How many of ``images`` the model labels right (no dropout)."""
    return correct_predictions(model(images), labels)


def accuracy(predictions, labels) -> float:
    """The course's accuracy in percent: ``100 * mean(argmax(predictions, 1) == labels)``.

    ``predictions``: ``(n, k)`` scores, probabilities or logits; ``labels``: int classes ``(n,)`` or
    one-hot ``(n, k)``. Raises ValueError on empty input or mismatched shapes.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape[0] == 0:
        raise ValueError(f"predictions must be a non-empty (n, k) array, got shape {predictions.shape}")
    if labels.ndim == 2:
        if labels.shape != predictions.shape:
            raise ValueError(f"one-hot labels {labels.shape} do not match predictions {predictions.shape}")
        labels = np.argmax(labels, 1)
    elif labels.ndim != 1 or labels.shape[0] != predictions.shape[0]:
        raise ValueError(f"labels {labels.shape} do not match predictions {predictions.shape}")
    return float(100.0 * np.mean(np.argmax(predictions, 1) == labels))


def parameter_count(layer_sizes: Sequence[int]) -> int:
    """Weights plus biases of fully connected layers of these widths, e.g. ``(784, 1024, 10)``."""
    return sum(a * b + b for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))


# ----------------------------------------------------------------------------- argument checks


def _check_arguments(sizes, dropout_rate, init, init_stddev, seed, deskew) -> None:
    def integer(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    for ok, message in [
            (all(integer(s) and s > 0 for s in sizes), f"layer sizes must be positive integers, got {sizes}"),
            (0.0 <= float(dropout_rate) < 1.0, f"dropout_rate must be in [0, 1), got {dropout_rate!r}"),
            (init in INITS, f"init must be one of {INITS}, got {init!r}"),
            (float(init_stddev) > 0.0, f"init_stddev must be > 0, got {init_stddev!r}"),
            (integer(seed), f"seed must be an integer, got {seed!r}"),
            (not deskew or math.isqrt(sizes[0]) ** 2 == sizes[0],
             f"deskew needs square images, but input_size {sizes[0]} is not a square number")]:
        if not ok:
            raise ValueError(message)


def _flat_size(shape: tf.TensorShape, input_size: int) -> int:
    """``input_size`` if ``shape`` is ``(n, input_size)`` or ``(n, h, h)`` with ``h * h == input_size``."""
    side = math.isqrt(input_size)
    dims = shape.as_list() if shape.rank is not None else None
    if dims is None or not (dims[1:] == [input_size] or (side * side == input_size and dims[1:] == [side, side])):
        square = f" or (n, {side}, {side})" if side * side == input_size else ""
        raise ValueError(f"input must have shape (n, {input_size}){square}, got {shape}")
    return input_size


def _check_seed(seed) -> tf.Tensor:
    if seed is None:
        raise ValueError("training with dropout needs a seed (a shape-[2] integer tensor)")
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64) or seed.shape.as_list() != [2]:
        raise ValueError(f"seed must be an int32/int64 tensor of shape [2], got {seed.dtype.name} {seed.shape}")
    return seed
