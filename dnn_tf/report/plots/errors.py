"""Figures of a model's errors: the confusion matrix and its most confident mistakes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dnn_tf.notmnist import LETTERS, NUM_CLASSES
from dnn_tf.report.plots._common import check_classes, check_images, check_probabilities, image_range, new_figure

DARK_TEXT_ABOVE = 0.5     # confusion cells darker than this get white text
ARROW = "\u2192"


def confusion_counts(labels: Any, predictions: Any) -> np.ndarray:
    """Counts[i, j] = examples of true class i predicted as j.

    Args:
      labels: (n,) ints in 0..9 or one-hot (n, 10).
      predictions: (n,) ints in 0..9 or scores (n, 10) (argmax taken).

    Returns:
      (10, 10) int64 array.

    Raises:
      ValueError: shapes, lengths or class ranges that don't fit.
    """
    labels = check_classes(labels, "labels")
    predictions = check_classes(predictions, "predictions", len(labels))
    flat = np.bincount(labels * NUM_CLASSES + predictions, minlength=NUM_CLASSES * NUM_CLASSES)
    return flat.reshape(NUM_CLASSES, NUM_CLASSES).astype(np.int64)


def confusion_matrix_figure(labels: Any, predictions: Any, title: str = "Confusion matrix") -> Figure:
    """10x10 counts, letters on the axes, coloured by fraction of each true class.

    Raises:
      ValueError: see ``confusion_counts``.
    """
    counts = confusion_counts(labels, predictions)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    accuracy = 100.0 * np.trace(counts) / max(int(counts.sum()), 1)
    fig = new_figure(6.6, 5.6)
    ax = fig.add_subplot()
    image = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            ax.text(j, i, f"{counts[i, j]:d}", ha="center", va="center", fontsize=8,
                    color="white" if fractions[i, j] > DARK_TEXT_ABOVE else "black")
    ax.set_xticks(range(NUM_CLASSES), list(LETTERS))
    ax.set_yticks(range(NUM_CLASSES), list(LETTERS))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {accuracy:.1f}%, n={int(counts.sum()):,})")
    fig.colorbar(image, ax=ax, label="fraction of true class")
    return fig


def most_confident_mistakes(labels: Any, probabilities: Any, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions with the highest predicted probability.

    Args:
      labels: (n,) ints in 0..9 or one-hot (n, 10).
      probabilities: (n, 10) class probabilities (or any scores; argmax is the prediction).
      k: how many to return at most.

    Returns:
      int64 indices, most confident first (ties: lower index first); fewer than ``k`` when
      there are fewer mistakes.

    Raises:
      ValueError: bad shapes or ``k < 1``.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    labels = check_classes(labels, "labels")
    p = check_probabilities(probabilities, len(labels))
    predicted = np.argmax(p, axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = p[wrong, predicted[wrong]]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order[:int(k)]].astype(np.int64)


def confident_mistakes_figure(images: Any, labels: Any, probabilities: Any, k: int = 16) -> Figure:
    """Grid of the ``k`` most confident wrong predictions, titled "true→pred (p)".

    Raises:
      ValueError: bad shapes, lengths or ``k < 1``.
    """
    images = check_images(images)
    labels = check_classes(labels, "labels", len(images))
    p = check_probabilities(probabilities, len(images))
    indices = most_confident_mistakes(labels, p, k)
    cols = max(1, math.ceil(math.sqrt(int(k))))
    rows = max(1, math.ceil(len(indices) / cols))
    fig = new_figure(cols * 1.5, rows * 1.6 + 0.4)
    if not len(indices):
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
        return fig
    lo, hi = image_range(images)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, indices):
        pred = int(np.argmax(p[i]))
        ax.imshow(images[i], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"{LETTERS[labels[i]]}{ARROW}{LETTERS[pred]} ({p[i, pred]:.2f})", fontsize=10)
    fig.suptitle(f"{len(indices)} most confident mistakes")
    return fig
