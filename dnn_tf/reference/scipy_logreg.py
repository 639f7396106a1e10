"""The course's "off-the-shelf" baseline (assignment 1, problem 6) without scikit-learn.

Multinomial logistic regression fitted with scipy's L-BFGS-B, as
``sklearn.linear_model.LogisticRegression()`` does by default: softmax over
``x @ W + b`` and an L2 penalty on the weights (not the bias). sklearn minimizes
``sum_i CE_i + ||W||^2 / (2 C)`` with ``C = 1``; here ``l2 = 1 / C`` and the
objective is divided by ``n`` (same minimizer, better scaled for the stopping
tolerance)::

    f(W, b) = mean_i CE(softmax(x_i W + b), y_i) + l2 / (2 n) * ||W||^2

numpy and scipy only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import minimize

from dnn_tf.data.dataset import COURSE_KEYS

# sklearn's LogisticRegression defaults: C = 1.0 (l2 = 1 / C), max_iter = 100, tol = 1e-4.
DEFAULT_L2 = 1.0
DEFAULT_MAX_ITER = 100
DEFAULT_TOL = 1e-4
# L-BFGS-B's relative function-decrease stopping test (as sklearn sets it).
FTOL = 64 * np.finfo(float).eps
# The course's training-set sizes for problem 6.
DEFAULT_SIZES = (50, 100, 1000, 5000)

logger = logging.getLogger(__name__)


@dataclass
class LogRegParams:
    """A fitted model.

    Attributes:
      weights: ``(d, k)`` float64.
      bias: ``(k,)`` float64.
      iterations: L-BFGS iterations run.
      converged: whether L-BFGS-B stopped on its tolerance (not ``max_iter``).
      loss: final objective value.
    """

    weights: np.ndarray
    bias: np.ndarray
    iterations: int
    converged: bool
    loss: float


def _flatten(x: np.ndarray, name: str = "x") -> np.ndarray:
    """``(n, d)`` or ``(n, h, w)`` -> ``(n, d)``; ValueError on other shapes."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x.reshape(x.shape[0], -1)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (n, d) or (n, h, w) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {x.dtype}")
    return x


def loss_and_grad(theta: np.ndarray, x: np.ndarray, y: np.ndarray, num_classes: int,
                  l2: float) -> tuple[float, np.ndarray]:
    """The objective and its analytic gradient.

    Args:
      theta: flat parameters, ``W`` (d*k, row-major) then ``b`` (k).
      x: ``(n, d)`` float64 inputs.
      y: ``(n,)`` int labels in ``[0, num_classes)``.
      num_classes: k.
      l2: weight of the penalty ``l2 / (2 n) * ||W||^2``.

    Returns:
      ``(f, grad)`` with ``grad`` shaped like ``theta``.
    """
    n, d = x.shape
    k = num_classes
    w = theta[:d * k].reshape(d, k)
    b = theta[d * k:]
    z = x @ w + b
    z_max = z.max(axis=1, keepdims=True)
    shifted = z - z_max
    sum_exp = np.exp(shifted).sum(axis=1, keepdims=True)
    log_sum_exp = np.log(sum_exp)  # log-sum-exp of z minus z_max
    rows = np.arange(n)
    f = float(np.mean(log_sum_exp[:, 0] - shifted[rows, y]) + 0.5 * l2 / n * np.sum(w * w))
    dz = np.exp(shifted - log_sum_exp)  # softmax
    dz[rows, y] -= 1.0
    dz /= n
    grad_w = x.T @ dz + (l2 / n) * w
    grad_b = dz.sum(axis=0)
    return f, np.concatenate([grad_w.ravel(), grad_b])


