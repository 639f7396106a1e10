"""Figures of training: learning curves, accuracy against parameter count."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dnn_tf.report.plots._common import color, new_figure


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
    fig = new_figure(12.0, 4.6)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for i, (name, history) in enumerate(histories.items()):
        c = color(i)
        loss_ax.plot(*_series(history, "loss", positive=True), color=c, label=name)
        acc_ax.plot(*_series(history, "minibatch_accuracy"), color=c, linestyle="--", alpha=0.7)
        acc_ax.plot(*_series(history, "valid_accuracy"), color=c, linestyle="-", marker=".")
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
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    for i, (family, pts) in enumerate(families.items()):
        pts.sort()
        ax.plot([p for p, _, _ in pts], [a for _, a, _ in pts], marker="o", color=color(i), label=family)
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
