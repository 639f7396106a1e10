"""Figures for the report: samples, class balance, learning curves, errors.

Uses ``matplotlib.figure.Figure`` with the Agg canvas directly, never ``pyplot``, so importing
this module changes no global backend (safe on headless machines and inside notebooks).

Each ``name(..., path)`` validates its inputs (ValueError before anything is written), draws,
saves a PNG atomically (``dnn_tf.io.atomic_path``) and returns the path. Each has a
``name_figure(...)`` twin that returns the ``Figure`` for notebooks (Jupyter displays it).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dnn_tf.io import atomic_path

LETTERS = "ABCDEFGHIJ"  # same as dnn_tf.archive.LETTERS
NUM_CLASSES = len(LETTERS)
IMAGE_SIZE = 28
DPI = 100
GRID_PAD = 2              # pixels between letters in the sample grid
CELL_INCHES = 0.55        # size of one letter in image grids
COLORS = "tab10"
DARK_TEXT_ABOVE = 0.5     # confusion cells darker than this get white text
ARROW = "\u2192"


# ---------------------------------------------------------------------------- helpers

def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> str:
    """Saves ``fig`` as a PNG at ``path`` atomically and returns the path."""
    path = os.fspath(path)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _images(images: Any, what: str = "images") -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 2 and a.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
        a = a.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if a.ndim != 3 or a.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{what} must have shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {a.dtype}")
    return a.astype(np.float32, copy=False)


def _classes(values: Any, what: str, n: int | None = None) -> np.ndarray:
    """Class indices from ints (n,) or scores/one-hot (n, 10); checks range and length."""
    a = np.asarray(values)
    if a.ndim == 2:
        if a.shape[1] != NUM_CLASSES:
            raise ValueError(f"{what} must have shape (n,) or (n, {NUM_CLASSES}), got {a.shape}")
        a = np.argmax(a, axis=1)
    if a.ndim != 1:
        raise ValueError(f"{what} must have shape (n,) or (n, {NUM_CLASSES}), got {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{what} must be integer class indices")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or a.max() >= NUM_CLASSES):
        raise ValueError(f"{what} must be in 0..{NUM_CLASSES - 1}")
    if n is not None and len(a) != n:
        raise ValueError(f"{what} has {len(a)} entries, expected {n}")
    return a


def _probabilities(probabilities: Any, n: int | None = None) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != NUM_CLASSES:
        raise ValueError(f"probabilities must have shape (n, {NUM_CLASSES}), got {p.shape}")
    if n is not None and len(p) != n:
        raise ValueError(f"probabilities has {len(p)} rows, expected {n}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be finite")
    return p


def _image_range(images: np.ndarray) -> tuple[float, float]:
    lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _color(i: int) -> Any:
    cmap = colormaps[COLORS]
    return cmap(i % cmap.N)


# ---------------------------------------------------------------------------- samples

def sample_grid_figure(images: Any, labels: Any, per_class: int = 10) -> Figure:
    """The first ``per_class`` images of each class, one row per letter A..J.

    Args:
      images: (n, 28, 28) floats (normalized or raw; shown with one grey scale).
      labels: (n,) ints in 0..9.
      per_class: images per row (classes with fewer leave blanks).

    Raises:
      ValueError: bad shapes, labels out of range, per_class < 1.
    """
    images = _images(images)
    labels = _classes(labels, "labels", len(images))
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    per_class = int(per_class)
    cell = IMAGE_SIZE + GRID_PAD
    mosaic = np.full((NUM_CLASSES * cell - GRID_PAD, per_class * cell - GRID_PAD), np.nan, np.float32)
    for c in range(NUM_CLASSES):
        for j, i in enumerate(np.flatnonzero(labels == c)[:per_class]):
            mosaic[c * cell:c * cell + IMAGE_SIZE, j * cell:j * cell + IMAGE_SIZE] = images[i]
    lo, hi = _image_range(images)
    fig = _new_figure(per_class * CELL_INCHES + 1.0, NUM_CLASSES * CELL_INCHES + 0.6)
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


def sample_grid(images: Any, labels: Any, path: str | os.PathLike, per_class: int = 10) -> str:
    """Saves ``sample_grid_figure`` as a PNG at ``path``; returns the path."""
    return save_figure(sample_grid_figure(images, labels, per_class), path)


# ---------------------------------------------------------------------------- class balance

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
    fig = _new_figure(9.0, 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(counts)
    x = np.arange(NUM_CLASSES)
    for i, (split, values) in enumerate(counts.items()):
        total = values.sum()
        heights = 100.0 * values / total if normalize and total > 0 else values
        ax.bar(x + (i - (len(counts) - 1) / 2) * width, heights, width, color=_color(i),
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


def class_balance(counts: Mapping[str, Any], path: str | os.PathLike, normalize: bool = True) -> str:
    """Saves ``class_balance_figure`` as a PNG at ``path``; returns the path."""
    return save_figure(class_balance_figure(counts, normalize), path)


# ---------------------------------------------------------------------------- learning curves

def _series(history: Sequence[Mapping[str, Any]], key: str, positive: bool = False):
    steps, values = [], []
    for entry in history:
        value = entry.get(key)
        if value is None:
            continue
        value = float(value)
        if math.isfinite(value) and (value > 0 or not positive):
            steps.append(float(entry["step"]))
            values.append(value)
    return steps, values


def learning_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                           title: str = "Learning curves") -> Figure:
    """Minibatch loss (log scale) and accuracies vs step, one colour per preset.

    Args:
      histories: preset -> list of dicts with ``step``, ``loss``, ``minibatch_accuracy``,
        ``valid_accuracy`` (missing/None values are skipped).
      title: figure title.

    Raises:
      ValueError: no histories, or an entry without ``step``.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories must be a non-empty dict preset -> list of history dicts")
    for name, history in histories.items():
        if not history:
            raise ValueError(f"history of {name!r} is empty")
        if any(not isinstance(e, Mapping) or e.get("step") is None for e in history):
            raise ValueError(f"every history entry of {name!r} needs a 'step'")
    fig = _new_figure(12.0, 4.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for i, (name, history) in enumerate(histories.items()):
        color = _color(i)
        loss_ax.plot(*_series(history, "loss", positive=True), color=color, label=name)
        acc_ax.plot(*_series(history, "minibatch_accuracy"), color=color, linestyle="--", alpha=0.7)
        acc_ax.plot(*_series(history, "valid_accuracy"), color=color, linestyle="-", marker=".")
    loss_ax.set_yscale("log")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("minibatch loss (log)")
    loss_ax.set_title("Loss")
    loss_ax.legend(fontsize=8)
    loss_ax.grid(alpha=0.3, which="both")
    acc_ax.set_xlabel("step")
    acc_ax.set_ylabel("accuracy %")
    acc_ax.set_title("Accuracy")
    acc_ax.legend(handles=[Line2D([], [], color="black", linestyle="--", label="minibatch"),
                           Line2D([], [], color="black", linestyle="-", marker=".", label="validation")],
                  loc="lower right", fontsize=8)
    acc_ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike,
                    title: str = "Learning curves") -> str:
    """Saves ``learning_curves_figure`` as a PNG at ``path``; returns the path."""
    return save_figure(learning_curves_figure(histories, title), path)


