"""Back-propagation written out by hand in numpy: the chain rule the course teaches.

Used to check ``tf.GradientTape`` (tests/test_model.py) and to show the two side by side
(scripts/chain_rule.py). Pure numpy, float64; no TensorFlow.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def relu_derivative(z: np.ndarray) -> np.ndarray:
    """d relu(z) / dz: 1 where z > 0, else 0 (the course's convention at 0)."""
    return (z > 0).astype(np.float64)


def numpy_backprop(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], x: np.ndarray,
                   y: np.ndarray, beta: float = 0.0,
                   relu_grad: Callable[[np.ndarray], np.ndarray] = relu_derivative,
                   ) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """Loss and gradients of an MLP by the chain rule.

    The loss is mean softmax cross-entropy of ``x @ W0 + b0 -> ReLU -> ... -> logits`` plus
    ``beta * sum(0.5 * ||W||^2)`` (TensorFlow's ``l2_loss``) over the weights.

    Args:
      weights: the matrices W_i, shapes (in, out).
      biases: the vectors b_i.
      x: inputs (n, in); y: integer labels (n,).
      beta: L2 weight.
      relu_grad: the ReLU derivative (replaceable to show a wrong one is detected).

    Returns:
      (loss, dL/dW_i list, dL/db_i list), all float64.

    Raises:
      ValueError: weights and biases of different lengths, or x/y of different lengths.
    """
    if len(weights) != len(biases) or not weights:
        raise ValueError("need as many biases as weights (at least one layer)")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} rows, y has {len(y)}")
    ws = [np.asarray(w, np.float64) for w in weights]
    bs = [np.asarray(b, np.float64) for b in biases]
    activations = [np.asarray(x, np.float64).reshape(len(x), -1)]
    pre = []
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = activations[-1] @ w + b
        pre.append(z)
        if i < len(ws) - 1:
            activations.append(np.maximum(z, 0.0))
    logits = pre[-1]
    shifted = logits - logits.max(1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    onehot = np.eye(logits.shape[1])[np.asarray(y)]
    n = len(x)
    loss = -np.mean(np.sum(onehot * np.log(p), 1)) + beta * sum(0.5 * np.sum(w ** 2) for w in ws)
    dz = (p - onehot) / n  # d loss / d logits of softmax cross-entropy
    dws: list[np.ndarray] = [np.empty(0)] * len(ws)
    dbs: list[np.ndarray] = [np.empty(0)] * len(ws)
    for i in reversed(range(len(ws))):
        dws[i] = activations[i].T @ dz + beta * ws[i]
        dbs[i] = dz.sum(0)
        if i > 0:  # chain rule through the layer and its ReLU
            dz = (dz @ ws[i].T) * relu_grad(pre[i - 1])
    return float(loss), dws, dbs
