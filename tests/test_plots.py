"""Tests for dnn_tf.report.plots: pure helpers exact, every plot writes a readable PNG atomically."""

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from dnn_tf.report import plots

N = 120


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 10
    images = rng.uniform(-0.5, 0.5, (N, 28, 28)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(10), N)
    return images, labels, probabilities


def _check_png(path, tmp_path):
    assert os.path.getsize(path) > 1024
    with Image.open(path) as im:
        assert im.format == "PNG"
        width, height = im.size
        im.load()
    assert width > 100 and height > 100
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---------------------------------------------------------------- pure helpers

def test_confusion_counts_exact():
    labels = [0, 0, 1, 2, 2, 2, 9]
    preds = [0, 1, 1, 2, 0, 2, 3]
    counts = plots.confusion_counts(labels, preds)
    assert counts.shape == (10, 10) and counts.dtype == np.int64
    expected = np.zeros((10, 10), int)
    for t, p in zip(labels, preds):
        expected[t, p] += 1
    np.testing.assert_array_equal(counts, expected)
    assert counts[2, 2] == 2 and counts[2, 0] == 1 and counts[9, 3] == 1 and counts.sum() == 7
    # one-hot labels and probability predictions give the same counts
    np.testing.assert_array_equal(plots.confusion_counts(np.eye(10)[labels], np.eye(10)[preds] * 0.9), counts)


@pytest.mark.parametrize("labels, preds, match", [
    ([0, 1], [0], "expected 2"),
    ([0, 10], [0, 1], "0..9"),
    ([[0, 1]], [0], r"\(n,\)"),
    ([0.5, 1], [0, 1], "integer"),
])
def test_confusion_counts_errors(labels, preds, match):
    with pytest.raises(ValueError, match=match):
        plots.confusion_counts(labels, preds)


def test_most_confident_mistakes_exact():
    p = np.full((6, 10), 0.01)
    # row: predicted class gets the listed probability
    for i, (pred, conf) in enumerate([(0, 0.9), (3, 0.8), (1, 0.95), (2, 0.6), (4, 0.8), (5, 0.99)]):
        p[i, pred] = conf
    labels = np.array([0, 1, 2, 3, 4, 5])  # rows 1, 2, 3 are wrong; 0, 4, 5 right
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels, p, k=16), [2, 1, 3])
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels, p, k=2), [2, 1])
    # ties keep the lower index first
    labels2 = np.array([9, 9, 9, 9, 9, 9])
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels2, p, k=3), [5, 2, 0])
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels2, p, k=6)[3:], [1, 4, 3])
    assert plots.most_confident_mistakes([0], np.eye(10)[[0]], k=4).size == 0
    with pytest.raises(ValueError):
        plots.most_confident_mistakes(labels, p, k=0)
    with pytest.raises(ValueError):
        plots.most_confident_mistakes(labels, p[:, :9], k=1)


# ---------------------------------------------------------------- every plot writes a PNG


def save(path, figure, *args, **kwargs) -> str:
    """Draws ``figure(*args, **kwargs)`` and saves it at ``path``, as results.py does."""
    return plots.save_figure(figure(*args, **kwargs), path)

def _calls(data, tmp_path):
    images, labels, probabilities = data
    history = [{"step": s, "loss": 2.0 / (1 + s), "minibatch_accuracy": 50 + s / 20,
                "valid_accuracy": None if s == 0 else 40 + s / 25, "learning_rate": 0.5, "seconds": 0.1}
               for s in range(0, 1001, 100)]
    return {
        "sample_grid": lambda: save(tmp_path / "samples.png", plots.sample_grid_figure, images, labels, per_class=5),
        "class_balance": lambda: save(
            tmp_path / "balance.png", plots.class_balance_figure,
            {"train": np.bincount(labels, minlength=10) * 8, "valid": np.bincount(labels, minlength=10),
             "test": list(range(10))}),
        "learning_curves": lambda: save(tmp_path / "curves.png", plots.learning_curves_figure,
                                        {"logreg_sgd": history, "deep": history[::2]}, "curves"),
        "confusion_matrix": lambda: save(tmp_path / "cm.png", plots.confusion_matrix_figure, labels, probabilities,
                                         "test"),
        "confident_mistakes": lambda: save(tmp_path / "mistakes.png", plots.confident_mistakes_figure, images,
                                           labels, probabilities, k=9),
        "accuracy_vs_params": lambda: save(
            tmp_path / "capacity.png", plots.accuracy_vs_params_figure,
            [{"family": "wider", "params": 8e3, "accuracy": 86.0, "label": "logreg"},
             {"family": "wider", "params": 8e5, "accuracy": 92.0, "label": "1024"},
             {"family": "deeper", "params": 1.3e6, "accuracy": 94.0, "label": "1024-512-256"}]),
    }


@pytest.mark.parametrize("name", ["sample_grid", "class_balance", "learning_curves", "confusion_matrix",
                                  "confident_mistakes", "accuracy_vs_params"])
