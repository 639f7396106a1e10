"""Figures of what a network learned: its weights drawn as 28x28 images.

* ``templates_figure``: logistic regression's ten weight columns, one per letter:
  the template each class score is the dot product with (red: ink there raises
  the score, blue: lowers it).
* ``hidden_units_figure``: the first hidden layer's strongest units (largest
  ``|incoming| * |outgoing|`` weight norm, the units that move the logits most),
  each titled with the letter its outgoing weights favour.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dnn_tf.notmnist import IMAGE_PIXELS, IMAGE_SIZE, LETTERS, NUM_CLASSES
from dnn_tf.report.plots._common import new_figure

CMAP = "RdBu_r"  # diverging: 0 is white, sign is colour
TEMPLATE_INCHES = 1.3
UNIT_INCHES = 1.0
DEFAULT_UNITS = 25


def _matrix(weights: Any, what: str, rows: int, cols: int | None = None) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != rows or (cols is not None and w.shape[1] != cols) or not w.size:
        want = f"({rows}, {cols if cols is not None else 'n'})"
        raise ValueError(f"{what} must have shape {want}, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what} must be finite")
    return w


def _image_grid(fig: Figure, images: np.ndarray, titles: list[str], cols: int) -> None:
    """Each image with its own symmetric colour range (so sign and shape show), titled, no axes."""
    rows = -(-len(images) // cols)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, title in zip(axes, images, titles):
        bound = float(np.abs(image).max()) or 1.0
        ax.imshow(image, cmap=CMAP, vmin=-bound, vmax=bound, interpolation="nearest")
        ax.set_title(title, fontsize=9)


def templates_figure(weights: Any, title: str = "Logistic regression: one template per letter") -> Figure:
    """The ten columns of a (784, 10) weight matrix as 28x28 images, titled A..J.

    Raises:
      ValueError: not a finite (784, 10) matrix.
    """
    w = _matrix(weights, "weights", IMAGE_PIXELS, NUM_CLASSES)
    fig = new_figure(NUM_CLASSES / 2 * TEMPLATE_INCHES, 2 * TEMPLATE_INCHES + 0.5)
    _image_grid(fig, w.T.reshape(NUM_CLASSES, IMAGE_SIZE, IMAGE_SIZE), list(LETTERS), NUM_CLASSES // 2)
    fig.suptitle(title)
    return fig


def strongest_units(first: Any, second: Any, k: int = DEFAULT_UNITS) -> np.ndarray:
    """Indices of the ``k`` hidden units with the largest ``|first[:, j]| * |second[j, :]|``, strongest first.

    Raises:
      ValueError: shapes that do not chain, or ``k < 1``.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    w0 = _matrix(first, "first", IMAGE_PIXELS)
    w1 = _matrix(second, "second", w0.shape[1])
    strength = np.linalg.norm(w0, axis=0) * np.linalg.norm(w1, axis=1)
    return np.argsort(-strength, kind="stable")[:int(k)]


def hidden_units_figure(first: Any, second: Any, k: int = DEFAULT_UNITS,
                        title: str = "First hidden layer: the strongest units") -> Figure:
    """The incoming weights of the ``k`` strongest hidden units (``strongest_units``) as 28x28 images.

    Args:
      first: the first layer's (784, units) weights.
      second: the next layer's (units, n) weights (for the logits of a one-hidden-layer net, n = 10).
      k: how many units to draw.
      title: figure title.

    Raises:
      ValueError: see ``strongest_units``.
    """
    w0, w1 = np.asarray(first, np.float64), np.asarray(second, np.float64)
    units = strongest_units(w0, w1, k)
    cols = int(np.ceil(np.sqrt(len(units))))
    rows = -(-len(units) // cols)
    fig = new_figure(cols * UNIT_INCHES + 0.3, rows * (UNIT_INCHES + 0.2) + 0.5)
    votes = [LETTERS[int(np.argmax(w1[j]))] if w1.shape[1] == NUM_CLASSES else "" for j in units]
    titles = [f"#{j} +{v}" if v else f"#{j}" for j, v in zip(units, votes)]
    _image_grid(fig, w0[:, units].T.reshape(len(units), IMAGE_SIZE, IMAGE_SIZE), titles, cols)
    fig.suptitle(title)
    return fig
