"""What every figure shares: a headless Agg figure, atomic PNG saving, input checks."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dnn_tf.files import atomic_path
from dnn_tf.notmnist import IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES

DPI = 100
COLORS = "tab10"


def new_figure(width: float, height: float) -> Figure:
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


def check_images(images: Any, what: str = "images") -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 2 and a.shape[1] == IMAGE_PIXELS:
        a = a.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    if a.ndim != 3 or a.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{what} must have shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {a.shape}")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} must be numeric, got dtype {a.dtype}")
    return a.astype(np.float32, copy=False)


def check_classes(values: Any, what: str, n: int | None = None) -> np.ndarray:
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


def check_probabilities(probabilities: Any, n: int | None = None) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != NUM_CLASSES:
        raise ValueError(f"probabilities must have shape (n, {NUM_CLASSES}), got {p.shape}")
    if n is not None and len(p) != n:
        raise ValueError(f"probabilities has {len(p)} rows, expected {n}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probabilities must be finite")
    return p


def image_range(images: np.ndarray) -> tuple[float, float]:
    lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def color(i: int) -> Any:
    cmap = colormaps[COLORS]
    return cmap(i % cmap.N)
