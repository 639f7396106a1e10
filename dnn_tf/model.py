"""The course's networks as one module: a multi-layer perceptron with ReLUs.

``MLP(hidden_sizes=())`` is multinomial logistic regression, ``MLP((1024,))``
the course's one-hidden-layer net and ``MLP((1024, 512, 256), init="he")`` a
deep one. Plus the loss, the L2 penalty, the course's accuracy and a FLOP count.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import tensorflow as tf

from dnn_tf.notmnist import IMAGE_PIXELS, NUM_CLASSES
from dnn_tf.training import augment
from dnn_tf.training.config import INITS

COMPUTE_DTYPES = (tf.float32, tf.float16, tf.bfloat16)

# Standard deviation of a unit normal truncated to [-2, 2] (what
# tf.random.truncated_normal samples): sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
TRUNCATED_NORMAL_STD = 0.87962566103423978
# He et al. (2015): Var[W] = HE_GAIN / fan_in keeps ReLU activations' variance constant.
HE_GAIN = 2.0


class MLP(tf.Module):
    """A stack of fully connected layers, ReLU in between, logits out.

    Layer ``i`` computes ``x @ W[i] + b[i]``; every layer but the last is
    followed by a ReLU and, while training, by dropout. Variables are created
    in ``__init__`` from stateless random ops seeded with ``(seed, i)``, so the
    same ``seed`` always gives the same weights whatever the global TF seed.

    Initialization:
      * ``"truncated_normal"`` -- the course's ``tf.truncated_normal`` with
        stddev ``init_stddev`` (values beyond 2 stddev are redrawn, so the
        actual standard deviation is ``0.88 * init_stddev``), zero biases.
      * ``"he"`` -- truncated normal rescaled by ``1 / TRUNCATED_NORMAL_STD``
        so that the actual standard deviation is exactly ``sqrt(2 / fan_in)``,
        zero biases.

    Why deep ReLU nets need He scaling: a layer's pre-activation variance is
    ``fan_in * Var[W] * E[x**2]`` and a ReLU keeps half of its input's second
    moment, so with ``Var[W] = 2 / fan_in`` the activations' variance stays the
    same from layer to layer. With the course's stddev 1.0 it is multiplied by
    about ``fan_in / 2`` (hundreds) per layer instead, so logits and gradients
    blow up after a few layers (or vanish if the stddev is too small).

    Deskewing: with ``deskew=True`` every input image is first straightened
    (``augment.deskew``, a shear that makes its ink upright), in training and at
    inference alike, so whatever calls the model (evaluation, ``predict``, the
    SavedModel) gets the same input transform. It has no variables.

    Mixed precision: with ``compute_dtype=tf.float16`` the variables stay
    float32; inputs and weights are cast to float16 for the matmuls and the
    logits are returned as float32.
    """

    def __init__(self, hidden_sizes: Sequence[int] = (), num_classes: int = NUM_CLASSES,
                 input_size: int = IMAGE_PIXELS, dropout_rate: float = 0.0, init: str = "truncated_normal",
                 init_stddev: float = 1.0,
                 seed: int = 0, compute_dtype=tf.float32, deskew: bool = False, name: str | None = None):
        """Creates the variables.

        Args:
          hidden_sizes: widths of the hidden ReLU layers; ``()`` gives logistic regression.
          num_classes: number of output logits.
          input_size: number of input features (784 = 28 x 28 pixels).
          dropout_rate: fraction of hidden units zeroed while training, in [0, 1).
          init: ``"truncated_normal"`` or ``"he"`` (see the class docstring).
          init_stddev: stddev of the ``"truncated_normal"`` initialization (ignored for ``"he"``).
          seed: integer seed of the initialization.
          compute_dtype: ``tf.float32``, or ``tf.float16`` / ``tf.bfloat16`` for mixed precision.
          deskew: straighten each input image's slant before the first layer (the
            inputs are then square images, so ``input_size`` must be a square number).
          name: module name.

        Raises:
          ValueError: a size is not a positive integer, ``dropout_rate`` outside [0, 1),
            unknown ``init``, ``init_stddev <= 0``, non-integer ``seed``, unsupported ``compute_dtype``,
            or ``deskew`` with a non-square ``input_size``.
        """
        super().__init__(name=name)
        hidden_sizes = tuple(hidden_sizes)
        for label, value in [("num_classes", num_classes), ("input_size", input_size)] + [
                (f"hidden_sizes[{i}]", h) for i, h in enumerate(hidden_sizes)]:
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        if not 0.0 <= float(dropout_rate) < 1.0:
            raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if not float(init_stddev) > 0.0:
            raise ValueError(f"init_stddev must be > 0, got {init_stddev!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        try:
            dtype = tf.as_dtype(compute_dtype)
        except TypeError:
            dtype = None
        if dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {[d.name for d in COMPUTE_DTYPES]}, "
                             f"got {compute_dtype!r}")
        if deskew and math.isqrt(input_size) ** 2 != input_size:
            raise ValueError(f"deskew needs square images, but input_size {input_size} is not a square number")

        self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
        self.num_classes = int(num_classes)
        self.input_size = int(input_size)
        self.dropout_rate = float(dropout_rate)
        self.init = init
        self.init_stddev = float(init_stddev)
        self.seed = int(seed)
        self.compute_dtype = dtype
        self.deskew = bool(deskew)

        sizes = (self.input_size, *self.hidden_sizes, self.num_classes)
        self._weights = []
        self._biases = []
        with self.name_scope:
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                stddev = (math.sqrt(HE_GAIN / fan_in) / TRUNCATED_NORMAL_STD if init == "he"
                          else self.init_stddev)
                w = tf.random.stateless_truncated_normal(
                    (fan_in, fan_out), seed=tf.constant([self.seed, i], tf.int64), stddev=stddev)
                self._weights.append(tf.Variable(w, name=f"w{i}"))
                self._biases.append(tf.Variable(tf.zeros([fan_out]), name=f"b{i}"))

    @property
    def weights(self) -> list[tf.Variable]:
        """The weight matrices, first layer first; shapes ``(fan_in, fan_out)``."""
        return list(self._weights)

    @property
    def biases(self) -> list[tf.Variable]:
        """The bias vectors, first layer first."""
        return list(self._biases)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """Widths from input to logits, e.g. ``(784, 1024, 10)``."""
        return (self.input_size, *self.hidden_sizes, self.num_classes)

    @property
    def num_parameters(self) -> int:
        """Number of scalar parameters (weights and biases)."""
        s = self.layer_sizes
        return sum(a * b + b for a, b in zip(s[:-1], s[1:]))

    @tf.Module.with_name_scope
    def __call__(self, x, training: bool = False, seed=None) -> tf.Tensor:
        """Computes the logits.

        Args:
          x: float images ``(n, 28, 28)`` or flat ``(n, 784)`` (in general ``(n, input_size)``
            or ``(n, h, h)`` with ``h * h == input_size``).
          training: a Python bool; dropout is applied only when True (and ``dropout_rate > 0``).
          seed: int32/int64 shape-``[2]`` tensor seeding the dropout masks (e.g. ``[seed, step]``);
            each layer folds its index into it, so layers get different masks.

        Returns:
          float32 logits of shape ``(n, num_classes)``.

        Raises:
          ValueError: wrong input shape, or ``training=True`` with dropout and no ``seed``.
        """
        x = tf.convert_to_tensor(x)
        x = tf.reshape(x, [-1, self._check_input_shape(x.shape)])
        if self.deskew:
            side = math.isqrt(self.input_size)
            x = tf.reshape(augment.deskew(tf.reshape(x, [-1, side, side])), [-1, self.input_size])
        dropout = bool(training) and self.dropout_rate > 0.0
        if dropout:
            if seed is None:
                raise ValueError("training with dropout needs a seed (a shape-[2] integer tensor)")
            seed = tf.convert_to_tensor(seed)
            if seed.dtype not in (tf.int32, tf.int64) or seed.shape.as_list() != [2]:
                raise ValueError(f"seed must be an int32/int64 tensor of shape [2], got {seed.dtype.name} "
                                 f"{seed.shape}")
        h = tf.cast(x, self.compute_dtype)
        last = len(self._weights) - 1
        matmul = matmul_for_training if training else tf.matmul
        for i, (w, b) in enumerate(zip(self._weights, self._biases)):
            h = matmul(h, tf.cast(w, self.compute_dtype)) + tf.cast(b, self.compute_dtype)
            if i < last:
                h = tf.nn.relu(h)
                if dropout:
                    layer_seed = tf.random.experimental.stateless_fold_in(seed, i)
                    h = tf.nn.experimental.stateless_dropout(h, self.dropout_rate, seed=layer_seed)
        return tf.cast(h, tf.float32)

    def _check_input_shape(self, shape: tf.TensorShape) -> int:
        """Returns the flat feature size after checking ``shape``; ValueError if it does not fit."""
        dims = shape.as_list() if shape.rank is not None else None
        expected = f"(n, {self.input_size})"
        side = math.isqrt(self.input_size)
        if side * side == self.input_size:
            expected += f" or (n, {side}, {side})"
        ok = dims is not None and (
            (len(dims) == 2 and dims[1] == self.input_size)
            or (len(dims) == 3 and dims[1] == dims[2] == side and side * side == self.input_size))
        if not ok:
            raise ValueError(f"input must have shape {expected}, got {shape}")
        return self.input_size


@tf.custom_gradient
def matmul_for_training(x: tf.Tensor, w: tf.Tensor):
    """``x @ w``, whose gradient for ``x`` is computed as ``(w @ dy^T)^T`` instead of ``dy @ w^T``.

    The same sums (so the same gradient up to float rounding); TensorFlow's own
    gradient multiplies by ``w`` transposed (``transpose_b``), a path the CPU
    kernels of this TensorFlow build run slowly (``bare_step`` vs ``bare_step
    fast-dx`` in results/train_throughput.md).
    """
    def grad(dy):
        return tf.transpose(tf.matmul(w, dy, transpose_b=True)), tf.matmul(x, dy, transpose_a=True)

    return tf.matmul(x, w), grad


def softmax_cross_entropy(logits, labels) -> tf.Tensor:
    """Mean softmax cross-entropy, computed in float32 with the fused op.

    Args:
      logits: ``(n, k)`` float logits (any float dtype; cast to float32).
      labels: int class indices ``(n,)`` (sparse op) or one-hot ``(n, k)`` (dense op).

    Returns:
      A float32 scalar.

    Raises:
      ValueError: labels of rank other than 1 or 2.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 1:
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
    elif labels.shape.rank == 2:
        losses = tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.float32), logits=logits)
    else:
        raise ValueError(f"labels must be (n,) class indices or (n, k) one-hot, got shape {labels.shape}")
    return tf.reduce_mean(losses)