def test_plot_writes_png(name, data, tmp_path):
    path = _calls(data, tmp_path)[name]()
    assert path == str(tmp_path / os.path.basename(path)) and os.path.exists(path)
    _check_png(path, tmp_path)


def test_no_mistakes_still_plots(data, tmp_path):
    images, labels, _ = data
    path = save(tmp_path / "none.png", plots.confident_mistakes_figure, images, labels, np.eye(10)[labels])
    _check_png(path, tmp_path)


def test_figures_are_figures(data):
    images, labels, probabilities = data
    fig = plots.sample_grid_figure(images, labels, per_class=3)
    assert isinstance(fig, Figure)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == list("ABCDEFGHIJ")
    fig = plots.confusion_matrix_figure(labels, labels, "t")
    assert "accuracy 100.0%" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list("ABCDEFGHIJ")
    fig = plots.confident_mistakes_figure(images, labels, probabilities, k=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    wrong = plots.most_confident_mistakes(labels, probabilities, 4)
    first = wrong[0]
    pred = int(np.argmax(probabilities[first]))
    assert len(titles) == 4
    assert titles[0] == f"{'ABCDEFGHIJ'[labels[first]]}\u2192{'ABCDEFGHIJ'[pred]} ({probabilities[first, pred]:.2f})"


@pytest.mark.parametrize("call", [
    lambda p, d: save(p, plots.sample_grid_figure, d[0][:, :27], d[1]),
    lambda p, d: save(p, plots.sample_grid_figure, d[0], d[1][:-1]),
    lambda p, d: save(p, plots.sample_grid_figure, d[0], d[1], per_class=0),
    lambda p, d: save(p, plots.class_balance_figure, {"train": [1, 2, 3]}),
    lambda p, d: save(p, plots.class_balance_figure, {}),
    lambda p, d: save(p, plots.learning_curves_figure, {}),
    lambda p, d: save(p, plots.learning_curves_figure, {"x": [{"loss": 1.0}]}),
    lambda p, d: save(p, plots.confusion_matrix_figure, d[1], d[1][:-1]),
    lambda p, d: save(p, plots.confident_mistakes_figure, d[0], d[1], d[2][:, :5]),
    lambda p, d: save(p, plots.confident_mistakes_figure, d[0][:5], d[1], d[2]),
    lambda p, d: save(p, plots.accuracy_vs_params_figure, []),
    lambda p, d: save(p, plots.accuracy_vs_params_figure, [{"family": "a", "params": 0, "accuracy": 1}]),
    lambda p, d: save(p, plots.accuracy_vs_params_figure, [{"family": "a", "accuracy": 1}]),
])
def test_bad_inputs_raise_before_writing(call, data, tmp_path):
    target = tmp_path / "out" / "plot.png"
    with pytest.raises(ValueError):
        call(target, data)
    assert not target.exists()
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_failed_save_leaves_old_file(data, tmp_path, monkeypatch):
    images, labels, _ = data
    path = tmp_path / "samples.png"
    path.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save(path, plots.sample_grid_figure, images, labels)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["samples.png"]


def test_import_leaves_backend_and_pyplot_alone():
    code = ("import sys, dnn_tf.report.plots, matplotlib; "
            "sys.exit(('matplotlib.pyplot' in sys.modules) or ('tensorflow' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ---------------------------------------------------------------- weights


def test_templates_show_each_letters_weight_column():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(784, 10))
    fig = plots.templates_figure(weights)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == list("ABCDEFGHIJ")
    np.testing.assert_allclose(shown[3].get_images()[0].get_array(), weights[:, 3].reshape(28, 28))
    vmin, vmax = shown[3].get_images()[0].get_clim()
    assert vmin == -vmax == -np.abs(weights[:, 3]).max()  # symmetric: white is zero
    for bad in (weights[:, :9], weights.T, np.full((784, 10), np.nan)):
        with pytest.raises(ValueError, match="weights must"):
            plots.templates_figure(bad)


def test_strongest_units_rank_by_incoming_times_outgoing_norm_and_title_their_letter():
    first = np.zeros((784, 6))
    second = np.zeros((6, 10))
    for unit, (inc, out, letter) in enumerate([(1, 1, 0), (3, 1, 4), (1, 5, 9), (2, 2, 1), (0, 9, 2), (1, 0.5, 3)]):
        first[unit, unit] = inc  # a single incoming pixel
        second[unit, letter] = out
    np.testing.assert_array_equal(plots.strongest_units(first, second, k=4), [2, 3, 1, 0])
    fig = plots.hidden_units_figure(first, second, k=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["#2 +J", "#3 +B", "#1 +E", "#0 +A"]
    with pytest.raises(ValueError, match="second must have shape"):
        plots.strongest_units(first, second[:5])
    with pytest.raises(ValueError, match="k must be >= 1"):
        plots.strongest_units(first, second, k=0)
