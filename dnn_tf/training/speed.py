"""A speed trick of the training step that needs the model's cooperation: a matmul with a cheaper gradient.

``MLP(matmul=...)`` takes it; ``loop.create_model`` passes it. The model computes ``x @ W`` either
way; what changes is how back-propagation gets the gradient for ``x``. TensorFlow's own gradient
computes ``dy @ W^T``, a product with a transposed operand that this TensorFlow's CPU kernels run
slowly; ``(W @ dy^T)^T`` is the same sums (the training histories stay bit-identical) without it.
results/speed_tricks.md measures what it buys (kept because that is at least 5% of a step). The
other speed tricks live where they act: the fused updates in ``optimizers``, the XLA-compiled warp
in ``augment``, several steps per compiled call in ``loop`` (``RunSettings.steps_per_call``).
"""

from __future__ import annotations

import tensorflow as tf

# Products with at most this many columns keep TensorFlow's gradient: on the 10-logit layer the extra
# transpose costs more than it saves (benchmarks/input_gradient_layers.py: relu1024's step, whose only
# product after the first layer that is, measured 0.94x with the trick there; results/input_gradient_layers.md).
NARROW_COLUMNS = 16


def matmul_cheap_input_gradient(x: tf.Tensor, w: tf.Tensor | tf.Variable) -> tf.Tensor:
    """``x @ w``, whose gradient for ``x`` is computed as ``(w @ dy^T)^T`` instead of ``dy @ w^T``.

    A narrow ``w`` (``NARROW_COLUMNS``) gets plain ``tf.matmul``. ``w`` is read into a tensor first:
    ``tf.custom_gradient`` run eagerly refuses a function that reads a variable itself, and the tape
    still carries the gradient from the read to the variable.
    """
    if w.shape[-1] is not None and w.shape[-1] <= NARROW_COLUMNS:
        return tf.matmul(x, w)
    return _matmul(x, tf.convert_to_tensor(w))


@tf.custom_gradient
def _matmul(x: tf.Tensor, w: tf.Tensor):
    def gradient(dy):
        return tf.transpose(tf.matmul(w, dy, transpose_b=True)), tf.matmul(x, dy, transpose_a=True)

    return tf.matmul(x, w), gradient