def l2_penalty(model: MLP, beta: float) -> tf.Tensor:
    """The course's L2 term ``beta * sum(tf.nn.l2_loss(W))`` = ``beta / 2 * sum(W**2)``, weights only.

    Args:
      model: the network.
      beta: regularization strength, >= 0.

    Returns:
      A float32 scalar.

    Raises:
      ValueError: negative ``beta``.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    return tf.cast(beta, tf.float32) * tf.add_n([tf.nn.l2_loss(w) for w in model.weights])


def accuracy(predictions, labels) -> float:
    """The course's accuracy in percent: ``100 * mean(argmax(predictions, 1) == labels)``.

    Args:
      predictions: ``(n, k)`` scores, probabilities or logits (numpy or tensor).
      labels: int class indices ``(n,)`` or one-hot ``(n, k)``.

    Returns:
      Accuracy in percent, a Python float.

    Raises:
      ValueError: empty input or mismatched shapes.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.ndim != 2 or predictions.shape[0] == 0:
        raise ValueError(f"predictions must be a non-empty (n, k) array, got shape {predictions.shape}")
    if labels.ndim == 2:
        if labels.shape != predictions.shape:
            raise ValueError(f"one-hot labels {labels.shape} do not match predictions {predictions.shape}")
        labels = np.argmax(labels, 1)
    elif labels.ndim != 1 or labels.shape[0] != predictions.shape[0]:
        raise ValueError(f"labels {labels.shape} do not match predictions {predictions.shape}")
    return float(100.0 * np.mean(np.argmax(predictions, 1) == labels))


def flops_per_example(layer_sizes: Sequence[int], backward: bool = True) -> int:
    """Floating-point operations of the matmuls for one example (a multiply-add counts 2).

    With layers ``(a_i, b_i)`` = consecutive entries of ``layer_sizes``:
      forward  = sum_i 2 a_i b_i
      backward = sum_i 2 a_i b_i              (weight gradients, every layer)
               + sum_{i>0} 2 a_i b_i          (input gradients; the first layer needs none)
    so a training step costs ``3 * forward - 2 a_0 b_0``. Biases, ReLUs,
    dropout and the softmax are elementwise and not counted.

    Args:
      layer_sizes: widths from input to logits, e.g. ``MLP.layer_sizes``.
      backward: include the backward pass (training) or not (inference).

    Returns:
      The FLOP count per example.

    Raises:
      ValueError: fewer than two sizes or a non-positive size.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"layer_sizes needs at least two positive sizes, got {tuple(layer_sizes)}")
    products = [2 * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    forward = sum(products)
    if not backward:
        return forward
    return forward + sum(products) + sum(products[1:])