# ---------------------------------------------------------------------------- confusion matrix

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
    labels = _classes(labels, "labels")
    predictions = _classes(predictions, "predictions", len(labels))
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
    fig = _new_figure(6.6, 5.6)
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


def confusion_matrix(labels: Any, predictions: Any, path: str | os.PathLike,
                     title: str = "Confusion matrix") -> str:
    """Saves ``confusion_matrix_figure`` as a PNG at ``path``; returns the path."""
    return save_figure(confusion_matrix_figure(labels, predictions, title), path)


# ---------------------------------------------------------------------------- mistakes

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
    labels = _classes(labels, "labels")
    p = _probabilities(probabilities, len(labels))
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
    images = _images(images)
    labels = _classes(labels, "labels", len(images))
    p = _probabilities(probabilities, len(images))
    indices = most_confident_mistakes(labels, p, k)
    cols = max(1, math.ceil(math.sqrt(int(k))))
    rows = max(1, math.ceil(len(indices) / cols))
    fig = _new_figure(cols * 1.5, rows * 1.6 + 0.4)
    if not len(indices):
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no mistakes", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
        return fig
    lo, hi = _image_range(images)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, indices):
        pred = int(np.argmax(p[i]))
        ax.imshow(images[i], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(f"{LETTERS[labels[i]]}{ARROW}{LETTERS[pred]} ({p[i, pred]:.2f})", fontsize=10)
    fig.suptitle(f"{len(indices)} most confident mistakes")
    return fig


def confident_mistakes(images: Any, labels: Any, probabilities: Any, path: str | os.PathLike,
                       k: int = 16) -> str:
    """Saves ``confident_mistakes_figure`` as a PNG at ``path``; returns the path."""
    return save_figure(confident_mistakes_figure(images, labels, probabilities, k), path)


# ---------------------------------------------------------------------------- capacity

def accuracy_vs_params_figure(points: Sequence[Mapping[str, Any]],
                              title: str = "Accuracy vs parameters") -> Figure:
    """Accuracy vs parameter count (log x), one line per family (e.g. "deeper", "wider").

    Args:
      points: dicts with ``family``, ``params`` (> 0), ``accuracy`` (%) and optional ``label``.
      title: figure title.

    Raises:
      ValueError: no points, or a point missing a key or with ``params <= 0``.
    """
    if not points:
        raise ValueError("points must be a non-empty list of {family, params, accuracy, label}")
    families: dict[str, list[tuple[float, float, str]]] = {}
    for i, point in enumerate(points):
        try:
            family, params, acc = str(point["family"]), float(point["params"]), float(point["accuracy"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"point {i} needs family, numeric params and accuracy: {point!r}") from None
        if not params > 0 or not math.isfinite(acc):
            raise ValueError(f"point {i}: params must be > 0 and accuracy finite: {point!r}")
        families.setdefault(family, []).append((params, acc, str(point.get("label") or "")))
    fig = _new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    for i, (family, pts) in enumerate(families.items()):
        pts.sort()
        ax.plot([p for p, _, _ in pts], [a for _, a, _ in pts], marker="o", color=_color(i), label=family)
        for params, acc, label in pts:
            if label:
                ax.annotate(label, (params, acc), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel("parameters (log)")
    ax.set_ylabel("accuracy %")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def accuracy_vs_params(points: Sequence[Mapping[str, Any]], path: str | os.PathLike,
                       title: str = "Accuracy vs parameters") -> str:
    """Saves ``accuracy_vs_params_figure`` as a PNG at ``path``; returns the path."""
    return save_figure(accuracy_vs_params_figure(points, title), path)