def fit_logreg(x: np.ndarray, y: np.ndarray, l2: float = DEFAULT_L2, max_iter: int = DEFAULT_MAX_ITER,
               tol: float = DEFAULT_TOL, num_classes: int | None = None) -> LogRegParams:
    """Fits multinomial logistic regression with L-BFGS-B from zero weights.

    Args:
      x: ``(n, d)`` or ``(n, 28, 28)`` inputs.
      y: ``(n,)`` int labels.
      l2: L2 strength on the weights, ``1 / C`` in sklearn's terms (default: sklearn's C = 1).
      max_iter: maximum L-BFGS iterations (sklearn's default 100).
      tol: L-BFGS-B's projected-gradient tolerance.
      num_classes: number of classes (default ``max(y) + 1``).

    Returns:
      The fitted ``LogRegParams``.

    Raises:
      ValueError: bad shapes, labels out of range, ``l2 < 0``, ``max_iter < 1``, ``tol <= 0``.
    """
    x = _flatten(x).astype(np.float64)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape ({x.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    k = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if k < 2 or y.min() < 0 or y.max() >= k:
        raise ValueError(f"labels must be in [0, {k}) with at least 2 classes")
    if l2 < 0 or max_iter < 1 or tol <= 0:
        raise ValueError(f"need l2 >= 0, max_iter >= 1, tol > 0; got {l2}, {max_iter}, {tol}")
    d = x.shape[1]
    result = minimize(loss_and_grad, np.zeros(d * k + k), args=(x, y.astype(np.intp), k, float(l2)),
                      method="L-BFGS-B", jac=True,
                      options={"maxiter": int(max_iter), "gtol": float(tol), "ftol": FTOL})
    return LogRegParams(weights=result.x[:d * k].reshape(d, k), bias=result.x[d * k:],
                        iterations=int(result.nit), converged=bool(result.success), loss=float(result.fun))


def decision_function(params: LogRegParams, x: np.ndarray) -> np.ndarray:
    """Logits ``x @ W + b``, shape ``(n, k)``.

    Raises:
      ValueError: bad shape or feature count.
    """
    x = _flatten(x)
    if x.shape[1] != params.weights.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features, the model {params.weights.shape[0]}")
    return x @ params.weights + params.bias


def predict(params: LogRegParams, x: np.ndarray) -> np.ndarray:
    """Predicted int labels ``(n,)`` for ``(n, d)`` or ``(n, 28, 28)`` inputs."""
    return np.argmax(decision_function(params, x), axis=1)


def accuracy_percent(params: LogRegParams, x: np.ndarray, y: np.ndarray) -> float:
    """The course's accuracy, ``100 * mean(predict(x) == y)``."""
    y = np.asarray(y)
    pred = predict(params, x)
    if y.shape != pred.shape:
        raise ValueError(f"labels {y.shape} do not match inputs ({pred.shape[0]},)")
    return float(100.0 * np.mean(pred == y))


def run_baseline(data: Mapping[str, np.ndarray], sizes: Sequence[int] = DEFAULT_SIZES,
                 l2: float = DEFAULT_L2, max_iter: int = DEFAULT_MAX_ITER) -> list[dict]:
    """Problem 6: fits on the first N training examples for each N, scores valid and test.

    Args:
      data: the course's dict (``train_dataset``, ``train_labels``, ``valid_dataset``,
        ``valid_labels``, ``test_dataset``, ``test_labels``).
      sizes: training-set sizes.
      l2: see ``fit_logreg``.
      max_iter: see ``fit_logreg``.

    Returns:
      One dict per size: ``train_size``, ``test_accuracy``, ``valid_accuracy`` (percent),
      ``iterations``, ``seconds`` (fit time).

    Raises:
      ValueError: missing keys, empty ``sizes`` or a size outside ``[1, len(train)]``.
    """
    missing = [key for key in COURSE_KEYS if key not in data]
    if missing:
        raise ValueError(f"data is missing {', '.join(missing)}")
    n_train = len(data["train_labels"])
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1 or max(sizes) > n_train:
        raise ValueError(f"sizes must be in [1, {n_train}] (the training set size), got {sizes}")
    num_classes = int(max(np.max(data[k]) for k in ("train_labels", "valid_labels", "test_labels"))) + 1
    rows = []
    for i, size in enumerate(sizes):
        start = time.perf_counter()
        params = fit_logreg(data["train_dataset"][:size], data["train_labels"][:size], l2=l2,
                            max_iter=max_iter, num_classes=num_classes)
        seconds = time.perf_counter() - start
        row = {"train_size": size,
               "test_accuracy": accuracy_percent(params, data["test_dataset"], data["test_labels"]),
               "valid_accuracy": accuracy_percent(params, data["valid_dataset"], data["valid_labels"]),
               "iterations": params.iterations,
               "seconds": seconds}
        rows.append(row)
        logger.info(f"[{i + 1}/{len(sizes)}] train_size={size}: test {row['test_accuracy']:.1f}% "
            f"valid {row['valid_accuracy']:.1f}% ({row['iterations']} iterations, {seconds:.1f}s)")
    return rows
