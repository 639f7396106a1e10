"""Figures of the data: sample letters per class, images per class and split."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from dnn_tf.notmnist import IMAGE_SIZE, LETTERS, NUM_CLASSES
from dnn_tf.report.plots._common import check_classes, check_images, color, image_range, new_figure

GRID_PAD = 2              # pixels between letters in the sample grid
CELL_INCHES = 0.55        # size of one letter in image grids


def sample_grid_figure(images: Any, labels: Any, per_class: int = 10) -> Figure:
    """The first ``per_class`` images of each class, one row per letter A..J.

    Args:
      images: (n, 28, 28) floats (normalized or raw; shown with one grey scale).
      labels: (n,) ints in 0..9.
      per_class: images per row (classes with fewer leave blanks).

    Raises:
      ValueError: bad shapes, labels out of range, per_class < 1.
    """
    images = check_images(images)
    labels = check_classes(labels, "labels", len(images))
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    per_class = int(per_class)
    cell = IMAGE_SIZE + GRID_PAD
    mosaic = np.full((NUM_CLASSES * cell - GRID_PAD, per_class * cell - GRID_PAD), np.nan, np.float32)
    for c in range(NUM_CLASSES):
        for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            mosaic[c * cell:c * cell + IMAGE_SIZE, j * cell:j * cell + IMAGE_SIZE] = images[i]
    lo, hi = image_range(images)
    fig = new_figure(per_class * CELL_INCHES + 1.0, NUM_CLASSES * CELL_INCHES + 0.6)
    ax = fig.add_subplot()
    cmap = colormaps["gray"].with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_yticks([c * cell + IMAGE_SIZE / 2 - 0.5 for c in range(NUM_CLASSES)], list(LETTERS))
    ax.set_xticks([])
    ax.tick_params(length=0, labelsize=12)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"{per_class} samples per class", fontsize=11)
    return fig


def _counts(counts: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not isinstance(counts, Mapping) or not counts:
        raise ValueError("counts must be a non-empty dict split -> 10 counts")
    out = {}
    for split, values in counts.items():
        a = np.asarray(values, dtype=np.float64)
        if a.shape != (NUM_CLASSES,):
            raise ValueError(f"counts[{split!r}] must have {NUM_CLASSES} entries, got shape {a.shape}")
        if np.any(a < 0) or not np.all(np.isfinite(a)):
            raise ValueError(f"counts[{split!r}] must be finite and >= 0")
        out[str(split)] = a
    return out


def class_balance_figure(counts: Mapping[str, Any], normalize: bool = True) -> Figure:
    """Grouped bars per letter for each split (train/valid/test...).

    Args:
      counts: split -> 10 image counts (one per letter).
      normalize: plot each class's share of its split (%), with the 10% line of a perfectly
        balanced split, so splits of different sizes compare; False plots raw counts.

    Raises:
      ValueError: empty dict or a split without 10 non-negative counts.
    """
    counts = _counts(counts)
    fig = new_figure(9.0, 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    x = np.arange(NUM_CLASSES)
    for i, (split, values) in enumerate(counts.items()):
        total = values.sum()
        heights = 100.0 * values / total if normalize and total > 0 else values
        ax.bar(x + (i - (len(counts) - 1) / 2) * width, heights, width, color=color(i),
               label=f"{split} (n={int(total):,})")
    if normalize:
        ax.axhline(100.0 / NUM_CLASSES, color="black", linestyle=":", linewidth=1, label="balanced")
    ax.set_xticks(x, list(LETTERS))
    ax.set_xlabel("class")
    ax.set_ylabel("share of split %" if normalize else "images")
    ax.set_title("Images per class")
    fig.legend(loc="outside right upper")
    ax.grid(axis="y", alpha=0.3)
    return fig
